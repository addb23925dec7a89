//! Register value codec: data types, byte/word order, scale/offset, ranges, enum maps, bits.
//!
//! Pure: turns the 16-bit words a Modbus read returns into the JSON value a twin shows
//! (`decode`), and a JSON value from a method payload or desired patch back into the words to
//! write (`encode`), refusing anything that would not round-trip.
//!
//! # Word and byte order
//! A value's bytes, most significant first, are named `A B C D` (32-bit) or `A … H` (64-bit).
//! The order names say how those bytes sit in consecutive registers, as Modbus tools name them:
//!
//! | order | 32-bit registers | 64-bit registers      | 16-bit register | meaning                          |
//! |-------|------------------|-----------------------|-----------------|----------------------------------|
//! | ABCD  | `AB CD`          | `AB CD EF GH`         | `AB`            | big-endian (Modbus default)      |
//! | CDAB  | `CD AB`          | `GH EF CD AB`         | `AB`            | words swapped, bytes big-endian  |
//! | BADC  | `BA DC`          | `BA DC FE HG`         | `BA`            | bytes swapped within each word   |
//! | DCBA  | `DC BA`          | `HG FE DC BA`         | `BA`            | little-endian                    |
//!
//! So for every width: CDAB reverses the word sequence, BADC swaps the two bytes of each
//! word, DCBA does both.
//!
//! # Engineering values
//! `eng = raw * scale + offset`. Integer registers decode to JSON integers when the result is
//! whole (`5000 × 0.001` → `5`), otherwise to JSON floats rounded to the precision the scale
//! and offset imply (so `1234 × 0.01` shows as `12.34`, not `12.340000000000002`); f32/f64
//! registers always decode to floats. An enum map turns the
//! raw integer into a name (`0 → "closed"`); a raw value missing from the map is shown as the
//! number, so an unexpected device state stays visible. A `bit` point is one bit of one
//! register and its value is a bool; so are coils and discrete inputs (`DataType::Bool`,
//! one "register" holding 0 or 1).

use std::collections::BTreeMap;

use serde_json::Value;

mod types;
pub use types::{DataType, WordOrder};

/// Why a value could not be decoded or encoded, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("expected {expected}, got {got}")]
    WrongType { expected: &'static str, got: String },
    #[error("{got} is not one of: {allowed}")]
    UnknownName { got: String, allowed: String },
    #[error("{value} is below the minimum {min}")]
    BelowMin { value: f64, min: f64 },
    #[error("{value} is above the maximum {max}")]
    AboveMax { value: f64, max: f64 },
    #[error(
        "{value} is not a whole multiple of the register's step {scale} (after offset {offset})"
    )]
    NotAStep { value: f64, scale: f64, offset: f64 },
    #[error("{value} needs raw value {raw}, which does not fit a {data_type} register ({range})")]
    Overflow {
        value: String,
        raw: String,
        data_type: DataType,
        range: String,
    },
    #[error("expected {expected} register(s) for a {data_type} value, got {got}")]
    RegisterCount {
        expected: u16,
        got: usize,
        data_type: DataType,
    },
    #[error("the register holds {0}, which is not a finite number")]
    NotFinite(String),
    #[error("invalid value map: {0}")]
    BadSpec(String),
}

/// How one point's registers map to an engineering value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueSpec {
    pub data_type: DataType,
    pub order: WordOrder,
    pub scale: f64,
    pub offset: f64,
    /// Engineering-unit bounds enforced on encode (decode reports whatever the device holds).
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Raw integer → name. Non-empty makes the point an enum: names in, names out.
    pub enum_map: BTreeMap<i64, String>,
    /// The point is this bit (0 = least significant) of one register; the value is a bool.
    pub bit: Option<u8>,
}

impl Default for ValueSpec {
    fn default() -> Self {
        ValueSpec::new(DataType::U16)
    }
}

impl ValueSpec {
    /// A plain value of the given type: ABCD, scale 1, offset 0, no bounds, no enum, no bit.
    pub fn new(data_type: DataType) -> Self {
        ValueSpec {
            data_type,
            order: WordOrder::ABCD,
            scale: 1.0,
            offset: 0.0,
            min: None,
            max: None,
            enum_map: BTreeMap::new(),
            bit: None,
        }
    }

    /// A bool (coil, discrete input, or a nonzero register).
    pub fn bool() -> Self {
        ValueSpec::new(DataType::Bool)
    }

    /// Bit `bit` of one register, as a bool.
    pub fn bit(bit: u8) -> Self {
        ValueSpec {
            bit: Some(bit),
            ..ValueSpec::new(DataType::Bool)
        }
    }

    pub fn with_order(mut self, order: WordOrder) -> Self {
        self.order = order;
        self
    }

