//! Peers we did not write, for the modules that test against them: `socat` pty pairs that
//! carry RTU frames, and a pymodbus server (`tests/peers/pymodbus_server.py`) whose writes are
//! read back from its output. [`has_socat`] and [`has_pymodbus`] say whether this machine has
//! them; without them the tests that need them print why and pass vacuously.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
    time::timeout,
};

const READY: Duration = Duration::from_secs(20);

pub fn has_socat() -> bool {
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

pub fn has_pymodbus() -> bool {
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
pub struct PtyPair {
    _socat: Child,
    pub a: String,
    pub b: String,
}

pub async fn pty_pair() -> PtyPair {
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
pub struct PyServer {
    _child: Child,
    _stdin: ChildStdin,
    pub ready: String,
    /// What the server printed after it was ready (the write log with `--log-writes`).
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// One write the pymodbus server received (`--log-writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyWrite {
    pub unit: u8,
    pub function: u8,
    pub addr: u16,
    /// Wall clock (Unix milliseconds) when the server received it.
    pub at_ms: u64,
}

impl PyServer {
    pub fn writes(&self) -> Vec<PyWrite> {
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

pub async fn pymodbus(args: &[&str]) -> PyServer {
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
