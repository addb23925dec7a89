//! doorsim through real sockets with tokio-modbus's own client: the register map, faults,
//! line-speed emulation, the write log, and the `doorsim` binary's readiness line.

use std::{process::Stdio, time::Duration};

use fieldhub::doorsim::{
    self, transaction_time, DoorSim, DoorSimConfig, ExceptionCode, Fault, Listen, Table,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    time::{timeout, Instant},
};
use tokio_modbus::{
    client::{tcp, Context, Reader, Writer},
    prelude::SlaveContext,
    Slave,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn start(units: Vec<u8>, line_baud: Option<u32>) -> DoorSim {
    let config = DoorSimConfig {
        listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        units,
        line_baud,
    };
    timeout(LIMIT, doorsim::start(config))
        .await
        .unwrap()
        .unwrap()
}

async fn client(sim: &DoorSim, unit: u8) -> Context {
    let addr = sim.local_addr.unwrap();
    timeout(LIMIT, tcp::connect_slave(addr, Slave(unit)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn register_map_matches_the_door_profile() {
    let sim = start(vec![1, 2], None).await;
    let mut c = client(&sim, 1).await;
    let coils = timeout(LIMIT, c.read_coils(0, 2))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&coils[..2], &[true, false], "locked, no alarm");
    let holding = timeout(LIMIT, c.read_holding_registers(0, 4))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(holding, vec![1, 0, 0, 5000]);
    let mode = timeout(LIMIT, c.read_holding_registers(10, 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(mode, vec![0]);
    sim.handle.set_input(1, 0, 2);
    sim.handle.set_discrete(1, 0, true);
    let inputs = timeout(LIMIT, c.read_input_registers(0, 4))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(inputs, vec![2, 1320, 0, 0]);
    let open = timeout(LIMIT, c.read_discrete_inputs(0, 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(open[0]);
    for r in [
        timeout(LIMIT, c.read_holding_registers(4, 1))
            .await
            .unwrap()
            .unwrap(),
        timeout(LIMIT, c.read_input_registers(3, 2))
            .await
            .unwrap()
            .unwrap(),
    ] {
        assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));
    }
    let w = timeout(LIMIT, c.write_single_coil(5, true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w, Err(ExceptionCode::IllegalDataAddress));
    assert!(
        sim.handle.write_log().is_empty(),
        "refused writes are not logged"
    );

    // Writes land on the addressed unit only, and are logged in order.
    timeout(LIMIT, c.write_single_coil(0, false))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    c.set_slave(Slave(2));
    timeout(LIMIT, c.write_multiple_registers(1, &[0xFFFF, 0, 2500]))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!sim.handle.coil(1, 0) && sim.handle.coil(2, 0));
    assert_eq!(sim.handle.holding(2, 1) as i16, -1, "floor is an i16");
    assert_eq!(sim.handle.input(1, 3), 1, "lock change counted as an event");
    let log = sim.handle.write_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[0].unit,
            log[0].table,
            log[0].addr,
            log[0].values.clone()
        ),
        (1, Table::Coil, 0, vec![0])
    );
    assert_eq!(
        (log[1].unit, log[1].table, log[1].addr),
        (2, Table::Holding, 1)
    );
    assert_eq!(log[1].values, vec![0xFFFF, 0, 2500]);
    assert!(log[0].at <= log[1].at && log[0].seq < log[1].seq);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_are_injected_and_cleared_at_runtime() {
    let sim = start(vec![1, 2], None).await;
    let mut c = client(&sim, 1).await;
    sim.handle
        .set_fault(1, Fault::Exception(ExceptionCode::ServerDeviceFailure));
    let r = timeout(LIMIT, c.read_coils(0, 1)).await.unwrap().unwrap();
    assert_eq!(r, Err(ExceptionCode::ServerDeviceFailure));

    sim.handle
        .set_fault(1, Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    timeout(LIMIT, c.read_coils(0, 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    sim.handle.set_fault(1, Fault::NoReply);
    let silent = timeout(Duration::from_millis(300), c.read_coils(0, 1)).await;
    assert!(silent.is_err(), "no reply at all");
    assert_eq!(sim.handle.request_count(1), 3);

    // A fresh connection (the old one may still get the late nothing) sees the cleared fault.
    sim.handle.set_fault(1, Fault::None);
    let mut c = client(&sim, 1).await;
    let r = timeout(LIMIT, c.read_coils(0, 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(r[0]);
    sim.shutdown().await;
}

#[tokio::test]
async fn line_speed_paces_answers_and_units_share_one_line() {
    let baud = 1200;
    let sim = start(vec![1, 2], Some(baud)).await;
    // Read 4 input registers: request PDU 5 bytes, response PDU 2 + 8 bytes.
    let one = transaction_time(baud, 5, Some(10));
    assert!(one >= Duration::from_millis(250), "{one:?}");
    let mut a = client(&sim, 1).await;
    let started = Instant::now();
    timeout(LIMIT, a.read_input_registers(0, 4))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= one,
        "{:?} < {one:?}",
        started.elapsed()
    );

    // Two clients at once still share one line: the second answer waits for the first.
    let mut b = client(&sim, 2).await;
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        timeout(LIMIT, a.read_input_registers(0, 4)),
        timeout(LIMIT, b.read_input_registers(0, 4)),
    );
    ra.unwrap().unwrap().unwrap();
    rb.unwrap().unwrap().unwrap();
    assert!(started.elapsed() >= one * 2, "{:?}", started.elapsed());
    sim.shutdown().await;
}

#[tokio::test]
async fn doorsim_binary_prints_ready_and_serves_the_given_units() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_doorsim"))
        .args(["--tcp", "127.0.0.1:0", "--units", "1-3"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("doorsim ready ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let mut c = timeout(LIMIT, tcp::connect_slave(addr.parse().unwrap(), Slave(3)))
        .await
        .unwrap()
        .unwrap();
    let r = timeout(LIMIT, c.read_input_registers(1, 1))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r, vec![1320]);
    c.set_slave(Slave(4));
    let silent = timeout(Duration::from_millis(300), c.read_input_registers(1, 1)).await;
    assert!(silent.is_err(), "unit 4 is not simulated");
    child.start_kill().unwrap();
    timeout(LIMIT, child.wait()).await.unwrap().unwrap();
}

/// The pty doorsim opens itself carries RTU frames to a tokio-serial client, and survives the
/// client closing and reopening the line (as a gateway restart does).
#[tokio::test]
async fn rtu_on_its_own_pty_serves_a_serial_client_across_reopens() {
    let sim = timeout(
        LIMIT,
        doorsim::start(DoorSimConfig {
            listen: Listen::RtuPty,
            units: vec![4],
            line_baud: None,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let path = sim.serial_path.clone().expect("a pty path");
    for round in 0..2u16 {
        // The previous round's client may still hold the port's exclusive lock for a moment
        // after its drop (tokio-serial takes TIOCEXCL): try again until it is released.
        let port = timeout(LIMIT, async {
            loop {
                match tokio_serial::SerialStream::open(&tokio_serial::new(&path, 115_200)) {
                    Ok(p) => return p,
                    Err(e) if e.to_string().contains("exclusive lock") => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("round {round}: opening {path}: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: {path} stayed locked"));
        let mut ctx = tokio_modbus::client::rtu::attach_slave(port, Slave(4));
        timeout(LIMIT, ctx.write_single_register(0, 40 + round))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let read = timeout(LIMIT, ctx.read_holding_registers(0, 1))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(read, vec![40 + round], "round {round}");
        drop(ctx);
    }
    assert_eq!(sim.handle.holding(4, 0), 41);
    sim.shutdown().await;
}
