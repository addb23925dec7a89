//! The job runner: owns every job's state, starts jobs at their start time, drives each running
//! job's devices with paced operations, retries offline devices until the job's time runs out,
//! persists after every transition and prunes finished jobs after the retention period.
//!
//! Concurrency: job state sits behind one `std::sync::Mutex`, never held across an await. The
//! `run` loop schedules; each running job gets one driver task that dispatches device operations
//! (each its own task, so slow devices do not stall the pace) and applies their results.
//! Device operations are at-most-once per device and job: a device is recorded `running`
//! durably before its operation is sent, and its outcome durably before it is counted; after a
//! restart a device still `running` is failed as outcome unknown, never called again.

mod driver;

use super::model::{JobRequest, JobResponse, JobStatus, JobType};
use super::ops::{Clock, DeviceOps, SystemClock};
use super::pacer::Pacer;
use super::state::JobState;
use super::store::JobStore;
use super::JobError;
use crate::query::Condition;
use chrono::{DateTime, Utc};
use driver::drive;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Limits modelled on an S1 hub by default; lift them for benchmarks.
#[derive(Debug, Clone)]
pub struct JobLimits {
    /// Job device operations (method calls, twin updates) per second across all jobs;
    /// `None` = unthrottled. Default 10.
    pub device_ops_per_second: Option<f64>,
    /// Jobs that may be queued, scheduled or running at once; creating one more fails with
    /// 429004. Default 1.
    pub max_active_jobs: usize,
    /// How long finished jobs are kept. Default 30 days.
    pub retention: Duration,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            device_ops_per_second: Some(10.0),
            max_active_jobs: 1,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Longest the run loop sleeps without a reason to wake (bounds clock drift effects).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// The job engine; a cheap `Clone` handle.
pub struct JobEngine<O: DeviceOps, S: JobStore> {
    inner: Arc<Inner<O, S>>,
}

impl<O: DeviceOps, S: JobStore> Clone for JobEngine<O, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<O: DeviceOps, S: JobStore> std::fmt::Debug for JobEngine<O, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEngine")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

struct Inner<O, S> {
    ops: Arc<O>,
    store: S,
    limits: JobLimits,
    clock: Arc<dyn Clock>,
    jobs: Mutex<BTreeMap<String, JobState>>,
    /// Tokens of the running jobs' drivers, so cancel can stop one.
    drivers: Mutex<HashMap<String, CancellationToken>>,
    wake: Notify,
    pacer: Pacer,
}

impl<O, S> Inner<O, S> {
    fn jobs(&self) -> MutexGuard<'_, BTreeMap<String, JobState>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drivers(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokio instant at which the job clock reads `t`.
    fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        let ahead = (t - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + ahead.min(IDLE_WAKE)
    }
}

impl<O: DeviceOps, S: JobStore> JobEngine<O, S> {
    /// An engine on the system clock. Call [`JobEngine::resume`] and spawn [`JobEngine::run`].
    pub fn new(ops: Arc<O>, store: S, limits: JobLimits) -> Self {
        Self::with_clock(ops, store, limits, Arc::new(SystemClock))
    }

    /// An engine on a given clock (tests use [`super::TokioClock`] with paused time).
    pub fn with_clock(ops: Arc<O>, store: S, limits: JobLimits, clock: Arc<dyn Clock>) -> Self {
        let pacer = Pacer::new(limits.device_ops_per_second);
        Self {
            inner: Arc::new(Inner {
                ops,
                store,
                limits,
                clock,
                jobs: Mutex::new(BTreeMap::new()),
                drivers: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                pacer,
            }),
        }
    }

    /// Loads the stored jobs. Devices that were `running` when the hub stopped fail with
    /// [`super::state::OUTCOME_UNKNOWN`] (their operation may have reached them; see
    /// [`JobState::interrupt`]). Returns how many jobs were loaded.
    pub fn resume(&self) -> Result<usize, JobError> {
        let loaded = self.inner.store.load_jobs()?;
        let now = self.inner.clock.now();
        let n = loaded.len();
        let mut jobs = self.inner.jobs();
        for mut job in loaded {
            if !job.interrupt(now).is_empty() {
                self.inner.store.save_job(&job)?;
            }
            jobs.insert(job.id().to_owned(), job);
        }
        drop(jobs);
        self.inner.wake.notify_one();
        Ok(n)
    }

    /// Validates and stores a new job (status `queued`).
    pub async fn create(&self, req: JobRequest) -> Result<JobResponse, JobError> {
        let job = JobState::new(req, self.inner.clock.now())?;
        let mut jobs = self.inner.jobs();
        if jobs.contains_key(job.id()) {
            return Err(JobError::AlreadyExists(job.id().to_owned()));
        }
        let active = jobs.values().filter(|j| j.is_active()).count();
        if active >= self.inner.limits.max_active_jobs {
            return Err(JobError::TooManyActiveJobs {
                max: self.inner.limits.max_active_jobs,
            });
        }
        self.inner.store.save_job(&job)?;
        let response = job.response();
        tracing::info!(job = job.id(), start = %job.start_time(), "job created");
        jobs.insert(job.id().to_owned(), job);
        drop(jobs);
        self.inner.wake.notify_one();
        Ok(response)
    }

    pub fn get(&self, job_id: &str) -> Result<JobResponse, JobError> {
        self.inner
            .jobs()
            .get(job_id)
            .map(JobState::response)
            .ok_or_else(|| JobError::NotFound(job_id.to_owned()))
    }

    /// A full copy of a job's state (device records included).
    pub fn state(&self, job_id: &str) -> Option<JobState> {
        self.inner.jobs().get(job_id).cloned()
    }

