//! Modbus buses: one task per bus owns its tokio-modbus context; everyone else holds a
//! cloneable handle and sends prioritised requests with deadlines.

pub mod options;

pub use options::{BusOptions, Parity, Transport};
