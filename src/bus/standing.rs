//! Standing polls: a door's poll cycle registered once with its bus, which then runs it on
//! its own timer instead of the door's poller asking every interval.
//!
//! Why the bus runs them: asked by the poller, every cycle of every door cost a timer of its
//! own, a wake-up of the poller, a channel pass to the bus, an answer back and a second
//! wake-up of the poller — for a door at rest, to learn that nothing changed. Here a bus
//! scans its doors: once per interval it queues every door's cycle, runs them back to back at
//! poll priority through the same queue rules as any poll (operator requests first between
//! reads, dead units refused, deadlines kept), and compares each door's replies with the ones
//! its poller last settled on: a door at rest costs its reads and a comparison, and its poller
//! sleeps. Only a cycle that differs (or failed) is handed to the poller, which decodes,
//! reports and stores events as before.
//!
//! One scan an interval rather than the doors spread over the interval: an operator request
//! waits for at most the read on the line either way (it goes first between reads), and a
//! line that rests between scans costs less per read than one woken for a few doors at a time
//! — on this project's benchmark VM, ten spread turns a second cost 35 % more CPU a read than one
//! scan (docs/BENCHMARKS.md, "One scan an interval"). It is also how Modbus masters are
//! commonly run: a channel scans its devices, then waits for the next scan.
//!
//! Backpressure is the old skip rule: a door whose previous cycle is still queued or on the
//! line, or whose poller has not taken the last cycle handed to it, skips a turn rather than
//! queueing reads nobody would read in time. On a line too slow for its doors' interval the
//! cycles late in a scan run out of time, unread or cut short; the next scan starts with the
//! first of them and goes on in that order, so the doors are served round robin and none
//! starves behind the same neighbours every time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex, MutexGuard, OnceLock,
};
use std::time::Duration;

use tokio::{sync::Notify, time::Instant};

use super::request::{BusError, Op, Priority, Reply};
use super::task::{Answer, CycleTo, Job, Work};

/// The results of one cycle: a result per read, in order.
pub type CycleResults = Vec<Result<Reply, BusError>>;

