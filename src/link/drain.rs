//! Token renewal without losing method requests: before closing a connection to renew its
//! SAS token, the link unsubscribes from methods, waits for the hub's UNSUBACK plus a short
//! settle time (requests dispatched just before it), and for the open requests to be
//! answered, bounded by the token's remaining life. Pure: the clock is passed in.

use std::time::Duration;

use tokio::time::Instant;

/// A token renewal in progress: methods unsubscribed, waiting for open requests to be
/// answered before the connection is closed (at the latest shortly before the token
/// expires: a request still open then is lost, as with any disconnect).
pub(crate) struct Drain {
    /// Reconnect at the latest then, answered or not (the token must not expire first).
    deadline: Instant,
    /// When the UNSUBACK came, plus a moment for requests the hub sent just before it.
    quiet_after: Option<Instant>,
    next_check: Instant,
}

impl Drain {
    /// Requests the hub dispatched just before handling our UNSUBSCRIBE may arrive after
    /// its UNSUBACK; this long without one is taken as "no more".
    const SETTLE: Duration = Duration::from_millis(100);
    const RECHECK: Duration = Duration::from_millis(20);

    pub(crate) fn new(now: Instant, room: Duration) -> Self {
        Drain {
            deadline: now + room,
            quiet_after: None,
            next_check: now + room,
        }
    }

    pub(crate) fn unsubscribed(&mut self, now: Instant) {
        self.quiet_after = Some(now + Self::SETTLE);
        self.next_check = now + Self::SETTLE;
    }

    pub(crate) fn wake(&self) -> Instant {
        self.next_check.min(self.deadline)
    }

    pub(crate) fn done(&self, now: Instant, open_methods: usize) -> bool {
        now >= self.deadline || (open_methods == 0 && self.quiet_after.is_some_and(|q| now >= q))
    }

    pub(crate) fn recheck(&mut self, now: Instant) {
        if self.quiet_after.is_some() {
            self.next_check = now + Self::RECHECK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_unsuback_settle_and_open_methods_within_the_deadline() {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, Duration::from_secs(2));
        assert_eq!(d.wake(), t0 + Duration::from_secs(2));
        assert!(!d.done(t0, 0), "not before the UNSUBACK");
        d.unsubscribed(t0);
        assert!(!d.done(t0 + Duration::from_millis(50), 0), "settling");
        let later = t0 + Drain::SETTLE;
        assert!(!d.done(later, 1), "a request is still open");
        d.recheck(later);
        assert_eq!(d.wake(), later + Drain::RECHECK);
        assert!(d.done(later, 0));
        assert!(d.done(t0 + Duration::from_secs(2), 3), "the deadline wins");
    }
}
