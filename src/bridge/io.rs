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

/// Writes, then reads back. A write whose outcome is unknown (timeout, connection lost: the
/// bus never repeats writes) is checked by the read-back: already applied means done, with
/// the device written once; not applied means one more write if the deadline allows.
/// Returns the words read back (coils as 0/1).
async fn write_verified(
    io: &DoorIo,
    unit: u8,
    op: Op,
    read: (ReadTable, u16, u16),
    deadline: Instant,
) -> Result<Vec<u16>, WriteFailure> {
    let (table, addr, count) = read;
    let mut tries = 0;
    loop {
        tries += 1;
        let written = io
            .bus
            .call(unit, op.clone(), Priority::Operator, deadline)
            .await;
        match written {
            Ok(_) => return read_words(io, unit, table, addr, count, deadline).await,
            // The device answered: it refused, nothing was written.
            Err(e @ BusError::Exception { .. }) => return Err(WriteFailure::from_bus(&e)),
            Err(e) => {
                let Ok(now) = read_words(io, unit, table, addr, count, deadline).await else {
                    return Err(WriteFailure::from_bus(&e));
                };
                if now == expected_words(&op) {
                    tracing::info!(unit, function = op.function(), error = %e, "write answer lost, but the read-back shows it applied");
                    return Ok(now);
                }
                if tries >= 2 || Instant::now() >= deadline {
                    return Err(WriteFailure::from_bus(&e));
                }
            }
        }
    }
}

/// What a read-back of the written range shows when `op` was applied.
fn expected_words(op: &Op) -> Vec<u16> {
    match op {
        Op::WriteCoil { value, .. } => vec![u16::from(*value)],
        Op::WriteCoils { values, .. } => values.iter().map(|v| u16::from(*v)).collect(),
        Op::WriteRegister { value, .. } => vec![*value],
        Op::WriteRegisters { values, .. } => values.clone(),
        _ => Vec::new(),
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
    let read = write_verified(
        io,
        unit,
        Op::WriteCoil { addr, value },
        (ReadTable::Coil, addr, 1),
        deadline,
    )
    .await?;
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
    let count = u16::try_from(words.len()).unwrap_or(u16::MAX);
    let read = write_verified(io, unit, op, (ReadTable::Holding, addr, count), deadline).await?;
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
