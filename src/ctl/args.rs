//! Parsing of the values operators type: `KEY=VALUE` assignments with dotted keys, start
//! times (`now`, RFC 3339, `+10m`), durations, JSON payloads given inline or as `@file`, and
//! job ids. Pure functions; everything here fails before any request is sent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::error::CtlError;

/// When a job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartSpec {
    Now,
    At(DateTime<Utc>),
    After(Duration),
}

impl StartSpec {
    /// `now`, an RFC 3339 time (any offset, converted to UTC) or `+DURATION` (`+10m`, `+1h30m`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("now") {
            return Ok(StartSpec::Now);
        }
        if let Some(rest) = s.strip_prefix('+') {
            return humantime::parse_duration(rest.trim())
                .map(StartSpec::After)
                .map_err(|e| format!("'{s}' is not +DURATION (like +10m): {e}"));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| StartSpec::At(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!("'{s}' is not 'now', '+DURATION' (like +10m) or an RFC 3339 time (like 2030-01-02T03:04:05Z)")
            })
    }

    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartSpec::Now => now,
            StartSpec::At(t) => t,
            StartSpec::After(d) => {
                now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
            }
        }
    }
}

/// Clap value parser for durations such as `30s`, `1h`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 30s or 1h: {e}"))
}

/// Whole seconds of a duration that must lie in `min..=max` seconds, for the flag `flag`.
pub fn secs_in_range(flag: &str, d: Duration, min: u64, max: u64) -> Result<u64, CtlError> {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if s < min || s > max {
        return Err(CtlError::usage(format!(
            "{flag} must be between {min}s and {max}s, not {}",
            humantime::format_duration(d)
        )));
    }
    Ok(s)
}

/// A value as typed: JSON when it parses as JSON (`43`, `true`, `null`, `{"a":1}`, `"43"`),
/// otherwise the text itself as a string.
pub fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Builds an object from `KEY=VALUE` items; `a.b=1` makes `{"a":{"b":1}}`. `flag` names the
/// option in errors.
pub fn parse_assignments(flag: &str, items: &[String]) -> Result<Map<String, Value>, CtlError> {
    let mut root = Map::new();
    for item in items {
        let (key, raw) = item
            .split_once('=')
            .ok_or_else(|| CtlError::usage(format!("{flag} '{item}' is not KEY=VALUE")))?;
        let path: Vec<&str> = key.trim().split('.').collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(CtlError::usage(format!(
                "{flag} '{item}': the key has an empty part"
            )));
        }
        insert_path(&mut root, &path, value_of(raw))
            .map_err(|why| CtlError::usage(format!("{flag} '{item}': {why}")))?;
    }
    Ok(root)
}

fn insert_path(obj: &mut Map<String, Value>, path: &[&str], v: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("path is never empty");
    if rest.is_empty() {
        return match obj.get(*first) {
            Some(_) => Err(format!("'{first}' is given more than once")),
            None => {
                obj.insert((*first).to_string(), v);
                Ok(())
            }
        };
    }
    let child = obj
        .entry((*first).to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    match child {
        Value::Object(m) => insert_path(m, rest, v),
        _ => Err(format!(
            "'{first}' is already set to a value, not an object"
        )),
    }
}

/// JSON merge of `over` into `base` (objects merge recursively, everything else replaces).
pub fn merge(base: &mut Map<String, Value>, over: Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Reads a JSON argument: inline text, or `@path` for a file's content.
pub fn json_arg(flag: &str, arg: &str) -> Result<Value, CtlError> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| CtlError::File {
                what: flag_what(flag),
                path: path.to_string(),
                detail: e.to_string(),
            })?;
            (text, format!(" (file {path})"))
        }
        None => (arg.to_string(), String::new()),
    };
    serde_json::from_str(&text)
        .map_err(|e| CtlError::usage(format!("{flag} is not valid JSON{origin}: {e}")))
}

fn flag_what(flag: &str) -> &'static str {
    if flag.contains("patch") {
        "patch file"
    } else {
        "payload file"
    }
}

/// Checks a job id the way the hub does: up to 64 ASCII letters, digits and `-`.
pub fn check_job_id(id: &str) -> Result<(), CtlError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(CtlError::usage(format!(
            "job id '{id}' must be 1 to 64 ASCII letters, digits and '-'"
        )));
    }
    Ok(())
}

