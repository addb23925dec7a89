//! Live device links and MQTT sessions: one [`Link`] per connected device (a bounded outbox
//! to its connection task and a kill switch), persisted subscriptions per client id, the
//! per-device telemetry (bounded in bytes for the whole hub), and desired-change notifications.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{now_iso, unix_now, Hub, State};
use crate::auth::{self, AuthError};

/// Telemetry kept by the whole hub (payloads, properties and ids), for tests and the demo;
/// beyond it the hub's oldest message is dropped, whichever device sent it. An extension of
/// fieldhub: Azure IoT Hub hands telemetry to its Event Hub–compatible endpoint instead.
pub const TELEMETRY_BYTES: usize = 64 * 1024 * 1024;
/// Hub-to-device messages queued per link; when full the link is closed (the device
/// reconnects and re-reads its twin, so nothing is silently lost).
const OUTBOX: usize = 64;

/// A topic filter kind a device may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sub {
    Methods,
    TwinResponses,
    DesiredPatches,
    CloudToDevice,
}

/// One telemetry message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryMessage {
    pub device_id: String,
    /// Property bag, percent-decoded, in wire order (`$.ct`, custom keys, `mqtt-retain`...).
    pub properties: Vec<(String, String)>,
    pub payload: Bytes,
    pub received_at: String,
}

/// What a kept telemetry message counts against [`TELEMETRY_BYTES`].
pub(crate) fn telemetry_size(m: &TelemetryMessage) -> usize {
    m.payload.len()
        + m.device_id.len()
        + m.received_at.len()
        + m.properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// A message for the device's connection task to publish (QoS 0).
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The subscription it is delivered under (its QoS is the one granted for that one).
    pub sub: Sub,
    pub topic: String,
    pub payload: Bytes,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub conn_id: u64,
    pub tx: mpsc::Sender<Outbound>,
    pub kill: CancellationToken,
}

/// What a connection task gets when its device is attached.
#[derive(Debug)]
pub(crate) struct Attached {
    pub conn_id: u64,
    pub rx: mpsc::Receiver<Outbound>,
    pub kill: CancellationToken,
    pub session_present: bool,
    /// The topic filters restored with a saved session (empty with clean session 1).
    pub filters: std::collections::BTreeMap<String, Sub>,
}

/// Why a CONNECT is refused (mapped to CONNACK codes by the MQTT layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotAuthorized(String),
}

impl State {
    /// Queues a desired notification for a connected device subscribed to desired patches.
    pub(crate) fn notify_desired(&self, id: &str, version: u64, body: &serde_json::Value) {
        let subscribed = self
            .sessions
            .get(id)
            .is_some_and(|s| s.holds(Sub::DesiredPatches));
        if let (true, Some(link)) = (subscribed, self.links.get(id)) {
            let msg = Outbound {
                sub: Sub::DesiredPatches,
                topic: iothub_proto::topics::desired_patch(version),
                payload: Bytes::from(body.to_string()),
            };
            link.send(msg);
        }
    }
}

impl Link {
    pub(crate) fn send(&self, msg: Outbound) -> bool {
        if self.tx.try_send(msg).is_err() {
            tracing::warn!(conn = self.conn_id, "device outbox full; closing the link");
            self.kill.cancel();
            return false;
        }
        true
    }
}

