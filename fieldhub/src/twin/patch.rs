//! JSON merge patch with `$metadata` bookkeeping, and the twin document limits: key rules,
//! nesting depth, integer range and section sizes, as "Understand and use device twins in IoT
//! Hub" (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins>, sections
//! "Tags and properties format" and "Device twin size") gives them. Pure functions over
//! `serde_json`.

use serde_json::{Map, Value};

/// Maximum nesting depth of objects below a section root: the twin guide's valid example is
/// `tags.one.two.three.four.five.six.seven.eight.nine.ten.property`, ten objects below `tags`.
pub const MAX_DEPTH: usize = 10;
/// Section size limits, counted as [`twin_size`] does.
pub const MAX_DESIRED_BYTES: usize = 32 * 1024;
pub const MAX_REPORTED_BYTES: usize = 32 * 1024;
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
pub(super) const MAX_KEY_BYTES: usize = 1024;
pub(super) const MAX_STRING_BYTES: usize = 4 * 1024;
/// The integer range of twin values (twin guide: "Integers can have a minimum value of
/// -4503599627370496 and a maximum value of 4503599627370495", ±2^52).
pub const MIN_INTEGER: i64 = -4_503_599_627_370_496;
pub const MAX_INTEGER: i64 = 4_503_599_627_370_495;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("{0} must be a JSON object")]
    NotObject(&'static str),
    #[error(
        "property name '{0}' is invalid (no '.', '$', space or control characters; at most 1 KB)"
    )]
    BadKey(String),
    #[error("{0} is nested deeper than {MAX_DEPTH} levels")]
    TooDeep(&'static str),
    #[error("{section} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        section: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("a string value of property '{0}' is over 4 KB")]
    ValueTooLarge(String),
    #[error(
        "property '{0}' holds an integer outside -4503599627370496..=4503599627370495, the twin range"
    )]
    IntegerOutOfRange(String),
}

fn key_is_valid(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_BYTES
        && !k
            .chars()
            .any(|c| c == '.' || c == '$' || c == ' ' || c.is_control())
}

/// Removes every `$`-prefixed key at any depth: .NET and Python clients send back
/// `$metadata`/`$version` they got from a GET, and the hub ignores them.
pub fn strip_dollar_keys(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, _| !k.starts_with('$'));
        for child in m.values_mut() {
            strip_dollar_keys(child);
        }
    }
}

/// Validates property names, string sizes, integer range and depth of a patch or document
/// (`m` is a section root: its direct children are at depth 0, objects in them at depth 1).
pub fn validate(section: &'static str, m: &Map<String, Value>) -> Result<(), TwinError> {
    fn value(k: &str, v: &Value, depth: usize, section: &'static str) -> Result<(), TwinError> {
        match v {
            Value::Object(child) => walk(child, depth + 1, section),
            Value::Array(items) => items
                .iter()
                .try_for_each(|item| value(k, item, depth, section)),
            Value::String(s) if s.len() > MAX_STRING_BYTES => {
                Err(TwinError::ValueTooLarge(k.to_owned()))
            }
            Value::Number(n) => {
                let in_range = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => (MIN_INTEGER..=MAX_INTEGER).contains(&i),
                    (None, Some(_)) => false,
                    // A float: the documented range is for integers.
                    (None, None) => true,
                };
                if in_range {
                    Ok(())
                } else {
                    Err(TwinError::IntegerOutOfRange(k.to_owned()))
                }
            }
            _ => Ok(()),
        }
    }
    fn walk(m: &Map<String, Value>, depth: usize, section: &'static str) -> Result<(), TwinError> {
        if depth > MAX_DEPTH {
            return Err(TwinError::TooDeep(section));
        }
        for (k, v) in m {
            if !key_is_valid(k) {
                return Err(TwinError::BadKey(k.clone()));
            }
            value(k, v, depth, section)?;
        }
        Ok(())
    }
    walk(m, 0, section)
}

/// A section's size as IoT Hub computes it (twin guide, "Device twin size"): for every
/// property the length of its key plus the size of its value, without JSON punctuation.
/// Strings (keys included) count their characters except Unicode control characters (C0 and
/// C1), numbers 8 bytes, booleans 4, objects the sum of their properties. Arrays are not
/// described; their elements are counted like values. `null` counts 4 (as the text `null`),
/// erring towards the limit.
pub fn twin_size(m: &Map<String, Value>) -> usize {
    fn chars(s: &str) -> usize {
        s.chars().filter(|c| !c.is_control()).count()
    }
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => chars(s),
            Value::Number(_) => 8,
            Value::Bool(_) | Value::Null => 4,
            Value::Object(m) => twin_size(m),
            Value::Array(items) => items.iter().map(value).sum(),
        }
    }
    m.iter().map(|(k, v)| chars(k) + value(v)).sum()
}

