//! X.509 device authentication (Microsoft Learn, "Authenticate identities with X.509
//! certificates"): the device presents a client certificate in the TLS handshake and no
//! password at CONNECT. A `selfSigned` device is accepted when the certificate's SHA-1 or
//! SHA-256 thumbprint is one registered for it; a `certificateAuthority` device when the chain
//! ends at a CA registered with the hub and the leaf's common name is the device id.
//!
//! The TLS layer only asks for a certificate and checks that the client holds its key
//! ([`RequestClientCert`]); which device a certificate may be is decided at CONNECT, when the
//! device id is known, as IoT Hub does.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};

/// How a device authenticates (the registry's `authentication.type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    #[default]
    Sas,
    /// Registered thumbprints (SHA-1 or SHA-256, hex).
    SelfSigned {
        primary: Option<String>,
        secondary: Option<String>,
    },
    /// A chain to a CA registered with the hub, CN = device id.
    CertificateAuthority,
}

impl AuthType {
    pub fn name(&self) -> &'static str {
        match self {
            AuthType::Sas => "sas",
            AuthType::SelfSigned { .. } => "selfSigned",
            AuthType::CertificateAuthority => "certificateAuthority",
        }
    }
}

/// Hex (upper case) of the certificate's SHA-1 and SHA-256 digests.
pub fn thumbprints(der: &[u8]) -> (String, String) {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02X}")).collect::<String>();
    (
        hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref()),
        hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
    )
}

/// Whether `der`'s thumbprint is `registered` (either digest, case and `:` ignored).
pub fn thumbprint_matches(der: &[u8], registered: &str) -> bool {
    let want: String = registered
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let (sha1, sha256) = thumbprints(der);
    !want.is_empty() && (want == sha1 || want == sha256)
}

pub use iothub_proto::x509::subject_cn;

/// Verifies that `chain` (leaf first) ends at one of `cas` (DER) and is valid now.
pub fn chains_to(chain: &[CertificateDer<'static>], cas: &[CertificateDer<'static>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let _ = roots.add(ca.clone());
    }
    if roots.is_empty() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
    else {
        return false;
    };
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .is_ok()
}

/// Asks every client for a certificate (optional) and checks it holds the key; accepts any
/// certificate, since which device it may be is decided at CONNECT.
#[derive(Debug)]
pub struct RequestClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl RequestClientCert {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        RequestClientCert { provider }
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_and_thumbprints() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "fieldgate");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "door-7");
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(subject_cn(cert.der()).as_deref(), Some("door-7"));
        let end = iothub_proto::x509::not_after(cert.der()).unwrap();
        let want = p.not_after.unix_timestamp();
        assert_eq!(end, want);
        let (sha1, sha256) = thumbprints(cert.der());
        assert_eq!((sha1.len(), sha256.len()), (40, 64));
        assert!(thumbprint_matches(cert.der(), &sha1.to_lowercase()));
        assert!(thumbprint_matches(cert.der(), &sha256));
        assert!(!thumbprint_matches(cert.der(), ""));
        assert!(!thumbprint_matches(cert.der(), &"0".repeat(40)));
    }

    #[test]
    fn the_hub_checks_thumbprints_chains_and_common_names() {
        use crate::hub::{DeviceUpdate, Hub};
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open_offline(dir.path(), "h").unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(vec![]).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "ca");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        hub.add_ca_certificate("ca", &ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf = |cn: &str| {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            vec![CertificateDer::from(
                p.signed_by(&k, &issuer).unwrap().der().to_vec(),
            )]
        };
        let register = |id: &str, auth: AuthType| {
            let upd = DeviceUpdate {
                auth: Some(auth),
                ..DeviceUpdate::default()
            };
            hub.upsert_device(id, upd, None).unwrap();
        };
        register("door-7", AuthType::CertificateAuthority);
        assert!(hub.authorize_device_x509("door-7", &leaf("door-7")).is_ok());
        // Signed by the CA, but for another device.
        assert!(hub
            .authorize_device_x509("door-7", &leaf("door-8"))
            .is_err());
        let mine = leaf("door-9");
        let (_, sha256) = thumbprints(&mine[0]);
        register(
            "door-9",
            AuthType::SelfSigned {
                primary: Some("00".repeat(32)),
                secondary: Some(sha256),
            },
        );
        assert!(hub.authorize_device_x509("door-9", &mine).is_ok());
        assert!(hub
            .authorize_device_x509("door-9", &leaf("door-9"))
            .is_err());
        hub.create_device("door-sas").unwrap();
        assert!(hub
            .authorize_device_x509("door-sas", &leaf("door-sas"))
            .is_err());
    }
}
