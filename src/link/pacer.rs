//! Pacing shared by every door of a gateway: a token bucket (GCRA form) that spaces CONNECTs
//! so a gateway restart cannot exceed the hub's connect throttle (IoT Hub S1: 100/s for the
//! whole hub); a second bucket of the same kind spaces door events, so draining a backlog
//! stays under the device-to-cloud throttle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Clone it into every link of a gateway; all clones share one bucket.
#[derive(Debug, Clone)]
pub struct ConnectPacer {
    inner: Option<Arc<Mutex<Bucket>>>,
}

#[derive(Debug)]
struct Bucket {
    /// Time between connects at the sustained rate.
    interval: Duration,
    /// How far ahead of schedule a connect may go: `(burst - 1) · interval`.
    tolerance: Duration,
    /// Theoretical arrival time of the next connect.
    tat: Option<Instant>,
}

impl ConnectPacer {
    /// `per_second` connects sustained, `burst` of them back to back. `None` (or a rate of 0)
    /// means unpaced.
    pub fn new(per_second: Option<f64>, burst: u32) -> Self {
        let inner = per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|rate| {
                let interval = Duration::from_secs_f64(1.0 / rate);
                Arc::new(Mutex::new(Bucket {
                    interval,
                    tolerance: interval * burst.max(1).saturating_sub(1),
                    tat: None,
                }))
            });
        ConnectPacer { inner }
    }

    pub fn unpaced() -> Self {
        ConnectPacer { inner: None }
    }

    /// Reserves the next slot without waiting: the instant it may be used (now or later).
    /// For a task that cannot block on the wait (a link serving its connection meanwhile).
    pub fn reserve(&self) -> Instant {
        let Some(inner) = &self.inner else {
            return Instant::now();
        };
        let mut b = inner.lock().expect("pacer lock poisoned");
        let now = Instant::now();
        let tat = b.tat.map_or(now, |t| t.max(now));
        let allowed = tat.checked_sub(b.tolerance).unwrap_or(now).max(now);
        b.tat = Some(tat + b.interval);
        allowed
    }

    /// Reserves the next connect slot and waits for it. Slots are handed out in call order;
    /// a caller cancelled while waiting forfeits its slot (the bucket stays conservative).
    pub async fn acquire(&self) {
        if self.inner.is_none() {
            return;
        }
        tokio::time::sleep_until(self.reserve()).await;
    }
}

impl Default for ConnectPacer {
    fn default() -> Self {
        Self::unpaced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_connects_after_burst() {
        let pacer = ConnectPacer::new(Some(10.0), 3);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..6 {
            pacer.acquire().await;
            times.push((Instant::now() - start).as_millis());
        }
        assert_eq!(times, [0, 0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn shared_between_clones_and_refills() {
        let a = ConnectPacer::new(Some(100.0), 1);
        let b = a.clone();
        let start = Instant::now();
        a.acquire().await;
        b.acquire().await;
        assert_eq!(
            (Instant::now() - start).as_millis(),
            10,
            "clones share one bucket"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        a.acquire().await;
        assert_eq!(
            Instant::now(),
            t,
            "an idle bucket lets the next connect through at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_never_waits() {
        let p = ConnectPacer::new(None, 1);
        let t = Instant::now();
        for _ in 0..1000 {
            p.acquire().await;
        }
        assert_eq!(Instant::now(), t);
    }
}
