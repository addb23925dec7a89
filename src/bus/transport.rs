//! Opening a bus connection and running one Modbus transaction on it.

use std::io;

use tokio::net::TcpStream;
use tokio_modbus::{
    client::{rtu, tcp, Client as _, Context},
    prelude::SlaveContext as _,
    ExceptionCode, Request, Response, Slave,
};
use tokio_serial::SerialPort as _;

use super::{
    options::{Parity, Transport},
    request::{Op, Reply},
};

/// Opens the transport and attaches a tokio-modbus client context to it.
pub(crate) async fn open(transport: &Transport) -> io::Result<Context> {
    match transport {
        Transport::Tcp { addr } => {
            let stream = TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(tcp::attach(stream))
        }
        Transport::RtuOverTcp { addr } => {
            let stream = TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(rtu::attach(stream))
        }
        Transport::Rtu {
            path,
            baud,
            parity,
            data_bits,
            stop_bits,
        } => {
            let builder = tokio_serial::new(path, *baud)
                .parity(match parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(match data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                })
                .stop_bits(match stop_bits {
                    2 => tokio_serial::StopBits::Two,
                    _ => tokio_serial::StopBits::One,
                });
            let serial = tokio_serial::SerialStream::open(&builder)?;
            // A late answer to a request that timed out must not be read as the next answer.
            serial
                .clear(tokio_serial::ClearBuffer::All)
                .map_err(io::Error::other)?;
            Ok(rtu::attach(serial))
        }
    }
}

/// Why a transaction gave no usable answer (a Modbus exception is an answer).
#[derive(Debug)]
pub(crate) enum TransactError {
    /// The connection failed (or tokio-modbus could not frame the exchange).
    Transport(std::io::Error),
    /// A reply that belongs to another request (another unit, transaction or function,
    /// checked by tokio-modbus): a late answer on a noisy line. This request's own answer may
    /// still be on its way, so the outcome is as unknown as after a lost answer.
    Foreign(String),
    /// An answer to this request that does not carry what was asked: another count, address
    /// or value (checked here).
    BadReply(String),
}

impl From<tokio_modbus::Error> for TransactError {
    fn from(e: tokio_modbus::Error) -> Self {
        match e {
            tokio_modbus::Error::Transport(e) => TransactError::Transport(e),
            tokio_modbus::Error::Protocol(p) => TransactError::Foreign(p.to_string()),
        }
    }
}

/// Runs one transaction against `unit` and checks the answer carries exactly what was asked.
/// tokio-modbus checks the unit (and transaction id) and the function code, but only
/// `debug_assert`s counts and write echoes, so a server that answers a one-coil read with a
/// frame of zero coils would otherwise read as `false`, and an echo of another address as a
/// successful write. Coil replies are cut to the requested count (the wire pads them to
/// whole bytes).
pub(crate) async fn transact(
    ctx: &mut Context,
    unit: u8,
    op: &Op,
) -> Result<Result<Reply, ExceptionCode>, TransactError> {
    ctx.set_slave(Slave(unit));
    let request = match op {
        Op::ReadCoils { addr, count } => Request::ReadCoils(*addr, *count),
        Op::ReadDiscreteInputs { addr, count } => Request::ReadDiscreteInputs(*addr, *count),
        Op::ReadHolding { addr, count } => Request::ReadHoldingRegisters(*addr, *count),
        Op::ReadInput { addr, count } => Request::ReadInputRegisters(*addr, *count),
        Op::WriteCoil { addr, value } => Request::WriteSingleCoil(*addr, *value),
        Op::WriteCoils { addr, values } => Request::WriteMultipleCoils(*addr, values.into()),
        Op::WriteRegister { addr, value } => Request::WriteSingleRegister(*addr, *value),
        Op::WriteRegisters { addr, values } => {
            Request::WriteMultipleRegisters(*addr, values.into())
        }
    };
    match ctx.call(request).await? {
        Ok(response) => check(op, response).map(Ok).map_err(TransactError::BadReply),
        Err(code) => Ok(Err(code)),
    }
}

