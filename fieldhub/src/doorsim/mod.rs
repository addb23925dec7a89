//! Simulated door controllers on a Modbus server (TCP or RTU), with faults and line-speed emulation.
