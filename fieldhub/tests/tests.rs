//! fieldhub's integration tests, one binary (house style, after ripgrep). Hubs use real TLS
//! sockets on 127.0.0.1:0 (except the official-SDK tests, on the SDKs' fixed ports), rumqttc
//! as the device and reqwest as the service client, each hub in its own temp dir.
//!
//! - `support`: shared helpers (a hub in a temp dir, MQTT devices, a REST client, the SDK ports).
//! - `binary`: the `fieldhub serve` binary's first start, ready line and SIGTERM stop.
//! - `mqtt_device`: the device endpoint (auth, twins, methods, telemetry, sessions, expiry).
//! - `mqtt_edges`: device endpoint edge cases through a hand-driven MQTT client.
//! - `rest_service`: the service endpoint (registry, twins with etags, methods, permissions).
//! - `restart`: what a hub restarted on the same data dir keeps.
//! - `robustness`: probes of the device endpoint (odd tokens, sizes, usernames, CONNECT flags).
//! - `throttling`: the opt-in S1 throttle profile's 429s.
//! - `hub_jobs`: jobs v2 and queries through a running hub and real devices.
//! - `job_engine`: the job engine over a fake hub, in paused time.
//! - `query_prop`: property test of the query parser and evaluator against a reference.
//! - `doorsim`: the simulated door controllers through tokio-modbus's own client.
//! - `sdk`: conformance with the official Azure IoT SDKs (Node and Python peers, ports
//!   8883/443; `scripts/test` runs it on its own).
//! - `sdk_dps`: the Device Provisioning Service against the official provisioning SDKs
//!   (`scripts/test` runs it on its own).

mod support;

mod binary;
mod doorsim;
mod hub_jobs;
mod job_engine;
mod mqtt_device;
mod mqtt_edges;
mod query_prop;
mod rest_service;
mod restart;
mod robustness;
mod sdk;
mod sdk_dps;
mod throttling;
