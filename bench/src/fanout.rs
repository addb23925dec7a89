//! Workload 6, job fan-out: a `lockDoor` method job and a twin-update job (desired
//! `Building`) over every door of a gateway, the hub's job pacing lifted: devices per second.

use std::time::{Duration, Instant};

use crate::bridges::{ids, Bridge, Kind, Launch, Site};
use crate::env::{Door, SimPool, World};
use crate::jobs::{self, JobRun};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Fanout {
    pub doors: usize,
    pub method: JobRun,
    pub twin: JobRun,
}

pub async fn run(
    world: &World,
    launch: &Launch,
    doors: &[Door],
    pool: &SimPool,
) -> anyhow::Result<Fanout> {
    let ids = ids(doors);
    let site = Site {
        doors,
        pool,
        poll_interval: "1s",
        connects_per_second: 0,
    };
    let mut bridge = Bridge::start(Kind::Fieldgate, world, launch, "fanout", site)?;
    bridge
        .wait_up(world, &ids, Instant::now(), Duration::from_secs(300))
        .await?;
    jobs::wait_methods(world, &ids).await?;
    let limit = Duration::from_secs(600);
    let method = jobs::run_job(world, jobs::method_job("fanout-method", &ids), limit).await?;
    let twin = jobs::run_job(world, jobs::twin_job("fanout-twin", &ids, 43), limit).await?;
    method.ensure_all_succeeded("method job", ids.len())?;
    twin.ensure_all_succeeded("twin-update job", ids.len())?;
    bridge.stop().await?;
    world
        .wait_disconnected(&ids, Duration::from_secs(30))
        .await?;
    Ok(Fanout {
        doors: doors.len(),
        method,
        twin,
    })
}
