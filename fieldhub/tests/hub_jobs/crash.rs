//! Crash durability of a real `fieldhub serve` process: while a method job
//! runs and a service client keeps updating twins and creating devices, the hub is killed with
//! SIGKILL at random points and restarted on the same data directory. Afterwards every change
//! the hub acknowledged is there, every job's per-device results add up, and no device received
//! a job's method twice: a device the hub may have reached before a crash is reported with
//! `DeviceJobOutcomeUnknown`, never called again.
//!
//! The devices are rumqttc clients in this process (which is not killed); each logs every
//! method request it receives, and reconnects to the hub's new port after a restart.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iothub_proto::sas;
use iothub_proto::topics::{self, Topic};
use rand::{Rng as _, SeedableRng as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::{now, T};

const DEVICES: usize = 24;
const KILLS: usize = 5;

/// A `fieldhub serve` child; killed (SIGKILL) when dropped.
struct Hub {
    child: std::process::Child,
    mqtt: std::net::SocketAddr,
    svc: Svc,
}

/// The service API of one hub process.
#[derive(Clone)]
struct Svc {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// Starts the binary on `dir` and waits (bounded) for its ready line.
    async fn start(dir: &std::path::Path) -> Hub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fieldhub"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            // Slow enough that the kills land while the job runs.
            .args(["--job-ops-per-second", "15"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                line
            }),
        )
        .await;
        let line = match line {
            Ok(Ok(l)) => l,
            _ => {
                let _ = child.kill();
                panic!("fieldhub printed no ready line");
            }
        };
        let addr = |key: &str| -> std::net::SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("ready line: {line}"))
                .parse()
                .unwrap()
        };
        let (mqtt, https) = (addr("mqtt="), addr("https="));
        let connstr = std::fs::read_to_string(dir.join("service.connstr")).unwrap();
        let cs = iothub_proto::ConnectionString::parse(connstr.trim()).unwrap();
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .resolve("localhost", https)
            .timeout(T)
            .build()
            .unwrap();
        let token =
            sas::generate(&cs.host_name, &cs.key, Some("iothubowner"), now() + 3600).unwrap();
        Hub {
            child,
            mqtt,
            svc: Svc {
                http,
                base: format!("https://{}", cs.host_name),
                token,
            },
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Svc {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(
                method,
                format!("{}{path}?api-version=2021-04-12", self.base),
            )
            .header("Authorization", &self.token)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Every method request any device received: (device, method name).
type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// A device that answers every method with 200 and reconnects to whatever port `port` holds.
async fn device(
    id: String,
    key: String,
    ca: Arc<rustls::ClientConfig>,
    mut port: watch::Receiver<u16>,
    calls: Calls,
    seen: watch::Sender<usize>,
) {
    loop {
        let p = *port.borrow_and_update();
        let mut o = MqttOptions::new(&id, "localhost", p);
        let token = crate::support::device_token(&id, &key, now() + 3600);
        o.set_credentials(format!("localhost/{id}/?api-version=2021-04-12"), token);
        o.set_keep_alive(Duration::from_secs(60));
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            ca.clone(),
        )));
        let (client, mut eventloop) = AsyncClient::new(o, 16);
        client
            .subscribe("$iothub/methods/POST/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            let publish = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => p,
                Ok(_) => continue,
                Err(_) => break,
            };
            if let Some(Topic::MethodRequest { name, rid }) = topics::parse(&publish.topic) {
                calls.lock().unwrap().push((id.clone(), name));
                seen.send_modify(|n| *n += 1);
                let _ = client.try_publish(
                    topics::method_response(iothub_proto::Status(200), &rid),
                    QoS::AtMostOnce,
                    false,
                    json!({"device": id}).to_string(),
                );
            }
        }
        // The hub went away: reconnect once it is back on a new port (or retry the same one
        // after a pause, if it refused us for another reason).
        if *port.borrow() == p {
            let _ = tokio::time::timeout(Duration::from_millis(200), port.changed()).await;
        }
    }
}

/// What the service client saw acknowledged: the last desired `seq` per device, created ids.
#[derive(Default, Clone)]
struct Acked {
    seq: HashMap<String, u64>,
    created: Vec<String>,
}

/// Updates twins and creates devices until the hub stops answering.
async fn writer(hub: Svc, ids: Vec<String>, acked: Arc<Mutex<Acked>>, first: u64) {
    for n in first.. {
        let id = &ids[n as usize % ids.len()];
        let patch = json!({"properties": {"desired": {"seq": n}}});
        let Ok(resp) = hub
            .req(reqwest::Method::PATCH, &format!("/twins/{id}"))
            .json(&patch)
            .send()
            .await
        else {
            return;
        };
        if resp.status() != 200 {
            return;
        }
        acked.lock().unwrap().seq.insert(id.clone(), n);
        let new = format!("extra-{n}");
        let Ok(resp) = hub
            .req(reqwest::Method::PUT, &format!("/devices/{new}"))
            .json(&json!({"deviceId": new}))
            .send()
            .await
        else {
            return;
        };
        if resp.status() != 200 {
            return;
        }
        acked.lock().unwrap().created.push(new);
    }
}

