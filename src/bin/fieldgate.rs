//! `fieldgate`: the gateway service (`run`), its config checker (`check`) and the offline demo
//! (`demo`). Everything is in the library; this file parses arguments and wires it up.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Presents Modbus door controllers as Azure IoT Hub devices.
///
/// Each [[door]] of the TOML device map becomes its own IoT Hub device: direct methods become
/// coil writes, desired properties become holding-register writes, polled status becomes
/// reported properties. Metrics on http://127.0.0.1:9898/metrics by default.
#[derive(Debug, Parser)]
#[command(name = "fieldgate", version, about, long_about)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `fieldgate=debug`. RUST_LOG wins.
    /// [default: info; warn for `demo`, whose own output tells the story]
    #[arg(long, global = true)]
    log: Option<String>,
    /// Log as JSON lines (for journald/log shippers) instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the doors of a device map until SIGTERM/Ctrl-C; SIGHUP reloads the map.
    Run {
        /// The device map (TOML).
        #[arg(long, short, default_value = "/etc/fieldgate/fieldgate.toml")]
        config: PathBuf,
        /// Runtime threads. One (the default) is plenty for a thousand doors, wakes the CPU
        /// least and keeps memory lowest (docs/BENCHMARKS.md, workloads 3 and 4).
        #[arg(long, env = "FIELDGATE_WORKER_THREADS", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        worker_threads: u16,
    },
    /// Validate a device map and report every error with file:line:column; exit 1 if invalid.
    Check {
        #[arg(long, short, default_value = "/etc/fieldgate/fieldgate.toml")]
        config: PathBuf,
    },
    /// Write a profile's Plug and Play model: a DTDL v2 interface (methods as commands, desired
    /// points as writable properties, reported points as properties, telemetry points as telemetry).
    Model {
        #[arg(long, short, default_value = "/etc/fieldgate/fieldgate.toml")]
        config: PathBuf,
        /// The profile ([profile.NAME]) to describe.
        #[arg(long)]
        profile: String,
        /// Write the interface here instead of to stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run the whole system offline: a local hub, simulated doors, the gateway, and the seed jobs.
    Demo(fieldgate::demo_args::DemoArgs),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    init_tracing(cli.log.as_deref().unwrap_or(default_log), cli.log_json);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fieldgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // Escape codes only for a person at a terminal: the journal, a file or a pipe would
    // keep them as text.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => match fieldgate::config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} buses, {} doors)",
                    config.display(),
                    cfg.buses.len(),
                    cfg.doors.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Model {
            config,
            profile,
            out,
        } => {
            let cfg = match fieldgate::config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(1));
                }
            };
            let Some(p) = cfg.profiles.get(&profile) else {
                let names: Vec<&str> = cfg.profiles.keys().map(String::as_str).collect();
                eprintln!(
                    "fieldgate: {} has no [profile.{profile}] (profiles: {})",
                    config.display(),
                    names.join(", ")
                );
                return Ok(ExitCode::from(1));
            };
            let model = fieldgate::dtdl::interface(&profile, p)?;
            let text = serde_json::to_string_pretty(&model)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            worker_threads,
        } => {
            // One thread: the current-thread scheduler, with no hand-off between the thread
            // that blocks on `serve` and a worker.
            let rt = if worker_threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(usize::from(worker_threads))
                    .enable_all()
                    .build()?
            };
            rt.block_on(service(config))
        }
        #[cfg(feature = "hub")]
        Command::Demo(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(fieldgate::demo::run(args))
        }
        #[cfg(not(feature = "hub"))]
        Command::Demo(_) => {
            eprintln!("fieldgate: this build has no demo (the Pi package leaves the local hub out); build with the default features to run it");
            Ok(ExitCode::from(2))
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "fieldgate",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// systemd's notify protocol (a no-op when not started by systemd).
struct Systemd {
    watchdog: Option<std::time::Duration>,
}

impl fieldgate::gateway::Supervisor for Systemd {
    fn notify(&self, notice: fieldgate::gateway::Notice) {
        use fieldgate::gateway::Notice;
        use sd_notify::NotifyState;
        let state = match notice {
            Notice::Ready | Notice::Reloaded => NotifyState::Ready,
            Notice::ExtendStart(by) => {
                NotifyState::ExtendTimeoutUsec(u32::try_from(by.as_micros()).unwrap_or(u32::MAX))
            }
            Notice::Alive if self.watchdog.is_some() => NotifyState::Watchdog,
            Notice::Alive => return,
            Notice::Stopping => NotifyState::Stopping,
        };
        let _ = sd_notify::notify(false, &[state]);
    }

    fn watchdog(&self) -> Option<std::time::Duration> {
        self.watchdog
    }
}

/// `fieldgate run`: what the process owns — the config file, the metrics socket, signals and
/// systemd — around the library's service loop.
async fn service(path: PathBuf) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    let config = match fieldgate::config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(1));
        }
    };
    let listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics.listen))?;
    tracing::info!(config = %path.display(), "fieldgate starting");
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec)
        .then(|| std::time::Duration::from_micros(watchdog_usec));
    let supervisor = Systemd { watchdog };

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    // SIGHUP reads the file again; a file that does not load is refused here, with its
    // errors, and the service keeps the running config.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        while sighup.recv().await.is_some() {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
            match fieldgate::config::load(&path) {
                Ok(new) => {
                    if reload_tx.send(new).await.is_err() {
                        return;
                    }
                }
                Err(errors) => {
                    tracing::error!(errors = %errors, "config reload refused; the running config is kept");
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                }
            }
        }
    });
    let metrics = std::sync::Arc::new(fieldgate::metrics::Metrics::new());
    let served =
        fieldgate::gateway::serve(config, listener, metrics, reload_rx, shutdown, &supervisor)
            .await;
    reader.abort();
    served?;
    Ok(ExitCode::SUCCESS)
}
