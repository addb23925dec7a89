//! Per door: direct methods and desired patches become bus requests; polled state becomes
//! reported properties.
//!
//! Two tasks per door, so an operator write never waits behind the door's own poll cycle:
//! - the **bridge** task ([`run`]) answers method requests and applies desired patches
//!   (operator priority on the bus), restores pulsed coils when their time is up, and on
//!   every (re)connect reconciles the full desired state of the twin;
//! - the **poller** task ([`poll::run`]) reads the reported points in coalesced blocks
//!   (poll priority) and sends one reported patch per cycle with what changed.

mod desired;
mod io;
mod method;
pub mod poll;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::BusHandle;
use crate::config::Door;
use crate::link::{LinkEvent, LinkEvents, LinkHandle};
use crate::metrics::Metrics;

pub use desired::{check_desired_patch, DesiredOutcome, DesiredWrite};
pub use method::{MethodReply, Planned as MethodPlan};

/// Checks a method payload against the action it is mapped to, without touching the bus:
/// exactly what would be written, or the reason (a 400 answer) it is refused.
pub fn check_method_payload(
    action: &crate::config::MethodAction,
    payload: &[u8],
) -> Result<MethodPlan, String> {
    method::plan(action, payload)
}

/// What a door's bridge needs besides its config.
#[derive(Debug, Clone)]
pub struct DoorIo {
    pub bus: BusHandle,
    pub link: LinkHandle,
    pub metrics: Arc<Metrics>,
    /// Time one bus operation (write, or write + read-back) may take before the method is
    /// answered 504: the bus timeout times its attempts, for each transaction involved.
    pub op_budget: Duration,
}

/// A coil held by `pulse_coil` until `at`, then written back to `restore`.
#[derive(Debug, Clone, Copy)]
struct PendingRestore {
    at: Instant,
    restore: bool,
}

/// Runs the bridge of one door until `shutdown`; then answers queued method requests with
/// 503, writes pending pulse restores (a door unlocked for 5 s must not stay unlocked because
/// the gateway stopped), and returns. The link must outlive this task so answers get out.
pub async fn run(door: Arc<Door>, io: DoorIo, mut events: LinkEvents, shutdown: CancellationToken) {
    // The bus work below is boxed: this task spends its life waiting for an event, and an
    // inlined method or desired write would make every door's task as large as the largest
    // of them (a few hundred bytes each, per door) for work done a few times a day.
    let mut restores: BTreeMap<u16, PendingRestore> = BTreeMap::new();
    let mut desired_version: Option<u64> = None;
    let mut retry = DesiredRetry::default();
    loop {
        let next_restore = restores.values().map(|r| r.at).min();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = sleep_until_opt(retry.at) => {
                let (patch, version) = retry.take();
                let outcome = Box::pin(apply_desired(&door, &io, &patch, version, false)).await;
                retry.after(&patch, &outcome);
            }
            ev = events.recv() => match ev {
                None => break,
                Some(LinkEvent::MethodRequest { name, rid, payload }) => {
                    let started = Instant::now();
                    let reply = Box::pin(method::handle(&door, &io, &name, &payload, &mut restores)).await;
                    io.metrics
                        .methods
                        .with_label_values(&[metric_method(&door, &name), &reply.status.to_string()])
                        .inc();
                    io.metrics
                        .method_duration
                        .with_label_values(&[metric_method(&door, &name)])
                        .observe(started.elapsed().as_secs_f64());
                    if let Err(e) = Box::pin(io.link.respond_method(&rid, reply.status, reply.body)).await {
                        tracing::warn!(device = %door.device_id, method = %name, error = %e, "method answer not delivered");
                    }
                }
                Some(LinkEvent::DesiredPatch { version, patch }) => {
                    if desired_version.is_some_and(|v| version <= v) {
                        tracing::debug!(device = %door.device_id, version, "stale desired patch ignored");
                        continue;
                    }
                    desired_version = Some(version);
                    let outcome = Box::pin(apply_desired(&door, &io, &patch, version, false)).await;
                    retry.after(&patch, &outcome);
                }
                Some(LinkEvent::Connected { twin }) => {
                    let desired = twin.get("desired").cloned().unwrap_or_else(|| json!({}));
                    let version = desired.get("$version").and_then(Value::as_u64).unwrap_or(0);
                    desired_version = Some(version);
                    retry = DesiredRetry::default();
                    let outcome = Box::pin(apply_desired(&door, &io, &desired, version, true)).await;
                    retry.after(&desired, &outcome);
                }
                Some(LinkEvent::Disconnected { reason }) => {
                    tracing::debug!(device = %door.device_id, %reason, "link down");
                }
            },
            () = sleep_until_opt(next_restore) => {
                Box::pin(method::restore_due(&door, &io, &mut restores)).await;
            }
        }
    }
    events.close();
    while let Ok(ev) = events.try_recv() {
        if let LinkEvent::MethodRequest { rid, name, .. } = ev {
            let body = json!({"error": "the gateway is shutting down; nothing was written", "method": name});
            let _ = io.link.respond_method(&rid, 503, body).await;
        }
    }
    Box::pin(method::restore_all(&door, &io, &mut restores)).await;
}

