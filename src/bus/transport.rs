//! Opening a bus connection and running one Modbus transaction on it.

use std::io;

use tokio::net::TcpStream;
use tokio_modbus::{
    client::{rtu, tcp, Context, Reader as _, Writer as _},
    prelude::SlaveContext as _,
    Slave,
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

/// Runs one transaction against `unit`. Coil replies are cut to the requested count
/// (the wire pads them to whole bytes).
pub(crate) async fn transact(ctx: &mut Context, unit: u8, op: &Op) -> tokio_modbus::Result<Reply> {
    ctx.set_slave(Slave(unit));
    let bits = |count: u16| {
        move |mut v: Vec<bool>| {
            v.truncate(usize::from(count));
            Reply::Bits(v)
        }
    };
    let written = |()| Reply::Written;
    Ok(match op {
        Op::ReadCoils { addr, count } => ctx.read_coils(*addr, *count).await?.map(bits(*count)),
        Op::ReadDiscreteInputs { addr, count } => ctx
            .read_discrete_inputs(*addr, *count)
            .await?
            .map(bits(*count)),
        Op::ReadHolding { addr, count } => ctx
            .read_holding_registers(*addr, *count)
            .await?
            .map(Reply::Words),
        Op::ReadInput { addr, count } => ctx
            .read_input_registers(*addr, *count)
            .await?
            .map(Reply::Words),
        Op::WriteCoil { addr, value } => ctx.write_single_coil(*addr, *value).await?.map(written),
        Op::WriteCoils { addr, values } => {
            ctx.write_multiple_coils(*addr, values).await?.map(written)
        }
        Op::WriteRegister { addr, value } => {
            ctx.write_single_register(*addr, *value).await?.map(written)
        }
        Op::WriteRegisters { addr, values } => ctx
            .write_multiple_registers(*addr, values)
            .await?
            .map(written),
    })
}
