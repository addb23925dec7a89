//! Pure device-endpoint rules: CONNECT username parsing (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub), which topic filters
//! a device may subscribe to, which topics it may publish to (per-device isolation),
//! and telemetry property-bag decoding.

use iothub_proto::topics::{self, Topic};
use percent_encoding::percent_decode_str;

use crate::hub::Sub;

/// Whether `m` is a Digital Twins Model Identifier (`dtmi:<segments>;<version>`, "Digital
/// Twins Model Identifier" in the DTDL specification, which IoT Plug and Play model ids are:
/// <https://learn.microsoft.com/azure/iot/concepts-model-discovery>).
pub fn is_dtmi(m: &str) -> bool {
    let Some((path, version)) = m.strip_prefix("dtmi:").and_then(|r| r.rsplit_once(';')) else {
        return false;
    };
    m.len() <= 2048
        && !path.is_empty()
        && path.split(':').all(|seg| {
            seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        && !version.is_empty()
        && version.chars().all(|c| c.is_ascii_digit())
}

/// Parsed `{host}/{deviceId}[/{moduleId}]/?api-version=…` (the `?` is optional, as in older
/// docs: `{host}/{deviceId}/api-version=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    pub host: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub api_version: Option<String>,
    /// `model-id=` (percent-decoded): the IoT Plug and Play model the device announces.
    pub model_id: Option<String>,
}

pub fn parse_username(u: &str) -> Option<Username> {
    let (path, query) = match u.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (u, None),
    };
    let mut segs: Vec<&str> = path.split('/').collect();
    let mut query = query.map(str::to_string);
    // Older form: the api-version sits in the last path segment.
    if let Some(last) = segs.last() {
        if last.starts_with("api-version=") {
            query = Some(last.to_string());
            segs.pop();
        }
    }
    while segs.last() == Some(&"") {
        segs.pop();
    }
    let param = |name: &str| {
        query.as_deref().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
    };
    let api_version = param("api-version");
    let model_id = param("model-id").filter(|m| !m.is_empty());
    match segs.as_slice() {
        [host, dev] if !host.is_empty() && !dev.is_empty() => Some(Username {
            host: host.to_string(),
            device_id: dev.to_string(),
            module_id: None,
            api_version,
            model_id,
        }),
        [host, dev, module] if !host.is_empty() && !dev.is_empty() && !module.is_empty() => {
            Some(Username {
                host: host.to_string(),
                device_id: dev.to_string(),
                module_id: Some(module.to_string()),
                api_version,
                model_id,
            })
        }
        _ => None,
    }
}

/// The Plug and Play model id a CONNECT username announces (`…&model-id=dtmi:…`, Microsoft
/// Learn, "IoT Plug and Play conventions"), percent-decoded.
pub fn model_id(username: &str) -> Option<String> {
    let (_, query) = username.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("model-id="))
        .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

/// What a SUBSCRIBE filter means for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterVerdict {
    Allowed(Sub),
    /// Names another device's topics (or wildcards over devices): the connection is closed.
    Foreign,
    /// Not an IoT Hub filter: SUBACK 0x80.
    Unsupported,
}

pub fn classify_filter(filter: &str, own_id: &str) -> FilterVerdict {
    match filter {
        topics::METHODS_FILTER => return FilterVerdict::Allowed(Sub::Methods),
        topics::TWIN_RES_FILTER => return FilterVerdict::Allowed(Sub::TwinResponses),
        topics::DESIRED_FILTER => return FilterVerdict::Allowed(Sub::DesiredPatches),
        _ => {}
    }
    if let Some(rest) = filter.strip_prefix("devices/") {
        let (dev, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if dev != own_id {
            return FilterVerdict::Foreign;
        }
        return match tail {
            "messages/devicebound/#" | "messages/devicebound" | "messages/devicebound/" => {
                FilterVerdict::Allowed(Sub::CloudToDevice)
            }
            _ => FilterVerdict::Unsupported,
        };
    }
    if filter.starts_with('#') || filter.starts_with("+/") || filter == "+" {
        // Would match other devices' topics.
        return FilterVerdict::Foreign;
    }
    // Per-method filters (`$iothub/methods/POST/{name}/#`) are documented, though the
    // wildcard one is recommended.
    if let Some(m) = filter.strip_prefix("$iothub/methods/POST/") {
        if !m.is_empty() && !m.starts_with('#') {
            return FilterVerdict::Allowed(Sub::Methods);
        }
    }
    FilterVerdict::Unsupported
}

/// What a device PUBLISH means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVerdict {
    Telemetry {
        properties: String,
    },
    TwinGet {
        rid: String,
    },
    ReportedPatch {
        rid: String,
    },
    MethodResponse {
        status: i32,
        rid: String,
    },
    /// Another device's topic, a hub-to-device topic, or an unknown topic: close.
    Violation,
}

