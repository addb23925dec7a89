//! Workload 1, bus saturation on one RS-485 line: doorsim on the master side of a
//! pseudo-terminal it opens itself, with line-speed emulation (8E1: 11 bits a character),
//! the gateway on the other end through tokio-serial. (A `socat` pair, as the tests use,
//! adds a relay process and ~0.1 ms to every transaction: 5 % of one at 115200 baud.) A
//! `lockDoor` job over every door, and a poll cycle of every door, each against the line's
//! physical limit: every request and response frame × 11 bits / baud + a 3.5-character
//! silence after each frame.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::doorsim::{self, transaction_time, DoorSimConfig, Listen};

use crate::bridges::Launch;
use crate::env::{rtu_bus, Door, HubTuning, MapSpec, World};
use crate::floor::modbus::Reads;
use crate::gateway::{histogram_totals, GatewayProc};
use crate::jobs::JobRunner;

/// PDU sizes (function code included) of the frames a door costs. RTU adds the unit
/// address and the CRC (3 bytes); `transaction_time` adds them and the silences.
/// Write Single Coil: request fc + addr + value = 5, echoed response 5.
const WRITE_COIL: (usize, usize) = (5, 5);
/// Read Coils of 1 coil: request fc + addr + count = 5, response fc + byte count + 1 = 3.
const READ_ONE_COIL: (usize, usize) = (5, 3);
/// Read Input Registers 0-1: request 5, response fc + byte count + 4 = 6.
const READ_TWO_INPUTS: (usize, usize) = (5, 6);

fn tx(baud: u32, (req, resp): (usize, usize)) -> Duration {
    transaction_time(baud, req, Some(resp))
}

/// The line time of one door's `lockDoor`: the write and its read-back.
pub fn lock_door_physical(baud: u32) -> Duration {
    tx(baud, WRITE_COIL) + tx(baud, READ_ONE_COIL)
}

