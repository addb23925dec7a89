//! Per door: direct methods and desired patches become bus requests; polled state becomes
//! reported properties.
//!
//! Two tasks per door, so an operator write never waits behind the door's own poll cycle:
//! - the **bridge** task ([`run`]) answers method requests and applies desired patches
//!   (operator priority on the bus), restores pulsed coils when their time is up, and on
//!   every (re)connect reconciles the full desired state of the twin;
//! - the **poller** task ([`poll::run`]) reads the reported points in coalesced blocks
//!   (poll priority) and sends one reported patch per cycle with what changed.

mod bus_ops;
mod desired;
mod method;
pub mod poll;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt as _};
use iothub_proto::backoff;

use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::BusHandle;
use crate::config::Door;
use crate::link::{LinkEvent, LinkEvents, LinkHandle};
use crate::metrics::Metrics;

pub use desired::{check_desired_patch, DesiredAck, DesiredOutcome, DesiredWrite};
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

/// Bus work of a door in flight. Method requests run side by side from the moment they
/// arrive (each waits for the bus on its own deadline, so one waiting behind a dead unit's
/// probe can still be refused at once, and none waits behind another's time at the door);
/// the bus keeps them in arrival order per unit. Desired patches go one at a time: a patch
/// arriving meanwhile is merged into the next one (latest value wins).
enum Done {
    Method {
        restore: Option<(u16, PendingRestore)>,
    },
    Restore {
        addr: u16,
        value: bool,
        ok: bool,
    },
    Desired {
        patch: Value,
        outcome: DesiredOutcome,
    },
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A desired document waiting for the one in flight.
struct PendingDesired {
    patch: Value,
    version: u64,
    full: bool,
}

impl PendingDesired {
    /// `newer` on top of `self`: a full document replaces everything; a patch overrides the
    /// properties it names.
    fn merge(&mut self, newer: PendingDesired) {
        if newer.full {
            *self = newer;
            return;
        }
        if let (Some(base), Some(top)) = (self.patch.as_object_mut(), newer.patch.as_object()) {
            for (k, v) in top {
                base.insert(k.clone(), v.clone());
            }
        }
        self.version = self.version.max(newer.version);
    }
}

/// The door's bus work and what waits for it.
#[derive(Default)]
struct InFlight {
    /// Created on first use: most doors see a few requests a day.
    work: Option<FuturesUnordered<Work>>,
    desired_busy: bool,
    pending: Option<PendingDesired>,
}

impl InFlight {
    fn push(&mut self, w: Work) {
        self.work.get_or_insert_with(FuturesUnordered::new).push(w);
    }

