//! The floors fieldgate is judged against: what the same work costs with the same libraries
//! and nothing else. Each runs as its own process (`fieldgate-bench floor-modbus|floor-links`,
//! on a current-thread runtime like the gateway's), so its CPU time and RSS are read from
//! `/proc` exactly as the gateway's are.
//!
//! - [`modbus`]: one task per bus doing a door's poll reads with tokio-modbus alone, at the
//!   gateway's rate: the CPU a transaction must cost with this stack.
//! - [`links`]: N idle rustls + rumqttc connections, SAS-authenticated and subscribed like a
//!   door: the memory a door's link must cost.

pub mod links;
pub mod modbus;

use std::path::Path;

/// The last `"{prefix} N"` line a floor printed to its log (its cumulative count).
pub fn last_count(log: &Path, prefix: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether a floor's log holds `line` yet (its readiness lines).
pub fn has_line(log: &Path, line: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.lines().any(|l| l.starts_with(line)))
}
