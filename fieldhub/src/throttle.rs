//! Opt-in operation throttles with IoT Hub's S1 quotas, so back-end code can practise backoff
//! against a hub that answers 429 the way IoT Hub does. Unthrottled stays the default (tests,
//! benchmarks).
//!
//! The quotas are those of "IoT Hub quotas and throttling"
//! (<https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling>), operation
//! throttles table, S1 column. The guide says they are "applied in minute ranges", so each is a
//! token bucket that holds one minute's worth for per-minute quotas (a burst of 20 queries is
//! fine, the 21st within the minute is not) and one second's worth for per-second ones. Direct
//! methods are metered in 4 KB chunks of request payload, as the guide's note on that row says.
//! Jobs' device operations are paced by the job engine itself (`JobLimits`), not here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a request or connection costs against, as the throttles table groups operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Identity registry create, retrieve, list, update, delete.
    Registry,
    /// New device connections (the rate of new connections, not their number).
    NewConnection,
    Query,
    TwinRead,
    TwinUpdate,
    /// Direct method invocations, metered by payload ([`METHOD_METER_BYTES`] chunks).
    Method,
    /// Jobs create, get, list, cancel.
    Job,
}

/// Direct methods are throttled by payload in chunks of this size.
pub const METHOD_METER_BYTES: u64 = 4 * 1024;

/// A tier's quotas for a number of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleProfile {
    /// S1 units (1 to 200 on IoT Hub).
    pub units: u32,
}

impl ThrottleProfile {
    /// The S1 quotas for `units` units.
    pub fn s1(units: u32) -> Self {
        ThrottleProfile {
            units: units.max(1),
        }
    }

    /// The quota of `op`: how many operations (method chunks) per window, and the window.
    pub fn quota(&self, op: Operation) -> (f64, Duration) {
        let u = f64::from(self.units);
        let minute = Duration::from_secs(60);
        let second = Duration::from_secs(1);
        match op {
            // 1.67/sec/unit (100/min/unit).
            Operation::Registry | Operation::Job => (100.0 * u, minute),
            // Higher of 100/sec or 12/sec/unit.
            Operation::NewConnection => ((12.0 * u).max(100.0), second),
            // 20/min/unit.
            Operation::Query => (20.0 * u, minute),
            // "Twin (device and module) reads" and "Twin updates (device and module)", S1
            // column: 100/sec and 50/sec, whatever the units (10/sec/unit and 5/sec/unit are
            // S2's). Hub-wide: a device's MQTT twin GET and reported-properties PATCH draw on
            // the same buckets as the service's twin reads and updates.
            Operation::TwinRead => (100.0, second),
            Operation::TwinUpdate => (50.0, second),
            // 160 KB/sec/unit, in 4 KB chunks.
            Operation::Method => (40.0 * u, second),
        }
    }
}

/// Refused by a throttle; the message is what the 429 body says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Throttling limit exceeded: {op:?} operations are limited to {quota} per {window:?} on this \
     hub (S1, {units} unit(s)); back off and retry"
)]
pub struct Throttled {
    pub op: Operation,
    pub quota: String,
    pub window: Duration,
    pub units: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The hub's throttles: one token bucket per [`Operation`].
#[derive(Debug)]
pub struct Throttle {
    profile: ThrottleProfile,
    buckets: Mutex<HashMap<Operation, Bucket>>,
}

impl Throttle {
    pub fn new(profile: ThrottleProfile) -> Self {
        Throttle {
            profile,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` from `op`'s bucket, or refuses without taking anything.
    pub fn admit(&self, op: Operation, cost: f64) -> Result<(), Throttled> {
        let (quota, window) = self.profile.quota(op);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(op).or_insert(Bucket {
            tokens: quota,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() / window.as_secs_f64() * quota;
        b.tokens = (b.tokens + refill).min(quota);
        b.at = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            Err(Throttled {
                op,
                quota: format!("{quota}"),
                window,
                units: self.profile.units,
            })
        }
    }

    /// The cost of a direct method call with a request body of `bytes`.
    pub fn method_cost(bytes: u64) -> f64 {
        bytes.div_ceil(METHOD_METER_BYTES).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queries_get_a_minutes_worth_then_refill() {
        let t = Throttle::new(ThrottleProfile::s1(1));
        for i in 0..20 {
            assert!(t.admit(Operation::Query, 1.0).is_ok(), "query {i}");
        }
        let e = t.admit(Operation::Query, 1.0).unwrap_err();
        assert!(
            e.to_string().starts_with("Throttling limit exceeded"),
            "{e}"
        );
        // 20/min refills one every 3 s.
        tokio::time::advance(Duration::from_millis(2900)).await;
        assert!(t.admit(Operation::Query, 1.0).is_err());
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(t.admit(Operation::Query, 1.0).is_ok());
        // Other operations have their own buckets.
        assert!(t.admit(Operation::Registry, 1.0).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn units_scale_the_per_unit_quotas_only() {
        let t = Throttle::new(ThrottleProfile::s1(2));
        for _ in 0..40 {
            t.admit(Operation::Query, 1.0).unwrap();
        }
        assert!(t.admit(Operation::Query, 1.0).is_err());
        for _ in 0..50 {
            t.admit(Operation::TwinUpdate, 1.0).unwrap();
        }
        assert!(
            t.admit(Operation::TwinUpdate, 1.0).is_err(),
            "S1 twin updates: 50/s"
        );
    }

    #[test]
    fn methods_are_metered_in_4_kb_chunks() {
        assert_eq!(Throttle::method_cost(0), 1.0);
        assert_eq!(Throttle::method_cost(4096), 1.0);
        assert_eq!(Throttle::method_cost(4097), 2.0);
    }
}
