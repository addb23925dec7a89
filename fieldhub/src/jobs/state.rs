//! The pure job state machine (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs): validation, scheduling, device selection,
//! per-device transitions, expiry and cancellation. No I/O and no clock: every transition takes
//! `now`, so the engine and the tests drive it deterministically.
//!
//! Invariant: `deviceJobStatistics` are computed from the device records on demand, never kept
//! as counters, so they are exact whenever they are read.

use super::model::{
    unknown_time, DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceJobStatistics,
    DeviceJobStatus, JobRequest, JobResponse, JobStatus, JobType, MethodOutcome,
    DEFAULT_MAX_EXECUTION_SECS,
};
use super::ops::select_from;
use super::JobError;
use crate::query::{parse_condition, Condition};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Error code for devices still unprocessed when `maxExecutionTimeInSeconds` runs out.
pub const JOB_RUN_PREEMPTED: &str = "JobRunPreempted";

/// Error code of a device whose operation was sent before the hub stopped and whose outcome is
/// therefore unknown (see [`JobState::interrupt`]).
pub const OUTCOME_UNKNOWN: &str = "DeviceJobOutcomeUnknown";

/// What [`JobState::save`] keeps for [`JobState::restore`].
#[derive(Debug, Clone)]
pub struct Saved {
    status: JobStatus,
    end_time: Option<DateTime<Utc>>,
    devices: Vec<DeviceJob>,
}

impl Saved {
    /// Also keeps `device`'s record as it is now.
    pub fn keep(&mut self, job: &JobState, device: &str) {
        if let Some(d) = job.devices.get(device) {
            self.devices.push(d.clone());
        }
    }
}

/// A job and its device records: what the engine persists after every transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    /// The validated request; `startTime` and `maxExecutionTimeInSeconds` are filled in.
    pub request: JobRequest,
    pub status: JobStatus,
    pub created_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    /// When the job actually started running (its time budget counts from here, so a job
    /// whose `startTime` lies in the past still gets its full `maxExecutionTimeInSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_time: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    /// When `queryCondition` selected the job's devices: when it was scheduled, or when it
    /// started if it was due at once. `None` until then (and for jobs stored scheduled by
    /// versions that selected at the start only; those select when they start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_time: Option<DateTime<Utc>>,
    /// The selected devices' records, by device id.
    pub devices: BTreeMap<String, DeviceJob>,
}

fn invalid(message: impl Into<String>) -> JobError {
    JobError::Invalid(message.into())
}

/// Checks a request and returns its parsed `queryCondition`.
pub fn validate(req: &JobRequest) -> Result<Condition, JobError> {
    let id = &req.job_id;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid(format!(
            "jobId '{id}' is invalid: use 1-64 ASCII letters, digits and '-'"
        )));
    }
    match req.job_type {
        JobType::ScheduleDeviceMethod => {
            let m = req
                .cloud_to_device_method
                .as_ref()
                .ok_or_else(|| invalid("a scheduleDeviceMethod job needs cloudToDeviceMethod"))?;
            if m.method_name.is_empty() {
                return Err(invalid("cloudToDeviceMethod.methodName is empty"));
            }
            if !(5..=300).contains(&m.response_timeout()) {
                return Err(invalid(
                    "responseTimeoutInSeconds must be between 5 and 300",
                ));
            }
            if m.connect_timeout() > 300 {
                return Err(invalid("connectTimeoutInSeconds must be at most 300"));
            }
        }
        // A twin-update job is a forced update: IoT Hub requires `updateTwin.etag` and accepts
        // only "*" (azure-iot-sdk-java PR #969, DeviceTwinSample: "ScheduleUpdateTwin job type
        // is a force update, which only accepts '*' as the Etag"; MicrosoftDocs/azure-docs
        // issue #29484: the REST example fails until `"etag": "*"` is added). Any other
        // value is refused too, the stricter reading, so code that passes here passes there.
        JobType::ScheduleUpdateTwin => match &req.update_twin {
            Some(Value::Object(u)) => match u.get("etag") {
                Some(Value::String(e)) if e == "*" => {}
                None | Some(Value::Null) => {
                    return Err(invalid(
                        "updateTwin.etag is required for a scheduleUpdateTwin job; use \"*\"",
                    ))
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "updateTwin.etag {other} is not accepted: a scheduleUpdateTwin job is a \
                         forced update and takes only \"*\""
                    )))
                }
            },
            _ => {
                return Err(invalid(
                    "a scheduleUpdateTwin job needs an updateTwin object",
                ))
            }
        },
        JobType::Unknown => {
            return Err(invalid(
                "type must be scheduleDeviceMethod or scheduleUpdateTwin",
            ))
        }
    }
    let text = req
        .query_condition
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| invalid("queryCondition is required"))?;
    parse_condition(text).map_err(JobError::InvalidQuery)
}

