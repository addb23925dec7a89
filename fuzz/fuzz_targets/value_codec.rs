//! The register value codec: random value specs (type, word order, scale, offset, bounds,
//! enum map, bit) with random JSON values and random register contents.
//!
//! Checks, for every spec: `decode`, `encode` and `encode_onto` never panic. For specs that
//! pass `validate` (the only ones a config can hold): an accepted value encodes to exactly
//! `register_count` registers, those registers decode, and the decoded value encodes back to
//! the same registers; without scale, offset or bounds an integer, enum or bool comes back
//! exactly, and registers that decode re-encode to themselves.
#![no_main]

use arbitrary::Arbitrary;
use fieldgate::codec::{DataType, ValueSpec, WordOrder};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
enum Num {
    Pick(u8),
    Any(f64),
}

impl Num {
    fn get(&self, picks: &[f64]) -> f64 {
        match self {
            Num::Pick(i) => picks[*i as usize % picks.len()],
            Num::Any(f) => *f,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum JsonValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Null,
    Text(String),
}

impl JsonValue {
    fn to_json(&self, spec: &ValueSpec) -> Value {
        match self {
            JsonValue::Int(i) => Value::from(*i),
            JsonValue::UInt(u) => Value::from(*u),
            JsonValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            JsonValue::Bool(b) => Value::Bool(*b),
            // Mostly one of the enum's own names, so encode gets past the name lookup.
            JsonValue::Str(s) => match spec
                .enum_map
                .values()
                .nth(s.len() % (spec.enum_map.len() + 1))
            {
                Some(name) => Value::String(name.clone()),
                None => Value::String(s.clone()),
            },
            JsonValue::Null => Value::Null,
            JsonValue::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    data_type: u8,
    order: u8,
    scale: Num,
    offset: Num,
    min: Option<Num>,
    max: Option<Num>,
    enum_map: Vec<(i64, String)>,
    bit: Option<u8>,
    value: JsonValue,
    regs: Vec<u16>,
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
const SCALES: [f64; 9] = [1.0, 0.1, 0.01, 0.001, 0.5, 0.25, 2.0, 10.0, -1.0];
const OFFSETS: [f64; 6] = [0.0, 1.0, -40.0, 273.15, 0.5, -1000.0];
const BOUNDS: [f64; 8] = [0.0, 1.0, -1.0, 100.0, -40.0, 65535.0, 2.5, 1e6];

fn same_number(a: &Value, b: &Value) -> bool {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

fuzz_target!(|inp: Input| {
    let mut spec = ValueSpec::new(TYPES[inp.data_type as usize % TYPES.len()])
        .with_order(ORDERS[inp.order as usize % ORDERS.len()])
        .with_scale(inp.scale.get(&SCALES), inp.offset.get(&OFFSETS))
        .with_range(
            inp.min.as_ref().map(|n| n.get(&BOUNDS)),
            inp.max.as_ref().map(|n| n.get(&BOUNDS)),
        )
        .with_enum(inp.enum_map.iter().take(8).cloned());
    spec.bit = inp.bit;
    let v = inp.value.to_json(&spec);

    // Whatever the spec: no panics.
    let _ = spec.decode(&inp.regs);
    let encoded = spec.encode(&v);
    let _ = spec.encode_onto(&v, &inp.regs);
    let _ = spec.changed(&v, &v, 0.5);

    if !spec.validate().is_empty() {
        return;
    }
    let n = spec.register_count() as usize;
    if let Ok(words) = &encoded {
        assert_eq!(words.len(), n, "{spec:?} encoded {v} to {words:?}");
        let d = spec.decode(words).unwrap_or_else(|e| {
            panic!("{spec:?}: {v} encoded to {words:?}, which does not decode: {e}")
        });
        let again = spec.encode(&d).unwrap_or_else(|e| {
            panic!("{spec:?}: {v} → {words:?} → {d}, which does not encode: {e}")
        });
        assert_eq!(&again, words, "{spec:?}: {v} → {words:?} → {d} → {again:?}");
        let plain = spec.scale == 1.0 && spec.offset == 0.0;
        if spec.bit.is_some() || spec.data_type == DataType::Bool || spec.is_enum() {
            assert_eq!(d, v, "{spec:?}: {v} came back as {d}");
        } else if plain && spec.data_type.is_integer() {
            assert!(same_number(&d, &v), "{spec:?}: {v} came back as {d}");
        }
    }
    // Registers as a device may hold them: exact for plain integers and enums.
    let exact = spec.data_type.is_integer()
        && spec.scale == 1.0
        && spec.offset == 0.0
        && spec.min.is_none()
        && spec.max.is_none()
        && spec.bit.is_none();
    if exact && inp.regs.len() >= n {
        let regs = &inp.regs[..n];
        let d = spec.decode(regs).expect("integer registers always decode");
        if !spec.is_enum() || d.is_string() {
            let back = spec
                .encode(&d)
                .unwrap_or_else(|e| panic!("{spec:?}: {regs:?} → {d} does not encode: {e}"));
            assert_eq!(back, regs, "{spec:?}: {regs:?} → {d} → {back:?}");
        }
    }
});
