//! Device twin documents: tags, desired and reported sections with their `$version` counters,
//! `$metadata`, the twin `version` and `etag`, and the rules for service writes (PATCH/PUT) and
//! device reported patches (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub, https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins). Pure: callers pass the time.

mod patch;

pub use patch::{
    check_size, merge, strip_dollar_keys, twin_size, validate, Stamp, TwinError, MAX_DEPTH,
    MAX_DESIRED_BYTES, MAX_INTEGER, MAX_REPORTED_BYTES, MAX_TAGS_BYTES, MIN_INTEGER,
};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One property section (desired or reported) with its metadata tree and version counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub props: Map<String, Value>,
    pub meta: Map<String, Value>,
    pub version: u64,
}

impl Section {
    fn new(at: &str, desired: bool) -> Self {
        let stamp = Stamp {
            at: at.to_string(),
            version: desired.then_some(1),
        };
        Section {
            props: Map::new(),
            meta: patch::meta_for_doc(&Map::new(), &stamp),
            version: 1,
        }
    }

    /// Section as the service sees it: properties, `$metadata`, `$version`.
    fn service_view(&self) -> Value {
        let mut m = self.props.clone();
        m.insert("$metadata".into(), Value::Object(self.meta.clone()));
        m.insert("$version".into(), Value::from(self.version));
        Value::Object(m)
    }

    /// Section as the device sees it: properties and `$version`, no `$metadata`.
    fn device_view(&self) -> Value {
        let mut m = self.props.clone();
        m.insert("$version".into(), Value::from(self.version));
        Value::Object(m)
    }
}

/// The mutable part of a twin (identity fields come from the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinDoc {
    pub tags: Map<String, Value>,
    pub desired: Section,
    pub reported: Section,
    /// Incremented on every twin change.
    pub version: u64,
    /// Incremented on service writes (tags/desired) only; rendered as base64 of 8 BE bytes.
    pub etag: u64,
}

/// The validated content of a service PATCH or PUT body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceWrite {
    pub tags: Option<Map<String, Value>>,
    pub desired: Option<Map<String, Value>>,
}

/// Parses a service twin write: only `tags` and `properties.desired` count; identity fields
/// and `properties.reported` are ignored, `$`-prefixed keys dropped (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins).
pub fn parse_service_write(body: &Value) -> Result<ServiceWrite, TwinError> {
    let root = body.as_object().ok_or(TwinError::NotObject("twin"))?;
    let section = |v: Option<&Value>, name: &'static str| -> Result<_, TwinError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(_)) => {
                let mut v = v.cloned().unwrap_or(Value::Null);
                strip_dollar_keys(&mut v);
                let m = v.as_object().cloned().unwrap_or_default();
                validate(name, &m)?;
                Ok(Some(m))
            }
            Some(_) => Err(TwinError::NotObject(name)),
        }
    };
    let tags = section(root.get("tags"), "tags")?;
    let desired = match root.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => section(p.get("desired"), "properties.desired")?,
        Some(_) => return Err(TwinError::NotObject("properties")),
    };
    Ok(ServiceWrite { tags, desired })
}

/// The etag string of a twin etag counter.
pub fn etag_string(counter: u64) -> String {
    B64.encode(counter.to_be_bytes())
}

impl TwinDoc {
    pub fn new(at: &str) -> Self {
        TwinDoc {
            tags: Map::new(),
            desired: Section::new(at, true),
            reported: Section::new(at, false),
            version: 1,
            etag: 1,
        }
    }

    pub fn etag_string(&self) -> String {
        etag_string(self.etag)
    }

    /// Applies a service PATCH. Returns the desired notification body for devices, if the
    /// desired section changed. All-or-nothing: limits are checked on copies first.
    pub fn apply_patch(&mut self, w: &ServiceWrite, at: &str) -> Result<Option<Value>, TwinError> {
        let mut next = self.clone();
        if let Some(t) = &w.tags {
            patch::merge_plain(&mut next.tags, t);
            check_size("tags", &next.tags, MAX_TAGS_BYTES)?;
        }
        let mut notify = None;
        // An empty desired patch changes nothing and notifies nobody.
        if let Some(d) = w.desired.as_ref().filter(|d| !d.is_empty()) {
            let v = next.desired.version + 1;
            let stamp = Stamp {
                at: at.to_string(),
                version: Some(v),
            };
            merge(&mut next.desired.props, &mut next.desired.meta, d, &stamp);
            check_size("properties.desired", &next.desired.props, MAX_DESIRED_BYTES)?;
            next.desired.version = v;
            let mut body = d.clone();
            body.insert("$version".into(), Value::from(v));
            notify = Some(Value::Object(body));
        }
        next.version += 1;
        next.etag += 1;
        *self = next;
        Ok(notify)
    }

    /// Applies a service PUT: replaces tags and desired wholesale. The device is notified
    /// with the new desired document plus `null` for removed keys (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins).
    pub fn apply_replace(
        &mut self,
        w: &ServiceWrite,
        at: &str,
    ) -> Result<Option<Value>, TwinError> {
        let mut next = self.clone();
        next.tags = w.tags.clone().unwrap_or_default();
        check_size("tags", &next.tags, MAX_TAGS_BYTES)?;
        let desired = w.desired.clone().unwrap_or_default();
        let mut notify = None;
        if desired != next.desired.props {
            let v = next.desired.version + 1;
            let stamp = Stamp {
                at: at.to_string(),
                version: Some(v),
            };
            check_size("properties.desired", &desired, MAX_DESIRED_BYTES)?;
            let mut body = desired.clone();
            for k in next.desired.props.keys() {
                if !desired.contains_key(k) {
                    body.insert(k.clone(), Value::Null);
                }
            }
            body.insert("$version".into(), Value::from(v));
            next.desired.meta = patch::meta_for_doc(&desired, &stamp);
            next.desired.props = desired;
            next.desired.version = v;
            notify = Some(Value::Object(body));
        }
        next.version += 1;
        next.etag += 1;
        *self = next;
        Ok(notify)
    }