impl JobState {
    /// Validates `req` and creates the job in `queued` (even for a future start, as the hub does).
    pub fn new(mut req: JobRequest, now: DateTime<Utc>) -> Result<Self, JobError> {
        validate(&req)?;
        req.start_time = Some(req.start_time.unwrap_or(now));
        req.max_execution_time_in_seconds = Some(
            req.max_execution_time_in_seconds
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_MAX_EXECUTION_SECS),
        );
        Ok(Self {
            request: req,
            status: JobStatus::Queued,
            created_time: now,
            end_time: None,
            started_time: None,
            failure_reason: None,
            selected_time: None,
            devices: BTreeMap::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.request.job_id
    }

    pub fn start_time(&self) -> DateTime<Utc> {
        self.request.start_time.unwrap_or(self.created_time)
    }

    /// When the job's time runs out: start of the run + `maxExecutionTimeInSeconds`.
    pub fn deadline(&self) -> DateTime<Utc> {
        let from = self.started_time.unwrap_or_else(|| self.start_time());
        let secs = self
            .request
            .max_execution_time_in_seconds
            .unwrap_or(DEFAULT_MAX_EXECUTION_SECS);
        // Saturating: the request chooses both numbers, and chrono panics on overflow.
        i64::try_from(secs)
            .ok()
            .and_then(Duration::try_seconds)
            .and_then(|d| from.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Not yet terminal: counts against the active-job limit.
    pub fn is_active(&self) -> bool {
        !self.status.is_terminal()
    }

    /// Whether a queued/scheduled job should start now.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        matches!(self.status, JobStatus::Queued | JobStatus::Scheduled) && self.start_time() <= now
    }

    /// Whether the job waits in `queued` for a start time in the future: the next pass
    /// selects its devices and [`JobState::defer`]s it.
    pub fn awaits_schedule(&self, now: DateTime<Utc>) -> bool {
        self.status == JobStatus::Queued && self.start_time() > now
    }

    /// Whether `queryCondition` has yet to select the job's devices.
    pub fn needs_selection(&self) -> bool {
        self.selected_time.is_none()
    }

    /// `queued` → `scheduled` when the start time is in the future, with a `scheduled` record
    /// for every device `selected` now. Returns whether it changed.
    ///
    /// The devices are chosen when the job is scheduled, not when it starts: IoT Hub's
    /// `devices.jobs` "returns all jobs (past and scheduled) that affect a single device"
    /// ("Queries for IoT Hub jobs", <https://learn.microsoft.com/azure/iot-hub/query-jobs>),
    /// so a scheduled job already has per-device records, and `deviceJobStatistics` counts
    /// them (`deviceCount`, and `pendingCount`, "devices that are pending to run the job",
    /// <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs>). Neither page says
    /// whether the condition is evaluated again at the start; it is not, the stricter
    /// reading: code cannot come to rely on devices added after scheduling being included.
    pub fn defer(&mut self, selected: Vec<String>, now: DateTime<Utc>) -> bool {
        if !self.awaits_schedule(now) {
            return false;
        }
        self.status = JobStatus::Scheduled;
        self.select(selected, DeviceJobStatus::Scheduled, now);
        true
    }

    /// Records the selected devices in `status`.
    fn select(&mut self, selected: Vec<String>, status: DeviceJobStatus, now: DateTime<Utc>) {
        self.selected_time = Some(now);
        for id in selected {
            let record = DeviceJob {
                device_id: id.clone(),
                job_id: self.id().to_owned(),
                job_type: self.request.job_type,
                status,
                start_time_utc: unknown_time(),
                end_time_utc: unknown_time(),
                created_date_time_utc: now,
                last_updated_date_time_utc: now,
                outcome: None,
                error: None,
            };
            self.devices.insert(id, record);
        }
    }

    /// The parsed `queryCondition`. Validated at creation; `None` for a stored job whose
    /// condition no longer parses (it selects nothing).
    pub fn condition(&self) -> Option<Condition> {
        self.request
            .query_condition
            .as_deref()
            .and_then(|q| parse_condition(q).ok())
    }

    /// Starts the job: unless its devices were selected when it was scheduled, evaluates
    /// `queryCondition` once over `twins` (devices added later are not included); every
    /// selected device becomes `pending`. A job selecting no device completes.
    pub fn start(&mut self, twins: &[Value], now: DateTime<Utc>) {
        let selected = if self.needs_selection() {
            self.condition()
                .map(|c| select_from(&c, twins))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.start_selected(selected, now);
    }

    /// Starts the job (see [`JobState::start`]) on the devices its condition `selected`
    /// now; ignored when the devices were selected when the job was scheduled.
    pub fn start_selected(&mut self, selected: Vec<String>, now: DateTime<Utc>) {
        if !matches!(self.status, JobStatus::Queued | JobStatus::Scheduled) {
            return;
        }
        self.status = JobStatus::Running;
        self.started_time = Some(now);
        if self.needs_selection() {
            self.select(selected, DeviceJobStatus::Pending, now);
        }
        for d in self.devices.values_mut() {
            if d.status == DeviceJobStatus::Scheduled {
                d.status = DeviceJobStatus::Pending;
                d.last_updated_date_time_utc = now;
            }
        }
        self.finish_if_done(now);
    }

    fn device_mut(&mut self, id: &str, from: DeviceJobStatus) -> Option<&mut DeviceJob> {
        if self.status != JobStatus::Running {
            return None;
        }
        self.devices.get_mut(id).filter(|d| d.status == from)
    }

    /// `pending` → `running`. Returns false (no change) if the device is not pending.
    pub fn device_started(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        let Some(d) = self.device_mut(id, DeviceJobStatus::Pending) else {
            return false;
        };
        d.status = DeviceJobStatus::Running;
        if d.start_time_utc == unknown_time() {
            d.start_time_utc = now;
        }
        d.last_updated_date_time_utc = now;
        true
    }

    /// `running` → `completed`, recording the method response if any.
    pub fn device_succeeded(
        &mut self,
        id: &str,
        response: Option<MethodOutcome>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(d) = self.device_mut(id, DeviceJobStatus::Running) else {
            return false;
        };
        d.status = DeviceJobStatus::Completed;
        d.end_time_utc = now;
        d.last_updated_date_time_utc = now;
        d.error = None;
        d.outcome = response.map(|r| DeviceJobOutcome {
            device_method_response: Some(r),
        });
        self.finish_if_done(now);
        true
    }

    /// `running` → `failed` with `error`.
    pub fn device_failed(&mut self, id: &str, error: DeviceJobError, now: DateTime<Utc>) -> bool {
        let Some(d) = self.device_mut(id, DeviceJobStatus::Running) else {
            return false;
        };
        d.status = DeviceJobStatus::Failed;
        d.end_time_utc = now;
        d.last_updated_date_time_utc = now;
        d.error = Some(error);
        self.finish_if_done(now);
        true
    }

    /// `running` → `pending` after a retryable error (e.g. device offline), keeping the error so
    /// that expiry can report it.
    pub fn device_retry(&mut self, id: &str, error: DeviceJobError, now: DateTime<Utc>) -> bool {
        let Some(d) = self.device_mut(id, DeviceJobStatus::Running) else {
            return false;
        };
        d.status = DeviceJobStatus::Pending;
        d.last_updated_date_time_utc = now;
        d.error = Some(error);
        true
    }

    /// After a restart: a `running` device was recorded (durably) before its operation was
    /// sent, and its outcome was not recorded, so the operation may or may not have reached the
    /// device. Calling it again could repeat a non-idempotent method (an `unlockDoor` twice), so
    /// such devices fail with [`OUTCOME_UNKNOWN`] instead and are never called again for this
    /// job. Returns the devices changed.
    ///
    /// IoT Hub documents no error code for this case (its jobs guide, "Schedule jobs on
    /// multiple devices", <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs>,
    /// lists the device job statuses and error fields only), so the stricter choice is made:
    /// an operation is sent at most once per device and job, and the record says so.
    pub fn interrupt(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut changed = Vec::new();
        for d in self.devices.values_mut() {
            if d.status == DeviceJobStatus::Running {
                d.status = DeviceJobStatus::Failed;
                d.end_time_utc = now;
                d.last_updated_date_time_utc = now;
                d.error = Some(DeviceJobError {
                    code: OUTCOME_UNKNOWN.to_owned(),
                    description: "the hub stopped after sending this device's operation and \
                                  before recording its outcome; it was not sent again"
                        .to_owned(),
                });
                changed.push(d.device_id.clone());
            }
        }
        self.finish_if_done(now);
        changed
    }

    /// Puts back device records (and the job's status) saved before a transition whose write
    /// to the store failed, so that nothing unrecorded is counted or acted upon.
    pub fn restore(&mut self, saved: Saved) {
        self.status = saved.status;
        self.end_time = saved.end_time;
        for d in saved.devices {
            self.devices.insert(d.device_id.clone(), d);
        }
    }

    /// The job's status and the given devices' records, for [`JobState::restore`].
    pub fn save<'a>(&self, devices: impl IntoIterator<Item = &'a str>) -> Saved {
        Saved {
            status: self.status,
            end_time: self.end_time,
            devices: devices
                .into_iter()
                .filter_map(|id| self.devices.get(id).cloned())
                .collect(),
        }
    }

    /// The job's time ran out: every device not yet terminal fails — with its last operation
    /// error (e.g. `DeviceNotOnline`) if it had one, else [`JOB_RUN_PREEMPTED`] — and the job
    /// completes.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        if self.status != JobStatus::Running {
            return;
        }
        for d in self
            .devices
            .values_mut()
            .filter(|d| !d.status.is_terminal())
        {
            d.status = DeviceJobStatus::Failed;
            d.end_time_utc = now;
            d.last_updated_date_time_utc = now;
            if d.error.is_none() {
                d.error = Some(DeviceJobError {
                    code: JOB_RUN_PREEMPTED.to_owned(),
                    description:
                        "maxExecutionTimeInSeconds elapsed before the device was processed"
                            .to_owned(),
                });
            }
        }
        self.finish_if_done(now);
    }

