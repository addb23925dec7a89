//! The task that owns one bus connection and serves queued requests one at a time.
//!
//! Invariants:
//! - Operator requests go before polls, and among themselves round robin over units
//!   ([`OperatorQueue`]): a burst to one door waits behind the others' requests, not ahead.
//! - Operator requests are taken off their channel while a transaction is on the line, so
//!   one to a unit that stopped answering is refused at once ([`BusError::UnitDown`]) and one
//!   whose time runs out while queued is answered at that moment, never written later.
//! - A dead unit costs the line at most one probe at a time, and only when its backoff
//!   allows: the first request to it after the backoff is the probe.
//! - A write with read-back is one job: nothing else goes on the line between the two.
//! - A write is never started unless the whole job fits before its deadline (see
//!   [`Job::start_by`]), and never repeated blindly (see [`Line::run_verified`]).
//! - Cancellation is only acted on between jobs, so a write in flight is never cut off.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus::IntGauge;
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::{sleep_until, timeout, Instant},
};
use tokio_modbus::client::{Client as _, Context};
use tokio_util::sync::CancellationToken;

use super::{
    backoff::{Backoff, UnitHealthMap, DEAD_AFTER_TIMEOUTS},
    options::BusOptions,
    request::{BusError, Failed, Op, Priority, Reply, Target, Written},
    standing::{Schedule, Slot},
    transport::{self, TransactError},
};
use crate::metrics::Metrics;

/// First wait before reopening a failed connection; doubles up to `reconnect_backoff_max`.
const RECONNECT_BASE: Duration = Duration::from_millis(100);

/// What a job does on the line.
#[derive(Debug)]
pub(crate) enum Work {
    /// One transaction (a read, or a write without read-back).
    Op(Op),
    /// A write and the read of the written range, back to back.
    Verified(Op),
    /// A door's poll cycle: its reads one after the other, `next` the one on turn. One job
    /// and one answer per cycle rather than per read (each hop between the poller and the bus
    /// task costs two task wake-ups, a channel pass and an allocation); between two reads the
    /// line still serves waiting operator requests first, and a unit that died on one read is
    /// not asked the others.
    Cycle { ops: Arc<[Op]>, next: usize },
}

impl Work {
    pub(crate) fn op(&self) -> &Op {
        match self {
            Work::Op(op) | Work::Verified(op) => op,
            Work::Cycle { ops, next } => &ops[*next],
        }
    }
}

/// Where a job's answer goes.
#[derive(Debug)]
pub(crate) enum Answer {
    One(oneshot::Sender<Result<Reply, Failed>>),
    /// A poll cycle's results, one per read in order, sent once all are known.
    Cycle {
        results: Vec<Result<Reply, BusError>>,
        to: CycleTo,
    },
}

/// Who gets a poll cycle's results.
#[derive(Debug)]
pub(crate) enum CycleTo {
    /// A caller of [`super::BusHandle::poll_cycle`].
    Caller(oneshot::Sender<Vec<Result<Reply, BusError>>>),
    /// A standing poll, whose turn came at `turn`.
    Slot {
        slot: Arc<super::standing::Slot>,
        turn: Instant,
    },
}

/// A queued request with the channel its answer goes back on.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) unit: u8,
    pub(crate) work: Work,
    pub(crate) priority: Priority,
    pub(crate) deadline: Instant,
    pub(crate) reply: Answer,
}

impl Job {
    /// The last moment the job may start. A read may start any time before its deadline (it
    /// is cut short by it). A write must fit whole: a write cut off by the deadline leaves
    /// its outcome unknown, so it starts only with a full transaction timeout and the line's
    /// pause left. Its read-back gets what remains (a unit that just echoed a write answers
    /// in milliseconds); a read-back cut short reports the write as done but unproven.
    fn start_by(&self, t: Timing) -> Instant {
        if !self.work.op().is_write() {
            return self.deadline;
        }
        let need = t.timeout + t.inter_request_delay;
        self.deadline.checked_sub(need).unwrap_or(self.deadline)
    }

    /// Answers the job; a cycle's read on turn and every read after it get `result`.
    fn answer(self, result: Result<Reply, Failed>) {
        self.finish(result, None);
    }

    /// [`Job::answer`], `end` being when its last transaction ended if one ran.
    fn finish(self, result: Result<Reply, Failed>, end: Option<Instant>) {
        // The caller may have given up; nothing to do then.
        match self.reply {
            Answer::One(tx) => {
                let _ = tx.send(result);
            }
            Answer::Cycle { mut results, to } => {
                let left = match &self.work {
                    Work::Cycle { ops, next } => ops.len().saturating_sub(*next),
                    _ => 1,
                };
                let result = result.map_err(|f| f.error);
                results.extend(std::iter::repeat_n(result, left));
                match to {
                    CycleTo::Caller(tx) => {
                        let _ = tx.send(results);
                    }
                    CycleTo::Slot { slot, turn } => slot.deliver(results, turn, end),
                }
            }
        }
    }

    /// After one read of a cycle (which ended at `end`): the job again with the next read on
    /// turn, or `None` once the cycle is answered.
    pub(crate) fn step(mut self, result: Result<Reply, Failed>, end: Instant) -> Option<Job> {
        if let (Work::Cycle { ops, next }, Answer::Cycle { results, .. }) =
            (&mut self.work, &mut self.reply)
        {
            if *next + 1 < ops.len() {
                results.push(result.map_err(|f| f.error));
                *next += 1;
                return Some(self);
            }
        }
        self.finish(result, Some(end));
        None
    }

