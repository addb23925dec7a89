//! fieldhub's query language: random text as a full query (`SELECT … FROM … WHERE …`), as a
//! bare condition, and as a job's `queryCondition`; text that is a JSON object is also tried
//! as a whole `PUT /jobs/v2/{id}` body.
//!
//! Checks: no panic (including deep nesting: no stack overflow); an error's position lies
//! within the text; parsed queries run over a few twins and device-job records; a job created
//! from the text validates, starts over the twins, selects exactly what its condition
//! matches, and its deadline, expiry, statistics and response can be computed.
#![no_main]

use std::sync::OnceLock;

use chrono::{TimeZone as _, Utc};
use fieldhub::jobs::{JobRequest, JobState, JobType};
use fieldhub::query::{parse_condition, parse_query, QueryError};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn docs() -> &'static Vec<Value> {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        vec![
            json!({"deviceId": "door-01", "status": "enabled", "connectionState": "Connected",
                "tags": {"building": "43", "floor": 2, "zone": ["a", "b"]},
                "properties": {"desired": {"mode": "normal", "$version": 3},
                               "reported": {"door": "closed", "temp": 21.5, "$version": 9}}}),
            json!({"deviceId": "door-02", "status": "disabled", "tags": {"building": "44"},
                "properties": {"desired": {}, "reported": {"door": null}}}),
            json!({"deviceId": "door-03", "tags": {}, "properties": {}}),
            json!({"deviceId": "door-01", "jobId": "j1", "jobType": "scheduleDeviceMethod",
                "status": "completed", "outcome": {"deviceMethodResponse": {"status": 200}}}),
            json!({"noId": true}),
        ]
    })
}

fn check_position(e: &QueryError, text: &str) {
    assert!(
        e.position <= text.chars().count(),
        "error position {} beyond the text ({} chars): {e}",
        e.position,
        text.chars().count()
    );
}

fn run_job(req: JobRequest) {
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
    let cond = req.query_condition.clone();
    let Ok(mut job) = JobState::new(req, now) else {
        return;
    };
    let condition = parse_condition(cond.as_deref().unwrap_or_default()).expect("validated");
    let _ = job.defer(now);
    let _ = job.is_due(now);
    let _ = job.deadline();
    job.start(docs(), now);
    for d in docs() {
        if let Some(id) = d.get("deviceId").and_then(Value::as_str) {
            if condition.matches(d) {
                assert!(
                    job.devices.contains_key(id),
                    "{id} matched but was not selected"
                );
            }
        }
    }
    let stats = job.statistics();
    assert_eq!(
        stats.device_count,
        stats.failed_count + stats.succeeded_count + stats.running_count + stats.pending_count
    );
    let _ = job.deadline();
    job.expire(job.deadline());
    let _ = serde_json::to_string(&job.response()).expect("response serializes");
    let _ = job.twin_patch();
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    match parse_query(text) {
        Ok(q) => {
            let r = q.execute(docs().iter());
            let _ = serde_json::to_string(&r.items).expect("items serialize");
        }
        Err(e) => check_position(&e, text),
    }
    match parse_condition(text) {
        Ok(c) => {
            for d in docs() {
                let _ = c.matches(d);
            }
        }
        Err(e) => check_position(&e, text),
    }

    if text.trim_start().starts_with('{') {
        if let Ok(mut req) = serde_json::from_str::<JobRequest>(text) {
            if req.job_id.is_empty() {
                req.job_id = "fuzz".into();
            }
            run_job(req);
        }
    } else {
        for job_type in [JobType::ScheduleDeviceMethod, JobType::ScheduleUpdateTwin] {
            let req: JobRequest = serde_json::from_value(json!({
                "jobId": "fuzz",
                "type": job_type,
                "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}},
                "updateTwin": {"properties": {"desired": {"mode": "lockdown"}}},
                "queryCondition": text,
            }))
            .expect("request");
            run_job(req);
        }
    }
});
