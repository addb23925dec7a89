//! Conformance with the official Azure IoT SDKs, unmodified: npm `azure-iot-device` +
//! `azure-iot-device-mqtt` and `azure-iothub`, PyPI `azure-iot-device` and `azure-iot-hub`
//! (pinned in `tests/peers/`), driven by `tests/peers/node/conformance.js` and
//! `tests/peers/python/conformance.py` against a fieldhub started in this process.
//!
//! The SDKs dial fixed ports (the Python device SDK 8883, the Node service SDK 443), so the hub
//! listens on 127.0.0.1:8883 and 127.0.0.1:443, which needs root (CI runs as root; elsewhere the
//! tests print `SKIPPED` and pass). The scenarios hold [`support::SDK_PORTS`] for their whole
//! run, as do the provisioning tests of `sdk_dps` that bind them, so that they never overlap;
//! no other test uses those ports, and a second copy of the test binary (another checkout)
//! waits for the ports to be free (bind retries). `scripts/test` runs this module on its own
//! after the other tests (`cargo test -p fieldhub --test tests sdk::`); one scenario runs alone
//! with its full name as the filter.
//!
//! Each script prints one JSON line per checked step; a test asserts every expected step is
//! there and `ok`, then checks the hub's own state through the library (twins, telemetry,
//! connections), so the SDKs' view and the hub's agree.
//!
//! Issue 2's negative cases, and where each is asserted (status / error code, and that the hub
//! keeps serving other clients):
//! - wrong key: here (both device SDKs) and `mqtt_device::wrong_key_gets_connack_5_and_unknown_device_too`;
//! - expired token: here (Node device SAS), `expired_token_refused_and_connection_dropped_at_expiry`,
//!   and `permissions_are_checked_per_policy` (service token);
//! - a device touching another device's topics: `foreign_topics_disconnect_only_the_offender`
//!   (the SDKs cannot be made to do it);
//! - a service policy lacking the permission: here (both service SDKs, `registryRead` invoking a
//!   method) and `permissions_are_checked_per_policy`;
//! - malformed JSON: `malformed_json_and_oversized_twin_are_400` (REST) and
//!   `twin_methods_and_telemetry_round_trip` (reported patch over MQTT) (the SDKs always send JSON);
//! - twin over the size limit: here (reported patch from both device SDKs, desired patch from the
//!   Node service SDK) and `malformed_json_and_oversized_twin_are_400`;
//! - method to an offline device (404) and a method that times out (504): here (both service
//!   SDKs) and `methods_offline_unknown_timeout_and_success`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use fieldhub::hub::Sub;
use fieldhub::{HubConfig, RunningHub};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::support;

const MQTT_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8883);
const HTTPS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 443);
/// Bound for one script run (SDK start-up, connects, a method timeout or two).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for one awaited event (a step line, a readiness change).
const T: Duration = Duration::from_secs(30);
/// Scripts of fieldhub's own SDK scenarios (they use the SDKs installed under `peers_dir`).
fn own_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers")
}

/// Starts a hub on the SDKs' ports. `None` when this process may not bind them (not root).
async fn start_on_sdk_ports(data_dir: &Path) -> Option<RunningHub> {
    support::start_on_sdk_ports(data_dir, "the official-SDK tests").await
}

/// The hub under test plus what the scripts need to reach it.
struct Env {
    hub: RunningHub,
    dir: tempfile::TempDir,
}

impl Env {
    fn vars(&self) -> Vec<(String, String)> {
        let ca = self.hub.ca_path.display().to_string();
        vec![
            (
                "SERVICE_CS".into(),
                self.hub.service_connection_string.clone(),
            ),
            ("CA_FILE".into(), ca.clone()),
            ("NODE_EXTRA_CA_CERTS".into(), ca.clone()),
            ("REQUESTS_CA_BUNDLE".into(), ca),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ]
    }

    fn policy_cs(&self, policy: &str) -> String {
        self.hub.hub.policy_connection_string(policy).unwrap()
    }

