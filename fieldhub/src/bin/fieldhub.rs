//! `fieldhub serve --data-dir DIR`: runs a local IoT Hub until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "fieldhub", version, about = "A local, IoT Hub-compatible hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the device (MQTT/TLS) and service (HTTPS) endpoints.
    Serve {
        /// Directory for the database, CA and service.connstr (created if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// Hub host name (SAS resource, MQTT usernames, server certificate).
        #[arg(long, default_value = "localhost")]
        hostname: String,
        /// MQTT over TLS listen address.
        #[arg(long, default_value = "127.0.0.1:8883")]
        mqtt: SocketAddr,
        /// HTTPS listen address.
        #[arg(long, default_value = "127.0.0.1:443")]
        https: SocketAddr,
        #[command(flatten)]
        jobs: JobArgs,
        /// Operation throttles: `none` (default) or `s1`, IoT Hub's S1 quotas (queries,
        /// registry and job operations per minute, twin reads and updates per second from the
        /// service and devices alike, method KB/s, new connections per second), answered with
        /// 429 ThrottlingException.
        #[arg(long, default_value = "none", value_parser = ["none", "s1"])]
        throttle: String,
        /// S1 units the `s1` throttles are sized for.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=200))]
        units: u32,
    },
}

/// Job limits, modelled on an S1 unit by default.
#[derive(Debug, clap::Args)]
struct JobArgs {
    /// Job device operations (method calls, twin updates) per second across all jobs;
    /// 0 = unthrottled.
    #[arg(long, default_value_t = 10.0)]
    job_ops_per_second: f64,
    /// No pacing of job device operations (same as --job-ops-per-second 0).
    #[arg(long)]
    unthrottled: bool,
    /// Jobs that may be queued, scheduled or running at once (429004 beyond).
    #[arg(long, default_value_t = 1)]
    max_active_jobs: usize,
    /// How long finished jobs are kept (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    job_retention: Duration,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldhub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cli.command {
            Command::Serve {
                data_dir,
                hostname,
                mqtt,
                https,
                jobs,
                throttle,
                units,
            } => {
                anyhow::ensure!(
                    jobs.job_ops_per_second.is_finite() && jobs.job_ops_per_second >= 0.0,
                    "--job-ops-per-second must be a number >= 0 (0 = unthrottled)"
                );
                let pacing = !jobs.unthrottled && jobs.job_ops_per_second > 0.0;
                let cfg = fieldhub::HubConfig {
                    data_dir,
                    hostname,
                    mqtt_addr: mqtt,
                    https_addr: https,
                    job_ops_per_second: pacing.then_some(jobs.job_ops_per_second),
                    max_active_jobs: jobs.max_active_jobs,
                    job_retention: jobs.job_retention,
                    throttle: (throttle == "s1")
                        .then(|| fieldhub::throttle::ThrottleProfile::s1(units)),
                };
                // Handlers first: a supervisor may signal as soon as it reads the ready line.
                let signal = shutdown_signal()?;
                let hub = fieldhub::start(cfg).await?;
                let mut out = std::io::stdout();
                writeln!(
                    out,
                    "fieldhub ready mqtt={} https={} dps_id_scope={}",
                    hub.mqtt_addr, hub.https_addr, hub.dps_id_scope
                )?;
                out.flush()?;
                signal.await?;
                tracing::info!("shutting down");
                hub.shutdown().await;
                Ok(())
            }
        }
    })
}

/// Installs the Ctrl-C (SIGINT) and SIGTERM handlers now; the returned future ends at either.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    Ok(async { Ok(tokio::signal::ctrl_c().await?) })
}
