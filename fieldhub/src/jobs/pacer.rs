//! Pacing of job device operations: the hub-wide "jobs device operations per second" throttle.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Spaces device operations `1/rate` apart across all jobs; no bursts after idle periods.
pub(super) struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: Option<f64>) -> Self {
        let interval = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn next_slot(&self) -> Instant {
        let next = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        next.max(Instant::now())
    }

    /// Claims the current slot if it has come; false if another job took it first.
    pub(super) fn take(&self) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if *next > now {
            return false;
        }
        *next = now + interval;
        true
    }
}
