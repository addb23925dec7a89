//! A dead door controller on a shared line, against an independent Modbus server (pymodbus,
//! over TCP and over RTU on a socat pty pair) with units switched off: the healthy doors'
//! methods are all answered in time, the dead door's are answered by the gateway itself (one
//! probe's 504, the rest refused at once), and no write reaches a controller after its caller
//! got the answer. Also: a method job over a line with dead units, and servers whose replies
//! do not carry what was asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::harness::{bounded, tcp_bus, Env, Service};
use crate::support::peers::{has_pymodbus, has_socat, pty_pair, pymodbus, PyServer, PyWrite};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One method call as the caller saw it.
#[derive(Debug, Clone)]
struct Call {
    door: String,
    http: u16,
    body: Value,
    /// Wall clock (Unix ms) when the caller had the answer.
    answered_ms: u64,
    took: Duration,
}

impl Call {
    /// The gateway's own status (the hub relays it in `status`); `None` when the hub
    /// answered by itself (its own timeout, or the door offline).
    fn gateway_status(&self) -> Option<i64> {
        (self.http == 200)
            .then(|| self.body["status"].as_i64())
            .flatten()
    }

    fn written(&self) -> &Value {
        &self.body["payload"]["written"]
    }
}

async fn call(svc: Service, door: String, after: Duration) -> Call {
    tokio::time::sleep(after).await;
    let started = tokio::time::Instant::now();
    // IoT Hub's smallest allowed response timeout: the gateway must answer within it.
    let (http, body) = svc.invoke_within(&door, "lockDoor", json!(null), 5).await;
    Call {
        door,
        http,
        body,
        answered_ms: now_ms(),
        took: started.elapsed(),
    }
}