/// The reply to `op` if `response` is exactly its answer, else why not.
pub(crate) fn check(op: &Op, response: Response) -> Result<Reply, String> {
    let bits = |mut v: Vec<bool>, count: u16| {
        let want = usize::from(count);
        // The wire carries whole bytes: between `count` and the next multiple of 8 bits.
        if v.len() < want || v.len() > want.div_ceil(8) * 8 {
            return Err(format!(
                "asked for {count} bits, the reply holds {}",
                v.len()
            ));
        }
        v.truncate(want);
        Ok(Reply::Bits(v))
    };
    let words = |v: Vec<u16>, count: u16| {
        if v.len() == usize::from(count) {
            Ok(Reply::Words(v))
        } else {
            Err(format!(
                "asked for {count} registers, the reply holds {}",
                v.len()
            ))
        }
    };
    let echo = |what: &str, asked: (u16, u16), got: (u16, u16)| {
        if asked == got {
            Ok(Reply::Written)
        } else {
            Err(format!(
                "{what}: asked to write (address {}, {}), the echo says (address {}, {})",
                asked.0, asked.1, got.0, got.1
            ))
        }
    };
    let len = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    match (op, response) {
        (Op::ReadCoils { count, .. }, Response::ReadCoils(v))
        | (Op::ReadDiscreteInputs { count, .. }, Response::ReadDiscreteInputs(v)) => {
            bits(v, *count)
        }
        (Op::ReadHolding { count, .. }, Response::ReadHoldingRegisters(v))
        | (Op::ReadInput { count, .. }, Response::ReadInputRegisters(v)) => words(v, *count),
        (Op::WriteCoil { addr, value }, Response::WriteSingleCoil(a, v)) => echo(
            "write_single_coil",
            (*addr, u16::from(*value)),
            (a, u16::from(v)),
        ),
        (Op::WriteCoils { addr, values }, Response::WriteMultipleCoils(a, n)) => {
            echo("write_multiple_coils", (*addr, len(values.len())), (a, n))
        }
        (Op::WriteRegister { addr, value }, Response::WriteSingleRegister(a, v)) => {
            echo("write_single_register", (*addr, *value), (a, v))
        }
        (Op::WriteRegisters { addr, values }, Response::WriteMultipleRegisters(a, n)) => echo(
            "write_multiple_registers",
            (*addr, len(values.len())),
            (a, n),
        ),
        (op, other) => Err(format!(
            "asked for {}, the reply is {other:?}",
            op.function()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_must_carry_what_was_asked() {
        let one_coil = Op::ReadCoils { addr: 0, count: 1 };
        assert!(check(&one_coil, Response::ReadCoils(vec![])).is_err());
        assert_eq!(
            check(&one_coil, Response::ReadCoils(vec![true; 8])),
            Ok(Reply::Bits(vec![true]))
        );
        assert!(check(&one_coil, Response::ReadCoils(vec![true; 16])).is_err());
        let regs = Op::ReadHolding { addr: 0, count: 2 };
        assert!(check(&regs, Response::ReadHoldingRegisters(vec![1])).is_err());
        assert!(check(&regs, Response::ReadInputRegisters(vec![1, 2])).is_err());
        let coil = Op::WriteCoil {
            addr: 3,
            value: false,
        };
        assert!(check(&coil, Response::WriteSingleCoil(3, true)).is_err());
        assert!(check(&coil, Response::WriteSingleCoil(4, false)).is_err());
        assert_eq!(
            check(&coil, Response::WriteSingleCoil(3, false)),
            Ok(Reply::Written)
        );
        let many = Op::WriteRegisters {
            addr: 10,
            values: vec![1, 2],
        };
        assert!(check(&many, Response::WriteMultipleRegisters(10, 1)).is_err());
        assert_eq!(
            check(&many, Response::WriteMultipleRegisters(10, 2)),
            Ok(Reply::Written)
        );
    }
}