    /// The caller stopped waiting.
    fn caller_gone(&self) -> bool {
        match &self.reply {
            Answer::One(tx) => tx.is_closed(),
            Answer::Cycle {
                to: CycleTo::Caller(tx),
                ..
            } => tx.is_closed(),
            Answer::Cycle {
                to: CycleTo::Slot { slot, .. },
                ..
            } => slot.closed(),
        }
    }
}

/// The bus settings that decide whether a job can still start in time.
#[derive(Debug, Clone, Copy)]
struct Timing {
    timeout: Duration,
    inter_request_delay: Duration,
}

impl Timing {
    fn of(opts: &BusOptions) -> Self {
        Timing {
            timeout: opts.timeout,
            inter_request_delay: opts.inter_request_delay,
        }
    }
}

/// Operator requests waiting for the line, one FIFO per unit, served round robin.
#[derive(Debug)]
struct OperatorQueue {
    units: BTreeMap<u8, VecDeque<Job>>,
    len: usize,
    capacity: usize,
    /// The unit served last; the next turn goes to the next unit after it.
    last: Option<u8>,
    /// `len`, readable by the job on the line (a failing poll gives up its retries to a
    /// waiting operator request).
    waiting: Arc<AtomicUsize>,
}

impl OperatorQueue {
    fn new(capacity: usize) -> Self {
        OperatorQueue {
            units: BTreeMap::new(),
            len: 0,
            capacity,
            last: None,
            waiting: Arc::default(),
        }
    }

    fn has_room(&self) -> bool {
        self.len < self.capacity
    }

    fn set_len(&mut self, len: usize) {
        self.len = len;
        self.waiting.store(len, Ordering::Relaxed);
    }

    fn push(&mut self, job: Job) {
        self.units.entry(job.unit).or_default().push_back(job);
        self.set_len(self.len + 1);
    }

    /// The next unit's oldest request, round robin from the unit served last.
    fn pop(&mut self) -> Option<Job> {
        let unit = match self.last {
            Some(last) => self
                .units
                .range(last.saturating_add(1)..)
                .next()
                .filter(|_| last < u8::MAX)
                .or_else(|| self.units.iter().next())
                .map(|(u, _)| *u)?,
            None => *self.units.keys().next()?,
        };
        let queue = self.units.get_mut(&unit)?;
        let job = queue.pop_front()?;
        if queue.is_empty() {
            self.units.remove(&unit);
        }
        self.last = Some(unit);
        self.set_len(self.len - 1);
        Some(job)
    }

    /// Every request to `unit`.
    fn take_unit(&mut self, unit: u8) -> VecDeque<Job> {
        let jobs = self.units.remove(&unit).unwrap_or_default();
        self.set_len(self.len - jobs.len());
        jobs
    }

