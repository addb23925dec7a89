//! Correlation state of one link, socket-free: request ids, reported patches awaiting their
//! 204, method requests that may still be answered, and the desired `$version` filter of the
//! reconnection flow: connect → subscribe → GET twin → ignore notifications with `$version` ≤
//! the GET's `desired.$version`
//! (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub#retrieving-a-device-twins-properties).

use iothub_proto::Status;

use std::collections::{BTreeMap, HashMap};

use iothub_proto::topics::{self, Topic};
use serde_json::Value;
use tokio::sync::oneshot;

use super::LinkError;

/// Desired patches held back while a twin GET is outstanding; more than this and the link
/// asks for the twin again instead of remembering each one.
const MAX_EARLY_PATCHES: usize = 64;

pub(crate) type PatchReply = oneshot::Sender<Result<u64, LinkError>>;

/// A reported patch the caller still waits for.
#[derive(Debug)]
pub(crate) struct PendingPatch {
    pub(crate) body: Vec<u8>,
    pub(crate) reply: PatchReply,
}

/// What an inbound publish means to the link.
#[derive(Debug, PartialEq)]
pub(crate) enum Inbound {
    Method {
        name: String,
        rid: String,
        payload: Vec<u8>,
    },
    Desired {
        version: u64,
        patch: Value,
    },
    /// The full twin answered our GET, plus the desired patches that arrived meanwhile and are
    /// newer than it.
    Twin {
        twin: Value,
        newer: Vec<(u64, Value)>,
    },
    /// The hub refused our GET (status ≥ 300) or sent something unreadable.
    TwinFailed(String),
    /// Consumed here (a patch acknowledged, a patch held back).
    Handled,
    /// Not for us, stale or malformed; the reason is for the debug log.
    Dropped(String),
}

#[derive(Debug, Default)]
pub(crate) struct Session {
    next_rid: u64,
    twin_get: Option<u64>,
    early: Vec<(u64, Value)>,
    /// Set when a desired change may have been missed; the link GETs the twin again.
    pub(crate) resync: bool,
    /// Highest desired `$version` known to the bridge (from the last GET or a later patch).
    desired_version: Option<u64>,
    patches: BTreeMap<u64, PendingPatch>,
    /// Method requests of the current connection: rid → method name.
    open_methods: HashMap<String, String>,
}

impl Session {
    fn rid(&mut self) -> u64 {
        self.next_rid += 1;
        self.next_rid
    }

    /// Starts a twin GET; returns the topic to publish.
    pub(crate) fn twin_get(&mut self) -> String {
        let rid = self.rid();
        self.twin_get = Some(rid);
        self.resync = false;
        topics::twin_get(&rid.to_string())
    }

    pub(crate) fn twin_get_outstanding(&self) -> bool {
        self.twin_get.is_some()
    }

    /// Registers a reported patch; returns the topic to publish it on.
    pub(crate) fn reported_patch(&mut self, patch: PendingPatch) -> String {
        let rid = self.rid();
        self.patches.insert(rid, patch);
        topics::twin_reported_patch(&rid.to_string())
    }

    /// The connection died: method requests can no longer be answered, the GET will be redone,
    /// and reported patches not yet acknowledged are handed back (oldest first) for re-sending
    /// on the next connection — a merge patch applied twice is the same as once. Patches
    /// whose caller gave up are dropped here.
    pub(crate) fn connection_lost(&mut self) -> Vec<PendingPatch> {
        self.open_methods.clear();
        self.twin_get = None;
        self.early.clear();
        std::mem::take(&mut self.patches)
            .into_values()
            .filter(|p| !p.reply.is_closed())
            .collect()
    }

    /// Removes an open method request; `None` if its connection has died (or it was answered).
    pub(crate) fn take_method(&mut self, rid: &str) -> Option<String> {
        self.open_methods.remove(rid)
    }

    /// Method requests of this connection not answered yet.
    pub(crate) fn open_methods(&self) -> usize {
        self.open_methods.len()
    }

    /// Forgets patches whose callers stopped waiting (their timeout fired).
    pub(crate) fn prune_abandoned(&mut self) {
        self.patches.retain(|_, p| !p.reply.is_closed());
    }

    #[cfg(test)]
    pub(crate) fn pending_patches(&self) -> usize {
        self.patches.len()
    }

