//! `doorsim`: simulated door controllers on a Modbus server, for demos, tests and benchmarks.
//! Prints `doorsim ready ADDR` once it serves, then runs until ctrl-c or SIGTERM.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::Parser;
use fieldhub::doorsim::{self, DoorSimConfig, Listen};

#[derive(Debug, Parser)]
#[command(about = "Simulated Modbus door controllers")]
#[command(group(clap::ArgGroup::new("listen").required(true).args(["tcp", "serial", "rtu_over_tcp"])))]
struct Args {
    /// Serve Modbus TCP on this address (port 0 picks a free port).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Serve Modbus RTU on this serial device (e.g. one end of a socat pty pair).
    #[arg(long)]
    serial: Option<String>,
    /// Serve RTU framing over TCP on this address.
    #[arg(long)]
    rtu_over_tcp: Option<SocketAddr>,
    /// Baud rate of the serial line, and of the line-speed emulation.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Unit ids that answer: ranges and lists, e.g. `1-32` or `1,2,10-12`.
    #[arg(long, default_value = "1")]
    units: String,
    /// Pace answers as an RS-485 line at `--baud` would.
    #[arg(long)]
    line_speed: bool,
}

fn parse_units(spec: &str) -> anyhow::Result<Vec<u8>> {
    let mut units = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: u8 = lo
            .parse()
            .with_context(|| format!("bad unit id {lo:?} in --units"))?;
        let hi: u8 = hi
            .parse()
            .with_context(|| format!("bad unit id {hi:?} in --units"))?;
        if lo == 0 || lo > hi || hi > 247 {
            bail!("bad unit range {part:?} in --units (unit ids are 1-247)");
        }
        units.extend(lo..=hi);
    }
    if units.is_empty() {
        bail!("--units names no unit");
    }
    units.sort_unstable();
    units.dedup();
    Ok(units)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listen = match (args.tcp, args.serial, args.rtu_over_tcp) {
        (Some(addr), _, _) => Listen::Tcp(addr),
        (_, Some(path), _) => Listen::RtuSerial {
            path,
            baud: args.baud,
        },
        (_, _, Some(addr)) => Listen::RtuOverTcp(addr),
        _ => bail!("one of --tcp, --serial, --rtu-over-tcp is required"),
    };
    let config = DoorSimConfig {
        listen: listen.clone(),
        units: parse_units(&args.units)?,
        line_baud: args.line_speed.then_some(args.baud),
    };
    let sim = doorsim::start(config).await?;
    match (&sim.local_addr, &listen) {
        (Some(addr), _) => println!("doorsim ready {addr}"),
        (None, Listen::RtuSerial { path, .. }) => println!("doorsim ready {path}"),
        (None, _) => println!("doorsim ready"),
    }
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("doorsim: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_units;

    #[test]
    fn units_ranges_and_lists() {
        assert_eq!(parse_units("1-3,7").unwrap(), vec![1, 2, 3, 7]);
        assert_eq!(parse_units("5").unwrap(), vec![5]);
        assert!(parse_units("0-3").is_err());
        assert!(parse_units("3-1").is_err());
        assert!(parse_units("x").is_err());
    }
}