    /// Requests that can no longer start in time, or whose caller gave up.
    fn take_expired(&mut self, now: Instant, t: Timing) -> Vec<Job> {
        let mut out = Vec::new();
        for queue in self.units.values_mut() {
            let mut i = 0;
            while i < queue.len() {
                if queue[i].start_by(t) <= now || queue[i].caller_gone() {
                    out.extend(queue.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.units.retain(|_, q| !q.is_empty());
        self.set_len(self.len - out.len());
        out
    }

    /// When the next queued request runs out of time to start.
    fn next_expiry(&self, t: Timing) -> Option<Instant> {
        self.units.values().flatten().map(|j| j.start_by(t)).min()
    }

    fn drain(&mut self) -> Vec<Job> {
        let out: Vec<Job> = std::mem::take(&mut self.units)
            .into_values()
            .flatten()
            .collect();
        self.set_len(0);
        out
    }
}

/// What one job did to its unit's health: answers reset it, timeouts count towards dead.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    answered: bool,
    /// Timeouts since the last answer (or the job's start).
    timeouts: u32,
}

/// The connection and what only the job on the line touches.
struct Line {
    opts: BusOptions,
    name: Arc<str>,
    metrics: Arc<Metrics>,
    ctx: Option<Context>,
    next_connect_at: Instant,
    /// The line waits, closed, until `next_connect_at` for frames still in flight to pass
    /// ([`Line::settle_time`]); a transaction waits for it rather than being skipped.
    settling: bool,
    connect_backoff: Backoff,
    last_connect_error: String,
    last_end: Option<Instant>,
    connected: watch::Sender<bool>,
    status: watch::Sender<super::BusStatus>,
    doors: super::DoorNames,
    handles: MetricHandles,
}

/// This bus's request counters and duration histograms, by function and result, looked up
/// once: `with_label_values` hashes and compares the labels on every call, twice a
/// transaction otherwise.
#[derive(Default)]
struct MetricHandles {
    counters: Vec<((&'static str, &'static str), prometheus::IntCounter)>,
    durations: Vec<(&'static str, prometheus::Histogram)>,
}

impl MetricHandles {
    fn count(
        &mut self,
        metrics: &Metrics,
        bus: &str,
        function: &'static str,
        result: &'static str,
    ) {
        // Looked up by the literals' addresses alone: comparing the text cost a `memcmp` per
        // entry whenever two copies of one literal differ in address (1.7 % of the gateway's
        // profile in workload 8). A second copy gets an entry of its own holding the same
        // counter (`with_label_values` returns the one series), so the count stays right.
        let same = |k: &(&str, &str)| std::ptr::eq(k.0, function) && std::ptr::eq(k.1, result);
        let found = self.counters.iter().find(|(k, _)| same(k));
        match found {
            Some((_, c)) => c.inc(),
            None => {
                let c = metrics
                    .modbus_requests
                    .with_label_values(&[bus, function, result]);
                c.inc();
                self.counters.push(((function, result), c));
            }
        }
    }

    fn duration(
        &mut self,
        metrics: &Metrics,
        bus: &str,
        function: &'static str,
    ) -> &prometheus::Histogram {
        let found = self
            .durations
            .iter()
            .position(|(f, _)| std::ptr::eq(*f, function));
        let i = match found {
            Some(i) => i,
            None => {
                let h = metrics
                    .modbus_request_duration
                    .with_label_values(&[bus, function]);
                self.durations.push((function, h));
                self.durations.len() - 1
            }
        };
        &self.durations[i].1
    }
}

/// One transaction's outcome, before it is turned into an answer.
enum Tx {
    Reply(Reply),
    Exception(tokio_modbus::ExceptionCode),
    BadReply(String),
    /// No answer in time; `after` is how long it waited.
    Timeout {
        after: Duration,
    },
    /// The connection failed during the exchange.
    Broken(String),
    /// Not sent: no connection (and reopening is backed off, or failed).
    NotConnected(String),
    /// Not sent: the deadline leaves no time.
    NoTime,
}

pub(crate) struct BusTask {
    name: Arc<str>,
    timing: Timing,
    metrics: Arc<Metrics>,
    line: Line,
    queue: OperatorQueue,
    health: UnitHealthMap,
    queue_depth: IntGauge,
    /// A poll cycle between two of its reads: it goes on once no operator request waits.
    resume: Option<Job>,
    /// Doors' standing polls and the cycles due.
    schedule: Schedule,
}

/// What woke an idle bus task.
enum Wake {
    Stop,
    Operator(Job),
    Poll(Job),
    Stand(Arc<Slot>),
    Turn,
    Connect,
    Timer,
}

impl BusTask {
    pub(crate) fn new(
        opts: BusOptions,
        operator_capacity: usize,
        metrics: Arc<Metrics>,
        queue_depth: IntGauge,
        (connected, status): (watch::Sender<bool>, watch::Sender<super::BusStatus>),
        doors: super::DoorNames,
    ) -> Self {
        BusTask {
            name: opts.name.as_str().into(),
            timing: Timing::of(&opts),
            metrics: Arc::clone(&metrics),
            queue: OperatorQueue::new(operator_capacity),
            health: UnitHealthMap::new(opts.dead_unit_backoff_max),
            line: Line {
                name: opts.name.as_str().into(),
                connect_backoff: Backoff::new(RECONNECT_BASE, opts.reconnect_backoff_max),
                opts,
                metrics,
                ctx: None,
                next_connect_at: Instant::now(),
                settling: false,
                last_connect_error: "not connected yet".into(),
                last_end: None,
                connected,
                status,
                doors,
                handles: MetricHandles::default(),
            },
            queue_depth,
            resume: None,
            schedule: Schedule::default(),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut operator_rx: mpsc::Receiver<Job>,
        mut poll_rx: mpsc::Receiver<Job>,
        mut standing_rx: mpsc::UnboundedReceiver<Arc<Slot>>,
        shutdown: CancellationToken,
    ) {
        loop {
            // Once per job, not per wake-up of the job on the line nor before the next read
            // of a cycle (one job) when nothing else waits: the token takes a lock each time
            // it is asked. Shutdown never cuts a transaction short; the line's work finishes
            // first, then what is queued is answered below.
            let resuming = self.resume.is_some() && self.queue.len == 0;
            if !resuming && shutdown.is_cancelled() {
                break;
            }
            if self.queue.len > 0 {
                self.expire(Instant::now());
            }
            if let Some(job) = self.queue.pop() {
                self.queue_depth.dec();
                self.start(job, &mut operator_rx, Instant::now()).await;
                continue;
            }
            // A cycle between two of its reads, else the next standing poll due: operator
            // requests that arrived meanwhile go first.
            if self.resume.is_some() || !self.schedule.ready.is_empty() {
                while self.queue.has_room() {
                    match operator_rx.try_recv() {
                        Ok(op) => self.admit(op, None),
                        Err(_) => break,
                    }
                }
                if self.queue.len > 0 {
                    continue;
                }
                let job = match self.resume.take() {
                    Some(job) => job,
                    None => {
                        self.queue_depth.dec();
                        self.schedule.ready.pop_front().expect("checked above")
                    }
                };
                // One clock reading for both checks: they are µs apart.
                let now = Instant::now();
                if let Some(job) = self.refuse_or_keep(job, None, now) {
                    self.start(job, &mut operator_rx, now).await;
                }
                continue;
            }
            // Turns that came while the line was busy are taken now, not at the timer's next
            // tick (a due timer still waits for the driver's next millisecond).
            if let Some(turn) = self.schedule.next_turn() {
                let now = Instant::now();
                if turn <= now {
                    self.take_turns(now);
                    continue;
                }
            }
            // Every handle dropped and nothing left to serve: no one will ever ask again.
            if operator_rx.is_closed()
                && poll_rx.is_closed()
                && operator_rx.is_empty()
                && poll_rx.is_empty()
            {
                break;
            }
            let expiry = self.queue.next_expiry(self.timing);
            let turn = self.schedule.next_turn();
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Stop,
                Some(job) = operator_rx.recv() => Wake::Operator(job),
                Some(job) = poll_rx.recv() => Wake::Poll(job),
                Some(slot) = standing_rx.recv() => Wake::Stand(slot),
                () = sleep_until_opt(turn) => Wake::Turn,
                () = sleep_until(self.line.next_connect_at), if self.line.ctx.is_none() => Wake::Connect,
                () = sleep_until_opt(expiry) => Wake::Timer,
                else => Wake::Stop,
            };
            match wake {
                Wake::Stop => break,
                Wake::Operator(job) => self.admit(job, None),
                Wake::Poll(job) => {
                    self.queue_depth.dec();
                    let now = Instant::now();
                    if let Some(job) = self.refuse_or_keep(job, None, now) {
                        self.start(job, &mut operator_rx, now).await;
                    }
                }
                Wake::Stand(slot) => self.schedule.add(slot, Instant::now()),
                Wake::Turn => self.take_turns(Instant::now()),
                Wake::Connect => {
                    let Self {
                        name,
                        timing,
                        metrics,
                        line,
                        queue,
                        health,
                        queue_depth,
                        ..
                    } = &mut self;
                    let connect = line.connect(None);
                    serve_while(
                        connect,
                        Admission {
                            queue,
                            health,
                            name,
                            metrics,
                            timing: *timing,
                            depth: queue_depth,
                            busy: None,
                        },
                        &mut operator_rx,
                    )
                    .await;
                }
                Wake::Timer => {}
            }
        }
        operator_rx.close();
        poll_rx.close();
        // Registered polls end with the schedule; these never reached it.
        standing_rx.close();
        while let Ok(slot) = standing_rx.try_recv() {
            slot.end();
        }
        // Standing polls simply end: their pollers are stopping too, and a cycle that never
        // ran has nothing to tell them.
        for _ in self.schedule.ready.drain(..) {
            self.queue_depth.dec();
        }
        let mut left: Vec<Job> = self.queue.drain();
        left.extend(self.resume.take());
        for rx in [&mut operator_rx, &mut poll_rx] {
            while let Ok(job) = rx.try_recv() {
                left.push(job);
            }
        }
        for job in left {
            self.queue_depth.dec();
            let at = target(&self.name, job.unit, job.work.op());
            let error = BusError::Shutdown { at };
            job.answer(Err(Failed::unsent(error)));
        }
        if let Some(mut ctx) = self.line.ctx.take() {
            let _ = timeout(self.line.opts.timeout, ctx.disconnect()).await;
        }
        self.line.set_connected(false);
        tracing::debug!(bus = %self.line.name, "bus task stopped");
    }

    /// Queues the standing polls whose turn has come.
    fn take_turns(&mut self, now: Instant) {
        let queued = self.schedule.take_due(now);
        self.queue_depth.add(queued as i64);
    }

    /// Answers every queued request that can no longer start in time: nothing written.
    fn expire(&mut self, now: Instant) {
        for job in self.queue.take_expired(now, self.timing) {
            self.queue_depth.dec();
            self.line.count(job.work.op().function(), "expired");
            let at = self.line.target(job.unit, job.work.op());
            job.answer(Err(Failed::unsent(BusError::DeadlineExpired { at })));
        }
    }

    fn admission(&mut self, busy: Option<u8>) -> Admission<'_> {
        Admission {
            queue: &mut self.queue,
            health: &self.health,
            name: &self.name,
            metrics: &self.metrics,
            timing: self.timing,
            depth: &self.queue_depth,
            busy,
        }
    }

    fn admit(&mut self, job: Job, busy: Option<u8>) {
        self.admission(busy).admit(job);
    }

    /// A poll taken off its channel: refused at once when its unit is down (or it is out of
    /// time), else returned to be run.
    fn refuse_or_keep(&mut self, job: Job, busy: Option<u8>, now: Instant) -> Option<Job> {
        self.admission(busy).refusal(job, now)
    }

    /// Runs `job` on the line while admitting (and refusing, and expiring) operator requests,
    /// then settles the unit's health and answers the caller.
    async fn start(&mut self, job: Job, operator_rx: &mut mpsc::Receiver<Job>, now: Instant) {
        let function = job.work.op().function();
        // The caller gave up, or the job can no longer start in time: a write nobody will
        // hear about must not reach the door.
        if job.caller_gone() || job.start_by(self.timing) <= now {
            self.line.count(function, "expired");
            let at = self.line.target(job.unit, job.work.op());
            job.answer(Err(Failed::unsent(BusError::DeadlineExpired { at })));
            return;
        }
        let unit = job.unit;
        let streak = self.health.streak(unit);
        let Self {
            name,
            timing,
            metrics,
            line,
            queue,
            health,
            queue_depth,
            ..
        } = self;
        let waiting = Arc::clone(&queue.waiting);
        let run = line.run(&job, streak, &waiting);
        let (result, seen) = serve_while(
            run,
            Admission {
                queue,
                health,
                name,
                metrics,
                timing: *timing,
                depth: queue_depth,
                busy: Some(unit),
            },
            operator_rx,
        )
        .await;
        // The transaction's own end when it ran one (the line keeps it); else the clock.
        let end = match self.line.last_end {
            Some(end) if seen.answered || seen.timeouts > 0 => end,
            _ => Instant::now(),
        };
        if seen.answered {
            self.health.answered(unit);
        }
        let was_dead = self.health.is_dead(unit);
        for _ in 0..seen.timeouts {
            self.health.timed_out(unit, end);
        }
        // An operator request run between a cycle's reads leaves that cycle where it was.
        if let Some(rest) = job.step(result, end) {
            self.resume = Some(rest);
        }
        if self.health.is_dead(unit) {
            if !was_dead {
                let next = self
                    .health
                    .is_backed_off(unit, end)
                    .map(|t| crate::human::duration(t.saturating_duration_since(end)))
                    .unwrap_or_default();
                tracing::warn!(bus = %self.line.name, unit, doors = %self.line.doors.of(unit), next_probe_in = %next, "unit stopped answering: its requests are refused until a probe answers");
            }
            // Its queued requests would each cost a timeout: refused now, nothing written.
            let next = self.health.is_backed_off(unit, end);
            for job in self.queue.take_unit(unit) {
                self.queue_depth.dec();
                self.line.count(job.work.op().function(), "refused");
                let at = self.line.target(job.unit, job.work.op());
                let next_probe_in = next.map(|t| t.saturating_duration_since(end));
                job.answer(Err(Failed::unsent(BusError::UnitDown {
                    at,
                    next_probe_in,
                })));
            }
        }
    }
}

/// Taking operator requests in while the line is busy (or idle).
struct Admission<'a> {
    queue: &'a mut OperatorQueue,
    health: &'a UnitHealthMap,
    name: &'a Arc<str>,
    metrics: &'a Metrics,
    timing: Timing,
    depth: &'a IntGauge,
    /// The unit whose job is on the line now.
    busy: Option<u8>,
}

impl Admission<'_> {
    fn target(&self, job: &Job) -> Target {
        target(self.name, job.unit, job.work.op())
    }

    fn count(&self, job: &Job, result: &str) {
        count(self.metrics, self.name, job.work.op().function(), result);
    }

    /// Queues the request, or answers it at once when its unit is down.
    fn admit(&mut self, job: Job) {
        if let Some(job) = self.refusal(job, Instant::now()) {
            self.queue.push(job);
        }
    }

    /// `None` when the request was answered here: its unit is dead and either backed off or
    /// already being probed, or it cannot start in time.
    fn refusal(&mut self, job: Job, now: Instant) -> Option<Job> {
        if job.start_by(self.timing) <= now {
            self.count(&job, "expired");
            let at = self.target(&job);
            job.answer(Err(Failed::unsent(BusError::DeadlineExpired { at })));
            self.depth.dec();
            return None;
        }
        if self.health.is_dead(job.unit) {
            let next_probe_in = if self.busy == Some(job.unit) {
                Some(None)
            } else {
                self.health
                    .is_backed_off(job.unit, now)
                    .map(|t| Some(t.saturating_duration_since(now)))
            };
            if let Some(next_probe_in) = next_probe_in {
                self.count(&job, "refused");
                let at = self.target(&job);
                job.answer(Err(Failed::unsent(BusError::UnitDown {
                    at,
                    next_probe_in,
                })));
                self.depth.dec();
                return None;
            }
        }
        Some(job)
    }
}

/// Drives `work` (the job or connect attempt on the line) to completion while operator
/// requests keep arriving: each is queued or answered at once, and queued ones that run out
/// of time are answered when they do. Shutdown is not watched here: the line's work
/// finishes first, and the task's loop looks at the token before the next job.
async fn serve_while<F: std::future::Future>(
    work: F,
    mut admission: Admission<'_>,
    operator_rx: &mut mpsc::Receiver<Job>,
) -> F::Output {
    tokio::pin!(work);
    loop {
        let expiry = admission.queue.next_expiry(admission.timing);
        let room = admission.queue.has_room();
        tokio::select! {
            biased;
            out = &mut work => return out,
            Some(job) = operator_rx.recv(), if room => admission.admit(job),
            () = sleep_until_opt(expiry) => {
                let now = Instant::now();
                for job in admission.queue.take_expired(now, admission.timing) {
                    admission.depth.dec();
                    admission.count(&job, "expired");
                    let at = admission.target(&job);
                    job.answer(Err(Failed::unsent(BusError::DeadlineExpired { at })));
                }
            }
        }
    }
}

/// One transaction (or refusal) in `fieldgate_modbus_requests_total`.
fn count(metrics: &Metrics, bus: &str, function: &str, result: &str) {
    metrics
        .modbus_requests
        .with_label_values(&[bus, function, result])
        .inc();
}

fn target(bus: &Arc<str>, unit: u8, op: &Op) -> Target {
    Target {
        bus: Arc::clone(bus),
        unit,
        function: op.function(),
        addr: op.addr(),
    }
}

impl Line {
    fn target(&self, unit: u8, op: &Op) -> Target {
        target(&self.name, unit, op)
    }