/// An `unlockDoor{n}` job over the doors only (not the devices the writer creates).
fn method_job(id: &str, method: &str) -> Value {
    let doors: Vec<String> = (0..DEVICES).map(|i| format!("'door-{i:02}'")).collect();
    json!({"jobId": id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": method, "payload": {},
            "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 10},
        "queryCondition": format!("deviceId IN [{}]", doors.join(", ")),
        "maxExecutionTimeInSeconds": 120})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_jobs_twin_updates_and_creates_loses_nothing_and_calls_no_device_twice() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start(dir.path()).await;
    let ca = Arc::new(
        fieldhub::tls::client_config(&std::fs::read_to_string(dir.path().join("ca.pem")).unwrap())
            .unwrap(),
    );

    let ids: Vec<String> = (0..DEVICES).map(|i| format!("door-{i:02}")).collect();
    let (port_tx, port_rx) = watch::channel(hub.mqtt.port());
    let (seen_tx, mut seen_rx) = watch::channel(0usize);
    let calls: Calls = Arc::default();
    let mut devices = JoinSet::new();
    for id in &ids {
        let (st, body) = hub
            .svc
            .call(
                reqwest::Method::PUT,
                &format!("/devices/{id}"),
                Some(json!({"deviceId": id})),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let key = body["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_owned();
        devices.spawn(device(
            id.clone(),
            key,
            ca.clone(),
            port_rx.clone(),
            calls.clone(),
            seen_tx.clone(),
        ));
    }

    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut jobs: Vec<(String, String)> = Vec::new();
    let mut next_seq = 0u64;
    for round in 0..=KILLS {
        // One active job at a time (the S1 default): start the next once the last finished.
        let active = match jobs.last() {
            Some((job, _)) => !is_terminal(&job_status(&hub.svc, job).await),
            None => false,
        };
        if !active {
            let (job, method) = (format!("job-{round}"), format!("unlockDoor{round}"));
            let (st, body) = hub
                .svc
                .call(
                    reqwest::Method::PUT,
                    &format!("/jobs/v2/{job}"),
                    Some(method_job(&job, &method)),
                )
                .await;
            assert_eq!(st, 200, "{body}");
            jobs.push((job, method));
        }
        if round == KILLS {
            break;
        }
        let w = tokio::spawn(writer(
            hub.svc.clone(),
            ids.clone(),
            acked.clone(),
            next_seq,
        ));
        // Kill after a random number of method calls (the job's progress), or 4 s if the job
        // has finished: then the kill lands among twin updates and creates only.
        let target = *seen_rx.borrow_and_update() + rng.random_range(1..=8);
        let _ =
            tokio::time::timeout(Duration::from_secs(4), seen_rx.wait_for(|n| *n >= target)).await;
        eprintln!(
            "round {round}: killed after {} method calls",
            *seen_rx.borrow()
        );
        hub.kill();
        tokio::time::timeout(T * 2, w)
            .await
            .expect("writer stops")
            .unwrap();
        next_seq += 1_000_000;

        hub = Hub::start(dir.path()).await;
        port_tx.send(hub.mqtt.port()).unwrap();
        let snapshot = acked.lock().unwrap().clone();
        check_acknowledged(&hub.svc, &snapshot).await;
    }

    // Let every job finish, then check each device was called at most once per job and the
    // records add up.
    for (job, method) in &jobs {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let j = loop {
            let j = job_status(&hub.svc, job).await;
            if is_terminal(&j) {
                break j;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{job} never finished: {j}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let s = &j["deviceJobStatistics"];
        assert_eq!(s["deviceCount"], DEVICES, "{j}");
        assert_eq!(
            s["succeededCount"].as_u64().unwrap() + s["failedCount"].as_u64().unwrap(),
            DEVICES as u64,
            "{j}"
        );
        eprintln!("{job}: {s}");
        let records = device_jobs(&hub.svc, job).await;
        assert_eq!(records.len(), DEVICES);
        let calls = calls.lock().unwrap().clone();
        for id in &ids {
            let n = calls.iter().filter(|(d, m)| d == id && m == method).count();
            let r = &records[id];
            match r["status"].as_str().unwrap() {
                "completed" => assert_eq!(n, 1, "{job}: {id} called {n} times: {r}"),
                "failed" => {
                    assert_eq!(r["error"]["code"], "DeviceJobOutcomeUnknown", "{job}: {r}");
                    assert!(n <= 1, "{job}: {id} called {n} times: {r}");
                }
                other => panic!("{job}: {id} ended {other}: {r}"),
            }
        }
    }
    let snapshot = acked.lock().unwrap().clone();
    check_acknowledged(&hub.svc, &snapshot).await;
    devices.abort_all();
    hub.kill();
}

fn is_terminal(job: &Value) -> bool {
    ["completed", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or(""))
}

async fn job_status(svc: &Svc, job: &str) -> Value {
    let (st, j) = svc
        .call(reqwest::Method::GET, &format!("/jobs/v2/{job}"), None)
        .await;
    assert_eq!(st, 200, "{j}");
    j
}

/// The `devices.jobs` records of `job`, by device id.
async fn device_jobs(svc: &Svc, job: &str) -> BTreeMap<String, Value> {
    let q =
        json!({"query": format!("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job}'")});
    let (st, body) = svc
        .call(reqwest::Method::POST, "/devices/query", Some(q))
        .await;
    assert_eq!(st, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["deviceId"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// Every acknowledged twin update and registry create is in the restarted hub.
async fn check_acknowledged(svc: &Svc, acked: &Acked) {
    for (id, seq) in &acked.seq {
        let (st, twin) = svc
            .call(reqwest::Method::GET, &format!("/twins/{id}"), None)
            .await;
        assert_eq!(st, 200, "{twin}");
        let got = twin["properties"]["desired"]["seq"].as_u64().unwrap();
        assert!(
            got >= *seq,
            "{id}: acknowledged seq {seq} lost, twin has {got}"
        );
    }
    for id in &acked.created {
        let (st, body) = svc
            .call(reqwest::Method::GET, &format!("/devices/{id}"), None)
            .await;
        assert_eq!(st, 200, "acknowledged create of {id} lost: {body}");
    }
}
