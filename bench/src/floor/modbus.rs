//! The Modbus floor: per bus one task owning a tokio-modbus TCP context, reading every unit's
//! points once per interval, back to back. No MQTT, no bridge, no queue, no metrics: only the
//! per-call deadline every I/O must have. Prints `transactions N` (cumulative) every 100 ms.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::{timeout, MissedTickBehavior};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::prelude::{Slave, SlaveContext};

/// What a door's poll reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum Reads {
    /// coil 0; input registers 0-1 (the benchmarks' usual profile).
    Two,
    /// coil 0; discrete input 0; input register 1.
    Three,
}

impl Reads {
    pub fn count(self) -> u64 {
        match self {
            Reads::Two => 2,
            Reads::Three => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reads::Two => "two",
            Reads::Three => "three",
        }
    }
}

/// The gateway's per-call deadline on the benchmark's buses.
const DEADLINE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ModbusFloor {
    /// One bus per address; `units` on each.
    pub buses: Vec<SocketAddr>,
    pub units: Vec<Vec<u8>>,
    pub interval: Duration,
    pub reads: Reads,
}

/// Runs until killed.
pub async fn run(f: ModbusFloor) -> anyhow::Result<()> {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (addr, units) in f.buses.iter().zip(&f.units) {
        let ctx = tcp::connect(*addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tasks.push(tokio::spawn(bus(
            ctx,
            units.clone(),
            f.interval,
            f.reads,
            done.clone(),
        )));
    }
    println!("floor-modbus ready");
    let mut report = tokio::time::interval(Duration::from_millis(100));
    loop {
        report.tick().await;
        println!("transactions {}", done.load(Ordering::Relaxed));
        if let Some(t) = tasks.iter().find(|t| t.is_finished()) {
            anyhow::bail!("a bus task ended: {t:?}");
        }
    }
}

async fn bus(
    mut ctx: Context,
    units: Vec<u8>,
    interval: Duration,
    reads: Reads,
    done: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for &unit in &units {
            ctx.set_slave(Slave(unit));
            match reads {
                Reads::Two => {
                    timeout(DEADLINE, ctx.read_coils(0, 1)).await???;
                    timeout(DEADLINE, ctx.read_input_registers(0, 2)).await???;
                }
                Reads::Three => {
                    timeout(DEADLINE, ctx.read_coils(0, 1)).await???;
                    timeout(DEADLINE, ctx.read_discrete_inputs(0, 1)).await???;
                    timeout(DEADLINE, ctx.read_input_registers(1, 1)).await???;
                }
            }
            done.fetch_add(reads.count(), Ordering::Relaxed);
        }
    }
}
