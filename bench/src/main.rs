//! `fieldgate-bench [--quick] [--out bench.json]`: runs the benchmarks of docs/BENCHMARKS.md, prints
//! the table and writes the JSON report. `fieldgate-bench floor-modbus|floor-links` are the
//! floors the harness starts as processes of their own. Everything is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fieldgate_bench::env::HubTuning;
use fieldgate_bench::floor::{self, links::LinkFloor, modbus::ModbusFloor, modbus::Reads};
use fieldgate_bench::jobs::JobRunner;
use fieldgate_bench::{gateway, run, Options};

/// fieldgate against the RS-485 line's physical limit and an SDK-based reference bridge.
#[derive(Debug, Parser)]
#[command(name = "fieldgate-bench", version, about)]
struct Args {
    #[command(subcommand)]
    floor: Option<Floor>,
    /// Each workload small, to check that everything completes (CI); figures are not judged.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// The fieldgate binary (default: target/release/fieldgate; with --quick target/debug first).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Node.js for the reference bridge.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Leave the reference bridge out.
    #[arg(long)]
    no_reference: bool,
    /// Polling soak of workloads 3/4, e.g. "10m" (default 10 min; 5 s with --quick).
    #[arg(long, value_parser = humantime_duration)]
    soak: Option<Duration>,
    /// Run only these workloads, e.g. `--only 1,2` (1 saturation, 2 latency, 3/4 memory and
    /// CPU, 5 connect storm, 6 job fan-out, 7 dead units on a line, 8 CPU per transaction
    /// against the Modbus floor, 9 KB per door against the link floor, 10 churn soak).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<u8>>,
    /// Keep the run's directory (generated device maps, gateway and reference logs).
    #[arg(long)]
    keep: bool,
    /// Workload 1's lockDoor fan-out: a hub `job`, or `direct` (every door's direct method at
    /// once; tells the hub's job dispatch apart from the gateway).
    #[arg(long, default_value = "job", value_parser = ["job", "direct"])]
    job_via: String,
    /// The gateway's MQTT keep-alive (default the gateway's own, 60 s). A short one makes the
    /// soak of workloads 3/4 tell a per-ping leak from an allocator plateau in minutes.
    #[arg(long, value_parser = humantime_duration)]
    keep_alive: Option<Duration>,
    /// The gateway's doors use MQTT over WebSockets (as on a site that only opens 443).
    #[arg(long)]
    websocket: bool,
    /// The gateway's SAS token lifetime (default the gateway's own, 1 h). A short one makes
    /// every link renew (reconnect) many times during the soak of workloads 3/4.
    #[arg(long, value_parser = humantime_duration)]
    token_lifetime: Option<Duration>,
    /// Python with pymodbus, for workload 8's independent Modbus peer.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Workload 8's measuring window for the floor and for fieldgate, e.g. "60s" (the default;
    /// 3 s with --quick).
    #[arg(long, value_parser = humantime_duration)]
    cost_window: Option<Duration>,
    /// Workload 8's windows (of --cost-window each) with the floor and fieldgate running at
    /// once against the same peer (default 4; 1 with --quick; 0 leaves them out).
    #[arg(long)]
    side_by_side: Option<usize>,
    /// Workload 8's runs as PEER:READS, e.g. `pymodbus:3,doorsim:2` (default
    /// pymodbus:3,doorsim:2,doorsim:3; doorsim:3,pymodbus:3 with --quick).
    #[arg(long, value_delimiter = ',', value_parser = fieldgate_bench::plan::parse_cost_run)]
    cost_runs: Option<Vec<(fieldgate_bench::plan::Peer, Reads)>>,
    /// Workload 8 without giving the Modbus peer a CPU of its own: the peer and the measured
    /// process share the CPUs as the scheduler places them (the peer's wake-ups then preempt
    /// the measured process on every transaction).
    #[arg(long)]
    cost_shared: bool,
    /// Workload 10's token renewal rounds (default 20; 2 with --quick).
    #[arg(long)]
    churn_rounds: Option<usize>,
    /// Workload 10's SAS token lifetime (default 30 s: a renewal round every ~23 s; 4 s with
    /// --quick).
    #[arg(long, value_parser = humantime_duration)]
    churn_lifetime: Option<Duration>,
    /// Run workload 10 a second time with this in the gateway's environment, e.g.
    /// `--churn-b-env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2` (an allocator A/B).
    #[arg(long, value_parser = key_value)]
    churn_b_env: Vec<(String, String)>,
    /// Extra environment of every gateway process, `KEY=VALUE` (repeatable).
    #[arg(long, value_parser = key_value)]
    gateway_env: Vec<(String, String)>,
}

