//! What an event looks like on the wire and on disk, socket-free.
//!
//! On the wire (IoT Hub's device-to-cloud message over MQTT): the body is JSON
//! ([`EventBody`]: `{"seq":12,"point":"doorState","value":"forced","at":"…Z"}`) and the topic's
//! property bag carries `$.ct=application%2Fjson&$.ce=utf-8` (so IoT Hub message routing can
//! query the body), `iothub-creation-time-utc` (when the gateway saw the change) and the
//! application property `seq`: the door's sequence number travels in both, so a consumer of
//! the Event Hub–compatible endpoint can drop duplicates and see gaps from the properties
//! alone, and the body stands on its own when stored elsewhere. See Microsoft's "Communicate
//! with an IoT hub using the MQTT protocol" (sending device-to-cloud messages) and "IoT Hub
//! message routing query syntax".
//!
//! On disk a record is the creation time (milliseconds since the Unix epoch, 8 bytes
//! big-endian) followed by the body exactly as it will be sent.

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JSON body of one event: one point of one door changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBody {
    /// Per door, from 1, one more for every event, kept across restarts.
    pub seq: u64,
    /// The reported point that changed (its name in the device map).
    pub point: String,
    /// Its new value, decoded as in the reported properties.
    pub value: Value,
    /// When the gateway read the change (RFC 3339, UTC, milliseconds).
    pub at: String,
}

/// An event as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The JSON body ([`EventBody`]).
    pub body: Vec<u8>,
}

/// `created_ms` as IoT Hub writes times: RFC 3339 UTC with milliseconds.
pub fn utc(created_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(created_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The body of event `seq` of a point.
pub fn body(seq: u64, point: &str, value: &Value, created_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&EventBody {
        seq,
        point: point.to_string(),
        value: value.clone(),
        at: utc(created_ms),
    })
    .expect("a JSON value serialises")
}

/// The record kept on disk.
pub fn record(created_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(8 + body.len());
    r.extend_from_slice(&created_ms.to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// Reads a record back; `None` if it is shorter than its header.
pub fn parse_record(seq: u64, bytes: &[u8]) -> Option<StoredEvent> {
    let (head, body) = bytes.split_first_chunk::<8>()?;
    Some(StoredEvent {
        seq,
        created_ms: i64::from_be_bytes(*head),
        body: body.to_vec(),
    })
}

/// The creation time of a record without copying its body.
pub fn record_created(bytes: &[u8]) -> i64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |h| i64::from_be_bytes(*h))
}

/// The telemetry topic of an event, with its property bag (values percent-encoded).
pub fn topic(device_id: &str, event: &StoredEvent) -> String {
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "devices/{device_id}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&iothub-creation-time-utc={}&seq={}",
        enc(&utc(event.created_ms)),
        event.seq
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::topics::{self, Topic};
    use serde_json::json;

    #[test]
    fn record_round_trips_and_topic_carries_the_properties() {
        let created = 1_796_612_307_123; // 2026-12-06T…
        let b = body(12, "doorState", &json!("forced"), created);
        let got: EventBody = serde_json::from_slice(&b).unwrap();
        assert_eq!(got.seq, 12);
        assert_eq!(got.value, json!("forced"));
        assert!(got.at.ends_with(".123Z"), "{}", got.at);
        let ev = parse_record(12, &record(created, &b)).unwrap();
        assert_eq!((ev.created_ms, ev.body.as_slice()), (created, b.as_slice()));
        assert_eq!(record_created(&record(created, &b)), created);
        assert!(parse_record(1, &[1, 2]).is_none());

        let t = topic("door-1", &ev);
        let Some(Topic::Telemetry {
            device_id,
            properties,
        }) = topics::parse(&t)
        else {
            panic!("{t}")
        };
        assert_eq!(device_id, "door-1");
        assert!(properties.starts_with("$.ct=application%2Fjson&$.ce=utf-8&"));
        assert!(properties.ends_with("&seq=12"));
        assert!(properties.contains(&format!(
            "iothub-creation-time-utc={}",
            got.at
                .replace(':', "%3A")
                .replace('-', "%2D")
                .replace('.', "%2E")
        )));
    }
}