    fn device_cs(&self, id: &str) -> String {
        if self.hub.hub.get_device(id).is_err() {
            self.hub.hub.create_device(id).unwrap();
        }
        self.hub.hub.device_connection_string(id).unwrap()
    }
}

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Node,
    Python,
    /// `fieldhub/tests/peers/issue14.js` with the Node SDKs of `tests/peers/node`.
    NodeIssue14,
    /// `fieldhub/tests/peers/issue14.py`.
    PythonIssue14,
}

impl Sdk {
    fn command(self) -> Command {
        let peers = peers_dir();
        let mut c = match self {
            Sdk::Node => {
                assert!(
                    peers.join("node/node_modules/azure-iothub").is_dir(),
                    "the Node SDKs are not installed: run `npm ci` in tests/peers/node (.ci/run does)"
                );
                let mut c = Command::new("node");
                c.arg(peers.join("node/conformance.js"));
                c
            }
            Sdk::Python => {
                let mut c = Command::new("python3");
                c.arg(peers.join("python/conformance.py"));
                c
            }
            Sdk::NodeIssue14 => {
                let mut c = Command::new("node");
                c.arg(own_peers_dir().join("issue14.js"))
                    .env("NODE_PATH", peers.join("node/node_modules"));
                c
            }
            Sdk::PythonIssue14 => {
                let mut c = Command::new("python3");
                c.arg(own_peers_dir().join("issue14.py"));
                c
            }
        };
        c.current_dir(peers).kill_on_drop(true);
        c
    }
}

/// One parsed output line of a script.
fn parse_steps(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("step").is_some())
        .collect()
}

/// Runs a script to completion and asserts that every step in `expected` (and `done`) is there
/// and ok. Returns the steps by name.
async fn run_script(
    env: &Env,
    sdk: Sdk,
    mode: &str,
    device: &str,
    extra: &[(&str, String)],
    expected: &[&str],
) -> BTreeMap<String, Value> {
    let mut cmd = sdk.command();
    cmd.envs(env.vars())
        .env("MODE", mode)
        .env("DEVICE_ID", device)
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    let what = format!("{sdk:?} MODE={mode} DEVICE_ID={device}");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no exit within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let steps = parse_steps(&stdout);
    let by_name: BTreeMap<String, Value> = steps
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_string(), s.clone()))
        .collect();
    let missing: Vec<&&str> = expected
        .iter()
        .chain(&["done"])
        .filter(|e| by_name.get(**e).is_none_or(|s| s["ok"] != true))
        .collect();
    let failed = steps.iter().any(|s| s["ok"] != true);
    if !out.status.success() || failed || !missing.is_empty() {
        panic!(
            "{what} failed ({}); missing or failed steps {missing:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
    }
    println!("{what}: {} steps ok", steps.len());
    by_name
}

/// A script that keeps running (MODE=device) until its stdin closes; its steps arrive as they
/// are printed.
struct LivePeer {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    steps: mpsc::UnboundedReceiver<Value>,
    transcript: Arc<StdMutex<String>>,
}

impl LivePeer {
    fn spawn(env: &Env, sdk: Sdk, device: &str) -> LivePeer {
        let mut cmd = sdk.command();
        cmd.envs(env.vars())
            .env("MODE", "device")
            .env("DEVICE_ID", device)
            .env("DEVICE_CS", env.device_cs(device))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{sdk:?} MODE=device DEVICE_ID={device}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let transcript = Arc::new(StdMutex::new(String::new()));
        let (tx, steps) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let log = transcript.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let log = transcript.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        LivePeer {
            what,
            stdin: child.stdin.take(),
            child,
            steps,
            transcript,
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: {why}\n--- output\n{}",
            self.what,
            self.transcript.lock().unwrap()
        )
    }

