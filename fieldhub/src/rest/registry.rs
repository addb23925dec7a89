//! Device registry routes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry): `PUT/GET/DELETE /devices/{id}`, `GET /devices`
//! and `/devices/`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{authorize, if_match, json_response, parse_json, ApiError};
use crate::auth::Permission;
use crate::error::HubError;
use crate::hub::{DeviceUpdate, Hub};
use crate::x509::AuthType;

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/", get(list))
        .route(
            "/devices/{id}",
            get(get_device).put(put_device).delete(delete_device),
        )
}

type Result<T> = std::result::Result<T, ApiError>;

async fn list(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::RegistryRead])?;
    let top = q.get("top").and_then(|t| t.parse().ok());
    Ok(json_response(
        StatusCode::OK,
        &Value::Array(hub.list_devices(top)),
    ))
}

async fn get_device(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::RegistryRead])?;
    Ok(json_response(StatusCode::OK, &hub.device_json(&id)?))
}

/// Reads the writable fields of a Device body (unknown fields are ignored, as the hub does
/// with read-only ones like `etag` or `connectionState`).
fn device_update(id: &str, body: &Value) -> std::result::Result<DeviceUpdate, HubError> {
    let bad = |m: &str| HubError::ArgumentInvalid(m.to_string());
    let obj = body
        .as_object()
        .ok_or_else(|| bad("device must be a JSON object"))?;
    if let Some(d) = obj.get("deviceId").and_then(Value::as_str) {
        if d != id {
            return Err(bad("deviceId in the body differs from the URL"));
        }
    }
    let enabled = match obj.get("status") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("enabled") => Some(true),
            Some("disabled") => Some(false),
            _ => return Err(bad("status must be 'enabled' or 'disabled'")),
        },
    };
    let auth = obj.get("authentication");
    let thumb = |name: &str| {
        auth.and_then(|a| a.get("x509Thumbprint"))
            .and_then(|k| k.get(name))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    };
    let auth_type = match auth.and_then(|a| a.get("type")).and_then(Value::as_str) {
        None => None,
        Some(t) if t.eq_ignore_ascii_case("sas") => Some(AuthType::Sas),
        Some(t) if t.eq_ignore_ascii_case("selfSigned") => {
            let (primary, secondary) = (thumb("primaryThumbprint"), thumb("secondaryThumbprint"));
            if primary.is_none() && secondary.is_none() {
                return Err(bad(
                    "authentication type 'selfSigned' needs x509Thumbprint.primaryThumbprint",
                ));
            }
            Some(AuthType::SelfSigned { primary, secondary })
        }
        Some(t) if t.eq_ignore_ascii_case("certificateAuthority") => {
            Some(AuthType::CertificateAuthority)
        }
        Some(t) => {
            return Err(bad(&format!(
                "authentication type '{t}' is not supported (sas, selfSigned, certificateAuthority)"
            )))
        }
    };
    let key = |name: &str| {
        auth.and_then(|a| a.get("symmetricKey"))
            .and_then(|k| k.get(name))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    };
    Ok(DeviceUpdate {
        enabled,
        status_reason: obj
            .get("statusReason")
            .and_then(Value::as_str)
            .map(str::to_string),
        primary_key: key("primaryKey"),
        secondary_key: key("secondaryKey"),
        iot_edge: obj
            .get("capabilities")
            .and_then(|c| c.get("iotEdge"))
            .and_then(Value::as_bool),
        auth: auth_type,
    })
}

async fn put_device(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::RegistryWrite])?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&body)?
    };
    let upd = device_update(&id, &body)?;
    hub.upsert_device(&id, upd, if_match(&headers).as_deref())?;
    Ok(json_response(StatusCode::OK, &hub.device_json(&id)?))
}

async fn delete_device(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::RegistryWrite])?;
    hub.delete_device(&id, if_match(&headers).as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bodies() {
        let u = device_update(
            "d",
            &json!({"deviceId": "d", "status": "disabled",
                    "authentication": {"type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": "QUJD"}},
                    "capabilities": {"iotEdge": false}}),
        )
        .unwrap();
        assert_eq!(u.enabled, Some(false));
        assert_eq!(u.primary_key, None);
        assert_eq!(u.secondary_key.as_deref(), Some("QUJD"));
        assert!(device_update("d", &json!({"deviceId": "e"})).is_err());
        assert!(device_update("d", &json!({"status": "odd"})).is_err());
        assert!(device_update("d", &json!([])).is_err());
    }
}
