//! What can go wrong talking to the service API: [`ServiceError`], the hub's error envelopes
//! (<https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes>) decoded into a
//! status, a code name and a message; and [`ClientError`], which adds the failures that never
//! got an answer (transport, TLS, signing) or got one that does not parse.

use iothub_proto::sas;
use serde_json::Value;

/// Everything a [`ServiceClient`](super::ServiceClient) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot reach the hub at {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("unexpected answer from the hub to {request}: {detail}")]
    Decode { request: String, detail: String },
    #[error("cannot sign the request: {0}")]
    Sign(#[from] sas::SasError),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The hub's answer, when it gave one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            ClientError::Service(s) => Some(s),
            _ => None,
        }
    }

    /// Worth trying again later: the hub could not be reached or failed on its side (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Service(s) => s.status >= 500,
            _ => false,
        }
    }
}

/// An error answer from the hub: HTTP status, the hub's error code name when it gave one
/// (`DeviceNotFound`, `ThrottlingMaxActiveJobCountExceeded`, …) and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ServiceError {
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
}

impl ServiceError {
    /// Decodes an error response. `header_code` is the `iothub-errorcode` header. Understands
    /// envelope A (`{"Message":"ErrorCode:Name;text"}`), envelope B (`Message` holding a JSON
    /// string with a numeric `errorCode`), a bare `{"errorCode":…,"message":…}`, and falls back
    /// to the body text.
    pub fn from_response(status: u16, header_code: Option<&str>, body: &str) -> Self {
        let (body_code, message) = parse_envelope(body);
        let code = header_code
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .or(body_code);
        ServiceError {
            status,
            code,
            message,
        }
    }

    /// True for `DeviceNotFound`/`JobNotFound`-style answers.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    fn render(&self) -> String {
        let mut s = format!("hub answered {}", self.status);
        if let Some(c) = &self.code {
            s.push(' ');
            s.push_str(c);
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

/// Returns (code name, message) from an error body.
fn parse_envelope(body: &str) -> (Option<String>, String) {
    let text = body.trim();
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return (None, one_line(text));
    };
    let message = v
        .get("Message")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str);
    if let Some(m) = message {
        // Envelope B: the Message is itself JSON.
        if let Ok(inner) = serde_json::from_str::<Value>(m) {
            if inner.is_object() {
                return from_inner(&inner);
            }
        }
        // Envelope A: "ErrorCode:Name;text".
        if let Some(rest) = m.strip_prefix("ErrorCode:") {
            let (name, text) = rest.split_once(';').unwrap_or((rest, ""));
            return (Some(name.trim().to_string()), one_line(text.trim()));
        }
        return (None, one_line(m));
    }
    if v.get("errorCode").is_some() {
        return from_inner(&v);
    }
    (None, one_line(text))
}

fn from_inner(inner: &Value) -> (Option<String>, String) {
    let code = match inner.get("errorCode") {
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| code_name(n).map_or_else(|| n.to_string(), str::to_string)),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let message = inner
        .get("message")
        .or_else(|| inner.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    (code, one_line(message))
}

/// Names of the numeric error codes in https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes.
pub fn code_name(code: u64) -> Option<&'static str> {
    Some(match code {
        400001 => "InvalidProtocolVersion",
        400003 => "InvalidOperation",
        400004 => "ArgumentInvalid",
        400005 => "ArgumentNull",
        400006 => "IotHubFormatError",
        401002 => "IotHubUnauthorizedAccess",
        403002 => "IotHubQuotaExceeded",
        403004 => "DeviceMaximumQueueDepthExceeded",
        404001 => "DeviceNotFound",
        404002 => "JobNotFound",
        404010 => "ModuleNotFound",
        404103 => "DeviceNotOnline",
        409001 => "DeviceAlreadyExists",
        412001 => "PreconditionFailed",
        413001 => "MessageTooLarge",
        429001 => "ThrottlingException",
        429002 => "ThrottleBacklogLimitExceeded",
        429003 => "ThrottlingBacklogTimeout",
        429004 => "ThrottlingMaxActiveJobCountExceeded",
        429005 => "DeviceThrottlingLimitExceeded",
        500001 => "ServerError",
        503001 => "ServiceUnavailable",
        504101 => "GatewayTimeout",
        _ => return None,
    })
}

/// Collapses whitespace runs (newlines included) so every error stays one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_a() {
        let body = r#"{"Message":"ErrorCode:DeviceNotFound;Device door-9 not found.","ExceptionMessage":"Tracking ID:abc-G:0-TimeStamp:11/12/2019"}"#;
        let e = ServiceError::from_response(404, Some("DeviceNotFound"), body);
        assert_eq!(
            e,
            ServiceError {
                status: 404,
                code: Some("DeviceNotFound".into()),
                message: "Device door-9 not found.".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "hub answered 404 DeviceNotFound: Device door-9 not found."
        );
        // Without the header, the code comes from the body.
        let e = ServiceError::from_response(404, None, body);
        assert_eq!(e.code.as_deref(), Some("DeviceNotFound"));
    }

    #[test]
    fn envelope_b() {
        let body = r#"{"Message":"{\"errorCode\":404103,\"trackingId\":\"x\",\"message\":\"Timed out waiting for device to connect.\",\"info\":{\"timeout\":\"00:00:00\"},\"timestampUtc\":\"2019-11-12T22:27:46.5615872Z\"}","ExceptionMessage":""}"#;
        let e = ServiceError::from_response(404, None, body);
        assert_eq!(e.code.as_deref(), Some("DeviceNotOnline"));
        assert_eq!(e.message, "Timed out waiting for device to connect.");
        // The header wins when present.
        let e = ServiceError::from_response(404, Some("DeviceNotOnline"), body);
        assert_eq!(
            e.to_string(),
            "hub answered 404 DeviceNotOnline: Timed out waiting for device to connect."
        );
        // Unknown numeric codes stay numeric.
        let e = ServiceError::from_response(
            400,
            None,
            r#"{"Message":"{\"errorCode\":400999,\"message\":\"x\"}"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("400999"));
    }

    #[test]
    fn other_bodies() {
        let e = ServiceError::from_response(
            400,
            Some("ArgumentInvalid"),
            r#"{"errorCode":400004,"message":"Syntax error at line 1,\n column 23"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("ArgumentInvalid"));
        assert_eq!(e.message, "Syntax error at line 1, column 23");
        let e = ServiceError::from_response(502, None, "Bad gateway\n");
        assert_eq!(e.to_string(), "hub answered 502: Bad gateway");
        let e = ServiceError::from_response(500, None, "");
        assert_eq!(e.to_string(), "hub answered 500");
        let e = ServiceError::from_response(400, None, r#"{"Message":"plain words"}"#);
        assert_eq!((e.code, e.message.as_str()), (None, "plain words"));
    }
}
