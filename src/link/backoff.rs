//! Reconnect delays: the shared exponential backoff with full jitter, capped, reset once a
//! connection has proved stable. Randomness is injected so the schedule is unit-testable.

use std::time::Duration;

use iothub_proto::backoff;

/// The knobs of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// No delay exceeds this.
    pub cap: Duration,
    /// A connection that lasted this long resets the schedule.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// Failure counter turning into delays. Full jitter (uniform in `[0, min(cap, base·2ⁿ)]`, the
/// workspace's one schedule, [`iothub_proto::backoff`]) keeps hundreds of doors that lost the
/// hub at once from reconnecting in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: backoff::Backoff,
    stable_after: Duration,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        let doubling = backoff::Policy::doubling(policy.base, policy.cap, backoff::Jitter::FULL);
        Backoff {
            schedule: backoff::Backoff::new(doubling),
            stable_after: policy.stable_after,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.schedule.ceiling()
    }

    /// Records a failure and returns the delay before the next attempt; `unit` in `[0, 1)`
    /// picks the point within the jitter window.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        self.schedule.next_delay(unit)
    }

    /// A connection ended after lasting `uptime`: a stable one forgets earlier failures.
    pub fn connection_ended(&mut self, uptime: Duration) {
        if uptime >= self.stable_after {
            self.schedule.reset();
        }
    }

    pub fn failures(&self) -> u32 {
        self.schedule.failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn doubles_up_to_cap() {
        let mut b = Backoff::new(policy());
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.next_delay(0.5);
                c
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for _ in 0..100 {
            b.next_delay(0.99);
        }
        assert_eq!(
            b.ceiling(),
            Duration::from_secs(60),
            "no overflow after many failures"
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let mut b = Backoff::new(policy());
        b.next_delay(0.0);
        b.next_delay(0.0);
        assert_eq!(b.clone().next_delay(0.0), Duration::ZERO);
        assert_eq!(b.clone().next_delay(0.5), Duration::from_secs(2));
        assert_eq!(b.next_delay(1.0), Duration::from_secs(4));
    }

    #[test]
    fn resets_only_after_stable_connection() {
        let mut b = Backoff::new(policy());
        for _ in 0..4 {
            b.next_delay(0.5);
        }
        b.connection_ended(Duration::from_secs(5));
        assert_eq!(
            b.failures(),
            4,
            "a short-lived connection keeps the schedule"
        );
        b.connection_ended(Duration::from_secs(30));
        assert_eq!(b.failures(), 0);
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }
}