impl Hub {
    /// Verifies a device's client certificate chain (leaf first) at a CONNECT without a
    /// password. Returns when the session must end (Unix seconds): the leaf is not checked
    /// for expiry again while connected, so a day, after which the device reconnects.
    pub(crate) fn authorize_device_x509(
        &self,
        id: &str,
        chain: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<u64, Refusal> {
        use crate::x509::{self, AuthType};
        let Some(leaf) = chain.first() else {
            return Err(Refusal::NotAuthorized("no client certificate".into()));
        };
        let auth = {
            let st = self.lock();
            let d = st
                .devices
                .get(id)
                .ok_or_else(|| Refusal::NotAuthorized(format!("unknown device '{id}'")))?;
            if !d.rec.identity.enabled {
                return Err(Refusal::NotAuthorized(format!("device '{id}' is disabled")));
            }
            d.rec.identity.auth.clone()
        };
        let ok = match &auth {
            AuthType::Sas => {
                return Err(Refusal::NotAuthorized(format!(
                    "device '{id}' authenticates with SAS keys, not a certificate"
                )))
            }
            AuthType::SelfSigned { primary, secondary } => [primary, secondary]
                .into_iter()
                .flatten()
                .any(|t| x509::thumbprint_matches(leaf, t)),
            AuthType::CertificateAuthority => {
                let cas = self
                    .inner
                    .cas
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if x509::subject_cn(leaf).as_deref() != Some(id) {
                    return Err(Refusal::NotAuthorized(format!(
                        "certificate CN does not match device id '{id}'"
                    )));
                }
                x509::chains_to(chain, &cas)
            }
        };
        if ok {
            Ok(unix_now() + 24 * 3600)
        } else {
            Err(Refusal::NotAuthorized(format!(
                "certificate of device '{id}' does not match its registration"
            )))
        }
    }

    /// Verifies a device CONNECT password; returns the token expiry (Unix seconds).
    pub(crate) fn authorize_device(&self, id: &str, password: &str) -> Result<u64, Refusal> {
        let st = self.lock();
        let d = st
            .devices
            .get(id)
            .ok_or_else(|| Refusal::NotAuthorized(format!("unknown device '{id}'")))?;
        if !d.rec.identity.enabled {
            return Err(Refusal::NotAuthorized(format!("device '{id}' is disabled")));
        }
        let keys = (
            d.rec.identity.primary_key.as_str(),
            d.rec.identity.secondary_key.as_str(),
        );
        auth::verify_device_token(
            password,
            &self.inner.hostname,
            id,
            keys,
            &self.inner.policies,
            unix_now(),
        )
        .map_err(|e: AuthError| Refusal::NotAuthorized(e.to_string()))
    }

    /// Registers a new connection for `id`, closing any older one (one link per device).
    pub(crate) fn attach(&self, id: &str, clean_session: bool) -> Attached {
        let mut st = self.lock();
        st.next_id += 1;
        let conn_id = st.next_id;
        let (tx, rx) = mpsc::channel(OUTBOX);
        let kill = self.inner.shutdown.child_token();
        if let Some(old) = st.links.insert(
            id.to_string(),
            Link {
                conn_id,
                tx,
                kill: kill.clone(),
            },
        ) {
            tracing::info!(device = id, "new connection replaces the old one");
            old.kill.cancel();
        }
        let (session_present, filters) = if clean_session {
            st.sessions.remove(id);
            let _ = self
                .inner
                .store
                .put::<()>(crate::store::SESSIONS, id, None, false);
            (false, Default::default())
        } else {
            match st.sessions.get(id) {
                Some(s) => (true, s.filters.clone()),
                None => {
                    st.sessions.insert(id.to_string(), Default::default());
                    (false, Default::default())
                }
            }
        };
        if let Some(d) = st.devices.get_mut(id) {
            d.last_activity = Some(now_iso());
        }
        drop(st);
        self.inner.link_changes.notify_waiters();
        Attached {
            conn_id,
            rx,
            kill,
            session_present,
            filters,
        }
    }

    /// Removes the link if it is still `conn_id` (a newer connection may have replaced it).
    pub(crate) fn detach(&self, id: &str, conn_id: u64, clean_session: bool) {
        let mut st = self.lock();
        if st.links.get(id).is_some_and(|l| l.conn_id == conn_id) {
            st.links.remove(id);
            if clean_session {
                // Its subscriptions were stored as they came; a clean session ends with the
                // connection (MQTT 3.1.1 §3.1.2.4), also for a hub restarted later.
                st.sessions.remove(id);
                let _ = self
                    .inner
                    .store
                    .put::<()>(crate::store::SESSIONS, id, None, false);
            }
            // Pending method calls stay: a device that reconnects at once (a cut connection,
            // a token renewal) may still answer them on its new connection; otherwise they
            // end with 504 at their response timeout.
        }
        drop(st);
        self.inner.link_changes.notify_waiters();
    }

    pub(crate) fn record_telemetry(&self, msg: TelemetryMessage) {
        let mut st = self.lock();
        if let Some(d) = st.devices.get_mut(&msg.device_id) {
            d.last_activity = Some(msg.received_at.clone());
        }
        let size = telemetry_size(&msg);
        st.telemetry
            .entry(msg.device_id.clone())
            .or_default()
            .push_back(msg.clone());
        st.telemetry_order.push_back(msg.device_id.clone());
        st.telemetry_bytes += size;
        while st.telemetry_bytes > TELEMETRY_BYTES {
            let Some(id) = st.telemetry_order.pop_front() else {
                break;
            };
            let oldest = st.telemetry.get_mut(&id).and_then(VecDeque::pop_front);
            if let Some(m) = oldest {
                st.telemetry_bytes -= telemetry_size(&m);
            }
        }
        drop(st);
        // Nobody listening is fine.
        let _ = self.inner.telemetry_tx.send(msg);
    }

    /// Telemetry received from `id`, oldest first (the hub keeps [`TELEMETRY_BYTES`] in all).
    pub fn telemetry(&self, id: &str) -> Vec<TelemetryMessage> {
        self.lock()
            .telemetry
            .get(id)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every telemetry message from now on (lagging receivers lose the oldest).
    pub fn telemetry_events(&self) -> broadcast::Receiver<TelemetryMessage> {
        self.inner.telemetry_tx.subscribe()
    }

    pub fn is_connected(&self, id: &str) -> bool {
        self.lock().links.contains_key(id)
    }

    /// The persisted MQTT subscriptions of `id`.
    pub fn subscriptions(&self, id: &str) -> BTreeSet<Sub> {
        self.lock()
            .sessions
            .get(id)
            .map(|s| s.subs())
            .unwrap_or_default()
    }

    /// Re-evaluates `check` after every link or subscription change until it yields a value
    /// or `deadline` passes (`None`). The waiter is registered before each check, so no change
    /// between check and wait is missed.
    pub(crate) async fn wait_for_links<T>(
        &self,
        deadline: tokio::time::Instant,
        mut check: impl FnMut(&Hub) -> Option<T>,
    ) -> Option<T> {
        loop {
            let changed = self.inner.link_changes.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(v) = check(self) {
                return Some(v);
            }
            tokio::time::timeout_at(deadline, changed).await.ok()?;
        }
    }

    /// Waits until `id` is connected and subscribed to `sub` (or just connected with `None`);
    /// false on timeout. For tests and callers that need readiness without sleeping.
    pub async fn wait_ready(&self, id: &str, sub: Option<Sub>, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_for_links(deadline, |hub| {
            let st = hub.lock();
            let subscribed = sub.is_none_or(|s| st.sessions.get(id).is_some_and(|x| x.holds(s)));
            (st.links.contains_key(id) && subscribed).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits until `id` is connected.
    pub async fn wait_connected(&self, id: &str, timeout: Duration) -> bool {
        self.wait_ready(id, None, timeout).await
    }

    /// Waits until `id` has no live connection.
    pub async fn wait_disconnected(&self, id: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_for_links(deadline, |hub| (!hub.is_connected(id)).then_some(()))
            .await
            .is_some()
    }

    /// Cuts every device connection (fault injection); sessions are kept.
    pub fn disconnect_all(&self) {
        for l in self.lock().links.values() {
            l.kill.cancel();
        }
    }

    /// Cuts one device's connection; true if it was connected.
    pub fn disconnect(&self, id: &str) -> bool {
        match self.lock().links.get(id) {
            Some(l) => {
                l.kill.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_is_bounded_in_bytes_for_the_whole_hub_dropping_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open_offline(dir.path(), "h").unwrap();
        let payload = Bytes::from(vec![b'x'; 1024 * 1024]);
        let msg = |id: &str, n: usize| TelemetryMessage {
            device_id: id.into(),
            properties: vec![("n".into(), n.to_string())],
            payload: payload.clone(),
            received_at: now_iso(),
        };
        for n in 0..40 {
            hub.record_telemetry(msg("a", n));
        }
        for n in 0..40 {
            hub.record_telemetry(msg("b", n));
        }
        let (a, b) = (hub.telemetry("a"), hub.telemetry("b"));
        assert_eq!(b.len(), 40, "the newest device's messages are all kept");
        assert!(
            !a.is_empty() && a.len() < 40,
            "a lost its oldest: {}",
            a.len()
        );
        assert_eq!(a.last().unwrap().properties[0].1, "39", "a's newest kept");
        let st = hub.lock();
        assert!(st.telemetry_bytes <= TELEMETRY_BYTES);
        let counted: usize = st.telemetry.values().flatten().map(telemetry_size).sum();
        assert_eq!(counted, st.telemetry_bytes);
    }
}
