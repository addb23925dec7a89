//! fieldgate's integration tests: one test binary, one module per area (real sockets).

mod bus;
mod bus_peers;
mod bus_scheduling;