    fn set_connected(&self, up: bool) {
        self.connected.send_replace(up);
        self.status.send_modify(|s| {
            s.up = up;
            if up {
                s.attempted = true;
                s.error = None;
            }
        });
        self.metrics
            .bus_connected
            .with_label_values(&[&self.name])
            .set(i64::from(up));
    }

    fn count(&mut self, function: &'static str, result: &'static str) {
        self.handles
            .count(&self.metrics, &self.name, function, result);
    }

    /// One attempt to open the connection, bounded by the timeout (and `deadline`).
    async fn connect(&mut self, deadline: Option<Instant>) {
        self.settling = false;
        let mut limit = self.opts.timeout;
        if let Some(d) = deadline {
            limit = limit.min(d.saturating_duration_since(Instant::now()));
        }
        let error = match timeout(limit, transport::open(&self.opts.transport)).await {
            Ok(Ok(ctx)) => {
                tracing::info!(bus = %self.name, "bus connected");
                self.ctx = Some(ctx);
                self.connect_backoff.reset();
                self.set_connected(true);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {limit:?}"),
        };
        let wait = self.connect_backoff.next_delay();
        tracing::warn!(bus = %self.name, transport = %self.opts.transport, doors = %self.doors.all(), error = %error, retry_in = %crate::human::duration(wait), "bus connection failed");
        self.status.send_modify(|s| {
            s.attempted = true;
            s.error = Some(error.clone());
        });
        self.last_connect_error = error;
        self.next_connect_at = Instant::now() + wait;
        self.set_connected(false);
    }

    /// Drops the connection; `backoff` when the transport itself failed, otherwise (after a
    /// timeout or a mismatched answer) reopen at once so a late answer cannot be mistaken
    /// for the next one.
    fn drop_connection(&mut self, reason: String, backoff: bool) {
        self.ctx = None;
        self.settling = false;
        self.status.send_modify(|s| s.error = Some(reason.clone()));
        self.last_connect_error = reason;
        self.next_connect_at = if backoff {
            Instant::now() + self.connect_backoff.next_delay()
        } else {
            Instant::now()
        };
        self.set_connected(false);
    }

    /// After a reply that was not this request's (a late answer, another unit's, garbled):
    /// more frames may be on their way — this request's own answer among them — and reopening
    /// at once would read one of them as the next answer. A serial line stays closed for
    /// [`settle_time`](Self::settle_time) (bytes arriving meanwhile are dropped, and the open
    /// clears what is left); a TCP connection is simply new.
    fn drop_connection_and_settle(&mut self, reason: String) {
        self.drop_connection(reason, false);
        let settle = self.settle_time();
        if !settle.is_zero() {
            self.next_connect_at = Instant::now() + settle;
            self.settling = true;
        }
    }

    /// One longest RTU frame (256 bytes of 11 bits) and the 3.5-character gap after it at
    /// the line's baud rate; zero off serial lines.
    fn settle_time(&self) -> Duration {
        match &self.opts.transport {
            super::Transport::Rtu { baud, .. } => {
                let bits = (256 + 4) * 11;
                Duration::from_micros(bits * 1_000_000 / u64::from((*baud).max(1)))
            }
            _ => Duration::ZERO,
        }
    }

    /// Runs a job: `streak` is the unit's timeouts before it (dead at
    /// [`DEAD_AFTER_TIMEOUTS`]).
    async fn run(
        &mut self,
        job: &Job,
        streak: u32,
        operators_waiting: &AtomicUsize,
    ) -> (Result<Reply, Failed>, Seen) {
        let mut seen = Seen::default();
        let result = match &job.work {
            Work::Op(_) | Work::Cycle { .. } => {
                self.run_op(job, job.work.op(), streak, operators_waiting, &mut seen)
                    .await
            }
            Work::Verified(op) => {
                self.run_verified(job, op, streak, operators_waiting, &mut seen)
                    .await
            }
        };
        (result, seen)
    }

    /// Whether the unit counts as dead now, given what this job saw.
    fn dead(streak: u32, seen: &Seen) -> bool {
        let streak = if seen.answered { 0 } else { streak };
        streak + seen.timeouts >= DEAD_AFTER_TIMEOUTS
    }

    /// One operation with the retries the bus allows: reads to a live unit only. A dead unit
    /// gets one real try (a probe), never retries that would hold the line. A write is never
    /// repeated here: when its answer is lost or late the device may have acted on it.
    async fn run_op(
        &mut self,
        job: &Job,
        op: &Op,
        streak: u32,
        operators_waiting: &AtomicUsize,
        seen: &mut Seen,
    ) -> Result<Reply, Failed> {
        let at = self.target(job.unit, op);
        let write = op.is_write();
        let attempts = if Self::dead(streak, seen) || write {
            1
        } else {
            1 + self.opts.retries
        };
        let unknown_if_write = if write { Written::Unknown } else { Written::No };
        let mut last: Option<BusError> = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                // A poll gives up its retries to a waiting operator request, which must wait
                // for at most one transaction; nobody retries a unit that just died.
                let yield_to_operator =
                    job.priority == Priority::Poll && operators_waiting.load(Ordering::Relaxed) > 0;
                if yield_to_operator || Self::dead(streak, seen) {
                    break;
                }
            }
            match self.transaction(job.unit, op, job.deadline, seen).await {
                Tx::Reply(reply) => return Ok(reply),
                Tx::Exception(code) => {
                    return Err(Failed::unsent(BusError::Exception { at, code }));
                }
                Tx::BadReply(reason) => {
                    return Err(Failed {
                        error: BusError::BadReply { at, reason },
                        written: unknown_if_write,
                    })
                }
                Tx::Timeout { after } => {
                    last = Some(BusError::Timeout {
                        at: at.clone(),
                        after,
                    })
                }
                Tx::Broken(reason) => {
                    last = Some(BusError::Unavailable {
                        at: at.clone(),
                        reason,
                    })
                }
                Tx::NotConnected(reason) => {
                    return Err(Failed {
                        error: last.unwrap_or(BusError::Unavailable { at, reason }),
                        written: Written::No,
                    })
                }
                Tx::NoTime => break,
            }
        }
        Err(match last {
            Some(error) => Failed {
                error,
                written: unknown_if_write,
            },
            None => Failed::unsent(BusError::DeadlineExpired { at }),
        })
    }

