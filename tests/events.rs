//! Door events through the real gateway and fieldhub: stored before they are
//! sent, removed on PUBACK, delivered per door in order after a hub outage longer than the
//! operation timeout and after a SIGKILL of the gateway during one, the oldest dropped (and
//! counted) when the store is full, a backlog drained at the configured pace while methods
//! are answered, no disk writes while doors are idle, a unit going silent and coming back as
//! events, the gateway serving on without a usable store, and events stored while a reported
//! patch waits on a blackholed uplink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldgate::events::{EventBody, EventStore};
use fieldgate::gateway::Gateway;
use fieldgate::metrics::Metrics;
use fieldhub::{HubConfig, RunningHub};

use crate::support::harness::{bounded, wait_link, Env};
use crate::support::process::{signal, wait_doors_ready, Service};
use crate::support::reliability::{config_text, eventually, gateway_with, parse_config};

/// doorState (input 0) is an event point.
fn events_config(env: &Env, hub_extra: &str, events_extra: &str) -> String {
    let text = config_text(env, hub_extra, "");
    let with_point = text.replacen(
        "enum = { 0 = \"closed\", 1 = \"open\", 2 = \"forced\", 3 = \"held\" }\n",
        "enum = { 0 = \"closed\", 1 = \"open\", 2 = \"forced\", 3 = \"held\" }\ntelemetry = true\n",
        1,
    );
    assert_ne!(with_point, text, "the harness profile has doorState");
    with_point.replacen("[events]\n", &format!("[events]\n{events_extra}\n"), 1)
}

const STATES: [&str; 4] = ["closed", "open", "forced", "held"];

/// One received event, checked against its properties.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    point: String,
    seq: u64,
    value: String,
}

fn received(hub: &RunningHub, id: &str) -> Vec<Received> {
    received_by(&hub.hub, id)
}

fn received_by(hub: &fieldhub::Hub, id: &str) -> Vec<Received> {
    hub.telemetry(id)
        .into_iter()
        .map(|m| {
            let body: EventBody = serde_json::from_slice(&m.payload)
                .unwrap_or_else(|e| panic!("{id}: event body {:?}: {e}", m.payload));
            let prop = |k: &str| {
                m.properties
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("{id}: no {k} in {:?}", m.properties))
            };
            assert_eq!(prop("$.ct"), "application/json");
            assert_eq!(prop("$.ce"), "utf-8");
            assert_eq!(prop("seq"), body.seq.to_string(), "seq travels in both");
            assert_eq!(prop("iothub-creation-time-utc"), body.at);
            Received {
                point: body.point,
                seq: body.seq,
                value: match body.value {
                    serde_json::Value::String(v) => v,
                    other => other.to_string(),
                },
            }
        })
        .collect()
}

/// Events per door as a consumer keeps them: duplicates (a seq not above the highest seen)
/// dropped. Asserts that what remains is in order; returns it and the duplicate count.
fn dedup(all: &[Received]) -> (Vec<Received>, usize) {
    let mut out: Vec<Received> = Vec::new();
    let mut dups = 0;
    for r in all {
        match out.last() {
            Some(last) if r.seq <= last.seq => {
                assert!(
                    out.iter().any(|o| o == r),
                    "a repeated seq carries the same event: {r:?}"
                );
                dups += 1;
            }
            _ => out.push(r.clone()),
        }
    }
    (out, dups)
}

/// Sets every door's doorState to `STATES[v]`.
fn set_state(env: &Env, v: usize) {
    for d in &env.doors {
        env.sim.handle.set_input(d.unit, 0, v as u16);
    }
}

/// The seq of the newest stored event of a door.
fn newest(store: &EventStore, id: &str) -> u64 {
    store.read(id).unwrap().last().map_or(0, |e| e.seq)
}

/// Steps every door through `n` new states (each different from the one before), waiting
/// after each step until every door's event is in the store. Returns the states set.
async fn steps_stored(env: &Env, store: &EventStore, first_seq: u64, n: usize) -> Vec<usize> {
    let mut set = Vec::new();
    for i in 0..n {
        let v = 1 + (i % 3);
        set_state(env, v);
        set.push(v);
        let want = first_seq + i as u64;
        eventually(&format!("event {want} stored"), || {
            env.doors
                .iter()
                .all(|d| newest(store, &d.device_id) >= want)
        })
        .await;
    }
    set
}