pub fn classify_publish(topic: &str, own_id: &str) -> PublishVerdict {
    match topics::parse(topic) {
        Some(Topic::Telemetry {
            device_id,
            properties,
        }) if device_id == own_id => PublishVerdict::Telemetry { properties },
        Some(Topic::TwinGet { rid }) => PublishVerdict::TwinGet { rid },
        Some(Topic::TwinReportedPatch { rid }) => PublishVerdict::ReportedPatch { rid },
        Some(Topic::MethodResponse { status, rid }) => PublishVerdict::MethodResponse {
            status: status.0,
            rid,
        },
        _ => PublishVerdict::Violation,
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Decodes `k1=v1&k2&k3=` (keys and values percent-encoded; a key without `=` has an empty
/// value).
pub fn parse_property_bag(bag: &str) -> Vec<(String, String)> {
    bag.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let u = parse_username(
            "h.azure-devices.net/door-1/?api-version=2021-04-12&DeviceClientType=x%2F1",
        )
        .unwrap();
        assert_eq!(
            u,
            Username {
                host: "h.azure-devices.net".into(),
                device_id: "door-1".into(),
                module_id: None,
                api_version: Some("2021-04-12".into()),
                model_id: None,
            }
        );
        // Issue 14, item 10: the model id IoT Plug and Play devices announce, URL-encoded as
        // the SDKs send it.
        let pnp = parse_username(
            "h/d/?api-version=2020-09-30&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1",
        )
        .unwrap();
        assert_eq!(
            pnp.model_id.as_deref(),
            Some("dtmi:com:example:Thermostat;1")
        );
        let old = parse_username("h/d/api-version=2016-11-14").unwrap();
        assert_eq!(
            (old.device_id.as_str(), old.api_version.as_deref()),
            ("d", Some("2016-11-14"))
        );
        let m = parse_username("h/d/m/?api-version=1").unwrap();
        assert_eq!(m.module_id.as_deref(), Some("m"));
        assert_eq!(parse_username("h/d").unwrap().api_version, None);
        assert!(parse_username("justhost").is_none());
        assert!(parse_username("/d/?api-version=1").is_none());
        assert!(parse_username("").is_none());
    }

    #[test]
    fn model_ids() {
        assert_eq!(
            model_id("h/d/?api-version=2021-04-12&model-id=dtmi%3Afieldgate%3Adoor%3B1"),
            Some("dtmi:fieldgate:door;1".into())
        );
        assert_eq!(
            model_id("h/d/?api-version=2021-04-12&model-id=dtmi:a;1&x=y"),
            Some("dtmi:a;1".into())
        );
        assert_eq!(model_id("h/d/?api-version=2021-04-12"), None);
    }

    #[test]
    fn filters() {
        use FilterVerdict::*;
        assert_eq!(
            classify_filter("$iothub/methods/POST/#", "a"),
            Allowed(Sub::Methods)
        );
        assert_eq!(
            classify_filter("$iothub/twin/res/#", "a"),
            Allowed(Sub::TwinResponses)
        );
        assert_eq!(
            classify_filter("$iothub/twin/PATCH/properties/desired/#", "a"),
            Allowed(Sub::DesiredPatches)
        );
        assert_eq!(
            classify_filter("devices/a/messages/devicebound/#", "a"),
            Allowed(Sub::CloudToDevice)
        );
        assert_eq!(
            classify_filter("devices/b/messages/devicebound/#", "a"),
            Foreign
        );
        assert_eq!(
            classify_filter("devices/+/messages/devicebound/#", "a"),
            Foreign
        );
        assert_eq!(classify_filter("#", "a"), Foreign);
        assert_eq!(
            classify_filter("devices/a/messages/events/", "a"),
            Unsupported
        );
        assert_eq!(classify_filter("$iothub/other/#", "a"), Unsupported);
        assert_eq!(
            classify_filter("$iothub/methods/POST/lockDoor/#", "a"),
            Allowed(Sub::Methods)
        );
    }

    #[test]
    fn publishes() {
        use PublishVerdict::*;
        assert_eq!(
            classify_publish("devices/a/messages/events/%24.ct=x", "a"),
            Telemetry {
                properties: "%24.ct=x".into()
            }
        );
        assert_eq!(
            classify_publish("devices/b/messages/events/", "a"),
            Violation
        );
        assert_eq!(
            classify_publish("$iothub/twin/GET/?$rid=1", "a"),
            TwinGet { rid: "1".into() }
        );
        assert_eq!(
            classify_publish("$iothub/methods/POST/x/?$rid=1", "a"),
            Violation
        );
        assert_eq!(
            classify_publish("$iothub/twin/PATCH/properties/desired/?$version=1", "a"),
            Violation
        );
        assert_eq!(classify_publish("random/topic", "a"), Violation);
        assert_eq!(
            classify_publish("$iothub/methods/res/200/?$rid=7", "a"),
            MethodResponse {
                status: 200,
                rid: "7".into()
            }
        );
    }

    #[test]
    fn property_bags() {
        assert_eq!(
            parse_property_bag("%24.mid=a%20b%2Fc&%24.ct=application%2Fjson&flag&e="),
            vec![
                ("$.mid".to_string(), "a b/c".to_string()),
                ("$.ct".to_string(), "application/json".to_string()),
                ("flag".to_string(), String::new()),
                ("e".to_string(), String::new()),
            ]
        );
        assert!(parse_property_bag("").is_empty());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_panics_and_no_cross_device_telemetry(topic in "\\PC{0,60}", other in "[a-z]{1,5}") {
                let _ = parse_username(&topic);
                let _ = parse_property_bag(&topic);
                let own = format!("{other}-own");
                if let PublishVerdict::Telemetry { .. } = classify_publish(&topic, &own) {
                    let prefix = format!("devices/{}/", own);
                    prop_assert!(topic.starts_with(&prefix));
                }
                if let FilterVerdict::Allowed(Sub::CloudToDevice) = classify_filter(&topic, &own) {
                    let prefix = format!("devices/{}/", own);
                    prop_assert!(topic.starts_with(&prefix));
                }
            }
        }
    }
}