    /// Cancels a job; a finished job is returned unchanged.
    pub fn cancel(&self, job_id: &str) -> Result<JobResponse, JobError> {
        let mut jobs = self.inner.jobs();
        let job = jobs
            .get_mut(job_id)
            .ok_or_else(|| JobError::NotFound(job_id.to_owned()))?;
        if job.cancel(self.inner.clock.now()) {
            self.inner.store.save_job(job)?;
            tracing::info!(job = job_id, "job cancelled");
        }
        let response = job.response();
        drop(jobs);
        if let Some(token) = self.inner.drivers().get(job_id) {
            token.cancel();
        }
        self.inner.wake.notify_one();
        Ok(response)
    }

    /// Jobs filtered by type and status (`GET /jobs/v2/query`), oldest first.
    pub fn list(&self, job_type: Option<JobType>, status: Option<JobStatus>) -> Vec<JobResponse> {
        let jobs = self.inner.jobs();
        let mut out: Vec<&JobState> = jobs
            .values()
            .filter(|j| job_type.is_none_or(|t| j.request.job_type == t))
            .filter(|j| status.is_none_or(|s| j.status == s))
            .collect();
        out.sort_by_key(|j| j.created_time);
        out.into_iter().map(JobState::response).collect()
    }

    /// Every device record of every job, as JSON for `SELECT … FROM devices.jobs`.
    pub fn device_jobs(&self) -> Vec<Value> {
        self.inner
            .jobs()
            .values()
            .flat_map(|j| j.devices.values())
            .filter_map(|d| serde_json::to_value(d).ok())
            .collect()
    }

    /// Runs the scheduler until `shutdown`: starts due jobs, drives running ones, prunes old
    /// ones. On shutdown, waits for the job drivers to stop (they record the outcomes of the
    /// operations in flight first).
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut drivers = JoinSet::new();
        loop {
            let (to_drive, next) = self.tick();
            for id in to_drive {
                let token = shutdown.child_token();
                self.inner.drivers().insert(id.clone(), token.clone());
                drivers.spawn(drive(self.inner.clone(), id, token));
            }
            let wake_at = next.map_or(Instant::now() + IDLE_WAKE, |t| self.inner.instant_at(t));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                Some(_) = drivers.join_next(), if !drivers.is_empty() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
        while drivers.join_next().await.is_some() {}
    }

    /// One scheduling pass. Returns running jobs that need a driver and when to look again.
    fn tick(&self) -> (Vec<String>, Option<DateTime<Utc>>) {
        let inner = &self.inner;
        let now = inner.clock.now();
        // Devices are selected outside the jobs lock: the hub's registry may be large. A job
        // is selected for when it is scheduled, or when it starts if it was due at once.
        let wanted: Vec<(String, Option<Condition>)> = inner
            .jobs()
            .values()
            .filter(|j| j.awaits_schedule(now) || (j.is_due(now) && j.needs_selection()))
            .map(|j| (j.id().to_owned(), j.condition()))
            .collect();
        let mut selected: HashMap<String, Vec<String>> = wanted
            .into_iter()
            .map(|(id, c)| (id, c.map(|c| inner.ops.select(&c)).unwrap_or_default()))
            .collect();
        let retention =
            chrono::Duration::from_std(inner.limits.retention).unwrap_or(chrono::Duration::MAX);
        let mut jobs = inner.jobs();
        let mut next: Option<DateTime<Utc>> = None;
        let mut expired = Vec::new();
        for job in jobs.values_mut() {
            let wants_selection =
                job.awaits_schedule(now) || (job.is_due(now) && job.needs_selection());
            let ids = match selected.remove(job.id()) {
                Some(ids) => ids,
                None if wants_selection => {
                    // Created since the selection above: handled on the next pass.
                    next = min_time(next, now);
                    continue;
                }
                None => Vec::new(),
            };
            if job.awaits_schedule(now) {
                job.defer(ids, now);
                tracing::info!(job = job.id(), devices = job.devices.len(), "job scheduled");
                persist_job(&inner.store, job);
            } else if job.is_due(now) {
                job.start_selected(ids, now);
                tracing::info!(job = job.id(), devices = job.devices.len(), "job started");
                persist_job(&inner.store, job);
            }
            match (job.status, job.end_time) {
                (JobStatus::Scheduled, _) => next = min_time(next, job.start_time()),
                (s, Some(end)) if s.is_terminal() => {
                    let until = end + retention;
                    if until <= now {
                        expired.push(job.id().to_owned());
                    } else {
                        next = min_time(next, until);
                    }
                }
                _ => {}
            }
        }
        for id in expired {
            if let Err(e) = inner.store.delete_job(&id) {
                tracing::warn!(job = id, error = %e, "pruning job failed");
            }
            jobs.remove(&id);
        }
        let drivers = inner.drivers();
        let to_drive = jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && !drivers.contains_key(j.id()))
            .map(|j| j.id().to_owned())
            .collect();
        (to_drive, next)
    }
}

fn min_time(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn persist_job<S: JobStore>(store: &S, job: &JobState) {
    if let Err(e) = store.save_job(job) {
        tracing::warn!(job = job.id(), error = %e, "saving job failed");
    }
}

/// Persists device transitions: the device records, or the whole job when the job finished.
/// Returns whether the write succeeded; the caller undoes the transitions if not, so that
/// nothing is sent or counted that a restart would not find.
fn persist_devices<S: JobStore>(store: &S, job: &JobState, device_ids: &[String]) -> bool {
    let result = if job.status.is_terminal() {
        store.save_job(job)
    } else {
        let records: Vec<_> = device_ids
            .iter()
            .filter_map(|id| job.devices.get(id))
            .collect();
        store.save_devices(job.id(), &records)
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(job = job.id(), devices = device_ids.len(), error = %e, "saving device job records failed");
            false
        }
    }
}
