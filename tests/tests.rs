//! fieldgate's integration tests, one binary (house style, after ripgrep): each module covers
//! one part through real sockets.

mod bus;
mod bus_peers;
mod bus_scheduling;
mod config;
mod ctl;
mod ctl_hub;
mod dead_unit;
mod demo;
mod dps;
mod events;
mod gateway;
mod gateway_peers;
mod harness;
mod link;
mod pnp;
mod reliability;
mod reliability_bus;
mod reliability_hub;
mod reliability_input;
mod reliability_process;
mod reliability_security;
mod service;
mod soak;
mod transport;
mod x509;
