//! `fieldgate-bench [--quick] [--out bench.json]`: runs the benchmarks of docs/BENCHMARKS.md, prints
//! the table and writes the JSON report. Everything is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fieldgate_bench::env::HubTuning;
use fieldgate_bench::jobs::JobRunner;
use fieldgate_bench::{gateway, run, Options};

/// fieldgate against the RS-485 line's physical limit and an SDK-based reference bridge.
#[derive(Debug, Parser)]
#[command(name = "fieldgate-bench", version, about)]
struct Args {
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
    /// CPU, 5 connect storm, 6 job fan-out, 7 dead units on a line).
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
    match main_inner(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldgate-bench: {e:#}");
            ExitCode::FAILURE
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
