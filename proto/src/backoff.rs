//! The one retry schedule of the workspace: exponential backoff from `initial` by `multiplier`
//! per failure, capped at `max`, with a jitter window so a fleet that failed together (doors
//! that lost the hub, gateways behind one outage) does not retry in lockstep.
//!
//! Pure: the random draw is passed in as `unit` in `[0, 1]`, so schedules are tested without a
//! clock or a random source. What a failure is, when a schedule starts over, and what else
//! bounds a retry (attempt limits, job deadlines, `Retry-After`) stay with each caller.

use std::time::Duration;

/// Where in `[low·d, high·d]` a delay of ceiling `d` lands, picked by the caller's random draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    low: f64,
    high: f64,
}

impl Jitter {
    /// Uniform in `[0, d]` ("full jitter"): spreads retries the most.
    pub const FULL: Jitter = Jitter {
        low: 0.0,
        high: 1.0,
    };

    /// Uniform in `[d/2, d]` ("equal jitter"): spreads retries yet never retries at once.
    pub const UPPER_HALF: Jitter = Jitter {
        low: 0.5,
        high: 1.0,
    };

    /// Uniform in `[low·d, high·d]`; `high` may exceed 1 (the delay then may exceed `max`).
    /// Factors are clamped to be non-negative and ordered.
    pub const fn between(low: f64, high: f64) -> Jitter {
        let low = if low > 0.0 { low } else { 0.0 };
        let high = if high > low { high } else { low };
        Jitter { low, high }
    }

    /// The point `unit` (clamped to `[0, 1]`) of the window around `ceiling`.
    pub fn apply(self, ceiling: Duration, unit: f64) -> Duration {
        ceiling.mul_f64(self.low + (self.high - self.low) * unit.clamp(0.0, 1.0))
    }
}

/// The knobs of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// No ceiling exceeds this.
    pub max: Duration,
    /// Growth of the ceiling per failure.
    pub multiplier: u32,
    pub jitter: Jitter,
}

impl Policy {
    /// Doubling from `initial` up to `max`, with `jitter`.
    pub fn doubling(initial: Duration, max: Duration, jitter: Jitter) -> Policy {
        Policy {
            initial,
            max,
            multiplier: 2,
            jitter,
        }
    }

    /// The delay before retry `retry` (0 = the first) without jitter:
    /// `min(max, initial · multiplierʳᵉᵗʳʸ)`, saturating at `max` however many retries.
    pub fn ceiling(&self, retry: u32) -> Duration {
        match self.multiplier.checked_pow(retry) {
            Some(factor) => self
                .initial
                .checked_mul(factor)
                .unwrap_or(self.max)
                .min(self.max),
            None if self.initial.is_zero() => Duration::ZERO,
            None => self.max,
        }
    }

    /// The delay before retry `retry` (0 = the first), `unit` in `[0, 1]` picking the point in
    /// the jitter window.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        self.jitter.apply(self.ceiling(retry), unit)
    }
}

/// A failure counter walking a [`Policy`]: each failure takes the next delay, a success (as
/// the caller defines it) starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: Policy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// Records a failure and returns the delay before the next attempt; `unit` in `[0, 1]`
    /// picks the point in the jitter window.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = self.policy.delay(self.failures, unit);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.policy.ceiling(self.failures)
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_up_to_max_without_overflow() {
        let p = Policy::doubling(S(1), S(60), Jitter::FULL);
        let ceilings: Vec<u64> = (0..9).map(|n| p.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for n in [31, 32, 64, 1000, u32::MAX] {
            assert_eq!(p.ceiling(n), S(60), "retry {n}");
        }
        let zero = Policy::doubling(Duration::ZERO, S(60), Jitter::FULL);
        assert_eq!(zero.ceiling(u32::MAX), Duration::ZERO);
        let small_max = Policy::doubling(S(5), S(2), Jitter::FULL);
        assert_eq!(small_max.ceiling(0), S(2), "the first delay is capped too");
    }

    #[test]
    fn other_multipliers() {
        let p = Policy {
            initial: Duration::from_millis(100),
            max: S(10),
            multiplier: 3,
            jitter: Jitter::FULL,
        };
        let ms: Vec<u128> = (0..6).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 300, 900, 2700, 8100, 10_000]);
        let constant = Policy { multiplier: 1, ..p };
        assert_eq!(constant.ceiling(50), Duration::from_millis(100));
    }

    #[test]
    fn jitter_windows() {
        let full = Policy::doubling(S(1), S(60), Jitter::FULL);
        assert_eq!(full.delay(2, 0.0), Duration::ZERO);
        assert_eq!(full.delay(2, 0.5), S(2));
        assert_eq!(full.delay(2, 1.0), S(4));
        assert_eq!(full.delay(2, 7.0), S(4), "the draw is clamped");

        let upper_half = Policy::doubling(S(1), S(30), Jitter::UPPER_HALF);
        assert_eq!(upper_half.delay(2, 0.0), S(2));
        assert_eq!(upper_half.delay(60, 0.5), Duration::from_millis(22_500));

        let around = Policy::doubling(S(1), S(30), Jitter::between(0.8, 1.2));
        assert_eq!(
            around.delay(10, 1.0),
            S(36),
            "a window above 1 may exceed max"
        );
        assert_eq!(around.delay(0, 0.0), Duration::from_millis(800));

        assert_eq!(Jitter::between(0.9, 0.1), Jitter::between(0.9, 0.9));
    }

    #[test]
    fn counter_steps_and_resets() {
        let mut b = Backoff::new(Policy::doubling(
            Duration::from_millis(100),
            S(2),
            Jitter::between(0.75, 1.0),
        ));
        let first = b.next_delay(0.3);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(100));
        let delays: Vec<_> = (0..20).map(|i| b.next_delay(f64::from(i) / 20.0)).collect();
        assert!(delays.iter().all(|d| *d <= S(2)));
        assert!(delays[10] >= Duration::from_millis(1500));
        assert_eq!((b.failures(), b.ceiling()), (21, S(2)));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        assert!(b.next_delay(1.0) <= Duration::from_millis(100));
    }
}
