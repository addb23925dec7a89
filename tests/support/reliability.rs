//! Shared helpers of the reliability suite (`reliability_*` modules and `soak`): a
//! service client that reports hub outages instead of panicking (the hub goes away in these
//! tests), a device map with a method whose every call writes a distinct value, the
//! write-log checks (exactly once, right unit), the convergence check (registers equal the
//! twin's desired state, acknowledged), and a hub restart on the same data dir and ports.
//!
//! `FIELDGATE_SOAK=1` ([`long_mode`]) makes the runs longer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldgate::config;
use fieldgate::gateway::Gateway;
use fieldgate::service::model::{CloudToDeviceMethod, TwinPatch};
use fieldhub::doorsim::{DoorSimHandle, Table};
use fieldhub::{HubConfig, RunningHub};
use serde_json::{json, Value};

use crate::support::harness::{bounded, method_answer, wait_link, Env, Service, LIMIT};

/// Long mode (`FIELDGATE_SOAK=1`): full-length runs.
pub fn long_mode() -> bool {
    std::env::var("FIELDGATE_SOAK").is_ok_and(|v| v == "1")
}

/// A method whose every call writes a distinct u32 (`{"ms": n}`) to holding 2-3, so each
/// call can be found in doorsim's write log: the needle for the exactly-once checks.
pub const TAGGED_METHOD: &str = r#"
[profile.door.methods.setHold]
action = "write_register"
address = 2
type = "u32"
from = "ms"
"#;

/// The harness's device map with `hub_extra` added to `[hub]` and `profile_extra` (e.g.
/// [`TAGGED_METHOD`]) added to the profile.
pub fn config_text(env: &Env, hub_extra: &str, profile_extra: &str) -> String {
    env.config_text()
        .replacen("[hub]\n", &format!("[hub]\n{hub_extra}\n"), 1)
        .replacen("[[door]]", &format!("{profile_extra}\n[[door]]"), 1)
}

pub fn parse_config(env: &Env, text: &str) -> config::Config {
    let path = env.dir.path().join("fieldgate.toml");
    config::parse(text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"))
}

/// Starts the gateway in-process on `text` and waits for every door's link.
pub async fn gateway_with(env: &Env, text: &str) -> Gateway {
    let gw = Gateway::start(&parse_config(env, text), Arc::clone(&env.metrics)).unwrap();
    for d in &env.doors {
        wait_link(&gw, &d.device_id).await;
    }
    gw
}

/// The u32 values `setHold` wrote to `unit`, in write order.
pub fn tagged_writes(sim: &DoorSimHandle, unit: u8) -> Vec<u32> {
    sim.write_log()
        .into_iter()
        .filter(|w| w.unit == unit && w.table == Table::Holding && w.addr == 2)
        .map(|w| {
            assert_eq!(w.values.len(), 2, "setHold writes two words: {w:?}");
            (u32::from(w.values[0]) << 16) | u32::from(w.values[1])
        })
        .collect()
}

/// The tag of call `i` on `unit`: distinct across doors and calls.
pub fn tag(unit: u8, i: u32) -> u32 {
    u32::from(unit) * 1_000_000 + i + 1
}

/// What became of one method call, as the operator's back end saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The hub answered; `status` is the device's status inside a 200, or the hub's own.
    Answered { status: i64, body: Value },
    /// The hub could not be reached (it was down).
    HubUnreachable(String),
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Answered { status: 200, .. })
    }
}

/// Service REST client that reports hub outages instead of panicking.
#[derive(Debug, Clone)]
pub struct Client {
    svc: Service,
}

impl Client {
    pub fn new(hub: &RunningHub) -> Client {
        Client {
            svc: Service::new(hub),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        self.svc.try_send(method, path, body).await
    }

    /// Invokes a method; the hub waits up to `connect_timeout` s for the device to be online
    /// (covers reconnects) and `response_timeout` s for its answer.
    pub async fn invoke(
        &self,
        id: &str,
        method: &str,
        payload: Value,
        response_timeout: u64,
        connect_timeout: u64,
    ) -> Outcome {
        let call = CloudToDeviceMethod {
            method_name: method.to_string(),
            payload,
            response_timeout_in_seconds: response_timeout,
            connect_timeout_in_seconds: connect_timeout,
        };
        match method_answer(self.svc.client().invoke_method(id, &call).await) {
            Ok((200, body)) => Outcome::Answered {
                status: body["status"].as_i64().unwrap_or(-1),
                body,
            },
            Ok((status, body)) => Outcome::Answered {
                status: i64::from(status),
                body,
            },
            Err(e) => Outcome::HubUnreachable(e),
        }
    }

    /// PATCHes desired properties; the new desired `$version` when the hub took it.
    pub async fn set_desired(&self, id: &str, desired: Value) -> Result<u64, String> {
        let patch = TwinPatch {
            desired: desired.as_object().expect("desired is an object").clone(),
            ..TwinPatch::default()
        };
        let twin = self
            .svc
            .client()
            .patch_twin(id, &patch)
            .await
            .map_err(|e| e.to_string())?;
        twin.properties.desired["$version"]
            .as_u64()
            .ok_or_else(|| format!("no $version in {:?}", twin.properties.desired))
    }

    /// `PUT /jobs/v2/{id}` with a hand-written body: (HTTP status, body).
    pub async fn put_job(&self, id: &str, body: Value) -> Result<(u16, Value), String> {
        self.send(reqwest::Method::PUT, &format!("/jobs/v2/{id}"), Some(body))
            .await
    }

    pub async fn get_job(&self, id: &str) -> Result<Value, String> {
        let job = self.svc.client().get_job(id).await;
        Ok(serde_json::to_value(job.map_err(|e| e.to_string())?).unwrap())
    }

    pub async fn twin(&self, id: &str) -> Result<Value, String> {
        let twin = self.svc.client().get_twin(id).await;
        Ok(serde_json::to_value(twin.map_err(|e| e.to_string())?).unwrap())
    }
}

/// Tally of a run, printed at the end of each scenario.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_status: BTreeMap<String, u64>,
    pub succeeded: BTreeMap<u8, Vec<u32>>,
    /// Calls that did not succeed, with the tag they carried (may or may not have been written).
    pub not_succeeded: BTreeMap<u8, Vec<u32>>,
    pub desired_sent: u64,
    pub desired_refused_by_hub: u64,
}

