//! Job argument → request building, and the job commands end to end against the scripted
//! hub (`testhub`): progress, summaries, JSON, exit statuses.

use std::sync::Arc;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::ctl::cli::{Cli, Command};
use crate::ctl::output::{Console, SharedBuf};
use crate::service::testhub::{client, header, mock, Mock, Script, T};

fn job_args(argv: &[&str]) -> JobCommand {
    let mut full = vec!["fieldctl", "job"];
    full.extend_from_slice(argv);
    match Cli::try_parse_from(full).unwrap().command {
        Command::Job(j) => j,
        _ => unreachable!(),
    }
}

fn body(req: &JobRequest) -> Value {
    serde_json::to_value(req).unwrap()
}

#[test]
fn method_job_from_arguments() {
    let JobCommand::Method(a) = job_args(&[
        "method",
        "--query",
        "tags.building = '43'",
        "--method",
        "lockDoor",
        "--payload",
        r#"{"seconds":5}"#,
        "--start",
        "2030-01-01T10:00:00+01:00",
        "--max-time",
        "10m",
        "--response-timeout",
        "20s",
        "--connect-timeout",
        "1m",
        "--id",
        "lock-43",
    ]) else {
        unreachable!()
    };
    assert_eq!(
        body(&method_job_request(&a).unwrap()),
        json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
            "cloudToDeviceMethod":{"methodName":"lockDoor","payload":{"seconds":5},
                "responseTimeoutInSeconds":20,"connectTimeoutInSeconds":60},
            "queryCondition":"tags.building = '43'",
            "startTime":"2030-01-01T09:00:00.000Z","maxExecutionTimeInSeconds":600})
    );
}