/// The line time of polling one door: the lock coil and the two input registers.
pub fn poll_physical(baud: u32) -> Duration {
    tx(baud, READ_ONE_COIL) + tx(baud, READ_TWO_INPUTS)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Saturation {
    pub baud: u32,
    pub doors: usize,
    /// How the lockDoor fan-out was made ("job" or "concurrent direct methods").
    pub job_via: String,
    pub job_seconds: f64,
    pub job_physical_seconds: f64,
    pub job_ratio: f64,
    /// First device start → last device end, from the hub's device-job records.
    pub job_device_span_seconds: Option<f64>,
    /// Job creation → first device start (the hub evaluating the job's query).
    pub job_start_delay_seconds: Option<f64>,
    /// Requests doorsim saw during the job (2 per door without retries).
    pub job_requests: u64,
    /// Sum of the gateway's own transaction times during the job (its histogram).
    pub job_gateway_line_seconds: Option<f64>,
    pub poll_cycle_seconds: f64,
    pub poll_physical_seconds: f64,
    pub poll_ratio: f64,
    pub poll_window_seconds: f64,
    pub poll_requests: u64,
    /// Mean time the gateway saw per transaction (request written → response decoded),
    /// from its `fieldgate_modbus_request_duration_seconds`, during the poll window.
    pub poll_gateway_transaction_ms: Option<f64>,
    /// The line's time per transaction (physical), for comparison.
    pub poll_physical_transaction_ms: f64,
}

/// Durations of the poll phase.
#[derive(Debug, Clone, Copy)]
pub struct PollWindow {
    pub warm_up: Duration,
    pub measure: Duration,
}

pub async fn run(
    world: &World,
    launch: &Launch,
    jobs: &JobRunner,
    doors: &[Door],
    baud: u32,
    window: PollWindow,
) -> anyhow::Result<Saturation> {
    let n = doors.len();
    let sim = doorsim::start(DoorSimConfig {
        listen: Listen::RtuPty,
        units: doors.iter().map(|d| d.unit).collect(),
        line_baud: Some(baud),
    })
    .await?;
    let b = PathBuf::from(
        sim.serial_path
            .clone()
            .context("doorsim's pty has no path")?,
    );
    let ids: Vec<String> = doors.iter().map(|d| d.device_id.clone()).collect();
    let spec = |poll: &'static str| MapSpec {
        hub_host: format!("localhost:{}", world.hub.mqtt_addr.port()),
        ca: &world.hub.ca_path,
        metrics_port: 0,
        connects_per_second: 0,
        buses: vec![rtu_bus(0, &b, baud)],
        poll_interval: poll,
        doors,
        tuning: HubTuning::default(),
        reads: Reads::Two,
    };

    // Job: polling far apart (each poller starts at a random point of its hour), so the line
    // carries the job's frames only.
    let gw = GatewayProc::start(
        world,
        &launch.gateway_bin,
        &format!("rtu-{baud}-job"),
        spec("1h"),
        &launch.gateway_env,
    )?;
    world
        .wait_connected(&ids, Instant::now(), Duration::from_secs(120))
        .await?;
    const TX: &str = "fieldgate_modbus_request_duration_seconds";
    let m0 = gw.metrics().await.ok().map(|t| histogram_totals(&t, TX));
    let r0 = sim.handle.total_requests();
    let job = jobs
        .lock_doors(world, &format!("lock-{baud}"), &ids)
        .await?;
    let job_requests = sim.handle.total_requests() - r0;
    let m1 = gw.metrics().await.ok().map(|t| histogram_totals(&t, TX));
    // The line time the gateway saw (request written → answer read); the rest of the
    // device span is turnaround: the method's way in and out, and the gateway between frames.
    let job_gateway_line_seconds = m0.zip(m1).map(|(a, b)| b.0 - a.0);
    gw.stop().await?;
    world
        .wait_disconnected(&ids, Duration::from_secs(30))
        .await?;
    let job_physical = lock_door_physical(baud) * n as u32;

    // Poll: an interval shorter than a cycle's line time keeps the line saturated; the
    // cycle time is the window divided by the cycles it carried.
    let gw = GatewayProc::start(
        world,
        &launch.gateway_bin,
        &format!("rtu-{baud}-poll"),
        spec("50ms"),
        &launch.gateway_env,
    )?;
    world
        .wait_connected(&ids, Instant::now(), Duration::from_secs(120))
        .await?;
    tokio::time::sleep(window.warm_up).await;
    let m0 = gw.metrics().await.ok().map(|t| histogram_totals(&t, TX));
    let (t0, r0) = (Instant::now(), sim.handle.total_requests());
    tokio::time::sleep(window.measure).await;
    let (wall, poll_requests) = (t0.elapsed(), sim.handle.total_requests() - r0);
    let m1 = gw.metrics().await.ok().map(|t| histogram_totals(&t, TX));
    let poll_gateway_transaction_ms = m0
        .zip(m1)
        .filter(|(a, b)| b.1 > a.1)
        .map(|(a, b)| (b.0 - a.0) / (b.1 - a.1) * 1e3);
    gw.stop().await?;
    world
        .wait_disconnected(&ids, Duration::from_secs(30))
        .await?;
    sim.shutdown().await;

    // Each door's cycle is two reads; over the window the counts of each differ by < n.
    let cycles = poll_requests as f64 / 2.0 / n as f64;
    let poll_cycle = wall.as_secs_f64() / cycles.max(1e-9);
    let poll_phys = poll_physical(baud).as_secs_f64() * n as f64;
    Ok(Saturation {
        baud,
        doors: n,
        job_via: job.via.to_string(),
        job_seconds: job.wall.as_secs_f64(),
        job_physical_seconds: job_physical.as_secs_f64(),
        job_ratio: job.wall.as_secs_f64() / job_physical.as_secs_f64(),
        job_device_span_seconds: job.device_span.map(|d| d.as_secs_f64()),
        job_start_delay_seconds: job.start_delay.map(|d| d.as_secs_f64()),
        job_requests,
        job_gateway_line_seconds,
        poll_cycle_seconds: poll_cycle,
        poll_physical_seconds: poll_phys,
        poll_ratio: poll_cycle / poll_phys,
        poll_window_seconds: wall.as_secs_f64(),
        poll_requests,
        poll_gateway_transaction_ms,
        poll_physical_transaction_ms: poll_physical(baud).as_secs_f64() / 2.0 * 1e3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_times_at_9600() {
        // lockDoor: write 8+8 bytes, read 8+6 bytes, four 3.5-char silences = 44 chars.
        let want = Duration::from_secs_f64(44.0 * 11.0 / 9600.0);
        let got = lock_door_physical(9600);
        assert!(got.abs_diff(want) < Duration::from_micros(5), "{got:?}");
        // Poll: read coil 8+6, read inputs 8+9, four silences = 45 chars.
        let want = Duration::from_secs_f64(45.0 * 11.0 / 9600.0);
        assert!(poll_physical(9600).abs_diff(want) < Duration::from_micros(5));
    }
}
