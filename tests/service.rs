//! The `fieldgate` binary as systemd runs it: `run` against fieldhub and doorsim, SIGHUP
//! reloads (an invalid file is refused and the running config kept), SIGTERM stops it
//! cleanly, and at TRACE level its logs never contain a key or a token. `check` reports
//! config errors with file:line:column.

use std::process::Stdio;

use serde_json::json;
use tokio::process::Command;

use crate::support::harness::{bounded, Env, LIMIT};

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test]
async fn service_runs_reloads_stops_and_never_logs_keys() {
    let env = Env::start(2).await;
    let config = env.write_config();
    let log_path = env.dir.path().join("fieldgate.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["--log", "trace", "run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for d in &env.doors {
        assert!(
            env.hub.hub.wait_connected(&d.device_id, LIMIT).await,
            "{} connected",
            d.device_id
        );
    }
    let svc = env.service();
    bounded("method answered", async {
        // The link subscribes before it reports connected; retry the first call until the
        // hub has seen the subscription (DeviceNotOnline until then).
        loop {
            let (status, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
            if status == 200 {
                assert_eq!(body["status"], 200, "{body}");
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    svc.set_desired("door-2", json!({"Building": 12})).await;
    svc.wait_reported("door-2", "desired ack", |r| {
        r["Building"]["ac"] == json!(200)
    })
    .await;

    // An invalid config on SIGHUP is refused; the doors keep working.
    std::fs::write(&config, "[hub]\nhostname = 5\n").unwrap();
    signal(pid, "-HUP");
    bounded("reload refused in the log", async {
        while !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("config reload refused")
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let (_, body) = svc.invoke("door-2", "lockDoor", json!(null)).await;
    assert_eq!(
        body["status"], 200,
        "still serving after a refused reload: {body}"
    );

    signal(pid, "-TERM");
    let status = bounded("exit after SIGTERM", child.wait()).await.unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!env.hub.hub.is_connected("door-1"));

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("fieldgate running"), "the log was captured");
    for d in &env.doors {
        assert!(
            !log.contains(&d.key),
            "key of {} found in the log",
            d.device_id
        );
    }
    assert!(
        !log.contains("SharedAccessSignature"),
        "a SAS token found in the log"
    );
    assert!(!log.contains("sig="), "a SAS signature found in the log");
}

#[test]
fn check_reports_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[hub]\nhostname = \"h\"\n\n[[bus]]\nname = \"b\"\ntcp = \"127.0.0.1:502\"\ntimeout = \"soon\"\n\n[[door]]\ndevice_id = \"d\"\nbus = \"nope\"\nunit = 1\nprofile = \"p\"\nkey = \"a2V5\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!("{file}:7:")),
        "timeout error at line 7: {err}"
    );
    assert!(err.contains("bus[0].timeout"), "{err}");
    assert!(
        err.contains(&format!("{file}:11:")),
        "unknown bus at line 11: {err}"
    );

    let good = std::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("OK"));
}

/// The metrics address the service logged at start (`metrics=http://…/metrics`).
async fn metrics_addr(log_path: &std::path::Path) -> String {
    bounded("the service's start line", async {
        loop {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(rest) = log.split("metrics=http://").nth(1) {
                if let Some(addr) = rest.split("/metrics").next() {
                    return addr.to_string();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_bus_down_at_start_never_holds_back_readiness_or_the_other_bus() {
    let mut env = Env::start(2).await;
    // door-1 on doorsim; door-2 on a Modbus TCP server that refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let good = env.bus_toml.clone();
    env.bus_toml =
        format!("{good}\n[[bus]]\nname = \"down\"\ntcp = \"{dead_addr}\"\ntimeout = \"300ms\"\n");
    let text = env
        .config_text()
        .replacen("bus = \"tcp\"\nunit = 2", "bus = \"down\"\nunit = 2", 1);
    let config = env.dir.path().join("fieldgate.toml");
    std::fs::write(&config, text).unwrap();
    let notify_path = env.dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let log_path = env.dir.path().join("fieldgate.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    // systemd hears READY=1 although one bus is down.
    bounded("READY=1", async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = notify.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.lines().any(|l| l == "READY=1") {
                return;
            }
        }
    })
    .await;
    let addr = metrics_addr(&log_path).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let r: serde_json::Value = res.json().await.unwrap();
    assert_eq!(r["degraded"], true, "{r}");
    let down = r["buses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "down")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(down["state"], "down", "{r}");
    assert_eq!(down["doors"], 1, "{r}");
    assert!(
        down["transport"]
            .as_str()
            .unwrap()
            .contains(&dead_addr.to_string()),
        "{r}"
    );
    assert!(down["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("fieldgate_ready 1"), "{metrics}");
    assert!(metrics.contains("fieldgate_degraded 1"), "{metrics}");

    // The healthy bus serves its door; the down bus's door answers 503 at once.
    let svc = env.service();
    bounded("door-1 answers", async {
        loop {
            let (status, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
            if status == 200 {
                assert_eq!(body["status"], 200, "{body}");
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (_, body) = svc.invoke("door-2", "lockDoor", json!(null)).await;
    assert_eq!(body["status"], 503, "{body}");
    assert_eq!(body["payload"]["written"], false, "{body}");

    // A new metrics address on SIGHUP cannot move the listener: the log says it takes a
    // restart instead of ignoring it silently.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:9\"");
    std::fs::write(&config, text).unwrap();
    signal(pid, "-HUP");
    bounded("the reload's note on [metrics] listen", async {
        while !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("takes effect at the next restart")
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    signal(pid, "-TERM");
    let status = bounded("exit after SIGTERM", child.wait()).await.unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    // The journal gets plain text: no terminal escape codes when stderr is not a terminal.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    assert!(log.contains("degraded"), "{log}");
    assert!(
        log.contains(&dead_addr.to_string()),
        "the log names the address:\n{log}"
    );
    let failed = log
        .lines()
        .find(|l| l.contains("bus connection failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failed.contains("door-2"),
        "names the door it concerns: {failed}"
    );
}

/// 200 doors the hub refuses (wrong keys): the journal gets the failure once in full and
/// then a line an interval summing it up, not a line per door per retry.
#[tokio::test]
async fn a_hub_refusing_every_door_is_logged_once_and_then_summed_up() {
    let mut env = Env::start(200).await;
    for d in &mut env.doors {
        // A valid base64 key the hub does not know.
        d.key = "d3Jvbmcta2V5LXdyb25nLWtleQ==".into();
    }
    let text = env
        .config_text()
        .replace(
            "reconnect_backoff_min = \"100ms\"",
            "reconnect_backoff_min = \"2s\"",
        )
        .replace(
            "reconnect_backoff_max = \"1s\"",
            "reconnect_backoff_max = \"4s\"",
        );
    let config = env.dir.path().join("fieldgate.toml");
    std::fs::write(&config, text).unwrap();
    let log_path = env.dir.path().join("fieldgate.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let log = bounded("a summary line", async {
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("door links down") {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    signal(pid, "-TERM");
    bounded("exit after SIGTERM", child.wait()).await.unwrap();
    let per_door = log.lines().filter(|l| l.contains("door link down")).count();
    assert!(
        per_door <= 3,
        "{per_door} per-door lines for one failure of 200 doors:\n{log}"
    );
    let summary = log.lines().find(|l| l.contains("door links down")).unwrap();
    assert!(summary.contains("times since the last line"), "{summary}");
}

/// Paced links take time to attempt (1,000 doors at 10 connections/s: 100 s, beyond
/// systemd's default start timeout): while attempts progress the service asks systemd for
/// more time, and READY=1 follows once every link was attempted.
#[tokio::test]
async fn a_slow_paced_start_extends_the_start_timeout_until_ready() {
    let env = Env::start(12).await;
    let text = env
        .config_text()
        .replace("connects_per_second = 0", "connects_per_second = 4");
    let config = env.dir.path().join("fieldgate.toml");
    std::fs::write(&config, text).unwrap();
    let notify_path = env.dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let messages = bounded("READY=1", async {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = notify.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let ready = msg.lines().any(|l| l == "READY=1");
            seen.push(msg);
            if ready {
                return seen;
            }
        }
    })
    .await;
    let extensions = messages
        .iter()
        .filter(|m| m.starts_with("EXTEND_TIMEOUT_USEC="))
        .count();
    assert!(
        extensions >= 1,
        "no start-timeout extension before READY=1: {messages:?}"
    );
    signal(pid, "-TERM");
    bounded("exit after SIGTERM", child.wait()).await.unwrap();
}
