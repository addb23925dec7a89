//! Direct method calls (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods): dispatch to the device's link, wait for the device's
//! response with a deadline, and route responses from the MQTT side back to the caller.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::links::{Outbound, Sub};
use super::Hub;
use crate::error::HubError;

/// Maximum request and response payload (128 KB).
pub(super) const MAX_METHOD_PAYLOAD: usize = 128 * 1024;

/// The device's answer, as the REST endpoint returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResponse {
    pub status: i32,
    pub payload: Value,
}

#[derive(Debug)]
pub(crate) struct Pending {
    device_id: String,
    reply: oneshot::Sender<MethodResponse>,
}

impl Hub {
    /// Invokes a method on a connected device. Waits up to `connect_timeout` for the device to
    /// be connected and subscribed to methods (else 404103), then up to `response_timeout`
    /// for its answer (else 504101).
    pub async fn invoke_method(
        &self,
        id: &str,
        name: &str,
        payload: Value,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<MethodResponse, HubError> {
        let body = Bytes::from(payload.to_string());
        if body.len() > MAX_METHOD_PAYLOAD {
            return Err(HubError::MessageTooLarge(format!(
                "method payload is {} bytes, over 128 KB",
                body.len()
            )));
        }
        let connect_deadline = tokio::time::Instant::now() + connect_timeout;
        // `dispatch` errors (unknown device) end the wait at once.
        let (rid, rx) = self
            .wait_for_links(connect_deadline, |hub| {
                hub.dispatch(id, name, &body).transpose()
            })
            .await
            .ok_or_else(|| HubError::DeviceNotOnline(id.to_string()))??;
        match tokio::time::timeout(response_timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            // The sender goes away only with the hub state itself; treat that as no answer.
            Ok(Err(_)) | Err(_) => {
                self.lock().pending.remove(&rid);
                Err(HubError::GatewayTimeout {
                    device: id.to_string(),
                    method: name.to_string(),
                    timeout: response_timeout,
                })
            }
        }
    }

    /// Sends the request if the device can take it now; `None` when it cannot yet.
    fn dispatch(
        &self,
        id: &str,
        name: &str,
        body: &Bytes,
    ) -> Result<Option<(String, oneshot::Receiver<MethodResponse>)>, HubError> {
        let mut st = self.lock();
        st.device(id)?;
        let subscribed = st.sessions.get(id).is_some_and(|s| s.holds(Sub::Methods));
        if !subscribed || !st.links.contains_key(id) {
            return Ok(None);
        }
        st.next_id += 1;
        let rid = format!("{:x}", st.next_id);
        let (tx, rx) = oneshot::channel();
        let msg = Outbound {
            sub: Sub::Methods,
            topic: iothub_proto::topics::method_request(name, &rid),
            payload: body.clone(),
        };
        let sent = st.links.get(id).is_some_and(|l| l.send(msg));
        if !sent {
            return Ok(None);
        }
        st.pending.insert(
            rid.clone(),
            Pending {
                device_id: id.to_string(),
                reply: tx,
            },
        );
        Ok(Some((rid, rx)))
    }

    /// A device answered request `rid`. Answers to unknown or expired requests, or from
    /// another device, are dropped.
    pub(crate) fn complete_method(&self, id: &str, rid: &str, status: i32, body: &[u8]) {
        let mut st = self.lock();
        if st.pending.get(rid).is_none_or(|p| p.device_id != id) {
            tracing::debug!(device = id, rid, "method response for no pending request");
            return;
        }
        let Some(p) = st.pending.remove(rid) else {
            return;
        };
        drop(st);
        let payload = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let _ = p.reply.send(MethodResponse { status, payload });
    }
}
