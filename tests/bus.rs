//! The bus layer against doorsim through real sockets: writes and read-back, exceptions,
//! reconnects, RTU over TCP, shutdown, inter-request delay.

use std::{sync::Arc, time::Duration};

use fieldgate::{
    bus::{self, BusError, ExceptionCode, Op, Priority, Reply, Transport},
    metrics::Metrics,
};
use fieldhub::doorsim::{Fault, Listen, Table};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::support::bus::{options, sim, tcp, Bus, LIMIT};

#[tokio::test]
async fn write_coil_reaches_exactly_that_unit_and_reads_back() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1, 2, 3]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(1))).await;

    let written = bus
        .call(
            2,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(written, Ok(Reply::Written));
    let read = bus
        .call(2, Op::ReadCoils { addr: 0, count: 2 }, Priority::Operator)
        .await;
    assert_eq!(read, Ok(Reply::Bits(vec![false, false])));

    let log = sim.handle.write_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].unit, log[0].table, log[0].addr),
        (2, Table::Coil, 0)
    );
    assert_eq!(log[0].values, vec![0]);
    assert!(!sim.handle.coil(2, 0));
    assert!(
        sim.handle.coil(1, 0) && sim.handle.coil(3, 0),
        "other units untouched"
    );

    // Registers: a u32 written as two words, read back in one block.
    let regs = bus
        .call(
            3,
            Op::WriteRegisters {
                addr: 2,
                values: vec![0, 9000],
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(regs, Ok(Reply::Written));
    let back = bus
        .call(3, Op::ReadHolding { addr: 0, count: 4 }, Priority::Poll)
        .await;
    assert_eq!(back, Ok(Reply::Words(vec![1, 0, 0, 9000])));
    let text = bus.metrics.render();
    assert!(
        text.contains(r#"fieldgate_modbus_requests_total{bus="test-bus",function="write_single_coil",result="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"fieldgate_bus_connected{bus="test-bus"} 1"#));
    bus.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn exceptions_are_named_and_do_not_mark_the_unit_dead() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(1))).await;
    let err = bus
        .call(1, Op::ReadHolding { addr: 5, count: 1 }, Priority::Poll)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BusError::Exception {
                code: ExceptionCode::IllegalDataAddress,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("test-bus")
            && msg.contains("unit 1")
            && msg.contains("read_holding_registers"),
        "{msg}"
    );
    let err = bus
        .call(
            1,
            Op::WriteRegister { addr: 10, value: 9 },
            Priority::Operator,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        BusError::Exception {
            code: ExceptionCode::IllegalDataValue,
            ..
        }
    ));
    sim.handle
        .set_fault(1, Fault::Exception(ExceptionCode::ServerDeviceBusy));
    for _ in 0..3 {
        let err = bus
            .call(1, Op::ReadInput { addr: 0, count: 1 }, Priority::Poll)
            .await;
        assert!(matches!(
            err,
            Err(BusError::Exception {
                code: ExceptionCode::ServerDeviceBusy,
                ..
            })
        ));
    }
    assert_eq!(
        sim.handle.request_count(1),
        5,
        "every request reached the unit"
    );
    assert!(sim.handle.write_log().is_empty());
    bus.stop().await;
}

