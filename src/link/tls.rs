//! The TLS client configuration of every door link: rustls with the ring provider, trusting
//! the system roots plus an optional extra CA (a private hub such as fieldhub). Hostname
//! verification is never switched off.
//!
//! Every door of a gateway shares one configuration: a root store holds every system CA
//! (~150 parsed certificates, tens of KB), and building one per door cost ~100 KB of memory
//! per door and a parse of the system bundle per link start (benchmark workloads 3 and 5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::LinkError;

/// Configurations alive, by the extra CA they were built with. Weak: a config goes when its
/// last door does.
type Shared = HashMap<Option<Vec<u8>>, Weak<ClientConfig>>;
static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// The shared client config for `extra_ca_pem`: built on first use, then the same `Arc` for
/// every door while any holds it (a reload with another CA builds a new one). System roots
/// that fail to load are skipped (a Pi image may lack a CA bundle when only a private hub is
/// used); an unreadable extra CA is an error.
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, LinkError> {
    let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let shared = guard.get_or_insert_with(HashMap::new);
    let key = extra_ca_pem.map(<[u8]>::to_vec);
    if let Some(config) = shared.get(&key).and_then(Weak::upgrade) {
        return Ok(config);
    }
    let config = build(extra_ca_pem)?;
    shared.retain(|_, w| w.strong_count() > 0);
    shared.insert(key, Arc::downgrade(&config));
    Ok(config)
}

/// A door's own configuration presenting its X.509 certificate (not shared: the client
/// certificate differs per door, so each X.509 door holds its own root store).
pub fn client_config_with_cert(
    extra_ca_pem: Option<&[u8]>,
    cert: &ClientCert,
) -> Result<Arc<ClientConfig>, LinkError> {
    let roots = roots(extra_ca_pem)?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LinkError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(cert.chain.clone(), cert.key.clone_key())
            .map_err(|e| LinkError::Tls(format!("client certificate or key unusable: {e}")))?;
    Ok(Arc::new(config))
}

/// A door's X.509 certificate chain (leaf first) and private key. `Debug` shows neither.
#[derive(Clone)]
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientCert {
    /// Reads a PEM certificate file (leaf first, then any intermediates) and a PEM key file.
    /// Errors name the file, never the key.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<ClientCert, String> {
        let pem =
            std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not valid PEM: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{} holds no CERTIFICATE block", cert.display()));
        }
        let pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
        let key = rustls_pemfile::private_key(&mut &pem[..])
            .ok()
            .flatten()
            .ok_or_else(|| format!("{} holds no PEM private key", key.display()))?;
        Ok(ClientCert {
            chain,
            key: Arc::new(key),
        })
    }
}

fn build(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, LinkError> {
    let roots = roots(extra_ca_pem)?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LinkError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots(extra_ca_pem: Option<&[u8]>) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_ca_pem {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| LinkError::Tls(format!("extra CA file is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(LinkError::Tls(
                "extra CA file holds no CERTIFICATE block".into(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| LinkError::Tls(format!("extra CA certificate rejected: {e}")))?;
        }
    } else if added == 0 {
        return Err(LinkError::Tls(
            "no system root certificates found and no extra CA file given".into(),
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doors_share_one_config_per_extra_ca() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem();
        let a = client_config(Some(ca.as_bytes())).unwrap();
        let b = client_config(Some(ca.as_bytes())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = rcgen::generate_simple_self_signed(vec!["hub".into()])
            .unwrap()
            .cert
            .pem();
        let c = client_config(Some(other.as_bytes())).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn rejects_garbage_extra_ca() {
        let err = client_config(Some(b"hello")).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
