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

/// How an enrollment's devices prove who they are. Only `symmetricKey` is served; an X.509
/// attestation is refused with a clear error when the enrollment is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKey>,
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
pub struct RegisterRequest {
    #[serde(default)]
    pub registration_id: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
}
