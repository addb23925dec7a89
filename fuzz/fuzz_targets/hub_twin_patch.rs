//! fieldhub's twin documents: random sequences of service PATCH / PUT bodies and device
//! reported patches (JSON text) applied to one twin.
//!
//! Input: steps separated by the byte 0xFF (never part of UTF-8 JSON); each step's first byte
//! picks the operation (0 PATCH, 1 PUT, 2 reported patch, modulo 3) and the rest is its body.
//!
//! Checks after every step: no panic; a refused write leaves the twin exactly as it was
//! (all-or-nothing); an accepted one leaves every section within its size limit, with valid
//! property names and depth, a `$metadata` tree that mirrors the properties, versions that
//! moved by one, a desired notification carrying the new `$version`; and the document survives
//! the store's JSON round trip unchanged.
#![no_main]

use fieldhub::twin::{
    self, parse_service_write, TwinDoc, MAX_DESIRED_BYTES, MAX_REPORTED_BYTES, MAX_TAGS_BYTES,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

#[derive(Debug)]
enum Op {
    /// A service PATCH body.
    Patch(Vec<u8>),
    /// A service PUT body.
    Replace(Vec<u8>),
    /// A device's reported patch (raw MQTT payload).
    Reported(Vec<u8>),
}

/// Every property has a metadata node carrying `$lastUpdated`, and the metadata has no node
/// for a property that is gone.
fn check_meta(props: &Map<String, Value>, meta: &Map<String, Value>, path: &str) {
    assert!(
        meta.get("$lastUpdated").is_some_and(Value::is_string),
        "{path}: no $lastUpdated in {meta:?}"
    );
    for (k, v) in props {
        let node = meta
            .get(k)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{path}.{k}: no metadata node"));
        match v {
            Value::Object(child) => check_meta(child, node, &format!("{path}.{k}")),
            _ => assert!(
                node.get("$lastUpdated").is_some(),
                "{path}.{k}: leaf unstamped"
            ),
        }
    }
    for k in meta.keys().filter(|k| !k.starts_with('$')) {
        assert!(
            props.contains_key(k),
            "{path}.{k}: metadata for a deleted property"
        );
    }
}

fn check_twin(t: &TwinDoc) {
    twin::validate("tags", &t.tags).expect("tags valid");
    twin::validate("desired", &t.desired.props).expect("desired valid");
    twin::validate("reported", &t.reported.props).expect("reported valid");
    twin::check_size("tags", &t.tags, MAX_TAGS_BYTES).expect("tags size");
    twin::check_size("desired", &t.desired.props, MAX_DESIRED_BYTES).expect("desired size");
    twin::check_size("reported", &t.reported.props, MAX_REPORTED_BYTES).expect("reported size");
    check_meta(&t.desired.props, &t.desired.meta, "desired");
    check_meta(&t.reported.props, &t.reported.meta, "reported");
    // The store keeps twins as JSON; a restart must give back the same twin.
    let stored = serde_json::to_vec(t).expect("serialize");
    let back: TwinDoc = serde_json::from_slice(&stored).expect("deserialize");
    assert_eq!(&back, t, "twin changed across the store round trip");
    let _ = t.device_view().to_string();
    let _ = t.service_parts();
}

fn ops(data: &[u8]) -> Vec<Op> {
    data.split(|b| *b == 0xFF)
        .filter_map(|step| {
            let (&kind, body) = step.split_first()?;
            let body = body.to_vec();
            Some(match kind % 3 {
                0 => Op::Patch(body),
                1 => Op::Replace(body),
                _ => Op::Reported(body),
            })
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let ops = ops(data);
    let mut t = TwinDoc::new("2026-11-26T00:00:00.000000Z");
    for (i, op) in ops.iter().take(16).enumerate() {
        let at = format!("2026-11-26T00:00:{:02}.000000Z", i + 1);
        let before = t.clone();
        match op {
            Op::Patch(body) | Op::Replace(body) => {
                let Ok(v) = serde_json::from_slice::<Value>(body) else {
                    continue;
                };
                let Ok(w) = parse_service_write(&v) else {
                    continue;
                };
                let r = if matches!(op, Op::Patch(_)) {
                    t.apply_patch(&w, &at)
                } else {
                    t.apply_replace(&w, &at)
                };
                match r {
                    Err(_) => assert_eq!(t, before, "refused write changed the twin"),
                    Ok(notify) => {
                        assert_eq!(t.version, before.version + 1);
                        assert_eq!(t.etag, before.etag + 1);
                        match notify {
                            Some(n) => {
                                assert_eq!(t.desired.version, before.desired.version + 1);
                                assert_eq!(n["$version"], Value::from(t.desired.version));
                            }
                            None => assert_eq!(t.desired, before.desired),
                        }
                    }
                }
            }
            Op::Reported(body) => match t.apply_reported(body, &at) {
                Err(_) => assert_eq!(t, before, "refused reported patch changed the twin"),
                Ok(v) => {
                    assert_eq!(v, before.reported.version + 1);
                    assert_eq!(t.reported.version, v);
                    assert_eq!(t.desired, before.desired);
                    assert_eq!(t.tags, before.tags);
                }
            },
        }
        check_twin(&t);
    }
});