    /// The next step named `name` for which `pred` holds; earlier lines are skipped, except
    /// that a failed step ends the test.
    async fn step(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match tokio::time::timeout_at(deadline, self.steps.recv()).await {
                Ok(Some(s)) if s["ok"] != true => self.fail("a step failed"),
                Ok(Some(s)) if s["step"] == name && pred(&s) => return s,
                Ok(Some(_)) => {}
                Ok(None) => self.fail(&format!("exited before step {name}")),
                Err(_) => self.fail(&format!("no step {name} within {T:?}")),
            }
        }
    }

    /// Closes stdin (the script's signal to shut down) and expects a clean exit.
    async fn finish(mut self) {
        drop(self.stdin.take());
        match tokio::time::timeout(T, self.child.wait()).await {
            Ok(Ok(st)) if st.success() => {}
            Ok(Ok(st)) => self.fail(&format!("exit status {st}")),
            Ok(Err(e)) => self.fail(&format!("wait failed: {e}")),
            Err(_) => self.fail("did not exit after stdin closed"),
        }
        // Output readers finish once the pipes close; `done` must be among the steps.
        let mut done = false;
        while let Ok(Some(s)) = tokio::time::timeout(T, self.steps.recv()).await {
            done |= s["step"] == "done";
        }
        if !done {
            self.fail("no done step");
        }
    }
}

async fn ready(hub: &RunningHub, id: &str, sub: Sub) {
    assert!(
        hub.hub.wait_ready(id, Some(sub), T).await,
        "{id} did not connect and subscribe to {sub:?} within {T:?}"
    );
}

/// The hub's own view after a `device-service` run: reported values written by the SDK
/// device, the service's tags and desired, and the telemetry message.
fn check_device_service_state(hub: &RunningHub, id: &str, sdk: &str, event: &str) {
    let twin = hub.hub.get_twin(id).unwrap();
    assert_eq!(twin["properties"]["reported"]["sdk"], sdk, "{twin}");
    assert_eq!(twin["tags"]["building"], "43", "{twin}");
    assert_eq!(twin["properties"]["desired"]["Floor"], 3, "{twin}");
    assert_eq!(twin["properties"]["desired"]["Building"], 43, "{twin}");
    let telemetry = hub.hub.telemetry(id);
    assert_eq!(telemetry.len(), 1, "one telemetry message from {id}");
    let msg = &telemetry[0];
    let body: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(body["sdk"], sdk);
    let props: BTreeMap<_, _> = msg.properties.iter().cloned().collect();
    assert_eq!(props.get("doorEvent").map(String::as_str), Some(event));
    assert_eq!(
        props.get("$.ct").map(String::as_str),
        Some("application/json")
    );
}