    fn is_empty(&self) -> bool {
        self.work.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    async fn next(&mut self) -> Option<Done> {
        match self.work.as_mut() {
            Some(w) => w.next().await,
            None => None,
        }
    }

    fn desired(&mut self, door: &Arc<Door>, io: &DoorIo, next: PendingDesired) {
        if self.desired_busy {
            match &mut self.pending {
                Some(p) => p.merge(next),
                None => self.pending = Some(next),
            }
            return;
        }
        self.desired_busy = true;
        let (door, io) = (Arc::clone(door), io.clone());
        self.push(Box::pin(async move {
            let outcome = apply_desired(&door, &io, &next.patch, next.version, next.full).await;
            Done::Desired {
                patch: next.patch,
                outcome,
            }
        }));
    }

    fn method(&mut self, door: &Arc<Door>, io: &DoorIo, request: MethodRequest) {
        let (door, io) = (Arc::clone(door), io.clone());
        self.push(Box::pin(async move {
            let MethodRequest {
                name,
                rid,
                payload,
                received,
            } = request;
            let (reply, restore) = method::handle(&door, &io, &name, &payload, received).await;
            let label = metric_method(&door, &name);
            io.metrics
                .methods
                .with_label_values(&[label, &reply.status.to_string()])
                .inc();
            io.metrics
                .method_duration
                .with_label_values(&[label])
                .observe(received.elapsed().as_secs_f64());
            if let Err(e) = io.link.respond_method(&rid, reply.status, reply.body).await {
                tracing::warn!(device = %door.device_id, method = %name, error = %e, "method answer not delivered");
            }
            Done::Method { restore }
        }));
    }

    fn restore(&mut self, door: &Arc<Door>, io: &DoorIo, addr: u16, value: bool) {
        let (door, io) = (Arc::clone(door), io.clone());
        self.push(Box::pin(async move {
            let ok = method::restore(&door, &io, addr, value).await;
            Done::Restore { addr, value, ok }
        }));
    }
}

struct MethodRequest {
    name: String,
    rid: String,
    payload: Vec<u8>,
    received: Instant,
}

/// A pulse restore that failed is tried again this long after (the coil must not stay in
/// its pulsed state, e.g. a door unlocked, because the unit missed one write).
const RESTORE_RETRY: Duration = Duration::from_secs(1);

/// Runs the bridge of one door until `shutdown`; then answers queued method requests with
/// 503, lets the ones in flight finish (each is bounded by its deadline, and the bus is
/// stopping too), writes pending pulse restores (a door unlocked for 5 s must not stay
/// unlocked because the gateway stopped), and returns. The link must outlive this task so
/// answers get out.
pub async fn run(door: Arc<Door>, io: DoorIo, mut events: LinkEvents, shutdown: CancellationToken) {
    let mut restores: BTreeMap<u16, PendingRestore> = BTreeMap::new();
    let mut desired_version: Option<u64> = None;
    let mut retry = DesiredRetry::default();
    let mut flight = InFlight::default();
    loop {
        let next_restore = restores.values().map(|r| r.at).min();
        let busy = !flight.is_empty();
        let retry_at = retry.at.filter(|_| !flight.desired_busy);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = flight.next(), if busy => match done {
                Done::Method { restore: Some((addr, r)) } => {
                    restores.insert(addr, r);
                }
                Done::Method { restore: None } | Done::Restore { ok: true, .. } => {}
                Done::Restore { addr, value, ok: false } => {
                    // A newer pulse of the same coil brings its own restore.
                    restores.entry(addr).or_insert(PendingRestore {
                        at: Instant::now() + RESTORE_RETRY,
                        restore: value,
                    });
                }
                Done::Desired { patch, outcome } => {
                    flight.desired_busy = false;
                    retry.after(&patch, &outcome);
                    if let Some(next) = flight.pending.take() {
                        flight.desired(&door, &io, next);
                    }
                }
            },
            () = sleep_until_opt(retry_at) => {
                let (patch, version) = retry.take();
                flight.desired(&door, &io, PendingDesired { patch, version, full: false });
            }
            ev = events.recv() => match ev {
                None => break,
                Some(LinkEvent::MethodRequest { name, rid, payload, received }) => {
                    flight.method(&door, &io, MethodRequest { name, rid, payload, received });
                }
                Some(LinkEvent::DesiredPatch { version, patch }) => {
                    if desired_version.is_some_and(|v| version <= v) {
                        tracing::debug!(device = %door.device_id, version, "stale desired patch ignored");
                        continue;
                    }
                    desired_version = Some(version);
                    flight.desired(&door, &io, PendingDesired { patch, version, full: false });
                }
                Some(LinkEvent::Connected { twin }) => {
                    let desired = twin.get("desired").cloned().unwrap_or_else(|| json!({}));
                    let version = desired.get("$version").and_then(Value::as_u64).unwrap_or(0);
                    desired_version = Some(version);
                    retry = DesiredRetry::default();
                    flight.desired(&door, &io, PendingDesired { patch: desired, version, full: true });
                }
                Some(LinkEvent::Disconnected { reason }) => {
                    tracing::debug!(device = %door.device_id, %reason, "link down");
                }
            },
            () = sleep_until_opt(next_restore) => {
                let now = Instant::now();
                let due: Vec<u16> = restores.iter().filter(|(_, r)| r.at <= now).map(|(a, _)| *a).collect();
                for addr in due {
                    if let Some(r) = restores.remove(&addr) {
                        flight.restore(&door, &io, addr, r.restore);
                    }
                }
            }
        }
    }
    events.close();
    while let Ok(ev) = events.try_recv() {
        if let LinkEvent::MethodRequest { rid, name, .. } = ev {
            let body = json!({"error": "the gateway is shutting down; nothing was written", "method": name, "written": false});
            let _ = io
                .link
                .respond_method(&rid, iothub_proto::Status::SERVICE_UNAVAILABLE, body)
                .await;
        }
    }
    while let Some(done) = flight.next().await {
        if let Done::Method {
            restore: Some((addr, r)),
        } = done
        {
            restores.insert(addr, r);
        }
    }
    for (addr, r) in std::mem::take(&mut restores) {
        Box::pin(method::restore(&door, &io, addr, r.restore)).await;
    }
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
/// values (400) are not retried. Each delay is drawn between half and all of its ceiling: the
/// doors of a line whose write failed together must not all retry at the same instant.
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
    const SCHEDULE: backoff::Policy = backoff::Policy {
        initial: Self::FIRST,
        max: Self::MAX,
        multiplier: 2,
        jitter: backoff::Jitter::UPPER_HALF,
    };

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
        for (name, value) in &outcome.failed_values {
            self.props.insert(name.clone(), value.clone());
            let av = outcome.acks.get(name).map(|a| a.av);
            self.version = self.version.max(av.unwrap_or(0));
            failed = true;
        }
        if self.props.is_empty() {
            *self = DesiredRetry::default();
            return;
        }
        if failed {
            self.failures += 1;
        }
        let delay = Self::SCHEDULE.delay(self.failures.saturating_sub(1), rand::random::<f64>());
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

