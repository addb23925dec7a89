//! One registration with the Device Provisioning Service over MQTT (Microsoft Learn, "Provision
//! devices using MQTT"): CONNECT as `{idScope}/registrations/{registrationId}/api-version=…`
//! with a SAS token for `{idScope}/registrations/{registrationId}`, SUBSCRIBE
//! `$dps/registrations/res/#`, PUBLISH the register request, then poll the operation status
//! as often as `retry-after` says until it is assigned, failed or disabled.
//!
//! The caller's task owns the connection for the whole exchange; every step has a deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, ConnectionError, Event, Packet, QoS};
use rustls::ClientConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{sleep_until, timeout_at, Instant};

use iothub_proto::sas;

use crate::link::transport::Chosen;
use crate::link::ProxyConfig;

/// The DPS MQTT API version (the one in Microsoft's MQTT provisioning guide).
pub const API_VERSION: &str = "2019-03-31";
/// Polling interval when the service gives no `retry-after`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Longest wait the service may ask for before a poll (a longer one is capped).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Lifetime of the registration SAS token.
const TOKEN_LIFETIME: u64 = 3600;

/// Where the service assigned a door.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// A host name on Azure; `host:port` from fieldhub in tests.
    pub assigned_hub: String,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpsError {
    /// Turned away at CONNECT: unknown ID scope, a key no enrollment accepts, or revoked.
    #[error("the provisioning service refused the registration credentials ({0:?}): check [dps] id_scope, the group key and that the enrollment group exists and is enabled")]
    Refused(rumqttc::ConnectReturnCode),
    /// The registration ended `failed` or `disabled`.
    #[error("registration {status}: {message} (error code {code})")]
    Failed {
        status: String,
        code: u64,
        message: String,
    },
    #[error("the provisioning service answered {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("the provisioning service is throttling registrations; retry after {0:?}")]
    Throttled(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("no answer from the provisioning service within {0:?}")]
    Timeout(Duration),
    #[error("invalid registration settings: {0}")]
    Config(String),
}

impl DpsError {
    /// The metric label of a failed registration.
    pub fn label(&self) -> &'static str {
        match self {
            DpsError::Refused(_) => "refused",
            DpsError::Failed { .. } => "failed",
            DpsError::Throttled(_) => "throttled",
            _ => "error",
        }
    }
}

/// A response topic: `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub rid: String,
    pub retry_after: Option<Duration>,
}

pub fn parse_response_topic(topic: &str) -> Option<Response> {
    let rest = topic.strip_prefix("$dps/registrations/res/")?;
    let (status, query) = rest.split_once("/?")?;
    let status = status.parse().ok()?;
    let mut rid = None;
    let mut retry_after = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("$rid", v)) => rid = Some(v.to_string()),
            Some(("retry-after", v)) => retry_after = v.parse().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    Some(Response {
        status,
        rid: rid?,
        retry_after,
    })
}

/// The body of a register or status response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationStatus {
    operation_id: Option<String>,
    status: Option<String>,
    registration_state: Option<RegistrationState>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationState {
    assigned_hub: Option<String>,
    device_id: Option<String>,
    error_code: Option<u64>,
    error_message: Option<String>,
}

/// What a response says to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Poll `operation_id` after the wait.
    Poll {
        operation_id: String,
        after: Duration,
    },
    Done(Assignment),
}

/// Interprets one response (pure).
pub fn interpret(resp: &Response, body: &[u8], operation: Option<&str>) -> Result<Next, DpsError> {
    let after = resp
        .retry_after
        .unwrap_or(DEFAULT_RETRY_AFTER)
        .min(MAX_RETRY_AFTER);
    if resp.status == 429 {
        return Err(DpsError::Throttled(after));
    }
    if resp.status >= 300 {
        return Err(DpsError::Rejected {
            status: resp.status,
            body: String::from_utf8_lossy(body).chars().take(300).collect(),
        });
    }
    let op: OperationStatus = serde_json::from_slice(body).map_err(|e| DpsError::Rejected {
        status: resp.status,
        body: format!("not an operation status: {e}"),
    })?;
    let state = op.registration_state.unwrap_or_default();
    match op.status.as_deref() {
        Some("assigned") => match (state.assigned_hub, state.device_id) {
            (Some(assigned_hub), Some(device_id)) => Ok(Next::Done(Assignment {
                assigned_hub,
                device_id,
            })),
            _ => Err(DpsError::Rejected {
                status: resp.status,
                body: "assigned without a hub or device id".into(),
            }),
        },
        Some(s @ ("failed" | "disabled")) => Err(DpsError::Failed {
            status: s.to_string(),
            code: state.error_code.unwrap_or(0),
            message: state
                .error_message
                .unwrap_or_else(|| "no message".to_string()),
        }),
        _ => match op.operation_id.as_deref().or(operation) {
            Some(id) => Ok(Next::Poll {
                operation_id: id.to_string(),
                after,
            }),
            None => Err(DpsError::Rejected {
                status: resp.status,
                body: "no operation id to poll".into(),
            }),
        },
    }
}

/// How to reach the service.
#[derive(Clone)]
pub struct Endpoint {
    pub id_scope: String,
    pub host_name: String,
    pub port: u16,
    pub tls: Arc<ClientConfig>,
    pub websocket_port: u16,
    pub proxy: Option<ProxyConfig>,
    /// Deadline of the whole exchange, waits included.
    pub timeout: Duration,
    pub keep_alive: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id_scope", &self.id_scope)
            .field("host_name", &self.host_name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// How a door proves its registration id.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// A SAS token signed with the device key (group-derived or its own).
    Key(&'a str),
    /// The client certificate in `tls` (CN = registration id); no password.
    Certificate,
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Key(_) => "Key(***)",
            Credential::Certificate => "Certificate",
        })
    }
}

