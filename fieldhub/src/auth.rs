//! Shared access policies and SAS token checks (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas): which token may act as
//! which device, and which policy grants which service permission. Pure: the caller passes
//! the current time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use iothub_proto::SasToken;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    RegistryRead,
    RegistryWrite,
    ServiceConnect,
    DeviceConnect,
}

/// A shared access policy. `Debug` hides the keys.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub primary_key: String,
    pub secondary_key: String,
    pub permissions: Vec<Permission>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

impl Policy {
    pub fn grants(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }

    fn signed(&self, token: &SasToken) -> bool {
        token.signed_with(&self.primary_key) || token.signed_with(&self.secondary_key)
    }
}

/// A fresh random 32-byte key, base64 (the size the real hub generates).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// The five policies a new hub has (https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas), with fresh keys.
pub fn default_policies() -> Vec<Policy> {
    use Permission::*;
    let mk = |name: &str, permissions: Vec<Permission>| Policy {
        name: name.to_string(),
        primary_key: generate_key(),
        secondary_key: generate_key(),
        permissions,
    };
    vec![
        mk(
            "iothubowner",
            vec![RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect],
        ),
        mk("service", vec![ServiceConnect]),
        mk("device", vec![DeviceConnect]),
        mk("registryRead", vec![RegistryRead]),
        mk("registryReadWrite", vec![RegistryRead, RegistryWrite]),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token expired")]
    Expired,
    #[error("token was issued for another host")]
    WrongHost,
    #[error("token does not cover this resource")]
    WrongResource,
    #[error("unknown policy '{0}'")]
    UnknownPolicy(String),
    #[error("policy '{0}' lacks the {1:?} permission")]
    MissingPermission(String, Permission),
    #[error("signature does not match")]
    BadSignature,
}

/// Host part of a token resource, with any `:port` removed: SDKs put `HostName` from the
/// connection string into `sr`, and fieldhub on a high port is `localhost:8443` there.
fn token_host(resource: &str) -> &str {
    let host = written_host(resource);
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn parse_checked(token: &str, hub_host: &str, now: u64) -> Result<SasToken, AuthError> {
    let t = SasToken::parse(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    if t.expiry <= now {
        return Err(AuthError::Expired);
    }
    if !token_host(&t.resource).eq_ignore_ascii_case(hub_host) {
        return Err(AuthError::WrongHost);
    }
    Ok(t)
}

/// The host as written in the token (with port), so `covers` compares like with like.
fn written_host(resource: &str) -> &str {
    resource
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("")
}

/// Whether `resource` (host and path, as in `sr`) is exactly the device `device_id`.
fn names_device(resource: &str, device_id: &str) -> bool {
    let host = written_host(resource);
    let path = resource
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .get(host.len()..)
        .unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments == ["devices", device_id]
}

/// Checks a device's connect token. `device_keys` are the device's (primary, secondary) keys.
/// Returns the token expiry (Unix seconds).
pub fn verify_device_token(
    token: &str,
    hub_host: &str,
    device_id: &str,
    device_keys: (&str, &str),
    policies: &[Policy],
    now: u64,
) -> Result<u64, AuthError> {
    let t = parse_checked(token, hub_host, now)?;
    let target = format!("{}/devices/{device_id}", written_host(&t.resource));
    if !t.covers(&target) {
        return Err(AuthError::WrongResource);
    }
    match &t.policy {
        None => {
            // A device key signs for its own device only: the resource must be
            // `{host}/devices/{deviceId}` ("Use a symmetric key in the identity registry",
            // https://learn.microsoft.com/azure/iot-hub/iot-hub-dev-guide-sas). A key that
            // could sign `sr={host}` would otherwise authorise a token wider than its device.
            if !names_device(&t.resource, device_id) {
                return Err(AuthError::WrongResource);
            }
            if t.signed_with(device_keys.0) || t.signed_with(device_keys.1) {
                Ok(t.expiry)
            } else {
                Err(AuthError::BadSignature)
            }
        }
        Some(name) => {
            let p = policies
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| AuthError::UnknownPolicy(name.clone()))?;
            if !p.grants(Permission::DeviceConnect) {
                return Err(AuthError::MissingPermission(
                    name.clone(),
                    Permission::DeviceConnect,
                ));
            }
            if p.signed(&t) {
                Ok(t.expiry)
            } else {
                Err(AuthError::BadSignature)
            }
        }
    }
}

/// Checks a service token (`Authorization` header) for one of `needed` permissions.
pub fn verify_service_token(
    token: &str,
    hub_host: &str,
    needed: &[Permission],
    policies: &[Policy],
    now: u64,
) -> Result<(), AuthError> {
    let t = parse_checked(token, hub_host, now)?;
    let name = t.policy.clone().ok_or_else(|| {
        AuthError::Malformed("service tokens must name a policy (skn)".to_string())
    })?;
    let p = policies
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| AuthError::UnknownPolicy(name.clone()))?;
    if !p.signed(&t) {
        return Err(AuthError::BadSignature);
    }
    match needed.iter().find(|n| p.grants(**n)) {
        Some(_) => Ok(()),
        None => Err(AuthError::MissingPermission(name, needed[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::sas;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const KEY2: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=";

    fn policies() -> Vec<Policy> {
        let mut ps = default_policies();
        ps[0].primary_key = KEY.into();
        ps[3].primary_key = KEY2.into();
        ps
    }

    #[test]
    fn device_key_primary_and_secondary() {
        let t = sas::generate("localhost/devices/d1", KEY2, None, 2000).unwrap();
        assert_eq!(
            verify_device_token(&t, "localhost", "d1", (KEY, KEY2), &[], 1000),
            Ok(2000)
        );
        assert_eq!(
            verify_device_token(&t, "localhost", "d1", (KEY, KEY), &[], 1000),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_device_token(&t, "localhost", "d2", (KEY, KEY2), &[], 1000),
            Err(AuthError::WrongResource)
        );
        assert_eq!(
            verify_device_token(&t, "localhost", "d1", (KEY, KEY2), &[], 2000),
            Err(AuthError::Expired)
        );
        assert_eq!(
            verify_device_token(&t, "otherhost", "d1", (KEY, KEY2), &[], 1000),
            Err(AuthError::WrongHost)
        );
    }

    /// Issue 14, item 14: a device key cannot sign a token for the whole hub (or for all
    /// devices); only `{host}/devices/{deviceId}`, as the SAS guide gives for identity-registry
    /// keys.
    #[test]
    fn device_key_tokens_must_name_the_device() {
        for wide in [
            "localhost",
            "localhost/",
            "localhost/devices",
            "localhost/devices/d1/x",
        ] {
            let t = sas::generate(wide, KEY, None, 2000).unwrap();
            assert_eq!(
                verify_device_token(&t, "localhost", "d1", (KEY, KEY2), &[], 1000),
                Err(AuthError::WrongResource),
                "{wide}"
            );
        }
        for exact in [
            "localhost/devices/d1",
            "LOCALHOST:8883/devices/d1/",
            "https://localhost/devices/d1",
        ] {
            let t = sas::generate(exact, KEY, None, 2000).unwrap();
            assert_eq!(
                verify_device_token(&t, "localhost", "d1", (KEY, KEY2), &[], 1000),
                Ok(2000),
                "{exact}"
            );
        }
    }

    #[test]
    fn device_via_policy_with_device_connect() {
        let ps = policies();
        let t = sas::generate("localhost/devices", KEY, Some("iothubowner"), 2000).unwrap();
        assert_eq!(
            verify_device_token(&t, "localhost", "d9", ("x", "y"), &ps, 1),
            Ok(2000)
        );
        let t = sas::generate("localhost", KEY2, Some("registryRead"), 2000).unwrap();
        assert!(matches!(
            verify_device_token(&t, "localhost", "d9", ("x", "y"), &ps, 1),
            Err(AuthError::MissingPermission(..))
        ));
    }

    #[test]
    fn service_permissions_and_port_in_host() {
        let ps = policies();
        let t = sas::generate("localhost:8443", KEY, Some("iothubowner"), 2000).unwrap();
        assert_eq!(
            verify_service_token(&t, "localhost", &[Permission::ServiceConnect], &ps, 1),
            Ok(())
        );
        let t = sas::generate("localhost", KEY2, Some("registryRead"), 2000).unwrap();
        assert_eq!(
            verify_service_token(&t, "localhost", &[Permission::RegistryRead], &ps, 1),
            Ok(())
        );
        assert!(matches!(
            verify_service_token(&t, "localhost", &[Permission::ServiceConnect], &ps, 1),
            Err(AuthError::MissingPermission(..))
        ));
        let dev = sas::generate("localhost/devices/d1", KEY, None, 2000).unwrap();
        assert!(matches!(
            verify_service_token(&dev, "localhost", &[Permission::RegistryRead], &ps, 1),
            Err(AuthError::Malformed(_))
        ));
        let forged = sas::generate("localhost", KEY2, Some("iothubowner"), 2000).unwrap();
        assert_eq!(
            verify_service_token(&forged, "localhost", &[Permission::RegistryRead], &ps, 1),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn generated_keys_are_32_bytes() {
        assert_eq!(B64.decode(generate_key()).unwrap().len(), 32);
    }
}
