//! The status of a response on IoT Hub's device topics — a direct method's answer
//! (`$iothub/methods/res/{status}/`), the hub's answer to a twin request
//! (`$iothub/twin/res/{status}/`) — and of a writable property's acknowledgement (`ac`).
//! All are HTTP's codes by convention (Microsoft Learn, "Understand and invoke direct
//! methods from IoT Hub" and "IoT Plug and Play conventions", writable properties), and the
//! gateway uses the few below with one meaning each.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A method, twin or acknowledgement status. A device may answer a method with any integer,
/// so this is not an enum; the constants are the ones fieldgate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Status(pub i32);

impl Status {
    /// Done: written and read back (or nothing needed writing).
    pub const OK: Status = Status(200);
    /// A twin request done with nothing to return (a reported patch accepted).
    pub const NO_CONTENT: Status = Status(204);
    /// Too many requests: the hub's throttle.
    pub const TOO_MANY_REQUESTS: Status = Status(429);
    /// The payload or desired value is not acceptable; nothing was written.
    pub const BAD_REQUEST: Status = Status(400);
    /// No such method, or a desired property not mapped to a register.
    pub const NOT_FOUND: Status = Status(404);
    /// The unit answered, but not as asked: a Modbus exception, a malformed reply, a
    /// read-back that differs from what was written.
    pub const BAD_GATEWAY: Status = Status(502);
    /// The unit or bus cannot be reached now (unit in dead-unit backoff, line down, queue
    /// full, shutting down, or the link's own event queue full).
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// No answer within the deadline.
    pub const GATEWAY_TIMEOUT: Status = Status(504);

    /// A failure of the gateway or what is behind it (5xx): worth trying again later, unlike
    /// a refusal of the request itself (4xx).
    pub fn is_server_error(self) -> bool {
        (500..600).contains(&self.0)
    }

    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl PartialEq<i32> for Status {
    fn eq(&self, other: &i32) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_wire_form() {
        assert!(Status::GATEWAY_TIMEOUT.is_server_error());
        assert!(!Status::BAD_REQUEST.is_server_error());
        assert!(Status::OK.is_success());
        assert_eq!(serde_json::to_string(&Status::NOT_FOUND).unwrap(), "404");
        assert_eq!(
            serde_json::from_str::<Status>("-3").unwrap(),
            Status(-3),
            "a device's own status"
        );
        assert_eq!(Status::SERVICE_UNAVAILABLE.to_string(), "503");
    }
}
