//! The poller of one door: reads every reported point in coalesced block reads at poll
//! priority, decodes them, and sends one reported patch per cycle holding only what changed
//! (numbers beyond their deadband), plus a `connectivity` section when the bus's
//! reachability flips (and every 10 minutes while it holds, so `lastPoll` stays useful
//! without a patch every cycle).
//!
//! Points with `telemetry = true` are door events: each change (beyond its deadband) from
//! the value last stored is appended to the durable event store (`crate::events`), whether
//! or not the hub is reachable, so a door with event points is polled while its link is down
//! too. Their baseline is the store's last value, so a change made while the gateway was
//! down becomes an event at the first poll after it starts. Such doors also get an event
//! when their unit stops answering and when it answers again ([`REACHABLE_EVENT`]).

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DoorIo;
use crate::bus::plan::{plan_reads, BlockRead, Point, Table};
use crate::bus::standing::StandingPoll;
use crate::bus::Reply;
use crate::config::{Door, ReadTable, ReportedPoint};
use crate::events::DoorEvents;

const CONNECTIVITY_REFRESH: Duration = Duration::from_secs(600);
/// Each door refreshes within ±10 % of [`CONNECTIVITY_REFRESH`]: doors started together
/// would otherwise all send their refresh in the same second, a burst of a thousand patches
/// that leaves its buffers behind as resident memory (benchmark workload 3 saw +4.5 KB per
/// door at the 10-minute mark) and hits the hub's throttle at once.
const REFRESH_JITTER: f64 = 0.1;

fn table(t: ReadTable) -> Table {
    match t {
        ReadTable::Coil => Table::Coil,
        ReadTable::DiscreteInput => Table::DiscreteInput,
        ReadTable::Holding => Table::Holding,
        ReadTable::Input => Table::Input,
    }
}

/// The read plan of a door: its reported points and the blocks that cover them.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    names: Vec<String>,
    specs: Vec<ReportedPoint>,
    points: Vec<Point>,
    blocks: Vec<BlockRead>,
    /// The blocks' reads, shared with the bus task each cycle.
    ops: std::sync::Arc<[crate::bus::Op]>,
}

impl ReadPlan {
    pub fn new(door: &Door, max_gap: u16) -> Self {
        let (names, specs): (Vec<_>, Vec<_>) = door
            .reported
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .unzip();
        let points: Vec<Point> = specs
            .iter()
            .map(|p: &ReportedPoint| Point {
                kind: table(p.table),
                addr: p.address,
                count: match p.table {
                    ReadTable::Coil | ReadTable::DiscreteInput => 1,
                    _ => p.spec.register_count().max(1),
                },
            })
            .collect();
        let blocks = plan_reads(&points, max_gap);
        let ops = blocks.iter().map(BlockRead::op).collect();
        ReadPlan {
            names,
            specs,
            points,
            blocks,
            ops,
        }
    }

    pub fn blocks(&self) -> &[BlockRead] {
        &self.blocks
    }

    /// The plan of `door`, shared by every door with the same reported map (its profile's,
    /// unless overridden) and line gap: a plan holds the points' names and value specs
    /// (enum tables included), the same for a thousand doors of one model.
    pub fn shared(door: &Door, max_gap: u16) -> Arc<ReadPlan> {
        type Key = (usize, u16);
        type Plans = std::collections::HashMap<Key, (Weak<ReadPlan>, Weak<ReportedMap>)>;
        static SHARED: Mutex<Option<Plans>> = Mutex::new(None);
        let key = (Arc::as_ptr(&door.reported) as usize, max_gap);
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let plans = guard.get_or_insert_with(Default::default);
        if let Some((plan, map)) = plans.get(&key) {
            // The same map, not another one at a freed map's address.
            let same_map = map
                .upgrade()
                .is_some_and(|m| Arc::ptr_eq(&m, &door.reported));
            if let (true, Some(plan)) = (same_map, plan.upgrade()) {
                return plan;
            }
        }
        let plan = Arc::new(ReadPlan::new(door, max_gap));
        plans.retain(|_, (p, _)| p.strong_count() > 0);
        plans.insert(key, (Arc::downgrade(&plan), Arc::downgrade(&door.reported)));
        plan
    }
}

