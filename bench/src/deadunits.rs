//! Workload 7, dead units on a shared RS-485 line: doorsim on a pty at 9600 baud 8E1 with
//! some units silent, a `lockDoor` job over every door. The floor is the line time of the
//! healthy doors' write + read-back plus one transaction timeout per dead unit (what it costs
//! to learn that a unit does not answer); every healthy door must succeed. Then the answer
//! times of calls to a dead door (refused without using the line) and of a healthy door's
//! calls made side by side with calls to a dead one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::doorsim::{self, DoorSimConfig, Fault, Listen};
use serde_json::json;

use crate::bridges::Launch;
use crate::env::{Door, HubTuning, MapSpec, World};
use crate::floor::modbus::Reads;
use crate::gateway::GatewayProc;
use crate::jobs::{device_records, method_job, run_job, wait_methods};
use crate::saturation::lock_door_physical;

/// The bus timeout of this workload: a realistic one for 9600 baud (a write and its
/// read-back take ~50 ms of line time there).
pub const TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadUnits {
    pub baud: u32,
    pub doors: usize,
    pub dead: Vec<u8>,
    pub timeout_seconds: f64,
    pub job_seconds: f64,
    /// Healthy doors' line time + one timeout per dead unit.
    pub floor_seconds: f64,
    pub job_ratio: f64,
    pub healthy_ok: usize,
    pub healthy: usize,
    /// Statuses the dead doors answered with (the gateway's own).
    pub dead_statuses: Vec<i32>,
    /// Median and worst answer time of direct calls to a dead door once it is known dead.
    pub refused_median_ms: f64,
    pub refused_max_ms: f64,
    /// A healthy door's calls, each made together with a call to a dead door.
    pub beside_dead_p50_ms: f64,
    pub beside_dead_p99_ms: f64,
    pub beside_dead_failed: usize,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn bus(path: &std::path::Path, baud: u32) -> String {
    format!(
        "[[bus]]\nname = \"bus0\"\nserial = \"{}\"\nbaud = {baud}\nparity = \"even\"\ndata_bits = 8\nstop_bits = 1\ntimeout = \"{}ms\"\nretries = 1\ninter_request_delay = \"0ms\"\n",
        path.display(),
        TIMEOUT.as_millis()
    )
}

pub async fn run(
    world: &World,
    launch: &Launch,
    doors: &[Door],
    baud: u32,
    dead: &[u8],
    calls: usize,
) -> anyhow::Result<DeadUnits> {
    let sim = doorsim::start(DoorSimConfig {
        listen: Listen::RtuPty,
        units: doors.iter().map(|d| d.unit).collect(),
        line_baud: Some(baud),
    })
    .await?;
    for &u in dead {
        sim.handle.set_fault(u, Fault::NoReply);
    }
    let b = PathBuf::from(
        sim.serial_path
            .clone()
            .context("doorsim's pty has no path")?,
    );
    let ids: Vec<String> = doors.iter().map(|d| d.device_id.clone()).collect();
    let spec = MapSpec {
        hub_host: format!("localhost:{}", world.hub.mqtt_addr.port()),
        ca: &world.hub.ca_path,
        metrics_port: 0,
        connects_per_second: 0,
        buses: vec![bus(&b, baud)],
        // Polls far apart: the line carries the job's frames (and the dead units' probes).
        poll_interval: "1h",
        doors,
        tuning: HubTuning::default(),
        reads: Reads::Two,
    };
    let gw = GatewayProc::start(
        world,
        &launch.gateway_bin,
        &format!("dead-{baud}"),
        spec,
        &launch.gateway_env,
    )?;
    world
        .wait_connected(&ids, Instant::now(), Duration::from_secs(120))
        .await?;
    wait_methods(world, &ids).await?;

    let job_id = format!("dead-{baud}");
    // IoT Hub's smallest response timeout, as an operator's job would have.
    let mut body = method_job(&job_id, &ids);
    body["cloudToDeviceMethod"]["responseTimeoutInSeconds"] = json!(5);
    let job = run_job(world, body, Duration::from_secs(120)).await?;
    let records = device_records(world, &job_id);
    let is_dead = |id: &str| {
        doors
            .iter()
            .any(|d| d.device_id == id && dead.contains(&d.unit))
    };
    let mut healthy_ok = 0;
    let mut dead_statuses = Vec::new();
    for r in &records {
        let status = r
            .outcome
            .as_ref()
            .and_then(|o| o.device_method_response.as_ref())
            .map(|m| m.status);
        if is_dead(&r.device_id) {
            dead_statuses.push(status.unwrap_or(0));
        } else if status == Some(200) {
            healthy_ok += 1;
        }
    }
    let healthy = doors.len() - dead.len();
    let healthy_line = lock_door_physical(baud) * healthy as u32;
    let floor = healthy_line + TIMEOUT * dead.len() as u32;

    // Answer times beside a dead unit: direct methods through the hub.
    let hub = &world.hub.hub;
    let dead_id = doors
        .iter()
        .find(|d| dead.contains(&d.unit))
        .map(|d| d.device_id.clone())
        .context("no dead door")?;
    let live_id = doors
        .iter()
        .find(|d| !dead.contains(&d.unit))
        .map(|d| d.device_id.clone())
        .context("no healthy door")?;
    let t = Duration::from_secs(5);
    let mut refused = Vec::new();
    let mut beside = Vec::new();
    let mut beside_failed = 0;
    for _ in 0..calls {
        let started = Instant::now();
        let d = async {
            let r = hub
                .invoke_method(&dead_id, "lockDoor", json!({}), t, t)
                .await;
            (started.elapsed(), r.map(|r| r.status).unwrap_or(0))
        };
        let l = async {
            let r = hub
                .invoke_method(&live_id, "lockDoor", json!({}), t, t)
                .await;
            (started.elapsed(), r.map(|r| r.status).unwrap_or(0))
        };
        let ((dt, ds), (lt, ls)) = tokio::join!(d, l);
        if ds == 503 {
            refused.push(dt.as_secs_f64() * 1e3);
        }
        if ls == 200 {
            beside.push(lt.as_secs_f64() * 1e3);
        } else {
            beside_failed += 1;
        }
    }
    gw.stop().await?;
    world
        .wait_disconnected(&ids, Duration::from_secs(30))
        .await?;
    sim.shutdown().await;
    refused.sort_by(f64::total_cmp);
    beside.sort_by(f64::total_cmp);
    Ok(DeadUnits {
        baud,
        doors: doors.len(),
        dead: dead.to_vec(),
        timeout_seconds: TIMEOUT.as_secs_f64(),
        job_seconds: job.wall.as_secs_f64(),
        floor_seconds: floor.as_secs_f64(),
        job_ratio: job.wall.as_secs_f64() / floor.as_secs_f64(),
        healthy_ok,
        healthy,
        dead_statuses,
        refused_median_ms: quantile(&refused, 0.5),
        refused_max_ms: refused.last().copied().unwrap_or(f64::NAN),
        beside_dead_p50_ms: quantile(&beside, 0.5),
        beside_dead_p99_ms: quantile(&beside, 0.99),
        beside_dead_failed: beside_failed,
    })
}