/// The first instant at or after `now` on the grid `origin + n × every`. Every bus counts
/// from one origin, so doors sharing an interval, whenever they were added, share its scans.
pub fn first_tick(origin: Instant, now: Instant, every: Duration) -> Instant {
    let every_ns = every.as_nanos().max(1);
    let since = now.saturating_duration_since(origin).as_nanos();
    let at = since.div_ceil(every_ns) * every_ns;
    origin + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

/// The instant every door's poll grid counts from.
pub fn poll_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// What a door asks its bus to poll.
#[derive(Debug)]
pub struct StandingPoll {
    pub unit: u8,
    /// The reads of one cycle, in order.
    pub ops: Arc<[Op]>,
    pub every: Duration,
    /// How long a cycle may take from its turn (at least `every`).
    pub budget: Duration,
    /// Whether cycles are worth running at first (see [`PollFeed::set_wanted`]).
    pub wanted: bool,
    /// Sees each cycle's time from its turn to its last answer.
    pub duration: prometheus::Histogram,
}

/// A standing poll, shared by its bus and its poller. What the bus looks at every turn sits
/// in this one allocation: a thousand doors' turns a second touch a thousand of these, and
/// each pointer more to follow was a cache miss more per door.
pub(crate) struct Slot {
    poll: StandingPoll,
    /// A cycle of this slot is queued or on the line.
    busy: AtomicBool,
    /// Readings would be received: the door's link is up, or it stores events.
    wanted: AtomicBool,
    /// The poller dropped its feed: the slot is dropped at its next turn.
    gone: AtomicBool,
    /// Its last cycle ran out of time (unsent, or cut short by its deadline): the next scan
    /// may start with it.
    missed: AtomicBool,
    state: Mutex<Settled>,
    /// Wakes the poller when a cycle is handed over, or the bus has stopped.
    ready: Notify,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("unit", &self.poll.unit)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Settled {
    /// The replies of the last cycle the poller found nothing in (see [`PollFeed::settle`]).
    replies: Option<Vec<Reply>>,
    /// When a cycle last had every read answered.
    last_ok: Option<Instant>,
    /// A cycle handed over and not yet taken (at most one: see the module docs).
    pending: Option<CycleResults>,
    /// The bus has stopped: no cycle will come.
    ended: bool,
    /// The vector of the last cycle found at rest, emptied, for the next cycle's results: a
    /// door at rest then costs no allocation of its own per cycle.
    spare: Option<CycleResults>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, Settled> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The poller is gone.
    pub(crate) fn closed(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// No cycle will come: the poller's feed ends.
    pub(crate) fn end(&self) {
        self.state().ended = true;
        self.ready.notify_one();
    }

    /// A cycle is over: note when every read answered, and hand the results to the poller
    /// unless they are the replies it settled on.
    /// `end` is the last read's end when the line knows it (else the clock is read).
    pub(crate) fn deliver(&self, mut results: CycleResults, turn: Instant, end: Option<Instant>) {
        self.busy.store(false, Ordering::Relaxed);
        let now = end.unwrap_or_else(Instant::now);
        // Out of time: a read never sent, or one cut short by the cycle's deadline (a failure
        // that ended at it). A read cut short fails as a timeout, so the error alone does not
        // tell; and that door would otherwise be the one cut short in every scan.
        let deadline = turn + self.poll.every.max(self.poll.budget);
        let missed = results.iter().any(|r| match r {
            Err(BusError::DeadlineExpired { .. }) => true,
            Err(_) => now >= deadline,
            Ok(_) => false,
        });
        self.missed.store(missed, Ordering::Relaxed);
        self.poll
            .duration
            .observe(now.saturating_duration_since(turn).as_secs_f64());
        let mut state = self.state();
        if results.iter().all(Result::is_ok) {
            state.last_ok = Some(now);
        }
        if at_rest(state.replies.as_deref(), &results) {
            results.clear();
            state.spare = Some(results);
            return;
        }
        // Whatever the poller makes of these, the replies settled before no longer describe
        // what it has reported.
        state.replies = None;
        // Taken already only if the poller fell behind since the turn began; it gets the
        // next one.
        if state.pending.is_none() {
            state.pending = Some(results);
            drop(state);
            self.ready.notify_one();
        }
    }
}

/// A cycle reading the very same bits and words as the settled one decodes to the very same
/// values: the door is at rest. A failed read never is (its connectivity is the poller's).
fn at_rest(settled: Option<&[Reply]>, results: &CycleResults) -> bool {
    settled.is_some_and(|settled| {
        settled.len() == results.len()
            && settled
                .iter()
                .zip(results)
                .all(|(s, r)| r.as_ref().is_ok_and(|r| r == s))
    })
}

/// The poller's side of a standing poll: the cycles that may hold something new. Dropping it
/// ends the standing poll.
#[derive(Debug)]
pub struct PollFeed {
    slot: Arc<Slot>,
}

impl Drop for PollFeed {
    fn drop(&mut self) {
        self.slot.gone.store(true, Ordering::Relaxed);
    }
}

impl PollFeed {
    /// The next cycle that differs from the settled replies (or failed); `None` once the bus
    /// has stopped.
    pub async fn next(&mut self) -> Option<CycleResults> {
        loop {
            {
                let mut state = self.slot.state();
                if let Some(results) = state.pending.take() {
                    return Some(results);
                }
                if state.ended {
                    return None;
                }
            }
            // A hand-over between the check and here leaves a permit: no wake-up is lost.
            self.slot.ready.notified().await;
        }
    }

    /// Nothing in `results` was left to report or store: cycles answering exactly these
    /// replies are not handed over any more. Ignored unless every read answered.
    pub fn settle(&self, results: CycleResults) {
        let replies = results.into_iter().collect::<Result<Vec<_>, _>>().ok();
        self.slot.state().replies = replies;
    }

    /// Hand over every cycle again (what was reported is in doubt: a patch failed).
    pub fn forget(&self) {
        self.slot.state().replies = None;
    }

    /// When a cycle last had every read answered.
    pub fn last_ok(&self) -> Option<Instant> {
        self.slot.state().last_ok
    }

    /// Whether cycles are worth running (told by the poller when its link goes up or down):
    /// readings nobody can receive would only load the line.
    pub fn set_wanted(&self, wanted: bool) {
        self.slot.wanted.store(wanted, Ordering::Relaxed);
    }
}

/// The standing polls of one bus sharing an interval: they share every scan, so a scan is one
/// entry in the schedule however many doors it starts.
struct Group {
    every: Duration,
    slots: Vec<Arc<Slot>>,
    /// The group has a turn booked.
    booked: bool,
}

/// The standing polls of one bus, by their next turn, and the cycles whose turn has come.
#[derive(Default)]
pub(crate) struct Schedule {
    groups: Vec<Group>,
    /// Booked turns: (instant, group index).
    turns: BTreeMap<(Instant, usize), ()>,
    /// Cycles due, in turn order; served at poll priority.
    pub(crate) ready: VecDeque<Job>,
}

impl Drop for Schedule {
    fn drop(&mut self) {
        for slot in self.groups.iter().flat_map(|g| &g.slots) {
            slot.end();
        }
    }
}

impl Schedule {
    /// A new standing poll; returns the poller's feed.
    pub(crate) fn slot(poll: StandingPoll) -> (Arc<Slot>, PollFeed) {
        let wanted = AtomicBool::new(poll.wanted);
        let slot = Arc::new(Slot {
            poll,
            busy: AtomicBool::new(false),
            wanted,
            gone: AtomicBool::new(false),
            missed: AtomicBool::new(false),
            state: Mutex::default(),
            ready: Notify::new(),
        });
        let feed = PollFeed {
            slot: Arc::clone(&slot),
        };
        (slot, feed)
    }

    pub(crate) fn add(&mut self, slot: Arc<Slot>, now: Instant) {
        let every = slot.poll.every;
        let i = match self.groups.iter().position(|g| g.every == every) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    every,
                    slots: Vec::new(),
                    booked: false,
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[i];
        group.slots.push(slot);
        if !group.booked {
            group.booked = true;
            let at = first_tick(poll_origin(), now, every);
            self.turns.insert((at, i), ());
        }
    }

    /// The next turn.
    pub(crate) fn next_turn(&self) -> Option<Instant> {
        self.turns.keys().next().map(|(at, _)| *at)
    }

    /// Queues the cycle of every slot whose turn has come (unless it skips: see the module
    /// docs) and books each group's next turn, the first on its grid after `now` — a bus that
    /// fell behind resumes on the grid rather than running late turns back to back. Returns
    /// how many cycles it queued.
    pub(crate) fn take_due(&mut self, now: Instant) -> usize {
        let mut queued = 0;
        while let Some(entry) = self.turns.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, i) = entry.remove_entry().0;
            let group = &mut self.groups[i];
            // One pass: a slot whose poller is gone is dropped where its turn is looked at.
            let scan_start = self.ready.len();
            // The first door (in scan order) whose last cycle ran out of time: its index among
            // the slots kept, and where its cycle goes (or would have gone) in the queue.
            let mut resume_at: Option<(usize, usize)> = None;
            let mut kept = 0;
            let ready = &mut self.ready;
            group.slots.retain(|slot| {
                if slot.closed() {
                    return false;
                }
                if resume_at.is_none() && slot.missed.load(Ordering::Relaxed) {
                    resume_at = Some((kept, ready.len()));
                }
                kept += 1;
                let p = &slot.poll;
                let skip = slot.busy.load(Ordering::Relaxed)
                    || !slot.wanted.load(Ordering::Relaxed)
                    || p.ops.is_empty();
                if skip {
                    return true;
                }
                let results = {
                    let mut state = slot.state();
                    if state.pending.is_some() {
                        return true;
                    }
                    state.spare.take()
                };
                slot.busy.store(true, Ordering::Relaxed);
                let job = Job {
                    unit: p.unit,
                    work: Work::Cycle {
                        ops: Arc::clone(&p.ops),
                        next: 0,
                    },
                    priority: Priority::Poll,
                    deadline: now + p.every.max(p.budget),
                    reply: Answer::Cycle {
                        results: results.unwrap_or_else(|| Vec::with_capacity(p.ops.len())),
                        to: CycleTo::Slot {
                            slot: Arc::clone(slot),
                            turn: now,
                        },
                    },
                };
                ready.push_back(job);
                queued += 1;
                true
            });
            // The scan resumes where the last one ran out of time, and the scans after it go
            // on in that order: round robin over the doors of a line too slow for them all.
            if let Some((slot, at)) = resume_at {
                self.ready.make_contiguous()[scan_start..].rotate_left(at - scan_start);
                group.slots.rotate_left(slot);
            }
            if group.slots.is_empty() {
                group.booked = false;
                continue;
            }
            let next = first_tick(poll_origin(), now + Duration::from_nanos(1), group.every);
            self.turns.insert((next, i), ());
        }
        queued
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.slots.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(every_ms: u64) -> StandingPoll {
        StandingPoll {
            unit: 1,
            ops: vec![Op::ReadCoils { addr: 0, count: 1 }].into(),
            every: Duration::from_millis(every_ms),
            budget: Duration::from_millis(every_ms),
            wanted: true,
            duration: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
                .unwrap(),
        }
    }

    impl PollFeed {
        fn try_next(&self) -> Option<CycleResults> {
            self.slot.state().pending.take()
        }
    }

    /// Runs the queued job's cycle to its end with `reply` for each read.
    fn finish(job: Job, reply: Result<Reply, BusError>) {
        let mut job = Some(job);
        while let Some(j) = job.take() {
            let reply = reply.clone().map_err(super::super::request::Failed::unsent);
            job = j.step(reply, Instant::now());
        }
    }

    #[test]
    fn a_cycle_is_at_rest_only_when_every_reply_equals_the_settled_ones() {
        let bits = || Reply::Bits(vec![true]);
        let words = |w: u16| Reply::Words(vec![w, 7]);
        let down = || {
            Err(BusError::DeadlineExpired {
                at: super::super::request::Target {
                    bus: "b".into(),
                    unit: 1,
                    function: "read_coils",
                    addr: 0,
                },
            })
        };
        assert!(
            !at_rest(None, &vec![Ok(bits()), Ok(words(1))]),
            "nothing settled yet"
        );
        let settled = [bits(), words(1)];
        let settled = Some(&settled[..]);
        assert!(at_rest(settled, &vec![Ok(bits()), Ok(words(1))]));
        assert!(
            !at_rest(settled, &vec![Ok(bits()), Ok(words(2))]),
            "a word moved"
        );
        assert!(!at_rest(
            settled,
            &vec![Ok(Reply::Bits(vec![false])), Ok(words(1))]
        ));
        assert!(!at_rest(settled, &vec![Ok(bits())]), "a block missing");
        assert!(
            !at_rest(settled, &vec![Ok(bits()), down()]),
            "a block failed"
        );
    }

    #[test]
    fn scans_fall_on_the_shared_grid() {
        let origin = Instant::now();
        let every = Duration::from_millis(1000);
        for (since_ms, want_ms) in [
            (0, 0),
            (1, 1000),
            (999, 1000),
            (1000, 1000),
            (86_400_250, 86_401_000),
        ] {
            let now = origin + Duration::from_millis(since_ms);
            let at = first_tick(origin, now, every);
            assert_eq!(
                at.duration_since(origin),
                Duration::from_millis(want_ms),
                "since {since_ms} ms"
            );
            assert!(at >= now && at < now + every);
        }
        // Doors of one interval added at different times share its scans.
        let a = first_tick(origin, origin + Duration::from_millis(10), every);
        let b = first_tick(origin, origin + Duration::from_millis(2_390), every);
        assert_eq!((b - a).as_millis() % 1000, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_queues_one_cycle_and_skips_while_it_runs_or_is_unwanted() {
        let mut s = Schedule::default();
        let (slot, mut feed) = Schedule::slot(poll(1000));
        let start = Instant::now();
        s.add(slot, start);
        let first = s.next_turn().unwrap();
        assert!(first >= start && first < start + Duration::from_secs(1));
        assert_eq!(s.take_due(first - Duration::from_millis(1)), 0, "not yet");
        assert_eq!(s.take_due(first), 1);
        assert_eq!(s.next_turn(), Some(first + Duration::from_secs(1)));
        // Its cycle has not ended by the next turn: that turn is skipped, not queued twice.
        assert_eq!(s.take_due(first + Duration::from_secs(1)), 0);
        let job = s.ready.pop_front().unwrap();
        assert_eq!(job.deadline, first + Duration::from_secs(1));
        finish(job, Ok(Reply::Bits(vec![true])));
        let got = feed.next().await.unwrap();
        assert_eq!(got, vec![Ok(Reply::Bits(vec![true]))]);
        assert!(feed.last_ok().is_some());
        // A bus that fell behind by several turns resumes on the grid with one cycle.
        let late = first + Duration::from_millis(4_500);
        assert_eq!(s.take_due(late), 1);
        assert_eq!(s.next_turn(), Some(first + Duration::from_secs(5)));
        finish(s.ready.pop_front().unwrap(), Ok(Reply::Bits(vec![false])));
        // Handed over and not taken yet: the poller is behind, the turn is skipped.
        assert_eq!(s.take_due(first + Duration::from_secs(5)), 0);
        assert_eq!(
            feed.next().await.unwrap(),
            vec![Ok(Reply::Bits(vec![false]))]
        );
        // Not wanted (the link is down and the door stores no events): nothing queued.
        feed.set_wanted(false);
        assert_eq!(s.take_due(first + Duration::from_secs(7)), 0);
        feed.set_wanted(true);
        assert_eq!(s.take_due(first + Duration::from_secs(8)), 1);
        s.ready.clear();
        // The poller is gone: the slot is dropped at its turn, and the group's turns end.
        drop(feed);
        assert_eq!(s.take_due(first + Duration::from_secs(9)), 0);
        assert_eq!(s.len(), 0);
        assert_eq!(s.next_turn(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn only_cycles_that_differ_from_the_settled_replies_reach_the_poller() {
        let mut s = Schedule::default();
        let (slot, mut feed) = Schedule::slot(poll(1000));
        let t0 = Instant::now();
        s.add(slot, t0);
        let mut turn = s.next_turn().unwrap();
        let mut run = |s: &mut Schedule, reply: Result<Reply, BusError>| {
            assert_eq!(s.take_due(turn), 1);
            turn += Duration::from_secs(1);
            finish(s.ready.pop_front().unwrap(), reply);
        };
        let locked = || Ok(Reply::Bits(vec![true]));
        let open = || Ok(Reply::Bits(vec![false]));
        run(&mut s, locked());
        let first = feed.next().await.unwrap();
        feed.settle(first);
        // The same replies: the poller is not woken.
        run(&mut s, locked());
        assert!(
            feed.try_next().is_none(),
            "a door at rest stays with the bus"
        );
        // A change reaches it, and so does the change back (the settled replies were
        // dropped when the change was handed over).
        run(&mut s, open());
        assert_eq!(feed.try_next().unwrap(), vec![open()]);
        run(&mut s, locked());
        assert_eq!(feed.try_next().unwrap(), vec![locked()]);
        // A failed read is never at rest, and clears nothing it should not.
        feed.settle(vec![locked()]);
        let down = Err(BusError::Shutdown {
            at: super::super::request::Target {
                bus: "b".into(),
                unit: 1,
                function: "read_coils",
                addr: 0,
            },
        });
        run(&mut s, down.clone());
        assert_eq!(feed.try_next().unwrap(), vec![down.clone()]);
        // Settling on a failed cycle settles nothing.
        feed.settle(vec![locked(), down.clone()]);
        run(&mut s, locked());
        assert_eq!(feed.try_next().unwrap(), vec![locked()]);
        // forget() hands everything over again (a reported patch failed).
        feed.settle(vec![locked()]);
        feed.forget();
        run(&mut s, locked());
        assert_eq!(feed.try_next().unwrap(), vec![locked()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_door_at_rest_reuses_its_cycle_vector() {
        let mut s = Schedule::default();
        let (slot, mut feed) = Schedule::slot(poll(1000));
        s.add(slot, Instant::now());
        let locked = || Ok(Reply::Bits(vec![true]));
        let turn = s.next_turn().unwrap();
        assert_eq!(s.take_due(turn), 1);
        finish(s.ready.pop_front().unwrap(), locked());
        let first = feed.next().await.unwrap();
        feed.settle(first);
        // At rest: the vector is kept, emptied, and the next cycle's results go into it.
        assert_eq!(s.take_due(turn + Duration::from_secs(1)), 1);
        finish(s.ready.pop_front().unwrap(), locked());
        assert!(feed.try_next().is_none());
        let spare = feed.slot.state().spare.as_ref().map(Vec::as_ptr);
        assert!(spare.is_some());
        assert_eq!(s.take_due(turn + Duration::from_secs(2)), 1);
        let job = s.ready.pop_front().unwrap();
        match &job.reply {
            Answer::Cycle { results, .. } => {
                assert_eq!(Some(results.as_ptr()), spare);
                assert!(results.is_empty());
            }
            Answer::One(_) => panic!("a standing poll's job answers a cycle"),
        }
        assert!(feed.slot.state().spare.is_none());
        // A cycle that differs goes to the poller with its vector: none is kept then.
        finish(job, Ok(Reply::Bits(vec![false])));
        assert_eq!(feed.try_next().unwrap(), vec![Ok(Reply::Bits(vec![false]))]);
        assert!(feed.slot.state().spare.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn doors_of_one_interval_share_a_scan_and_feeds_end_with_the_bus() {
        let mut s = Schedule::default();
        let mut feeds = Vec::new();
        let t0 = Instant::now();
        for _ in 0..50 {
            let (slot, feed) = Schedule::slot(poll(1000));
            s.add(slot, t0);
            feeds.push(feed);
        }
        // Another interval is a scan of its own.
        let (slot, slow) = Schedule::slot(StandingPoll {
            unit: 9,
            ..poll(5000)
        });
        s.add(slot, t0);
        feeds.push(slow);
        // One booked scan per interval, however many doors.
        assert_eq!(s.turns.len(), 2);
        assert_eq!(s.len(), 51);
        let first = s.next_turn().unwrap();
        let end = t0 + Duration::from_secs(1);
        let mut scans = 0;
        while let Some(turn) = s.next_turn().filter(|t| *t < end) {
            let before = s.ready.len();
            s.take_due(turn);
            // A scan queues its doors back to back, at one instant.
            assert!(s.ready.len() > before);
            assert!(s.ready.iter().skip(before).all(|j| match &j.reply {
                Answer::Cycle {
                    to: CycleTo::Slot { turn: t, .. },
                    ..
                } => *t == turn,
                _ => false,
            }));
            scans += 1;
        }
        assert!(scans <= 2 && first < end);
        let fast = s.ready.iter().filter(|j| j.unit == 1).count();
        assert_eq!(fast, 50, "every door's cycle once in the interval");
        s.ready.clear();
        drop(s);
        for feed in &mut feeds {
            assert_eq!(feed.next().await, None, "the bus stopped: the feed ends");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn doors_whose_cycle_ran_out_of_time_go_first_in_the_next_scan() {
        let mut s = Schedule::default();
        let mut feeds = Vec::new();
        let t0 = Instant::now();
        for unit in 1..=4 {
            let (slot, feed) = Schedule::slot(StandingPoll { unit, ..poll(1000) });
            s.add(slot, t0);
            feeds.push(feed);
        }
        let expired = |unit| {
            Err(BusError::DeadlineExpired {
                at: super::super::request::Target {
                    bus: "b".into(),
                    unit,
                    function: "read_coils",
                    addr: 0,
                },
            })
        };
        let mut turn = s.next_turn().unwrap();
        let mut scan = |s: &mut Schedule, answered: usize| {
            assert_eq!(s.take_due(turn), 4);
            turn += Duration::from_secs(1);
            let order: Vec<u8> = s.ready.iter().map(|j| j.unit).collect();
            // A line too slow for its doors: the first `answered` cycles run, the rest run
            // out of time in the queue.
            for (i, job) in s.ready.drain(..).enumerate() {
                let unit = job.unit;
                let reply = if i < answered {
                    Ok(Reply::Bits(vec![true]))
                } else {
                    expired(unit)
                };
                finish(job, reply);
            }
            for feed in &feeds {
                feed.try_next();
            }
            order
        };
        assert_eq!(scan(&mut s, 2), vec![1, 2, 3, 4]);
        // Doors 3 and 4 waited in vain: the scan resumes with door 3.
        assert_eq!(scan(&mut s, 3), vec![3, 4, 1, 2]);
        assert_eq!(scan(&mut s, 4), vec![2, 3, 4, 1]);
        // All served: the order stays where it got to.
        assert_eq!(scan(&mut s, 4), vec![2, 3, 4, 1]);
        drop(feeds);
    }
}
