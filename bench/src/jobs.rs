//! Fanning `lockDoor` out over many doors: through a hub job (`PUT /jobs/v2/{id}`) when the
//! hub serves jobs, otherwise as concurrent direct methods (what an unthrottled job does).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::hub::Sub;
use serde_json::json;

use crate::env::World;

const METHOD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub enum JobRunner {
    /// Every door's method at once from the hub library.
    DirectMethods,
}

#[derive(Debug, Clone)]
pub struct JobRun {
    pub wall: Duration,
    pub via: &'static str,
    pub failed: usize,
}

impl JobRunner {
    /// Waits until every door takes methods, then locks them all and times it.
    pub async fn lock_doors(&self, world: &World, ids: &[String]) -> anyhow::Result<JobRun> {
        let hub = &world.hub.hub;
        for id in ids {
            anyhow::ensure!(
                hub.wait_ready(id, Some(Sub::Methods), Duration::from_secs(60))
                    .await,
                "{id} did not subscribe to methods"
            );
        }
        match self {
            JobRunner::DirectMethods => {
                let started = Instant::now();
                let results = futures::future::join_all(ids.iter().map(|id| {
                    hub.invoke_method(id, "lockDoor", json!({}), METHOD_TIMEOUT, METHOD_TIMEOUT)
                }))
                .await;
                let wall = started.elapsed();
                let failed = results
                    .iter()
                    .filter(|r| r.as_ref().map_or(true, |r| r.status != 200))
                    .count();
                if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                    tracing::warn!(error = %e, failed, "lockDoor calls failed");
                }
                anyhow::ensure!(failed == 0, "{failed} of {} lockDoor calls failed", ids.len());
                Ok::<_, anyhow::Error>(JobRun {
                    wall,
                    via: "concurrent direct methods",
                    failed,
                })
            }
        }
        .context("lockDoor fan-out")
    }
}