type ReportedMap = std::collections::BTreeMap<String, ReportedPoint>;

/// Result of reading every block once.
#[derive(Debug, Default)]
struct Cycle {
    values: Vec<(usize, Value)>,
    failures: usize,
    last_error: Option<String>,
}

/// The replies of a poll cycle, one per block in plan order.
type Replies = Vec<Result<Reply, crate::bus::BusError>>;

/// Decodes a cycle's replies into the values of its points.
fn decode(door: &Door, plan: &ReadPlan, results: &Replies) -> Cycle {
    let mut c = Cycle::default();
    for (block, result) in plan.blocks.iter().zip(results) {
        match result {
            Ok(reply) => {
                let fits = block.each_point(&plan.points, reply, |i, words| {
                    match plan.specs[i].spec.decode(words) {
                        Ok(v) => c.values.push((i, v)),
                        Err(e) => {
                            tracing::debug!(device = %door.device_id, point = %plan.names[i], error = %e, "undecodable value");
                        }
                    }
                });
                if !fits {
                    c.failures += 1;
                    c.last_error = Some("reply does not fit the block read".into());
                }
            }
            Err(e) => {
                c.failures += 1;
                c.last_error = Some(connectivity_error(e));
            }
        }
    }
    c
}

/// A bus error as `connectivity.error` reports it: stable while the cause is (a dead unit's
/// "next probe in …" would otherwise change the text, and so send a patch, every cycle).
fn connectivity_error(e: &crate::bus::BusError) -> String {
    match e {
        crate::bus::BusError::UnitDown { at, .. } => {
            format!("bus {}, unit {}: not answering", at.bus, at.unit)
        }
        other => other.to_string(),
    }
}

/// What the poller last got through to the hub.
#[derive(Debug, Default)]
struct Reported {
    values: Map<String, Value>,
    reachable: Option<bool>,
    connectivity_at: Option<Instant>,
    /// The `connectivity.error` last reported: a new error is reported when it appears.
    error: Option<String>,
    /// This door's connectivity refresh period.
    refresh: Duration,
    /// A refresh that found the link down waits a whole period again from then.
    refresh_held_until: Option<Instant>,
}

impl Reported {
    /// When the periodic connectivity refresh is due: a period after the last one the hub
    /// took; never before connectivity was first reported (the first cycle does that).
    fn refresh_at(&self) -> Option<Instant> {
        let at = self.connectivity_at? + self.refresh;
        Some(self.refresh_held_until.map_or(at, |held| at.max(held)))
    }

    /// The refresh of a door whose cycles have nothing new: the connectivity last reported,
    /// with the current `lastPoll`.
    fn refresh_patch(&self, last_ok: Option<Instant>, now: Instant) -> Map<String, Value> {
        let mut patch = Map::new();
        let reachable = self.reachable.unwrap_or(true);
        patch.insert(
            "connectivity".into(),
            connectivity(reachable, last_ok, &self.error, now),
        );
        patch
    }
}

/// The reported `connectivity` section. `last_ok` is when a cycle last had every read
/// answered (a clock reading: the wall-clock time is worked out only when it is reported).
fn connectivity(
    reachable: bool,
    last_ok: Option<Instant>,
    error: &Option<String>,
    now: Instant,
) -> Value {
    json!({
        "busReachable": reachable,
        "lastPoll": last_ok.map(|t| wall_clock(t, now).to_rfc3339()),
        "error": error,
    })
}

