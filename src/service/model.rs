//! The service API's JSON shapes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry): what a client sends (job requests,
//! twin patches, method calls) and what it reads back (devices, twins, jobs, per-device job
//! results).
//!
//! Response types keep every field they do not name in `extra`, so `--json` output passes on
//! exactly what the hub said.
//!
//! These are not fieldhub's job types (`fieldhub::jobs::model`) on purpose: that side is the
//! server and validates strictly (typed statuses, unknown job types refused), while a client
//! must read whatever a real IoT Hub answers — a status or field it has never seen passes
//! through as text — and the product (fieldctl included) is built for the Pi without the fieldhub crate.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The two job kinds a client schedules (`type` of a JobRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobType {
    ScheduleDeviceMethod,
    ScheduleUpdateTwin,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
            JobType::ScheduleUpdateTwin => "scheduleUpdateTwin",
        }
    }
}

/// A direct method call, alone (`POST /twins/{id}/methods`) or inside a method job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudToDeviceMethod {
    pub method_name: String,
    /// `null` when the operator gave no payload, as the Node SDK sends.
    pub payload: Value,
    pub response_timeout_in_seconds: u64,
    pub connect_timeout_in_seconds: u64,
}

/// Body of `PUT /jobs/v2/{jobId}` (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    pub query_condition: String,
    /// UTC ISO-8601 with milliseconds and `Z`, as the SDKs send it.
    pub start_time: String,
    pub max_execution_time_in_seconds: u64,
}

/// Formats a start time the way the SDKs do: `2019-05-04T15:53:00.077Z`.
pub fn iso_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl JobRequest {
    pub fn method(
        job_id: String,
        query_condition: String,
        method: CloudToDeviceMethod,
        start: DateTime<Utc>,
        max_execution_secs: u64,
    ) -> Self {
        JobRequest {
            job_id,
            job_type: JobType::ScheduleDeviceMethod,
            cloud_to_device_method: Some(method),
            update_twin: None,
            query_condition,
            start_time: iso_utc(start),
            max_execution_time_in_seconds: max_execution_secs,
        }
    }

    /// `patch` is a twin patch (`tags` and/or `properties.desired`); the etag `"*"` makes each
    /// device's update unconditional, as the docs require for jobs.
    pub fn twin(
        job_id: String,
        query_condition: String,
        patch: &TwinPatch,
        start: DateTime<Utc>,
        max_execution_secs: u64,
    ) -> Self {
        let mut update = patch.to_json();
        update.insert("etag".into(), Value::String("*".into()));
        JobRequest {
            job_id,
            job_type: JobType::ScheduleUpdateTwin,
            cloud_to_device_method: None,
            update_twin: Some(Value::Object(update)),
            query_condition,
            start_time: iso_utc(start),
            max_execution_time_in_seconds: max_execution_secs,
        }
    }
}

/// The service-writable parts of a twin: a JSON merge patch of tags and desired properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinPatch {
    pub tags: Map<String, Value>,
    pub desired: Map<String, Value>,
}

impl TwinPatch {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.desired.is_empty()
    }

    /// `{"tags":…, "properties":{"desired":…}}`, leaving out empty sections so a tags-only
    /// patch cannot touch desired properties.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        if !self.tags.is_empty() {
            m.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        if !self.desired.is_empty() {
            let mut props = Map::new();
            props.insert("desired".into(), Value::Object(self.desired.clone()));
            m.insert("properties".into(), Value::Object(props));
        }
        m
    }
}

/// `deviceJobStatistics` of a JobResponse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceJobStatistics {
    pub device_count: u64,
    pub failed_count: u64,
    pub succeeded_count: u64,
    pub running_count: u64,
    pub pending_count: u64,
}

impl DeviceJobStatistics {
    pub fn done(&self) -> u64 {
        self.failed_count + self.succeeded_count
    }
}

/// A job as the hub reports it (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    pub job_id: String,
    #[serde(rename = "type", default)]
    pub job_type: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_job_statistics: Option<DeviceJobStatistics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl JobResponse {
    /// Completed, failed or cancelled: the hub will not change it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "cancelled" | "canceled"
        )
    }

    pub fn stats(&self) -> DeviceJobStatistics {
        self.device_job_statistics.unwrap_or_default()
    }

    /// Short type name for tables: `method` / `twin`, or the hub's own word.
    pub fn short_type(&self) -> &str {
        match self.job_type.as_str() {
            "scheduleDeviceMethod" => "method",
            "scheduleUpdateTwin" => "twin",
            other => other,
        }
    }

    pub fn start(&self) -> Option<DateTime<Utc>> {
        parse_time(self.start_time.as_deref()?)
    }

    /// The desired properties a twin job sets (top-level names), for following the doors'
    /// acknowledgements; empty for other jobs.
    pub fn desired_set(&self) -> Vec<String> {
        self.extra
            .get("updateTwin")
            .and_then(|u| u.pointer("/properties/desired"))
            .and_then(Value::as_object)
            .map(|d| d.keys().filter(|k| !k.starts_with('$')).cloned().collect())
            .unwrap_or_default()
    }
}

