//! The hub's error type: every failure a service or device operation can report, with the HTTP
//! status, the six-digit IoT Hub error code and the `iothub-errorcode` name (https://learn.microsoft.com/azure/iot-hub/troubleshoot-error-codes).

use std::time::Duration;

/// Storage failures are kept as text: the redb error types are many and carry no data the
/// callers act on.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("device '{0}' not found")]
    DeviceNotFound(String),
    #[error("device '{0}' is not online (not connected or not subscribed to methods)")]
    DeviceNotOnline(String),
    #[error("device '{device}' did not answer method '{method}' within {timeout:?}")]
    GatewayTimeout {
        device: String,
        method: String,
        timeout: Duration,
    },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("invalid argument: {0}")]
    ArgumentInvalid(String),
    #[error("invalid operation: {0}")]
    InvalidOperation(String),
    #[error("malformed JSON: {0}")]
    FormatError(String),
    #[error("device '{0}' already exists")]
    DeviceAlreadyExists(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("message too large: {0}")]
    MessageTooLarge(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("job '{0}' not found")]
    JobNotFound(String),
    /// A DPS enrollment, enrollment group or registration.
    #[error("{0} not found")]
    NotFound(String),
    #[error("too many active jobs: {0}")]
    MaxActiveJobs(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("server error: {0}")]
    Internal(String),
}

impl HubError {
    /// HTTP status code the REST endpoint answers with.
    pub fn status(&self) -> u16 {
        (self.code() / 1000) as u16
    }

    /// Six-digit IoT Hub error code (e.g. 404103).
    pub fn code(&self) -> u32 {
        match self {
            HubError::DeviceNotFound(_) => 404001,
            HubError::DeviceNotOnline(_) => 404103,
            HubError::GatewayTimeout { .. } => 504101,
            HubError::Unauthorized(_) => 401002,
            HubError::InvalidOperation(_) => 400003,
            HubError::ArgumentInvalid(_) => 400004,
            HubError::FormatError(_) => 400006,
            HubError::DeviceAlreadyExists(_) => 409001,
            HubError::PreconditionFailed(_) => 412001,
            HubError::MessageTooLarge(_) => 413001,
            HubError::Throttled(_) => 429001,
            HubError::JobNotFound(_) => 404002,
            HubError::NotFound(_) => 404000,
            HubError::MaxActiveJobs(_) => 429004,
            HubError::Storage(_) | HubError::Internal(_) => 500001,
        }
    }

    /// Code name as sent in the `iothub-errorcode` header and envelope A's `ErrorCode:`.
    pub fn name(&self) -> &'static str {
        match self {
            HubError::DeviceNotFound(_) => "DeviceNotFound",
            HubError::DeviceNotOnline(_) => "DeviceNotOnline",
            HubError::GatewayTimeout { .. } => "GatewayTimeout",
            HubError::Unauthorized(_) => "IotHubUnauthorizedAccess",
            HubError::InvalidOperation(_) => "InvalidOperation",
            HubError::ArgumentInvalid(_) => "ArgumentInvalid",
            HubError::FormatError(_) => "IotHubFormatError",
            HubError::DeviceAlreadyExists(_) => "DeviceAlreadyExists",
            HubError::PreconditionFailed(_) => "PreconditionFailed",
            HubError::MessageTooLarge(_) => "MessageTooLarge",
            HubError::Throttled(_) => "ThrottlingException",
            HubError::JobNotFound(_) => "JobNotFound",
            HubError::NotFound(_) => "NotFound",
            HubError::MaxActiveJobs(_) => "ThrottlingMaxActiveJobCountExceeded",
            HubError::Storage(_) | HubError::Internal(_) => "ServerError",
        }
    }
}

impl From<crate::store::StoreError> for HubError {
    fn from(e: crate::store::StoreError) -> Self {
        HubError::Storage(e.to_string())
    }
}

impl From<crate::twin::TwinError> for HubError {
    fn from(e: crate::twin::TwinError) -> Self {
        match e {
            crate::twin::TwinError::Json(m) => HubError::FormatError(m),
            other => HubError::ArgumentInvalid(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_code() {
        assert_eq!(HubError::DeviceNotOnline("d".into()).status(), 404);
        assert_eq!(HubError::Unauthorized("x".into()).status(), 401);
        let t = HubError::GatewayTimeout {
            device: "d".into(),
            method: "m".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            (t.status(), t.code(), t.name()),
            (504, 504101, "GatewayTimeout")
        );
        assert_eq!(HubError::Storage("x".into()).status(), 500);
    }
}
