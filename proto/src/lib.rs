//! Azure IoT Hub wire details shared by the gateway, the CLI and the local hub:
//! SAS tokens (`sas`), connection strings (`connstr`), the device MQTT topics (`topics`) and
//! the status their responses carry (`status`), and the retry schedule all of them use
//! (`backoff`).
//!
//! Everything here is pure: no sockets, no clocks other than values passed in.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub mod backoff;
pub mod connstr;
pub mod sas;
pub mod status;
pub mod topics;
pub mod x509;

pub use connstr::{ConnectionString, ConnectionStringError};
pub use sas::{SasError, SasToken};
pub use status::Status;