/// Parses the hub's timestamps (7 fractional digits, with or without `Z`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// `error` of a failed per-device job record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceJobError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub description: String,
}

/// One device's result in a job: a `devices.jobs` query row (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    pub device_id: String,
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DeviceJob {
    /// The status the device's method answered with, for method jobs.
    pub fn method_status(&self) -> Option<i64> {
        self.outcome
            .as_ref()?
            .get("deviceMethodResponse")?
            .get("status")?
            .as_i64()
    }

    /// Why this device failed, or `None` if it did not. A method that ran but answered with
    /// a status outside 2xx counts as a failure: the door did not do what was asked (IoT Hub
    /// counts such a device as succeeded: the device answered).
    pub fn failure(&self) -> Option<String> {
        if self.status == "failed" {
            return Some(match &self.error {
                Some(e) if !e.description.is_empty() => format!("{}: {}", e.code, e.description),
                Some(e) if !e.code.is_empty() => e.code.clone(),
                _ => "failed (the hub gave no reason)".into(),
            });
        }
        if matches!(self.status.as_str(), "canceled" | "cancelled") {
            return Some("cancelled: the job was cancelled before this device was done".into());
        }
        match self.method_status() {
            Some(s) if !(200..300).contains(&s) => {
                let payload = self
                    .outcome
                    .as_ref()
                    .and_then(|o| o.get("deviceMethodResponse"))
                    .and_then(|r| r.get("payload"))
                    .filter(|p| !p.is_null())
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default();
                Some(format!("method answered {s}{payload}"))
            }
            _ => None,
        }
    }

    /// Whether IoT Hub counts this device as succeeded although it failed: its method
    /// answered, but with an error status.
    pub fn answered_with_error(&self) -> bool {
        self.status == "completed" && self.failure().is_some()
    }

    /// What a failure is, for grouping: the hub's error code, or the method's status and
    /// the gateway's `code` (`504 BusTimeout`), without the per-door details.
    pub fn failure_kind(&self) -> Option<String> {
        self.failure()?;
        if let Some(e) = self.error.as_ref().filter(|_| self.status == "failed") {
            return Some(if e.code.is_empty() {
                "failed".into()
            } else {
                e.code.clone()
            });
        }
        if matches!(self.status.as_str(), "canceled" | "cancelled") {
            return Some("cancelled".into());
        }
        let status = self.method_status()?;
        let code = self
            .outcome
            .as_ref()
            .and_then(|o| o.pointer("/deviceMethodResponse/payload/code"))
            .and_then(Value::as_str);
        Some(match code {
            Some(c) => format!("method answered {status} {c}"),
            None => format!("method answered {status}"),
        })
    }

    /// Why a pending device waits: the hub's last retryable error for it (for example
    /// `DeviceNotOnline`), where it gives one.
    pub fn pending_reason(&self) -> Option<&str> {
        if !matches!(self.status.as_str(), "pending" | "scheduled" | "queued") {
            return None;
        }
        self.error
            .as_ref()
            .map(|e| e.code.as_str())
            .filter(|c| !c.is_empty())
    }
}

