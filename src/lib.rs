//! fieldgate: presents Modbus door controllers as Azure IoT Hub devices.
//!
//! - [`config`]: the TOML device map, raw and resolved.
//! - [`codec`]: register values (types, word order, scale, enums).
//! - [`bus`]: one task per Modbus bus owning its connection; priority queue, deadlines.
//! - [`link`]: one task per door owning its MQTT connection to IoT Hub.
//! - [`events`]: door events stored on disk until the hub acknowledges them.
//! - [`bridge`]: per door, methods/desired patches → bus requests, polled state → reported.
//! - [`service`]: a client of IoT Hub's service REST API (registry, twins, methods, jobs).
//! - [`ctl`]: `fieldctl`, the operator's command line on [`service`].
//! - [`metrics`]: every Prometheus metric the gateway exports.
#![forbid(unsafe_code)]
#![warn(rust_2018_idioms, unreachable_pub, missing_debug_implementations)]

pub mod bridge;
pub mod bus;
pub mod codec;
pub mod config;
pub mod ctl;
#[cfg(feature = "hub")]
pub mod demo;
pub mod demo_args;
pub mod dps;
pub mod dtdl;
pub mod events;
pub mod gateway;
pub mod http;
pub mod human;
pub mod link;
pub mod lograte;
pub mod metrics;
pub mod service;
