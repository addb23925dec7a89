//! Jobs v2 wire types (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs), serialised exactly as the SDKs expect:
//! camelCase fields, `cancelled` for jobs but `canceled` for devices, timestamps never `null`
//! (absent when unknown, or `0001-01-01T00:00:00Z` where .NET needs a non-nullable DateTime).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `type` of a job. Anything the hub does not run deserialises as [`JobType::Unknown`] and is
/// rejected by validation (400), rather than failing JSON decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobType {
    ScheduleDeviceMethod,
    ScheduleUpdateTwin,
    #[serde(other)]
    Unknown,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::ScheduleDeviceMethod => "scheduleDeviceMethod",
            JobType::ScheduleUpdateTwin => "scheduleUpdateTwin",
            JobType::Unknown => "unknown",
        }
    }

    /// Parses the `jobType` query parameter (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [JobType::ScheduleDeviceMethod, JobType::ScheduleUpdateTwin]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether `s` names a job type the hub knows but never runs: the import/export types
    /// and `unknown`, in their wire and .NET spellings. The .NET SDK's job query sends
    /// `jobType.ToString()`, i.e. `ExportDevices`, `ImportDevices`, `Unknown`
    /// (Azure/azure-iot-sdk-csharp, iothub/service/src/JobClient/HttpJobClient.cs,
    /// `BuildQueryJobUri`; enum in iothub/service/src/JobType.cs); such a filter matches
    /// no job rather than being refused.
    pub fn is_never_run(s: &str) -> bool {
        [
            "export",
            "import",
            "exportDevices",
            "importDevices",
            "unknown",
        ]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(s))
    }
}

/// Job status; note the two-L `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the `jobStatus` query parameter (case-insensitive; `canceled` accepted too, and
    /// `enqueued`, which the .NET SDK's `JobStatus` enum documents `queued` as a synonym of:
    /// Azure/azure-iot-sdk-csharp, iothub/service/src/Jobs/JobStatus.cs).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("canceled") {
            return Some(JobStatus::Cancelled);
        }
        if s.eq_ignore_ascii_case("enqueued") {
            return Some(JobStatus::Queued);
        }
        [
            JobStatus::Queued,
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

/// Per-device status; note the one-L `canceled` (.NET `DeviceJobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceJobStatus {
    Pending,
    Scheduled,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl DeviceJobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeviceJobStatus::Completed | DeviceJobStatus::Failed | DeviceJobStatus::Canceled
        )
    }
}

/// The method a `scheduleDeviceMethod` job invokes (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-direct-methods).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudToDeviceMethod {
    pub method_name: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_in_seconds: Option<u64>,
}

impl CloudToDeviceMethod {
    /// `responseTimeoutInSeconds`, default 30.
    pub fn response_timeout(&self) -> u64 {
        self.response_timeout_in_seconds.unwrap_or(30)
    }

    /// `connectTimeoutInSeconds`, default 0.
    pub fn connect_timeout(&self) -> u64 {
        self.connect_timeout_in_seconds.unwrap_or(0)
    }
}

/// Reads `startTime`: RFC 3339, or a date and time without an offset taken as UTC. The .NET
/// service SDK sends the latter for a `DateTime` of kind Unspecified (Newtonsoft.Json writes
/// no offset for it), and its `JobClient.ScheduleDeviceMethodAsync` / `ScheduleTwinUpdateAsync`
/// name that argument `startTimeUtc`, "Date time in Utc to start the job"
/// (Azure/azure-iot-sdk-csharp, iothub/service/src/JobClient/JobClient.cs).
fn utc_or_unqualified<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| Some(t.and_utc()))
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "startTime '{text}' is not a date and time (ISO 8601)"
            ))
        })
}

/// Body of `PUT /jobs/v2/{jobId}`. `jobId` may be absent from the body (the path carries it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    #[serde(default)]
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    /// A twin patch; only `tags` and `properties.desired` are applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    /// `null`/absent means now. A time without an offset is UTC (as the .NET SDK means it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "utc_or_unqualified"
    )]
    pub start_time: Option<DateTime<Utc>>,
    /// Absent or 0 means [`DEFAULT_MAX_EXECUTION_SECS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
}

/// Emulator default for `maxExecutionTimeInSeconds` when the client omits it.
pub const DEFAULT_MAX_EXECUTION_SECS: u64 = 3600;

/// `deviceJobStatistics`; the five counters always add up: `failed + succeeded + running +
/// pending = deviceCount` (canceled devices count as failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobStatistics {
    pub device_count: u64,
    pub failed_count: u64,
    pub succeeded_count: u64,
    pub running_count: u64,
    pub pending_count: u64,
}

/// Body of `GET /jobs/v2/{jobId}` (and of PUT / cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    pub job_id: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// Set only once the job is terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_time_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_to_device_method: Option<CloudToDeviceMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_twin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_job_statistics: Option<DeviceJobStatistics>,
}

/// A device's answer to a method call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodOutcome {
    pub status: i32,
    #[serde(default)]
    pub payload: Value,
}

/// `outcome` of a device-job record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJobOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_method_response: Option<MethodOutcome>,
}

/// `error` of a failed device-job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJobError {
    pub code: String,
    pub description: String,
}

/// One device's part in a job, as `SELECT * FROM devices.jobs` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJob {
    pub device_id: String,
    pub job_id: String,
    pub job_type: JobType,
    pub status: DeviceJobStatus,
    /// [`unknown_time`] until the device was first attempted.
    pub start_time_utc: DateTime<Utc>,
    /// [`unknown_time`] until the device is terminal.
    pub end_time_utc: DateTime<Utc>,
    pub created_date_time_utc: DateTime<Utc>,
    pub last_updated_date_time_utc: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeviceJobOutcome>,
    /// The failure, or (while the device is pending a retry) the last retryable error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeviceJobError>,
}

/// `0001-01-01T00:00:00Z`: .NET's `DateTime.MinValue`, sent where a time is not known yet
/// because .NET's `DeviceJob` timestamps are non-nullable.
pub fn unknown_time() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_from_the_sdks_deserialise() {
        let r: JobRequest = serde_json::from_value(json!({"jobId":"job01","type":"scheduleDeviceMethod",
            "cloudToDeviceMethod":{"methodName":"unlock","payload":null,"responseTimeoutInSeconds":30},
            "queryCondition":"deviceId IN ['door-01']","startTime":null})).unwrap();
        assert_eq!(r.job_type, JobType::ScheduleDeviceMethod);
        assert_eq!(r.start_time, None);
        assert_eq!(r.max_execution_time_in_seconds, None);
        let r: JobRequest = serde_json::from_value(json!({"jobId":"j","type":"export"})).unwrap();
        assert_eq!(r.job_type, JobType::Unknown);
    }

    #[test]
    fn device_job_serialises_min_time_and_statuses() {
        let t = unknown_time();
        let d = DeviceJob {
            device_id: "d".into(),
            job_id: "j".into(),
            job_type: JobType::ScheduleUpdateTwin,
            status: DeviceJobStatus::Canceled,
            start_time_utc: t,
            end_time_utc: t,
            created_date_time_utc: t,
            last_updated_date_time_utc: t,
            outcome: None,
            error: None,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["startTimeUtc"], "0001-01-01T00:00:00Z");
        assert_eq!(v["status"], "canceled");
        assert_eq!(v["jobType"], "scheduleUpdateTwin");
        assert_eq!(
            serde_json::to_value(JobStatus::Cancelled).unwrap(),
            "cancelled"
        );
        assert_eq!(JobStatus::parse("Canceled"), Some(JobStatus::Cancelled));
    }
}