/// Registers `registration_id`, sending `payload` as custom data; `tls` is the door's TLS
/// configuration (its client certificate for X.509), `ep.tls` when `None`.
pub async fn register(
    ep: &Endpoint,
    transport: Chosen,
    tls: Option<&Arc<ClientConfig>>,
    registration_id: &str,
    credential: Credential<'_>,
    payload: Option<&Value>,
) -> Result<Assignment, DpsError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resource = format!("{}/registrations/{registration_id}", ep.id_scope);
    let password = match credential {
        Credential::Key(key) => {
            sas::generate(&resource, key, Some("registration"), now + TOKEN_LIFETIME)
                .map_err(|e| DpsError::Config(e.to_string()))?
        }
        Credential::Certificate => String::new(),
    };
    let client_version = sas::encode(&format!("fieldgate/{}", env!("CARGO_PKG_VERSION")));
    let username = format!("{resource}/api-version={API_VERSION}&ClientVersion={client_version}");
    let mut opts = crate::link::conn::mqtt_options(
        registration_id,
        &ep.host_name,
        ep.port,
        tls.unwrap_or(&ep.tls),
        transport,
        ep.websocket_port,
        ep.proxy.as_ref(),
    );
    opts.set_credentials(username, password)
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(ep.keep_alive.as_secs().max(5)));
    let (client, mut eventloop) = AsyncClient::new(opts, 8);
    let mut net = eventloop.network_options();
    net.set_connection_timeout(ep.timeout.as_secs().max(1));
    eventloop.set_network_options(net);

    let deadline = Instant::now() + ep.timeout;
    let mut rid: u64 = 0;
    let mut operation: Option<String> = None;
    // When to send the next request (register first, then status polls).
    let mut send_at: Option<Instant> = None;
    let request = json!({"registrationId": registration_id, "payload": payload}).to_string();
    let result = loop {
        let wake = async {
            match send_at {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            () = wake => {
                send_at = None;
                rid += 1;
                let (topic, body) = match &operation {
                    None => (format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}"), request.clone()),
                    Some(op) => (format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"), String::new()),
                };
                if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, body) {
                    break Err(DpsError::Transport(e.to_string()));
                }
                continue;
            }
            r = timeout_at(deadline, eventloop.poll()) => match r {
                Err(_) => break Err(DpsError::Timeout(ep.timeout)),
                Ok(Err(ConnectionError::ConnectionRefused(code))) => break Err(DpsError::Refused(code)),
                Ok(Err(e)) => break Err(DpsError::Transport(crate::link::conn::describe(&e))),
                Ok(Ok(ev)) => ev,
            },
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Err(e) = client.try_subscribe("$dps/registrations/res/#", QoS::AtLeastOnce) {
                    break Err(DpsError::Transport(e.to_string()));
                }
            }
            Event::Incoming(Packet::SubAck(_)) => send_at = Some(Instant::now()),
            Event::Incoming(Packet::Publish(p)) => {
                let Some(resp) = parse_response_topic(&p.topic) else {
                    continue;
                };
                if resp.rid != rid.to_string() {
                    continue;
                }
                match interpret(&resp, &p.payload, operation.as_deref()) {
                    Ok(Next::Done(a)) => break Ok(a),
                    Ok(Next::Poll {
                        operation_id,
                        after,
                    }) => {
                        operation = Some(operation_id);
                        send_at = Some(Instant::now() + after);
                    }
                    // Throttled mid-exchange: the same request again, after the wait.
                    Err(DpsError::Throttled(after)) if Instant::now() + after < deadline => {
                        send_at = Some(Instant::now() + after);
                    }
                    Err(e) => break Err(e),
                }
            }
            _ => {}
        }
    };
    let _ = client.try_disconnect();
    // Let the DISCONNECT out, briefly; the service drops idle clients anyway.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, retry: Option<u64>) -> Response {
        Response {
            status,
            rid: "1".into(),
            retry_after: retry.map(Duration::from_secs),
        }
    }

    #[test]
    fn response_topics() {
        assert_eq!(
            parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3"),
            Some(resp(202, Some(3)))
        );
        assert_eq!(
            parse_response_topic("$dps/registrations/res/200/?$rid=1"),
            Some(resp(200, None))
        );
        assert_eq!(parse_response_topic("$iothub/twin/res/200/?$rid=1"), None);
    }

    #[test]
    fn outcomes() {
        let assigning = br#"{"operationId":"op","status":"assigning"}"#;
        assert_eq!(
            interpret(&resp(202, Some(3)), assigning, None).unwrap(),
            Next::Poll {
                operation_id: "op".into(),
                after: Duration::from_secs(3)
            }
        );
        let assigned = br#"{"operationId":"op","status":"assigned","registrationState":{"assignedHub":"localhost:1234","deviceId":"door-1","status":"assigned"}}"#;
        assert_eq!(
            interpret(&resp(200, None), assigned, Some("op")).unwrap(),
            Next::Done(Assignment {
                assigned_hub: "localhost:1234".into(),
                device_id: "door-1".into()
            })
        );
        let disabled = br#"{"operationId":"op","status":"disabled","registrationState":{"status":"disabled","errorCode":401002,"errorMessage":"the enrollment is disabled"}}"#;
        assert!(matches!(
            interpret(&resp(200, None), disabled, Some("op")),
            Err(DpsError::Failed { code: 401002, .. })
        ));
        assert_eq!(
            interpret(&resp(429, Some(600)), b"", None).unwrap_err(),
            DpsError::Throttled(MAX_RETRY_AFTER)
        );
        assert!(matches!(
            interpret(&resp(401, None), b"{}", None),
            Err(DpsError::Rejected { status: 401, .. })
        ));
    }
}