    /// A write, then the read of the written range, with nothing between them on the line.
    /// Ok carries the read-back; the caller compares it with what was written.
    ///
    /// When the write's answer is lost, a read-back can tell whether it was applied: applied
    /// means done (written once); not applied means one more write if it still fits before
    /// the deadline. That read-back costs a second timeout when the unit is gone, so it is
    /// made only when the line can spare it: never for a unit already known dead, and not
    /// while other operator requests wait (a job reaching every door of a line with dead
    /// units on it would otherwise pay two timeouts per dead unit). Without it the write is
    /// answered with its outcome unknown.
    async fn run_verified(
        &mut self,
        job: &Job,
        write: &Op,
        streak: u32,
        operators_waiting: &AtomicUsize,
        seen: &mut Seen,
    ) -> Result<Reply, Failed> {
        let at = self.target(job.unit, write);
        let Some((read, applied)) = write.read_back() else {
            let reason = format!("{} has no read-back", write.function());
            return Err(Failed::unsent(BusError::BadReply { at, reason }));
        };
        let read_at = self.target(job.unit, &read);
        let need = self.opts.timeout + self.opts.inter_request_delay;
        let mut lost: Option<BusError> = None;
        for attempt in 0..2 {
            let written_before = if attempt == 0 {
                Written::No
            } else {
                Written::Unknown
            };
            if attempt > 0 && job.deadline.saturating_duration_since(Instant::now()) < need {
                break;
            }
            let error = match self.transaction(job.unit, write, job.deadline, seen).await {
                Tx::Reply(_) => {
                    return self
                        .read_back(job, &read, &read_at, streak, seen)
                        .await
                        .map_err(|error| Failed {
                            error,
                            written: Written::Yes,
                        });
                }
                Tx::Exception(code) => {
                    return Err(Failed {
                        error: BusError::Exception { at, code },
                        written: written_before,
                    })
                }
                Tx::BadReply(reason) => {
                    return Err(Failed {
                        error: BusError::BadReply { at, reason },
                        written: Written::Unknown,
                    })
                }
                Tx::NotConnected(reason) => {
                    return Err(Failed {
                        error: lost.unwrap_or(BusError::Unavailable { at, reason }),
                        written: written_before,
                    })
                }
                Tx::NoTime => {
                    return Err(Failed {
                        error: lost.unwrap_or(BusError::DeadlineExpired { at }),
                        written: written_before,
                    })
                }
                Tx::Timeout { after } => BusError::Timeout {
                    at: at.clone(),
                    after,
                },
                Tx::Broken(reason) => BusError::Unavailable {
                    at: at.clone(),
                    reason,
                },
            };
            lost = Some(error.clone());
            // A timeout may mean the unit is gone: its read-back would cost another. A broken
            // exchange (noise, a late foreign reply) says nothing of the kind.
            let timed_out = matches!(error, BusError::Timeout { .. });
            if Self::dead(streak, seen)
                || (timed_out && operators_waiting.load(Ordering::Relaxed) > 0)
            {
                break;
            }
            match self.transaction(job.unit, &read, job.deadline, seen).await {
                Tx::Reply(now) if now == applied => {
                    tracing::info!(bus = %self.name, unit = job.unit, doors = %self.doors.of(job.unit), function = write.function(), error = %error, "write answer lost, but the read-back shows it applied");
                    return Ok(now);
                }
                // Not applied: one more write if there is time for it.
                Tx::Reply(_) => {}
                _ => break,
            }
        }
        Err(Failed {
            error: lost.unwrap_or(BusError::DeadlineExpired { at }),
            written: Written::Unknown,
        })
    }

