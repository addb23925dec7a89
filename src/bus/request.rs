//! What callers ask a bus for ([`Op`], [`Priority`]) and what they get back ([`Reply`],
//! [`BusError`]).

use std::{fmt, sync::Arc, time::Duration};

pub use tokio_modbus::ExceptionCode;

/// One Modbus transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    ReadCoils { addr: u16, count: u16 },
    ReadDiscreteInputs { addr: u16, count: u16 },
    ReadHolding { addr: u16, count: u16 },
    ReadInput { addr: u16, count: u16 },
    WriteCoil { addr: u16, value: bool },
    WriteCoils { addr: u16, values: Vec<bool> },
    WriteRegister { addr: u16, value: u16 },
    WriteRegisters { addr: u16, values: Vec<u16> },
}

impl Op {
    /// The function name used in metrics and error messages.
    pub fn function(&self) -> &'static str {
        match self {
            Op::ReadCoils { .. } => "read_coils",
            Op::ReadDiscreteInputs { .. } => "read_discrete_inputs",
            Op::ReadHolding { .. } => "read_holding_registers",
            Op::ReadInput { .. } => "read_input_registers",
            Op::WriteCoil { .. } => "write_single_coil",
            Op::WriteCoils { .. } => "write_multiple_coils",
            Op::WriteRegister { .. } => "write_single_register",
            Op::WriteRegisters { .. } => "write_multiple_registers",
        }
    }

    /// Whether the operation changes the device.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::WriteCoil { .. }
                | Op::WriteCoils { .. }
                | Op::WriteRegister { .. }
                | Op::WriteRegisters { .. }
        )
    }

    /// For a write: the read of exactly the written range, and what it shows once the write
    /// is applied.
    pub fn read_back(&self) -> Option<(Op, Reply)> {
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Some(match self {
            Op::WriteCoil { addr, value } => (
                Op::ReadCoils {
                    addr: *addr,
                    count: 1,
                },
                Reply::Bits(vec![*value]),
            ),
            Op::WriteCoils { addr, values } => (
                Op::ReadCoils {
                    addr: *addr,
                    count: count(values.len()),
                },
                Reply::Bits(values.clone()),
            ),
            Op::WriteRegister { addr, value } => (
                Op::ReadHolding {
                    addr: *addr,
                    count: 1,
                },
                Reply::Words(vec![*value]),
            ),
            Op::WriteRegisters { addr, values } => (
                Op::ReadHolding {
                    addr: *addr,
                    count: count(values.len()),
                },
                Reply::Words(values.clone()),
            ),
            _ => return None,
        })
    }

    /// The first address the operation touches.
    pub fn addr(&self) -> u16 {
        match self {
            Op::ReadCoils { addr, .. }
            | Op::ReadDiscreteInputs { addr, .. }
            | Op::ReadHolding { addr, .. }
            | Op::ReadInput { addr, .. }
            | Op::WriteCoil { addr, .. }
            | Op::WriteCoils { addr, .. }
            | Op::WriteRegister { addr, .. }
            | Op::WriteRegisters { addr, .. } => *addr,
        }
    }
}

/// A successful answer: bits for coil/discrete reads (exactly `count` of them), words for
/// register reads, `Written` for writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Bits(Vec<bool>),
    Words(Vec<u16>),
    Written,
}

/// Operator requests (methods, desired writes) always go before poll requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Operator,
    Poll,
}

/// Which request an error is about, for messages that name the bus, unit and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bus: Arc<str>,
    pub unit: u8,
    pub function: &'static str,
    pub addr: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bus {}, unit {}, {} at {}",
            self.bus, self.unit, self.function, self.addr
        )
    }
}

/// Why a request failed. Bridges map these to method status codes: `Exception`/`BadReply` →
/// 502, `UnitDown`/`Unavailable`/`QueueFull`/`Shutdown` → 503, `Timeout`/`DeadlineExpired` → 504.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The unit answered with a Modbus exception (named by its `Display`, e.g.
    /// "Illegal data address").
    #[error("{at}: the unit answered with Modbus exception {code:?} ({code})")]
    Exception { at: Target, code: ExceptionCode },
    /// No answer within the transaction timeout (after all retries the deadline allowed).
    #[error("{at}: no answer within {after:?}")]
    Timeout { at: Target, after: Duration },
    /// The unit answered, but not what was asked: a read with another number of values than
    /// requested, a write whose echo names another address, value or count, another unit or
    /// function. Nothing in such a reply is taken as a value or as proof of a write.
    #[error("{at}: the reply does not match the request: {reason}")]
    BadReply { at: Target, reason: String },
    /// Not sent: the unit stopped answering and is backed off, or its one probe is on the
    /// line now. `next_probe_in` is `None` while the probe is in flight.
    #[error("{at}: unit {} is not answering; refused without using the line ({})", at.unit, probe_note(*.next_probe_in))]
    UnitDown {
        at: Target,
        next_probe_in: Option<Duration>,
    },
    /// Not sent: the connection is down.
    #[error("{at}: bus unavailable: {reason}")]
    Unavailable { at: Target, reason: String },
    /// The bus queue is full; poll requests are refused rather than queued without bound.
    #[error("{at}: bus queue is full")]
    QueueFull { at: Target },
    /// The request's deadline passed while it waited in the queue; nothing was sent.
    #[error("{at}: deadline passed before the request reached the bus")]
    DeadlineExpired { at: Target },
    /// The bus task has stopped.
    #[error("{at}: bus is shutting down")]
    Shutdown { at: Target },
}

impl BusError {
    pub fn target(&self) -> &Target {
        match self {
            BusError::Exception { at, .. }
            | BusError::Timeout { at, .. }
            | BusError::BadReply { at, .. }
            | BusError::UnitDown { at, .. }
            | BusError::Unavailable { at, .. }
            | BusError::QueueFull { at }
            | BusError::DeadlineExpired { at }
            | BusError::Shutdown { at } => at,
        }
    }
}

fn probe_note(next: Option<Duration>) -> String {
    match next {
        None => "a probe to it is on the line now".into(),
        Some(d) => format!("next probe in {} ms", d.as_millis()),
    }
}

/// Whether a failed write may have reached the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Never sent, or refused by the device with an exception.
    No,
    /// The device echoed the write, but what followed (the read-back) failed.
    Yes,
    /// The write went out and its answer was lost, late or wrong: the device may have
    /// applied it.
    Unknown,
}

/// A failed request, with whether it may have changed the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub error: BusError,
    pub written: Written,
}

impl Failed {
    pub(crate) fn unsent(error: BusError) -> Self {
        Failed {
            error,
            written: Written::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_bus_unit_and_operation() {
        let at = Target {
            bus: "line-a".into(),
            unit: 7,
            function: Op::WriteCoil {
                addr: 0,
                value: true,
            }
            .function(),
            addr: 0,
        };
        let e = BusError::Exception {
            at: at.clone(),
            code: ExceptionCode::IllegalDataAddress,
        };
        let msg = e.to_string();
        assert!(msg.contains("line-a") && msg.contains("unit 7"), "{msg}");
        assert!(msg.contains("write_single_coil"), "{msg}");
        assert!(msg.contains("IllegalDataAddress"), "{msg}");
        let t = BusError::Timeout {
            at,
            after: Duration::from_millis(500),
        };
        assert!(t.to_string().contains("500ms"));
    }
}
