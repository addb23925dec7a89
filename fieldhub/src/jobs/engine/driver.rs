//! One running job's driver (a child of the engine, whose state it shares): picks the next
//! device, waits for a pacing slot, runs the device operation as its own task (so slow devices
//! do not stall the pace), applies results, retries retryable failures with backoff, and
//! expires the job when its time runs out.
//!
//! Durability: devices are marked `running` and written to the store (durably) before their
//! operations are spawned, and results are written before they count; a failed write undoes
//! the transition. Devices started together, and results that arrive together, share one
//! write, so an unthrottled job pays one flush per batch rather than two per device.

use super::{persist_devices, persist_job, Inner};
use crate::jobs::model::{
    CloudToDeviceMethod, DeviceJobError, DeviceJobStatus, JobStatus, JobType, MethodOutcome,
};
use crate::jobs::ops::{DeviceOpError, DeviceOps};
use crate::jobs::state::JobState;
use crate::jobs::store::JobStore;
use chrono::{DateTime, Utc};
use iothub_proto::backoff;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Retry delay for a device that was offline: 1 s doubling to 30 s, each drawn within ±20 %
/// so the devices of a job that went offline together do not come back in step.
const RETRY: backoff::Policy = backoff::Policy {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
    multiplier: 2,
    jitter: backoff::Jitter::between(0.8, 1.2),
};
/// Extra time the engine grants a method call beyond its own timeouts before giving up on it.
const OP_GRACE: Duration = Duration::from_secs(5);
/// Deadline for a twin update operation.
const TWIN_OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations one job may have outstanding at once (bounds tasks when pacing is lifted).
const MAX_IN_FLIGHT: usize = 1000;
/// Most devices started, or results recorded, by one store write.
const BATCH: usize = 64;

/// The operation a job performs on each device.
#[derive(Clone)]
enum Operation {
    Method(CloudToDeviceMethod),
    Twin(Value),
}

type OpResult = Result<Option<MethodOutcome>, DeviceOpError>;

impl Operation {
    /// The operation as sent to a device with `remaining` job time: the hub's wait for an
    /// offline device to connect never outlasts the job, so a device that stays offline
    /// fails with the hub's `DeviceNotOnline` rather than being cut off mid-wait.
    fn within(&self, remaining: Duration) -> Operation {
        match self {
            Operation::Method(m) => {
                let mut m = m.clone();
                let connect = m.connect_timeout().min(remaining.as_secs());
                m.connect_timeout_in_seconds = Some(connect);
                Operation::Method(m)
            }
            Operation::Twin(p) => Operation::Twin(p.clone()),
        }
    }
}

async fn perform<O: DeviceOps>(ops: &O, device_id: &str, op: &Operation) -> OpResult {
    match op {
        Operation::Method(m) => {
            let limit = Duration::from_secs(m.response_timeout() + m.connect_timeout()) + OP_GRACE;
            match tokio::time::timeout(limit, ops.invoke_method(device_id, m)).await {
                Ok(r) => r.map(Some),
                Err(_) => Err(DeviceOpError {
                    code: "GatewayTimeout".to_owned(),
                    description: format!("device '{device_id}' did not answer in time"),
                    retryable: false,
                }),
            }
        }
        Operation::Twin(patch) => {
            match tokio::time::timeout(TWIN_OP_TIMEOUT, ops.update_twin(device_id, patch)).await {
                Ok(r) => r.map(|()| None),
                Err(_) => Err(DeviceOpError {
                    code: "GatewayTimeout".to_owned(),
                    description: format!("twin update of '{device_id}' timed out"),
                    retryable: false,
                }),
            }
        }
    }
}

/// Delay before a device's next try after its `attempts`-th retryable failure.
fn backoff(attempts: u32) -> Duration {
    RETRY.delay(attempts.saturating_sub(1), rand::random::<f64>())
}

