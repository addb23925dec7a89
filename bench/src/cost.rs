//! Workload 8, cost per transaction: fieldgate polling N doors every interval against a
//! Modbus peer (pymodbus, an independent process, or the in-process doorsim), and the Modbus
//! floor ([`crate::floor::modbus`]) doing the same reads at the same rate against the same
//! peer, measured back to back (floor, fieldgate, fieldgate with polls an hour apart, floor
//! again) so the ratio does not ride on the load of the moment. CPU is each process's utime + stime; transactions are the
//! gateway's own counter (`fieldgate_modbus_requests_total`) and the floor's.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bridges::{ids, Bridge, Launch};
use crate::child::{Proc, SpawnOptions};
use crate::env::{tcp_bus, Door, HubTuning, MapSpec, World};
use crate::floor::{self, modbus::Reads};
use crate::gateway::GatewayProc;
use crate::placement::Placement;
use crate::procstat;

/// The Modbus requests counter of the gateway.
const REQUESTS: &str = "fieldgate_modbus_requests_total";

/// How long each side warms up and is measured.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warm_up: Duration,
    /// The gateway's warm-up, from its links being up: its CPU per transaction keeps falling
    /// for about a minute after start (sampled every 5 s over a 60 s window: 14 → 10 ticks per
    /// 10,000 transactions), and a door runs for months, not its first minute. The floor has
    /// nothing to settle and keeps `warm_up`.
    pub gateway_warm_up: Duration,
    pub measure: Duration,
    /// Windows of `measure` with the floor and fieldgate running at once (see
    /// [`side_by_side`]); none when 0.
    pub side_by_side: usize,
}

/// CPU of one process over a window, per transaction.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CpuCost {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub transactions: u64,
    pub us_per_transaction: f64,
    pub percent_of_core: f64,
    /// Voluntary + involuntary context switches (all threads) per transaction.
    pub switches_per_transaction: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cost {
    pub peer: String,
    pub placement: String,
    pub reads: Reads,
    pub doors: usize,
    pub interval: String,
    /// Every floor window pooled (CPU, wall time and transactions summed).
    pub floor: CpuCost,
    /// Every fieldgate window pooled.
    pub fieldgate: CpuCost,
    /// The windows in the order they ran: floor and fieldgate alternate, a floor first and
    /// last, so a drift of the machine's speed during the run weighs on both alike.
    pub floors: Vec<CpuCost>,
    pub fieldgates: Vec<CpuCost>,
    /// Each fieldgate window against the mean of the floor windows either side of it.
    pub paired_ratios: Vec<f64>,
    pub ratio: f64,
    pub links_only: Option<CpuCost>,
    pub net_us_per_transaction: Option<f64>,
    pub side_by_side: Option<SideBySide>,
}

/// The floor and fieldgate measured over the same windows, running at once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SideBySide {
    pub floors: Vec<CpuCost>,
    pub fieldgates: Vec<CpuCost>,
    /// Each window's fieldgate ÷ floor, per transaction.
    pub ratios: Vec<f64>,
    /// The windows pooled.
    pub floor: CpuCost,
    pub fieldgate: CpuCost,
    pub ratio: f64,
}

impl SideBySide {
    fn of(floors: Vec<CpuCost>, fieldgates: Vec<CpuCost>) -> SideBySide {
        let ratios = floors
            .iter()
            .zip(&fieldgates)
            .map(|(f, g)| g.us_per_transaction / f.us_per_transaction)
            .collect();
        let (floor, fieldgate) = (pool(&floors), pool(&fieldgates));
        SideBySide {
            ratio: fieldgate.us_per_transaction / floor.us_per_transaction,
            floors,
            fieldgates,
            ratios,
            floor,
            fieldgate,
        }
    }
}

