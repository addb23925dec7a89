//! Workload 5, connect storm: from starting the gateway process until the hub sees every
//! door's link, with the gateway's connect pacing at a given rate or off.

use std::time::{Duration, Instant};

use crate::bridges::{ids, Bridge, Kind, Launch, Site};
use crate::env::{Door, SimPool, World};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Storm {
    pub doors: usize,
    /// 0 = pacing off.
    pub connects_per_second: u32,
    pub seconds: f64,
    pub links_per_second: f64,
    /// What pacing alone allows: `doors / rate` (the "10 s" at 1,000 doors, 100/s).
    pub pacing_bound_seconds: Option<f64>,
}

pub async fn run(
    world: &World,
    launch: &Launch,
    doors: &[Door],
    pool: &SimPool,
    connects_per_second: u32,
) -> anyhow::Result<Storm> {
    let ids = ids(doors);
    let site = Site {
        doors,
        pool,
        poll_interval: "1s",
        connects_per_second,
    };
    let started = Instant::now();
    let mut bridge = Bridge::start(
        Kind::Fieldgate,
        world,
        launch,
        &format!("storm-{connects_per_second}"),
        site,
    )?;
    let took = bridge
        .wait_up(world, &ids, started, Duration::from_secs(300))
        .await?;
    bridge.stop().await?;
    world
        .wait_disconnected(&ids, Duration::from_secs(30))
        .await?;
    let secs = took.as_secs_f64();
    Ok(Storm {
        doors: doors.len(),
        connects_per_second,
        seconds: secs,
        links_per_second: doors.len() as f64 / secs,
        pacing_bound_seconds: (connects_per_second > 0)
            .then(|| doors.len() as f64 / f64::from(connects_per_second)),
    })
}