    /// Cancels a job that is not terminal: job `cancelled`, unfinished devices `canceled`.
    /// Returns false if the job had already finished (cancel is then a no-op).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.status = JobStatus::Cancelled;
        self.end_time = Some(now);
        for d in self
            .devices
            .values_mut()
            .filter(|d| !d.status.is_terminal())
        {
            d.status = DeviceJobStatus::Canceled;
            d.end_time_utc = now;
            d.last_updated_date_time_utc = now;
        }
        true
    }

    fn finish_if_done(&mut self, now: DateTime<Utc>) {
        if self.status == JobStatus::Running
            && self.devices.values().all(|d| d.status.is_terminal())
        {
            self.status = JobStatus::Completed;
            self.end_time = Some(now);
        }
    }

    /// Statistics derived from the device records (canceled devices count as failed).
    pub fn statistics(&self) -> DeviceJobStatistics {
        let mut s = DeviceJobStatistics {
            device_count: self.devices.len() as u64,
            ..DeviceJobStatistics::default()
        };
        for d in self.devices.values() {
            match d.status {
                DeviceJobStatus::Pending | DeviceJobStatus::Scheduled => s.pending_count += 1,
                DeviceJobStatus::Running => s.running_count += 1,
                DeviceJobStatus::Completed => s.succeeded_count += 1,
                DeviceJobStatus::Failed | DeviceJobStatus::Canceled => s.failed_count += 1,
            }
        }
        s
    }

    /// The `GET /jobs/v2/{id}` body.
    pub fn response(&self) -> JobResponse {
        let r = &self.request;
        JobResponse {
            job_id: r.job_id.clone(),
            job_type: r.job_type,
            status: self.status,
            query_condition: r.query_condition.clone(),
            created_time: Some(self.created_time),
            start_time: r.start_time,
            end_time: self.end_time,
            max_execution_time_in_seconds: r.max_execution_time_in_seconds,
            cloud_to_device_method: r.cloud_to_device_method.clone(),
            update_twin: r.update_twin.clone(),
            failure_reason: self.failure_reason.clone(),
            status_message: None,
            device_job_statistics: Some(self.statistics()),
        }
    }

    /// The twin patch a `scheduleUpdateTwin` job applies: only `tags` and `properties.desired`.
    pub fn twin_patch(&self) -> Value {
        let mut patch = serde_json::Map::new();
        if let Some(u) = &self.request.update_twin {
            if let Some(tags) = u.get("tags").filter(|t| !t.is_null()) {
                patch.insert("tags".into(), tags.clone());
            }
            if let Some(desired) = u
                .get("properties")
                .and_then(|p| p.get("desired"))
                .filter(|d| !d.is_null())
            {
                patch.insert(
                    "properties".into(),
                    serde_json::json!({ "desired": desired }),
                );
            }
        }
        Value::Object(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(cond: &str) -> JobRequest {
        serde_json::from_value(json!({"jobId":"job-1","type":"scheduleDeviceMethod",
            "cloudToDeviceMethod":{"methodName":"lockDoor"},"queryCondition":cond,
            "maxExecutionTimeInSeconds":60}))
        .unwrap()
    }

    fn twins() -> Vec<Value> {
        (0..4)
            .map(|i| json!({"deviceId": format!("d{i}"), "tags": {"i": i}}))
            .collect()
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn assert_stats(j: &JobState) {
        let s = j.statistics();
        assert_eq!(
            s.device_count,
            s.failed_count + s.succeeded_count + s.running_count + s.pending_count
        );
    }

    #[test]
    fn validation() {
        assert!(JobState::new(req("*"), t(0)).is_ok());
        let mut r = req("*");
        r.job_id = "bad id".into();
        assert!(matches!(JobState::new(r, t(0)), Err(JobError::Invalid(_))));
        r = req("*");
        r.job_id = "a".repeat(65);
        assert!(matches!(JobState::new(r, t(0)), Err(JobError::Invalid(_))));
        r = req("*");
        r.cloud_to_device_method = None;
        assert!(matches!(JobState::new(r, t(0)), Err(JobError::Invalid(_))));
        r = req("*");
        r.job_type = JobType::ScheduleUpdateTwin;
        assert!(matches!(JobState::new(r, t(0)), Err(JobError::Invalid(_))));
        // Issue 14, item 5: twin-update jobs take `updateTwin.etag` "*" and nothing else.
        for (etag, ok) in [
            (json!("*"), true),
            (Value::Null, false),
            (json!("AAAAAAAAAAE="), false),
        ] {
            r = req("*");
            r.job_type = JobType::ScheduleUpdateTwin;
            r.update_twin = Some(json!({"etag": etag, "tags": {"a": 1}}));
            assert_eq!(JobState::new(r, t(0)).is_ok(), ok, "etag {etag}");
        }
        r = req("*");
        r.job_type = JobType::Unknown;
        assert!(matches!(JobState::new(r, t(0)), Err(JobError::Invalid(_))));
        match JobState::new(req("deviceId = "), t(0)) {
            Err(JobError::InvalidQuery(e)) => assert_eq!(e.position, 11),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lifecycle_with_statistics() {
        let mut r = req("tags.i < 3");
        r.start_time = Some(t(10));
        let mut j = JobState::new(r, t(0)).unwrap();
        assert_eq!(j.status, JobStatus::Queued);
        let selected = j.condition().map(|c| select_from(&c, &twins())).unwrap();
        assert!(j.defer(selected, t(0)));
        assert_eq!(j.status, JobStatus::Scheduled);
        let s = j.statistics();
        assert_eq!((s.device_count, s.pending_count), (3, 3));
        assert!(j
            .devices
            .values()
            .all(|d| d.status == DeviceJobStatus::Scheduled));
        assert!(!j.is_due(t(9)));
        assert!(j.is_due(t(10)));
        j.start(&twins(), t(10));
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.statistics().pending_count, 3);
        assert!(j.device_started("d0", t(11)));
        assert!(!j.device_started("d0", t(11)));
        assert!(!j.device_started("d3", t(11)), "d3 was not selected");
        assert_stats(&j);
        assert_eq!(j.statistics().running_count, 1);
        assert!(j.device_succeeded(
            "d0",
            Some(MethodOutcome {
                status: 200,
                payload: json!(1)
            }),
            t(12)
        ));
        j.device_started("d1", t(12));
        let err = DeviceJobError {
            code: "DeviceNotOnline".into(),
            description: "offline".into(),
        };
        assert!(j.device_retry("d1", err.clone(), t(13)));
        assert_eq!(j.statistics().pending_count, 2);
        j.device_started("d2", t(13));
        j.device_failed(
            "d2",
            DeviceJobError {
                code: "X".into(),
                description: "".into(),
            },
            t(14),
        );
        assert_stats(&j);
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.deadline(), t(70));
        j.expire(t(70));
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(j.end_time, Some(t(70)));
        assert_eq!(j.devices["d1"].error, Some(err));
        let s = j.statistics();
        assert_eq!((s.succeeded_count, s.failed_count), (1, 2));
        let resp = serde_json::to_value(j.response()).unwrap();
        assert_eq!(resp["deviceJobStatistics"]["succeededCount"], 1);
        assert_eq!(resp["status"], "completed");
    }

    /// Jobs stored `scheduled` without a selection (by versions that selected at the start)
    /// select their devices when they start; jobs that have one keep it.
    #[test]
    fn a_job_scheduled_without_a_selection_selects_at_the_start() {
        let mut r = req("tags.i < 2");
        r.start_time = Some(t(10));
        let mut j = JobState::new(r, t(0)).unwrap();
        j.status = JobStatus::Scheduled;
        assert!(j.needs_selection());
        j.start(&twins(), t(10));
        assert_eq!(j.devices.len(), 2);
        assert_eq!(j.selected_time, Some(t(10)));

        let mut r = req("tags.i < 2");
        r.start_time = Some(t(10));
        let mut j = JobState::new(r, t(0)).unwrap();
        assert!(j.defer(vec!["d0".into()], t(0)));
        j.start(&twins(), t(10));
        assert_eq!(j.devices.keys().collect::<Vec<_>>(), ["d0"]);
        assert_eq!(j.devices["d0"].status, DeviceJobStatus::Pending);
    }

    #[test]
    fn time_budget_counts_from_the_actual_start() {
        let mut r = req("*");
        r.start_time = Some(t(-100_000));
        let mut j = JobState::new(r, t(0)).unwrap();
        assert!(j.is_due(t(0)));
        j.start(&twins(), t(5));
        assert_eq!(j.deadline(), t(65));
    }

    /// Crashed the `hub_query` fuzz target: a huge `maxExecutionTimeInSeconds` (or a
    /// start time near the end of chrono's range) panicked in `deadline`, killing the job task.
    #[test]
    fn huge_time_budget_saturates_instead_of_panicking() {
        for secs in [u64::MAX, 100_000_000_000_000_000, 9_000_000_000_000_000] {
            let mut r = req("*");
            r.max_execution_time_in_seconds = Some(secs);
            let mut j = JobState::new(r, t(0)).unwrap();
            j.start(&twins(), t(0));
            assert_eq!(j.deadline(), DateTime::<Utc>::MAX_UTC);
        }
        let mut r = req("*");
        r.start_time = Some(DateTime::<Utc>::MAX_UTC);
        let j = JobState::new(r, t(0)).unwrap();
        assert_eq!(j.deadline(), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn cancel_and_empty_selection() {
        let mut j = JobState::new(req("*"), t(0)).unwrap();
        j.start(&twins(), t(0));
        j.device_started("d0", t(1));
        assert!(j.cancel(t(2)));
        assert!(j
            .devices
            .values()
            .all(|d| d.status == DeviceJobStatus::Canceled));
        assert!(
            !j.device_succeeded("d0", None, t(3)),
            "results after cancel are ignored"
        );
        assert!(!j.cancel(t(4)));
        assert_stats(&j);
        let mut j = JobState::new(req("deviceId = 'nobody'"), t(0)).unwrap();
        j.start(&twins(), t(0));
        assert_eq!(j.status, JobStatus::Completed);
    }

    #[test]
    fn twin_patch_keeps_tags_and_desired_only() {
        let mut r = req("*");
        r.job_type = JobType::ScheduleUpdateTwin;
        r.update_twin = Some(json!({"etag":"*","deviceId":null,"tags":{"Building":"43"},
            "properties":{"desired":{"Floor":3},"reported":{"x":1}}}));
        let j = JobState::new(r, t(0)).unwrap();
        assert_eq!(
            j.twin_patch(),
            json!({"tags":{"Building":"43"},"properties":{"desired":{"Floor":3}}})
        );
    }

    #[test]
    fn restart_fails_running_devices_as_outcome_unknown_instead_of_calling_them_again() {
        let mut j = JobState::new(req("*"), t(0)).unwrap();
        j.start(&twins(), t(0));
        assert!(j.device_started("d0", t(1)));
        assert!(j.device_succeeded("d0", None, t(2)));
        assert!(j.device_started("d1", t(3)));
        assert_eq!(j.interrupt(t(10)), vec!["d1".to_owned()]);
        let d1 = &j.devices["d1"];
        assert_eq!(d1.status, DeviceJobStatus::Failed);
        assert_eq!(d1.error.as_ref().unwrap().code, OUTCOME_UNKNOWN);
        assert_eq!(j.devices["d0"].status, DeviceJobStatus::Completed);
        assert_eq!(j.devices["d2"].status, DeviceJobStatus::Pending);
        assert_stats(&j);
        // Every device reached before the restart: the job is done.
        for id in ["d2", "d3"] {
            assert!(j.device_started(id, t(11)));
        }
        j.interrupt(t(12));
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(j.statistics().failed_count, 3);
    }

    #[test]
    fn restore_undoes_an_unrecorded_transition() {
        let mut j = JobState::new(req("deviceId = 'd0'"), t(0)).unwrap();
        j.start(&twins(), t(0));
        assert!(j.device_started("d0", t(1)));
        let saved = j.save(["d0"]);
        assert!(j.device_succeeded("d0", None, t(2)));
        assert_eq!(j.status, JobStatus::Completed);
        j.restore(saved);
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.end_time, None);
        assert_eq!(j.devices["d0"].status, DeviceJobStatus::Running);
    }
}