/// Windows of one process pooled into one figure: sums, not a mean of ratios, so a longer
/// or busier window weighs as much as it ran.
pub fn pool(windows: &[CpuCost]) -> CpuCost {
    let cpu: f64 = windows.iter().map(|w| w.cpu_seconds).sum();
    let wall: f64 = windows.iter().map(|w| w.wall_seconds).sum();
    let tx: u64 = windows.iter().map(|w| w.transactions).sum();
    let switches: f64 = windows
        .iter()
        .filter(|w| w.transactions > 0)
        .map(|w| w.switches_per_transaction * w.transactions as f64)
        .sum();
    CpuCost::of(cpu, wall, tx, switches)
}

impl CpuCost {
    /// The figures of `cpu` seconds over `wall` seconds for `tx` transactions and `switches`
    /// context switches (per-transaction figures NaN without transactions).
    fn of(cpu: f64, wall: f64, tx: u64, switches: f64) -> CpuCost {
        let per = |x: f64| if tx == 0 { f64::NAN } else { x / tx as f64 };
        CpuCost {
            cpu_seconds: cpu,
            wall_seconds: wall,
            transactions: tx,
            us_per_transaction: per(cpu * 1e6),
            percent_of_core: 100.0 * cpu / wall.max(1e-9),
            switches_per_transaction: per(switches),
        }
    }
}

/// fieldgate window `i` against the mean of floor windows `i` and `i + 1`.
pub fn paired_ratios(floors: &[CpuCost], fieldgates: &[CpuCost]) -> Vec<f64> {
    fieldgates
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let before = floors.get(i)?.us_per_transaction;
            let after = floors.get(i + 1).map_or(before, |f| f.us_per_transaction);
            Some(g.us_per_transaction / ((before + after) / 2.0))
        })
        .collect()
}

struct Mark {
    at: Instant,
    ticks: u64,
    switches: u64,
    transactions: u64,
}

fn mark(pid: u32, transactions: u64) -> anyhow::Result<Mark> {
    Ok(Mark {
        at: Instant::now(),
        ticks: procstat::cpu_ticks(pid)?,
        switches: procstat::context_switches(pid)?,
        transactions,
    })
}

fn cost(a: &Mark, b: &Mark) -> CpuCost {
    let cpu = (b.ticks - a.ticks) as f64 / procstat::ticks_per_second() as f64;
    let wall = (b.at - a.at).as_secs_f64();
    let tx = b.transactions.saturating_sub(a.transactions);
    let switches = b.switches.saturating_sub(a.switches) as f64;
    CpuCost::of(cpu, wall, tx, switches)
}