/// Checks the size of a whole section after a change (see [`twin_size`]).
pub fn check_size(
    section: &'static str,
    m: &Map<String, Value>,
    limit: usize,
) -> Result<(), TwinError> {
    let size = twin_size(m);
    if size > limit {
        return Err(TwinError::TooLarge {
            section,
            size,
            limit,
        });
    }
    Ok(())
}

/// What a change writes into `$metadata`: the time, and for desired the section version.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub at: String,
    pub version: Option<u64>,
}

impl Stamp {
    fn node(&self) -> Map<String, Value> {
        let mut m = Map::new();
        self.apply(&mut m);
        m
    }

    fn apply(&self, m: &mut Map<String, Value>) {
        m.insert("$lastUpdated".into(), Value::String(self.at.clone()));
        if let Some(v) = self.version {
            m.insert("$lastUpdatedVersion".into(), Value::from(v));
        }
    }
}

/// Metadata tree for a freshly written value: every object node and leaf gets a stamp.
fn meta_for(v: &Value, stamp: &Stamp) -> Value {
    let mut node = stamp.node();
    if let Value::Object(m) = v {
        for (k, child) in m {
            node.insert(k.clone(), meta_for(child, stamp));
        }
    }
    Value::Object(node)
}

/// RFC 7386 merge of `patch` into `target`, keeping `meta` (the `$metadata` tree) in step:
/// objects merge recursively, `null` deletes, anything else replaces.
pub fn merge(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Stamp,
) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
                meta.remove(k);
            }
            Value::Object(p) => {
                if !matches!(target.get(k), Some(Value::Object(_))) {
                    target.insert(k.clone(), Value::Object(Map::new()));
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                let t = target.get_mut(k).and_then(Value::as_object_mut);
                if !matches!(meta.get(k), Some(Value::Object(_))) {
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                let m = meta.get_mut(k).and_then(Value::as_object_mut);
                if let (Some(t), Some(m)) = (t, m) {
                    merge(t, m, p, stamp);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
                meta.insert(k.clone(), meta_for(other, stamp));
            }
        }
    }
    stamp.apply(meta);
}

/// Fresh metadata for a whole replaced document.
pub(super) fn meta_for_doc(doc: &Map<String, Value>, stamp: &Stamp) -> Map<String, Value> {
    match meta_for(&Value::Object(doc.clone()), stamp) {
        Value::Object(m) => m,
        _ => stamp.node(),
    }
}

