use super::*;
use proptest::prelude::*;
use serde_json::json;

fn spec(t: DataType, o: WordOrder) -> ValueSpec {
    ValueSpec::new(t).with_order(o)
}

#[test]
fn word_orders_32_bit_match_the_tool_names() {
    // 0x11223344: A=11 B=22 C=33 D=44
    let v = json!(0x1122_3344u32);
    assert_eq!(
        spec(DataType::U32, WordOrder::ABCD).encode(&v).unwrap(),
        [0x1122, 0x3344]
    );
    assert_eq!(
        spec(DataType::U32, WordOrder::CDAB).encode(&v).unwrap(),
        [0x3344, 0x1122]
    );
    assert_eq!(
        spec(DataType::U32, WordOrder::BADC).encode(&v).unwrap(),
        [0x2211, 0x4433]
    );
    assert_eq!(
        spec(DataType::U32, WordOrder::DCBA).encode(&v).unwrap(),
        [0x4433, 0x2211]
    );
}

#[test]
fn word_orders_64_bit_extend_the_pattern() {
    let v = json!(0x1122_3344_5566_7788u64);
    let enc = |o| spec(DataType::U64, o).encode(&v).unwrap();
    assert_eq!(enc(WordOrder::ABCD), [0x1122, 0x3344, 0x5566, 0x7788]);
    assert_eq!(enc(WordOrder::CDAB), [0x7788, 0x5566, 0x3344, 0x1122]);
    assert_eq!(enc(WordOrder::BADC), [0x2211, 0x4433, 0x6655, 0x8877]);
    assert_eq!(enc(WordOrder::DCBA), [0x8877, 0x6655, 0x4433, 0x2211]);
}

#[test]
fn sixteen_bit_orders_swap_bytes_only_for_badc_and_dcba() {
    let v = json!(0x1234);
    assert_eq!(
        spec(DataType::U16, WordOrder::CDAB).encode(&v).unwrap(),
        [0x1234]
    );
    assert_eq!(
        spec(DataType::U16, WordOrder::DCBA).encode(&v).unwrap(),
        [0x3412]
    );
}

#[test]
fn f32_known_bit_pattern() {
    // 1.5f32 = 0x3FC00000
    let s = spec(DataType::F32, WordOrder::ABCD);
    assert_eq!(s.encode(&json!(1.5)).unwrap(), [0x3FC0, 0x0000]);
    assert_eq!(s.decode(&[0x3FC0, 0]).unwrap(), json!(1.5));
    // 0.1f32 reads as 0.1, not its f64 widening
    let regs = s.encode(&json!(0.1)).unwrap();
    assert_eq!(s.decode(&regs).unwrap(), json!(0.1));
}

#[test]
fn signed_values_decode_twos_complement() {
    assert_eq!(
        ValueSpec::new(DataType::I16).decode(&[0xFFFF]).unwrap(),
        json!(-1)
    );
    assert_eq!(
        ValueSpec::new(DataType::I16).encode(&json!(-2)).unwrap(),
        [0xFFFE]
    );
    let s = ValueSpec::new(DataType::I32);
    assert_eq!(s.decode(&[0xFFFF, 0xFFFE]).unwrap(), json!(-2));
}

#[test]
fn scale_and_offset_give_clean_engineering_values() {
    let battery = ValueSpec::new(DataType::U16).with_scale(0.01, 0.0);
    assert_eq!(battery.decode(&[1234]).unwrap(), json!(12.34));
    assert_eq!(battery.encode(&json!(12.34)).unwrap(), [1234]);
    let temp = ValueSpec::new(DataType::I16).with_scale(0.1, -40.0);
    assert_eq!(temp.decode(&[615]).unwrap(), json!(21.5));
    assert_eq!(temp.encode(&json!(21.5)).unwrap(), [615]);
    let ms = ValueSpec::new(DataType::U32).with_scale(0.001, 0.0);
    assert_eq!(ms.decode(&[0, 5000]).unwrap(), json!(5));
    assert_eq!(ms.decode(&[0, 5500]).unwrap(), json!(5.5));
}

#[test]
fn offset_only_keeps_integers() {
    let s = ValueSpec::new(DataType::U16).with_scale(1.0, 100.0);
    assert_eq!(s.decode(&[5]).unwrap(), json!(105));
    assert_eq!(s.encode(&json!(105)).unwrap(), [5]);
}