/// Issue 2: both SDKs' device and service clients, crosswise, the negative cases, and a hub
/// restart that the SDK clients survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_devices_twins_methods_and_restart() {
    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(dir.path()).await else {
        return;
    };
    let mut env = Env { hub, dir };

    // Each SDK pair on its own: registry create, device twin/reported/desired, methods, telemetry.
    let node = run_script(
        &env,
        Sdk::Node,
        "device-service",
        "node-door",
        &[],
        &[
            "registry.create+device.open",
            "device.getTwin",
            "device.reported.update",
            "registry.getTwin",
            "registry.updateTwin",
            "device.properties.desired",
            "client.invokeDeviceMethod",
            "device.sendEvent",
        ],
    )
    .await;
    assert_eq!(node["client.invokeDeviceMethod"]["status"], 200);
    check_device_service_state(&env.hub, "node-door", "node", "opened");
    let twin = env.hub.hub.get_twin("node-door").unwrap();
    assert_eq!(
        twin["properties"]["reported"]["firmware"],
        json!({"version": "1.2.3"})
    );

    run_script(
        &env,
        Sdk::Python,
        "device-service",
        "py-door",
        &[],
        &[
            "registry.create_device_with_sas+device.connect",
            "device.get_twin",
            "device.patch_twin_reported_properties",
            "registry.get_twin",
            "registry.update_twin",
            "device.on_twin_desired_properties_patch_received",
            "registry.invoke_device_method",
            "device.send_message",
        ],
    )
    .await;
    check_device_service_state(&env.hub, "py-door", "python", "closed");
    let twin = env.hub.hub.get_twin("py-door").unwrap();
    assert_eq!(twin["properties"]["reported"]["battery"], 13.2);

    // Crosswise: the Node service calls a Python device, the Python service a Node device.
    let mut py_dev = LivePeer::spawn(&env, Sdk::Python, "py-serve");
    py_dev.step("device.ready", |_| true).await;
    ready(&env.hub, "py-serve", Sub::Methods).await;
    let mut node_dev = LivePeer::spawn(&env, Sdk::Node, "node-serve");
    node_dev.step("device.ready", |_| true).await;
    ready(&env.hub, "node-serve", Sub::Methods).await;

    let r = run_script(
        &env,
        Sdk::Node,
        "invoke",
        "py-serve",
        &[],
        &["client.invokeDeviceMethod"],
    )
    .await;
    assert_eq!(r["client.invokeDeviceMethod"]["payload"]["by"], "python");
    py_dev
        .step("device.method", |s| s["payload"]["from"] == "node-service")
        .await;
    let r = run_script(
        &env,
        Sdk::Python,
        "invoke",
        "node-serve",
        &[],
        &["registry.invoke_device_method"],
    )
    .await;
    assert_eq!(r["registry.invoke_device_method"]["payload"]["by"], "node");
    node_dev
        .step("device.method", |s| {
            s["payload"]["from"] == "python-service"
        })
        .await;

    // Negative cases through the SDKs, while the two devices above stay connected.
    env.hub.hub.create_device("offline-door").unwrap();
    let negative_env = [
        ("READ_CS", env.policy_cs("registryRead")),
        ("OFFLINE_ID", "offline-door".to_string()),
    ];
    let n = run_script(
        &env,
        Sdk::Node,
        "negative",
        "node-neg",
        &negative_env,
        &[
            "device.open",
            "device.reported.update(over 32 KB)",
            "device.reported.update(after over 32 KB)",
            "device.open(wrong key)",
            "device.open(expired sas)",
            "client.invokeDeviceMethod(registryRead policy)",
            "client.invokeDeviceMethod(offline)",
            "client.invokeDeviceMethod(timeout)",
            "registry.updateTwin(over 32 KB)",
            "client.invokeDeviceMethod(after errors)",
        ],
    )
    .await;
    assert_eq!(n["client.invokeDeviceMethod(timeout)"]["status"], 504);
    assert_eq!(n["client.invokeDeviceMethod(offline)"]["status"], 404);
    let p = run_script(
        &env,
        Sdk::Python,
        "negative",
        "py-neg",
        &negative_env,
        &[
            "device.connect",
            "device.patch_twin_reported_properties(over 32 KB)",
            "device.patch_twin_reported_properties(after over 32 KB)",
            "device.connect(wrong key)",
            "registry.invoke_device_method(registryRead policy)",
            "registry.invoke_device_method(offline)",
            "registry.invoke_device_method(timeout)",
            "registry.invoke_device_method(after errors)",
        ],
    )
    .await;
    assert_eq!(p["registry.invoke_device_method(timeout)"]["status"], 504);
    for id in ["node-neg", "py-neg"] {
        let reported = &env.hub.hub.get_twin(id).unwrap()["properties"]["reported"];
        assert_eq!(reported["afterBig"], true, "{id}: {reported}");
        assert!(
            reported.get("k0").is_none(),
            "{id}: oversized patch applied"
        );
    }
    // The rejected connects did not disturb anyone else's connection.
    for id in ["py-serve", "node-serve"] {
        assert!(env.hub.hub.is_connected(id), "{id} still connected");
        let resp = tokio::time::timeout(
            T,
            env.hub
                .hub
                .invoke_method(id, "lockDoor", json!({"from": "hub"}), T, Duration::ZERO),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((resp.status, &resp.payload["locked"]), (200, &json!(true)));
    }
    py_dev
        .step("device.method", |s| s["payload"]["from"] == "hub")
        .await;
    node_dev
        .step("device.method", |s| s["payload"]["from"] == "hub")
        .await;

    // Restart on the same data dir and ports: devices, keys and twins survive, and the SDK
    // device clients reconnect by themselves (relying on their persisted MQTT sessions).
    let ids = ["node-door", "py-door", "py-serve", "node-serve"];
    let before: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                env.hub.hub.get_device(id).unwrap(),
                env.hub.hub.get_twin(id).unwrap(),
            )
        })
        .collect();
    let Env { hub, dir } = env;
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();
    py_dev
        .step("device.connection", |s| s["connected"] == false)
        .await;
    let hub = start_on_sdk_ports(dir.path())
        .await
        .expect("ports were bound a moment ago");
    env = Env { hub, dir };
    for (id, (device, twin)) in ids.iter().zip(&before) {
        assert_eq!(&env.hub.hub.get_device(id).unwrap(), device);
        let after = env.hub.hub.get_twin(id).unwrap();
        assert_eq!(after["tags"], twin["tags"], "{id}");
        assert_eq!(after["properties"], twin["properties"], "{id}");
    }
    py_dev
        .step("device.connection", |s| s["connected"] == true)
        .await;
    ready(&env.hub, "py-serve", Sub::Methods).await;
    run_script(
        &env,
        Sdk::Node,
        "invoke",
        "py-serve",
        &[],
        &["client.invokeDeviceMethod"],
    )
    .await;
    py_dev
        .step("device.method", |s| s["payload"]["from"] == "node-service")
        .await;
    ready(&env.hub, "node-serve", Sub::Methods).await;
    run_script(
        &env,
        Sdk::Python,
        "invoke",
        "node-serve",
        &[],
        &["registry.invoke_device_method"],
    )
    .await;
    node_dev
        .step("device.method", |s| {
            s["payload"]["from"] == "python-service"
        })
        .await;
    // A device SDK reads the twin it had before the restart.
    let again = run_script(
        &env,
        Sdk::Node,
        "device-service",
        "node-door",
        &[],
        &["registry.create+device.open", "device.getTwin"],
    )
    .await;
    assert_eq!(again["device.getTwin"]["reportedSdk"], "node");

    py_dev.finish().await;
    node_dev.finish().await;
    tokio::time::timeout(T, env.hub.shutdown()).await.unwrap();
}