/// Drives one running job until it is terminal, cancelled, or the engine shuts down.
pub(super) async fn drive<O: DeviceOps, S: JobStore>(
    inner: Arc<Inner<O, S>>,
    job_id: String,
    token: CancellationToken,
) {
    let op = {
        let jobs = inner.jobs();
        let Some(job) = jobs.get(&job_id) else {
            drop(jobs);
            inner.drivers().remove(&job_id);
            return;
        };
        match job.request.job_type {
            JobType::ScheduleDeviceMethod => job
                .request
                .cloud_to_device_method
                .clone()
                .map(Operation::Method),
            _ => Some(Operation::Twin(job.twin_patch())),
        }
    };
    let Some(op) = op else {
        inner.drivers().remove(&job_id);
        return;
    };
    // The spawned device operations, and the devices they are for (a device is skipped by
    // `next_device` while its operation runs).
    let mut operations: JoinSet<(String, OpResult)> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut retries: HashMap<String, (DateTime<Utc>, u32)> = HashMap::new();
    // Devices are first dispatched in key order; the cursor keeps each pick O(log n).
    let mut cursor: Option<String> = None;
    loop {
        let now = inner.clock.now();
        let (ready, wake_at) = {
            let mut jobs = inner.jobs();
            let Some(job) = jobs.get_mut(&job_id) else {
                break;
            };
            if job.status != JobStatus::Running {
                break;
            }
            if now >= job.deadline() {
                job.expire(now);
                tracing::info!(job = job_id, "job reached maxExecutionTimeInSeconds");
                persist_job(&inner.store, job);
                break;
            }
            let mut wake_at = job.deadline();
            let ready = if in_flight.len() >= MAX_IN_FLIGHT {
                None
            } else {
                next_device(
                    job,
                    now,
                    cursor.as_deref(),
                    &in_flight,
                    &retries,
                    &mut wake_at,
                )
            };
            (ready, wake_at)
        };
        if token.is_cancelled() {
            // Stopping: start nothing new, but record what the devices answer to the
            // operations already sent (bounded by their own deadlines), so a restart finds
            // their outcomes instead of failing them as unknown. Each is recorded as it
            // arrives: the hub may abort this wait, and one silent device must not cost the
            // answers of the others.
            while let Some(joined) = operations.join_next().await {
                if let Ok((device, result)) = joined {
                    in_flight.remove(&device);
                    apply(&inner, &job_id, vec![(device, result)], &mut retries);
                }
            }
            break;
        }
        let slot = inner.pacer.next_slot();
        let wake = inner.instant_at(wake_at);
        tokio::select! {
            biased;
            _ = token.cancelled() => continue,
            Some(joined) = operations.join_next(), if !operations.is_empty() => {
                // Whatever else has finished too is recorded by the same write.
                let mut results = Vec::new();
                let mut next = Some(joined);
                while let Some(joined) = next {
                    if let Ok((device, result)) = joined {
                        in_flight.remove(&device);
                        results.push((device, result));
                    }
                    next = if results.len() < BATCH { operations.try_join_next() } else { None };
                }
                apply(&inner, &job_id, results, &mut retries);
            }
            // A slot that has come needs no timer: one would only fire on the driver's next
            // millisecond tick, capping an unthrottled job at a device per millisecond.
            _ = async { if slot > tokio::time::Instant::now() { tokio::time::sleep_until(slot).await } }, if ready.is_some() => {
                let Some(device) = ready else { continue };
                if !inner.pacer.take() {
                    continue;
                }
                let (started, remaining) =
                    start(&inner, &job_id, device, &mut cursor, &in_flight, &mut retries);
                let op = op.within(remaining);
                for device in started {
                    in_flight.insert(device.clone());
                    let ops = inner.ops.clone();
                    let op = op.clone();
                    operations.spawn(async move {
                        let result = perform(&*ops, &device, &op).await;
                        (device, result)
                    });
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    inner.drivers().remove(&job_id);
    inner.wake.notify_one();
}

/// Picks the next device to operate on: a due retry first, else the next never-tried pending
/// device after `cursor`. Lowers `wake_at` to the earliest retry not yet due.
fn next_device(
    job: &JobState,
    now: DateTime<Utc>,
    cursor: Option<&str>,
    in_flight: &HashSet<String>,
    retries: &HashMap<String, (DateTime<Utc>, u32)>,
    wake_at: &mut DateTime<Utc>,
) -> Option<String> {
    let pending = |id: &str| {
        job.devices
            .get(id)
            .is_some_and(|d| d.status == DeviceJobStatus::Pending)
            && !in_flight.contains(id)
    };
    let mut due = None;
    for (id, (at, _)) in retries {
        if !pending(id) {
            continue;
        }
        if *at <= now {
            due = Some(id.clone());
            break;
        }
        *wake_at = (*wake_at).min(*at);
    }
    if due.is_some() {
        return due;
    }
    let after = match cursor {
        Some(c) => (Bound::Excluded(c), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    };
    job.devices
        .range::<str, _>(after)
        .find(|(id, _)| pending(id) && !retries.contains_key(id.as_str()))
        .map(|(id, _)| id.clone())
}

/// Marks `first`, and as many further ready devices as the pacer allows (up to [`BATCH`]),
/// `running`, and records them in one store write. Returns the devices whose operations may be
/// sent (none if the write failed: they go back to `pending` and are retried later) and the
/// job's remaining time.
fn start<O, S: JobStore>(
    inner: &Inner<O, S>,
    job_id: &str,
    first: String,
    cursor: &mut Option<String>,
    in_flight: &HashSet<String>,
    retries: &mut HashMap<String, (DateTime<Utc>, u32)>,
) -> (Vec<String>, Duration) {
    let mut jobs = inner.jobs();
    let now = inner.clock.now();
    let Some(job) = jobs.get_mut(job_id) else {
        return (Vec::new(), Duration::ZERO);
    };
    let remaining = (job.deadline() - now).to_std().unwrap_or_default();
    let mut saved = job.save([]);
    let mut started = Vec::new();
    let mut next = Some(first);
    while let Some(device) = next.take() {
        saved.keep(job, &device);
        if !job.device_started(&device, now) {
            break;
        }
        if cursor.as_deref().is_none_or(|c| c < device.as_str()) {
            *cursor = Some(device.clone());
        }
        started.push(device);
        if started.len() >= BATCH || in_flight.len() + started.len() >= MAX_IN_FLIGHT {
            break;
        }
        let mut wake_at = job.deadline();
        next = next_device(
            job,
            now,
            cursor.as_deref(),
            in_flight,
            retries,
            &mut wake_at,
        )
        .filter(|_| inner.pacer.take());
    }
    if !started.is_empty() && !persist_devices(&inner.store, job, &started) {
        // Unrecorded, so unsent: a crash now must not leave a device called without a trace.
        job.restore(saved);
        for device in started.drain(..) {
            let entry = retries.entry(device).or_insert((now, 0));
            entry.1 += 1;
            entry.0 = now + chrono::Duration::from_std(backoff(entry.1)).unwrap_or_default();
        }
    }
    (started, remaining)
}

/// Records operation results in the job, in one store write; if the write fails the devices
/// stay `running` (uncounted), as a restart would find them.
fn apply<O, S: JobStore>(
    inner: &Inner<O, S>,
    job_id: &str,
    results: Vec<(String, OpResult)>,
    retries: &mut HashMap<String, (DateTime<Utc>, u32)>,
) {
    if results.is_empty() {
        return;
    }
    let now = inner.clock.now();
    let mut jobs = inner.jobs();
    let Some(job) = jobs.get_mut(job_id) else {
        return;
    };
    let saved = job.save(results.iter().map(|(d, _)| d.as_str()));
    let mut changed = Vec::new();
    for (device, result) in results {
        if apply_one(job, &device, result, retries, now) {
            changed.push(device);
        }
    }
    if changed.is_empty() {
        return;
    }
    if persist_devices(&inner.store, job, &changed) {
        if job.status.is_terminal() {
            tracing::info!(job = job_id, stats = ?job.statistics(), "job finished");
        }
    } else {
        job.restore(saved);
    }
}

/// One operation's result as a transition of `job`; returns whether the device changed.
fn apply_one(
    job: &mut JobState,
    device: &str,
    result: OpResult,
    retries: &mut HashMap<String, (DateTime<Utc>, u32)>,
    now: DateTime<Utc>,
) -> bool {
    let changed = match result {
        Ok(outcome) => job.device_succeeded(device, outcome, now),
        Err(e) => {
            let error = DeviceJobError {
                code: e.code.clone(),
                description: e.description.clone(),
            };
            if e.retryable && now < job.deadline() {
                let entry = retries.entry(device.to_owned()).or_insert((now, 0));
                entry.1 += 1;
                entry.0 = now + chrono::Duration::from_std(backoff(entry.1)).unwrap_or_default();
                job.device_retry(device, error, now)
            } else {
                job.device_failed(device, error, now)
            }
        }
    };
    if job
        .devices
        .get(device)
        .is_none_or(|d| d.status != DeviceJobStatus::Pending)
    {
        retries.remove(device);
    }
    changed
}
