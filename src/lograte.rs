//! Keeping the journal readable when many doors fail the same way: a thousand doors refused by
//! the hub, or a job reaching a line whose units are all off, would otherwise write one line
//! per door per retry. The first failure of a kind is logged in full, with its door; the same
//! failure of other doors (or again) is counted, and one line per [`REPEAT_INTERVAL`] says how
//! many doors and which, until the failures stop.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeated failure is summed up in the log.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Kinds of failure tracked at once; more are logged in full (bounded memory).
const MAX_KINDS: usize = 256;
/// Doors named in a summary line.
const NAMED: usize = 5;

#[derive(Debug)]
struct Kind {
    logged_at: Instant,
    /// Failures since the last line, and some of the doors they came from.
    count: u64,
    doors: BTreeSet<String>,
}

/// What to write for one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first of its kind (or the first after a quiet interval): log it in full.
    First,
    /// Seen before, within the interval: count it, log nothing (or at debug level).
    Repeat,
    /// The interval is over: log this summary of the repeats since the last line.
    Summary { count: u64, doors: Vec<String> },
}

/// Shared by every task that logs failures of the same family.
#[derive(Debug, Default)]
pub struct RepeatGate {
    kinds: Mutex<HashMap<String, Kind>>,
}

impl RepeatGate {
    pub fn new() -> Self {
        RepeatGate::default()
    }

    /// Notes a failure of `kind` (e.g. the reason text, without the door) at `door`.
    pub fn note(&self, kind: &str, door: &str) -> Verdict {
        self.note_at(kind, door, Instant::now())
    }

    fn note_at(&self, kind: &str, door: &str, now: Instant) -> Verdict {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        if !kinds.contains_key(kind) {
            if kinds.len() >= MAX_KINDS {
                kinds.retain(|_, k| now.duration_since(k.logged_at) < REPEAT_INTERVAL);
                if kinds.len() >= MAX_KINDS {
                    return Verdict::First;
                }
            }
            kinds.insert(
                kind.to_string(),
                Kind {
                    logged_at: now,
                    count: 0,
                    doors: BTreeSet::new(),
                },
            );
            return Verdict::First;
        }
        let k = kinds.get_mut(kind).expect("checked above");
        if now.duration_since(k.logged_at) < REPEAT_INTERVAL {
            k.count += 1;
            if k.doors.len() < NAMED {
                k.doors.insert(door.to_string());
            }
            return Verdict::Repeat;
        }
        let count = std::mem::take(&mut k.count) + 1;
        let mut doors: Vec<String> = std::mem::take(&mut k.doors).into_iter().collect();
        if doors.len() < NAMED && !doors.iter().any(|d| d == door) {
            doors.push(door.to_string());
        }
        k.logged_at = now;
        if count == 1 {
            // Quiet for a whole interval: this is news again.
            Verdict::First
        } else {
            Verdict::Summary { count, doors }
        }
    }
}

/// The text of a summary line: "37 times (door-3, door-7, … and more) in the last 10s".
pub fn summary_text(count: u64, doors: &[String]) -> String {
    let more = if (doors.len() as u64) < count {
        ", …"
    } else {
        ""
    };
    format!(
        "{count} times since the last line ({}{more})",
        doors.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_repeats_are_summed_up_once_an_interval() {
        let g = RepeatGate::new();
        let t0 = Instant::now();
        assert_eq!(g.note_at("NotAuthorized", "door-1", t0), Verdict::First);
        for i in 2..=200 {
            let d = format!("door-{i}");
            assert_eq!(
                g.note_at("NotAuthorized", &d, t0 + Duration::from_millis(i)),
                Verdict::Repeat
            );
        }
        // Another kind is news of its own.
        assert_eq!(g.note_at("timeout", "door-9", t0), Verdict::First);
        match g.note_at("NotAuthorized", "door-1", t0 + REPEAT_INTERVAL) {
            Verdict::Summary { count, doors } => {
                assert_eq!(count, 200);
                assert_eq!(doors.len(), NAMED);
            }
            other => panic!("{other:?}"),
        }
        // Quiet for an interval, then once more: logged in full again.
        assert_eq!(
            g.note_at("NotAuthorized", "door-1", t0 + REPEAT_INTERVAL * 3),
            Verdict::First
        );
        assert!(summary_text(200, &["door-2".into()]).contains("200 times"));
    }
}
