//! The raw side of a register value: data types and byte/word orders (layouts in the
//! parent module's docs).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the raw register contents are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    Bool,
}

impl DataType {
    /// Number of 16-bit registers one value occupies.
    pub fn register_count(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DataType::F32 | DataType::F64 | DataType::Bool)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    /// Smallest and largest raw value of the type (floats: the finite range).
    pub fn raw_range(self) -> (f64, f64) {
        match self {
            DataType::U16 => (0.0, u16::MAX as f64),
            DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::U64 => (0.0, u64::MAX as f64),
            DataType::I64 => (i64::MIN as f64, i64::MAX as f64),
            DataType::F32 => (f32::MIN as f64, f32::MAX as f64),
            DataType::F64 => (f64::MIN, f64::MAX),
            DataType::Bool => (0.0, 1.0),
        }
    }

    /// Whether the raw integer fits the type (integers only).
    pub(super) fn fits(self, raw: i128) -> bool {
        match self {
            DataType::U16 => u16::try_from(raw).is_ok(),
            DataType::I16 => i16::try_from(raw).is_ok(),
            DataType::U32 => u32::try_from(raw).is_ok(),
            DataType::I32 => i32::try_from(raw).is_ok(),
            DataType::U64 => u64::try_from(raw).is_ok(),
            DataType::I64 => i64::try_from(raw).is_ok(),
            DataType::Bool => raw == 0 || raw == 1,
            DataType::F32 | DataType::F64 => false,
        }
    }

    pub(super) fn range_text(self) -> String {
        match self {
            DataType::U16 => "0 to 65535".into(),
            DataType::I16 => "-32768 to 32767".into(),
            DataType::U32 => "0 to 4294967295".into(),
            DataType::I32 => "-2147483648 to 2147483647".into(),
            DataType::U64 => format!("0 to {}", u64::MAX),
            DataType::I64 => format!("{} to {}", i64::MIN, i64::MAX),
            DataType::F32 => "a finite 32-bit float".into(),
            DataType::F64 => "a finite 64-bit float".into(),
            DataType::Bool => "0 or 1".into(),
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// Byte/word order of multi-byte values (see the module docs for the exact layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum WordOrder {
    #[default]
    #[serde(alias = "abcd")]
    ABCD,
    #[serde(alias = "cdab")]
    CDAB,
    #[serde(alias = "badc")]
    BADC,
    #[serde(alias = "dcba")]
    DCBA,
}

impl WordOrder {
    fn swaps(self) -> (bool, bool) {
        // (reverse word sequence, swap bytes within each word)
        match self {
            WordOrder::ABCD => (false, false),
            WordOrder::CDAB => (true, false),
            WordOrder::BADC => (false, true),
            WordOrder::DCBA => (true, true),
        }
    }

    /// Big-endian value bytes → registers in this order.
    pub(super) fn to_registers(self, be_bytes: &[u8]) -> Vec<u16> {
        let (rev_words, swap_bytes) = self.swaps();
        let mut words: Vec<u16> = be_bytes
            .chunks_exact(2)
            .map(|c| {
                if swap_bytes {
                    u16::from_be_bytes([c[1], c[0]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        if rev_words && words.len() > 1 {
            words.reverse();
        }
        words
    }

    /// Registers in this order → big-endian value bytes (the exact inverse of `to_registers`).
    pub(super) fn to_be_bytes(self, regs: &[u16]) -> Vec<u8> {
        let (rev_words, swap_bytes) = self.swaps();
        let mut words = regs.to_vec();
        if rev_words && words.len() > 1 {
            words.reverse();
        }
        words
            .into_iter()
            .flat_map(|w| {
                let b = w.to_be_bytes();
                if swap_bytes {
                    [b[1], b[0]]
                } else {
                    b
                }
            })
            .collect()
    }
}
