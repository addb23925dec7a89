//! The gateway end to end: fieldhub over TLS, doorsim over Modbus TCP, the gateway
//! in between. Methods and desired patches go in through fieldhub's service REST API, as an
//! operator's back end sends them; what reaches the bus is checked in doorsim's write log.

use std::time::{Duration, Instant};

use fieldhub::doorsim::{Fault, Table};
use serde_json::json;

use crate::support::harness::{bounded, Env};

#[tokio::test]
async fn lock_door_writes_exactly_the_mapped_coil_of_the_right_unit() {
    let env = Env::start(3).await;
    env.sim.handle.set_coil(2, 0, false);
    let gw = env.gateway().await;
    let svc = env.service();

    let (status, body) = svc.invoke("door-2", "lockDoor", json!(null)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(
        body["payload"],
        json!({"result": "done", "state": {"locked": true}})
    );

    let writes = env.sim.handle.write_log();
    assert_eq!(
        writes.len(),
        1,
        "exactly one write reached the bus: {writes:?}"
    );
    let w = &writes[0];
    assert_eq!(
        (w.unit, w.table, w.addr, w.values.clone()),
        (2, Table::Coil, 0, vec![1])
    );
    assert!(env.sim.handle.coil(2, 0));

    // The poller reports the new state.
    svc.wait_reported("door-2", "reported locked", |r| r["locked"] == json!(true))
        .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_payload_and_unknown_method_never_reach_the_bus() {
    let env = Env::start(1).await;
    let gw = env.gateway().await;
    let svc = env.service();

    let (_, body) = svc
        .invoke("door-1", "unlockDoor", json!({"seconds": "five"}))
        .await;
    assert_eq!(body["status"], 400, "{body}");
    assert!(
        body["payload"]["error"]
            .as_str()
            .unwrap()
            .contains("seconds"),
        "{body}"
    );

    let (_, body) = svc
        .invoke("door-1", "unlockDoor", json!({"seconds": 600}))
        .await;
    assert_eq!(body["status"], 400, "{body}");

    let (_, body) = svc
        .invoke("door-1", "setMode", json!({"mode": "party"}))
        .await;
    assert_eq!(body["status"], 400, "{body}");
    assert!(
        body["payload"]["error"]
            .as_str()
            .unwrap()
            .contains("lockdown"),
        "names the allowed values: {body}"
    );

    let (_, body) = svc.invoke("door-1", "setMode", json!([1, 2])).await;
    assert_eq!(body["status"], 400, "{body}");

    let (_, body) = svc.invoke("door-1", "openSesame", json!({})).await;
    assert_eq!(body["status"], 404, "{body}");
    assert!(body["payload"]["methods"]
        .as_array()
        .unwrap()
        .contains(&json!("lockDoor")));

    assert!(
        env.sim.handle.write_log().is_empty(),
        "nothing written: {:?}",
        env.sim.handle.write_log()
    );

    // A valid call still works afterwards, with the payload's value.
    let (_, body) = svc
        .invoke("door-1", "setMode", json!({"mode": "lockdown"}))
        .await;
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(env.sim.handle.holding(1, 10), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn pulse_unlocks_then_locks_again() {
    let env = Env::start(1).await;
    let gw = env.gateway().await;
    let svc = env.service();
    let (_, body) = svc
        .invoke("door-1", "unlockDoor", json!({"seconds": 0.3}))
        .await;
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(body["payload"]["state"]["locked"], json!(false));
    // Restored by the bridge after the pulse: wait for the second write in the log.
    bounded("pulse restore", async {
        while env.sim.handle.write_log().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let log = env.sim.handle.write_log();
    assert_eq!(
        log.iter().map(|w| w.values[0]).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert!(env.sim.handle.coil(1, 0), "locked again");
    gw.shutdown().await;
}

#[tokio::test]
async fn desired_patch_becomes_register_writes_with_acks_and_out_of_range_is_refused() {
    let env = Env::start(2).await;
    let other_before = env.sim.handle.holding(2, 0);
    let gw = env.gateway().await;
    let svc = env.service();

    let twin = svc
        .set_desired(
            "door-1",
            json!({"Building": 43, "Floor": 3, "Colour": "blue"}),
        )
        .await;
    let v = twin["properties"]["desired"]["$version"].as_u64().unwrap();
    let reported = svc
        .wait_reported("door-1", "desired acks", |r| {
            r["Building"]["av"] == json!(v) && r["Floor"]["av"] == json!(v)
        })
        .await;
    assert_eq!(reported["Building"]["value"], 43);
    assert_eq!(reported["Building"]["ac"], 200);
    assert_eq!(reported["Floor"]["ac"], 200);
    assert_eq!(
        reported["Colour"]["ac"], 404,
        "unmapped desired is acknowledged as ignored: {reported}"
    );
    assert!(
        reported["Colour"].get("value").is_none(),
        "an unmapped property has no current value to report: {reported}"
    );
    assert_eq!(env.sim.handle.holding(1, 0), 43);
    assert_eq!(env.sim.handle.holding(1, 1), 3);
    assert_eq!(
        env.sim.handle.holding(2, 0),
        other_before,
        "the other door is untouched"
    );
    let writes_before = env.sim.handle.write_log().len();

    let twin = svc
        .set_desired("door-1", json!({"Building": 5000, "Floor": -2}))
        .await;
    let v2 = twin["properties"]["desired"]["$version"].as_u64().unwrap();
    let reported = svc
        .wait_reported("door-1", "out-of-range ack", |r| {
            r["Building"]["av"] == json!(v2)
        })
        .await;
    assert_eq!(reported["Building"]["ac"], 400, "{reported}");
    // Plug and Play: a refused value is acknowledged with the door's current value.
    assert_eq!(reported["Building"]["value"], 43, "{reported}");
    assert!(
        reported["Building"]["ad"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{reported}"
    );
    assert_eq!(
        reported["Floor"]["ac"], 200,
        "valid members of the patch still apply"
    );
    assert_eq!(
        env.sim.handle.holding(1, 0),
        43,
        "out-of-range value not written"
    );
    assert_eq!(env.sim.handle.holding(1, 1) as i16, -2);
    let new_writes: Vec<_> = env
        .sim
        .handle
        .write_log()
        .into_iter()
        .skip(writes_before)
        .collect();
    assert!(
        new_writes.iter().all(|w| w.addr == 1),
        "only Floor was written: {new_writes:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn desired_changes_made_while_stopped_are_applied_at_start() {
    let env = Env::start(2).await;
    let gw = env.gateway().await;
    gw.shutdown().await;
    let svc = env.service();
    svc.set_desired("door-1", json!({"Building": 7})).await;
    svc.set_desired("door-2", json!({"Floor": 9})).await;
    assert_ne!(
        env.sim.handle.holding(1, 0),
        7,
        "not applied while the gateway is stopped"
    );

    let gw = env.gateway().await;
    svc.wait_reported("door-1", "reconciled", |r| {
        r["Building"]["ac"] == json!(200)
    })
    .await;
    svc.wait_reported("door-2", "reconciled", |r| r["Floor"]["ac"] == json!(200))
        .await;
    assert_eq!(env.sim.handle.holding(1, 0), 7);
    assert_eq!(env.sim.handle.holding(2, 1), 9);
    gw.shutdown().await;
}

#[tokio::test]
async fn silent_unit_answers_504_in_time_while_other_doors_keep_working() {
    let env = Env::start(3).await;
    let gw = env.gateway().await;
    let svc = env.service();
    env.sim.handle.set_fault(2, Fault::NoReply);

    let started = Instant::now();
    let (dead, alive) = tokio::join!(
        svc.invoke("door-2", "lockDoor", json!(null)),
        svc.invoke("door-3", "lockDoor", json!(null)),
    );
    assert_eq!(dead.1["status"], 504, "{:?}", dead);
    assert_eq!(dead.1["payload"]["code"], "BusTimeout");
    // Well inside the hub's 20 s method timeout: the gateway answered, the hub did not time out.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(alive.1["status"], 200, "{:?}", alive);
    let (_, again) = svc.invoke("door-1", "lockDoor", json!(null)).await;
    assert_eq!(again["status"], 200, "{again}");

    // Exceptions are named and answered 502.
    env.sim.handle.set_fault(
        3,
        Fault::Exception(fieldhub::doorsim::ExceptionCode::IllegalDataAddress),
    );
    let (_, exc) = svc.invoke("door-3", "lockDoor", json!(null)).await;
    assert_eq!(exc["status"], 502, "{exc}");
    assert!(
        exc["payload"]["code"]
            .as_str()
            .unwrap()
            .contains("IllegalDataAddress"),
        "{exc}"
    );

    let text = env.metrics.render();
    assert!(
        text.contains("fieldgate_methods_total{method=\"lockDoor\",status=\"504\"} 1"),
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn reload_adds_and_removes_doors_without_touching_the_others() {
    let env = Env::start(3).await;
    let mut gw = env.gateway().await;
    let mut cfg = env.config();
    let kept = cfg
        .doors
        .iter()
        .find(|d| d.device_id == "door-1")
        .cloned()
        .unwrap();
    cfg.doors.retain(|d| d.device_id != "door-3");
    let link1 = gw.link("door-1").unwrap().clone();
    let summary = gw.reload(&cfg).await.unwrap();
    assert_eq!(summary.removed, vec!["door-3".to_string()]);
    assert_eq!(summary.unchanged, 2);
    assert!(gw.link("door-3").is_none());
    assert!(
        env.hub
            .hub
            .wait_disconnected("door-3", crate::support::harness::LIMIT)
            .await
    );
    // door-1's link was not restarted: the same handle is still connected.
    assert_eq!(link1.state(), fieldgate::link::LinkState::Connected);
    assert_eq!(cfg.door("door-1"), Some(&kept));
    let (_, body) = env
        .service()
        .invoke("door-1", "lockDoor", json!(null))
        .await;
    assert_eq!(body["status"], 200);
    gw.shutdown().await;
}

/// `promtool check metrics` (Prometheus's own linter) accepts the exposition after real
/// traffic: names, units, `_total` counters, help texts. Skipped when promtool is absent
/// (.ci/run installs it).
#[tokio::test]
async fn metrics_pass_promtool() {
    let Some(promtool) = ["promtool", "/opt/prom/usr/bin/promtool"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok()
        })
    else {
        eprintln!("SKIPPED: promtool not found (CI: apt-get download prometheus; dpkg -x)");
        return;
    };
    let env = Env::start(2).await;
    let gw = env.gateway().await;
    let svc = env.service();
    let (_, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
    assert_eq!(body["status"], 200);
    svc.set_desired("door-2", json!({"Building": 9})).await;
    svc.wait_reported("door-2", "ack", |r| r["Building"]["ac"] == json!(200))
        .await;
    let text = env.metrics.render();
    assert!(text.contains("fieldgate_modbus_requests_total"), "{text}");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.shutdown().await;
}

/// Two gateways given the same device map knock each other off (the hub keeps only the newest
/// connection of a device id): each says so in its metrics (and log) instead of flapping
/// silently.
#[tokio::test]
async fn two_gateways_with_the_same_doors_notice_they_replace_each_other() {
    let env = crate::support::harness::Env::start(1).await;
    let a = fieldgate::gateway::Gateway::start(&env.config(), std::sync::Arc::clone(&env.metrics))
        .unwrap();
    let b_metrics = std::sync::Arc::new(fieldgate::metrics::Metrics::new());
    let b = fieldgate::gateway::Gateway::start(&env.config(), std::sync::Arc::clone(&b_metrics))
        .unwrap();
    let count =
        |m: &fieldgate::metrics::Metrics| m.link_short_lived.with_label_values(&["door-1"]).get();
    crate::support::harness::bounded("short-lived connections counted", async {
        while count(&env.metrics) + count(&b_metrics) < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A poller skips decoding a cycle whose replies equal the last settled ones (a door at
/// rest): a change after any number of quiet cycles, a change back to an earlier value, and
/// a drift that crosses the deadband only in its second step must all still be reported.
#[tokio::test]
async fn a_door_at_rest_reports_each_change_a_change_back_and_a_drift_past_its_deadband() {
    let env = Env::start(1).await;
    let gw = env.gateway().await;
    let svc = env.service();
    let sim = &env.sim.handle;
    sim.set_input(1, 0, 0);
    sim.set_input(1, 1, 1200);
    svc.wait_reported("door-1", "closed at 12.00 V", |r| {
        r["doorState"] == json!("closed") && r["batteryVoltage"].as_f64() == Some(12.0)
    })
    .await;
    // Several identical cycles before each change: the poller has settled on its replies.
    let quiet_cycles = || async {
        let seen = sim.total_requests();
        assert!(
            sim.wait_requests(seen + 6, Duration::from_secs(10)).await,
            "the door keeps being polled"
        );
    };
    for (value, name) in [(2, "forced"), (0, "closed"), (2, "forced"), (1, "open")] {
        quiet_cycles().await;
        sim.set_input(1, 0, value);
        svc.wait_reported("door-1", name, |r| r["doorState"] == json!(name))
            .await;
    }
    // 0.03 V is inside the 0.05 V deadband: not reported, and the cycles settle on it.
    quiet_cycles().await;
    sim.set_input(1, 1, 1203);
    quiet_cycles().await;
    quiet_cycles().await;
    let twin = svc.twin("door-1").await;
    assert_eq!(
        twin["properties"]["reported"]["batteryVoltage"].as_f64(),
        Some(12.0),
        "a drift inside the deadband is not reported"
    );
    // Another 0.03 V: 0.06 V from what was reported, past the deadband.
    sim.set_input(1, 1, 1206);
    svc.wait_reported("door-1", "12.06 V", |r| {
        r["batteryVoltage"]
            .as_f64()
            .is_some_and(|v| (v - 12.06).abs() < 1e-9)
    })
    .await;
    gw.shutdown().await;
}