/// The scenario: four doors on one line with `timeout = 1s`, `retries = 0`, unit 4
/// off; four calls to door 4 (one a second) and twenty to door 1 (one every 100 ms) at once.
async fn dead_unit_scenario(env: &mut Env, py: &PyServer, bus_line: String) {
    env.bus_toml = format!("[[bus]]\nname = \"tcp\"\n{bus_line}\ntimeout = \"1s\"\nretries = 0\n");
    let gw = env.gateway().await;
    let svc = env.service();
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let at = Duration::from_secs(i);
        tasks.push(tokio::spawn(call(svc.clone(), "door-4".into(), at)));
    }
    for i in 0..20u64 {
        let at = Duration::from_millis(100 * i);
        tasks.push(tokio::spawn(call(svc.clone(), "door-1".into(), at)));
    }
    let mut calls = Vec::new();
    for t in tasks {
        calls.push(bounded("method call", t).await.unwrap());
    }
    let door = |id: &str| calls.iter().filter(|c| c.door == id).collect::<Vec<_>>();
    let summary: Vec<(String, u16, Option<i64>, u128)> = calls
        .iter()
        .map(|c| {
            (
                c.door.clone(),
                c.http,
                c.gateway_status(),
                c.took.as_millis(),
            )
        })
        .collect();
    eprintln!("calls (door, http, gateway status, ms): {summary:?}");

    // Door 1 was healthy the whole time: every call done, none left to the hub's timeout.
    for c in door("door-1") {
        assert_eq!(c.gateway_status(), Some(200), "{c:?}");
        assert_eq!(c.body["payload"]["state"]["locked"], true, "{c:?}");
    }
    // Door 4: every call answered by the gateway itself, as a probe's 504 or a refusal.
    let dead = door("door-4");
    assert_eq!(dead.len(), 4);
    for c in &dead {
        match c.gateway_status() {
            Some(504) => {
                assert_eq!(
                    c.written(),
                    "unknown",
                    "a lost write may have landed: {c:?}"
                );
            }
            Some(503) => {
                assert_eq!(c.body["payload"]["code"], "UnitNotAnswering", "{c:?}");
                assert_eq!(c.body["payload"]["unit"], 4, "{c:?}");
                assert_eq!(c.written(), false, "{c:?}");
            }
            _ => panic!("door 4 must be answered by the gateway with 503 or 504: {c:?}"),
        }
    }
    assert_eq!(
        dead[0].gateway_status(),
        Some(504),
        "the first call is the probe"
    );
    assert!(
        dead.iter().any(|c| c.gateway_status() == Some(503)),
        "later calls are refused without using the line: {dead:?}"
    );

    // The refusals are counted, and cost the line nothing.
    let metrics = env.metrics.render();
    assert!(
        metrics.contains(
            "fieldgate_modbus_requests_total{bus=\"tcp\",function=\"write_single_coil\",result=\"refused\"}"
        ),
        "{metrics}"
    );

    // No write reached a controller after its caller had the answer: per unit, the i-th
    // write the server received precedes the i-th answer of a call that may have written.
    let writes = py.writes();
    for (unit, id) in [(1u8, "door-1"), (4, "door-4")] {
        let got: Vec<&PyWrite> = writes
            .iter()
            .filter(|w| w.unit == unit && w.function == 5 && w.addr == 0)
            .collect();
        let mut answers: Vec<u64> = door(id)
            .iter()
            .filter(|c| c.written() != &Value::Bool(false))
            .map(|c| c.answered_ms)
            .collect();
        answers.sort_unstable();
        assert_eq!(
            got.len(),
            answers.len(),
            "unit {unit}: {got:?} vs {answers:?}"
        );
        for (w, answered) in got.iter().zip(&answers) {
            assert!(
                w.at_ms <= *answered,
                "unit {unit}: a write arrived {} ms after its call was answered",
                w.at_ms - answered
            );
        }
    }
    // And nothing at all was written after the last answer.
    let last_answer = calls.iter().map(|c| c.answered_ms).max().unwrap();
    assert!(writes.iter().all(|w| w.at_ms <= last_answer), "{writes:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_dead_unit_on_a_pymodbus_tcp_line_never_delays_the_other_doors() {
    if !has_pymodbus() {
        return;
    }
    let py = pymodbus(&[
        "tcp",
        "127.0.0.1:0",
        "--units",
        "1,2,3,4",
        "--off",
        "4",
        "--log-writes",
    ])
    .await;
    let mut env = Env::start(4).await;
    let line = format!("tcp = \"{}\"", py.ready);
    dead_unit_scenario(&mut env, &py, line).await;
}

#[tokio::test]
async fn a_dead_unit_on_a_pymodbus_rtu_line_never_delays_the_other_doors() {
    if !has_pymodbus() || !has_socat() {
        return;
    }
    let pty = pty_pair().await;
    let py = pymodbus(&[
        "rtu",
        &pty.b,
        "19200",
        "--units",
        "1,2,3,4",
        "--off",
        "4",
        "--log-writes",
    ])
    .await;
    let mut env = Env::start(4).await;
    let line = format!("serial = \"{}\"\nbaud = 19200\nparity = \"none\"", pty.a);
    dead_unit_scenario(&mut env, &py, line).await;
}

