//! Whether the doors took a desired value: after a twin job or `twin set`, each door's
//! reported acknowledgement of every property that was set, following the IoT Plug and Play
//! convention for writable properties the gateway uses
//! (<https://learn.microsoft.com/azure/iot/concepts-convention#writable-properties>):
//! `{"value", "ac", "av", "ad"}` under the property's name in the reported properties, where
//! `av` is the desired version the acknowledgement answers. IoT Hub itself only says the twin
//! was updated; this is what an operator means by "did the doors take it".

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::model::{natural_cmp, Twin};
use super::{ClientError, ServiceClient};

/// Devices asked for per query (`deviceId IN [...]`); keeps each query small and the number
/// of queries per round low (IoT Hub S1 allows 20 queries a minute per unit).
const PER_QUERY: usize = 100;

/// One property's acknowledgement by one door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Ack {
    /// `ac` 2xx for the current desired value.
    Applied,
    /// `ac` outside 2xx for the current desired value: the door did not take it.
    Refused { ac: i64, ad: String },
    /// No acknowledgement of the current desired value yet.
    Waiting,
}

/// The acknowledgement of `prop` in `twin`: answered when the reported `av` is at least the
/// desired version that last set the property (`$metadata.<prop>.$lastUpdatedVersion`, or
/// the desired `$version` where the hub gives no per-property metadata).
pub fn ack_of(twin: &Twin, prop: &str) -> Ack {
    let desired = &twin.properties.desired;
    let version = desired
        .get("$metadata")
        .and_then(|m| m.get(prop))
        .and_then(|m| m.get("$lastUpdatedVersion"))
        .and_then(Value::as_u64)
        .or_else(|| desired.get("$version").and_then(Value::as_u64))
        .unwrap_or(0);
    let Some(r) = twin.properties.reported.get(prop) else {
        return Ack::Waiting;
    };
    match (
        r.get("ac").and_then(Value::as_i64),
        r.get("av").and_then(Value::as_u64),
    ) {
        (Some(ac), Some(av)) if av >= version => {
            if (200..300).contains(&ac) {
                Ack::Applied
            } else {
                Ack::Refused {
                    ac,
                    ad: r
                        .get("ad")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                }
            }
        }
        _ => Ack::Waiting,
    }
}

/// One door's acknowledgements of the properties it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DoorAcks {
    pub device_id: String,
    pub properties: Vec<(String, Ack)>,
}

impl DoorAcks {
    pub fn of(twin: &Twin, props: &[String]) -> Self {
        DoorAcks {
            device_id: twin.device_id.clone(),
            properties: props.iter().map(|p| (p.clone(), ack_of(twin, p))).collect(),
        }
    }

    pub fn answered(&self) -> bool {
        self.properties.iter().all(|(_, a)| *a != Ack::Waiting)
    }

    /// Why the door did not take what it was sent (refusals with the door's reason, then
    /// what it never answered), or `None` if it took everything.
    pub fn failure(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (p, a) in &self.properties {
            match a {
                Ack::Applied => {}
                Ack::Refused { ac, ad } => parts.push(format!("{p}: ac {ac}: {ad}")),
                Ack::Waiting => parts.push(format!("{p}: no acknowledgement")),
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Reads the doors' twins until every one answered every property or `wait` passes; one
/// query per [`PER_QUERY`] doors still waiting, every `every`. Doors the hub does not know
/// are left out.
pub async fn follow(
    client: &ServiceClient,
    ids: &[String],
    props: &[String],
    wait: Duration,
    every: Duration,
) -> Result<Vec<DoorAcks>, ClientError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut done: Vec<DoorAcks> = Vec::new();
    let mut waiting: Vec<String> = ids.to_vec();
    let mut last: Vec<DoorAcks> = Vec::new();
    loop {
        last.clear();
        for chunk in waiting.chunks(PER_QUERY) {
            let list: Vec<String> = chunk
                .iter()
                .map(|id| format!("'{}'", id.replace('\'', "\\'")))
                .collect();
            let q = format!(
                "SELECT * FROM devices WHERE deviceId IN [{}]",
                list.join(", ")
            );
            let twins: Vec<Twin> = client.query(&q).await?;
            last.extend(twins.iter().map(|t| DoorAcks::of(t, props)));
        }
        let (answered, open): (Vec<DoorAcks>, Vec<DoorAcks>) =
            last.drain(..).partition(DoorAcks::answered);
        done.extend(answered);
        waiting = open.iter().map(|d| d.device_id.clone()).collect();
        let now = tokio::time::Instant::now();
        if waiting.is_empty() || now >= deadline {
            done.extend(open);
            break;
        }
        tokio::time::sleep(every.min(deadline - now)).await;
    }
    done.sort_by(|a, b| natural_cmp(&a.device_id, &b.device_id));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin(desired: Value, reported: Value) -> Twin {
        serde_json::from_value(json!({"deviceId": "door-1",
            "properties": {"desired": desired, "reported": reported}}))
        .unwrap()
    }

    #[test]
    fn an_ack_answers_the_version_that_set_the_property() {
        let desired = json!({"Floor": 999, "Building": 43, "$version": 7,
            "$metadata": {"Floor": {"$lastUpdatedVersion": 7}, "Building": {"$lastUpdatedVersion": 5}}});
        // Building was acked at 5 (its own version), Floor at 6 (an older value): Floor waits.
        let t = twin(
            desired.clone(),
            json!({"Building": {"ac": 200, "av": 5, "value": 43},
                   "Floor": {"ac": 200, "av": 6, "value": 3}}),
        );
        assert_eq!(ack_of(&t, "Building"), Ack::Applied);
        assert_eq!(ack_of(&t, "Floor"), Ack::Waiting);
        let t = twin(
            desired,
            json!({"Floor": {"ac": 400, "av": 7, "value": 3,
                "ad": "not written: 999 is above the maximum 120"}}),
        );
        let acks = DoorAcks::of(&t, &["Floor".to_string(), "Building".to_string()]);
        assert!(!acks.answered(), "Building has no ack at all");
        assert_eq!(
            acks.failure().unwrap(),
            "Floor: ac 400: not written: 999 is above the maximum 120; Building: no acknowledgement"
        );
        // Without per-property metadata the desired $version is the bar.
        let t = twin(
            json!({"Floor": 3, "$version": 4}),
            json!({"Floor": {"ac": 200, "av": 4}}),
        );
        assert_eq!(ack_of(&t, "Floor"), Ack::Applied);
    }
}
