//! The bus's bounded exponential backoff with jitter (over the shared schedule), and the
//! per-unit health that marks a unit dead after repeated timeouts so it cannot stall the other
//! units on its line.
//!
//! Pure: callers pass `Instant`s in, so tests need no clock.

use std::{collections::HashMap, time::Duration};

use iothub_proto::backoff;
use tokio::time::Instant;

/// Doubling delays from `base` up to `max`, each with up to 25 % random reduction so a
/// fleet of gateways does not retry in lockstep (the workspace's one schedule,
/// [`iothub_proto::backoff`], with the bus's jitter and its own random draw).
#[derive(Debug, Clone)]
pub(crate) struct Backoff(backoff::Backoff);

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        let jitter = backoff::Jitter::between(0.75, 1.0);
        Backoff(backoff::Backoff::new(backoff::Policy::doubling(
            base, max, jitter,
        )))
    }

    /// The next delay (with jitter), and steps the exponent.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.0.next_delay(rand::random::<f64>())
    }

    pub(crate) fn reset(&mut self) {
        self.0.reset();
    }
}

/// Consecutive timeouts after which a unit is considered dead.
pub(crate) const DEAD_AFTER_TIMEOUTS: u32 = 2;
/// First back-off of a dead unit; doubles up to `dead_unit_backoff_max`.
const DEAD_BACKOFF_BASE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct UnitHealth {
    timeouts: u32,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

/// Tracks which units stopped answering and when each may be tried again.
#[derive(Debug)]
pub(crate) struct UnitHealthMap {
    max: Duration,
    units: HashMap<u8, UnitHealth>,
}

impl UnitHealthMap {
    pub(crate) fn new(max: Duration) -> Self {
        UnitHealthMap {
            max,
            units: HashMap::new(),
        }
    }

    /// Whether a poll request to `unit` must be failed without touching the bus.
    pub(crate) fn is_backed_off(&self, unit: u8, now: Instant) -> Option<Instant> {
        let retry_at = self.units.get(&unit)?.retry_at?;
        (now < retry_at).then_some(retry_at)
    }

    /// Whether the unit is dead (even if its back-off has elapsed and it may be probed).
    pub(crate) fn is_dead(&self, unit: u8) -> bool {
        self.units
            .get(&unit)
            .is_some_and(|h| h.timeouts >= DEAD_AFTER_TIMEOUTS)
    }

    /// Consecutive timeouts of the unit since its last answer.
    pub(crate) fn streak(&self, unit: u8) -> u32 {
        self.units.get(&unit).map_or(0, |h| h.timeouts)
    }

    /// Any answer (even an exception) proves the unit alive.
    pub(crate) fn answered(&mut self, unit: u8) {
        // Every answer lands here: with no unit in trouble (the usual case) there is nothing
        // to hash the unit for.
        if !self.units.is_empty() {
            self.units.remove(&unit);
        }
    }

    /// Records a timeout; returns true when this made (or kept) the unit dead.
    pub(crate) fn timed_out(&mut self, unit: u8, now: Instant) -> bool {
        let max = self.max;
        let h = self.units.entry(unit).or_insert_with(|| UnitHealth {
            timeouts: 0,
            retry_at: None,
            backoff: Backoff::new(DEAD_BACKOFF_BASE, max),
        });
        h.timeouts = h.timeouts.saturating_add(1);
        if h.timeouts >= DEAD_AFTER_TIMEOUTS {
            h.retry_at = Some(now + h.backoff.next_delay());
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded_with_the_bus_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(100));
        let delays: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[10] >= Duration::from_millis(1500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn unit_is_dead_after_repeated_timeouts_and_alive_after_an_answer() {
        let now = Instant::now();
        let mut m = UnitHealthMap::new(Duration::from_secs(30));
        assert!(!m.timed_out(3, now));
        assert!(m.is_backed_off(3, now).is_none());
        assert!(m.timed_out(3, now));
        assert!(m.is_dead(3));
        let until = m.is_backed_off(3, now).expect("backed off");
        assert!(until > now && until <= now + Duration::from_secs(1));
        assert!(
            m.is_backed_off(3, until).is_none(),
            "probe allowed after back-off"
        );
        assert!(m.is_backed_off(4, now).is_none(), "other units unaffected");
        // Another timeout doubles the back-off, bounded by the maximum.
        m.timed_out(3, until);
        let again = m.is_backed_off(3, until).unwrap();
        assert!(again - until >= Duration::from_millis(1500));
        m.answered(3);
        assert!(!m.is_dead(3) && m.is_backed_off(3, until).is_none());
    }

    #[test]
    fn dead_backoff_respects_maximum() {
        let now = Instant::now();
        let mut m = UnitHealthMap::new(Duration::from_millis(300));
        for _ in 0..10 {
            m.timed_out(1, now);
        }
        let until = m.is_backed_off(1, now).unwrap();
        assert!(until - now <= Duration::from_millis(300));
    }
}