#[tokio::test]
async fn a_method_job_over_a_line_with_dead_units_fails_only_them() {
    if !has_pymodbus() {
        return;
    }
    let py = pymodbus(&[
        "tcp",
        "127.0.0.1:0",
        "--units",
        "1,2,3,4,5,6,7,8",
        "--off",
        "3,6",
        "--log-writes",
    ])
    .await;
    let mut env = Env::start(8).await;
    env.bus_toml = tcp_bus(&py.ready, "timeout = \"1s\"\nretries = 0");
    for d in &env.doors {
        env.hub
            .hub
            .update_twin(&d.device_id, json!({"tags": {"building": "43"}}), None)
            .unwrap();
    }
    let gw = env.gateway().await;
    let svc = env.service();
    let (st, body) = svc
        .send(
            reqwest::Method::PUT,
            "/jobs/v2/lock-all",
            Some(json!({"jobId": "lock-all", "type": "scheduleDeviceMethod",
                "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": null,
                    "responseTimeoutInSeconds": 5, "connectTimeoutInSeconds": 5},
                "queryCondition": "tags.building = '43'", "startTime": null,
                "maxExecutionTimeInSeconds": 60})),
        )
        .await;
    assert!(st == 200, "{st} {body}");
    let job = bounded("job finished", async {
        loop {
            let (_, job) = svc
                .send(reqwest::Method::GET, "/jobs/v2/lock-all", None)
                .await;
            if ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or(""))
            {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    eprintln!("job: {job}");
    assert_eq!(job["deviceJobStatistics"]["deviceCount"], 8, "{job}");
    let state = env.hub.jobs.state("lock-all").unwrap();
    for d in &env.doors {
        let rec = &state.devices[&d.device_id];
        let answer = rec
            .outcome
            .as_ref()
            .and_then(|o| o.device_method_response.as_ref())
            .unwrap_or_else(|| panic!("{}: no answer from the gateway: {rec:?}", d.device_id));
        if [3, 6].contains(&d.unit) {
            assert!(
                [503, 504].contains(&answer.status),
                "{}: {answer:?}",
                d.device_id
            );
            assert_ne!(answer.payload["written"], true, "{answer:?}");
        } else {
            assert_eq!(answer.status, 200, "{}: {answer:?}", d.device_id);
        }
    }
    let healthy_writes = py
        .writes()
        .iter()
        .filter(|w| ![3, 6].contains(&w.unit))
        .count();
    assert_eq!(healthy_writes, 6, "each healthy door written once");
    gw.shutdown().await;
}

/// A server that answers a one-coil read with a valid frame of zero coils: no `false` may be
/// read into it, so no write of `false` is reported done (before: `unlockDoor` answered 200
/// with the door still locked).
#[tokio::test]
async fn a_read_back_without_the_coil_is_a_502_not_a_false() {
    if !has_pymodbus() {
        return;
    }
    let py = pymodbus(&["tcp", "127.0.0.1:0", "--bad", "zero-coils"]).await;
    let mut env = Env::start(2).await;
    env.bus_toml = tcp_bus(&py.ready, "timeout = \"500ms\"");
    let gw = env.gateway().await;
    let svc = env.service();
    let (http, body) = svc
        .invoke("door-1", "unlockDoor", json!({"seconds": 1}))
        .await;
    assert_eq!(http, 200, "{body}");
    assert_eq!(body["status"], 502, "{body}");
    assert_eq!(body["payload"]["code"], "BadReply", "{body}");
    assert!(
        body["payload"]["result"].is_null(),
        "nothing reported done: {body}"
    );
    // The write went out and was echoed; only its proof is missing.
    assert_eq!(body["payload"]["written"], true, "{body}");
    // And the poller never reports a coil it was not given.
    let twin = svc.twin("door-1").await;
    assert!(
        twin["properties"]["reported"]["locked"].is_null(),
        "{}",
        twin["properties"]["reported"]
    );
    gw.shutdown().await;
}

/// A server whose write echo names another address: the write is not reported applied.
#[tokio::test]
async fn a_write_echo_of_another_address_is_a_502_with_the_outcome_unknown() {
    if !has_pymodbus() {
        return;
    }
    let py = pymodbus(&["tcp", "127.0.0.1:0", "--bad", "echo"]).await;
    let mut env = Env::start(2).await;
    env.bus_toml = tcp_bus(&py.ready, "timeout = \"500ms\"");
    let gw = env.gateway().await;
    let svc = env.service();
    let (http, body) = svc.invoke("door-2", "lockDoor", json!(null)).await;
    assert_eq!(http, 200, "{body}");
    assert_eq!(body["status"], 502, "{body}");
    assert_eq!(body["payload"]["code"], "BadReply", "{body}");
    assert_eq!(body["payload"]["written"], "unknown", "{body}");
    gw.shutdown().await;
}