/// Takes the hub down; returns what it had received, per door, and what to restart it with.
/// Read after the shutdown: an event acknowledged while the hub was stopping is one it had.
async fn stop_hub(env: Env) -> (EnvParts, BTreeMap<String, Vec<Received>>) {
    let handle = env.hub.hub.clone();
    let Env {
        dir,
        hub,
        sim,
        doors,
        metrics,
        bus_toml,
    } = env;
    let addrs = (hub.mqtt_addr, hub.https_addr);
    bounded("hub shutdown", hub.shutdown()).await;
    let got = doors
        .iter()
        .map(|d| (d.device_id.clone(), received_by(&handle, &d.device_id)))
        .collect();
    (
        EnvParts {
            dir,
            sim,
            doors,
            metrics,
            bus_toml,
            addrs,
        },
        got,
    )
}

struct EnvParts {
    dir: tempfile::TempDir,
    sim: fieldhub::doorsim::DoorSim,
    doors: Vec<crate::support::harness::TestDoor>,
    metrics: Arc<Metrics>,
    bus_toml: String,
    addrs: (std::net::SocketAddr, std::net::SocketAddr),
}

impl EnvParts {
    fn sim(&self) -> &fieldhub::doorsim::DoorSimHandle {
        &self.sim.handle
    }

    async fn start_hub(self) -> Env {
        let mut cfg = HubConfig::for_tests(self.dir.path().join("hub"));
        cfg.mqtt_addr = self.addrs.0;
        cfg.https_addr = self.addrs.1;
        let hub = bounded("hub restart", fieldhub::start(cfg)).await.unwrap();
        Env {
            dir: self.dir,
            hub,
            sim: self.sim,
            doors: self.doors,
            metrics: self.metrics,
            bus_toml: self.bus_toml,
        }
    }
}

