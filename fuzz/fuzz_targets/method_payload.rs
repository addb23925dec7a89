//! Direct-method payload handling of the bridge: random payload bytes against random method
//! actions (coil from a fixed value or a payload member, register with a random spec, pulse
//! with a payload duration), through `fieldgate::bridge::check_method_payload`, the gate that
//! keeps malformed payloads off the bus.
//!
//! Checks: no panic; an accepted payload writes only the action's own address; a register
//! write is exactly `spec.encode(value)`; a pulse holds for a positive time no longer than its
//! maximum.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use fieldgate::bridge::{check_method_payload, MethodPlan};
use fieldgate::codec::{DataType, ValueSpec, WordOrder};
use fieldgate::config::{MethodAction, ValueSource};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
enum Action {
    Coil {
        address: u16,
        field: Option<String>,
        fixed: bool,
    },
    Register {
        address: u16,
        field: Option<String>,
        data_type: u8,
        order: u8,
        scale: u8,
        min: Option<i16>,
        max: Option<i16>,
        enum_names: Vec<String>,
    },
    Pulse {
        address: u16,
        value: bool,
        field: Option<String>,
        default_ms: u32,
        max_ms: u32,
    },
}

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

/// Field names are mostly the ones seed payloads use, so the fuzzer reaches the value checks.
fn field(f: &Option<String>) -> String {
    match f.as_deref() {
        None | Some("") => "value".into(),
        Some(s) if s.len() == 1 => "seconds".into(),
        Some(s) => s.to_string(),
    }
}

fn action(a: &Action) -> MethodAction {
    match a {
        Action::Coil {
            address,
            field: f,
            fixed,
        } => MethodAction::WriteCoil {
            address: *address,
            value: match f {
                None => ValueSource::Fixed(Value::Bool(*fixed)),
                Some(_) => ValueSource::Payload(field(f)),
            },
        },
        Action::Register {
            address,
            field: f,
            data_type,
            order,
            scale,
            min,
            max,
            enum_names,
        } => {
            let t = TYPES[*data_type as usize % TYPES.len()];
            let mut spec = ValueSpec::new(t).with_order(ORDERS[*order as usize % ORDERS.len()]);
            if enum_names.is_empty() {
                if t != DataType::Bool {
                    spec = spec
                        .with_scale(SCALES[*scale as usize % SCALES.len()], 0.0)
                        .with_range(min.map(f64::from), max.map(f64::from));
                }
            } else {
                spec = spec.with_enum(
                    enum_names
                        .iter()
                        .take(6)
                        .cloned()
                        .enumerate()
                        .map(|(i, n)| (i as i64, n)),
                );
            }
            MethodAction::WriteRegister {
                address: *address,
                spec,
                value: ValueSource::Payload(field(f)),
            }
        }
        Action::Pulse {
            address,
            value,
            field: f,
            default_ms,
            max_ms,
        } => {
            let max = Duration::from_millis(u64::from(*max_ms));
            MethodAction::PulseCoil {
                address: *address,
                value: *value,
                seconds_from: f.as_ref().map(|_| field(f)),
                default: Duration::from_millis(u64::from(*default_ms)).min(max),
                max,
            }
        }
    }
}

fuzz_target!(|input: (Action, Vec<u8>)| {
    let (a, payload) = input;
    let action = action(&a);
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