/// The hub's record of a job the SDKs ran: terminal status and exact statistics.
fn check_job(hub: &RunningHub, job_id: &Value, status: &str, succeeded: u64) {
    let job_id = job_id.as_str().expect("the script printed the job id");
    let job = serde_json::to_value(hub.jobs.get(job_id).unwrap()).unwrap();
    assert_eq!(job["status"], status, "{job}");
    if succeeded > 0 {
        let stats = &job["deviceJobStatistics"];
        assert_eq!(
            (
                &stats["deviceCount"],
                &stats["succeededCount"],
                &stats["failedCount"]
            ),
            (&json!(1), &json!(succeeded), &json!(0)),
            "{job}"
        );
    }
}

/// Issue 4: jobs v2 and queries driven by both service SDKs, with device SDK clients answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_jobs_and_queries() {
    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(dir.path()).await else {
        return;
    };
    let env = Env { hub, dir };

    // The seed's flow: `lockDoor` on a device picked by a twin query, desired Building/Floor on
    // it, both watched to completion; a future job cancelled; job and registry queries.
    let node = run_script(
        &env,
        Sdk::Node,
        "jobs",
        "node-job-door",
        &[],
        &[
            "device.ready",
            "jobClient.scheduleDeviceMethod",
            "jobClient.scheduleTwinUpdate",
            "jobClient.cancelJob",
            "jobClient.createQuery",
            "registry.createQuery",
        ],
    )
    .await;
    check_job(
        &env.hub,
        &node["jobClient.scheduleDeviceMethod"]["jobId"],
        "completed",
        1,
    );
    check_job(
        &env.hub,
        &node["jobClient.scheduleTwinUpdate"]["jobId"],
        "completed",
        1,
    );
    check_job(
        &env.hub,
        &node["jobClient.cancelJob"]["jobId"],
        "cancelled",
        0,
    );
    let twin = env.hub.hub.get_twin("node-job-door").unwrap();
    assert_eq!(twin["properties"]["desired"]["Building"], 43, "{twin}");
    assert_eq!(twin["properties"]["desired"]["Floor"], 3, "{twin}");
    assert_eq!(twin["tags"]["floor"], "3", "{twin}");

    let py = run_script(
        &env,
        Sdk::Python,
        "jobs",
        "py-job-door",
        &[],
        &[
            "device.ready",
            "jobManager.create_scheduled_job(method)",
            "jobManager.create_scheduled_job(twin)",
            "jobManager.cancel_scheduled_job",
            "registry.query_iot_hub(devices.jobs)",
            "registry.query_iot_hub",
        ],
    )
    .await;
    let method_job = &py["jobManager.create_scheduled_job(method)"]["jobId"];
    check_job(&env.hub, method_job, "completed", 1);
    check_job(
        &env.hub,
        &py["jobManager.create_scheduled_job(twin)"]["jobId"],
        "completed",
        1,
    );
    check_job(
        &env.hub,
        &py["jobManager.cancel_scheduled_job"]["jobId"],
        "cancelled",
        0,
    );
    let device_jobs = env.hub.jobs.device_jobs();
    let result = device_jobs
        .iter()
        .find(|d| &d["jobId"] == method_job)
        .expect("devices.jobs holds the Python method job's device result");
    assert_eq!(result["deviceId"], "py-job-door", "{result}");
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(
        result["outcome"]["deviceMethodResponse"]["status"], 200,
        "{result}"
    );
    assert_eq!(
        env.hub.hub.get_twin("py-job-door").unwrap()["properties"]["desired"]["Floor"],
        3
    );

    tokio::time::timeout(T, env.hub.shutdown()).await.unwrap();
}

