//! Shared setup for the gateway's end-to-end tests: a fieldhub on ephemeral ports (TLS with
//! its own CA), doorsim as the door controllers, a device map written for them, the gateway
//! running in-process, and the back end's service client (the product's own, the same calls
//! an operator's back end makes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fieldgate::config::{self, Config};
use fieldgate::gateway::Gateway;
use fieldgate::link::LinkState;
use fieldgate::metrics::Metrics;
use fieldgate::service::model::{CloudToDeviceMethod, MethodResponse, TwinPatch};
use fieldgate::service::{
    auth, ClientError, ClientOptions, RetryPolicy, ServiceClient, API_VERSION,
};
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen};
use fieldhub::{HubConfig, RunningHub};
use iothub_proto::ConnectionString;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Every await in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

pub async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The demo profile (doorsim's register map), with a fast poll so reported values follow
/// quickly, and a short bus timeout so a silent unit is declared within a second.
pub const PROFILE: &str = r#"
[profile.door]
poll_interval = "200ms"

[profile.door.methods.lockDoor]
action = "write_coil"
address = 0
value = true

[profile.door.methods.unlockDoor]
action = "pulse_coil"
address = 0
value = false
seconds_from = "seconds"
default_duration = "5s"
max_duration = "60s"

[profile.door.methods.setMode]
action = "write_register"
address = 10
from = "mode"
enum = { 0 = "normal", 1 = "maintenance", 2 = "lockdown" }

[profile.door.desired.Building]
address = 0
type = "u16"
min = 1
max = 999

[profile.door.desired.Floor]
address = 1
type = "i16"
min = -5
max = 120

[profile.door.reported.locked]
source = "coil"
address = 0

[profile.door.reported.doorState]
source = "input"
address = 0
enum = { 0 = "closed", 1 = "open", 2 = "forced", 3 = "held" }

[profile.door.reported.batteryVoltage]
source = "input"
address = 1
scale = 0.01
deadband = 0.05
"#;

/// One door of a test map.
#[derive(Debug, Clone)]
pub struct TestDoor {
    pub device_id: String,
    pub unit: u8,
    pub key: String,
}

pub struct Env {
    pub dir: TempDir,
    pub hub: RunningHub,
    pub sim: DoorSim,
    pub doors: Vec<TestDoor>,
    pub metrics: Arc<Metrics>,
    /// The `[[bus]]` section named "tcp" the doors use; doorsim over Modbus TCP by default.
    pub bus_toml: String,
}

/// The `[[bus]]` section named "tcp" (the one the doors use) on the Modbus TCP server at
/// `addr`, with `settings` (TOML lines: timeout, retries, …).
pub fn tcp_bus(addr: &str, settings: &str) -> String {
    format!("[[bus]]\nname = \"tcp\"\ntcp = \"{addr}\"\n{settings}\n")
}

impl Env {
    /// A hub, doorsim on Modbus TCP with units 1..=n, and `n` doors registered in the hub.
    pub async fn start(n: u8) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let hub = bounded(
            "hub start",
            fieldhub::start(HubConfig::for_tests(dir.path().join("hub"))),
        )
        .await
        .unwrap();
        let sim = bounded(
            "doorsim start",
            doorsim::start(DoorSimConfig {
                listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
                units: (1..=n).collect(),
                line_baud: None,
            }),
        )
        .await
        .unwrap();
        let doors = (1..=n)
            .map(|unit| {
                let device_id = format!("door-{unit}");
                let identity = hub.hub.create_device(&device_id).unwrap();
                TestDoor {
                    device_id,
                    unit,
                    key: identity.primary_key,
                }
            })
            .collect();
        let bus_toml = tcp_bus(
            &sim.local_addr.unwrap().to_string(),
            "timeout = \"300ms\"\nretries = 1",
        );
        Env {
            dir,
            hub,
            sim,
            doors,
            bus_toml,
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn hub_host(&self) -> String {
        format!("localhost:{}", self.hub.mqtt_addr.port())
    }

    /// A device map for this environment's hub and doorsim (TOML text).
    pub fn config_text(&self) -> String {
        let mut t = format!(
            "[hub]\nhostname = \"{}\"\nca_file = \"{}\"\nconnects_per_second = 0\nreconnect_backoff_min = \"100ms\"\nreconnect_backoff_max = \"1s\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[events]\ndir = \"{}\"\n\n{}\n{PROFILE}\n",
            self.hub_host(),
            self.hub.ca_path.display(),
            self.dir.path().join("state").display(),
            self.bus_toml,
        );
        for d in &self.doors {
            t.push_str(&format!(
                "[[door]]\ndevice_id = \"{}\"\nbus = \"tcp\"\nunit = {}\nprofile = \"door\"\nkey = \"{}\"\ntags = {{ building = \"43\", floor = \"{}\" }}\n\n",
                d.device_id, d.unit, d.key, d.unit
            ));
        }
        t
    }

    pub fn config(&self) -> Config {
        let path = self.dir.path().join("fieldgate.toml");
        config::parse(&self.config_text(), &path.display().to_string())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
    }

    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("fieldgate.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    /// Starts the gateway in-process and waits until every door's link is connected.
    pub async fn gateway(&self) -> Gateway {
        let gw = Gateway::start(&self.config(), Arc::clone(&self.metrics)).unwrap();
        for d in &self.doors {
            wait_link(&gw, &d.device_id).await;
        }
        gw
    }

    pub fn service(&self) -> Service {
        Service::new(&self.hub)
    }
}

pub async fn wait_link(gw: &Gateway, id: &str) {
    let mut w = gw.link(id).expect("door exists").watch_state();
    bounded("link connected", w.wait_for(|s| *s == LinkState::Connected))
        .await
        .expect("link task alive");
}

/// The back end's service client, signed with the hub's `iothubowner` policy: the product's
/// own [`ServiceClient`] for what a back end does (methods, twins, jobs), and
/// [`Service::try_send`] for requests that client would never send (any path, any JSON),
/// signed the same way.
#[derive(Debug, Clone)]
pub struct Service {
    client: ServiceClient,
    http: reqwest::Client,
    base: String,
    conn: ConnectionString,
}

impl Service {
    pub fn new(hub: &RunningHub) -> Service {
        let conn = auth::service_connection_string(&hub.service_connection_string).unwrap();
        let base = format!("https://localhost:{}", hub.https_addr.port());
        let opts = ClientOptions {
            ca_file: Some(hub.ca_path.clone()),
            request_timeout: LIMIT,
            // A 429 is an answer these tests want to see, not wait out.
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        };
        let client = ServiceClient::with_base_url(conn.clone(), base.clone(), opts).unwrap();
        let ca = reqwest::Certificate::from_pem(hub.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(LIMIT)
            .build()
            .unwrap();
        Service {
            client,
            http,
            base,
            conn,
        }
    }

    /// The product's client, for calls the helpers below do not wrap.
    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    /// One REST call of any shape; `Err` when the hub cannot be reached (tests that take it
    /// down). A body goes with `If-Match: "*"`.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}?api-version={API_VERSION}", self.base);
        let token = auth::sas_header(&self.conn, SystemTime::now()).unwrap();
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", token);
        if let Some(b) = body {
            req = req.header("If-Match", "\"*\"").json(&b);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.try_send(method, path, body)
            .await
            .expect("hub reachable")
    }

    /// `POST /twins/{id}/methods`: (HTTP status, body).
    pub async fn invoke(&self, id: &str, method: &str, payload: Value) -> (u16, Value) {
        self.invoke_within(id, method, payload, 20).await
    }

    /// `POST /twins/{id}/methods` with the caller's `responseTimeoutInSeconds`: (HTTP status,
    /// body). The body is the device's `{status, payload}` on 200, else the hub's error as
    /// `{errorCode, message}`.
    pub async fn invoke_within(
        &self,
        id: &str,
        method: &str,
        payload: Value,
        response_timeout_s: u32,
    ) -> (u16, Value) {
        let call = CloudToDeviceMethod {
            method_name: method.to_string(),
            payload,
            response_timeout_in_seconds: response_timeout_s.into(),
            connect_timeout_in_seconds: 0,
        };
        method_answer(self.client.invoke_method(id, &call).await).expect("hub reachable")
    }

    pub async fn twin(&self, id: &str) -> Value {
        let twin = self.client.get_twin(id).await;
        serde_json::to_value(twin.unwrap_or_else(|e| panic!("twin {id}: {e}"))).unwrap()
    }

    pub async fn set_desired(&self, id: &str, desired: Value) -> Value {
        let patch = TwinPatch {
            desired: desired.as_object().expect("desired is an object").clone(),
            ..TwinPatch::default()
        };
        let twin = self.client.patch_twin(id, &patch).await;
        serde_json::to_value(twin.unwrap_or_else(|e| panic!("patch twin {id}: {e}"))).unwrap()
    }

    /// Polls the twin until `pred` holds on its reported section (the gateway reports
    /// asynchronously; every wait is bounded).
    pub async fn wait_reported(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        bounded(what, async {
            loop {
                let twin = self.twin(id).await;
                let reported = &twin["properties"]["reported"];
                if pred(reported) {
                    return reported.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }
}

/// A method call's result as (HTTP status, body), as a back end reads it; `Err` when the hub
/// could not be reached. An answer that does not parse keeps its text (status -1 inside).
pub fn method_answer(r: Result<MethodResponse, ClientError>) -> Result<(u16, Value), String> {
    match r {
        Ok(resp) => Ok((200, json!({"status": resp.status, "payload": resp.payload}))),
        Err(ClientError::Service(s)) => {
            Ok((s.status, json!({"errorCode": s.code, "message": s.message})))
        }
        Err(e @ ClientError::Transport { .. }) => Err(e.to_string()),
        Err(e) => Ok((200, json!({"status": -1, "payload": e.to_string()}))),
    }
}
