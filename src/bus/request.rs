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

/// Why a request failed. Bridges map these to method status codes: `Exception` → 502,
/// `Unavailable`/`QueueFull`/`Shutdown` → 503, `Timeout`/`DeadlineExpired` → 504.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The unit answered with a Modbus exception (named by its `Display`, e.g.
    /// "Illegal data address").
    #[error("{at}: the unit answered with Modbus exception {code:?} ({code})")]
    Exception { at: Target, code: ExceptionCode },
    /// No answer within the transaction timeout (after all retries the deadline allowed).
    #[error("{at}: no answer within {after:?}")]
    Timeout { at: Target, after: Duration },
    /// Not sent: the connection is down, or the unit is marked dead and backed off.
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
            | BusError::Unavailable { at, .. }
            | BusError::QueueFull { at }
            | BusError::DeadlineExpired { at }
            | BusError::Shutdown { at } => at,
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
