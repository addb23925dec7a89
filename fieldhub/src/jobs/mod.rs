//! Jobs v2 (reference §3.6, §5): scheduled method and twin-update jobs across the devices a
//! query selects.
//!
//! - [`model`]: the wire types (JobRequest, JobResponse, DeviceJob, statuses).
//! - [`state`]: the pure state machine; statistics are derived from device records.
//! - [`store`]: persistence trait (+ in-memory store) so jobs survive restarts.
//! - [`ops`]: what the engine needs from the hub (twins, methods, twin patches, a clock).
//! - [`engine`]: the runner — schedules, paces device operations, retries offline devices,
//!   bounds active jobs, prunes old jobs.

mod driver;
pub mod engine;
pub mod model;
pub mod ops;
mod pacer;
pub mod state;
pub mod store;

pub use engine::{JobEngine, JobLimits};
pub use model::{
    CloudToDeviceMethod, DeviceJob, DeviceJobError, DeviceJobOutcome, DeviceJobStatistics,
    DeviceJobStatus, JobRequest, JobResponse, JobStatus, JobType, MethodOutcome,
};
pub use ops::{Clock, DeviceOpError, DeviceOps, SystemClock, TokioClock};
pub use state::JobState;
pub use store::{JobStore, JobStoreError, MemoryJobStore};

use crate::query::QueryError;

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
            // No documented code for a duplicate jobId (reference §8).
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
