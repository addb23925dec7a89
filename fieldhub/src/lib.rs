//! fieldhub: a local, IoT Hub-compatible hub (device MQTT endpoint over TLS, registry, twins,
//! direct methods, queries, jobs) and `doorsim`, simulated Modbus door controllers.
//!
//! Start a hub with [`start`] and a [`HubConfig`]; the returned [`RunningHub`] carries the
//! addresses, the CA to trust, the service connection string, a [`Hub`] handle and the jobs v2
//! engine ([`jobs::HubJobs`]), which keeps its jobs in the hub's database.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub mod auth;
pub mod dps;
pub mod error;
pub mod files;
pub mod hub;
pub mod mqtt;
pub mod registry;
pub mod rest;
pub mod server;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod twin;
pub mod x509;

pub mod doorsim;
pub mod jobs;
pub mod query;

pub use error::HubError;
pub use hub::{Hub, MethodResponse, TelemetryMessage};
pub use registry::DeviceIdentity;
pub use server::{start, HubConfig, RunningHub};