    pub(crate) fn inbound(&mut self, topic: &str, payload: &[u8]) -> Inbound {
        match topics::parse(topic) {
            Some(Topic::MethodRequest { name, rid }) => {
                self.open_methods.insert(rid.clone(), name.clone());
                Inbound::Method {
                    name,
                    rid,
                    payload: payload.to_vec(),
                }
            }
            Some(Topic::TwinResponse {
                status,
                rid,
                version,
            }) => self.twin_response(status, &rid, version, payload),
            Some(Topic::DesiredPatch { version }) => self.desired(version, payload),
            _ => Inbound::Dropped(format!("unexpected topic {topic}")),
        }
    }

    fn twin_response(
        &mut self,
        status: Status,
        rid: &str,
        version: Option<u64>,
        payload: &[u8],
    ) -> Inbound {
        let Ok(rid) = rid.parse::<u64>() else {
            return Inbound::Dropped(format!("twin response for foreign rid {rid}"));
        };
        if self.twin_get == Some(rid) {
            self.twin_get = None;
            if !status.is_success() {
                return Inbound::TwinFailed(format!("twin GET answered {status}"));
            }
            let twin: Value = match serde_json::from_slice(payload) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Inbound::TwinFailed("twin GET answer is not a JSON object".into()),
            };
            let v = twin["desired"]["$version"].as_u64().unwrap_or(0);
            self.desired_version = Some(v);
            let newer = std::mem::take(&mut self.early)
                .into_iter()
                .filter(|(pv, _)| *pv > v)
                .collect::<Vec<_>>();
            if let Some((last, _)) = newer.last() {
                self.desired_version = Some(*last);
            }
            return Inbound::Twin { twin, newer };
        }
        let Some(pending) = self.patches.remove(&rid) else {
            return Inbound::Dropped(format!("twin response for unknown rid {rid}"));
        };
        if self.patches.is_empty() {
            // An emptied BTreeMap keeps its leaf node (~450 bytes, per door, for good).
            self.patches = BTreeMap::new();
        }
        let result = match (status.is_success(), version) {
            (true, Some(v)) => Ok(v),
            (true, None) => Err(LinkError::Protocol(
                "reported patch acknowledged without $version".into(),
            )),
            _ => Err(LinkError::Rejected {
                status,
                body: String::from_utf8_lossy(payload).into_owned(),
            }),
        };
        // The caller may have timed out; nothing to tell it then.
        let _ = pending.reply.send(result);
        Inbound::Handled
    }

    fn desired(&mut self, topic_version: Option<u64>, payload: &[u8]) -> Inbound {
        let Ok(patch) = serde_json::from_slice::<Value>(payload) else {
            // A change we cannot read is a change we might miss: fetch the whole twin.
            self.resync = true;
            return Inbound::Dropped("desired patch is not JSON; resyncing twin".into());
        };
        let Some(version) = topic_version.or_else(|| patch["$version"].as_u64()) else {
            self.resync = true;
            return Inbound::Dropped("desired patch without $version; resyncing twin".into());
        };
        if self.twin_get.is_some() {
            if self.early.len() >= MAX_EARLY_PATCHES {
                self.resync = true;
            } else {
                self.early.push((version, patch));
            }
            return Inbound::Handled;
        }
        match self.desired_version {
            Some(known) if version <= known => Inbound::Dropped(format!(
                "desired $version {version} <= {known}, already applied"
            )),
            _ => {
                self.desired_version = Some(version);
                Inbound::Desired { version, patch }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get_twin(s: &mut Session, twin: &Value) -> Inbound {
        let topic = s.twin_get();
        let Some(Topic::TwinGet { rid }) = topics::parse(&topic) else {
            panic!("bad GET topic {topic}")
        };
        s.inbound(
            &topics::twin_response(Status(200), &rid, None),
            twin.to_string().as_bytes(),
        )
    }

    fn desired(s: &mut Session, v: u64) -> Inbound {
        let body = json!({"x": v, "$version": v}).to_string();
        s.inbound(&topics::desired_patch(v), body.as_bytes())
    }

    #[test]
    fn drops_desired_not_newer_than_twin() {
        let mut s = Session::default();
        let twin = json!({"desired": {"x": 1, "$version": 5}, "reported": {"$version": 2}});
        assert!(matches!(get_twin(&mut s, &twin), Inbound::Twin { .. }));
        assert!(matches!(desired(&mut s, 4), Inbound::Dropped(_)));
        assert!(matches!(desired(&mut s, 5), Inbound::Dropped(_)));
        assert!(matches!(
            desired(&mut s, 6),
            Inbound::Desired { version: 6, .. }
        ));
        assert!(
            matches!(desired(&mut s, 6), Inbound::Dropped(_)),
            "duplicate"
        );
    }

    #[test]
    fn holds_patches_during_get_and_releases_newer() {
        let mut s = Session::default();
        let topic = s.twin_get();
        assert_eq!(desired(&mut s, 3), Inbound::Handled);
        assert_eq!(desired(&mut s, 8), Inbound::Handled);
        let rid = topic.rsplit('=').next().unwrap();
        let twin = json!({"desired": {"$version": 5}, "reported": {}});
        let got = s.inbound(
            &topics::twin_response(Status(200), rid, None),
            twin.to_string().as_bytes(),
        );
        let Inbound::Twin { newer, .. } = got else {
            panic!("{got:?}")
        };
        assert_eq!(newer.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [8]);
        assert!(matches!(desired(&mut s, 7), Inbound::Dropped(_)));
    }

    #[test]
    fn reported_patch_ack_and_rejection_reach_caller() {
        let mut s = Session::default();
        let (tx, mut rx) = oneshot::channel();
        let topic = s.reported_patch(PendingPatch {
            body: b"{}".to_vec(),
            reply: tx,
        });
        let Some(Topic::TwinReportedPatch { rid }) = topics::parse(&topic) else {
            panic!()
        };
        assert_eq!(
            s.inbound(&topics::twin_response(Status(204), &rid, Some(9)), b""),
            Inbound::Handled
        );
        assert_eq!(rx.try_recv().unwrap().unwrap(), 9);

        let (tx, mut rx) = oneshot::channel();
        let topic = s.reported_patch(PendingPatch {
            body: b"{}".to_vec(),
            reply: tx,
        });
        let rid = topic.rsplit('=').next().unwrap().to_string();
        s.inbound(
            &topics::twin_response(Status(400), &rid, None),
            b"{\"errorCode\":400004}",
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(LinkError::Rejected {
                status: Status::BAD_REQUEST,
                ..
            })
        ));
        assert_eq!(s.pending_patches(), 0);
    }

    #[test]
    fn connection_loss_returns_live_patches_and_closes_methods() {
        let mut s = Session::default();
        let (tx1, _rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        s.reported_patch(PendingPatch {
            body: b"1".to_vec(),
            reply: tx1,
        });
        s.reported_patch(PendingPatch {
            body: b"2".to_vec(),
            reply: tx2,
        });
        drop(rx2);
        s.inbound(&topics::method_request("lockDoor", "abc"), b"{}");
        let back = s.connection_lost();
        assert_eq!(back.len(), 1, "the abandoned patch is not re-sent");
        assert_eq!(back[0].body, b"1");
        assert_eq!(
            s.take_method("abc"),
            None,
            "a method of a dead connection cannot be answered"
        );
    }

    #[test]
    fn method_is_answerable_once() {
        let mut s = Session::default();
        let got = s.inbound(&topics::method_request("lockDoor", "r1"), b"{\"a\":1}");
        assert_eq!(
            got,
            Inbound::Method {
                name: "lockDoor".into(),
                rid: "r1".into(),
                payload: b"{\"a\":1}".to_vec()
            }
        );
        assert_eq!(s.take_method("r1").as_deref(), Some("lockDoor"));
        assert_eq!(s.take_method("r1"), None);
    }

    #[test]
    fn unreadable_desired_triggers_resync() {
        let mut s = Session::default();
        s.inbound(&topics::desired_patch(3), b"not json");
        assert!(s.resync);
        s.twin_get();
        assert!(!s.resync);
    }

    #[test]
    fn failed_get_is_reported() {
        let mut s = Session::default();
        let topic = s.twin_get();
        let rid = topic.rsplit('=').next().unwrap();
        assert!(matches!(
            s.inbound(&topics::twin_response(Status(429), rid, None), b""),
            Inbound::TwinFailed(_)
        ));
    }
}
