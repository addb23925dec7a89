//! Reconnect delays: exponential backoff with full jitter, capped, reset once a connection has
//! proved stable. Randomness is injected so the schedule is unit-testable.

use std::time::Duration;

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

/// Failure counter turning into delays. Full jitter (uniform in `[0, min(cap, base·2ⁿ)]`) keeps
/// hundreds of doors that lost the hub at once from reconnecting in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(30)).unwrap_or(u32::MAX);
        self.policy
            .base
            .checked_mul(factor)
            .unwrap_or(self.policy.cap)
            .min(self.policy.cap)
    }

    /// Records a failure and returns the delay before the next attempt; `unit` in `[0, 1)`
    /// picks the point within the jitter window.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// A connection ended after lasting `uptime`: a stable one forgets earlier failures.
    pub fn connection_ended(&mut self, uptime: Duration) {
        if uptime >= self.policy.stable_after {
            self.failures = 0;
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
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
