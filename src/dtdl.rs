//! Plug and Play: a profile as a DTDL v2 interface (Microsoft Learn, "Digital Twins Definition
//! Language (DTDL) v2"; "IoT Plug and Play conventions"). Methods become commands (with the
//! payload members they read as the request), desired points writable properties, reported
//! points read-only properties, and points with `telemetry = true` telemetry; value specs
//! become schemas (enums as string enums, scaled values as doubles, ranges in the description).
//!
//! Pure: [`interface`] builds the JSON; `fieldgate model` writes it.

use serde_json::{json, Map, Value};

use crate::codec::{DataType, ValueSpec};
use crate::config::{MethodAction, Profile, ValueSource};

/// Whether `id` is a DTMI as DTDL v2 defines it: `dtmi:` then segments of letters, digits and
/// `_` (starting with a letter, not ending with `_`) joined by `:`, then `;` and a version of
/// 1 to 9 digits not starting with 0; at most 2048 characters.
pub fn valid_dtmi(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("dtmi:") else {
        return false;
    };
    let Some((path, version)) = rest.rsplit_once(';') else {
        return false;
    };
    let version_ok = !version.is_empty()
        && version.len() <= 9
        && !version.starts_with('0')
        && version.bytes().all(|b| b.is_ascii_digit());
    id.len() <= 2048 && version_ok && path.split(':').all(valid_segment)
}

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1] != b'_'
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `name` is a valid DTDL v2 content name (letters, digits, `_`; a letter first; not
/// ending with `_`; up to 64 characters).
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64 && valid_segment(name)
}

/// `name` made into a valid DTDL name (for enum value names, which come from free text).
fn dtdl_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert(0, 'v');
    }
    while s.ends_with('_') {
        s.pop();
    }
    s.truncate(64);
    s
}