/// Builds the reported patch of a cycle: changed values and, when due, connectivity.
fn diff(
    plan: &ReadPlan,
    state: &Reported,
    cycle: &Cycle,
    last_ok: Option<Instant>,
    now: Instant,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (i, v) in &cycle.values {
        let (name, p) = (&plan.names[*i], &plan.specs[*i]);
        let report = match state.values.get(name) {
            None => true,
            Some(old) => p.spec.changed(old, v, p.deadband),
        };
        if report {
            patch.insert(name.clone(), v.clone());
        }
    }
    let reachable = cycle.failures < plan.blocks.len() || plan.blocks.is_empty();
    let due = state.reachable != Some(reachable)
        || state.error != cycle.last_error
        || state
            .connectivity_at
            .is_none_or(|t| now.duration_since(t) >= state.refresh);
    if due {
        patch.insert(
            "connectivity".into(),
            connectivity(reachable, last_ok, &cycle.last_error, now),
        );
    }
    patch
}

/// The wall-clock time of `at`, an instant `now` or before it.
fn wall_clock(at: Instant, now: Instant) -> DateTime<Utc> {
    let ago = chrono::Duration::from_std(now.saturating_duration_since(at)).unwrap_or_default();
    Utc::now() - ago
}

/// The gateway's own door event: the door's unit stopped answering every read of a cycle
/// (`false`) or answers again (`true`). Only for doors with event points (a door without
/// any costs no disk writes); `$` keeps it apart from map names, which cannot hold one.
pub const REACHABLE_EVENT: &str = "$unitReachable";

/// How long a poller waits for its events to be on disk (normally one `commit_interval`
/// plus an fsync).
const APPEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The event points whose value differs from `seen` (or were never seen), in plan order.
fn event_changes(
    plan: &ReadPlan,
    seen: &Map<String, Value>,
    cycle: &Cycle,
) -> Vec<(String, Value)> {
    cycle
        .values
        .iter()
        .filter(|(i, _)| plan.specs[*i].telemetry)
        .filter(|(i, v)| {
            let p = &plan.specs[*i];
            seen.get(&plan.names[*i])
                .is_none_or(|old| p.spec.changed(old, v, p.deadband))
        })
        .map(|(i, v)| (plan.names[*i].clone(), v.clone()))
        .collect()
}

/// Stores a cycle's events; if the store cannot take them they go out live (at most once,
/// only if the link is up) and are counted as dropped. Either way they become the baseline:
/// a refused event is not raised again every cycle.
async fn record_events(
    door: &Door,
    io: &DoorIo,
    events: Option<&DoorEvents>,
    seen: &mut Map<String, Value>,
    changes: Vec<(String, Value)>,
) {
    let stored = match events {
        Some(e) => match tokio::time::timeout(APPEND_TIMEOUT, e.append(changes.clone())).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            // A stalled disk must not stall the door's reported properties; should the
            // commit still land, the event is both live and stored (a duplicate by seq).
            Err(_) => Err(format!("not stored within {APPEND_TIMEOUT:?}")),
        },
        None => Err("no event store".to_string()),
    };
    if let Err(error) = stored {
        io.metrics
            .events_dropped
            .with_label_values(&["store_error"])
            .inc_by(changes.len() as u64);
        tracing::warn!(device = %door.device_id, error = %error, events = changes.len(), "door events not stored; sending them live if the link is up");
        if io.link.is_connected() {
            for (point, value) in &changes {
                let body = json!({"point": point, "value": value, "at": Utc::now().to_rfc3339()});
                if let Err(e) = io.link.send_telemetry(body).await {
                    tracing::warn!(device = %door.device_id, error = %e, "live door event not sent");
                }
            }
        }
    }
    seen.extend(changes);
}