/// Orders device ids as people count: `door-2` before `door-10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                // Compare by value (length without leading zeros, then digits), then by the
                // zeros so `01` and `1` still have an order.
                let ta = trim_zeros(na);
                let tb = trim_zeros(nb);
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| na.len().cmp(&nb.len()));
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKey {
    #[serde(default)]
    pub primary_key: Option<String>,
    #[serde(default)]
    pub secondary_key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    #[serde(rename = "type", default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub symmetric_key: Option<SymmetricKey>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A registry identity (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Device {
    /// A new SAS device with the given keys (`PUT /devices/{id}` body).
    pub fn new_sas(device_id: &str, primary: String, secondary: String) -> Self {
        Device {
            device_id: device_id.to_string(),
            status: Some("enabled".into()),
            connection_state: None,
            etag: None,
            authentication: Some(Authentication {
                auth_type: Some("sas".into()),
                symmetric_key: Some(SymmetricKey {
                    primary_key: Some(primary),
                    secondary_key: Some(secondary),
                }),
                extra: Map::new(),
            }),
            extra: Map::new(),
        }
    }

    pub fn primary_key(&self) -> Option<&str> {
        self.authentication
            .as_ref()?
            .symmetric_key
            .as_ref()?
            .primary_key
            .as_deref()
            .filter(|k| !k.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TwinProperties {
    #[serde(default)]
    pub desired: Map<String, Value>,
    #[serde(default)]
    pub reported: Map<String, Value>,
}

/// A device twin (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-device-twins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    #[serde(default)]
    pub properties: TwinProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A direct method's answer: the device's status and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResponse {
    pub status: i64,
    #[serde(default)]
    pub payload: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2019-05-04T15:53:00.077Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn method_job_request_matches_reference_shape() {
        let req = JobRequest::method(
            "job01".into(),
            "deviceId IN ['door-01','door-02']".into(),
            CloudToDeviceMethod {
                method_name: "unlock".into(),
                payload: json!({}),
                response_timeout_in_seconds: 30,
                connect_timeout_in_seconds: 0,
            },
            start(),
            3600,
        );
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"jobId":"job01","type":"scheduleDeviceMethod",
                "cloudToDeviceMethod":{"methodName":"unlock","payload":{},
                    "responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0},
                "queryCondition":"deviceId IN ['door-01','door-02']",
                "startTime":"2019-05-04T15:53:00.077Z","maxExecutionTimeInSeconds":3600})
        );
    }

    #[test]
    fn twin_job_request_matches_reference_shape() {
        let mut patch = TwinPatch::default();
        patch.tags.insert("zone".into(), json!("B"));
        patch.desired.insert("openDurationSec".into(), json!(7));
        let req = JobRequest::twin(
            "job02".into(),
            "tags.building = '43'".into(),
            &patch,
            start(),
            120,
        );
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"jobId":"job02","type":"scheduleUpdateTwin",
                "updateTwin":{"etag":"*","tags":{"zone":"B"},"properties":{"desired":{"openDurationSec":7}}},
                "queryCondition":"tags.building = '43'",
                "startTime":"2019-05-04T15:53:00.077Z","maxExecutionTimeInSeconds":120})
        );
        // A tags-only patch must not carry a desired section.
        let tags_only = TwinPatch {
            tags: patch.tags.clone(),
            ..Default::default()
        };
        assert_eq!(
            Value::Object(tags_only.to_json()),
            json!({"tags":{"zone":"B"}})
        );
    }

    #[test]
    fn start_time_is_utc_with_millis() {
        let t = DateTime::parse_from_rfc3339("2030-01-02T03:04:05+02:00").unwrap();
        assert_eq!(iso_utc(t.with_timezone(&Utc)), "2030-01-02T01:04:05.000Z");
    }

    #[test]
    fn job_response_keeps_unknown_fields_and_reads_stats() {
        let raw = json!({"jobId":"test-job-1","type":"scheduleUpdateTwin","status":"completed",
            "queryCondition":"deviceId in ['dev-a','dev-b']",
            "createdTime":"2020-01-06T21:44:00.8884134Z","startTime":"2020-01-06T21:44:00.8884134Z",
            "endTime":"2020-01-06T21:44:06.2536519Z","maxExecutionTimeInSeconds":300,
            "updateTwin":{"deviceId":null,"etag":"*","tags":{"deviceClass":"Class1"}},
            "deviceJobStatistics":{"deviceCount":2,"failedCount":0,"succeededCount":2,"runningCount":0,"pendingCount":0}});
        let job: JobResponse = serde_json::from_value(raw.clone()).unwrap();
        assert!(job.is_terminal());
        assert_eq!(job.stats().done(), 2);
        assert_eq!(job.short_type(), "twin");
        assert_eq!(
            job.start().unwrap().to_rfc3339(),
            "2020-01-06T21:44:00.888413400+00:00"
        );
        assert_eq!(serde_json::to_value(&job).unwrap(), raw);
        // The minimal PUT answer parses too.
        let queued: JobResponse = serde_json::from_value(
            json!({"jobId":"job01","type":"scheduleDeviceMethod","status":"queued"}),
        )
        .unwrap();
        assert!(!queued.is_terminal());
        assert_eq!(queued.stats(), DeviceJobStatistics::default());
    }

    #[test]
    fn device_job_failures() {
        let failed: DeviceJob = serde_json::from_value(json!({"deviceId":"door-07","jobId":"j",
            "status":"failed","error":{"code":"DeviceNotOnline","description":"Timed out waiting for device to connect."}}))
        .unwrap();
        assert_eq!(
            failed.failure().unwrap(),
            "DeviceNotOnline: Timed out waiting for device to connect."
        );
        let ok: DeviceJob = serde_json::from_value(
            json!({"deviceId":"door-01","jobId":"j","status":"completed",
            "outcome":{"deviceMethodResponse":{"status":200,"payload":{"result":"locked"}}}}),
        )
        .unwrap();
        assert_eq!(ok.failure(), None);
        let refused: DeviceJob = serde_json::from_value(json!({"deviceId":"door-02","jobId":"j","status":"completed",
            "outcome":{"deviceMethodResponse":{"status":503,"payload":{"error":"bus unavailable"}}}}))
        .unwrap();
        assert_eq!(
            refused.failure().unwrap(),
            r#"method answered 503: {"error":"bus unavailable"}"#
        );
    }

    #[test]
    fn device_keys() {
        let d: Device = serde_json::from_value(json!({"deviceId":"d","etag":"MQ==",
            "authentication":{"symmetricKey":{"primaryKey":"cHJp","secondaryKey":"c2Vj"},
                "x509Thumbprint":{"primaryThumbprint":null},"type":"sas"}}))
        .unwrap();
        assert_eq!(d.primary_key(), Some("cHJp"));
        let created = serde_json::to_value(Device::new_sas("d", "a".into(), "b".into())).unwrap();
        assert_eq!(
            created,
            json!({"deviceId":"d","status":"enabled",
                "authentication":{"type":"sas","symmetricKey":{"primaryKey":"a","secondaryKey":"b"}}})
        );
    }
}
