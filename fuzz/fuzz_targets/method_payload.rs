//! Direct-method payload handling of the bridge: random payload bytes against random method
//! actions (coil from a fixed value or a payload member, register with a random spec, pulse
//! with a payload duration), through `fieldgate::bridge::check_method_payload`, the gate that
//! keeps malformed payloads off the bus.
//!
//! Input: an 8-byte header, then the payload. Header: [0] action (mod 4: coil with a fixed
//! value, coil from payload member `value`, register from `value`, pulse), [1] data type /
//! fixed coil value, [2] word order, [3] scale, [4] flags (1 min, 2 max, 4 enum, 8 pulse
//! duration from payload member `seconds`, 16 pulse value), [5..7] address (big-endian),
//! [7] bound (min -b, max b) / maximum pulse seconds.
//!
//! Checks: no panic; an accepted payload writes only the action's own address; a register
//! write is exactly `spec.encode(value)`; a pulse holds for a positive time no longer than its
//! maximum.
#![no_main]

use std::time::Duration;

use fieldgate::bridge::{check_method_payload, MethodPlan};
use fieldgate::codec::{DataType, ValueSpec, WordOrder};
use fieldgate::config::{MethodAction, ValueSource};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TYPES: [DataType; 9] = [
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::U64,
    DataType::I64,
    DataType::F32,
    DataType::F64,
    DataType::Bool,
];
const ORDERS: [WordOrder; 4] = [
    WordOrder::ABCD,
    WordOrder::CDAB,
    WordOrder::BADC,
    WordOrder::DCBA,
];
const SCALES: [f64; 5] = [1.0, 0.1, 0.01, 0.5, 10.0];

/// The action from the 8-byte header (layout in the module docs).
fn action(h: &[u8; 8]) -> MethodAction {
    let address = u16::from_be_bytes([h[5], h[6]]);
    let flags = h[4];
    match h[0] % 4 {
        0 => MethodAction::WriteCoil {
            address,
            value: ValueSource::Fixed(Value::Bool(h[1] & 1 == 1)),
        },
        1 => MethodAction::WriteCoil {
            address,
            value: ValueSource::Payload("value".into()),
        },
        2 => {
            let t = TYPES[h[1] as usize % TYPES.len()];
            let mut spec = ValueSpec::new(t).with_order(ORDERS[h[2] as usize % ORDERS.len()]);
            if flags & 4 != 0 && t.is_integer() {
                spec = spec.with_enum([(0, "normal"), (1, "maintenance"), (2, "lockdown")]);
            } else if t != DataType::Bool {
                let bound = f64::from(h[7]);
                spec = spec
                    .with_scale(SCALES[h[3] as usize % SCALES.len()], 0.0)
                    .with_range(
                        (flags & 1 != 0).then_some(-bound),
                        (flags & 2 != 0).then_some(bound),
                    );
            }
            MethodAction::WriteRegister {
                address,
                spec,
                value: ValueSource::Payload("value".into()),
            }
        }
        _ => {
            let max = Duration::from_secs(u64::from(h[7]));
            MethodAction::PulseCoil {
                address,
                value: flags & 16 != 0,
                seconds_from: (flags & 8 != 0).then(|| "seconds".to_string()),
                default: Duration::from_secs(5).min(max),
                max,
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((h, payload)) = data.split_first_chunk::<8>() else {
        return;
    };
    let action = action(h);
    let Ok(plan) = check_method_payload(&action, &payload) else {
        return;
    };
    let (_, target) = action.target();
    match (&action, plan) {
        (MethodAction::WriteCoil { .. }, MethodPlan::Coil { addr, .. }) => assert_eq!(addr, target),
        (
            MethodAction::WriteRegister { spec, .. },
            MethodPlan::Registers {
                addr, words, value, ..
            },
        ) => {
            assert_eq!(addr, target);
            assert_eq!(spec.encode(&value).as_ref(), Ok(&words));
            assert_eq!(words.len(), spec.register_count() as usize);
        }
        (
            MethodAction::PulseCoil { value: v, max, .. },
            MethodPlan::Pulse { addr, value, hold },
        ) => {
            assert_eq!((addr, value), (target, *v));
            assert!(hold <= *max, "pulse of {hold:?} over the maximum {max:?}");
        }
        (a, p) => panic!("{a:?} planned as {p:?}"),
    }
});
