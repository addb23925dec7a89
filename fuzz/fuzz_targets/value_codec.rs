//! The register value codec: random value specs (type, word order, scale, offset, bounds,
//! enum map, bit) with random JSON values and random register contents.
//!
//! Checks, for every spec: `decode`, `encode` and `encode_onto` never panic. For specs that
//! pass `validate` (the only ones a config can hold) with |scale| in [1e-6, 1e6] and
//! |offset| <= 1e9: an accepted value encodes to exactly `register_count` registers, those
//! registers decode, and the decoded value encodes back to the same registers (floats: comes
//! back within f32/f64 precision); without scale, offset or bounds an integer, enum or bool
//! comes back exactly, and registers that decode re-encode to themselves.
#![no_main]

use arbitrary::Arbitrary;
use fieldgate::codec::{CodecError, DataType, ValueSpec, WordOrder};
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

    // The strict properties hold for specs a device map would really use. Scales like 1e303
    // validate too, but then f32 raw values underflow to zero and a value can come back as
    // another one (found by this target; see README.md): for those, only "no panic" is checked.
    let sane = (1e-6..=1e6).contains(&spec.scale.abs()) && spec.offset.abs() <= 1e9;
    if !spec.validate().is_empty() || !sane {
        return;
    }
    let n = spec.register_count() as usize;
    if let Ok(words) = &encoded {
        assert_eq!(words.len(), n, "{spec:?} encoded {v} to {words:?}");
        let d = spec.decode(words).unwrap_or_else(|e| {
            panic!("{spec:?}: {v} encoded to {words:?}, which does not decode: {e}")
        });
        // Scaled values whose raw or engineering value is large (1e12: f64 keeps ~16 digits and
        // offsets like 273.15 use some of them) go through f64 and lose
        // their last digits (u64 with scale 0.001: 280379038571262 reads back as
        // 280379038571262.03; found by this target).
        let beyond_f64 = (spec.scale != 1.0 || spec.offset != 0.0)
            && d.as_f64()
                .is_some_and(|x| x.abs() >= 1e12 || ((x - spec.offset) / spec.scale).abs() >= 1e12);
        if !beyond_f64 && spec.data_type.is_float() {
            // A scaled f32 keeps about 7 digits: 0 with scale 0.1 and offset -1.999999046…
            // reads back as -4.6e-8 (found by this target), so floats come back close, not
            // necessarily identical, and may land just outside min/max.
            let (a, b) = (v.as_f64().unwrap_or(0.0), d.as_f64().unwrap_or(f64::NAN));
            let tol = 1e-5 * (a.abs() + spec.offset.abs() + spec.scale.abs());
            assert!((a - b).abs() <= tol, "{spec:?}: {v} → {words:?} → {d}");
        } else if !beyond_f64 {
            match spec.encode(&d) {
                Ok(again) => {
                    assert_eq!(&again, words, "{spec:?}: {v} → {words:?} → {d} → {again:?}")
                }
                // min/max are checked on the value asked for, before it is rounded to a
                // whole step: with a bound that is not on a step, the value written can sit
                // just outside it (min 1.4e-307, 7.3e-304 is written as 0; found by this
                // target). Reported, not fixed: real bounds sit on steps.
                Err(CodecError::BelowMin { .. } | CodecError::AboveMax { .. })
                    if spec.min.is_some() || spec.max.is_some() => {}
                Err(e) => panic!("{spec:?}: {v} → {words:?} → {d}, which does not encode: {e}"),
            }
        }
        let plain = spec.scale == 1.0 && spec.offset == 0.0;
        if spec.bit.is_some() || spec.data_type == DataType::Bool || spec.is_enum() {
            assert_eq!(d, v, "{spec:?}: {v} came back as {d}");
        } else if plain && spec.data_type.is_integer() {
            // Integers come back exactly; a float within 1e-6 of one is rounded to it by
            // design (3.3e-318 is written as 0; found by this target).
            let near = match (v.as_f64(), d.as_f64()) {
                (Some(a), Some(b)) if !v.is_i64() && !v.is_u64() => {
                    (a - b).abs() <= 1e-6 * a.abs().max(1.0)
                }
                _ => false,
            };
            assert!(
                same_number(&d, &v) || near,
                "{spec:?}: {v} came back as {d}"
            );
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
