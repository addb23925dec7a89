//! JSON merge patch with `$metadata` bookkeeping, and the twin document limits (reference
//! §2.3, §3.3): key rules, nesting depth, section sizes. Pure functions over `serde_json`.

use serde_json::{Map, Value};

/// Maximum nesting depth of objects below a section root.
pub const MAX_DEPTH: usize = 10;
/// Serialized size limits per section.
pub const MAX_DESIRED_BYTES: usize = 32 * 1024;
pub const MAX_REPORTED_BYTES: usize = 32 * 1024;
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_STRING_BYTES: usize = 4 * 1024;

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

/// Validates property names and string sizes of a patch or document, and its depth.
pub fn validate(section: &'static str, m: &Map<String, Value>) -> Result<(), TwinError> {
    fn walk(m: &Map<String, Value>, depth: usize, section: &'static str) -> Result<(), TwinError> {
        if depth > MAX_DEPTH {
            return Err(TwinError::TooDeep(section));
        }
        for (k, v) in m {
            if !key_is_valid(k) {
                return Err(TwinError::BadKey(k.clone()));
            }
            match v {
                Value::Object(child) => walk(child, depth + 1, section)?,
                Value::String(s) if s.len() > MAX_STRING_BYTES => {
                    return Err(TwinError::ValueTooLarge(k.clone()))
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(m, 1, section)
}

/// Checks the serialized size of a whole section after a change.
pub fn check_size(
    section: &'static str,
    m: &Map<String, Value>,
    limit: usize,
) -> Result<(), TwinError> {
    let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
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
pub fn meta_for_doc(doc: &Map<String, Value>, stamp: &Stamp) -> Map<String, Value> {
    match meta_for(&Value::Object(doc.clone()), stamp) {
        Value::Object(m) => m,
        _ => stamp.node(),
    }
}

/// Merge patch without metadata (for tags).
pub fn merge_plain(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
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

    #[test]
    fn depth_limit() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!({ "k": v });
        }
        assert!(validate("desired", v.as_object().unwrap()).is_ok());
        let deeper = json!({ "k": v });
        assert_eq!(
            validate("desired", deeper.as_object().unwrap()),
            Err(TwinError::TooDeep("desired"))
        );
    }

    #[test]
    fn size_limit() {
        let m = obj(json!({"big": "x".repeat(4000), "b2": "y".repeat(4000)}));
        assert!(check_size("tags", &m, MAX_TAGS_BYTES).is_ok());
        let mut big = Map::new();
        for i in 0..10 {
            big.insert(format!("k{i}"), json!("z".repeat(4000)));
        }
        assert!(matches!(
            check_size("desired", &big, MAX_DESIRED_BYTES),
            Err(TwinError::TooLarge { .. })
        ));
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
