//! What the kernel says about a process: resident memory (`/proc/PID/status` VmRSS) and CPU
//! time (`/proc/PID/stat` utime + stime), plus the machine description for the report.

use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read /proc/{pid}/{file}: {source} (has the process exited?)")]
    Read {
        pid: u32,
        file: &'static str,
        source: std::io::Error,
    },
    #[error("/proc/{pid}/{file} has no {what}")]
    Parse {
        pid: u32,
        file: &'static str,
        what: &'static str,
    },
}

fn read(pid: u32, file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| ProcError::Read {
        pid,
        file,
        source,
    })
}

/// Resident set size in KiB.
pub fn rss_kb(pid: u32) -> Result<u64, ProcError> {
    parse_vm_rss(&read(pid, "status")?).ok_or(ProcError::Parse {
        pid,
        file: "status",
        what: "VmRSS line",
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User + system CPU time the process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, ProcError> {
    parse_cpu_ticks(&read(pid, "stat")?).ok_or(ProcError::Parse {
        pid,
        file: "stat",
        what: "utime/stime fields",
    })
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we run on).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Context switches of every thread of the process (voluntary + involuntary, from
/// `/proc/PID/task/*/status`): how often it went to sleep and woke up again.
pub fn context_switches(pid: u32) -> Result<u64, ProcError> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|source| ProcError::Read {
        pid,
        file: "task",
        source,
    })?;
    let mut total = 0;
    for task in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// CPU used by a process over a window.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuSample {
    /// CPU seconds per minute of wall time.
    pub fn seconds_per_minute(&self) -> f64 {
        self.cpu.as_secs_f64() * 60.0 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Share of one core, in percent.
    pub fn percent_of_core(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Measures `pid`'s CPU time over `window` (sleeping meanwhile).
pub async fn sample_cpu(pid: u32, window: Duration) -> Result<CpuSample, ProcError> {
    let hz = ticks_per_second();
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    tokio::time::sleep(window).await;
    let (t1, c1) = (Instant::now(), cpu_ticks(pid)?);
    Ok(CpuSample {
        cpu: Duration::from_secs_f64(c1.saturating_sub(c0) as f64 / hz as f64),
        wall: t1 - t0,
    })
}

/// The machine, for the report: cores, CPU model, RAM, load when the run started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub ram_mb: u64,
    pub loadavg_at_start: String,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_string()),
        ram_mb: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024),
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tfieldgate\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn parses_cpu_ticks_with_awkward_command_names() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_kb(pid).unwrap() > 0);
        cpu_ticks(pid).unwrap();
    }
}