    /// Acks as the gateway sends them; a 5xx ack's desired value travels in
    /// `failed_values` (its ack carries no value: none is known).
    fn outcome(acks: Value) -> DesiredOutcome {
        let mut out = DesiredOutcome::default();
        for (k, a) in acks.as_object().unwrap().clone() {
            let mut a: DesiredAck = serde_json::from_value(a).unwrap();
            if a.ac.is_server_error() {
                out.failed_values.insert(k.clone(), a.value.take().unwrap());
            }
            out.acks.insert(k, a);
        }
        out
    }

    #[test]
    fn failed_desired_values_are_retried_until_written_or_superseded() {
        let mut r = DesiredRetry::default();
        let patch = json!({"Building": 7, "Floor": 3, "$version": 4});
        let before = Instant::now();
        r.after(
            &patch,
            &outcome(json!({
                "Building": {"value": 7, "ac": 504, "av": 4, "ad": ""},
                "Floor": {"value": 3, "ac": 200, "av": 4, "ad": ""},
            })),
        );
        let at = r.at.expect("a retry is scheduled");
        assert!(
            at >= before + Duration::from_millis(500) && at <= Instant::now() + DesiredRetry::FIRST,
            "the first retry comes after half to all of a second"
        );
        let (again, v) = r.take();
        assert_eq!((again, v), (json!({"Building": 7}), 4));
        // Fails again: retried later, with a longer delay.
        r.after(
            &json!({"Building": 7}),
            &outcome(json!({"Building": {"value": 7, "ac": 503, "av": 4, "ad": ""}})),
        );
        assert_eq!(r.failures, 2);
        // A newer value supersedes it; an invalid one (400) is not retried.
        r.after(
            &json!({"Building": 1000, "$version": 5}),
            &outcome(json!({"Building": {"value": 1000, "ac": 400, "av": 5, "ad": ""}})),
        );
        assert!(r.at.is_none() && r.props.is_empty());
    }
}
