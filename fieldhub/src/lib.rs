//! fieldhub: a local, IoT Hub-compatible hub (device MQTT endpoint over TLS, registry, twins,
//! direct methods, queries, jobs) and `doorsim`, simulated Modbus door controllers.
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

pub mod doorsim;
pub mod jobs;
pub mod query;
