//! Retrying throttled (429) requests: bounded exponential backoff with jitter, the hub's
//! `Retry-After` when it sends one, and the notice the operator sees for each retry.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iothub_proto::backoff;
use reqwest::header::HeaderMap;

/// How 429 answers are retried: `base` doubles per attempt up to `cap`, each delay drawn
/// between half and all of it (jitter; the shared [`iothub_proto::backoff`] schedule), at most
/// `max_attempts` requests in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry); `jitter` in [0, 1].
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        backoff::Policy::doubling(self.base, self.cap, backoff::Jitter::UPPER_HALF)
            .delay(attempt.saturating_sub(1), jitter)
    }
}

/// A retry about to happen, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    pub code: Option<String>,
    pub delay: Duration,
    pub attempt: u32,
}

impl fmt::Display for RetryNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "throttled by the hub")?;
        if let Some(c) = &self.code {
            write!(f, " ({c})")?;
        }
        write!(f, "; retrying in {}", human_delay(self.delay))
    }
}

/// `2s`, `1.5s`, `250ms`: short and readable.
pub fn human_delay(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{}s", d.as_secs_f64().round())
    } else if d >= Duration::from_secs(1) {
        let tenths = (d.as_secs_f64() * 10.0).round() / 10.0;
        format!("{tenths}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub type Notifier = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(30));
        assert_eq!(p.delay(60, 0.5), Duration::from_millis(22_500));
        let n = RetryNotice {
            code: Some("ThrottlingMaxActiveJobCountExceeded".into()),
            delay: Duration::from_secs(2),
            attempt: 1,
        };
        assert_eq!(
            n.to_string(),
            "throttled by the hub (ThrottlingMaxActiveJobCountExceeded); retrying in 2s"
        );
        assert_eq!(human_delay(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_delay(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn retry_after_header() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