    pub fn with_scale(mut self, scale: f64, offset: f64) -> Self {
        self.scale = scale;
        self.offset = offset;
        self
    }

    pub fn with_range(mut self, min: Option<f64>, max: Option<f64>) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    pub fn with_enum<S: Into<String>>(mut self, map: impl IntoIterator<Item = (i64, S)>) -> Self {
        self.enum_map = map.into_iter().map(|(k, v)| (k, v.into())).collect();
        self
    }

    /// Registers one value occupies.
    pub fn register_count(&self) -> u16 {
        self.data_type.register_count()
    }

    pub fn is_enum(&self) -> bool {
        !self.enum_map.is_empty()
    }

    /// Whether the value is a number that a deadband applies to.
    pub fn is_numeric(&self) -> bool {
        self.data_type != DataType::Bool && !self.is_enum()
    }

    /// Checks the spec is self-consistent; each problem is one message.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let t = self.data_type;
        if let Some(b) = self.bit {
            if b > 15 {
                errs.push(format!(
                    "bit {b} does not exist: a register has bits 0 to 15"
                ));
            }
            if t != DataType::Bool {
                errs.push(format!("a bit point is a bool; type {t} does not apply"));
            }
        }
        if !(self.scale.is_finite() && self.scale != 0.0) {
            errs.push(format!(
                "scale {} must be a finite nonzero number",
                self.scale
            ));
        }
        if !self.offset.is_finite() {
            errs.push(format!("offset {} must be finite", self.offset));
        }
        let scaled = self.scale != 1.0 || self.offset != 0.0;
        if t == DataType::Bool {
            if scaled {
                errs.push("scale and offset do not apply to a bool".into());
            }
            if self.min.is_some() || self.max.is_some() {
                errs.push("min and max do not apply to a bool".into());
            }
        }
        if self.is_enum() {
            if !t.is_integer() {
                errs.push(format!("an enum needs an integer type, not {t}"));
            }
            if scaled {
                errs.push("scale and offset do not apply to an enum".into());
            }
            if self.min.is_some() || self.max.is_some() {
                errs.push("min and max do not apply to an enum (its names are the range)".into());
            }
            let mut seen = BTreeMap::new();
            for (raw, name) in &self.enum_map {
                if t.is_integer() && !t.fits(*raw as i128) {
                    errs.push(format!(
                        "enum value {raw} (\"{name}\") does not fit a {t} register ({})",
                        t.range_text()
                    ));
                }
                if name.is_empty() {
                    errs.push(format!("enum value {raw} has an empty name"));
                }
                if let Some(prev) = seen.insert(name.as_str(), *raw) {
                    errs.push(format!(
                        "enum name \"{name}\" is used for both {prev} and {raw}"
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max) {
            if lo > hi {
                errs.push(format!("min {lo} is above max {hi}"));
            }
        }
        if t != DataType::Bool && self.scale.is_finite() && self.scale != 0.0 {
            let (a, b) = t.raw_range();
            let (e1, e2) = (a * self.scale + self.offset, b * self.scale + self.offset);
            let places = decimals(self.scale).max(decimals(self.offset));
            let (elo, ehi) = (round_to(e1.min(e2), places), round_to(e1.max(e2), places));
            for (name, bound) in [("min", self.min), ("max", self.max)] {
                if let Some(v) = bound {
                    if !v.is_finite() || v < elo || v > ehi {
                        errs.push(format!(
                            "{name} {v} is outside what the register can hold ({t} with this scale and offset: {} to {})",
                            fmt_num(elo),
                            fmt_num(ehi)
                        ));
                    }
                }
            }
        }
        errs
    }

    fn check_len(&self, regs: &[u16]) -> Result<(), CodecError> {
        let n = self.register_count();
        if regs.len() != n as usize {
            return Err(CodecError::RegisterCount {
                expected: n,
                got: regs.len(),
                data_type: self.data_type,
            });
        }
        Ok(())
    }

    /// Registers (as read) → engineering JSON value.
    pub fn decode(&self, regs: &[u16]) -> Result<Value, CodecError> {
        self.check_len(regs)?;
        if let Some(b) = self.bit {
            return Ok(Value::Bool((regs[0] >> (b & 15)) & 1 == 1));
        }
        let bytes = self.order.to_be_bytes(regs);
        let raw = match self.data_type {
            DataType::Bool => return Ok(Value::Bool(regs[0] != 0)),
            DataType::U16 => Raw::Int(u16::from_be_bytes(arr(&bytes)) as i128),
            DataType::I16 => Raw::Int(i16::from_be_bytes(arr(&bytes)) as i128),
            DataType::U32 => Raw::Int(u32::from_be_bytes(arr(&bytes)) as i128),
            DataType::I32 => Raw::Int(i32::from_be_bytes(arr(&bytes)) as i128),
            DataType::U64 => Raw::Int(u64::from_be_bytes(arr(&bytes)) as i128),
            DataType::I64 => Raw::Int(i64::from_be_bytes(arr(&bytes)) as i128),
            DataType::F32 => {
                let f = f32::from_be_bytes(arr(&bytes));
                if !f.is_finite() {
                    return Err(CodecError::NotFinite(f.to_string()));
                }
                // Shortest f32 text, so 0.1f32 reads 0.1 rather than 0.10000000149011612.
                Raw::Float(f.to_string().parse().unwrap_or(f as f64))
            }
            DataType::F64 => {
                let f = f64::from_be_bytes(arr(&bytes));
                if !f.is_finite() {
                    return Err(CodecError::NotFinite(f.to_string()));
                }
                Raw::Float(f)
            }
        };
        if let Raw::Int(i) = raw {
            if self.is_enum() {
                let name = i64::try_from(i).ok().and_then(|k| self.enum_map.get(&k));
                return Ok(match name {
                    Some(n) => Value::String(n.clone()),
                    None => int_json(i),
                });
            }
            if self.scale == 1.0 && self.offset.fract() == 0.0 && self.offset.abs() < 1e15 {
                return Ok(int_json(i + self.offset as i128));
            }
        }
        let x = match raw {
            Raw::Int(i) => i as f64,
            Raw::Float(f) => f,
        };
        let eng = x * self.scale + self.offset;
        // Only integer registers are rounded to the places the scale and offset imply: a
        // float register has its own fraction (f32 72.5 with offset -40 is 32.5, not 33).
        let eng = if (self.scale == 1.0 && self.offset == 0.0) || self.data_type.is_float() {
            eng
        } else {
            round_to(eng, decimals(self.scale).max(decimals(self.offset)))
        };
        // A scaled integer register that lands on a whole number reads as an integer, so a
        // desired `5` is echoed back as `5`, not `5.0`.
        if self.data_type.is_integer() && eng.fract() == 0.0 && eng.abs() < 9.0e15 {
            return Ok(Value::from(eng as i64));
        }
        serde_json::Number::from_f64(eng)
            .map(Value::Number)
            .ok_or_else(|| CodecError::NotFinite(eng.to_string()))
    }

    /// Engineering JSON value → registers to write. Checks type, enum names, min/max,
    /// whole steps of the scale and the raw type's range; writes nothing on error.
    pub fn encode(&self, v: &Value) -> Result<Vec<u16>, CodecError> {
        if let Some(b) = self.bit {
            let on = as_bool(v)?;
            return Ok(vec![u16::from(on) << (b & 15)]);
        }
        if self.data_type == DataType::Bool {
            return Ok(vec![u16::from(as_bool(v)?)]);
        }
        if self.is_enum() {
            let name = v.as_str().ok_or_else(|| CodecError::WrongType {
                expected: "one of the names",
                got: describe(v),
            })?;
            let raw = self
                .enum_map
                .iter()
                .find(|(_, n)| n.as_str() == name)
                .map(|(k, _)| *k)
                .ok_or_else(|| CodecError::UnknownName {
                    got: format!("\"{name}\""),
                    allowed: self.enum_names().join(", "),
                })?;
            return self.pack_int(raw as i128, v);
        }
        let n = match v {
            Value::Number(n) => n,
            other => {
                return Err(CodecError::WrongType {
                    expected: "a number",
                    got: describe(other),
                })
            }
        };
        let eng = n.as_f64().unwrap_or(f64::NAN);
        if let Some(min) = self.min {
            if eng < min {
                return Err(CodecError::BelowMin { value: eng, min });
            }
        }
        if let Some(max) = self.max {
            if eng > max {
                return Err(CodecError::AboveMax { value: eng, max });
            }
        }
        if self.data_type.is_integer() {
            // Exact path for unscaled integers: f64 cannot hold every 64-bit value.
            if self.scale == 1.0 && self.offset == 0.0 {
                if let Some(i) = n.as_i64() {
                    return self.pack_int(i as i128, v);
                }
                if let Some(u) = n.as_u64() {
                    return self.pack_int(u as i128, v);
                }
            }
            let raw = (eng - self.offset) / self.scale;
            let rounded = raw.round();
            if (raw - rounded).abs() > 1e-6 * rounded.abs().max(1.0) {
                return Err(CodecError::NotAStep {
                    value: eng,
                    scale: self.scale,
                    offset: self.offset,
                });
            }
            if rounded.abs() > 1.8e19 {
                return Err(self.overflow(v, fmt_num(rounded)));
            }
            return self.pack_int(rounded as i128, v);
        }
        let raw = (eng - self.offset) / self.scale;
        match self.data_type {
            DataType::F32 => {
                let f = raw as f32;
                if !f.is_finite() {
                    return Err(self.overflow(v, fmt_num(raw)));
                }
                Ok(self.order.to_registers(&f.to_be_bytes()))
            }
            _ => {
                if !raw.is_finite() {
                    return Err(self.overflow(v, fmt_num(raw)));
                }
                Ok(self.order.to_registers(&raw.to_be_bytes()))
            }
        }
    }

    /// Like `encode`, but for a `bit` point changes only that bit of `current` (the register
    /// as just read), so the other bits survive a read-modify-write.
    pub fn encode_onto(&self, v: &Value, current: &[u16]) -> Result<Vec<u16>, CodecError> {
        match self.bit {
            Some(b) => {
                self.check_len(current)?;
                let mask = 1u16 << (b & 15);
                let on = as_bool(v)?;
                Ok(vec![if on {
                    current[0] | mask
                } else {
                    current[0] & !mask
                }])
            }
            None => self.encode(v),
        }
    }

    /// Whether a write must read the register first (`encode_onto`).
    pub fn needs_read_modify_write(&self) -> bool {
        self.bit.is_some()
    }

    /// The enum's names in raw-value order.
    pub fn enum_names(&self) -> Vec<&str> {
        self.enum_map.values().map(String::as_str).collect()
    }

    /// Whether a new value differs enough from the last reported one to report it again.
    /// Numbers move by more than `deadband`; anything else changes on any difference.
    pub fn changed(&self, old: &Value, new: &Value, deadband: f64) -> bool {
        match (old.as_f64(), new.as_f64()) {
            (Some(a), Some(b)) if old.is_number() && new.is_number() => (b - a).abs() > deadband,
            _ => old != new,
        }
    }

    fn pack_int(&self, raw: i128, v: &Value) -> Result<Vec<u16>, CodecError> {
        if !self.data_type.fits(raw) {
            return Err(self.overflow(v, raw.to_string()));
        }
        // Two's complement truncation is exact once `fits` holds.
        let be: Vec<u8> = match self.data_type {
            DataType::U16 | DataType::I16 | DataType::Bool => (raw as u16).to_be_bytes().to_vec(),
            DataType::U32 | DataType::I32 => (raw as u32).to_be_bytes().to_vec(),
            _ => (raw as u64).to_be_bytes().to_vec(),
        };
        Ok(self.order.to_registers(&be))
    }

    fn overflow(&self, v: &Value, raw: String) -> CodecError {
        CodecError::Overflow {
            value: v.to_string(),
            raw,
            data_type: self.data_type,
            range: self.data_type.range_text(),
        }
    }
}

enum Raw {
    Int(i128),
    Float(f64),
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn int_json(i: i128) -> Value {
    if let Ok(x) = i64::try_from(i) {
        Value::from(x)
    } else if let Ok(x) = u64::try_from(i) {
        Value::from(x)
    } else {
        Value::from(i as f64)
    }
}

fn as_bool(v: &Value) -> Result<bool, CodecError> {
    v.as_bool().ok_or_else(|| CodecError::WrongType {
        expected: "true or false",
        got: describe(v),
    })
}

/// The offending value as the operator sent it, typed so the mistake is obvious.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the bool {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Decimal places needed to write `x` exactly (shortest form), capped at 10: the fewest
/// places `p` whose rounding gives `x` back. Every decoded value of a scaled point asks this
/// of its scale and offset, so it is counted without formatting the number.
fn decimals(x: f64) -> i32 {
    let x = x.abs();
    if !x.is_finite() {
        return 0;
    }
    (0..10)
        .find(|&p| {
            let m = 10f64.powi(p);
            (x * m).round() / m == x
        })
        .unwrap_or(10)
}

fn round_to(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    let r = (x * p).round() / p;
    if r.is_finite() {
        r
    } else {
        x
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod decimals_tests {
    use super::decimals;

    #[test]
    fn decimals_match_the_shortest_written_form() {
        let written = |x: f64| {
            let s = format!("{}", x.abs());
            s.split_once('.').map_or(0, |(_, f)| f.len().min(10) as i32)
        };
        for x in [
            0.0,
            1.0,
            0.1,
            0.01,
            0.001,
            0.3,
            0.25,
            2.5,
            1.5e-7,
            123.456,
            0.0625,
            1e20,
            -0.05,
            0.1 + 0.2,
            1.0 / 3.0,
            99.99,
            0.000_000_001,
        ] {
            assert_eq!(decimals(x), written(x), "{x}");
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