    /// The read-back after an echoed write, with the retries reads get on a live unit.
    async fn read_back(
        &mut self,
        job: &Job,
        read: &Op,
        at: &Target,
        streak: u32,
        seen: &mut Seen,
    ) -> Result<Reply, BusError> {
        let mut last = None;
        for _ in 0..=self.opts.retries {
            if last.is_some() && Self::dead(streak, seen) {
                break;
            }
            match self.transaction(job.unit, read, job.deadline, seen).await {
                Tx::Reply(reply) => return Ok(reply),
                Tx::Exception(code) => {
                    return Err(BusError::Exception {
                        at: at.clone(),
                        code,
                    })
                }
                Tx::BadReply(reason) => {
                    return Err(BusError::BadReply {
                        at: at.clone(),
                        reason,
                    })
                }
                Tx::Timeout { after } => {
                    last = Some(BusError::Timeout {
                        at: at.clone(),
                        after,
                    })
                }
                Tx::Broken(reason) | Tx::NotConnected(reason) => {
                    last = Some(BusError::Unavailable {
                        at: at.clone(),
                        reason,
                    })
                }
                Tx::NoTime => break,
            }
        }
        Err(last.unwrap_or(BusError::DeadlineExpired { at: at.clone() }))
    }

    /// One transaction, reopening the connection first when it is down and may be retried.
    async fn transaction(&mut self, unit: u8, op: &Op, deadline: Instant, seen: &mut Seen) -> Tx {
        let function = op.function();
        // The clock is read again only after a wait: a transaction on a fast line is a few
        // µs of work, and each read of it counts.
        let mut now = Instant::now();
        if now >= deadline {
            return Tx::NoTime;
        }
        if self.ctx.is_none() {
            if self.next_connect_at > now {
                if !(self.settling && self.next_connect_at < deadline) {
                    self.count(function, "skipped");
                    return Tx::NotConnected(format!("not connected: {}", self.last_connect_error));
                }
                sleep_until(self.next_connect_at).await;
            }
            self.connect(Some(deadline)).await;
            now = Instant::now();
        }
        // Keep the line quiet between transactions for slow controllers.
        if let Some(end) = self.last_end {
            let ready = end + self.opts.inter_request_delay;
            if ready >= deadline {
                return Tx::NoTime;
            }
            // Only when there is something to wait for: a timer, even one already due,
            // fires on the driver's next millisecond tick, which on a fast line (a 115200
            // baud transaction takes ~2 ms) would cost up to half of every transaction.
            if ready > now {
                sleep_until(ready).await;
                now = Instant::now();
            }
        }
        let Some(ctx) = self.ctx.as_mut() else {
            self.count(function, "skipped");
            return Tx::NotConnected(format!("not connected: {}", self.last_connect_error));
        };
        let limit = self
            .opts
            .timeout
            .min(deadline.saturating_duration_since(now));
        let started = now;
        // `timeout_at`: `timeout` would read the clock again for the same instant.
        let outcome =
            tokio::time::timeout_at(started + limit, transport::transact(ctx, unit, op)).await;
        let end = Instant::now();
        self.last_end = Some(end);
        self.handles
            .duration(&self.metrics, &self.name, function)
            .observe((end - started).as_secs_f64());
        match outcome {
            Ok(Ok(Ok(reply))) => {
                self.count(function, "ok");
                *seen = Seen {
                    answered: true,
                    timeouts: 0,
                };
                Tx::Reply(reply)
            }
            Ok(Ok(Err(code))) => {
                self.count(function, "exception");
                *seen = Seen {
                    answered: true,
                    timeouts: 0,
                };
                Tx::Exception(code)
            }
            Ok(Err(TransactError::BadReply(reason))) => {
                self.count(function, "bad_reply");
                tracing::warn!(bus = %self.name, unit, doors = %self.doors.of(unit), function, %reason, "reply does not match the request");
                *seen = Seen {
                    answered: true,
                    timeouts: 0,
                };
                // The reply may belong to another request (a late answer on a serial line):
                // start clean.
                self.drop_connection_and_settle(reason.clone());
                Tx::BadReply(reason)
            }
            Ok(Err(TransactError::Foreign(reason))) => {
                self.count(function, "foreign_reply");
                tracing::warn!(bus = %self.name, unit, doors = %self.doors.of(unit), function, %reason, "a reply to another request: reopening the line");
                // Start clean: whatever else is in flight on the line is not ours either.
                self.drop_connection_and_settle(reason.clone());
                Tx::Broken(format!("a reply to another request: {reason}"))
            }
            Ok(Err(TransactError::Transport(e))) => {
                self.count(function, "transport");
                tracing::warn!(bus = %self.name, transport = %self.opts.transport, unit, doors = %self.doors.of(unit), function, error = %e, "bus transaction failed");
                let reason = e.to_string();
                self.drop_connection(reason.clone(), true);
                Tx::Broken(reason)
            }
            Err(_elapsed) => {
                self.count(function, "timeout");
                self.drop_connection(format!("unit {unit} timed out"), false);
                // A transaction cut short by its caller's deadline says nothing about the unit.
                if limit >= self.opts.timeout {
                    seen.timeouts += 1;
                }
                Tx::Timeout { after: limit }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(unit: u8, deadline: Instant) -> (Job, oneshot::Receiver<Result<Reply, Failed>>) {
        let (reply, rx) = oneshot::channel();
        (
            Job {
                unit,
                work: Work::Op(Op::ReadCoils { addr: 0, count: 1 }),
                priority: Priority::Operator,
                deadline,
                reply: Answer::One(reply),
            },
            rx,
        )
    }

    #[test]
    fn operator_requests_are_served_round_robin_over_units() {
        let far = Instant::now() + Duration::from_secs(60);
        let mut q = OperatorQueue::new(16);
        let mut keep = Vec::new();
        // A burst of four to unit 1 arrives first, then one each to units 2 and 3.
        for unit in [1, 1, 1, 1, 2, 3] {
            let (j, rx) = job(unit, far);
            keep.push(rx);
            q.push(j);
        }
        let order: Vec<u8> = std::iter::from_fn(|| q.pop().map(|j| j.unit)).collect();
        assert_eq!(order, vec![1, 2, 3, 1, 1, 1]);
        assert_eq!(q.len, 0);
        assert_eq!(q.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn round_robin_wraps_past_the_highest_unit() {
        let far = Instant::now() + Duration::from_secs(60);
        let mut q = OperatorQueue::new(16);
        let mut keep = Vec::new();
        for unit in [255, 255, 7] {
            let (j, rx) = job(unit, far);
            keep.push(rx);
            q.push(j);
        }
        let order: Vec<u8> = std::iter::from_fn(|| q.pop().map(|j| j.unit)).collect();
        assert_eq!(order, vec![7, 255, 255]);
    }

    #[test]
    fn a_write_expires_while_its_transaction_still_fits_a_read_at_its_deadline() {
        let opts = BusOptions {
            timeout: Duration::from_millis(500),
            inter_request_delay: Duration::from_millis(10),
            ..BusOptions::new(
                "b",
                super::super::Transport::Tcp {
                    addr: "127.0.0.1:1".into(),
                },
            )
        };
        let deadline = Instant::now() + Duration::from_secs(4);
        let t = Timing::of(&opts);
        let (mut j, _rx) = job(1, deadline);
        assert_eq!(j.start_by(t), deadline);
        j.work = Work::Op(Op::WriteCoil {
            addr: 0,
            value: true,
        });
        assert_eq!(j.start_by(t), deadline - Duration::from_millis(510));
        j.work = Work::Verified(Op::WriteCoil {
            addr: 0,
            value: true,
        });
        assert_eq!(j.start_by(t), deadline - Duration::from_millis(510));
    }
}
