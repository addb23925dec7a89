//! Bus operations of the bridge: writes with read-back verification, and the mapping of
//! bus errors to method/ack status codes.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::DoorIo;
use crate::bus::{BusError, Op, Priority, Reply};
use crate::config::{ReadTable, WriteTable};

/// Why an operator write failed, with the status code the method (or desired ack) carries.
#[derive(Debug)]
pub(super) struct WriteFailure {
    pub status: i32,
    pub body: Value,
}

impl WriteFailure {
    pub(super) fn from_bus(e: &BusError) -> Self {
        let (status, kind) = match e {
            BusError::Exception { code, .. } => (502, format!("{code:?}")),
            BusError::Unavailable { .. }
            | BusError::QueueFull { .. }
            | BusError::Shutdown { .. } => (503, "BusUnavailable".into()),
            BusError::Timeout { .. } | BusError::DeadlineExpired { .. } => {
                (504, "BusTimeout".into())
            }
        };
        WriteFailure {
            status,
            body: json!({"error": e.to_string(), "code": kind}),
        }
    }

    fn mismatch(table: WriteTable, address: u16, wrote: &Value, read: &Value) -> Self {
        WriteFailure {
            status: 502,
            body: json!({
                "error": format!("read-back of {table:?} {address} gave {read} after writing {wrote}"),
                "code": "ReadBackMismatch",
            }),
        }
    }
}

fn read_op(table: ReadTable, addr: u16, count: u16) -> Op {
    match table {
        ReadTable::Coil => Op::ReadCoils { addr, count },
        ReadTable::DiscreteInput => Op::ReadDiscreteInputs { addr, count },
        ReadTable::Holding => Op::ReadHolding { addr, count },
        ReadTable::Input => Op::ReadInput { addr, count },
    }
}

/// Reads `count` registers of a table at operator priority.
pub(super) async fn read_words(
    io: &DoorIo,
    unit: u8,
    table: ReadTable,
    addr: u16,
    count: u16,
    deadline: Instant,
) -> Result<Vec<u16>, WriteFailure> {
    match io
        .bus
        .call(
            unit,
            read_op(table, addr, count),
            Priority::Operator,
            deadline,
        )
        .await
    {
        Ok(Reply::Words(w)) => Ok(w),
        Ok(Reply::Bits(b)) => Ok(b.into_iter().map(u16::from).collect()),
        Ok(Reply::Written) => Err(protocol_error()),
        Err(e) => Err(WriteFailure::from_bus(&e)),
    }
}

fn protocol_error() -> WriteFailure {
    WriteFailure {
        status: 502,
        body: json!({"error": "unexpected reply kind from the bus", "code": "ProtocolError"}),
    }
}

/// Writes a coil, reads it back, and returns the value read. A write counts as done only
/// when the read-back matches (architecture promise).
pub(super) async fn write_coil(
    io: &DoorIo,
    unit: u8,
    addr: u16,
    value: bool,
    deadline: Instant,
) -> Result<bool, WriteFailure> {
    io.bus
        .call(
            unit,
            Op::WriteCoil { addr, value },
            Priority::Operator,
            deadline,
        )
        .await
        .map_err(|e| WriteFailure::from_bus(&e))?;
    let read = read_words(io, unit, ReadTable::Coil, addr, 1, deadline).await?;
    let got = read.first().is_some_and(|w| *w != 0);
    if got != value {
        return Err(WriteFailure::mismatch(
            WriteTable::Coil,
            addr,
            &Value::Bool(value),
            &Value::Bool(got),
        ));
    }
    Ok(got)
}

/// Writes holding registers (function 6 for one, 16 for several), reads them back and
/// checks they match.
pub(super) async fn write_registers(
    io: &DoorIo,
    unit: u8,
    addr: u16,
    words: &[u16],
    deadline: Instant,
) -> Result<Vec<u16>, WriteFailure> {
    let op = match words {
        [one] => Op::WriteRegister { addr, value: *one },
        _ => Op::WriteRegisters {
            addr,
            values: words.to_vec(),
        },
    };
    io.bus
        .call(unit, op, Priority::Operator, deadline)
        .await
        .map_err(|e| WriteFailure::from_bus(&e))?;
    let count = u16::try_from(words.len()).unwrap_or(u16::MAX);
    let read = read_words(io, unit, ReadTable::Holding, addr, count, deadline).await?;
    if read != words {
        return Err(WriteFailure::mismatch(
            WriteTable::Holding,
            addr,
            &json!(words),
            &json!(read),
        ));
    }
    Ok(read)
}