/// The floors, each run by the harness as a process of its own.
#[derive(Debug, clap::Subcommand)]
enum Floor {
    /// tokio-modbus alone: one task per bus reading every unit's points once per interval.
    /// Prints `transactions N` (cumulative) every 100 ms.
    FloorModbus {
        /// `ADDR=UNITS`: a Modbus TCP peer and its unit count (units 1..=UNITS); repeatable.
        #[arg(long, required = true, value_parser = bus_arg)]
        bus: Vec<(std::net::SocketAddr, u8)>,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long, value_enum, default_value = "three")]
        reads: Reads,
    },
    /// Idle rustls + rumqttc connections, SAS-authenticated and subscribed like doors.
    /// Prints `links up N` once all are subscribed.
    FloorLinks {
        /// JSON: host_name, port, ca_file, keep_alive_secs, doors [[id, key], …].
        #[arg(long)]
        spec: PathBuf,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: write KEY=VALUE"))
}

fn bus_arg(s: &str) -> Result<(std::net::SocketAddr, u8), String> {
    let (addr, units) = s.rsplit_once('=').ok_or("write ADDR=UNITS")?;
    Ok((
        addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        units.parse().map_err(|e| format!("{units}: {e}"))?,
    ))
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.len()),
    );
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration {s:?}: use ms, s or m")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fieldhub=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = match args.floor {
        Some(f) => run_floor(f),
        None => main_inner(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A floor on a current-thread runtime, as `fieldgate run` uses by default.
fn run_floor(f: Floor) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match f {
        Floor::FloorModbus {
            bus,
            interval_ms,
            reads,
        } => rt.block_on(floor::modbus::run(ModbusFloor {
            buses: bus.iter().map(|b| b.0).collect(),
            units: bus.iter().map(|b| (1..=b.1).collect()).collect(),
            interval: Duration::from_millis(interval_ms),
            reads,
        })),
        Floor::FloorLinks { spec } => {
            let spec: LinkFloor = serde_json::from_slice(&std::fs::read(&spec)?)?;
            rt.block_on(floor::links::run(spec))
        }
    }
}

fn main_inner(args: Args) -> anyhow::Result<()> {
    let opts = Options {
        quick: args.quick,
        gateway_bin: gateway::resolve_binary(args.gateway_bin, args.quick)?,
        node: (!args.no_reference).then_some(args.node),
        soak: args.soak,
        only: args.only,
        keep: args.keep,
        tuning: HubTuning {
            keep_alive: args.keep_alive,
            token_lifetime: args.token_lifetime,
            websocket_port: None,
        },
        websocket: args.websocket,
        python: args.python,
        cost_window: args.cost_window,
        cost_runs: args.cost_runs,
        side_by_side: args.side_by_side,
        cost_shared: args.cost_shared,
        churn_rounds: args.churn_rounds,
        churn_lifetime: args.churn_lifetime,
        churn_b_env: args.churn_b_env,
        gateway_env: args.gateway_env,
        job_runner: if args.job_via == "direct" {
            JobRunner::DirectMethods
        } else {
            JobRunner::HubJob
        },
    };
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(run(opts))?;
    println!("{}", report.table());
    for n in &report.notes {
        println!("- {n}");
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!("report written to {}", args.out.display());
    Ok(())
}
