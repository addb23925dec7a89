//! The TLS client configuration of every door link: rustls with the ring provider, trusting
//! the system roots plus an optional extra CA (a private hub such as fieldhub). Hostname
//! verification is never switched off.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::LinkError;

/// Builds the shared client config. System roots that fail to load are skipped (a Pi image
/// may lack a CA bundle when only a private hub is used); an unreadable extra CA is an error.
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, LinkError> {
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
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LinkError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_extra_ca() {
        let err = client_config(Some(b"hello")).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
