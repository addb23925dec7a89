//! Desired-patch handling of the bridge: random JSON patches against a door with a desired
//! map covering every kind of point (coil, bit, enum, scaled and bounded numbers, 32/64-bit
//! and float registers), through `fieldgate::bridge::check_desired_patch`, the validation
//! that runs before anything is written.
//!
//! Checks: no panic; every property of the patch (not `$`-prefixed, not null) is accounted
//! for exactly once: a write to the address its point names, or an acknowledgement (400
//! refused, 404 unmapped) carrying the patch version; counts agree; nothing is written on a
//! full reconcile for unmapped names, and no write carries the wrong number of registers.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use fieldgate::bridge::check_desired_patch;
use fieldgate::codec::{DataType, ValueSpec, WordOrder};
use fieldgate::config::{DesiredPoint, Door, KeySource, Secret, WriteTable};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn door() -> &'static Door {
    static DOOR: OnceLock<Door> = OnceLock::new();
    DOOR.get_or_init(|| {
        let p = |table, address, spec| DesiredPoint {
            table,
            address,
            spec,
        };
        let desired: BTreeMap<String, DesiredPoint> = [
            ("locked", p(WriteTable::Coil, 0, ValueSpec::bool())),
            ("alarm", p(WriteTable::Holding, 5, ValueSpec::bit(3))),
            (
                "mode",
                p(
                    WriteTable::Holding,
                    10,
                    ValueSpec::new(DataType::U16).with_enum([
                        (0, "normal"),
                        (1, "maintenance"),
                        (2, "lockdown"),
                    ]),
                ),
            ),
            (
                "building",
                p(WriteTable::Holding, 0, ValueSpec::new(DataType::U16)),
            ),
            (
                "floor",
                p(
                    WriteTable::Holding,
                    1,
                    ValueSpec::new(DataType::I16).with_range(Some(-5.0), Some(100.0)),
                ),
            ),
            (
                "openMs",
                p(
                    WriteTable::Holding,
                    2,
                    ValueSpec::new(DataType::U32)
                        .with_order(WordOrder::CDAB)
                        .with_range(Some(0.0), Some(60000.0)),
                ),
            ),
            (
                "setpoint",
                p(
                    WriteTable::Holding,
                    20,
                    ValueSpec::new(DataType::I16)
                        .with_scale(0.1, -40.0)
                        .with_range(Some(-40.0), Some(85.0)),
                ),
            ),
            (
                "gain",
                p(
                    WriteTable::Holding,
                    30,
                    ValueSpec::new(DataType::F32).with_order(WordOrder::DCBA),
                ),
            ),
            (
                "total",
                p(WriteTable::Holding, 40, ValueSpec::new(DataType::U64)),
            ),
            (
                "offset",
                p(
                    WriteTable::Holding,
                    50,
                    ValueSpec::new(DataType::F64).with_scale(0.5, 1.0),
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, p) in &desired {
            assert!(p.spec.validate().is_empty(), "{k}");
        }
        Door {
            device_id: "door-fuzz".into(),
            bus: "bus".into(),
            unit: 1,
            profile: "door".into(),
            key: Secret::new("AAAA"),
            key_source: KeySource::Inline,
            tags: serde_json::Map::new(),
            poll_interval: Duration::from_secs(1),
            model_id: None,
            methods: BTreeMap::new(),
            desired,
            reported: BTreeMap::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let full = flags & 1 == 1;
    let version = u64::from(flags >> 1);
    let door = door();
    let (out, writes) = check_desired_patch(door, &patch, version, full);

    let props: Vec<(&String, &Value)> = patch
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(out.applied + out.failed, 0, "checking wrote something");
    assert_eq!(
        writes.len() as u64
            + out.rejected
            + out.ignored
            + if full {
                props
                    .iter()
                    .filter(|(k, _)| !door.desired.contains_key(*k))
                    .count() as u64
            } else {
                0
            },
        props.len() as u64,
        "every property accounted for once"
    );
    for w in &writes {
        let point = &door.desired[&w.name];
        assert_eq!(
            (w.table, w.address),
            (point.table, point.address),
            "{} written elsewhere",
            w.name
        );
        assert_eq!(w.words.len(), point.spec.register_count() as usize);
        assert!(
            !out.acks.contains_key(&w.name),
            "{} both written and refused",
            w.name
        );
        assert_eq!(point.spec.encode(&patch[&w.name]).as_ref(), Ok(&w.words));
    }
    for (name, ack) in &out.acks {
        let ac = ack["ac"].as_i64().expect("ac");
        assert!(ac == 400 || ac == 404, "{name}: ac {ac}");
        assert_eq!(ack["av"], Value::from(version));
        assert_eq!(ac == 404, !door.desired.contains_key(name));
        assert!(
            !full || ac != 404,
            "unmapped {name} acknowledged again on a full reconcile"
        );
        assert_eq!(&ack["value"], &patch[name]);
    }
    if let Some(p) = out.reported_patch() {
        assert_eq!(p.as_object().map(|m| m.len()), Some(out.acks.len()));
    }
});