/// Issue 14 through the official service SDKs: projections keyed by IoT Hub's property names
/// (item 1; Python's `Twin` deserializer drops any other spelling), the query guide's GROUP BY
/// example (item 2), twin-update jobs without etag `"*"` refused (item 5), and
/// `responseTimeoutInSeconds` below 5 refused (item 7), and the S1 throttle profile's 429
/// surfaced as each SDK's throttling error (item 6), the Node device SDK's reported-property
/// updates included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_issue14_queries_twin_jobs_method_timeouts_and_throttling() {
    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(dir.path()).await else {
        return;
    };
    let env = Env { hub, dir };
    for (id, status) in [
        ("q-1", "Success"),
        ("q-2", "Pending"),
        ("q-3", "Success"),
        ("q-4", "Error"),
    ] {
        env.hub.hub.create_device(id).unwrap();
        let body = json!({"telemetryConfig": {"status": status}}).to_string();
        env.hub.hub.patch_reported(id, body.as_bytes()).unwrap();
    }
    let node = run_script(
        &env,
        Sdk::NodeIssue14,
        "issue14",
        "q-1",
        &[],
        &[
            "registry.createQuery(projection)",
            "registry.createQuery(GROUP BY)",
            "jobClient.scheduleTwinUpdate(no etag)",
            "client.invokeDeviceMethod(responseTimeoutInSeconds 3)",
        ],
    )
    .await;
    assert_eq!(
        node["jobClient.scheduleTwinUpdate(no etag)"]["error"],
        "ArgumentError"
    );
    run_script(
        &env,
        Sdk::PythonIssue14,
        "issue14",
        "q-1",
        &[],
        &[
            "registry.query_iot_hub(projection)",
            "jobManager.create_scheduled_job(twin, no etag)",
            "registry.invoke_device_method(response_timeout_in_seconds 3)",
        ],
    )
    .await;
    assert!(
        env.hub.jobs.list(None, None).is_empty(),
        "no refused job was created"
    );
    let Env { hub, mut dir } = env;
    tokio::time::timeout(T, hub.shutdown()).await.unwrap();

    // Item 6: the same data dir under the S1 throttle profile; each script has its own
    // minute of 20 queries, so each sees its 21st refused.
    for sdk in [Sdk::NodeIssue14, Sdk::PythonIssue14] {
        let cfg = HubConfig {
            mqtt_addr: SocketAddr::from(MQTT_ADDR),
            https_addr: SocketAddr::from(HTTPS_ADDR),
            throttle: Some(fieldhub::throttle::ThrottleProfile::s1(1)),
            ..HubConfig::for_tests(dir.path())
        };
        let hub = tokio::time::timeout(T, fieldhub::start(cfg))
            .await
            .unwrap()
            .unwrap();
        let env = Env { hub, dir };
        let step = match sdk {
            Sdk::NodeIssue14 => "registry.createQuery(throttled)",
            _ => "registry.query_iot_hub(throttled)",
        };
        // The Node device SDK also sends reported patches beyond S1's 50 twin updates a
        // second and must see the 429 answers as errors.
        let (extra, twin_step) = match sdk {
            Sdk::NodeIssue14 => (
                vec![("DEVICE_CS", env.device_cs("q-1"))],
                Some("twin.properties.reported.update(throttled)"),
            ),
            _ => (Vec::new(), None),
        };
        let expected: Vec<&str> = [step].into_iter().chain(twin_step).collect();
        let steps = run_script(&env, sdk, "throttled", "q-1", &extra, &expected).await;
        assert_eq!(steps[step]["status"], 429);
        if let Some(s) = twin_step {
            assert_eq!(steps[s]["error"], "Error", "{}", steps[s]);
            let refused = steps[s]["refused"].as_u64().unwrap();
            assert!((1..=30).contains(&refused), "{}", steps[s]);
        }
        let Env { hub, dir: d } = env;
        tokio::time::timeout(T, hub.shutdown()).await.unwrap();
        dir = d;
    }
}