/// Waits until the hub has each door's events up to `last[door]`.
async fn wait_received(env: &Env, last: &BTreeMap<String, u64>) {
    bounded("events delivered", async {
        loop {
            let done = last
                .iter()
                .all(|(id, want)| received(&env.hub, id).iter().any(|r| r.seq == *want));
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn events_during_a_hub_outage_arrive_in_door_order_once_it_returns() {
    let env = Env::start(2).await;
    let gw = gateway_with(&env, &events_config(&env, "operation_timeout = \"1s\"", "")).await;
    let store = gw.event_store().expect("event store open").clone();
    // The first poll is each door's first event: seq 1, "closed".
    let mut last: BTreeMap<String, u64> =
        env.doors.iter().map(|d| (d.device_id.clone(), 1)).collect();
    wait_received(&env, &last).await;
    let before_outage = steps_stored(&env, &store, 2, 2).await;
    let (parts, mut got) = stop_hub(env).await;

    // Down for longer than the operation timeout (1 s), doors changing all along.
    let down = Instant::now();
    let mut during = Vec::new();
    let mut seq = 4;
    while down.elapsed() < Duration::from_millis(1500) || during.len() < 5 {
        let v = 1 + (during.len() % 3);
        for d in &parts.doors {
            parts.sim().set_input(d.unit, 0, v as u16);
        }
        during.push(v);
        eventually(&format!("event {seq} stored during the outage"), || {
            parts
                .doors
                .iter()
                .all(|d| newest(&store, &d.device_id) >= seq)
        })
        .await;
        seq += 1;
    }
    // The gauges follow each commit (the file shows it first).
    eventually("the outage's events counted as pending", || {
        parts.metrics.events_pending.get() >= 2 * during.len() as i64
            && parts.metrics.events_oldest_age.get() > 0.0
    })
    .await;
    let env = parts.start_hub().await;
    for d in &env.doors {
        last.insert(d.device_id.clone(), seq - 1);
    }
    wait_received(&env, &last).await;

    let mut want = vec![STATES[0].to_string()];
    want.extend(
        before_outage
            .iter()
            .chain(&during)
            .map(|v| STATES[*v].to_string()),
    );
    for d in &env.doors {
        let mut all = got.remove(&d.device_id).unwrap_or_default();
        all.extend(received(&env.hub, &d.device_id));
        let (events, dups) = dedup(&all);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..seq).collect::<Vec<_>>(),
            "{}: every event, in order",
            d.device_id
        );
        let values: Vec<String> = events.into_iter().map(|e| e.value).collect();
        assert_eq!(values, want, "{}: the door's states in order", d.device_id);
        println!("{}: {} events, {dups} duplicates", d.device_id, seqs.len());
    }
    eventually("store emptied by the PUBACKs", || {
        env.metrics.events_pending.get() == 0
    })
    .await;
    assert!(env.metrics.events_delivered.get() >= 2 * (seq - 1));
    assert_eq!(
        env.metrics
            .events_dropped
            .with_label_values(&["full"])
            .get(),
        0
    );
    gw.shutdown().await;
}

/// Readings of a door without event points could reach nobody while its link is down: its
/// line rests (its bus is told when the link goes down, not asked at every turn) and polling
/// resumes when the link is back. Fails if the bus keeps polling such doors, or never resumes.
#[tokio::test]
async fn a_door_without_event_points_rests_its_line_while_its_link_is_down() {
    let env = Env::start(2).await;
    let gw = gateway_with(&env, &config_text(&env, "operation_timeout = \"1s\"", "")).await;
    let units: Vec<u8> = env.doors.iter().map(|d| d.unit).collect();
    let ids: Vec<String> = env.doors.iter().map(|d| d.device_id.clone()).collect();
    let polled = |sim: &fieldhub::doorsim::DoorSimHandle| -> Vec<u64> {
        units.iter().map(|u| sim.request_count(*u)).collect()
    };
    let start = polled(&env.sim.handle);
    eventually("both doors polled", || {
        polled(&env.sim.handle)
            .iter()
            .zip(&start)
            .all(|(now, before)| now > before)
    })
    .await;
    let (parts, _) = stop_hub(env).await;
    eventually("both links down", || {
        ids.iter()
            .all(|id| !gw.link(id).is_some_and(|l| l.is_connected()))
    })
    .await;
    // A cycle already on the line may end: at most one more per door (two reads each).
    let down = polled(parts.sim());
    // A window of 10 poll intervals (200 ms): an absence needs one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = polled(parts.sim());
    for ((unit, d), a) in units.iter().zip(&down).zip(&after) {
        assert!(
            a - d <= 2,
            "unit {unit}: {} requests in 2 s with its link down (10 polls' worth would be 20)",
            a - d
        );
    }
    let env = parts.start_hub().await;
    for id in &ids {
        wait_link(&gw, id).await;
    }
    eventually("both doors polled again", || {
        polled(&env.sim.handle)
            .iter()
            .zip(&after)
            .all(|(now, before)| *now >= before + 4)
    })
    .await;
    gw.shutdown().await;
}

/// A metric's value from the gateway's `/metrics` text (0 when absent).
async fn metric(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_metric(base: &str, name: &str, pred: impl Fn(f64) -> bool) {
    bounded(&format!("metric {name}"), async {
        loop {
            if pred(metric(base, name).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn sigkill_and_restart_during_a_hub_outage_lose_no_stored_event() {
    let env = Env::start(2).await;
    let path = env.dir.path().join("fieldgate.toml");
    std::fs::write(&path, events_config(&env, "operation_timeout = \"1s\"", "")).unwrap();
    let svc = Service::start(&path, env.dir.path().join("run1.log")).await;
    let base = svc.metrics_base().await;
    wait_doors_ready(&env, &["door-1", "door-2"]).await;
    let mut last: BTreeMap<String, u64> =
        env.doors.iter().map(|d| (d.device_id.clone(), 1)).collect();
    wait_received(&env, &last).await;
    wait_metric(&base, "fieldgate_events_pending", |v| v == 0.0).await;
    let (parts, mut got) = stop_hub(env).await;
    let down = Instant::now();

    // Three changes per door stored while the hub is away, then SIGKILL.
    let mut states = vec![0];
    for (i, v) in [1u16, 2, 3].into_iter().enumerate() {
        for d in &parts.doors {
            parts.sim().set_input(d.unit, 0, v);
        }
        states.push(v as usize);
        wait_metric(&base, "fieldgate_events_pending", |n| {
            n >= 2.0 * (i + 1) as f64
        })
        .await;
    }
    signal(svc.pid, "-KILL");
    let mut child = svc.child;
    assert!(!bounded("killed", child.wait()).await.unwrap().success());

    // Restarted, still without a hub: the stored events are there, numbering goes on, and
    // the door's last stored state is the baseline (no event for an unchanged door).
    let svc = Service::start(&path, parts.dir.path().join("run2.log")).await;
    let base = svc.metrics_base().await;
    wait_metric(&base, "fieldgate_events_pending", |n| n == 6.0).await;
    // A backlog (and a hub that is away) does not make the gateway unready.
    let ready = bounded("ready with a backlog", async {
        loop {
            let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
            if res.status() == 200 {
                return res.json::<serde_json::Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(ready["events_pending"], 6, "{ready}");
    assert_eq!(ready["doors_connected"], 0, "{ready}");
    // More changes until the outage has outlasted the operation timeout (1 s) by half.
    let mut i = 0;
    while i < 2 || down.elapsed() < Duration::from_millis(1500) {
        let v = [1u16, 0][i % 2];
        for d in &parts.doors {
            parts.sim().set_input(d.unit, 0, v);
        }
        states.push(v as usize);
        i += 1;
        wait_metric(&base, "fieldgate_events_pending", |n| {
            n >= 6.0 + 2.0 * i as f64
        })
        .await;
    }
    let last_seq = states.len() as u64;
    let env = parts.start_hub().await;
    for d in &env.doors {
        last.insert(d.device_id.clone(), last_seq);
    }
    wait_received(&env, &last).await;
    let want: Vec<String> = states.iter().map(|v| STATES[*v].to_string()).collect();
    for d in &env.doors {
        let mut all = got.remove(&d.device_id).unwrap_or_default();
        all.extend(received(&env.hub, &d.device_id));
        let (events, dups) = dedup(&all);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=last_seq).collect::<Vec<_>>(),
            "{}: none lost",
            d.device_id
        );
        let values: Vec<String> = events.into_iter().map(|e| e.value).collect();
        assert_eq!(values, want, "{}", d.device_id);
        println!(
            "{}: {last_seq} events across a SIGKILL, {dups} duplicates",
            d.device_id
        );
    }
    wait_metric(&base, "fieldgate_events_pending", |n| n == 0.0).await;
    signal(svc.pid, "-TERM");
    let mut child = svc.child;
    assert!(bounded("exit", child.wait()).await.unwrap().success());
}

#[tokio::test]
async fn a_full_store_drops_the_oldest_counts_them_and_delivers_the_newest() {
    let env = Env::start(4).await;
    // 4 KiB: about 40 events of ~100 bytes.
    let text = events_config(&env, "", "max_bytes = 4096");
    let gw = gateway_with(&env, &text).await;
    let store = gw.event_store().expect("event store open").clone();
    let firsts: BTreeMap<String, u64> =
        env.doors.iter().map(|d| (d.device_id.clone(), 1)).collect();
    wait_received(&env, &firsts).await;
    eventually("first events acknowledged", || {
        env.metrics.events_pending.get() == 0
    })
    .await;
    let (parts, mut got) = stop_hub(env).await;
    let env_store = store.clone();
    let steps = 16;
    // The same steps as `steps_stored`, on the parts of the environment.
    for i in 0..steps {
        let v = 1 + (i % 3);
        for d in &parts.doors {
            parts.sim().set_input(d.unit, 0, v as u16);
        }
        let want = 2 + i as u64;
        eventually(&format!("event {want} stored"), || {
            parts
                .doors
                .iter()
                .all(|d| newest(&env_store, &d.device_id) >= want)
        })
        .await;
    }
    let env = parts.start_hub().await;
    let last_seq = 1 + steps as u64;
    let last: BTreeMap<String, u64> = env
        .doors
        .iter()
        .map(|d| (d.device_id.clone(), last_seq))
        .collect();
    wait_received(&env, &last).await;
    let dropped = env
        .metrics
        .events_dropped
        .with_label_values(&["full"])
        .get();
    assert!(dropped > 0, "64 events of ~100 bytes overflow 4 KiB");
    let mut delivered_after = 0;
    for d in &env.doors {
        let after = received(&env.hub, &d.device_id);
        let (events, _) = dedup(&after);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..=last_seq).collect::<Vec<_>>(),
            "{}: the newest events, without gaps among them",
            d.device_id
        );
        delivered_after += seqs.len() as u64;
        got.remove(&d.device_id);
    }
    assert_eq!(
        delivered_after + dropped,
        4 * steps as u64,
        "every event of the outage was either delivered or counted as dropped"
    );
    println!("store full: {dropped} oldest dropped, {delivered_after} delivered");
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_doors_cost_no_disk_writes() {
    let env = Env::start(2).await;
    let text = events_config(&env, "", "");
    let gw = gateway_with(&env, &text).await;
    let firsts: BTreeMap<String, u64> =
        env.doors.iter().map(|d| (d.device_id.clone(), 1)).collect();
    wait_received(&env, &firsts).await;
    eventually("first events acknowledged", || {
        env.metrics.events_pending.get() == 0
    })
    .await;
    gw.shutdown().await;

    // Same store, doors unchanged: their last stored states are the baseline.
    let metrics = Arc::new(Metrics::new());
    let gw = Gateway::start(&parse_config(&env, &text), Arc::clone(&metrics)).unwrap();
    for d in &env.doors {
        wait_link(&gw, &d.device_id).await;
    }
    let file = gw.event_store().unwrap().path().to_path_buf();
    let meta = |p: &std::path::Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.len(), m.modified().unwrap())
    };
    let before = meta(&file);
    let telemetry: usize = env
        .doors
        .iter()
        .map(|d| env.hub.hub.telemetry(&d.device_id).len())
        .sum();
    // Ten poll cycles of every door.
    let reads = |u| env.sim.handle.request_count(u);
    let start: Vec<u64> = env.doors.iter().map(|d| reads(d.unit)).collect();
    eventually("ten poll cycles", || {
        env.doors
            .iter()
            .zip(&start)
            .all(|(d, s)| reads(d.unit) >= s + 10 * 2)
    })
    .await;
    let commits: u64 = ["durable", "lazy"]
        .iter()
        .map(|d| metrics.events_commits.with_label_values(&[d, "ok"]).get())
        .sum();
    assert_eq!(commits, 0, "no commit while nothing changes");
    assert_eq!(meta(&file), before, "the store file is untouched");
    let now: usize = env
        .doors
        .iter()
        .map(|d| env.hub.hub.telemetry(&d.device_id).len())
        .sum();
    assert_eq!(
        now, telemetry,
        "no event for unchanged doors after a restart"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_draining_backlog_is_paced_and_methods_are_answered_meanwhile() {
    let env = Env::start(1).await;
    // 5 events/s for the whole gateway: a backlog of 20 takes at least 3 s (5 at once, then
    // one every 200 ms).
    let text = events_config(&env, "operation_timeout = \"1s\"", "send_rate = 5");
    let gw = gateway_with(&env, &text).await;
    let store = gw.event_store().expect("event store open").clone();
    let id = env.doors[0].device_id.clone();
    let mut last = BTreeMap::from([(id.clone(), 1)]);
    wait_received(&env, &last).await;
    eventually("first event acknowledged", || {
        env.metrics.events_pending.get() == 0
    })
    .await;
    let (parts, _) = stop_hub(env).await;
    for i in 0..20u64 {
        parts
            .sim()
            .set_input(parts.doors[0].unit, 0, 1 + (i % 3) as u16);
        eventually("event stored", || newest(&store, &id) > i + 1).await;
    }
    let env = parts.start_hub().await;
    wait_link(&gw, &id).await;
    let drain_start = Instant::now();
    let client = crate::support::reliability::Client::new(&env.hub);
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let out = client
            .invoke(&id, "lockDoor", serde_json::json!(null), 10, 5)
            .await;
        assert!(out.succeeded(), "{out:?}");
        slowest = slowest.max(t.elapsed());
    }
    let pending_after_methods = env.metrics.events_pending.get();
    assert!(
        pending_after_methods > 0,
        "the methods were answered while the backlog drained"
    );
    last.insert(id.clone(), 21);
    wait_received(&env, &last).await;
    let drained = drain_start.elapsed();
    assert!(
        drained >= Duration::from_millis(2500),
        "paced at 5/s: 20 events took {drained:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a method waited {slowest:?} behind the backlog"
    );
    let (events, dups) = dedup(&received(&env.hub, &id));
    assert_eq!(events.last().map(|e| e.seq), Some(21));
    println!(
        "drain of 20 events at 5/s took {drained:?}; 3 methods meanwhile, slowest {slowest:?}; {} pending after them; {dups} duplicates",
        pending_after_methods
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_unit_that_stops_answering_and_comes_back_is_a_pair_of_events() {
    let env = Env::start(1).await;
    let gw = gateway_with(&env, &events_config(&env, "", "")).await;
    let id = env.doors[0].device_id.clone();
    wait_received(&env, &BTreeMap::from([(id.clone(), 1)])).await;
    env.sim
        .handle
        .set_fault(1, fieldhub::doorsim::Fault::NoReply);
    wait_received(&env, &BTreeMap::from([(id.clone(), 2)])).await;
    env.sim.handle.set_fault(1, fieldhub::doorsim::Fault::None);
    wait_received(&env, &BTreeMap::from([(id.clone(), 3)])).await;
    let (events, _) = dedup(&received(&env.hub, &id));
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.point.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("doorState", "closed"),
            (fieldgate::bridge::poll::REACHABLE_EVENT, "false"),
            (fieldgate::bridge::poll::REACHABLE_EVENT, "true")
        ]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_a_usable_store_events_go_out_live_and_the_gateway_keeps_serving() {
    let env = Env::start(1).await;
    // A directory that cannot be created: its parent is a file.
    let blocker = env.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let text = events_config(&env, "", "").replacen(
        &format!("dir = \"{}\"", env.dir.path().join("state").display()),
        &format!("dir = \"{}\"", blocker.join("state").display()),
        1,
    );
    let gw = gateway_with(&env, &text).await;
    assert!(gw.event_store().is_none());
    let id = env.doors[0].device_id.clone();
    let client = crate::support::reliability::Client::new(&env.hub);
    let out = client
        .invoke(&id, "lockDoor", serde_json::json!(null), 10, 5)
        .await;
    assert!(out.succeeded(), "{out:?}");
    // The door's first state goes out live, without a sequence number, and is counted.
    bounded("live event", async {
        while env.hub.hub.telemetry(&id).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let msg = &env.hub.hub.telemetry(&id)[0];
    let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(body["point"], "doorState");
    assert!(body.get("seq").is_none(), "{body}");
    assert!(
        env.metrics
            .events_dropped
            .with_label_values(&["store_error"])
            .get()
            >= 1
    );
    gw.shutdown().await;
}

/// A TCP relay to `target` whose traffic can be held (a blackholed uplink: connections stay
/// open, nothing passes) and let through again. Bytes read while held are kept, not dropped.
async fn holdable_relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held, _) = tokio::sync::watch::channel(false);
    let hold = held.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            for (mut r, mut w) in [(cr, uw), (ur, cw)] {
                let mut held = hold.subscribe();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if held.wait_for(|h| !*h).await.is_err() {
                            break;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    (addr, held)
}

#[tokio::test]
async fn a_reported_patch_waiting_on_a_blackholed_uplink_never_holds_back_door_events() {
    let env = Env::start(1).await;
    let (relay, held) = holdable_relay(env.hub.mqtt_addr).await;
    // A patch waits up to the operation timeout and the link notices a dead connection at
    // the keep-alive: both far beyond this test's bound, so only events stored beside the
    // waiting patch can pass it.
    let text = events_config(
        &env,
        "operation_timeout = \"120s\"\nkeep_alive = \"120s\"",
        "",
    )
    .replacen(&env.hub_host(), &format!("localhost:{}", relay.port()), 1);
    let gw = gateway_with(&env, &text).await;
    let store = gw.event_store().expect("event store open").clone();
    let id = env.doors[0].device_id.clone();
    let firsts = BTreeMap::from([(id.clone(), 1)]);
    wait_received(&env, &firsts).await;
    eventually("first reported patch answered", || {
        env.metrics
            .reported_patches
            .with_label_values(&["ok"])
            .get()
            > 0
    })
    .await;
    let answered = env
        .metrics
        .reported_patches
        .with_label_values(&["ok"])
        .get();

    held.send_replace(true);
    // The cycle that stores event 2 then sends doorState's reported patch, which waits.
    set_state(&env, 2);
    eventually("event 2 stored", || newest(&store, &id) >= 2).await;
    // Later cycles store their events while that patch is still unanswered.
    set_state(&env, 1);
    eventually("event 3 stored beside the waiting patch", || {
        newest(&store, &id) >= 3
    })
    .await;
    set_state(&env, 3);
    eventually("event 4 stored beside the waiting patch", || {
        newest(&store, &id) >= 4
    })
    .await;
    let patches = |result: &str| {
        env.metrics
            .reported_patches
            .with_label_values(&[result])
            .get()
    };
    assert_eq!(
        (patches("ok"), patches("failed")),
        (answered, 0),
        "the patch was still waiting when the events were stored"
    );
    assert_eq!(
        gw.link(&id).map(|l| l.state()),
        Some(fieldgate::link::LinkState::Connected),
        "the uplink looked alive throughout"
    );

    // The uplink heals: the events arrive in order, and the twin ends on the newest state.
    held.send_replace(false);
    wait_received(&env, &BTreeMap::from([(id.clone(), 4)])).await;
    let (events, _) = dedup(&received(&env.hub, &id));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    let values: Vec<&str> = events.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(values, ["closed", "forced", "open", "held"]);
    let svc = env.service();
    bounded("twin reports the newest state", async {
        loop {
            let twin = svc.twin(&id).await;
            if twin["properties"]["reported"]["doorState"] == "held" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    gw.shutdown().await;
}
