//! Twin and direct-method routes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins, https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods): `GET/PATCH/PUT /twins/{id}` and
//! `POST /twins/{id}/methods`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{authorize, if_match, json_response, parse_json, ApiError};
use crate::auth::Permission;
use crate::error::HubError;
use crate::hub::Hub;

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/twins/{id}", get(get_twin).patch(patch_twin).put(put_twin))
        .route("/twins/{id}/methods", post(invoke))
}

type Result<T> = std::result::Result<T, ApiError>;

async fn get_twin(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::ServiceConnect])?;
    Ok(json_response(StatusCode::OK, &hub.get_twin(&id)?))
}

async fn patch_twin(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    write_twin(&hub, &headers, &id, &body, false)
}

async fn put_twin(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    write_twin(&hub, &headers, &id, &body, true)
}

/// PATCH (merge) or PUT (replace) of tags and desired properties.
fn write_twin(
    hub: &Hub,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    replace: bool,
) -> Result<Response> {
    authorize(hub, headers, &[Permission::ServiceConnect])?;
    let doc = parse_json(body)?;
    let if_match = if_match(headers);
    let twin = if replace {
        hub.replace_twin(id, doc, if_match.as_deref())?
    } else {
        hub.update_twin(id, doc, if_match.as_deref())?
    };
    Ok(json_response(StatusCode::OK, &twin))
}

/// A parsed method invocation request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invocation {
    pub name: String,
    pub payload: Value,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Method names: printable US-ASCII without `$ ( ) < > @ , ; : \ " / [ ] ? = { }`, space, tab.
fn method_name_ok(n: &str) -> bool {
    const BANNED: &str = "$()<>@,;:\\\"/[]?={} \t";
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_graphic() && !BANNED.contains(c))
}

pub(crate) fn parse_invocation(body: &Value) -> std::result::Result<Invocation, HubError> {
    let bad = |m: &str| HubError::ArgumentInvalid(m.to_string());
    let obj = body
        .as_object()
        .ok_or_else(|| bad("body must be a JSON object"))?;
    let name = obj
        .get("methodName")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("methodName is required"))?;
    if !method_name_ok(name) {
        return Err(bad("methodName contains characters that are not allowed"));
    }
    let secs = |key: &str, default: u64, min: u64| -> std::result::Result<Duration, HubError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Duration::from_secs(default)),
            Some(v) => match v.as_u64() {
                Some(s) if (min..=300).contains(&s) => Ok(Duration::from_secs(s)),
                _ => Err(bad(&format!("{key} must be an integer from {min} to 300"))),
            },
        }
    };
    Ok(Invocation {
        name: name.to_string(),
        payload: obj.get("payload").cloned().unwrap_or(Value::Null),
        // 5 to 300 s, as IoT Hub enforces ("Understand and invoke direct methods from IoT Hub",
        // https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods: "minimum
        // 5 seconds, maximum 300"); jobs check the same range. Code that passes a shorter one
        // here would be refused by Azure.
        response_timeout: secs("responseTimeoutInSeconds", 30, 5)?,
        connect_timeout: secs("connectTimeoutInSeconds", 0, 0)?,
    })
}

async fn invoke(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response> {
    authorize(&hub, &headers, &[Permission::ServiceConnect])?;
    let inv = parse_json(&body)
        .and_then(|b| parse_invocation(&b))
        .map_err(ApiError::method)?;
    let resp = hub
        .invoke_method(
            &id,
            &inv.name,
            inv.payload,
            inv.response_timeout,
            inv.connect_timeout,
        )
        .await
        .map_err(ApiError::method)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"status": resp.status, "payload": resp.payload}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations() {
        let i = parse_invocation(&json!({"methodName": "lockDoor", "payload": {"a": 1},
            "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 0}))
        .unwrap();
        assert_eq!(i.response_timeout, Duration::from_secs(5));
        assert_eq!(i.payload, json!({"a": 1}));
        let d = parse_invocation(&json!({"methodName": "x"})).unwrap();
        assert_eq!(
            (d.response_timeout, d.connect_timeout, d.payload),
            (Duration::from_secs(30), Duration::ZERO, Value::Null)
        );
        assert!(parse_invocation(&json!({"payload": 1})).is_err());
        assert!(parse_invocation(&json!({"methodName": "a/b"})).is_err());
        assert!(
            parse_invocation(&json!({"methodName": "a", "responseTimeoutInSeconds": 301})).is_err()
        );
        // Issue 14, item 7: below IoT Hub's documented minimum of 5 s.
        for short in [0, 1, 4] {
            let e =
                parse_invocation(&json!({"methodName": "a", "responseTimeoutInSeconds": short}))
                    .unwrap_err();
            assert_eq!(e.name(), "ArgumentInvalid", "{short}");
        }
        assert!(
            parse_invocation(&json!({"methodName": "a", "responseTimeoutInSeconds": "5"})).is_err()
        );
    }
}
