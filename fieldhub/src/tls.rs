//! The hub's private PKI: a CA kept in `DATA_DIR` (`ca.pem`, `ca-key.pem`) and a server
//! certificate for the hub hostname, `localhost` and 127.0.0.1, issued at every start; plus
//! the rustls server configuration (ring provider) for both listeners.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the listeners need: the CA (for clients to trust) and the server configs.
#[derive(Debug, Clone)]
pub struct HubTls {
    pub ca_pem: String,
    pub mqtt_config: Arc<rustls::ServerConfig>,
    pub https_config: Arc<rustls::ServerConfig>,
}

/// The CA's subject is rebuilt identically on every start, so certificates issued now chain to
/// the `ca.pem` written on the first start (only the key is needed to sign).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fieldhub local CA");
    dn.push(DnType::OrganizationName, "fieldhub");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(p)
}

fn read(path: &Path) -> Result<Option<String>, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads or creates the CA in `dir`, issues a server certificate for `hostname`.
pub fn load_or_create(dir: &Path, hostname: &str) -> Result<HubTls, TlsError> {
    let ca_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    let (ca_pem, ca_key) = match (read(&ca_path)?, read(&key_path)?) {
        (Some(cert), Some(key)) => {
            crate::files::make_private(&key_path).map_err(|source| TlsError::Io {
                path: key_path.display().to_string(),
                source,
            })?;
            (cert, KeyPair::from_pem(&key)?)
        }
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            crate::files::write_private(&key_path, key.serialize_pem().as_bytes()).map_err(
                |source| TlsError::Io {
                    path: key_path.display().to_string(),
                    source,
                },
            )?;
            write(&ca_path, &cert.pem())?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let mut p = CertificateParams::new(names)?;
    p.distinguished_name
        .push(DnType::CommonName, hostname.to_string());
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = p.signed_by(&server_key, &issuer)?;

    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Devices may authenticate with a client certificate (X.509); which device it may be is
    // decided at CONNECT (`crate::x509`).
    let mqtt = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(crate::x509::RequestClientCert::new(
            provider.clone(),
        )))
        .with_single_cert(chain.clone(), key.clone_key())?;
    // Only the HTTPS listener offers ALPN: an MQTT client that sends its own ALPN id must
    // not be refused for lack of overlap.
    let mut https = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    https.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(HubTls {
        ca_pem,
        mqtt_config: Arc::new(mqtt),
        https_config: Arc::new(https),
    })
}

/// A rustls client config trusting only `ca_pem` (for tests and tools talking to fieldhub).
pub fn client_config(ca_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|source| TlsError::Io {
            path: "ca.pem".into(),
            source,
        })?;
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
