//! Simulated door controllers on a Modbus server (TCP, RTU on a serial path, or RTU over
//! TCP), with per-unit faults, line-speed emulation and a write log for tests.
//!
//! [`start`] binds and serves in a background task; the returned [`DoorSim`] carries the
//! bound address and a [`DoorSimHandle`] to read and change unit state while it runs.

mod line;
mod registers;
mod service;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_modbus::server::{rtu, rtu_over_tcp, tcp};
use tokio_util::sync::CancellationToken;

pub use line::transaction_time;
pub use registers::{Table, UnitState};
pub use service::{Fault, WriteRecord};
pub use tokio_modbus::ExceptionCode;

use service::{DoorService, Shared};

/// Where the simulator listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Modbus TCP (MBAP framing).
    Tcp(SocketAddr),
    /// Modbus RTU on a serial device (8N1), e.g. one end of a `socat` pty pair.
    RtuSerial { path: String, baud: u32 },
    /// RTU framing over TCP, like a serial device server.
    RtuOverTcp(SocketAddr),
    /// Modbus RTU on a pseudo-terminal doorsim opens itself; the client opens
    /// [`DoorSim::serial_path`]. A frame crosses one kernel hop instead of two plus a relay
    /// process (a `socat` pair), which keeps the emulation's own latency (~0.1 ms a
    /// transaction through socat) off a fast line's time in the benchmark.
    RtuPty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorSimConfig {
    pub listen: Listen,
    /// Unit ids that answer; requests to any other unit go unanswered.
    pub units: Vec<u8>,
    /// Pace every answer as an RS-485 line at this baud rate would.
    pub line_baud: Option<u32>,
}

/// A running simulator.
#[derive(Debug)]
pub struct DoorSim {
    /// The bound address for TCP listeners (`None` on a serial line).
    pub local_addr: Option<SocketAddr>,
    /// The serial device a client opens, for [`Listen::RtuPty`].
    pub serial_path: Option<String>,
    pub handle: DoorSimHandle,
    /// The pty's client end, held open so that the line outlives a client closing and
    /// reopening it (the master reads EIO while no client end is open).
    _pty_peer: Option<std::fs::File>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// Reads and changes the simulated units; cheap to clone.
#[derive(Debug, Clone)]
pub struct DoorSimHandle {
    shared: Arc<Shared>,
}

/// Binds the listener (or opens the serial port) and serves until [`DoorSim::shutdown`].
pub async fn start(config: DoorSimConfig) -> anyhow::Result<DoorSim> {
    let shared = Arc::new(Shared::new(&config.units, config.line_baud));
    let service = DoorService(Arc::clone(&shared));
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    let mut pty_peer = None;
    let (local_addr, task) = match config.listen {
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("doorsim: binding Modbus TCP listener {addr}"))?;
            let local = listener.local_addr()?;
            let task = tokio::spawn(async move {
                let server = tcp::Server::new(listener);
                let on_connected = |stream, peer| {
                    let service = service.clone();
                    async move {
                        tcp::accept_tcp_connection(stream, peer, |_| Ok(Some(service.clone())))
                    }
                };
                let on_error = |err| tracing::debug!("doorsim: connection ended: {err}");
                tokio::select! {
                    res = server.serve(&on_connected, on_error) => log_end(res),
                    () = cancel.cancelled() => {}
                }
            });
            (Some(local), task)
        }
        Listen::RtuOverTcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("doorsim: binding RTU-over-TCP listener {addr}"))?;
            let local = listener.local_addr()?;
            let task = tokio::spawn(async move {
                let server = rtu_over_tcp::Server::new(listener);
                let on_connected = |stream, peer| {
                    let service = service.clone();
                    async move {
                        rtu_over_tcp::accept_tcp_connection(stream, peer, |_| {
                            Ok(Some(service.clone()))
                        })
                    }
                };
                let on_error = |err| tracing::debug!("doorsim: connection ended: {err}");
                tokio::select! {
                    res = server.serve(&on_connected, on_error) => log_end(res),
                    () = cancel.cancelled() => {}
                }
            });
            (Some(local), task)
        }
        Listen::RtuSerial { path, baud } => {
            let serial = tokio_serial::SerialStream::open(&tokio_serial::new(&path, baud))
                .with_context(|| format!("doorsim: opening serial line {path} at {baud} baud"))?;
            let task = tokio::spawn(async move {
                let server = rtu::Server::new(serial);
                tokio::select! {
                    res = server.serve_forever(service) => log_end(res),
                    () = cancel.cancelled() => {}
                }
            });
            (None, task)
        }
        Listen::RtuPty => {
            use std::os::unix::fs::OpenOptionsExt as _;
            use tokio_serial::SerialPort as _;
            let (master, slave) =
                tokio_serial::SerialStream::pair().context("doorsim: opening a pseudo-terminal")?;
            let path = slave
                .name()
                .context("doorsim: the pseudo-terminal has no name")?;
            // Held as a plain file: the serial port's own handle keeps a flock that would
            // refuse the client's open.
            let peer = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&path)
                .with_context(|| format!("doorsim: opening {path}"))?;
            drop(slave);
            pty_peer = Some((path, peer));
            let task = tokio::spawn(async move {
                let server = rtu::Server::new(master);
                tokio::select! {
                    res = server.serve_forever(service) => log_end(res),
                    () = cancel.cancelled() => {}
                }
            });
            (None, task)
        }
    };
    Ok(DoorSim {
        local_addr,
        serial_path: pty_peer.as_ref().map(|(path, _)| path.clone()),
        _pty_peer: pty_peer.map(|(_, file)| file),
        handle: DoorSimHandle { shared },
        shutdown,
        task,
    })
}