#[test]
fn encode_rejects_values_between_steps() {
    let s = ValueSpec::new(DataType::U16).with_scale(0.01, 0.0);
    let e = s.encode(&json!(12.345)).unwrap_err();
    assert!(matches!(e, CodecError::NotAStep { .. }), "{e}");
    assert!(e.to_string().contains("0.01"), "{e}");
}

#[test]
fn encode_rejects_overflow_of_the_raw_type() {
    let e = ValueSpec::new(DataType::U16)
        .encode(&json!(70000))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "70000 needs raw value 70000, which does not fit a u16 register (0 to 65535)"
    );
    assert!(ValueSpec::new(DataType::U16).encode(&json!(-1)).is_err());
    assert!(ValueSpec::new(DataType::I16).encode(&json!(32768)).is_err());
    assert!(ValueSpec::new(DataType::F32).encode(&json!(1e300)).is_err());
}

#[test]
fn encode_enforces_min_and_max() {
    let s = ValueSpec::new(DataType::U16).with_range(Some(1.0), Some(200.0));
    assert_eq!(
        s.encode(&json!(0)).unwrap_err().to_string(),
        "0 is below the minimum 1"
    );
    assert_eq!(
        s.encode(&json!(201)).unwrap_err().to_string(),
        "201 is above the maximum 200"
    );
    assert_eq!(s.encode(&json!(200)).unwrap(), [200]);
}

#[test]
fn encode_rejects_wrong_json_types() {
    let e = ValueSpec::new(DataType::U16)
        .encode(&json!("7"))
        .unwrap_err();
    assert_eq!(e.to_string(), "expected a number, got the string \"7\"");
    let e = ValueSpec::bool().encode(&json!(1)).unwrap_err();
    assert_eq!(e.to_string(), "expected true or false, got the number 1");
}

#[test]
fn enums_map_names_both_ways() {
    let s = ValueSpec::new(DataType::U16).with_enum([
        (0, "closed"),
        (1, "open"),
        (2, "forced"),
        (3, "held"),
    ]);
    assert_eq!(s.decode(&[2]).unwrap(), json!("forced"));
    assert_eq!(s.encode(&json!("held")).unwrap(), [3]);
    // an unmapped device state stays visible as its number
    assert_eq!(s.decode(&[9]).unwrap(), json!(9));
    let e = s.encode(&json!("ajar")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"ajar\" is not one of: closed, open, forced, held"
    );
    assert!(s.encode(&json!(1)).is_err());
}

#[test]
fn bools_and_bits() {
    let coil = ValueSpec::bool();
    assert_eq!(coil.decode(&[1]).unwrap(), json!(true));
    assert_eq!(coil.encode(&json!(false)).unwrap(), [0]);
    let b3 = ValueSpec::bit(3);
    assert_eq!(b3.decode(&[0b1000]).unwrap(), json!(true));
    assert_eq!(b3.decode(&[0b0111]).unwrap(), json!(false));
    assert_eq!(b3.encode_onto(&json!(true), &[0b0001]).unwrap(), [0b1001]);
    assert_eq!(b3.encode_onto(&json!(false), &[0xFFFF]).unwrap(), [0xFFF7]);
    assert!(b3.needs_read_modify_write());
}