/// Merge patch without metadata (for tags).
pub(super) fn merge_plain(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    let mut scratch = Map::new();
    let stamp = Stamp {
        at: String::new(),
        version: None,
    };
    merge(target, &mut scratch, patch, &stamp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_semantics() {
        let mut t = obj(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}));
        merge_plain(
            &mut t,
            &obj(json!({"a": null, "b": {"c": null, "x": {"y": null, "z": 1}}, "e": [3], "n": 5})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"b": {"d": 3, "x": {"z": 1}}, "e": [3], "n": 5})
        );
    }

    #[test]
    fn metadata_follows_tree() {
        let mut t = Map::new();
        let mut m = Map::new();
        let s = Stamp {
            at: "T1".into(),
            version: Some(2),
        };
        merge(&mut t, &mut m, &obj(json!({"a": {"b": 1}, "c": 2})), &s);
        assert_eq!(m["a"]["b"]["$lastUpdatedVersion"], json!(2));
        assert_eq!(m["$lastUpdated"], json!("T1"));
        let s3 = Stamp {
            at: "T3".into(),
            version: Some(3),
        };
        merge(&mut t, &mut m, &obj(json!({"c": null, "a": {"d": 4}})), &s3);
        assert!(m.get("c").is_none());
        assert_eq!(m["a"]["b"]["$lastUpdated"], json!("T1"));
        assert_eq!(m["a"]["d"]["$lastUpdated"], json!("T3"));
        assert_eq!(m["a"]["$lastUpdated"], json!("T3"));
    }

    #[test]
    fn key_rules() {
        for bad in ["a.b", "a$b", "a b", "a\u{1}b", ""] {
            let m = obj(json!({ bad: 1 }));
            assert_eq!(validate("desired", &m), Err(TwinError::BadKey(bad.into())));
        }
        let nested = obj(json!({"ok": {"in.ner": 1}}));
        assert!(matches!(
            validate("tags", &nested),
            Err(TwinError::BadKey(_))
        ));
        assert!(validate("tags", &obj(json!({"a-b_c": {"Ü": true}}))).is_ok());
    }

    /// Issue 14, item 3: the twin guide's own example of a valid object, ten levels below
    /// `tags`, is accepted; one more level is refused.
    #[test]
    fn depth_limit_is_the_twin_guides() {
        let names = [
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        ];
        let mut v = json!({"property": "value"});
        for n in names.iter().rev() {
            v = json!({ *n: v });
        }
        assert!(validate("tags", v.as_object().unwrap()).is_ok(), "{v}");
        let mut deeper = json!({"property": "value"});
        for n in names.iter().chain(&["eleven"]).rev() {
            deeper = json!({ *n: deeper });
        }
        assert_eq!(
            validate("tags", deeper.as_object().unwrap()),
            Err(TwinError::TooDeep("tags"))
        );
    }

    /// Issue 14, item 4: sizes as the twin guide counts them (keys and values, no punctuation;
    /// numbers 8, booleans 4, strings by characters without control characters).
    #[test]
    fn size_is_counted_as_iot_hub_counts_it() {
        assert_eq!(twin_size(&obj(json!({"ab": "xyz"}))), 5);
        assert_eq!(
            twin_size(&obj(json!({"n": 1, "f": 2.5, "b": true}))),
            1 + 8 + 1 + 8 + 1 + 4
        );
        assert_eq!(twin_size(&obj(json!({"o": {"é": "ü\u{1}"}}))), 1 + 1 + 1);
        assert_eq!(twin_size(&obj(json!({"a": [1, "xy"]}))), 1 + 8 + 2);
        // 8 KB of tags: JSON punctuation (quotes, colons, commas) does not count...
        let mut tags = Map::new();
        for i in 0..500 {
            tags.insert(format!("k{i:03}"), json!("v".repeat(12)));
        }
        assert!(serde_json::to_vec(&tags).unwrap().len() > 10_000);
        assert_eq!(twin_size(&tags), 500 * (4 + 12));
        assert!(check_size("tags", &tags, MAX_TAGS_BYTES).is_ok());
        // ...and characters count once however many bytes UTF-8 needs.
        let wide = obj(json!({"k": "€".repeat(4000), "l": "€".repeat(4000)}));
        assert!(serde_json::to_vec(&wide).unwrap().len() > MAX_TAGS_BYTES);
        assert!(check_size("tags", &wide, MAX_TAGS_BYTES).is_ok());
        let mut big = Map::new();
        for i in 0..10 {
            big.insert(format!("k{i}"), json!("z".repeat(4000)));
        }
        assert!(matches!(
            check_size("desired", &big, MAX_DESIRED_BYTES),
            Err(TwinError::TooLarge { .. })
        ));
    }

    /// Issue 14, item 4: integers outside the twin guide's range are refused, at any depth and
    /// in arrays; the bounds themselves and floats are accepted.
    #[test]
    fn integers_outside_the_twin_range_are_refused() {
        for ok in [
            json!(MAX_INTEGER),
            json!(MIN_INTEGER),
            json!(1e300),
            json!([0, -1]),
        ] {
            assert!(validate("desired", &obj(json!({"v": ok}))).is_ok(), "{ok}");
        }
        for bad in [
            json!(MAX_INTEGER + 1),
            json!(MIN_INTEGER - 1),
            json!(u64::MAX),
            json!({"in": {"deep": i64::MIN}}),
            json!([1, MAX_INTEGER + 1]),
        ] {
            assert!(
                matches!(
                    validate("desired", &obj(json!({"v": bad}))),
                    Err(TwinError::IntegerOutOfRange(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn dollar_keys_are_stripped() {
        let mut v = json!({"$metadata": {}, "$version": 3, "a": {"$x": 1, "b": 2}});
        strip_dollar_keys(&mut v);
        assert_eq!(v, json!({"a": {"b": 2}}));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
                "[a-z]{0,4}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect()))
            })
        }

        fn object() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::btree_map("[a-c]", json_value(), 0..4)
                .prop_map(|m| m.into_iter().collect())
        }

        fn has_null(v: &Value) -> bool {
            match v {
                Value::Null => true,
                Value::Object(m) => m.values().any(has_null),
                _ => false,
            }
        }

        /// Every property has a metadata node, recursively.
        fn meta_mirrors(t: &Map<String, Value>, m: &Map<String, Value>) -> bool {
            t.iter().all(|(k, v)| match (v, m.get(k)) {
                (Value::Object(tv), Some(Value::Object(mv))) => meta_mirrors(tv, mv),
                (_, Some(Value::Object(_))) => true,
                _ => false,
            })
        }

        proptest! {
            #[test]
            fn merge_is_idempotent_null_free_and_keeps_metadata(
                base in object(), patch in object()
            ) {
                let stamp = Stamp { at: "T".into(), version: Some(1) };
                let mut t = Map::new();
                let mut m = Map::new();
                merge(&mut t, &mut m, &base, &stamp);
                merge(&mut t, &mut m, &patch, &stamp);
                let once = t.clone();
                merge(&mut t, &mut m, &patch, &stamp);
                prop_assert_eq!(&once, &t);
                prop_assert!(!has_null(&Value::Object(t.clone())));
                prop_assert!(meta_mirrors(&t, &m));
                for (k, v) in &patch {
                    prop_assert_eq!(t.contains_key(k), !v.is_null());
                }
            }
        }
    }
}
