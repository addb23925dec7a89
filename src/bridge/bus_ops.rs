//! Bus operations of the bridge: writes with read-back verification, and the mapping of
//! bus errors to method/ack status codes.

use serde_json::{json, Value};
use tokio::time::Instant;

use super::DoorIo;
use crate::bus::{BusError, Failed, Op, Priority, Reply, Written};
use crate::config::{ReadTable, WriteTable};
use iothub_proto::Status;

/// Why an operator write failed, with the status code the method (or desired ack) carries.
#[derive(Debug)]
pub(super) struct WriteFailure {
    pub status: Status,
    pub body: Value,
}

impl WriteFailure {
    /// A failed read (or any request that wrote nothing).
    pub(super) fn from_bus(e: &BusError) -> Self {
        let (status, kind) = match e {
            BusError::Exception { code, .. } => (Status::BAD_GATEWAY, format!("{code:?}")),
            BusError::BadReply { .. } => (Status::BAD_GATEWAY, "BadReply".into()),
            BusError::UnitDown { .. } => (Status::SERVICE_UNAVAILABLE, "UnitNotAnswering".into()),
            BusError::Unavailable { .. }
            | BusError::QueueFull { .. }
            | BusError::Shutdown { .. } => (Status::SERVICE_UNAVAILABLE, "BusUnavailable".into()),
            BusError::Timeout { .. } | BusError::DeadlineExpired { .. } => {
                (Status::GATEWAY_TIMEOUT, "BusTimeout".into())
            }
        };
        let mut body = json!({"error": e.to_string(), "code": kind});
        if let BusError::UnitDown { at, next_probe_in } = e {
            body["unit"] = json!(at.unit);
            body["nextProbeInMs"] = json!(next_probe_in.map(|d| d.as_millis() as u64));
        }
        WriteFailure { status, body }
    }

    /// A failed write: also says whether the device may have applied it (`"written"`:
    /// `false`, `true`, or `"unknown"` when the write went out and its answer was lost).
    pub(super) fn from_failed(f: &Failed) -> Self {
        let mut out = Self::from_bus(&f.error);
        out.body["written"] = written_json(f.written);
        out
    }

    fn mismatch(table: WriteTable, address: u16, wrote: &Value, read: &Value) -> Self {
        WriteFailure {
            status: Status::BAD_GATEWAY,
            body: json!({
                "error": format!("read-back of {table:?} {address} gave {read} after writing {wrote}"),
                "code": "ReadBackMismatch",
                "written": true,
            }),
        }
    }
}

fn written_json(w: Written) -> Value {
    match w {
        Written::No => Value::Bool(false),
        Written::Yes => Value::Bool(true),
        Written::Unknown => Value::String("unknown".into()),
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
        status: Status::BAD_GATEWAY,
        body: json!({"error": "unexpected reply kind from the bus", "code": "ProtocolError"}),
    }
}

/// Writes and reads the written range back as one bus job; returns the words read back
/// (coils as 0/1). Whether a lost write was applied is settled by the bus (see
/// `BusHandle::write_verified`).
async fn write_verified(
    io: &DoorIo,
    unit: u8,
    op: Op,
    deadline: Instant,
) -> Result<Vec<u16>, WriteFailure> {
    match io.bus.write_verified(unit, op, deadline).await {
        Ok(Reply::Words(w)) => Ok(w),
        Ok(Reply::Bits(b)) => Ok(b.into_iter().map(u16::from).collect()),
        Ok(Reply::Written) => Err(protocol_error()),
        Err(f) => Err(WriteFailure::from_failed(&f)),
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
    let read = write_verified(io, unit, Op::WriteCoil { addr, value }, deadline).await?;
    // The bus hands back exactly one coil (a reply of another size is refused there); no
    // default stands in for a missing value.
    let [got] = read[..] else {
        return Err(protocol_error());
    };
    let got = got != 0;
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
    let read = write_verified(io, unit, op, deadline).await?;
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