#[test]
fn decode_checks_register_count() {
    let e = ValueSpec::new(DataType::U32).decode(&[1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected 2 register(s) for a u32 value, got 1"
    );
}

#[test]
fn decode_refuses_nan() {
    let s = ValueSpec::new(DataType::F32);
    assert!(matches!(
        s.decode(&[0x7FC0, 0]),
        Err(CodecError::NotFinite(_))
    ));
}

#[test]
fn large_u64_round_trips_exactly() {
    let s = ValueSpec::new(DataType::U64);
    let v = json!(u64::MAX);
    assert_eq!(s.decode(&s.encode(&v).unwrap()).unwrap(), v);
}

#[test]
fn deadband_applies_to_numbers_only() {
    let s = ValueSpec::new(DataType::U16).with_scale(0.01, 0.0);
    assert!(!s.changed(&json!(12.30), &json!(12.34), 0.05));
    assert!(s.changed(&json!(12.30), &json!(12.40), 0.05));
    assert!(s.changed(&json!(1), &json!(2), 0.0));
    assert!(!s.changed(&json!(2), &json!(2), 0.0));
    assert!(s.changed(&json!("open"), &json!("closed"), 10.0));
    assert!(s.changed(&json!(null), &json!(1), 10.0));
}

#[test]
fn validate_names_every_inconsistency() {
    let mut s = ValueSpec::new(DataType::U16).with_enum([(70000, "big"), (1, "big")]);
    s.scale = 0.5;
    let errs = s.validate();
    assert!(errs.iter().any(|e| e.contains("70000")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("used for both")), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("scale and offset do not apply to an enum")),
        "{errs:?}"
    );
    let s = ValueSpec::new(DataType::U16).with_range(Some(0.0), Some(70000.0));
    assert_eq!(
        s.validate(),
        ["max 70000 is outside what the register can hold (u16 with this scale and offset: 0 to 65535)"]
    );
    let s = ValueSpec {
        bit: Some(16),
        ..ValueSpec::new(DataType::U16)
    };
    assert_eq!(s.validate().len(), 2);
    assert!(ValueSpec::new(DataType::I32)
        .with_scale(0.1, 5.0)
        .validate()
        .is_empty());
}

fn all_types() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::U16),
        Just(DataType::I16),
        Just(DataType::U32),
        Just(DataType::I32),
        Just(DataType::U64),
        Just(DataType::I64),
        Just(DataType::F32),
        Just(DataType::F64),
    ]
}

fn all_orders() -> impl Strategy<Value = WordOrder> {
    prop_oneof![
        Just(WordOrder::ABCD),
        Just(WordOrder::CDAB),
        Just(WordOrder::BADC),
        Just(WordOrder::DCBA),
    ]
}

/// Found by the `value_codec` fuzz target: a float register with an offset (or scale) was
/// rounded to the places the offset implies, so f32 72.5 with offset -40 read as 33.
#[test]
fn scaled_float_registers_keep_their_fraction() {
    let s = ValueSpec::new(DataType::F32).with_scale(1.0, -40.0);
    let regs = s.encode(&json!(32.5)).unwrap();
    assert_eq!(s.decode(&regs).unwrap(), json!(32.5));
    let s = ValueSpec::new(DataType::F64).with_scale(2.0, 0.0);
    let regs = s.encode(&json!(0.25)).unwrap();
    assert_eq!(s.decode(&regs).unwrap(), json!(0.25));
}

proptest! {
    /// Any register contents that decode re-encode to the same registers.
    #[test]
    fn registers_round_trip(t in all_types(), o in all_orders(), words in prop::collection::vec(any::<u16>(), 4)) {
        let s = spec(t, o);
        let regs = &words[..t.register_count() as usize];
        if let Ok(v) = s.decode(regs) {
            let back = s.encode(&v).unwrap();
            if t == DataType::F32 {
                // decode shows the shortest decimal; it must map back to the same float
                prop_assert_eq!(s.decode(&back).unwrap(), v);
            } else {
                prop_assert_eq!(back, regs.to_vec());
            }
        }
    }

    /// Scaled integers: every raw value survives decode → encode.
    #[test]
    fn scaled_round_trip(raw in any::<i16>(), step in prop_oneof![Just(0.1), Just(0.01), Just(0.5), Just(0.25), Just(2.0)], offset in -100i32..100) {
        let s = ValueSpec::new(DataType::I16).with_scale(step, offset as f64 / 10.0);
        let regs = [raw as u16];
        let v = s.decode(&regs).unwrap();
        prop_assert_eq!(s.encode(&v).unwrap(), regs.to_vec());
    }

    /// Integers in range encode and decode to themselves in every order.
    #[test]
    fn integers_round_trip(x in any::<i32>(), o in all_orders()) {
        let s = spec(DataType::I32, o);
        let regs = s.encode(&json!(x)).unwrap();
        prop_assert_eq!(s.decode(&regs).unwrap(), json!(x));
    }

    /// Bits never disturb their neighbours.
    #[test]
    fn bit_writes_touch_one_bit(cur in any::<u16>(), bit in 0u8..16, on in any::<bool>()) {
        let s = ValueSpec::bit(bit);
        let out = s.encode_onto(&json!(on), &[cur]).unwrap()[0];
        prop_assert_eq!(out & !(1 << bit), cur & !(1 << bit));
        prop_assert_eq!(s.decode(&[out]).unwrap(), json!(on));
    }
}