/// The model id of a profile: its `model_id`, else `dtmi:fieldgate:{profile};1`.
pub fn model_id(name: &str, profile: &Profile) -> String {
    profile
        .model_id
        .clone()
        .unwrap_or_else(|| format!("dtmi:fieldgate:{};1", dtdl_name(name)))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtdlError {
    #[error("profile `{profile}`: `{name}` is not a valid DTDL name (letters, digits and _, a letter first, up to 64 characters); rename it to describe the profile as a Plug and Play model")]
    BadName { profile: String, name: String },
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The DTDL schema of a value as the twin carries it.
fn schema(spec: &ValueSpec) -> Value {
    if !spec.enum_map.is_empty() {
        let values: Vec<Value> = spec
            .enum_map
            .values()
            .map(|n| json!({"name": dtdl_name(n), "displayName": n, "enumValue": n}))
            .collect();
        return json!({"@type": "Enum", "valueSchema": "string", "enumValues": values});
    }
    if spec.bit.is_some() || spec.data_type == DataType::Bool {
        return json!("boolean");
    }
    let scaled = spec.scale.fract() != 0.0 || spec.offset.fract() != 0.0;
    json!(match spec.data_type {
        DataType::F32 | DataType::F64 => "double",
        _ if scaled => "double",
        DataType::U16 | DataType::I16 | DataType::I32 => "integer",
        _ => "long",
    })
}

/// The range of a value, as a sentence (DTDL v2 has no bounds of its own).
fn range(spec: &ValueSpec) -> Option<String> {
    match (spec.min, spec.max) {
        (Some(lo), Some(hi)) => Some(format!("Range {} to {}.", num(lo), num(hi))),
        (Some(lo), None) => Some(format!("At least {}.", num(lo))),
        (None, Some(hi)) => Some(format!("At most {}.", num(hi))),
        (None, None) => None,
    }
}

fn element(kind: &str, name: &str, spec: &ValueSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@type".into(), json!(kind));
    m.insert("name".into(), json!(name));
    m.insert("schema".into(), schema(spec));
    if let Some(r) = range(spec) {
        m.insert("description".into(), json!(r));
    }
    m
}

/// The command a method is: its request lists the payload members it reads.
fn command(name: &str, action: &MethodAction) -> Value {
    let mut fields = Vec::new();
    match action {
        MethodAction::WriteRegister {
            spec,
            value: ValueSource::Payload(member),
            ..
        } => {
            let mut f = Map::new();
            f.insert("name".into(), json!(dtdl_name(member)));
            f.insert("schema".into(), schema(spec));
            fields.push(Value::Object(f));
        }
        MethodAction::WriteCoil {
            value: ValueSource::Payload(member),
            ..
        } => fields.push(json!({"name": dtdl_name(member), "schema": "boolean"})),
        MethodAction::PulseCoil {
            seconds_from: Some(member),
            max,
            ..
        } => fields.push(json!({
            "name": dtdl_name(member),
            "schema": "double",
            "description": format!("Seconds; at most {}.", max.as_secs()),
        })),
        _ => {}
    }
    let mut c = json!({"@type": "Command", "name": name});
    if !fields.is_empty() {
        c["request"] = json!({
            "name": "payload",
            "schema": {"@type": "Object", "fields": fields},
        });
    }
    c
}

/// The DTDL v2 interface of profile `name`.
pub fn interface(name: &str, profile: &Profile) -> Result<Value, DtdlError> {
    let check = |n: &str| {
        if valid_name(n) {
            Ok(())
        } else {
            Err(DtdlError::BadName {
                profile: name.to_string(),
                name: n.to_string(),
            })
        }
    };
    let mut contents = Vec::new();
    for (n, m) in profile.methods.iter() {
        check(n)?;
        contents.push(command(n, &m.action));
    }
    for (n, d) in profile.desired.iter() {
        check(n)?;
        let mut e = element("Property", n, &d.spec);
        e.insert("writable".into(), json!(true));
        contents.push(Value::Object(e));
    }
    for (n, r) in profile.reported.iter() {
        check(n)?;
        let kind = if r.telemetry { "Telemetry" } else { "Property" };
        contents.push(Value::Object(element(kind, n, &r.spec)));
    }
    // Written by the gateway itself for every door (see `bridge::poll`).
    contents.push(json!({
        "@type": "Property",
        "name": "connectivity",
        "schema": {"@type": "Object", "fields": [
            {"name": "busReachable", "schema": "boolean"},
            {"name": "lastPoll", "schema": "dateTime"},
            {"name": "error", "schema": "string"},
        ]},
    }));
    Ok(json!({
        "@context": "dtmi:dtdl:context;2",
        "@id": model_id(name, profile),
        "@type": "Interface",
        "displayName": name,
        "description": format!("Door controller profile `{name}`, presented by fieldgate."),
        "contents": contents,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmis() {
        for ok in ["dtmi:fieldgate:door;1", "dtmi:com:example:Door_2;12"] {
            assert!(valid_dtmi(ok), "{ok}");
        }
        for bad in [
            "dtmi:fieldgate:door",
            "dtmi:fieldgate:door;0",
            "dtmi:1door;1",
            "dtmi:door_;1",
            "door;1",
            "dtmi::door;1",
        ] {
            assert!(!valid_dtmi(bad), "{bad}");
        }
    }

    #[test]
    fn schemas_follow_the_value_spec() {
        let mut s = ValueSpec::new(DataType::U16);
        assert_eq!(schema(&s), json!("integer"));
        s.scale = 0.01;
        assert_eq!(schema(&s), json!("double"));
        s.enum_map.insert(0, "closed".into());
        s.enum_map.insert(1, "held-open".into());
        assert_eq!(
            schema(&s)["enumValues"][1],
            json!({"name": "held_open", "displayName": "held-open", "enumValue": "held-open"})
        );
        let mut r = ValueSpec::new(DataType::I16);
        r.min = Some(-5.0);
        r.max = Some(120.0);
        assert_eq!(range(&r).unwrap(), "Range -5 to 120.");
        assert_eq!(dtdl_name("2nd"), "v2nd");
    }
}
