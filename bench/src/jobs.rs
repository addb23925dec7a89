//! Jobs over many doors through the hub's job engine (what `PUT /jobs/v2/{id}` creates),
//! with the hub's job pacing lifted: the `lockDoor` job of workload 1 and the method and
//! twin-update jobs of workload 6. Concurrent direct methods remain as a fallback for hubs
//! without jobs.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fieldhub::hub::Sub;
use fieldhub::jobs::{DeviceJob, DeviceJobStatistics, JobRequest, JobStatus};
use serde_json::{json, Value};

use crate::env::World;

const METHOD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the job's status is read (in-process, cheap): the wall time is this precise.
const JOB_POLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRunner {
    /// A `scheduleDeviceMethod` job in the hub's job engine.
    HubJob,
    /// Every door's method at once from the hub library.
    DirectMethods,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRun {
    /// From creating the job until the hub reports it terminal.
    pub wall: Duration,
    /// From the first device's start to the last device's end (the hub's device-job
    /// records): the wall time without the hub's job start (query over the registry).
    pub device_span: Option<Duration>,
    /// From creating the job to its first device starting.
    pub start_delay: Option<Duration>,
    pub via: &'static str,
    pub devices: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl JobRun {
    pub fn devices_per_second(&self) -> f64 {
        self.devices as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Fails unless every one of `doors` succeeded (a figure over failed doors means nothing).
    pub fn ensure_all_succeeded(&self, what: &str, doors: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.failed == 0 && self.succeeded == doors as u64,
            "{what} over {doors} doors: {} succeeded, {} failed",
            self.succeeded,
            self.failed
        );
        Ok(())
    }
}

/// Waits until every door has subscribed to methods (a job would otherwise wait for them).
pub async fn wait_methods(world: &World, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        anyhow::ensure!(
            world
                .hub
                .hub
                .wait_ready(id, Some(Sub::Methods), Duration::from_secs(60))
                .await,
            "{id} did not subscribe to methods"
        );
    }
    Ok(())
}

fn condition(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("deviceId IN [{}]", list.join(", "))
}

/// Creates a job from `body` (a `PUT /jobs/v2/{id}` body) and waits until it is terminal.
pub async fn run_job(world: &World, body: Value, limit: Duration) -> anyhow::Result<JobRun> {
    let req: JobRequest = serde_json::from_value(body).context("job request")?;
    let id = req.job_id.clone();
    let started = Instant::now();
    let created_at = chrono::Utc::now();
    world
        .hub
        .jobs
        .create(req)
        .await
        .with_context(|| format!("creating job {id}"))?;
    loop {
        let job = world.hub.jobs.get(&id)?;
        if job.status.is_terminal() {
            let wall = started.elapsed();
            let stats: DeviceJobStatistics = job.device_job_statistics.unwrap_or_default();
            anyhow::ensure!(
                job.status == JobStatus::Completed,
                "job {id} ended {}: {:?}",
                job.status.as_str(),
                job.failure_reason
            );
            let records = device_records(world, &id);
            let first = records.iter().map(|d| d.start_time_utc).min();
            let last = records.iter().map(|d| d.end_time_utc).max();
            // A device job "succeeds" once the device answered, whatever its status: a door
            // answering 503 (its bus unreachable) did not lock, and must not count.
            let refused = records
                .iter()
                .filter_map(|d| d.outcome.as_ref()?.device_method_response.as_ref())
                .filter(|r| r.status != 200)
                .count() as u64;
            return Ok(JobRun {
                wall,
                device_span: first.zip(last).and_then(|(f, l)| (l - f).to_std().ok()),
                start_delay: first.and_then(|f| (f - created_at).to_std().ok()),
                via: "job",
                devices: stats.device_count,
                succeeded: stats.succeeded_count.saturating_sub(refused),
                failed: stats.failed_count + refused,
            });
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "job {id} still running after {limit:?}"
        );
        tokio::time::sleep(JOB_POLL).await;
    }
}

/// The job's device records.
pub fn device_records(world: &World, job_id: &str) -> Vec<DeviceJob> {
    world
        .hub
        .jobs
        .device_jobs()
        .into_iter()
        .filter_map(|v| serde_json::from_value::<DeviceJob>(v).ok())
        .filter(|d| d.job_id == job_id)
        .collect()
}

/// A `lockDoor` method job over `ids`.
pub fn method_job(job_id: &str, ids: &[String]) -> Value {
    json!({"jobId": job_id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": 30},
        "queryCondition": condition(ids), "startTime": null, "maxExecutionTimeInSeconds": 600})
}

/// A twin-update job setting desired `Building` on `ids`.
pub fn twin_job(job_id: &str, ids: &[String], building: u16) -> Value {
    json!({"jobId": job_id, "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {}, "properties": {"desired": {"Building": building}, "reported": {}}},
        "queryCondition": condition(ids), "startTime": null, "maxExecutionTimeInSeconds": 600})
}

impl JobRunner {
    /// Waits until every door takes methods, then locks them all and times it.
    pub async fn lock_doors(
        &self,
        world: &World,
        job_id: &str,
        ids: &[String],
    ) -> anyhow::Result<JobRun> {
        wait_methods(world, ids).await?;
        let run = match self {
            JobRunner::HubJob => {
                run_job(world, method_job(job_id, ids), Duration::from_secs(600)).await?
            }
            JobRunner::DirectMethods => {
                let hub = &world.hub.hub;
                let started = Instant::now();
                let results = futures::future::join_all(ids.iter().map(|id| {
                    hub.invoke_method(id, "lockDoor", json!({}), METHOD_TIMEOUT, METHOD_TIMEOUT)
                }))
                .await;
                let failed = results
                    .iter()
                    .filter(|r| r.as_ref().map_or(true, |r| r.status != 200))
                    .count() as u64;
                JobRun {
                    wall: started.elapsed(),
                    device_span: None,
                    start_delay: None,
                    via: "concurrent direct methods",
                    devices: ids.len() as u64,
                    succeeded: ids.len() as u64 - failed,
                    failed,
                }
            }
        };
        run.ensure_all_succeeded("lockDoor", ids.len())?;
        Ok(run)
    }
}
