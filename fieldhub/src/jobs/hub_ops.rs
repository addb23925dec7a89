//! [`DeviceOps`] for the real hub: jobs select from the hub's twins, call methods through the
//! same path as `POST /twins/{id}/methods`, and update twins through the service PATCH path
//! (which notifies a connected device of desired changes).

use std::time::Duration;

use serde_json::Value;

use super::model::{CloudToDeviceMethod, MethodOutcome};
use super::ops::{DeviceOpError, DeviceOps};
use crate::error::HubError;
use crate::hub::Hub;
use crate::query::Condition;

/// The hub as seen by the job engine.
#[derive(Debug, Clone)]
pub struct HubOps {
    hub: Hub,
}

impl HubOps {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

/// A hub error as a device-job error. Only "device not online" is retried: the device may
/// connect before the job's time runs out; every other failure is final for that device.
fn op_error(e: HubError) -> DeviceOpError {
    DeviceOpError {
        code: e.name().to_owned(),
        description: e.to_string(),
        retryable: matches!(e, HubError::DeviceNotOnline(_)),
    }
}

impl DeviceOps for HubOps {
    fn twins(&self) -> Vec<Value> {
        self.hub.twins()
    }

    fn select(&self, condition: &Condition) -> Vec<String> {
        self.hub.select_devices(condition)
    }

    async fn invoke_method(
        &self,
        device_id: &str,
        method: &CloudToDeviceMethod,
    ) -> Result<MethodOutcome, DeviceOpError> {
        self.hub
            .invoke_method(
                device_id,
                &method.method_name,
                method.payload.clone(),
                Duration::from_secs(method.response_timeout()),
                Duration::from_secs(method.connect_timeout()),
            )
            .await
            .map(|r| MethodOutcome {
                status: r.status,
                payload: r.payload,
            })
            .map_err(op_error)
    }

    async fn update_twin(&self, device_id: &str, patch: &Value) -> Result<(), DeviceOpError> {
        // Jobs write with etag `*` (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-jobs): unconditional.
        self.hub
            .update_twin(device_id, patch.clone(), Some("*"))
            .map(|_| ())
            .map_err(op_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_offline_is_retried() {
        let e = op_error(HubError::DeviceNotOnline("d".into()));
        assert_eq!((e.code.as_str(), e.retryable), ("DeviceNotOnline", true));
        let e = op_error(HubError::GatewayTimeout {
            device: "d".into(),
            method: "m".into(),
            timeout: Duration::from_secs(5),
        });
        assert_eq!((e.code.as_str(), e.retryable), ("GatewayTimeout", false));
        let e = op_error(HubError::DeviceNotFound("d".into()));
        assert_eq!((e.code.as_str(), e.retryable), ("DeviceNotFound", false));
    }
}
