//! Where jobs live across restarts. The engine writes through [`JobStore`] after every
//! transition; the hub provides a redb-backed store, tests use [`MemoryJobStore`].

use super::model::DeviceJob;
use super::state::JobState;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A store write or read failed; the message names the job and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("job store: {0}")]
pub struct JobStoreError(pub String);

/// Persistence for jobs. Calls are synchronous and short (one small write); the engine never
/// holds an await across them.
pub trait JobStore: Send + Sync + 'static {
    /// Saves the whole job (header and every device record).
    fn save_job(&self, job: &JobState) -> Result<(), JobStoreError>;
    /// Saves one device record of an already saved job (the hot path while a job runs).
    fn save_device(&self, job_id: &str, device: &DeviceJob) -> Result<(), JobStoreError>;
    /// Removes a job (retention pruning).
    fn delete_job(&self, job_id: &str) -> Result<(), JobStoreError>;
    /// Every stored job, with its device records.
    fn load_jobs(&self) -> Result<Vec<JobState>, JobStoreError>;
}

impl<S: JobStore> JobStore for Arc<S> {
    fn save_job(&self, job: &JobState) -> Result<(), JobStoreError> {
        (**self).save_job(job)
    }
    fn save_device(&self, job_id: &str, device: &DeviceJob) -> Result<(), JobStoreError> {
        (**self).save_device(job_id, device)
    }
    fn delete_job(&self, job_id: &str) -> Result<(), JobStoreError> {
        (**self).delete_job(job_id)
    }
    fn load_jobs(&self) -> Result<Vec<JobState>, JobStoreError> {
        (**self).load_jobs()
    }
}

/// An in-memory store; share it (`Arc`) between engines to simulate a restart.
#[derive(Debug, Default)]
pub struct MemoryJobStore {
    jobs: Mutex<BTreeMap<String, JobState>>,
}

impl MemoryJobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobState>> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl JobStore for MemoryJobStore {
    fn save_job(&self, job: &JobState) -> Result<(), JobStoreError> {
        self.lock().insert(job.id().to_owned(), job.clone());
        Ok(())
    }

    fn save_device(&self, job_id: &str, device: &DeviceJob) -> Result<(), JobStoreError> {
        let mut jobs = self.lock();
        let job = jobs
            .get_mut(job_id)
            .ok_or_else(|| JobStoreError(format!("job '{job_id}' is not stored")))?;
        job.devices.insert(device.device_id.clone(), device.clone());
        Ok(())
    }

    fn delete_job(&self, job_id: &str) -> Result<(), JobStoreError> {
        self.lock().remove(job_id);
        Ok(())
    }

    fn load_jobs(&self) -> Result<Vec<JobState>, JobStoreError> {
        Ok(self.lock().values().cloned().collect())
    }
}