/// Polls until `shutdown`: the door's cycles are a standing poll of its bus, which runs them
/// in its scan of the door's interval and hands over only those that differ from the last
/// cycle this poller found nothing in (`crate::bus::standing`). Changes of event points go to
/// `events` (the door's part of the event store).
pub async fn run(
    door: Arc<Door>,
    io: DoorIo,
    max_gap: u16,
    events: Option<DoorEvents>,
    shutdown: CancellationToken,
) {
    let plan = ReadPlan::shared(&door, max_gap);
    if plan.blocks.is_empty() {
        return;
    }
    let has_events = plan.specs.iter().any(|p| p.telemetry);
    let store_events = has_events && events.is_some();
    // Told to the bus when the link goes up or down, not asked by it at every turn.
    let mut link_state = io.link.watch_state();
    let wanted = |up: bool| store_events || up;
    let mut feed = io.bus.stand(StandingPoll {
        unit: door.unit,
        ops: Arc::clone(&plan.ops),
        every: door.poll_interval,
        budget: io.op_budget,
        // Readings nobody can receive would only load the line; events are stored for later.
        wanted: wanted(io.link.is_connected()),
        duration: io
            .metrics
            .poll_cycle_duration
            .with_label_values(&[io.bus.name()]),
    });
    let mut state = Reported {
        refresh: CONNECTIVITY_REFRESH
            .mul_f64(1.0 + REFRESH_JITTER * (2.0 * rand::random::<f64>() - 1.0)),
        ..Reported::default()
    };
    let mut seen = events
        .as_ref()
        .map(DoorEvents::last_values)
        .unwrap_or_default();
    // At most one reported patch waits on the link at a time, beside the cycles rather than
    // in them: while the hub is unreachable a patch can wait up to the link's `op_timeout`,
    // and the cycles meanwhile must go on storing door events (a door forced open during a
    // hub outage is on disk within a poll interval, not after the patch gives up).
    let mut in_flight: Option<PatchFuture> = None;
    // Made once: a fresh `cancelled()` each cycle locks the token and registers and drops a
    // waiter every time.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let refresh_at = state.refresh_at();
        let results = tokio::select! {
            biased;
            () = &mut cancelled => return,
            done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                if !done.apply(&door, &io, &mut state) {
                    // What the hub holds is in doubt: the next cycle is looked at in full.
                    feed.forget();
                }
                continue;
            }
            Ok(()) = link_state.changed(), if !store_events => {
                feed.set_wanted(wanted(io.link.is_connected()));
                continue;
            }
            results = feed.next() => match results {
                Some(results) => results,
                None => return,
            },
            // A door at rest: its cycles stay with the bus, so the periodic connectivity
            // refresh (`lastPoll`) is sent from here.
            () = super::sleep_until_opt(refresh_at), if in_flight.is_none() => {
                let now = Instant::now();
                if io.link.is_connected() {
                    let patch = state.refresh_patch(feed.last_ok(), now);
                    let reachable = state.reachable.unwrap_or(true);
                    in_flight = Some(send_patch(&io, patch, state.error.clone(), reachable, now));
                } else {
                    state.refresh_held_until = Some(now + state.refresh);
                }
                continue;
            }
        };
        let cycle = decode(&door, &plan, &results);
        let mut stored = false;
        if has_events {
            let mut changes = event_changes(&plan, &seen, &cycle);
            // The unit taken as answering until seen otherwise: only a change is an event.
            let reachable = cycle.failures < plan.blocks.len();
            let was = seen
                .get(REACHABLE_EVENT)
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if reachable != was {
                changes.push((REACHABLE_EVENT.to_string(), Value::Bool(reachable)));
            }
            if !changes.is_empty() {
                stored = true;
                record_events(&door, &io, events.as_ref(), &mut seen, changes).await;
            }
        }
        // Nothing is settled while a patch waits or the link is down: the cycles go on
        // coming here, and the first one after decides what the next patch holds.
        if !io.link.is_connected() || in_flight.is_some() {
            continue;
        }
        let now = Instant::now();
        let patch = diff(&plan, &state, &cycle, feed.last_ok(), now);
        let reports_values = patch.keys().any(|k| k != "connectivity");
        if !(stored || reports_values || cycle.failures > 0) {
            feed.settle(results);
        }
        if patch.is_empty() {
            continue;
        }
        let reachable = cycle.failures < plan.blocks.len();
        in_flight = Some(send_patch(&io, patch, cycle.last_error, reachable, now));
    }
}

type PatchFuture = std::pin::Pin<Box<dyn Future<Output = PatchDone> + Send>>;

