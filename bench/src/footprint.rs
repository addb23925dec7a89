//! Workloads 3 and 4, scale and idle cost: resident memory of a bridge process with 1, 100
//! and 1,000 doors once every link is up and after a soak of 1 s polling, and the CPU time
//! it burns per minute while idle (polling only) at 1,000 doors.

use std::time::{Duration, Instant};

use crate::bridges::{ids, Bridge, Kind, Launch, Site};
use crate::env::World;
use crate::procstat::{self, CpuSample};

/// The longest a bridge may take to bring its links up.
const UP_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Footprint {
    pub kind: Kind,
    pub doors: usize,
    /// Time from process start until the hub saw every link.
    pub up_seconds: f64,
    pub rss_up_kb: u64,
    /// After `soak_seconds` of polling.
    pub rss_after_kb: u64,
    pub soak_seconds: f64,
    /// RSS sampled through the soak (KiB, about every 1/20 of it): flat, or growing?
    pub rss_series_kb: Vec<u64>,
    /// CPU over the last part of the soak.
    pub cpu_seconds_per_minute: Option<f64>,
    pub cpu_percent_of_core: Option<f64>,
}

/// One bridge with `site`'s doors: memory once up and after `soak`; CPU over the last
/// `cpu_window` of the soak when given.
struct Running {
    kind: Kind,
    bridge: Bridge,
    doors: usize,
    up: Duration,
    rss_up: u64,
}

async fn bring_up(
    world: &World,
    launch: &Launch,
    kind: Kind,
    tag: &str,
    site: Site<'_>,
) -> anyhow::Result<Running> {
    let started = Instant::now();
    let mut bridge = Bridge::start(kind, world, launch, tag, site)?;
    let up = bridge
        .wait_up(world, &ids(site.doors), started, UP_LIMIT)
        .await?;
    let rss_up = procstat::rss_kb(bridge.pid())?;
    tracing::info!(bridge = kind.name(), doors = site.doors.len(), up = ?up, rss_kb = rss_up, "links up");
    Ok(Running {
        kind,
        bridge,
        doors: site.doors.len(),
        up,
        rss_up,
    })
}

/// Brings every `(kind, tag, site)` up one after the other (so their connect storms do not
/// overlap), soaks them together for `soak`, samples CPU over the soak's last `cpu_window`
/// (all bridges at once), then reads memory and stops them.
pub async fn run(
    world: &World,
    launch: &Launch,
    bridges: &[(Kind, String, Site<'_>)],
    soak: Duration,
    cpu_window: Option<Duration>,
) -> anyhow::Result<Vec<Footprint>> {
    let mut running = Vec::new();
    for (kind, tag, site) in bridges {
        running.push(bring_up(world, launch, *kind, tag, *site).await?);
    }
    let soak_started = Instant::now();
    let window = cpu_window.unwrap_or(Duration::ZERO).min(soak);
    let mut series: Vec<Vec<u64>> = running.iter().map(|_| Vec::new()).collect();
    let step = (soak / 20).max(Duration::from_secs(1));
    while soak_started.elapsed() + step <= soak - window {
        tokio::time::sleep(step).await;
        for (r, s) in running.iter().zip(series.iter_mut()) {
            s.push(procstat::rss_kb(r.bridge.pid()).unwrap_or(0));
        }
    }
    tokio::time::sleep((soak - window).saturating_sub(soak_started.elapsed())).await;
    let cpu: Vec<Option<CpuSample>> = if cpu_window.is_some() {
        let samples = futures::future::join_all(
            running
                .iter()
                .map(|r| procstat::sample_cpu(r.bridge.pid(), window)),
        )
        .await;
        samples.into_iter().map(Result::ok).collect()
    } else {
        tokio::time::sleep(window).await;
        running.iter().map(|_| None).collect()
    };
    let soaked = soak_started.elapsed();
    let mut out = Vec::new();
    for ((r, cpu), rss_series_kb) in running.into_iter().zip(cpu).zip(series) {
        let rss_after = procstat::rss_kb(r.bridge.pid())?;
        out.push(Footprint {
            kind: r.kind,
            doors: r.doors,
            up_seconds: r.up.as_secs_f64(),
            rss_up_kb: r.rss_up,
            rss_after_kb: rss_after,
            soak_seconds: soaked.as_secs_f64(),
            rss_series_kb,
            cpu_seconds_per_minute: cpu.map(|c| c.seconds_per_minute()),
            cpu_percent_of_core: cpu.map(|c| c.percent_of_core()),
        });
        let ids_of_bridge = r.doors;
        r.bridge.stop().await?;
        tracing::debug!(doors = ids_of_bridge, "bridge stopped");
    }
    for (_, _, site) in bridges {
        world
            .wait_disconnected(&ids(site.doors), Duration::from_secs(30))
            .await?;
    }
    Ok(out)
}

/// KB per door from two footprints: (RSS₁₀₀₀ − RSS₁) / (1000 − 1).
pub fn kb_per_door(small: &Footprint, big: &Footprint, after: bool) -> f64 {
    let (a, b) = if after {
        (small.rss_after_kb, big.rss_after_kb)
    } else {
        (small.rss_up_kb, big.rss_up_kb)
    };
    (b as f64 - a as f64) / (big.doors as f64 - small.doors as f64).max(1.0)
}
