//! Tolerant deserialization: serde stops at the first error, an operator wants them all.
//!
//! Each config item (a bus, a profile point, a door) is deserialized on its own. When it
//! fails, the error is recorded, the offending key is removed from a copy of the item and
//! deserialization is tried again, so one run reports every unknown key and bad value of the
//! item. A "missing field" error for a key we removed ourselves is a consequence, not a new
//! problem, and is not reported.

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::Errors;

/// Upper bound on retries for one item (each retry removes a key, so this is never reached
/// by a real file; it guards against a removal that does not change the error).
const MAX_ATTEMPTS: usize = 64;

/// Deserializes `value` as `T`, reporting every error found. `None` when the item is too
/// broken to use (a required key is missing or bad); `Some` when the remaining keys made a
/// usable item (errors, if any, are already recorded and will fail the load).
pub(crate) fn item<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    errs: &mut Errors<'_>,
) -> Option<T> {
    let mut v = value.clone();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let err = match T::deserialize(ValueDeserializer::from(v.clone())) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let span = err.span().unwrap_or_else(|| v.span());
        let message = tidy(err.message());
        if let Some(field) = missing_field(err.message()) {
            if !removed.iter().any(|r| r == field) {
                errs.at(span, message);
            }
            return None;
        }
        errs.at(span.clone(), message);
        match remove_at(&mut v, span.start) {
            Some(key) => removed.push(key),
            None => return None,
        }
    }
    None
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
}

/// Serde's wording, made to read as advice to an operator.
fn tidy(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once("`, expected ") {
            return format!(
                "unknown key `{name}` (known keys: {})",
                expected.trim_start_matches("one of ")
            );
        }
        if let Some(name) = rest.strip_suffix("`, there are no fields") {
            return format!("unknown key `{name}` (this table takes no keys)");
        }
    }
    if let Some(name) = missing_field(message) {
        return format!("missing key `{name}`");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, expected)) = rest.split_once("`, expected ") {
            return format!("unknown value `{name}` (expected {expected})");
        }
    }
    message.to_string()
}

/// Removes the deepest table entry at `offset`; returns its key.
fn remove_at(v: &mut Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    match v.get_mut() {
        DeValue::Table(t) => remove_in_table(t, offset),
        _ => None,
    }
}

fn remove_in_table(t: &mut DeTable<'_>, offset: usize) -> Option<String> {
    let key = t
        .iter()
        .find(|(k, v)| {
            super::error::contains(&k.span(), offset)
                || super::error::contains(&v.span(), offset)
                || super::error::inside(v, offset)
        })
        .map(|(k, _)| k.get_ref().to_string())?;
    if let Some(child) = t.get_mut(key.as_str()) {
        if let DeValue::Table(inner) = child.get_mut() {
            if let Some(k) = remove_in_table(inner, offset) {
                return Some(k);
            }
        }
    }
    t.remove(key.as_str());
    Some(key)
}

/// Takes the sub-table `key` out of a table value. A non-table value is reported.
pub(crate) fn take_table<'i>(
    v: &mut Spanned<DeValue<'i>>,
    key: &str,
    errs: &mut Errors<'_>,
) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
    let DeValue::Table(t) = v.get_mut() else {
        return Vec::new();
    };
    let Some((k, sub)) = t.remove_entry(key) else {
        return Vec::new();
    };
    entries(&k, sub, errs)
}

/// The entries of a table value, keys as owned strings.
pub(crate) fn entries<'i>(
    k: &Spanned<toml::de::DeString<'i>>,
    sub: Spanned<DeValue<'i>>,
    errs: &mut Errors<'_>,
) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
    match sub.into_inner() {
        DeValue::Table(t) => t
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.get_ref().to_string()), v))
            .collect(),
        other => {
            errs.at(
                k.span(),
                format!(
                    "`{}` must be a table, not {}",
                    k.get_ref(),
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

/// Merges `over` onto `base`: tables merge key by key, anything else replaces. Values keep
/// their own spans, so an error in an overridden value points at the override.
pub(crate) fn merge<'i>(base: &mut DeTable<'i>, over: &DeTable<'i>) {
    for (k, v) in over.iter() {
        match (base.get_mut(k.get_ref().as_ref()), v.get_ref()) {
            (Some(b), DeValue::Table(ot)) if b.get_ref().is_table() => {
                if let DeValue::Table(bt) = b.get_mut() {
                    merge(bt, ot);
                }
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