#[test]
fn method_job_defaults_and_errors() {
    let JobCommand::Method(a) = job_args(&["method", "--query", "deviceId = 'd'", "--method", "m"])
    else {
        unreachable!()
    };
    let req = method_job_request(&a).unwrap();
    let b = body(&req);
    assert_eq!(b["cloudToDeviceMethod"]["payload"], Value::Null);
    assert_eq!(b["maxExecutionTimeInSeconds"], 3600);
    assert!(req.job_id.starts_with("fieldctl-"));
    let start = crate::service::model::parse_time(&req.start_time).unwrap();
    assert!((Utc::now() - start).num_seconds().abs() < 5);

    let JobCommand::Method(a) = job_args(&[
        "method",
        "--query",
        "q",
        "--method",
        "m",
        "--payload",
        "{not json",
    ]) else {
        unreachable!()
    };
    let e = method_job_request(&a).unwrap_err();
    assert!(
        e.to_string().starts_with("--payload is not valid JSON"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);

    let JobCommand::Method(a) = job_args(&[
        "method",
        "--query",
        "q",
        "--method",
        "m",
        "--response-timeout",
        "10m",
    ]) else {
        unreachable!()
    };
    assert!(method_job_request(&a).is_err());
    let JobCommand::Method(a) =
        job_args(&["method", "--query", "q", "--method", "m", "--id", "bad id"])
    else {
        unreachable!()
    };
    assert!(method_job_request(&a)
        .unwrap_err()
        .to_string()
        .contains("job id 'bad id'"));
}

#[test]
fn twin_job_from_arguments() {
    let JobCommand::Twin(a) = job_args(&[
        "twin",
        "--query",
        "tags.building = '43'",
        "--desired",
        "Building=43",
        "--desired",
        "Floor=3",
        "--tag",
        "site.zone=B",
        "--patch",
        r#"{"tags":{"owner":"ops"},"properties":{"desired":{"Floor":2}}}"#,
        "--start",
        "2030-01-01T00:00:00Z",
        "--max-time",
        "2m",
        "--id",
        "floor-3",
    ]) else {
        unreachable!()
    };
    assert_eq!(
        body(&twin_job_request(&a).unwrap()),
        json!({"jobId":"floor-3","type":"scheduleUpdateTwin",
            "updateTwin":{"etag":"*","tags":{"owner":"ops","site":{"zone":"B"}},
                "properties":{"desired":{"Floor":3,"Building":43}}},
            "queryCondition":"tags.building = '43'",
            "startTime":"2030-01-01T00:00:00.000Z","maxExecutionTimeInSeconds":120})
    );
}

#[test]
fn twin_job_errors() {
    let JobCommand::Twin(a) = job_args(&["twin", "--query", "q"]) else {
        unreachable!()
    };
    assert!(twin_job_request(&a)
        .unwrap_err()
        .to_string()
        .contains("needs something to set"));
    for (patch, expect) in [
        ("[1]", "must be a JSON object"),
        (r#"{"tag":{}}"#, "not \"tag\""),
        (
            r#"{"properties":{"reported":{}}}"#,
            "not properties.reported",
        ),
        (r#"{"tags":3}"#, "\"tags\" must be an object"),
    ] {
        let JobCommand::Twin(a) = job_args(&["twin", "--query", "q", "--patch", patch]) else {
            unreachable!()
        };
        let e = twin_job_request(&a).unwrap_err().to_string();
        assert!(e.contains(expect), "{patch}: {e}");
    }
}

// ---- whole commands through run_with_client ----

struct Outcome3 {
    code: i32,
    out: String,
    err: String,
}

async fn cmd(m: &Mock, argv: &[&str]) -> Outcome3 {
    let mut full = vec!["fieldctl"];
    full.extend_from_slice(argv);
    let cli = Cli::try_parse_from(full).unwrap();
    let mut out = Vec::new();
    let err = SharedBuf::default();
    let code = tokio::time::timeout(
        T,
        crate::ctl::run_with_client(
            client(m),
            cli.command,
            cli.global.json,
            &mut out,
            Console::new(err.clone()),
        ),
    )
    .await
    .unwrap();
    Outcome3 {
        code,
        out: String::from_utf8(out).unwrap(),
        err: err.contents(),
    }
}

/// A hub with a completed method job `lock-43` on three doors (door-07 offline) and a job
/// `running-1` that never ends.
fn job_hub() -> Script {
    Arc::new(|s, _| {
        let stats = |ok: u64, failed: u64, running: u64| json!({"deviceCount":3,"succeededCount":ok,"failedCount":failed,"runningCount":running,"pendingCount":3-ok-failed-running});
        match (s.method.as_str(), s.path.as_str()) {
            ("POST", "/devices/query") if s.body.contains("devices.jobs") => (
                200,
                vec![],
                json!([
                    {"deviceId":"door-01","jobId":"lock-43","status":"completed",
                     "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
                    {"deviceId":"door-02","jobId":"lock-43","status":"completed",
                     "outcome":{"deviceMethodResponse":{"status":200,"payload":{"locked":true}}}},
                    {"deviceId":"door-07","jobId":"lock-43","status":"failed",
                     "error":{"code":"DeviceNotOnline","description":"Timed out waiting for device to connect."}}
                ]),
            ),
            ("POST", "/devices/query") if s.body.contains("((") => (
                400,
                vec![("iothub-errorcode", "ArgumentInvalid".into())],
                json!({"Message":"ErrorCode:ArgumentInvalid;Syntax error at position 29: unexpected '('"}),
            ),
            ("POST", "/devices/query") => (
                200,
                vec![],
                json!([{"deviceId":"door-01","tags":{"building":"43"}}]),
            ),
            ("PUT", "/jobs/v2/lock-43") => (
                200,
                vec![],
                json!({"jobId":"lock-43","type":"scheduleDeviceMethod","status":"queued"}),
            ),
            ("GET", "/jobs/v2/lock-43") => (
                200,
                vec![],
                json!({"jobId":"lock-43","type":"scheduleDeviceMethod",
                "status":"completed","startTime":"2030-01-01T00:00:00Z","maxExecutionTimeInSeconds":60,
                "deviceJobStatistics": stats(2, 1, 0)}),
            ),
            ("GET", "/jobs/v2/running-1") => (
                200,
                vec![],
                json!({"jobId":"running-1","type":"scheduleDeviceMethod",
                "status":"running","deviceJobStatistics": stats(1, 0, 2)}),
            ),
            _ => (
                404,
                vec![("iothub-errorcode", "JobNotFound".into())],
                json!({"Message":"ErrorCode:JobNotFound;not found"}),
            ),
        }
    })
}

#[tokio::test]
async fn method_job_wait_reports_failed_devices_and_exits_1() {
    let m = mock(job_hub()).await;
    let r = cmd(
        &m,
        &[
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--payload",
            "{}",
            "--id",
            "lock-43",
            "--wait",
            "--poll-interval",
            "50ms",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}", r = (&r.out, &r.err));
    assert_eq!(
        r.out,
        "job lock-43 completed: 3 devices, 2 succeeded, 1 failed\n\
         failed devices:\n\
         DEVICE   ERROR\n\
         door-07  DeviceNotOnline: Timed out waiting for device to connect.\n"
    );
    assert!(
        r.err.contains(
            "job lock-43 completed: 3/3 done (2 succeeded, 1 failed, 0 running, 0 pending)"
        ),
        "{}",
        r.err
    );
    let seen = m.seen();
    // Probe the condition, create, poll, fetch device results.
    let calls: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /devices/query",
            "PUT /jobs/v2/lock-43",
            "GET /jobs/v2/lock-43",
            "POST /devices/query"
        ]
    );
    assert!(seen[0]
        .body
        .contains("SELECT * FROM devices WHERE tags.building = '43'"));
    assert_eq!(header(&seen[0], "x-ms-max-item-count"), Some("1"));
    let put: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(put["type"], "scheduleDeviceMethod");
    assert_eq!(put["cloudToDeviceMethod"]["methodName"], "lockDoor");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[3].body).unwrap()["query"],
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'lock-43'"
    );
}

#[tokio::test]
async fn job_show_json_matches_job_devices() {
    let m = mock(job_hub()).await;
    let show = cmd(&m, &["--json", "job", "show", "lock-43"]).await;
    assert_eq!(show.code, 1);
    let doc: Value = serde_json::from_str(&show.out).unwrap();
    assert_eq!(doc["job"]["status"], "completed");
    assert_eq!(
        doc["failedDevices"],
        json!([{"deviceId":"door-07","error":"DeviceNotOnline: Timed out waiting for device to connect."}])
    );
    let devices = cmd(&m, &["--json", "job", "devices", "lock-43"]).await;
    assert_eq!(devices.code, 0);
    let list: Value = serde_json::from_str(&devices.out).unwrap();
    assert_eq!(doc["devices"], list);
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_2() {
    let m = mock(job_hub()).await;
    let r = cmd(&m, &["job", "show", "nope"]).await;
    assert_eq!(
        (r.code, r.err.as_str(), r.out.as_str()),
        (2, "error: job 'nope' not found on the hub\n", "")
    );

    let r = cmd(
        &m,
        &["devices", "list", "--query", "tags.building = '43' AND (("],
    )
    .await;
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err,
        "error: invalid query `tags.building = '43' AND ((`: hub answered 400 ArgumentInvalid: Syntax error at position 29: unexpected '('\n"
    );

    let before = m.seen().len();
    let r = cmd(
        &m,
        &[
            "job",
            "method",
            "--query",
            "q",
            "--method",
            "m",
            "--payload",
            "{nope",
        ],
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(
        r.err.starts_with(
            "error: --payload is not valid JSON: key must be a string at line 1 column 2"
        ),
        "{}",
        r.err
    );
    assert_eq!(r.err.lines().count(), 1);
    assert_eq!(
        m.seen().len(),
        before,
        "a request was sent despite the bad payload"
    );
}

#[tokio::test]
async fn wait_timeout_exits_1() {
    let m = mock(job_hub()).await;
    let r = cmd(
        &m,
        &[
            "job",
            "show",
            "running-1",
            "--watch",
            "--wait-timeout",
            "100ms",
            "--poll-interval",
            "40ms",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.err);
    assert!(
        r.err.contains("gave up waiting for job running-1"),
        "{}",
        r.err
    );
    // The progress line is printed once even though it was polled several times.
    assert_eq!(
        r.err.matches("job running-1 running: 1/3 done").count(),
        1,
        "{}",
        r.err
    );
}

#[tokio::test]
async fn watching_survives_a_hub_blip() {
    let m = mock(Arc::new(|s, n| match (s.method.as_str(), n) {
        ("GET", 0) => (200, vec![], json!({"jobId":"j","type":"scheduleUpdateTwin","status":"running",
            "deviceJobStatistics":{"deviceCount":1,"succeededCount":0,"failedCount":0,"runningCount":1,"pendingCount":0}})),
        ("GET", 1) => (503, vec![("iothub-errorcode", "ServiceUnavailable".into())], json!({"Message":"ErrorCode:ServiceUnavailable;busy"})),
        ("GET", _) => (200, vec![], json!({"jobId":"j","type":"scheduleUpdateTwin","status":"completed",
            "deviceJobStatistics":{"deviceCount":1,"succeededCount":1,"failedCount":0,"runningCount":0,"pendingCount":0}})),
        _ => (200, vec![], json!([{"deviceId":"door-01","jobId":"j","status":"completed"}])),
    }))
    .await;
    let r = cmd(
        &m,
        &["job", "show", "j", "--watch", "--poll-interval", "10ms"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains(
            "lost contact with the hub (hub answered 503 ServiceUnavailable: busy); trying again"
        ),
        "{}",
        r.err
    );
    assert_eq!(r.out, "job j completed: 1 devices, 1 succeeded, 0 failed\n");
}

#[tokio::test]
async fn watching_gives_up_when_the_hub_stays_away() {
    let m = mock(Arc::new(|s, n| match (s.method.as_str(), n) {
        ("GET", 0) => (
            200,
            vec![],
            json!({"jobId":"j","type":"scheduleUpdateTwin","status":"running"}),
        ),
        _ => (500, vec![], json!({"Message":"ErrorCode:ServerError;down"})),
    }))
    .await;
    let r = cmd(
        &m,
        &["job", "show", "j", "--watch", "--poll-interval", "10ms"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.err);
    assert_eq!(r.err.matches("lost contact").count(), 4, "{}", r.err);
    assert!(
        r.err
            .ends_with("error: hub answered 500 ServerError: down\n"),
        "{}",
        r.err
    );
}