impl Tally {
    pub fn record(&mut self, unit: u8, tag: u32, outcome: &Outcome) {
        let key = match outcome {
            Outcome::Answered { status, .. } => status.to_string(),
            Outcome::HubUnreachable(_) => "hub unreachable".into(),
        };
        *self.by_status.entry(key).or_default() += 1;
        let list = if outcome.succeeded() {
            &mut self.succeeded
        } else {
            &mut self.not_succeeded
        };
        list.entry(unit).or_default().push(tag);
    }

    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (u, v) in other.succeeded {
            self.succeeded.entry(u).or_default().extend(v);
        }
        for (u, v) in other.not_succeeded {
            self.not_succeeded.entry(u).or_default().extend(v);
        }
        self.desired_sent += other.desired_sent;
        self.desired_refused_by_hub += other.desired_refused_by_hub;
    }

    pub fn methods(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// Every succeeded call is in the write log exactly once, on its own unit; a call that
    /// did not succeed is there at most once; nothing else was written with setHold.
    /// Returns how many unsuccessful calls had nevertheless been written.
    pub fn check_write_log(&self, sim: &DoorSimHandle, units: &[u8]) -> u64 {
        let mut written_but_failed = 0;
        for &unit in units {
            let writes = tagged_writes(sim, unit);
            let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
            for w in &writes {
                *counts.entry(*w).or_default() += 1;
            }
            let ok = self.succeeded.get(&unit).cloned().unwrap_or_default();
            let failed = self.not_succeeded.get(&unit).cloned().unwrap_or_default();
            for t in &ok {
                assert_eq!(
                    counts.get(t).copied().unwrap_or(0),
                    1,
                    "unit {unit}: method with tag {t} succeeded, so it must be written exactly once"
                );
            }
            for t in &failed {
                let n = counts.get(t).copied().unwrap_or(0);
                assert!(n <= 1, "unit {unit}: failed call {t} written {n} times");
                written_but_failed += u64::from(n);
            }
            for (t, _) in counts {
                assert!(
                    ok.contains(&t) || failed.contains(&t),
                    "unit {unit}: write of {t} that no call asked for (misapplied?)"
                );
                assert_eq!(t / 1_000_000, u32::from(unit), "written to the wrong unit");
            }
        }
        written_but_failed
    }
}

/// Waits until every door's link is `Connected` again.
pub async fn wait_all_links(gw: &Gateway, env: &Env) {
    for d in &env.doors {
        wait_link(gw, &d.device_id).await;
    }
}

/// Polls until `pred` holds (bounded by [`LIMIT`]).
pub async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    bounded(what, async {
        while !pred() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// After the faults: each door's Building/Floor registers equal the twin's desired values,
/// and the twin's reported acks name the final desired `$version`.
pub async fn converged(env: &Env, client: &Client) {
    for d in &env.doors {
        let deadline = Instant::now() + LIMIT;
        loop {
            let twin = client.twin(&d.device_id).await.expect("hub up");
            let desired = &twin["properties"]["desired"];
            let reported = &twin["properties"]["reported"];
            let building = desired["Building"].as_u64();
            let floor = desired["Floor"].as_i64();
            let regs = (
                env.sim.handle.holding(d.unit, 0),
                env.sim.handle.holding(d.unit, 1) as i16,
            );
            let regs_ok = building.is_none_or(|b| u64::from(regs.0) == b)
                && floor.is_none_or(|f| i64::from(regs.1) == f);
            let acks_ok = ["Building", "Floor"].iter().all(|p| {
                desired[p].is_null()
                    || (reported[p]["ac"] == json!(200) && reported[p]["value"] == desired[p])
            });
            if regs_ok && acks_ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not converged: registers (Building, Floor) = {regs:?}, desired {desired}, reported Building {} Floor {}",
                d.device_id,
                reported["Building"],
                reported["Floor"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Restarts the hub on the same data dir and ports; returns the environment with the new hub.
pub async fn restart_hub(env: Env) -> Env {
    restart_hub_with(env, |c| c).await
}

/// [`restart_hub`] with changes to the hub's config (job limits).
pub async fn restart_hub_with(env: Env, f: impl FnOnce(HubConfig) -> HubConfig) -> Env {
    let mqtt = env.hub.mqtt_addr;
    let https = env.hub.https_addr;
    let data = env.dir.path().join("hub");
    let Env {
        dir,
        hub,
        sim,
        doors,
        metrics,
        bus_toml,
    } = env;
    bounded("hub shutdown", hub.shutdown()).await;
    let mut cfg = f(HubConfig::for_tests(data));
    cfg.mqtt_addr = mqtt;
    cfg.https_addr = https;
    let hub = bounded("hub restart", fieldhub::start(cfg)).await.unwrap();
    Env {
        dir,
        hub,
        sim,
        doors,
        metrics,
        bus_toml,
    }
}
