//! Where workload 8 runs its processes. On a shared machine the peer answering the Modbus
//! requests (the harness's doorsim, or the pymodbus processes) competes for the CPU of the
//! process being measured: a request wakes the peer on the sender's CPU, the scheduler
//! preempts the sender for it, and every transaction becomes a pair of context switches
//! charged partly to whichever process is measured (`perf sched timehist` on this VM showed
//! strict ping-pong on one CPU while the other idled). In the field the peer is a controller
//! across a wire, not a process on the gateway's CPU. So by default the peer gets the last
//! CPU and the measured process (the floor, then fieldgate: the same treatment) the others;
//! `--cost-shared` keeps the scheduler's own placement, to see that effect. Only for doorsim:
//! pymodbus's processes need more than one CPU and stay where the scheduler puts them.
//!
//! Pinning uses util-linux's `taskset` (`-a`: every thread of the process): the workspace
//! has no libc binding in the bench, and `taskset` is on every Debian-like system.

use std::process::Command;

use anyhow::Context as _;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Placement {
    /// Every process where the scheduler puts it.
    Shared,
    /// The peer on `peer`, the measured process on `measured` (CPU lists as `taskset` takes them).
    Split {
        peer: String,
        measured: String,
        all: String,
    },
}

impl Placement {
    /// Split when the machine has at least two CPUs and `shared` is not asked for.
    pub fn choose(shared: bool) -> Placement {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        if shared || n < 2 {
            return Placement::Shared;
        }
        Placement::Split {
            peer: (n - 1).to_string(),
            measured: if n == 2 {
                "0".into()
            } else {
                format!("0-{}", n - 2)
            },
            all: format!("0-{}", n - 1),
        }
    }

    /// How a report names it.
    pub fn describe(&self) -> &'static str {
        match self {
            Placement::Shared => "peer and measured process on shared CPUs",
            Placement::Split { .. } => "peer on its own CPU",
        }
    }

    /// Moves the peer (this harness, whose runtime serves doorsim, and `peer_pids`) to its CPU.
    pub fn place_peer(&self, peer_pids: &[u32]) -> anyhow::Result<()> {
        if let Placement::Split { peer, .. } = self {
            pin(std::process::id(), peer)?;
            for &pid in peer_pids {
                pin(pid, peer)?;
            }
        }
        Ok(())
    }

    /// Moves a measured process (every thread it has now; later ones inherit) to its CPUs.
    pub fn place_measured(&self, pid: u32) -> anyhow::Result<()> {
        if let Placement::Split { measured, .. } = self {
            pin(pid, measured)?;
        }
        Ok(())
    }

    /// Gives the harness and `peer_pids` every CPU again.
    pub fn release_peer(&self, peer_pids: &[u32]) -> anyhow::Result<()> {
        if let Placement::Split { all, .. } = self {
            pin(std::process::id(), all)?;
            for &pid in peer_pids {
                pin(pid, all)?;
            }
        }
        Ok(())
    }
}

fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .context("running taskset (util-linux) to place workload 8's processes")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_takes_the_last_cpu_and_the_measured_process_the_rest() {
        assert_eq!(Placement::choose(true), Placement::Shared);
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        match Placement::choose(false) {
            Placement::Shared => assert!(n < 2),
            Placement::Split {
                peer,
                measured,
                all,
            } => {
                assert_eq!(peer, (n - 1).to_string());
                assert!(measured.starts_with('0'));
                assert!(!measured.contains(&peer) || n > 10, "{measured} vs {peer}");
                assert_eq!(all, format!("0-{}", n - 1));
            }
        }
    }

    #[test]
    fn a_pinned_process_runs_only_on_its_cpus() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        pin(child.id(), "0").expect("taskset");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        assert_eq!(allowed, "0");
    }
}
