//! The bus layer against peers we did not write: a pymodbus server over TCP and over RTU on
//! a `socat` pty pair, and doorsim over RTU on a pty pair.
//!
//! Needs `socat` and `python3` with pymodbus + pyserial (CI: `apt-get install -y socat`,
//! `pip install pymodbus pyserial`). Without them the tests print why and pass vacuously.

use std::time::Duration;

use fieldgate::bus::{BusError, ExceptionCode, Op, Parity, Priority, Reply, Transport};
use fieldhub::doorsim::{Listen, Table};

use crate::support::bus::{options, sim, Bus};
use crate::support::peers::{has_pymodbus, has_socat, pty_pair, pymodbus};

fn rtu(path: &str) -> Transport {
    Transport::Rtu {
        path: path.to_string(),
        baud: 9600,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
    }
}

/// The same conversation against any peer holding pymodbus_server.py's data.
async fn conformance(bus: &Bus) {
    let r = bus
        .call(2, Op::ReadInput { addr: 0, count: 4 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![200, 201, 202, 203])));
    let r = bus
        .call(1, Op::ReadInput { addr: 10, count: 2 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![110, 111])));

    let r = bus
        .call(
            1,
            Op::WriteCoil {
                addr: 3,
                value: true,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(1, Op::ReadCoils { addr: 0, count: 5 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Bits(vec![false, false, false, true, false])));
    let r = bus
        .call(2, Op::ReadCoils { addr: 3, count: 1 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Bits(vec![false])), "unit 2 untouched");

    let r = bus
        .call(
            1,
            Op::WriteCoils {
                addr: 20,
                values: vec![true, false, true],
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(1, Op::ReadCoils { addr: 20, count: 3 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Bits(vec![true, false, true])));

    let r = bus
        .call(
            2,
            Op::WriteRegisters {
                addr: 10,
                values: vec![0xABCD, 42],
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(
            2,
            Op::WriteRegister { addr: 12, value: 7 },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(2, Op::ReadHolding { addr: 10, count: 3 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![0xABCD, 42, 7])));

    let r = bus
        .call(1, Op::ReadHolding { addr: 99, count: 5 }, Priority::Poll)
        .await;
    assert!(
        matches!(
            r,
            Err(BusError::Exception {
                code: ExceptionCode::IllegalDataAddress,
                ..
            })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn bus_against_pymodbus_over_tcp() {
    if !has_pymodbus() {
        return;
    }
    let server = pymodbus(&["tcp", "127.0.0.1:0"]).await;
    let transport = Transport::Tcp {
        addr: server.ready.clone(),
    };
    let bus = Bus::start(options(transport, Duration::from_secs(2))).await;
    conformance(&bus).await;
    bus.stop().await;
}

#[tokio::test]
async fn bus_against_pymodbus_over_rtu_on_a_socat_pty_pair() {
    if !has_socat() || !has_pymodbus() {
        return;
    }
    let pair = pty_pair().await;
    let server = pymodbus(&["rtu", &pair.a, "9600"]).await;
    assert_eq!(server.ready, pair.a);
    let bus = Bus::start(options(rtu(&pair.b), Duration::from_secs(2))).await;
    conformance(&bus).await;
    bus.stop().await;
}

#[tokio::test]
async fn bus_against_doorsim_over_rtu_on_a_socat_pty_pair() {
    if !has_socat() {
        return;
    }
    let pair = pty_pair().await;
    let sim = sim(
        Listen::RtuSerial {
            path: pair.a.clone(),
            baud: 9600,
        },
        vec![1, 2],
    )
    .await;
    let mut opts = options(rtu(&pair.b), Duration::from_millis(500));
    opts.retries = 0;
    let bus = Bus::start(opts).await;
    let r = bus
        .call(
            2,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    let r = bus
        .call(2, Op::ReadCoils { addr: 0, count: 2 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Bits(vec![false, false])));
    let log = sim.handle.write_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].unit,
            log[0].table,
            log[0].addr,
            log[0].values.clone()
        ),
        (2, Table::Coil, 0, vec![0])
    );
    // An absent unit is silent on a shared line; the next request still works.
    let r = bus
        .call(7, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(matches!(r, Err(BusError::Timeout { .. })), "{r:?}");
    let r = bus
        .call(1, Op::ReadInput { addr: 1, count: 1 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![1320])));
    bus.stop().await;
}
