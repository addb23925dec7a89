//! Jobs v2 (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs): scheduled method and twin-update jobs across the devices a
//! query selects.
//!
//! - [`model`]: the wire types (JobRequest, JobResponse, DeviceJob, statuses).
//! - [`state`]: the pure state machine; statistics are derived from device records.
//! - [`store`]: persistence trait (+ in-memory store) so jobs survive restarts.
//! - [`ops`]: what the engine needs from the hub (twins, methods, twin patches, a clock).
//! - [`engine`]: the runner — schedules, paces device operations, retries offline devices,
//!   bounds active jobs, prunes old jobs.
//! - [`hub_ops`] and [`redb_store`]: the engine wired to the real hub ([`HubJobs`]).

pub mod engine;
pub mod hub_ops;
pub mod model;
pub mod ops;
mod pacer;
pub mod redb_store;
pub mod state;
pub mod store;

pub use engine::{JobEngine, JobLimits};
pub use hub_ops::HubOps;
pub use model::{
    CloudToDeviceMethod, DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceJobStatistics,
    DeviceJobStatus, JobRequest, JobResponse, JobStatus, JobType, MethodOutcome,
};
pub use ops::{select_from, Clock, DeviceOpError, DeviceOps, SystemClock, TokioClock};
pub use redb_store::RedbJobStore;
pub use state::JobState;
pub use store::{JobStore, JobStoreError, MemoryJobStore};

use crate::error::HubError;
use crate::query::QueryError;

/// The job engine of a running hub (`RunningHub::jobs`).
pub type HubJobs = JobEngine<HubOps, RedbJobStore>;

/// Why a job request was refused. [`JobError::http_status`] and [`JobError::error_code`] give
/// what the REST layer answers (`iothub-errorcode` and the numeric code).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job request: {0}")]
    Invalid(String),
    #[error("invalid queryCondition: {0}")]
    InvalidQuery(QueryError),
    #[error("job '{0}' not found")]
    NotFound(String),
    #[error("job '{0}' already exists; use a new jobId")]
    AlreadyExists(String),
    #[error("at most {max} active job(s) allowed; wait for one to finish or cancel it")]
    TooManyActiveJobs { max: usize },
    #[error(transparent)]
    Store(#[from] JobStoreError),
}

impl JobError {
    pub fn http_status(&self) -> u16 {
        match self {
            JobError::Invalid(_) | JobError::InvalidQuery(_) | JobError::AlreadyExists(_) => 400,
            JobError::NotFound(_) => 404,
            JobError::TooManyActiveJobs { .. } => 429,
            JobError::Store(_) => 500,
        }
    }

    /// `(numeric code, iothub-errorcode name)`.
    pub fn error_code(&self) -> (u32, &'static str) {
        match self {
            JobError::Invalid(_) | JobError::InvalidQuery(_) => (400004, "ArgumentInvalid"),
            // No documented code for a duplicate jobId (the docs give none; this is fieldhub's choice).
            JobError::AlreadyExists(_) => (400003, "InvalidOperation"),
            JobError::NotFound(_) => (404002, "JobNotFound"),
            JobError::TooManyActiveJobs { .. } => (429004, "ThrottlingMaxActiveJobCountExceeded"),
            JobError::Store(_) => (500001, "ServerError"),
        }
    }

    /// Character position of a `queryCondition` syntax error.
    pub fn position(&self) -> Option<usize> {
        match self {
            JobError::InvalidQuery(e) => Some(e.position),
            _ => None,
        }
    }
}

impl From<JobError> for HubError {
    fn from(e: JobError) -> Self {
        let text = e.to_string();
        match e {
            JobError::Invalid(_) | JobError::InvalidQuery(_) => HubError::ArgumentInvalid(text),
            JobError::NotFound(id) => HubError::JobNotFound(id),
            JobError::AlreadyExists(_) => HubError::InvalidOperation(text),
            JobError::TooManyActiveJobs { .. } => HubError::MaxActiveJobs(text),
            JobError::Store(_) => HubError::Storage(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_keep_their_codes_as_hub_errors() {
        let errors = [
            JobError::Invalid("x".into()),
            JobError::InvalidQuery(crate::query::parse_condition("a =").unwrap_err()),
            JobError::NotFound("j".into()),
            JobError::AlreadyExists("j".into()),
            JobError::TooManyActiveJobs { max: 1 },
            JobError::Store(JobStoreError("x".into())),
        ];
        for e in errors {
            let (code, name) = e.error_code();
            let status = e.http_status();
            let h = HubError::from(e);
            assert_eq!((h.code(), h.name(), h.status()), (code, name, status));
        }
    }
}