    /// Applies a device's reported patch (raw MQTT body). Returns the new reported `$version`.
    pub fn apply_reported(&mut self, body: &[u8], at: &str) -> Result<u64, TwinError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| TwinError::Json(e.to_string()))?;
        let p = v
            .as_object()
            .ok_or(TwinError::NotObject("reported patch"))?;
        validate("properties.reported", p)?;
        let mut props = self.reported.props.clone();
        let mut meta = self.reported.meta.clone();
        let stamp = Stamp {
            at: at.to_string(),
            version: None,
        };
        merge(&mut props, &mut meta, p, &stamp);
        check_size("properties.reported", &props, MAX_REPORTED_BYTES)?;
        self.reported.props = props;
        self.reported.meta = meta;
        self.reported.version += 1;
        self.version += 1;
        Ok(self.reported.version)
    }

    /// The twin as a device GET returns it (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub).
    pub fn device_view(&self) -> Value {
        json!({"desired": self.desired.device_view(), "reported": self.reported.device_view()})
    }

    /// `tags` and `properties` of the full service twin.
    pub fn service_parts(&self) -> (Value, Value) {
        (
            Value::Object(self.tags.clone()),
            json!({"desired": self.desired.service_view(), "reported": self.reported.service_view()}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(v: Value) -> ServiceWrite {
        parse_service_write(&v).unwrap()
    }

    #[test]
    fn patch_bumps_versions_and_notifies() {
        let mut t = TwinDoc::new("T0");
        let n = t
            .apply_patch(
                &write(json!({"tags": {"b": "43"}, "properties": {"desired": {"x": 1}}})),
                "T1",
            )
            .unwrap();
        assert_eq!(n, Some(json!({"x": 1, "$version": 2})));
        assert_eq!((t.desired.version, t.version, t.etag), (2, 2, 2));
        let n = t
            .apply_patch(
                &write(json!({"tags": {"b": null}, "properties": {"desired": {}}})),
                "T2",
            )
            .unwrap();
        assert_eq!(n, None);
        assert!(t.tags.is_empty());
        assert_eq!(t.etag_string(), "AAAAAAAAAAM=");
    }

    #[test]
    fn service_writes_ignore_reported_and_dollar_keys() {
        let w = write(json!({
            "deviceId": "x", "etag": null, "version": null,
            "properties": {"desired": {"a": 1, "$metadata": {}, "$version": 4}, "reported": {"r": 1}}
        }));
        assert_eq!(
            w.desired,
            Some(json!({"a": 1}).as_object().unwrap().clone())
        );
        assert_eq!(w.tags, None);
        assert!(matches!(
            parse_service_write(&json!({"tags": {"a.b": 1}})),
            Err(TwinError::BadKey(_))
        ));
        assert!(parse_service_write(&json!([1])).is_err());
    }

    #[test]
    fn replace_sends_nulls_for_removed_keys() {
        let mut t = TwinDoc::new("T0");
        t.apply_patch(
            &write(json!({"properties": {"desired": {"a": 1, "b": 2}}})),
            "T1",
        )
        .unwrap();
        let n = t
            .apply_replace(&write(json!({"properties": {"desired": {"b": 3}}})), "T2")
            .unwrap();
        assert_eq!(n, Some(json!({"a": null, "b": 3, "$version": 3})));
        assert_eq!(t.desired.props, *json!({"b": 3}).as_object().unwrap());
    }

    #[test]
    fn reported_patch_and_device_view() {
        let mut t = TwinDoc::new("T0");
        assert_eq!(
            t.apply_reported(br#"{"door":"closed","n":{"a":1}}"#, "T1"),
            Ok(2)
        );
        assert_eq!(t.apply_reported(br#"{"n":null}"#, "T2"), Ok(3));
        assert_eq!(t.etag, 1, "device writes do not change the etag");
        assert_eq!(
            t.device_view(),
            json!({"desired": {"$version": 1}, "reported": {"door": "closed", "$version": 3}})
        );
        assert!(matches!(
            t.apply_reported(b"{oops", "T3"),
            Err(TwinError::Json(_))
        ));
        assert!(matches!(
            t.apply_reported(br#"{"$x":1}"#, "T3"),
            Err(TwinError::BadKey(_))
        ));
        assert_eq!(t.reported.version, 3, "failed patches change nothing");
    }

    /// Found by the `hub_twin_patch` fuzz target: serde_json's default float parsing can be
    /// one ulp off, so a reported 118446744073709551615 changed value across the store's JSON
    /// round trip (a hub restart). The workspace enables `float_roundtrip`.
    #[test]
    fn twin_survives_the_store_round_trip_exactly() {
        let mut t = TwinDoc::new("T0");
        t.apply_reported(
            br#"{"n": [118446744073709551615, 0.1, 1.7976931348623157e308]}"#,
            "T1",
        )
        .unwrap();
        let back: TwinDoc = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn over_limit_patch_changes_nothing() {
        let mut t = TwinDoc::new("T0");
        let mut big = Map::new();
        for i in 0..10 {
            big.insert(format!("k{i}"), json!("z".repeat(4000)));
        }
        let w = ServiceWrite {
            tags: None,
            desired: Some(big),
        };
        assert!(matches!(
            t.apply_patch(&w, "T1"),
            Err(TwinError::TooLarge { .. })
        ));
        assert_eq!(t, TwinDoc::new("T0"));
    }
}