fn log_end(res: std::io::Result<()>) {
    if let Err(err) = res {
        tracing::warn!("doorsim: server stopped: {err}");
    }
}

impl DoorSim {
    /// Stops serving, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for DoorSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DoorSimHandle {
    /// Every write accepted so far, oldest first.
    pub fn write_log(&self) -> Vec<WriteRecord> {
        self.shared.write_log()
    }

    /// A coil's value (false for unknown units or addresses).
    pub fn coil(&self, unit: u8, addr: u16) -> bool {
        self.shared
            .with_unit(unit, |s| s.coils.get(usize::from(addr)).copied())
            .flatten()
            .unwrap_or(false)
    }

    /// A holding register's value (0 for unknown units or addresses).
    pub fn holding(&self, unit: u8, addr: u16) -> u16 {
        self.shared
            .with_unit(unit, |s| s.holding.get(usize::from(addr)).copied())
            .flatten()
            .unwrap_or(0)
    }

    /// An input register's value (0 for unknown units or addresses).
    pub fn input(&self, unit: u8, addr: u16) -> u16 {
        self.shared
            .with_unit(unit, |s| s.input.get(usize::from(addr)).copied())
            .flatten()
            .unwrap_or(0)
    }

    /// Sets an input register (door state, battery, event counter); ignored for unknown
    /// units or addresses.
    pub fn set_input(&self, unit: u8, addr: u16, value: u16) {
        self.shared.with_unit(unit, |s| {
            if let Some(r) = s.input.get_mut(usize::from(addr)) {
                *r = value;
            }
        });
    }

    /// Sets a discrete input (0 = door open).
    pub fn set_discrete(&self, unit: u8, addr: u16, value: bool) {
        self.shared.with_unit(unit, |s| {
            if let Some(d) = s.discrete.get_mut(usize::from(addr)) {
                *d = value;
            }
        });
    }

    /// Sets a coil or holding register directly, without a write log entry (test setup).
    pub fn set_coil(&self, unit: u8, addr: u16, value: bool) {
        self.shared.with_unit(unit, |s| {
            if let Some(c) = s.coils.get_mut(usize::from(addr)) {
                *c = value;
            }
        });
    }

    pub fn set_holding(&self, unit: u8, addr: u16, value: u16) {
        self.shared.with_unit(unit, |s| {
            if let Some(h) = s.holding.get_mut(usize::from(addr)) {
                *h = value;
            }
        });
    }

    /// A snapshot of a unit's whole state.
    pub fn unit(&self, unit: u8) -> Option<UnitState> {
        self.shared.with_unit(unit, |s| s.clone())
    }

    /// Injects (or with [`Fault::None`] clears) a fault on one unit.
    pub fn set_fault(&self, unit: u8, fault: Fault) {
        self.shared.set_fault(unit, fault);
    }

    /// Requests received for a unit so far (answered or not).
    pub fn request_count(&self, unit: u8) -> u64 {
        self.shared.request_count(unit)
    }

    /// Waits until the server has received at least `n` requests in total, or `timeout`.
    /// Returns whether it got there. Lets tests know a request is in flight without sleeping.
    pub async fn wait_requests(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.seen.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&seen| seen >= n)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Total requests received for all units.
    pub fn total_requests(&self) -> u64 {
        *self.shared.seen.borrow()
    }
}