/// The official device SDKs over MQTT over WebSockets (Node `MqttWs`, Python
/// `websockets=True`), which dial `wss://{host}:443/$iothub/websocket`: the same scenarios
/// as on 8883 — connect, twin get and reported patch, desired notifications, a direct
/// method, telemetry — and the negative ones (a wrong key and an expired token refused,
/// oversized patches, unanswered methods).
#[tokio::test]
async fn official_sdks_over_websockets() {
    let _ports = support::SDK_PORTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let Some(hub) = start_on_sdk_ports(dir.path()).await else {
        return;
    };
    let env = Env { hub, dir };
    let ws = [("TRANSPORT", "ws".to_string())];
    run_script(
        &env,
        Sdk::Node,
        "device-service",
        "node-ws-door",
        &ws,
        &[
            "registry.create+device.open",
            "device.getTwin",
            "device.reported.update",
            "registry.getTwin",
            "registry.updateTwin",
            "device.properties.desired",
            "client.invokeDeviceMethod",
            "device.sendEvent",
        ],
    )
    .await;
    check_device_service_state(&env.hub, "node-ws-door", "node", "opened");
    run_script(
        &env,
        Sdk::Python,
        "device-service",
        "py-ws-door",
        &ws,
        &[
            "registry.create_device_with_sas+device.connect",
            "device.get_twin",
            "device.patch_twin_reported_properties",
            "registry.get_twin",
            "registry.update_twin",
            "device.on_twin_desired_properties_patch_received",
            "registry.invoke_device_method",
            "device.send_message",
        ],
    )
    .await;
    check_device_service_state(&env.hub, "py-ws-door", "python", "closed");

    env.hub.hub.create_device("offline-ws-door").unwrap();
    let negative_env = [
        ("TRANSPORT", "ws".to_string()),
        ("READ_CS", env.policy_cs("registryRead")),
        ("OFFLINE_ID", "offline-ws-door".to_string()),
    ];
    let n = run_script(
        &env,
        Sdk::Node,
        "negative",
        "node-ws-neg",
        &negative_env,
        &[
            "device.open",
            "device.reported.update(over 32 KB)",
            "device.open(wrong key)",
            "device.open(expired sas)",
            "client.invokeDeviceMethod(timeout)",
            "client.invokeDeviceMethod(after errors)",
        ],
    )
    .await;
    assert_eq!(n["device.open(wrong key)"]["error"], "UnauthorizedError");
    let p = run_script(
        &env,
        Sdk::Python,
        "negative",
        "py-ws-neg",
        &negative_env,
        &[
            "device.connect",
            "device.patch_twin_reported_properties(over 32 KB)",
            "device.connect(wrong key)",
            "registry.invoke_device_method(timeout)",
            "registry.invoke_device_method(after errors)",
        ],
    )
    .await;
    assert_eq!(p["registry.invoke_device_method(timeout)"]["status"], 504);
}