/// A fresh job id.
pub fn new_job_id() -> String {
    format!("fieldctl-{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(items: &[&str]) -> Result<Value, CtlError> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        parse_assignments("--desired", &items).map(Value::Object)
    }

    #[test]
    fn assignments_parse_json_values_and_dotted_keys() {
        assert_eq!(
            kv(&[
                "Building=43",
                "Floor=3",
                "name=north door",
                "quoted=\"43\"",
                "door.openSec=5",
                "door.mode=auto",
                "flag=true",
                "gone=null",
                "obj={\"a\":[1,2]}",
                "empty=",
                "eq=a=b"
            ])
            .unwrap(),
            json!({"Building":43,"Floor":3,"name":"north door","quoted":"43",
                "door":{"openSec":5,"mode":"auto"},"flag":true,"gone":null,
                "obj":{"a":[1,2]},"empty":"","eq":"a=b"})
        );
    }

    #[test]
    fn assignment_errors() {
        let msg = |items: &[&str]| kv(items).unwrap_err().to_string();
        assert_eq!(msg(&["novalue"]), "--desired 'novalue' is not KEY=VALUE");
        assert_eq!(
            msg(&["a..b=1"]),
            "--desired 'a..b=1': the key has an empty part"
        );
        assert_eq!(msg(&["=1"]), "--desired '=1': the key has an empty part");
        assert_eq!(
            msg(&["a=1", "a.b=2"]),
            "--desired 'a.b=2': 'a' is already set to a value, not an object"
        );
        assert_eq!(
            msg(&["a.b=1", "a.b=2"]),
            "--desired 'a.b=2': 'b' is given more than once"
        );
    }

    #[test]
    fn merge_is_json_merge() {
        let mut base = json!({"tags":{"a":1,"b":{"c":2}}})
            .as_object()
            .unwrap()
            .clone();
        merge(
            &mut base,
            json!({"tags":{"b":{"d":3},"e":4}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            Value::Object(base),
            json!({"tags":{"a":1,"b":{"c":2,"d":3},"e":4}})
        );
    }

    #[test]
    fn start_specs() {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(StartSpec::parse("now").unwrap().resolve(now), now);
        assert_eq!(StartSpec::parse("NOW").unwrap(), StartSpec::Now);
        assert_eq!(
            StartSpec::parse("+10m").unwrap().resolve(now).to_rfc3339(),
            "2030-01-01T00:10:00+00:00"
        );
        assert_eq!(
            StartSpec::parse("+1h30m").unwrap(),
            StartSpec::After(Duration::from_secs(5400))
        );
        assert_eq!(
            StartSpec::parse("2030-06-01T12:00:00+02:00")
                .unwrap()
                .resolve(now)
                .to_rfc3339(),
            "2030-06-01T10:00:00+00:00"
        );
        assert!(StartSpec::parse("tomorrow")
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(StartSpec::parse("+soon").unwrap_err().contains("+DURATION"));
    }

    #[test]
    fn durations_and_ranges() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("fast").is_err());
        assert_eq!(
            secs_in_range("--response-timeout", Duration::from_secs(30), 5, 300).unwrap(),
            30
        );
        assert_eq!(
            secs_in_range("--response-timeout", Duration::from_secs(1), 5, 300)
                .unwrap_err()
                .to_string(),
            "--response-timeout must be between 5s and 300s, not 1s"
        );
        // Fractions round up, so 500ms never becomes 0.
        assert_eq!(
            secs_in_range("--max-time", Duration::from_millis(500), 1, 9).unwrap(),
            1
        );
    }

    #[test]
    fn json_args_inline_and_file() {
        assert_eq!(
            json_arg("--payload", r#"{"seconds":5}"#).unwrap(),
            json!({"seconds":5})
        );
        let e = json_arg("--payload", "{seconds:5}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--payload is not valid JSON: key must be a string"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        std::fs::write(&p, "[1, 2]").unwrap();
        assert_eq!(
            json_arg("--payload", &format!("@{}", p.display())).unwrap(),
            json!([1, 2])
        );
        std::fs::write(&p, "nope").unwrap();
        let e = json_arg("--patch", &format!("@{}", p.display()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--patch is not valid JSON (file "), "{e}");
        let e = json_arg("--payload", "@/nonexistent/x.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read payload file /nonexistent/x.json"),
            "{e}"
        );
    }

    #[test]
    fn job_ids() {
        assert!(check_job_id("lock-43").is_ok());
        assert!(check_job_id(&new_job_id()).is_ok());
        assert!(check_job_id("has space").is_err());
        assert!(check_job_id(&"a".repeat(65)).is_err());
        assert!(check_job_id("").is_err());
    }
}