/// Sends `patch` and remembers what the cycle that built it saw.
fn send_patch(
    io: &DoorIo,
    patch: Map<String, Value>,
    error: Option<String>,
    reachable: bool,
    at: Instant,
) -> PatchFuture {
    let link = io.link.clone();
    Box::pin(async move {
        let result = link.patch_reported(Value::Object(patch.clone())).await;
        PatchDone {
            patch,
            result,
            error,
            reachable,
            at,
        }
    })
}

/// A reported patch the link has answered, with what the cycle that built it saw.
struct PatchDone {
    patch: Map<String, Value>,
    result: Result<u64, crate::link::LinkError>,
    error: Option<String>,
    reachable: bool,
    at: Instant,
}

impl PatchDone {
    /// Whether the hub took the patch.
    fn apply(self, door: &Door, io: &DoorIo, state: &mut Reported) -> bool {
        match self.result {
            Ok(_) => {
                io.metrics.reported_patches.with_label_values(&["ok"]).inc();
                let has_connectivity = self.patch.contains_key("connectivity");
                for (k, v) in self.patch {
                    if k != "connectivity" {
                        state.values.insert(k, v);
                    }
                }
                if has_connectivity {
                    state.error = self.error;
                    state.reachable = Some(self.reachable);
                    state.connectivity_at = Some(self.at);
                }
                true
            }
            Err(e) => {
                // Not marked as reported: the next cycle sends it again.
                io.metrics
                    .reported_patches
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(device = %door.device_id, error = %e, "reported patch failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(read_gap: u16) -> (Door, u16) {
        let text = format!(
            r#"
[hub]
hostname = "h"
[[bus]]
name = "b"
tcp = "127.0.0.1:502"
read_gap = {read_gap}
[profile.p.reported.state]
source = "input"
address = 0
[profile.p.reported.battery]
source = "input"
address = 1
scale = 0.01
[profile.p.reported.events]
source = "input"
address = 2
type = "u32"
[profile.p.reported.mode]
source = "input"
address = 10
[profile.p.reported.locked]
source = "coil"
address = 0
[profile.p.reported.alarm]
source = "coil"
address = 1
[[door]]
device_id = "d"
bus = "b"
unit = 1
profile = "p"
key = "a2V5"
"#
        );
        let cfg = crate::config::parse(&text, "t.toml").unwrap();
        (cfg.doors[0].clone(), cfg.buses[0].read_gap)
    }

    #[test]
    fn doors_of_one_profile_share_their_read_plan() {
        let text = r#"
[hub]
hostname = "h"
[[bus]]
name = "b"
tcp = "127.0.0.1:502"
[profile.p.reported.state]
source = "input"
address = 0
[[door]]
device_id = "d1"
bus = "b"
unit = 1
profile = "p"
key = "a2V5"
[[door]]
device_id = "d2"
bus = "b"
unit = 2
profile = "p"
key = "a2V5"
"#;
        let cfg = crate::config::parse(text, "t.toml").unwrap();
        let (d1, d2) = (&cfg.doors[0], &cfg.doors[1]);
        let a = ReadPlan::shared(d1, 0);
        let b = ReadPlan::shared(d2, 0);
        assert!(Arc::ptr_eq(&a, &b), "one plan for both doors");
        let other_gap = ReadPlan::shared(d1, 5);
        assert!(
            !Arc::ptr_eq(&a, &other_gap),
            "a line's gap changes the plan"
        );
        drop((a, b, other_gap));
        // Gone with its last door: a reload's new map gets a plan of its own.
        let again = ReadPlan::shared(d1, 0);
        assert_eq!(Arc::strong_count(&again), 1);
    }

    #[test]
    fn contiguous_points_share_a_block_and_gaps_follow_the_bus_setting() {
        let (d, gap) = door(0);
        let plan = ReadPlan::new(&d, gap);
        let blocks: Vec<(Table, u16, u16)> = plan
            .blocks()
            .iter()
            .map(|b| (b.table, b.addr, b.count))
            .collect();
        assert_eq!(
            blocks,
            vec![
                (Table::Coil, 0, 2),
                (Table::Input, 0, 4),
                (Table::Input, 10, 1)
            ],
            "input 0, 1 and 2-3 coalesce; 10 stands alone without a gap allowance"
        );
        let (d, gap) = door(6);
        let plan = ReadPlan::new(&d, gap);
        assert_eq!(
            plan.blocks().len(),
            2,
            "read_gap 6 reads inputs 0-10 in one block"
        );
    }

    #[test]
    fn connectivity_follows_the_current_error_not_the_first() {
        let (d, gap) = door(0);
        let plan = ReadPlan::new(&d, gap);
        let now = Instant::now();
        let failing = |e: &str| Cycle {
            values: Vec::new(),
            failures: 1,
            last_error: Some(e.to_string()),
        };
        let mut state = Reported {
            reachable: Some(true),
            connectivity_at: Some(now),
            refresh: Duration::from_secs(600),
            ..Reported::default()
        };
        let patch = diff(
            &plan,
            &state,
            &failing("bus b, unit 1: not answering"),
            None,
            now,
        );
        assert_eq!(
            patch["connectivity"]["error"], "bus b, unit 1: not answering",
            "a new error is reported at once"
        );
        state.error = Some("bus b, unit 1: not answering".into());
        let patch = diff(
            &plan,
            &state,
            &failing("bus b, unit 1: not answering"),
            None,
            now,
        );
        assert!(
            patch.is_empty(),
            "the same error is not sent again: {patch:?}"
        );
        let patch = diff(
            &plan,
            &state,
            &failing("bus b: bus unavailable: refused"),
            None,
            now,
        );
        assert_eq!(
            patch["connectivity"]["error"],
            "bus b: bus unavailable: refused"
        );
        // A dead unit's error text does not change with its backoff.
        let at = crate::bus::Target {
            bus: "b".into(),
            unit: 1,
            function: "read_coils",
            addr: 0,
        };
        let e = |ms| crate::bus::BusError::UnitDown {
            at: at.clone(),
            next_probe_in: Some(Duration::from_millis(ms)),
        };
        assert_eq!(connectivity_error(&e(10)), connectivity_error(&e(900)));
    }

    #[test]
    fn a_door_at_rest_refreshes_its_connectivity_a_period_after_the_last_report() {
        let now = Instant::now();
        let period = Duration::from_secs(600);
        let mut state = Reported {
            refresh: period,
            ..Reported::default()
        };
        assert_eq!(state.refresh_at(), None, "the first cycle reports it");
        state.connectivity_at = Some(now);
        state.reachable = Some(true);
        assert_eq!(state.refresh_at(), Some(now + period));
        // Found the link down when due: a whole period again from then, not every wake-up.
        let due = now + period;
        state.refresh_held_until = Some(due + period);
        assert_eq!(state.refresh_at(), Some(due + period));
        // A report sent meanwhile (a cycle with news) counts from itself.
        state.connectivity_at = Some(due + 2 * period);
        assert_eq!(state.refresh_at(), Some(due + 3 * period));

        // What it holds: the last reported state, with the latest answered cycle's time.
        state.error = Some("bus b, unit 1: not answering".into());
        state.reachable = Some(false);
        let last_ok = now + Duration::from_secs(5);
        let patch = state.refresh_patch(Some(last_ok), now + Duration::from_secs(65));
        let c = &patch["connectivity"];
        assert_eq!(c["busReachable"], false);
        assert_eq!(c["error"], "bus b, unit 1: not answering");
        let polled: DateTime<Utc> = c["lastPoll"].as_str().unwrap().parse().unwrap();
        let ago = Utc::now() - polled;
        assert!(
            (59..=61).contains(&ago.num_seconds()),
            "lastPoll is the answered cycle's time, a minute before the refresh: {ago}"
        );
        assert_eq!(patch.len(), 1, "no values: they are unchanged");
    }
}
