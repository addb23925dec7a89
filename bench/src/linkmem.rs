//! Workload 9, memory per door against the link floor: RSS of fieldgate with 1 and N doors
//! once every link is up and a settle has passed, and the same of the link floor
//! ([`crate::floor::links`]: N idle rustls + rumqttc connections, subscribed like a door) on
//! the same hub, one after the other. KB per door = (RSS_N − RSS_1) ÷ (N − 1) for each.

use std::time::{Duration, Instant};

use crate::bridges::{ids, Kind, Launch, Site};
use crate::child::{Proc, SpawnOptions};
use crate::env::{Door, SimPool, World};
use crate::floor::{self, links::LinkFloor};
use crate::footprint;
use crate::procstat;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkMemory {
    pub doors: usize,
    pub settle_seconds: f64,
    pub floor_rss_kb: [u64; 2],
    pub fieldgate_rss_kb: [u64; 2],
    pub floor_kb_per_door: f64,
    pub fieldgate_kb_per_door: f64,
    pub ratio: f64,
}

/// The link floor with `doors`: RSS once up and settled.
async fn floor_rss(
    world: &World,
    keep_alive: Duration,
    doors: &[Door],
    settle: Duration,
) -> anyhow::Result<u64> {
    let spec = LinkFloor {
        host_name: "localhost".into(),
        port: world.hub.mqtt_addr.port(),
        ca_file: world.hub.ca_path.clone(),
        keep_alive_secs: keep_alive.as_secs(),
        doors: doors
            .iter()
            .map(|d| (d.device_id.clone(), d.key.clone()))
            .collect(),
    };
    let tag = format!("link-floor-{}", doors.len());
    let spec_path = world.path(&format!("{tag}.json"));
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let spec_arg = spec_path.display().to_string();
    let mut p = Proc::spawn_with(
        &format!("link floor ({tag})"),
        &std::env::current_exe()?,
        &["floor-links", "--spec", &spec_arg],
        world.path(&format!("{tag}.log")),
        &SpawnOptions::default(),
    )?;
    let started = Instant::now();
    while !floor::has_line(&p.log, "links up") {
        p.check_alive()?;
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "link floor: not up after 300 s; log tail:\n{}",
            p.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    world
        .wait_connected(&ids(doors), started, Duration::from_secs(60))
        .await?;
    tokio::time::sleep(settle).await;
    let rss = procstat::rss_kb(p.pid)?;
    p.stop().await?;
    world
        .wait_disconnected(&ids(doors), Duration::from_secs(30))
        .await?;
    Ok(rss)
}

/// `sizes` = [1, N]: the link floor, then fieldgate (doorsim peer, two reads per poll).
pub async fn run(
    world: &World,
    launch: &Launch,
    doors: &[Door],
    pool: &SimPool,
    sizes: [usize; 2],
    settle: Duration,
) -> anyhow::Result<LinkMemory> {
    // The gateway's default keep-alive.
    let keep_alive = launch.tuning.keep_alive.unwrap_or(Duration::from_secs(60));
    let mut floor_rss_kb = [0; 2];
    for (slot, &n) in floor_rss_kb.iter_mut().zip(&sizes) {
        *slot = floor_rss(world, keep_alive, &doors[..n], settle).await?;
        tracing::info!(doors = n, rss_kb = *slot, "link floor");
    }
    let mut fieldgate_rss_kb = [0; 2];
    for (slot, &n) in fieldgate_rss_kb.iter_mut().zip(&sizes) {
        let site = Site {
            doors: &doors[..n],
            pool,
            poll_interval: "1s",
            connects_per_second: 0,
        };
        let f = footprint::run(
            world,
            launch,
            &[(Kind::Fieldgate, format!("linkmem-fieldgate-{n}"), site)],
            settle,
            None,
        )
        .await?;
        *slot = f[0].rss_after_kb;
        tracing::info!(doors = n, rss_kb = *slot, "fieldgate");
    }
    let per = |r: [u64; 2]| (r[1] as f64 - r[0] as f64) / (sizes[1] - sizes[0]).max(1) as f64;
    let (floor_kb_per_door, fieldgate_kb_per_door) = (per(floor_rss_kb), per(fieldgate_rss_kb));
    Ok(LinkMemory {
        doors: sizes[1],
        settle_seconds: settle.as_secs_f64(),
        floor_rss_kb,
        fieldgate_rss_kb,
        floor_kb_per_door,
        fieldgate_kb_per_door,
        ratio: fieldgate_kb_per_door / floor_kb_per_door,
    })
}
