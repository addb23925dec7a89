//! fieldgate's integration tests, one binary (house style, after ripgrep). Each module covers
//! one part of the product through real sockets; what they share is in [`support`]. Run one
//! part with `cargo test -p fieldgate --test tests MODULE::`.

// Modbus buses.
/// The bus against doorsim: writes and read-back, exceptions, reconnects, RTU over TCP.
mod bus;
/// The bus against pymodbus (TCP and RTU) and doorsim over RTU on a socat pty pair.
mod bus_peers;
/// Bus scheduling: operator priority, dead units, timeouts, deadlines, queue bounds.
mod bus_scheduling;
/// One dead controller on a shared line (pymodbus, TCP and RTU): the healthy doors unaffected.
mod dead_unit;

// The device map.
/// The shipped example maps validate; every mistake is reported with file, line and column.
mod config;

// The gateway end to end.
/// Onboarding through the Device Provisioning Service with an enrollment group's key.
mod dps;
/// Door events stored on disk until the hub acknowledges them, across outages and SIGKILL.
mod events;
/// The gateway between fieldhub (TLS) and doorsim (TCP): methods, desired patches, reported state.
mod gateway;
/// The gateway against pymodbus and against doorsim behind a socat serial line.
mod gateway_peers;
/// The door link against a scripted fake IoT Hub, every MQTT packet explicit.
mod link;
/// Plug and Play: DTDL models accepted by Microsoft's parser, the model id on the wire.
mod pnp;
/// MQTT over WebSockets on 443, the `auto` fallback, and an HTTP CONNECT proxy.
mod transport;
/// X.509 device authentication, by CA and by thumbprint.
mod x509;

// The binaries.
/// The `fieldctl` binary: help, exit statuses and one-line errors for bad input.
mod ctl;
/// `fieldctl dps`: individual enrollments end to end, lists past the first page, bad input.
mod ctl_dps;
/// The seed workflow through `fieldctl` alone against fieldhub, the gateway and doorsim.
mod ctl_hub;
/// `fieldgate demo --exit`: the README's first command, end to end.
mod demo;
/// `fieldgate run` as systemd runs it: SIGHUP reloads, SIGTERM, no secrets in logs, `check`.
mod service;

// Reliability.
/// Bus faults: silent, slow or failing controllers, connection resets, corrupted RTU frames,
/// a neighbour's late answer ahead of a write's echo.
mod reliability_bus;
/// Hub faults: a restarted hub, cut connections, expiring tokens, with work in flight.
mod reliability_hub;
/// Malformed payloads and ill-typed desired values never reach the bus.
mod reliability_input;
/// Process faults: SIGTERM mid-burst, SIGKILL and restart, SIGHUP reloads.
mod reliability_process;
/// TLS verification, key file permissions, metrics on loopback.
mod reliability_security;
/// Soak: many doors, thousands of methods and patches, nothing lost or misapplied.
mod soak;

/// Shared helpers (no tests): the harness, the service client, peers, processes.
mod support;