#[tokio::test]
async fn bus_reconnects_after_the_server_restarts() {
    let first = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1]).await;
    let addr = first.local_addr.unwrap();
    let mut opts = options(tcp(&first), Duration::from_millis(500));
    opts.reconnect_backoff_max = Duration::from_millis(200);
    let bus = Bus::start(opts).await;
    assert!(bus
        .call(1, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await
        .is_ok());
    first.shutdown().await;

    // The server is gone: requests fail with a bus error, never hang.
    let r = bus
        .call(1, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(
        matches!(
            r,
            Err(BusError::Unavailable { .. } | BusError::Timeout { .. })
        ),
        "{r:?}"
    );
    let mut up = bus.handle.connected();
    timeout(LIMIT, up.wait_for(|&c| !c)).await.unwrap().unwrap();

    let second = sim(Listen::Tcp(addr), vec![1]).await;
    timeout(LIMIT, up.wait_for(|&c| c))
        .await
        .expect("reconnected")
        .unwrap();
    let r = bus
        .call(
            1,
            Op::WriteCoil {
                addr: 0,
                value: false,
            },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    assert!(!second.handle.coil(1, 0));
    bus.stop().await;
}

#[tokio::test]
async fn rtu_over_tcp_against_doorsim() {
    let sim = sim(
        Listen::RtuOverTcp("127.0.0.1:0".parse().unwrap()),
        vec![5, 6],
    )
    .await;
    let transport = Transport::RtuOverTcp {
        addr: sim.local_addr.unwrap().to_string(),
    };
    let bus = Bus::start(options(transport, Duration::from_secs(1))).await;
    let r = bus
        .call(
            6,
            Op::WriteRegister { addr: 10, value: 2 },
            Priority::Operator,
        )
        .await;
    assert_eq!(r, Ok(Reply::Written));
    assert_eq!(sim.handle.holding(6, 10), 2);
    assert_eq!(sim.handle.holding(5, 10), 0);
    sim.handle.set_input(5, 0, 3);
    let r = bus
        .call(5, Op::ReadInput { addr: 0, count: 4 }, Priority::Poll)
        .await;
    assert_eq!(r, Ok(Reply::Words(vec![3, 1320, 0, 0])));
    // Unknown units stay silent on a serial-style line.
    let mut opts = options(
        Transport::RtuOverTcp {
            addr: sim.local_addr.unwrap().to_string(),
        },
        Duration::from_millis(200),
    );
    opts.retries = 0;
    let quiet = Bus::start(opts).await;
    let r = quiet
        .call(9, Op::ReadCoils { addr: 0, count: 1 }, Priority::Poll)
        .await;
    assert!(matches!(r, Err(BusError::Timeout { .. })), "{r:?}");
    quiet.stop().await;
    bus.stop().await;
}

#[tokio::test]
async fn shutdown_fails_queued_requests_and_stops_the_task() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1]).await;
    let bus = Bus::start(options(tcp(&sim), Duration::from_secs(1))).await;
    let handle = bus.handle.clone();
    bus.stop().await;
    let r = timeout(
        LIMIT,
        handle.call(
            1,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Poll,
            Instant::now() + LIMIT,
        ),
    )
    .await
    .unwrap();
    assert!(matches!(r, Err(BusError::Shutdown { .. })), "{r:?}");
    assert!(!handle.is_connected());
}

#[tokio::test]
async fn unreachable_bus_fails_fast_and_its_task_ends_with_its_handles() {
    // A port with nothing listening on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = options(
        Transport::Tcp {
            addr: addr.to_string(),
        },
        Duration::from_millis(500),
    );
    opts.reconnect_backoff_max = Duration::from_millis(200);
    let metrics = Arc::new(Metrics::new());
    let (handle, join) = bus::spawn(opts, Arc::clone(&metrics), CancellationToken::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = timeout(
        LIMIT,
        handle.call(
            1,
            Op::ReadCoils { addr: 0, count: 1 },
            Priority::Operator,
            deadline,
        ),
    )
    .await
    .unwrap();
    match r {
        Err(BusError::Unavailable { reason, .. }) => {
            assert!(reason.contains("not connected"), "{reason}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(!handle.is_connected());
    assert!(metrics
        .render()
        .contains(r#"fieldgate_bus_connected{bus="test-bus"} 0"#));
    drop(handle);
    timeout(LIMIT, join).await.expect("task ends").unwrap();
}

#[tokio::test]
async fn inter_request_delay_keeps_the_line_quiet_between_transactions() {
    let sim = sim(Listen::Tcp("127.0.0.1:0".parse().unwrap()), vec![1]).await;
    let gap = Duration::from_millis(250);
    let mut opts = options(tcp(&sim), Duration::from_secs(1));
    opts.inter_request_delay = gap;
    let bus = Bus::start(opts).await;
    for value in [false, true, false] {
        let r = bus
            .call(1, Op::WriteCoil { addr: 1, value }, Priority::Operator)
            .await;
        assert_eq!(r, Ok(Reply::Written));
    }
    let log = sim.handle.write_log();
    assert_eq!(log.len(), 3);
    for pair in log.windows(2) {
        let between = pair[1].at - pair[0].at;
        assert!(between >= gap, "only {between:?} between writes");
    }
    bus.stop().await;
}
