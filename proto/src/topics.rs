//! The device-side MQTT topic catalogue (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub): builders for what each side
//! publishes and a parser for everything either side may receive.

use crate::Status;

/// Filters a device subscribes to.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";
pub const TWIN_RES_FILTER: &str = "$iothub/twin/res/#";
pub const DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";

pub fn c2d_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

pub fn telemetry(device_id: &str) -> String {
    format!("devices/{device_id}/messages/events/")
}

pub fn method_request(name: &str, rid: &str) -> String {
    format!("$iothub/methods/POST/{name}/?$rid={rid}")
}

pub fn method_response(status: Status, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

pub fn twin_get(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

pub fn twin_reported_patch(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

pub fn twin_response(status: Status, rid: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

pub fn desired_patch(version: u64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

/// Any topic of the catalogue, parsed. Unknown or malformed topics are `None` from [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// Device → hub telemetry; `properties` is the raw (still encoded) property bag.
    Telemetry {
        device_id: String,
        properties: String,
    },
    /// Hub → device method request.
    MethodRequest {
        name: String,
        rid: String,
    },
    /// Device → hub method response.
    MethodResponse {
        status: Status,
        rid: String,
    },
    TwinGet {
        rid: String,
    },
    TwinReportedPatch {
        rid: String,
    },
    /// Hub → device twin response.
    TwinResponse {
        status: Status,
        rid: String,
        version: Option<u64>,
    },
    /// Hub → device desired notification.
    DesiredPatch {
        version: Option<u64>,
    },
}

/// Query parameters after `?` (`$rid=…&$version=…`).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Splits `a/b/?x=y` into (`a/b/`, `x=y`); the `?` part is mandatory where `$rid` is carried.
fn split_query(topic: &str) -> (&str, &str) {
    match topic.split_once('?') {
        Some((p, q)) => (p, q),
        None => (topic, ""),
    }
}

pub fn parse(topic: &str) -> Option<Topic> {
    if let Some(rest) = topic.strip_prefix("devices/") {
        let (device_id, rest) = rest.split_once('/')?;
        let after = rest.strip_prefix("messages/events")?;
        let properties = match after {
            "" => "",
            _ => after.strip_prefix('/')?,
        };
        if device_id.is_empty() {
            return None;
        }
        return Some(Topic::Telemetry {
            device_id: device_id.to_string(),
            properties: properties.to_string(),
        });
    }
    let (path, query) = split_query(topic);
    let rid = || {
        param(query, "$rid")
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    };
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        ["$iothub", "methods", "POST", name] if !name.is_empty() => Some(Topic::MethodRequest {
            name: name.to_string(),
            rid: rid()?,
        }),
        ["$iothub", "methods", "res", status] => Some(Topic::MethodResponse {
            status: Status(status.parse().ok()?),
            rid: rid()?,
        }),
        ["$iothub", "twin", "GET"] => Some(Topic::TwinGet { rid: rid()? }),
        ["$iothub", "twin", "PATCH", "properties", "reported"] => {
            Some(Topic::TwinReportedPatch { rid: rid()? })
        }
        ["$iothub", "twin", "res", status] => Some(Topic::TwinResponse {
            status: Status(status.parse().ok()?),
            rid: rid()?,
            version: param(query, "$version").and_then(|v| v.parse().ok()),
        }),
        ["$iothub", "twin", "PATCH", "properties", "desired"] => Some(Topic::DesiredPatch {
            version: param(query, "$version").and_then(|v| v.parse().ok()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(
            parse(&method_request("lockDoor", "7")),
            Some(Topic::MethodRequest {
                name: "lockDoor".into(),
                rid: "7".into()
            })
        );
        assert_eq!(
            parse(&method_response(Status::GATEWAY_TIMEOUT, "ab-c")),
            Some(Topic::MethodResponse {
                status: Status::GATEWAY_TIMEOUT,
                rid: "ab-c".into()
            })
        );
        assert_eq!(
            parse(&twin_get("1")),
            Some(Topic::TwinGet { rid: "1".into() })
        );
        assert_eq!(
            parse(&twin_reported_patch("2")),
            Some(Topic::TwinReportedPatch { rid: "2".into() })
        );
        assert_eq!(
            parse(&twin_response(Status::NO_CONTENT, "2", Some(9))),
            Some(Topic::TwinResponse {
                status: Status::NO_CONTENT,
                rid: "2".into(),
                version: Some(9)
            })
        );
        assert_eq!(
            parse(&desired_patch(15)),
            Some(Topic::DesiredPatch { version: Some(15) })
        );
        assert_eq!(
            parse("devices/d1/messages/events/%24.ct=application%2Fjson"),
            Some(Topic::Telemetry {
                device_id: "d1".into(),
                properties: "%24.ct=application%2Fjson".into()
            })
        );
        assert_eq!(
            parse(&telemetry("d1")),
            Some(Topic::Telemetry {
                device_id: "d1".into(),
                properties: String::new()
            })
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(
            parse("$iothub/methods/POST/lockDoor/"),
            None,
            "rid is mandatory"
        );
        assert_eq!(parse("$iothub/methods/res/abc/?$rid=1"), None);
        assert_eq!(parse("$iothub/unknown"), None);
        assert_eq!(parse("devices//messages/events/"), None);
        assert_eq!(parse("devices/d/messages/other"), None);
        assert_eq!(parse("devices/d/messages/eventsX"), None);
    }
}
