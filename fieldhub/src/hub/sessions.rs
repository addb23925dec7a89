//! Saved MQTT sessions: the topic filters a device holds, kept across connections with clean
//! session 0 and across hub restarts (MQTT 3.1.1 §3.1.2.4: the session state of a client is
//! its subscriptions, <http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html>).
//! The filter text is kept, not only what it subscribes to, so that filters restored with a
//! session count toward IoT Hub's five-topic limit like those subscribed on the connection.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::links::Sub;
use super::Hub;

/// One device's saved subscriptions: each topic filter and what it subscribes to (several
/// per-method filters all mean [`Sub::Methods`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MqttSession {
    pub(crate) filters: BTreeMap<String, Sub>,
}

impl MqttSession {
    /// Whether some filter subscribes to `sub`.
    pub(crate) fn holds(&self, sub: Sub) -> bool {
        self.filters.values().any(|s| *s == sub)
    }

    pub(crate) fn subs(&self) -> BTreeSet<Sub> {
        self.filters.values().copied().collect()
    }
}

/// A session as stored: the filters, or (databases written before the filter text was kept)
/// only the kinds of subscription.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum StoredSession {
    Filters(MqttSession),
    Kinds(BTreeSet<Sub>),
}

impl StoredSession {
    /// The session of device `id`. A kind without its filter text becomes the filter IoT Hub's
    /// MQTT guide gives for it, so it still takes one of the five places, and a device that
    /// subscribes to that filter again renews it rather than adding one.
    pub(crate) fn into_session(self, id: &str) -> MqttSession {
        match self {
            StoredSession::Filters(s) => s,
            StoredSession::Kinds(kinds) => MqttSession {
                filters: kinds
                    .into_iter()
                    .map(|k| (canonical_filter(k, id), k))
                    .collect(),
            },
        }
    }
}

fn canonical_filter(sub: Sub, id: &str) -> String {
    use iothub_proto::topics;
    match sub {
        Sub::Methods => topics::METHODS_FILTER.to_string(),
        Sub::TwinResponses => topics::TWIN_RES_FILTER.to_string(),
        Sub::DesiredPatches => topics::DESIRED_FILTER.to_string(),
        Sub::CloudToDevice => format!("devices/{id}/messages/devicebound/#"),
    }
}

impl Hub {
    /// Adds (`Some`) or removes (`None`) one topic filter of `id`'s session.
    pub(crate) fn set_filter(&self, id: &str, filter: &str, sub: Option<Sub>) {
        let mut st = self.lock();
        let session = st.sessions.entry(id.to_string()).or_default();
        let changed = match sub {
            Some(s) => session.filters.insert(filter.to_string(), s) != Some(s),
            None => session.filters.remove(filter).is_some(),
        };
        if changed {
            let snapshot = session.clone();
            let _ = self
                .inner
                .store
                .put(crate::store::SESSIONS, id, Some(&snapshot), false);
        }
        drop(st);
        self.inner.link_changes.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stored_before_filters_were_kept_load_with_the_guides_filters() {
        let old: StoredSession = serde_json::from_str(r#"["Methods","CloudToDevice"]"#).unwrap();
        let s = old.into_session("d1");
        assert_eq!(
            s.filters,
            BTreeMap::from([
                ("$iothub/methods/POST/#".to_string(), Sub::Methods),
                (
                    "devices/d1/messages/devicebound/#".to_string(),
                    Sub::CloudToDevice
                ),
            ])
        );
        let new = serde_json::to_string(&s).unwrap();
        let again: StoredSession = serde_json::from_str(&new).unwrap();
        assert_eq!(again.into_session("d1"), s);
    }
}
