//! The Device Provisioning Service's wire shapes, as its service REST API and device MQTT API
//! write them (Microsoft Learn, "Azure IoT Hub Device Provisioning Service REST API",
//! `EnrollmentGroup`, `IndividualEnrollment`, `DeviceRegistrationState`; "Provision devices
//! using MQTT", `RegistrationOperationStatus`). Unknown members are ignored, as the service
//! ignores read-only ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `enabled` or `disabled` (a revoked enrollment: its devices can no longer register).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisioningStatus {
    #[default]
    Enabled,
    Disabled,
}

/// A pair of base64 keys. `Debug` hides them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    #[serde(default)]
    pub primary_key: String,
    #[serde(default)]
    pub secondary_key: String,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(***)")
    }
}

/// How an enrollment's devices prove who they are: `symmetricKey`, or for enrollment groups
/// `x509` with a signing (CA or intermediate) certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
}

/// `x509.signingCertificates.{primary,secondary}.certificate`: PEM, or base64 DER.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct X509Certificates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509Certificate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509Certificate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct X509Certificate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl Attestation {
    /// The signing certificates (DER) of an `x509` attestation.
    pub fn signing_certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        let Some(c) = self
            .x509
            .as_ref()
            .and_then(|x| x.signing_certificates.as_ref())
        else {
            return Vec::new();
        };
        [&c.primary, &c.secondary]
            .into_iter()
            .flatten()
            .filter_map(|c| c.certificate.as_deref())
            .flat_map(decode_certificate)
            .collect()
    }
}

/// A certificate as the service API carries it: PEM, or base64 of the DER.
pub(super) fn decode_certificate(text: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use base64::Engine as _;
    if text.contains("-----BEGIN") {
        return rustls_pemfile::certs(&mut text.as_bytes())
            .filter_map(Result::ok)
            .collect();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(|der| vec![rustls::pki_types::CertificateDer::from(der)])
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    pub enrollment_group_id: String,
    pub attestation: Attestation,
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    /// `{"tags": {…}, "properties": {"desired": {…}}}`: what a new device's twin starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<Value>,
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub created_date_time_utc: String,
    #[serde(default)]
    pub last_updated_date_time_utc: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    pub registration_id: String,
    /// The device id to create; the registration id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub attestation: Attestation,
    #[serde(default)]
    pub provisioning_status: ProvisioningStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<Value>,
    #[serde(default)]
    pub etag: String,
    #[serde(default)]
    pub created_date_time_utc: String,
    #[serde(default)]
    pub last_updated_date_time_utc: String,
}

/// Where a registration stands (`status`): `assigned`, `failed` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationStatus {
    Unassigned,
    Assigning,
    Assigned,
    Failed,
    Disabled,
}

/// The outcome of a device's last registration, as the device and the service API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationState {
    pub registration_id: String,
    pub created_date_time_utc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub status: RegistrationStatus,
    /// `initialAssignment`, `deviceDataMigrated`, `reprovisionedToInitialAssignment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub last_updated_date_time_utc: String,
    pub etag: String,
    /// The device's registration payload (custom data such as a model id), kept so the
    /// service side can see what the device sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The group the device registered through (what `POST /registrations/{group}/query`
    /// lists); absent for an individual enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
}

/// The register request a device publishes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterRequest {
    #[serde(default)]
    pub registration_id: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
}
