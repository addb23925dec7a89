//! One registration client's MQTT session (Microsoft Learn, "Provision devices using MQTT"):
//! CONNECT checked against the enrollments, then `$dps/registrations/PUT/iotdps-register/`
//! answered `202` with an operation id and `retry-after`, and
//! `$dps/registrations/GET/iotdps-get-operationstatus/` answered `200` with the registration
//! state. The task that accepted the connection owns it to the end.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use rumqttc::mqttbytes::v4::{
    Codec, ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_util::codec::Framed;

use super::model::{RegisterRequest, RegistrationState, RegistrationStatus};
use super::{Enrollment, RETRY_AFTER_SECS};
use crate::hub::Hub;

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Without a keep-alive, a silent client is dropped after this long.
const IDLE_LIMIT: Duration = Duration::from_secs(240);

const REGISTER_PREFIX: &str = "$dps/registrations/PUT/iotdps-register/";
const STATUS_PREFIX: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";

/// A request topic's query parameters (`?$rid=…&operationId=…`).
fn params(topic: &str) -> Vec<(&str, &str)> {
    topic
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn param<'a>(ps: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    ps.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// What a request on the session gets back: status, body, and the `retry-after` to add.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

fn error(status: u16, code: u32, message: &str) -> Reply {
    Reply {
        status,
        body: json!({"errorCode": code, "trackingId": uuid::Uuid::new_v4().to_string(), "message": message, "timestampUtc": crate::hub::now_iso()}),
        retry_after: None,
    }
}

fn outcome(op: &str, state: &RegistrationState) -> Value {
    let status = match state.status {
        RegistrationStatus::Assigned => "assigned",
        RegistrationStatus::Failed => "failed",
        RegistrationStatus::Disabled => "disabled",
        RegistrationStatus::Assigning => "assigning",
        RegistrationStatus::Unassigned => "unassigned",
    };
    json!({"operationId": op, "status": status, "registrationState": state})
}

/// Answers one request topic of `registration_id`'s session.
pub(crate) fn handle(
    hub: &Hub,
    who: &Enrollment,
    registration_id: &str,
    topic: &str,
    body: &[u8],
) -> Option<(String, Reply)> {
    let ps = params(topic);
    let rid = param(&ps, "$rid")?.to_string();
    let reply = if topic.starts_with(REGISTER_PREFIX) {
        match serde_json::from_slice::<RegisterRequest>(body) {
            Err(e) => error(
                400,
                400_004,
                &format!("register request is not valid JSON: {e}"),
            ),
            Ok(req)
                if req
                    .registration_id
                    .as_deref()
                    .is_some_and(|r| r != registration_id) =>
            {
                error(
                    400,
                    400_004,
                    "registrationId in the request differs from the connection's",
                )
            }
            Ok(req) => match hub.dps_throttled() {
                Some(wait) => Reply {
                    status: 429,
                    body: json!({"errorCode": 429_001, "message": "registrations are throttled; retry after the given seconds"}),
                    retry_after: Some(wait),
                },
                None => {
                    let (op, _) = hub.dps_register(who, registration_id, req.payload);
                    // Allocation is already done; the device still polls, as it must on Azure.
                    Reply {
                        status: 202,
                        body: json!({"operationId": op, "status": "assigning"}),
                        retry_after: Some(RETRY_AFTER_SECS),
                    }
                }
            },
        }
    } else if topic.starts_with(STATUS_PREFIX) {
        match param(&ps, "operationId")
            .and_then(|op| Some((op, hub.dps_operation(op, registration_id)?)))
        {
            Some((op, state)) => Reply {
                status: 200,
                body: outcome(op, &state),
                retry_after: None,
            },
            None => error(404, 404_000, "unknown operation id"),
        }
    } else {
        error(404, 404_000, "unknown request topic")
    };
    Some((rid, reply))
}

async fn send<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<T, Codec>,
    p: Packet,
) -> Result<(), ()> {
    match timeout(WRITE_TIMEOUT, framed.send(p)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Serves a registration client whose CONNECT named `scope` and `registration_id`.
pub(crate) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    hub: Hub,
    mut framed: Framed<T, Codec>,
    connect: Connect,
    scope: String,
    registration_id: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
) {
    let password = connect
        .login
        .as_ref()
        .map(|l| l.password.as_str())
        .unwrap_or("");
    let who = if connect.client_id != registration_id {
        Err(ConnectReturnCode::BadClientId)
    } else {
        let verdict = if password.is_empty() && !chain.is_empty() {
            hub.dps_authenticate_x509(&scope, &registration_id, &chain)
        } else {
            hub.dps_authenticate(&scope, &registration_id, password)
        };
        verdict.map_err(|e| {
            tracing::info!(registration = %registration_id, reason = %e, "DPS CONNECT refused");
            ConnectReturnCode::NotAuthorized
        })
    };
    let who = match who {
        Ok(w) => w,
        Err(code) => {
            let _ = send(&mut framed, Packet::ConnAck(ConnAck::new(code, false))).await;
            return;
        }
    };
    if send(
        &mut framed,
        Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
    )
    .await
    .is_err()
    {
        return;
    }
    let idle = match connect.keep_alive {
        0 => IDLE_LIMIT,
        k => Duration::from_secs(u64::from(k)) * 3 / 2,
    };
    let shutdown = hub.inner.shutdown.clone();
    loop {
        let packet = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = timeout(idle, framed.next()) => match r {
                Ok(Some(Ok(p))) => p,
                _ => return,
            },
        };
        let out = match packet {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|f| {
                        if f.path.starts_with("$dps/registrations/res/") {
                            SubscribeReasonCode::Success(match f.qos {
                                QoS::AtMostOnce => QoS::AtMostOnce,
                                _ => QoS::AtLeastOnce,
                            })
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                vec![Packet::SubAck(SubAck::new(s.pkid, codes))]
            }
            Packet::Publish(p) => {
                let mut out = Vec::new();
                if p.qos == QoS::AtLeastOnce {
                    out.push(Packet::PubAck(PubAck::new(p.pkid)));
                }
                match handle(&hub, &who, &registration_id, &p.topic, &p.payload) {
                    Some((rid, reply)) => {
                        let mut topic =
                            format!("$dps/registrations/res/{}/?$rid={rid}", reply.status);
                        if let Some(s) = reply.retry_after {
                            topic.push_str(&format!("&retry-after={s}"));
                        }
                        out.push(Packet::Publish(Publish::new(
                            topic,
                            QoS::AtMostOnce,
                            reply.body.to_string(),
                        )));
                    }
                    None => return,
                }
                out
            }
            Packet::PingReq => vec![Packet::PingResp],
            Packet::Unsubscribe(u) => vec![Packet::UnsubAck(
                rumqttc::mqttbytes::v4::UnsubAck::new(u.pkid),
            )],
            Packet::PubAck(_) => Vec::new(),
            _ => return,
        };
        for p in out {
            if send(&mut framed, p).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parameters() {
        let ps =
            params("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=4.abc");
        assert_eq!(param(&ps, "$rid"), Some("7"));
        assert_eq!(param(&ps, "operationId"), Some("4.abc"));
        assert_eq!(param(&params("x/"), "$rid"), None);
    }
}
