//! Where jobs live across restarts. The engine writes through [`JobStore`] after every
//! transition; the hub provides a redb-backed store, tests use [`MemoryJobStore`].
//!
//! Contract: a write that returns `Ok` survives a crash of the process (and of the machine,
//! for stores on disk). The engine relies on it to record a device operation before it is sent
//! and its outcome before it is counted, so a restart never repeats an operation that reached a
//! device.

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
    /// Saves device records of an already saved job in one durable write (the hot path while a
    /// job runs: the engine batches the devices it starts, and the results it collects, so one
    /// flush covers many devices).
    fn save_devices(&self, job_id: &str, devices: &[&DeviceJob]) -> Result<(), JobStoreError>;
    /// Saves one device record of an already saved job.
    fn save_device(&self, job_id: &str, device: &DeviceJob) -> Result<(), JobStoreError> {
        self.save_devices(job_id, &[device])
    }
    /// Removes a job (retention pruning).
    fn delete_job(&self, job_id: &str) -> Result<(), JobStoreError>;
    /// Every stored job, with its device records.
    fn load_jobs(&self) -> Result<Vec<JobState>, JobStoreError>;
}

impl<S: JobStore> JobStore for Arc<S> {
    fn save_job(&self, job: &JobState) -> Result<(), JobStoreError> {
        (**self).save_job(job)
    }
    fn save_devices(&self, job_id: &str, devices: &[&DeviceJob]) -> Result<(), JobStoreError> {
        (**self).save_devices(job_id, devices)
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

    fn save_devices(&self, job_id: &str, devices: &[&DeviceJob]) -> Result<(), JobStoreError> {
        let mut jobs = self.lock();
        let job = jobs
            .get_mut(job_id)
            .ok_or_else(|| JobStoreError(format!("job '{job_id}' is not stored")))?;
        for d in devices {
            job.devices.insert(d.device_id.clone(), (*d).clone());
        }
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
