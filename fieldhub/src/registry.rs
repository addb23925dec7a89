//! Device identities (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry): ids, keys, status, etag, and their JSON rendering.
//! Pure; the hub owns the table of identities.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::HubError;

/// Timestamp the hub shows for "never".
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// A device identity. `Debug` hides the keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub generation_id: String,
    /// Counter; rendered as base64 of its decimal string, as the real hub does.
    pub etag: u64,
    /// `true` = "enabled"; a disabled device cannot connect.
    pub enabled: bool,
    pub status_reason: Option<String>,
    pub status_updated: Option<String>,
    pub primary_key: String,
    pub secondary_key: String,
    pub iot_edge: bool,
    /// SAS keys (the default) or an X.509 certificate.
    #[serde(default)]
    pub auth: crate::x509::AuthType,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .field("enabled", &self.enabled)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}

/// deviceId rules: ≤128 ASCII alphanumerics plus `- : . + % _ # * ? ! ( ) , = @ ; $ '`.
pub fn validate_device_id(id: &str) -> Result<(), HubError> {
    const EXTRA: &str = "-:.+%_#*?!(),=@;$'";
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(c))
    {
        return Err(HubError::ArgumentInvalid(format!(
            "device id '{id}' is invalid: 1-128 ASCII letters, digits or -:.+%_#*?!(),=@;$'"
        )));
    }
    Ok(())
}

/// A key given by a client must be base64 of 16-64 bytes.
pub fn validate_key(key: &str) -> Result<(), HubError> {
    match B64.decode(key) {
        Ok(b) if (16..=64).contains(&b.len()) => Ok(()),
        _ => Err(HubError::ArgumentInvalid(
            "symmetric keys must be base64 of 16 to 64 bytes".to_string(),
        )),
    }
}

impl DeviceIdentity {
    pub fn new(device_id: &str, primary_key: String, secondary_key: String) -> Self {
        DeviceIdentity {
            device_id: device_id.to_string(),
            generation_id: format!(
                "{}",
                chrono::Utc::now().timestamp_micros().unsigned_abs() * 10
            ),
            etag: 1,
            enabled: true,
            status_reason: None,
            status_updated: None,
            primary_key,
            secondary_key,
            iot_edge: false,
            auth: crate::x509::AuthType::Sas,
        }
    }

    pub fn etag_string(&self) -> String {
        B64.encode(self.etag.to_string())
    }

    pub fn status_str(&self) -> &'static str {
        if self.enabled {
            "enabled"
        } else {
            "disabled"
        }
    }

    /// The registry's Device JSON (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry).
    pub fn to_json(&self, connected: bool, last_activity: Option<&str>) -> Value {
        json!({
            "deviceId": self.device_id,
            "generationId": self.generation_id,
            "etag": self.etag_string(),
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "status": self.status_str(),
            "statusReason": self.status_reason,
            "connectionStateUpdatedTime": NEVER,
            "statusUpdatedTime": self.status_updated.as_deref().unwrap_or(NEVER),
            "lastActivityTime": last_activity.unwrap_or(NEVER),
            "cloudToDeviceMessageCount": 0,
            "authentication": {
                "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": match &self.auth {
                    crate::x509::AuthType::SelfSigned { primary, secondary } => json!({"primaryThumbprint": primary, "secondaryThumbprint": secondary}),
                    _ => json!({"primaryThumbprint": null, "secondaryThumbprint": null}),
                },
                "type": self.auth.name()
            },
            "capabilities": {"iotEdge": self.iot_edge},
            "deviceScope": null
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(validate_device_id("door-01").is_ok());
        assert!(validate_device_id("a:b.c+d%e_f#g*h?i!(j),k=l@m;n$o'p").is_ok());
        assert!(validate_device_id("").is_err());
        assert!(validate_device_id("a/b").is_err());
        assert!(validate_device_id("a b").is_err());
        assert!(validate_device_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn json_shape_and_etag() {
        let d = DeviceIdentity::new("d1", "pk".into(), "sk".into());
        assert_eq!(d.etag_string(), "MQ==");
        let j = d.to_json(true, None);
        assert_eq!(j["connectionState"], "Connected");
        assert_eq!(j["authentication"]["symmetricKey"]["primaryKey"], "pk");
        assert!(!format!("{d:?}").contains("pk"));
    }
}
