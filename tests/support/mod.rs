//! What the test modules share; no tests live here.
//!
//! - [`harness`]: fieldhub, doorsim, a device map for them, the gateway in-process, and
//!   [`harness::Service`], the back end's service client (the product's own).
//! - [`reliability`]: the reliability suite's helpers: a service client that reports hub
//!   outages, the exactly-once and convergence checks, a hub restart.
//! - [`process`]: the `fieldgate` binary as a process (signals, restarts, its log).
//! - [`bus`]: a bus task against doorsim, with bounded calls.
//! - [`peers`]: `socat` pty pairs and a pymodbus server.

pub mod bus;
pub mod harness;
pub mod peers;
pub mod process;
pub mod reliability;
