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
            rt.block_on(fieldgate::gateway::serve(config))?;
            Ok(ExitCode::SUCCESS)
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