/// Unmapped names would be unbounded label values; they are counted as one.
fn metric_method<'a>(door: &Door, name: &'a str) -> &'a str {
    if door.methods.contains_key(name) {
        name
    } else {
        "unknown"
    }
}

/// Desired values whose write failed on the bus (502/503/504): tried again with a doubling
/// delay (1 s … 30 s) until written or superseded by a newer value, so registers converge
/// to the desired state without waiting for a reconnect (architecture promise). Invalid
/// values (400) are not retried.
#[derive(Debug, Default)]
struct DesiredRetry {
    props: serde_json::Map<String, Value>,
    version: u64,
    failures: u32,
    at: Option<Instant>,
}

impl DesiredRetry {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    /// The patch to try again, with the version it came with.
    fn take(&mut self) -> (Value, u64) {
        self.at = None;
        (Value::Object(std::mem::take(&mut self.props)), self.version)
    }

    /// Updates the set after `patch` was applied with `outcome`.
    fn after(&mut self, patch: &Value, outcome: &DesiredOutcome) {
        if let Some(p) = patch.as_object() {
            for k in p.keys() {
                self.props.remove(k);
            }
        }
        let mut failed = false;
        for (name, ack) in &outcome.acks {
            if ack["ac"].as_i64().is_some_and(|ac| ac >= 500) {
                self.props.insert(name.clone(), ack["value"].clone());
                self.version = self.version.max(ack["av"].as_u64().unwrap_or(0));
                failed = true;
            }
        }
        if self.props.is_empty() {
            *self = DesiredRetry::default();
            return;
        }
        if failed {
            self.failures += 1;
        }
        let delay = Self::FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(5))
            .min(Self::MAX);
        self.at = Some(Instant::now() + delay);
    }
}

async fn apply_desired(
    door: &Door,
    io: &DoorIo,
    desired: &Value,
    version: u64,
    full: bool,
) -> DesiredOutcome {
    let outcome = desired::apply(door, io, desired, version, full).await;
    for (result, n) in outcome.counts() {
        io.metrics.desired.with_label_values(&[result]).inc_by(n);
    }
    if let Some(patch) = outcome.reported_patch() {
        match io.link.patch_reported(patch).await {
            Ok(_) => io.metrics.reported_patches.with_label_values(&["ok"]).inc(),
            Err(e) => {
                io.metrics
                    .reported_patches
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(device = %door.device_id, error = %e, "desired acknowledgement not reported");
            }
        }
    }
    outcome
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(acks: Value) -> DesiredOutcome {
        DesiredOutcome {
            acks: acks.as_object().unwrap().clone(),
            ..DesiredOutcome::default()
        }
    }

    #[test]
    fn failed_desired_values_are_retried_until_written_or_superseded() {
        let mut r = DesiredRetry::default();
        let patch = json!({"Building": 7, "Floor": 3, "$version": 4});
        r.after(
            &patch,
            &outcome(json!({
                "Building": {"value": 7, "ac": 504, "av": 4},
                "Floor": {"value": 3, "ac": 200, "av": 4},
            })),
        );
        assert!(r.at.is_some());
        let (again, v) = r.take();
        assert_eq!((again, v), (json!({"Building": 7}), 4));
        // Fails again: retried later, with a longer delay.
        r.after(
            &json!({"Building": 7}),
            &outcome(json!({"Building": {"value": 7, "ac": 503, "av": 4}})),
        );
        assert_eq!(r.failures, 2);
        // A newer value supersedes it; an invalid one (400) is not retried.
        r.after(
            &json!({"Building": 1000, "$version": 5}),
            &outcome(json!({"Building": {"value": 1000, "ac": 400, "av": 5}})),
        );
        assert!(r.at.is_none() && r.props.is_empty());
    }
}
