//! An independent Modbus peer for the cost workloads: `tests/peers/pymodbus_server.py`
//! (pymodbus) serving Modbus TCP, one process per controller of [`UNITS_PER_SIM`] units, as
//! the in-process doorsim pool does. Its CPU is its own process's, not the harness's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::{Proc, SpawnOptions};
use crate::env::{World, UNITS_PER_SIM};

/// Running pymodbus servers, one per bus.
#[derive(Debug)]
pub struct PyPool {
    procs: Vec<Proc>,
    pub addrs: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/pymodbus_server.py")
}

impl PyPool {
    /// Whether `python` can run the peer (pymodbus installed); the reason if not.
    pub fn available(python: &Path) -> Result<(), String> {
        let ok = std::process::Command::new(python)
            .args(["-c", "import pymodbus"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            Ok(())
        } else {
            Err(format!(
                "pymodbus peer skipped: `{} -c 'import pymodbus'` fails (pip install -r tests/peers/requirements.txt)",
                python.display()
            ))
        }
    }

    /// Enough servers of [`UNITS_PER_SIM`] units for `doors` doors, each on an ephemeral port.
    pub async fn start(world: &World, python: &Path, doors: usize) -> anyhow::Result<PyPool> {
        let script = script().display().to_string();
        let mut procs = Vec::new();
        for i in 0..doors.div_ceil(UNITS_PER_SIM).max(1) {
            let units = format!("1-{}", UNITS_PER_SIM.min(doors - i * UNITS_PER_SIM));
            procs.push(Proc::spawn_with(
                &format!("pymodbus {i}"),
                python,
                &[&script, "tcp", "127.0.0.1:0", "--units", &units],
                world.path(&format!("pymodbus-{i}.log")),
                &SpawnOptions {
                    env: Vec::new(),
                    // The peer exits when its stdin closes: none outlives the harness.
                    stdin_pipe: true,
                },
            )?);
        }
        let mut addrs = Vec::new();
        for p in &mut procs {
            let started = Instant::now();
            let addr = loop {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                if let Some(a) = log.lines().find_map(|l| l.strip_prefix("pymodbus ready ")) {
                    break a.trim().to_string();
                }
                p.check_alive()?;
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "{} not ready after 30 s",
                    p.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            addrs.push(addr);
        }
        Ok(PyPool { procs, addrs })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    pub async fn shutdown(self) {
        for p in self.procs {
            let _ = p.stop().await;
        }
    }
}
