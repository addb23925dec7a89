//! The bus layer against peers we did not write: a pymodbus server over TCP and over RTU on
//! a `socat` pty pair, and doorsim over RTU on a pty pair.
//!
//! Needs `socat` and `python3` with pymodbus + pyserial (CI: `apt-get install -y socat`,
//! `pip install pymodbus pyserial`). Without them the tests print why and pass vacuously.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fieldgate::bus::{BusError, ExceptionCode, Op, Parity, Priority, Reply, Transport};
use fieldhub::doorsim::{Listen, Table};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
    time::timeout,
};

use crate::bus::{options, sim, Bus};

const READY: Duration = Duration::from_secs(20);

pub(crate) fn has_socat() -> bool {
    let ok = std::process::Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: socat not found (install with: apt-get install -y socat)");
    }
    ok
}

pub(crate) fn has_pymodbus() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pymodbus, serial"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: python3 with pymodbus not found (install with: pip install pymodbus pyserial)");
    }
    ok
}

/// A pty pair from socat; killed when dropped.
pub(crate) struct PtyPair {
    _socat: Child,
    pub(crate) a: String,
    pub(crate) b: String,
}

pub(crate) async fn pty_pair() -> PtyPair {
    let mut socat = Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn socat");
    let mut lines = BufReader::new(socat.stderr.take().unwrap()).lines();
    let mut ptys = Vec::new();
    timeout(READY, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, path)) = line.split_once("PTY is ") {
                ptys.push(path.trim().to_string());
            }
            if line.contains("starting data transfer loop") {
                return;
            }
        }
        panic!("socat exited before it was ready");
    })
    .await
    .expect("socat ready");
    // Keep draining socat's log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert_eq!(ptys.len(), 2, "{ptys:?}");
    PtyPair {
        _socat: socat,
        b: ptys.pop().unwrap(),
        a: ptys.pop().unwrap(),
    }
}

/// The pymodbus peer; killed when dropped (and exits when its stdin closes).
pub(crate) struct PyServer {
    _child: Child,
    _stdin: ChildStdin,
    pub(crate) ready: String,
    /// What the server printed after it was ready (the write log with `--log-writes`).
    pub(crate) output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// One write the pymodbus server received (`--log-writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PyWrite {
    pub(crate) unit: u8,
    pub(crate) function: u8,
    pub(crate) addr: u16,
    /// Wall clock (Unix milliseconds) when the server received it.
    pub(crate) at_ms: u64,
}

impl PyServer {
    pub(crate) fn writes(&self) -> Vec<PyWrite> {
        self.output
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut f = l.strip_prefix("write ")?.split_whitespace();
                Some(PyWrite {
                    unit: f.next()?.parse().ok()?,
                    function: f.next()?.parse().ok()?,
                    addr: f.next()?.parse().ok()?,
                    at_ms: f.next()?.parse().ok()?,
                })
            })
            .collect()
    }
}

pub(crate) async fn pymodbus(args: &[&str]) -> PyServer {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pymodbus_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3");
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = timeout(READY, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("pymodbus ready ") {
                return rest.trim().to_string();
            }
        }
        panic!("pymodbus server exited before it was ready");
    })
    .await
    .expect("pymodbus ready");
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&output);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            keep.lock().unwrap().push(line);
        }
    });
    PyServer {
        _child: child,
        _stdin: stdin,
        ready,
        output,
    }
}

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
