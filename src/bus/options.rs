//! Resolved settings of one bus, built by `config` and consumed by the bus task.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP (MBAP framing), `host:port`.
    Tcp { addr: String },
    /// Modbus RTU on a local serial line (RS-485 adapter, or a pty in tests).
    Rtu {
        path: String,
        baud: u32,
        parity: Parity,
        data_bits: u8,
        stop_bits: u8,
    },
    /// RTU framing carried over a TCP socket (serial device servers), `host:port`.
    RtuOverTcp { addr: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusOptions {
    pub name: String,
    pub transport: Transport,
    /// Deadline of one Modbus transaction (request sent → response received).
    pub timeout: Duration,
    /// Extra attempts after a timeout or transport error, within the request's own deadline.
    pub retries: u32,
    /// Silence kept between two transactions (slow RS-485 controllers need it).
    pub inter_request_delay: Duration,
    /// Bound of the request queue; a full queue refuses new poll requests at once.
    pub queue_capacity: usize,
    /// Longest time a unit that stopped answering is skipped before it is tried again.
    pub dead_unit_backoff_max: Duration,
    /// Longest wait between attempts to reopen a failed connection.
    pub reconnect_backoff_max: Duration,
    /// Unused addresses a poll may read through to merge two points into one block read.
    /// 0 (default): only contiguous points merge, because many controllers refuse a read
    /// that spans an unmapped address.
    pub read_gap: u16,
}

impl BusOptions {
    /// Defaults for a bus with the given name and transport (what the config documents).
    pub fn new(name: impl Into<String>, transport: Transport) -> Self {
        BusOptions {
            name: name.into(),
            transport,
            timeout: Duration::from_millis(500),
            retries: 1,
            inter_request_delay: Duration::ZERO,
            queue_capacity: 256,
            dead_unit_backoff_max: Duration::from_secs(30),
            reconnect_backoff_max: Duration::from_secs(10),
            read_gap: 0,
        }
    }
}

impl std::fmt::Display for Transport {
    /// Where the bus is, as an operator would look for it: `tcp 10.0.0.5:502`,
    /// `serial /dev/ttyUSB0 19200 8E1`, `rtu-over-tcp 10.0.0.6:4001`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tcp { addr } => write!(f, "tcp {addr}"),
            Transport::RtuOverTcp { addr } => write!(f, "rtu-over-tcp {addr}"),
            Transport::Rtu {
                path,
                baud,
                parity,
                data_bits,
                stop_bits,
            } => {
                let p = match parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                write!(f, "serial {path} {baud} {data_bits}{p}{stop_bits}")
            }
        }
    }
}
