//! What the job engine needs from the hub: the twins to select from, device operations, and a
//! clock. Kept as small traits so the engine can be tested without sockets.

use super::model::{CloudToDeviceMethod, MethodOutcome};
use crate::query::Condition;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::future::Future;

/// A device operation failed. `retryable` errors (device offline) are retried until the job's
/// time runs out; the last one is then recorded as the device's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct DeviceOpError {
    /// Hub error name, e.g. `DeviceNotOnline`, `GatewayTimeout`, `DeviceNotFound`.
    pub code: String,
    pub description: String,
    pub retryable: bool,
}

impl DeviceOpError {
    /// The error for a device that is not connected (retryable).
    pub fn not_online(device_id: &str) -> Self {
        Self {
            code: "DeviceNotOnline".to_owned(),
            description: format!("device '{device_id}' is not online"),
            retryable: true,
        }
    }
}

/// The hub operations jobs perform. Implementations bound their own I/O; the engine adds an
/// outer deadline as well.
pub trait DeviceOps: Send + Sync + 'static {
    /// Every device twin as the hub stores it (`deviceId`, `tags`, `properties`, …).
    fn twins(&self) -> Vec<Value>;

    /// Ids of the devices whose twin matches `condition` (a job's selection when it starts).
    /// Implementations that can evaluate it without copying every twin should.
    fn select(&self, condition: &Condition) -> Vec<String> {
        select_from(condition, &self.twins())
    }

    /// Invokes a direct method on a connected device.
    fn invoke_method(
        &self,
        device_id: &str,
        method: &CloudToDeviceMethod,
    ) -> impl Future<Output = Result<MethodOutcome, DeviceOpError>> + Send;

    /// Applies `patch` (`tags` and/or `properties.desired`, merge semantics) to a twin.
    fn update_twin(
        &self,
        device_id: &str,
        patch: &Value,
    ) -> impl Future<Output = Result<(), DeviceOpError>> + Send;
}

/// Ids of the `twins` that match `condition`, in their order.
pub fn select_from(condition: &Condition, twins: &[Value]) -> Vec<String> {
    twins
        .iter()
        .filter(|t| condition.matches(t))
        .filter_map(|t| t.get("deviceId").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Wall-clock time for job timestamps and schedules.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows tokio's clock from a fixed origin, so that `tokio::time::pause()` and
/// auto-advance move job time too. Share one instance between engines to model a restart.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(origin: DateTime<Utc>) -> Self {
        Self {
            origin,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.at.elapsed()).unwrap_or_default();
        self.origin + elapsed
    }
}
