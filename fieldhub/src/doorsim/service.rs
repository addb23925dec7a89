//! The Modbus service shared by every connection of one simulator: unit states, faults,
//! the write log, request counters and the emulated line.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tokio_modbus::{server::Service, ExceptionCode, Response, SlaveRequest};

use super::{
    line,
    registers::{Table, UnitState},
};

/// A fault injected into one unit, effective from the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Healthy: answer normally.
    None,
    /// Swallow every request (a dead or disconnected controller).
    NoReply,
    /// Answer every request with this exception.
    Exception(ExceptionCode),
    /// Answer normally, but only after this extra delay.
    Delay(Duration),
}

/// One accepted write, for tests to check exactly what reached which unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub unit: u8,
    pub table: Table,
    pub addr: u16,
    /// Register values, or coil values as 0/1.
    pub values: Vec<u16>,
    pub at: Instant,
    /// Position of the write's request among all requests the simulator received (1-based),
    /// so tests can check the order in which a client sent requests.
    pub seq: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) units: Mutex<HashMap<u8, UnitState>>,
    pub(crate) faults: Mutex<HashMap<u8, Fault>>,
    pub(crate) log: Mutex<Vec<WriteRecord>>,
    pub(crate) requests: Mutex<HashMap<u8, u64>>,
    /// Total requests seen, so tests can wait for "the server has my request" without sleeping.
    pub(crate) seen: watch::Sender<u64>,
    line_baud: Option<u32>,
    /// One RS-485 line: transactions of concurrent clients queue for it.
    line: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a simulator lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(units: &[u8], line_baud: Option<u32>) -> Self {
        Shared {
            units: Mutex::new(units.iter().map(|&u| (u, UnitState::default())).collect()),
            faults: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            requests: Mutex::new(HashMap::new()),
            seen: watch::channel(0).0,
            line_baud,
            line: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn with_unit<R>(&self, unit: u8, f: impl FnOnce(&mut UnitState) -> R) -> Option<R> {
        lock(&self.units).get_mut(&unit).map(f)
    }

    pub(crate) fn set_fault(&self, unit: u8, fault: Fault) {
        lock(&self.faults).insert(unit, fault);
    }

    pub(crate) fn write_log(&self) -> Vec<WriteRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn request_count(&self, unit: u8) -> u64 {
        lock(&self.requests).get(&unit).copied().unwrap_or(0)
    }

    async fn handle(&self, req: SlaveRequest<'static>) -> Result<Option<Response>, ExceptionCode> {
        let arrived = Instant::now();
        let unit = req.slave;
        *lock(&self.requests).entry(unit).or_default() += 1;
        let mut seq = 0;
        self.seen.send_modify(|n| {
            *n += 1;
            seq = *n;
        });
        let fault = lock(&self.faults)
            .get(&unit)
            .copied()
            .unwrap_or(Fault::None);

        let result = match fault {
            Fault::NoReply => Ok(None),
            Fault::Exception(code) => Err(code),
            Fault::Delay(_) | Fault::None => {
                // Requests to absent units go unanswered, as on a real multi-drop line.
                let applied = lock(&self.units)
                    .get_mut(&unit)
                    .map(|state| state.apply(&req.request));
                match applied {
                    None => Ok(None),
                    Some(Err(code)) => Err(code),
                    Some(Ok((response, write))) => {
                        if let Some(w) = write {
                            lock(&self.log).push(WriteRecord {
                                unit,
                                table: w.table,
                                addr: w.addr,
                                values: w.values,
                                at: Instant::now(),
                                seq,
                            });
                        }
                        Ok(Some(response))
                    }
                }
            }
        };

        if let Fault::Delay(d) = fault {
            tokio::time::sleep(d).await;
        }
        if let Some(baud) = self.line_baud {
            let resp_len = match &result {
                Ok(None) => None,
                Ok(Some(r)) => Some(line::response_pdu_len(Some(r))),
                Err(_) => Some(line::response_pdu_len(None)),
            };
            let wire = line::transaction_time(baud, line::request_pdu_len(&req.request), resp_len);
            // The line is ours from the request's arrival, or from when the transaction
            // ahead of it released the line.
            let (_line, start) = match self.line.try_lock() {
                Ok(guard) => (guard, arrived),
                Err(_) => (self.line.lock().await, Instant::now()),
            };
            let until = start + wire;
            // Not tokio::time::sleep: its timer ticks in whole milliseconds, which at 115200
            // baud (~2 ms a transaction) would add up to 50 % to every transaction. A thread
            // sleep wakes late by tens of microseconds (timer slack); the last stretch spins.
            let _ = tokio::task::spawn_blocking(move || line::sleep_precisely(until)).await;
        }
        result
    }
}

/// The per-connection service handed to tokio-modbus; all connections share one [`Shared`].
#[derive(Debug, Clone)]
pub(crate) struct DoorService(pub(crate) Arc<Shared>);

impl Service for DoorService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let shared = Arc::clone(&self.0);
        Box::pin(async move { shared.handle(req).await })
    }
}