/// The Modbus floor against `addrs` (bus i serving the doors with `sim == i`), started and
/// placed; returns the process and its log (where it counts its transactions).
async fn start_floor(
    world: &World,
    tag: &str,
    addrs: &[String],
    doors: &[Door],
    interval: Duration,
    reads: Reads,
    placement: &Placement,
) -> anyhow::Result<(Proc, std::path::PathBuf)> {
    let exe = std::env::current_exe()?;
    let mut args = vec![
        "floor-modbus".to_string(),
        "--interval-ms".into(),
        interval.as_millis().to_string(),
        "--reads".into(),
        reads.name().into(),
    ];
    for (i, addr) in addrs.iter().enumerate() {
        let units = doors.iter().filter(|d| d.sim == i).count();
        if units > 0 {
            args.extend(["--bus".into(), format!("{addr}={units}")]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = world.path(&format!("{tag}.log"));
    let mut p = Proc::spawn_with(
        &format!("Modbus floor ({tag})"),
        &exe,
        &args,
        log.clone(),
        &SpawnOptions::default(),
    )?;
    placement.place_measured(p.pid)?;
    wait_line(&mut p, "floor-modbus ready", Duration::from_secs(30)).await?;
    // Again once it runs: threads made before the first pin.
    placement.place_measured(p.pid)?;
    Ok((p, log))
}

/// The floor's transactions so far, from its log.
fn floor_count(log: &Path) -> u64 {
    floor::last_count(log, "transactions ").unwrap_or(0)
}

/// The Modbus floor alone: CPU over one window after its warm-up.
#[allow(clippy::too_many_arguments)]
async fn floor_run(
    world: &World,
    tag: &str,
    addrs: &[String],
    doors: &[Door],
    interval: Duration,
    reads: Reads,
    w: Window,
    placement: &Placement,
) -> anyhow::Result<CpuCost> {
    let (mut p, log) = start_floor(world, tag, addrs, doors, interval, reads, placement).await?;
    tokio::time::sleep(w.warm_up).await;
    let a = mark(p.pid, floor_count(&log))?;
    tokio::time::sleep(w.measure).await;
    p.check_alive()?;
    let b = mark(p.pid, floor_count(&log))?;
    p.stop().await?;
    Ok(cost(&a, &b))
}

async fn wait_line(p: &mut Proc, line: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while !floor::has_line(&p.log, line) {
        p.check_alive()?;
        anyhow::ensure!(
            started.elapsed() < limit,
            "{}: no {line:?} after {limit:?}; log tail:\n{}",
            p.name,
            p.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Sum of every series of counter `name`.
pub fn counter_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// fieldgate polling `doors` every `poll_interval`, started, placed and with every link up.
#[allow(clippy::too_many_arguments)]
async fn start_gateway(
    world: &World,
    launch: &Launch,
    tag: &str,
    addrs: &[String],
    doors: &[Door],
    reads: Reads,
    poll_interval: &str,
    placement: &Placement,
) -> anyhow::Result<Bridge> {
    let sims = doors.iter().map(|d| d.sim).max().map_or(0, |m| m + 1);
    let spec = MapSpec {
        hub_host: format!("localhost:{}", world.hub.mqtt_addr.port()),
        ca: &world.hub.ca_path,
        metrics_port: 0,
        connects_per_second: 0,
        buses: (0..sims).map(|i| tcp_bus(i, &addrs[i])).collect(),
        poll_interval,
        doors,
        tuning: HubTuning::default(),
        reads,
    };
    let started = Instant::now();
    let mut gw = Bridge::Fieldgate(GatewayProc::start(
        world,
        &launch.gateway_bin,
        &format!("{tag}-fieldgate-{poll_interval}"),
        spec,
        &launch.gateway_env,
    )?);
    let g = gw.gateway().expect("fieldgate");
    placement.place_measured(g.pid())?;
    gw.wait_up(world, &ids(doors), started, Duration::from_secs(300))
        .await?;
    let g = gw.gateway().expect("fieldgate");
    placement.place_measured(g.pid())?;
    Ok(gw)
}

/// The gateway's Modbus transactions so far, from its metrics.
async fn gateway_count(g: &GatewayProc) -> anyhow::Result<u64> {
    g.metrics()
        .await
        .map(|t| counter_total(&t, REQUESTS) as u64)
}

/// Stops the gateway and waits for the hub to see every door go.
async fn stop_gateway(world: &World, gw: Bridge, doors: &[Door]) -> anyhow::Result<()> {
    gw.stop().await?;
    world
        .wait_disconnected(&ids(doors), Duration::from_secs(30))
        .await
}

/// fieldgate polling `doors` every `poll_interval`: CPU over the window after links up and a
/// warm-up.
#[allow(clippy::too_many_arguments)]
async fn gateway_run(
    world: &World,
    launch: &Launch,
    tag: &str,
    addrs: &[String],
    doors: &[Door],
    reads: Reads,
    poll_interval: &str,
    w: Window,
    placement: &Placement,
) -> anyhow::Result<CpuCost> {
    let gw = start_gateway(
        world,
        launch,
        tag,
        addrs,
        doors,
        reads,
        poll_interval,
        placement,
    )
    .await?;
    tokio::time::sleep(w.gateway_warm_up).await;
    let g = gw.gateway().expect("fieldgate");
    let a = mark(g.pid(), gateway_count(g).await?)?;
    tokio::time::sleep(w.measure).await;
    let b = mark(g.pid(), gateway_count(g).await?)?;
    stop_gateway(world, gw, doors).await?;
    Ok(cost(&a, &b))
}

/// The floor and fieldgate at once against the same peer, each measured over the same
/// windows. This VM's speed moves by half within minutes (two windows of one program a minute
/// apart read 7.5 and 11.2 µs a transaction), so windows taken one after the other compare
/// two moments as much as two programs; run side by side, both see the same moment, and each
/// window's ratio is a fair one. Both share the measured CPUs (each uses ~2 % of a core), and
/// the peer serves both (its load doubles alike for both).
#[allow(clippy::too_many_arguments)]
async fn side_by_side(
    world: &World,
    launch: &Launch,
    tag: &str,
    addrs: &[String],
    doors: &[Door],
    reads: Reads,
    w: Window,
    placement: &Placement,
) -> anyhow::Result<SideBySide> {
    let gw = start_gateway(world, launch, tag, addrs, doors, reads, "1s", placement).await?;
    let floor_tag = format!("{tag}-floor-beside");
    let interval = Duration::from_secs(1);
    let started = start_floor(world, &floor_tag, addrs, doors, interval, reads, placement).await;
    let (mut floor, log) = match started {
        Ok(f) => f,
        Err(e) => {
            stop_gateway(world, gw, doors).await?;
            return Err(e);
        }
    };
    let measured = async {
        tokio::time::sleep(w.gateway_warm_up).await;
        let g = gw.gateway().expect("fieldgate");
        let (mut floors, mut fieldgates) = (Vec::new(), Vec::new());
        let mut f0 = mark(floor.pid, floor_count(&log))?;
        let mut g0 = mark(g.pid(), gateway_count(g).await?)?;
        for _ in 0..w.side_by_side {
            tokio::time::sleep(w.measure).await;
            floor.check_alive()?;
            let f1 = mark(floor.pid, floor_count(&log))?;
            let g1 = mark(g.pid(), gateway_count(g).await?)?;
            floors.push(cost(&f0, &f1));
            fieldgates.push(cost(&g0, &g1));
            tracing::info!(floor = ?floors.last(), fieldgate = ?fieldgates.last(), "side by side");
            (f0, g0) = (f1, g1);
        }
        anyhow::Ok(SideBySide::of(floors, fieldgates))
    }
    .await;
    floor.stop().await?;
    stop_gateway(world, gw, doors).await?;
    measured
}

/// One peer, one read profile: floor, fieldgate, fieldgate with its links only and the floor
/// again (the last two unless `quick`).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    world: &World,
    launch: &Launch,
    peer: &str,
    addrs: &[String],
    doors: &[Door],
    reads: Reads,
    w: Window,
    twice: bool,
    placement: &Placement,
    peer_pids: &[u32],
) -> anyhow::Result<Cost> {
    placement.place_peer(peer_pids)?;
    // The peer gets every CPU back whatever the measuring did.
    let cost = async {
        let interval = Duration::from_secs(1);
        let tag = format!("cost-{peer}-{}", reads.name());
        // Floor and fieldgate alternate, a floor first and last: this VM's speed drifts by
        // 15 % and more within minutes, and one window of each compared two moments as much
        // as two programs.
        let rounds = if twice { 2 } else { 1 };
        let (mut floors, mut fieldgates) = (Vec::new(), Vec::new());
        let floor_window = |i: usize| {
            let tag = format!("{tag}-floor-{i}");
            async move {
                tracing::info!(
                    peer,
                    reads = reads.name(),
                    doors = doors.len(),
                    window = i,
                    "floor"
                );
                let f = floor_run(world, &tag, addrs, doors, interval, reads, w, placement).await?;
                tracing::info!(?f, "floor");
                anyhow::Ok(f)
            }
        };
        for i in 0..rounds {
            floors.push(floor_window(i).await?);
            let g =
                gateway_run(world, launch, &tag, addrs, doors, reads, "1s", w, placement).await?;
            tracing::info!(?g, window = i, "fieldgate");
            fieldgates.push(g);
        }
        let links_only = if twice {
            let l =
                gateway_run(world, launch, &tag, addrs, doors, reads, "1h", w, placement).await?;
            tracing::info!(?l, "fieldgate, links only");
            Some(l)
        } else {
            None
        };
        if twice {
            floors.push(floor_window(rounds).await?);
        }
        let side_by_side = if w.side_by_side > 0 {
            tracing::info!(
                peer,
                reads = reads.name(),
                "floor and fieldgate side by side"
            );
            let tag = format!("{tag}-beside");
            Some(side_by_side(world, launch, &tag, addrs, doors, reads, w, placement).await?)
        } else {
            None
        };
        let floor = pool(&floors);
        let fieldgate = pool(&fieldgates);
        let net_us_per_transaction = links_only.map(|l| {
            (fieldgate.cpu_seconds - l.percent_of_core / 100.0 * fieldgate.wall_seconds) * 1e6
                / fieldgate.transactions.max(1) as f64
        });
        Ok(Cost {
            placement: placement.describe().to_string(),
            peer: peer.to_string(),
            links_only,
            net_us_per_transaction,
            side_by_side,
            reads,
            doors: doors.len(),
            interval: "1s".into(),
            ratio: fieldgate.us_per_transaction / floor.us_per_transaction,
            paired_ratios: paired_ratios(&floors, &fieldgates),
            floor,
            fieldgate,
            floors,
            fieldgates,
        })
    }
    .await;
    placement.release_peer(peer_pids)?;
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_total_sums_every_series_of_that_name_only() {
        let text = "# TYPE fieldgate_modbus_requests_total counter\n\
            fieldgate_modbus_requests_total{bus=\"bus0\",function=\"read_coils\",result=\"ok\"} 120\n\
            fieldgate_modbus_requests_total{bus=\"bus1\",function=\"read_coils\",result=\"ok\"} 80\n\
            fieldgate_modbus_requests_total_other 7\n\
            fieldgate_modbus_request_duration_seconds_count{bus=\"bus0\"} 5\n";
        assert_eq!(counter_total(text, REQUESTS), 200.0);
        assert_eq!(counter_total("plain_total 3\n", "plain_total"), 3.0);
    }

    fn w(cpu: f64, tx: u64) -> CpuCost {
        CpuCost {
            cpu_seconds: cpu,
            wall_seconds: 10.0,
            transactions: tx,
            us_per_transaction: cpu * 1e6 / tx as f64,
            percent_of_core: cpu * 10.0,
            switches_per_transaction: 0.1,
        }
    }

    #[test]
    fn windows_pool_by_sums_and_pair_with_the_floors_either_side() {
        // Floors of 8, 6 and 7 µs; fieldgate windows of 10.5 and 9.75 µs.
        let floors = [w(0.8, 100_000), w(0.6, 100_000), w(0.7, 100_000)];
        let gates = [w(1.05, 100_000), w(0.39, 40_000)];
        let f = pool(&floors);
        assert!((f.us_per_transaction - 7.0).abs() < 1e-9);
        assert!((f.percent_of_core - 7.0).abs() < 1e-9);
        assert!((f.switches_per_transaction - 0.1).abs() < 1e-9);
        // The shorter window weighs less: (1.05 + 0.39) s over 140,000 transactions.
        let g = pool(&gates);
        assert!((g.us_per_transaction - 1.44e6 / 140_000.0).abs() < 1e-9);
        let r = paired_ratios(&floors, &gates);
        assert_eq!(r.len(), 2);
        assert!((r[0] - 10.5 / 7.0).abs() < 1e-9);
        assert!((r[1] - 9.75 / 6.5).abs() < 1e-9);
        // Side by side: each window against its own floor, and the windows pooled.
        let b = SideBySide::of(floors[..2].to_vec(), gates.to_vec());
        assert_eq!(b.ratios.len(), 2);
        assert!((b.ratios[0] - 10.5 / 8.0).abs() < 1e-9);
        assert!((b.ratios[1] - 9.75 / 6.0).abs() < 1e-9);
        let pooled = (1.44e6 / 140_000.0) / (1.4e6 / 200_000.0);
        assert!((b.ratio - pooled).abs() < 1e-9);
        // Without a closing floor the last window pairs with the one before it.
        let r = paired_ratios(&floors[..1], &gates[..1]);
        assert!((r[0] - 10.5 / 8.0).abs() < 1e-9);
    }
}
