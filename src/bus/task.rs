//! The task that owns one bus connection and serves queued requests one at a time.
//!
//! Invariants: operator requests are taken before poll requests (biased select over two
//! queues); cancellation is only checked between transactions, so a write in flight is
//! never cut off; every transaction runs under `min(opts.timeout, remaining deadline)`.

use std::{sync::Arc, time::Duration};

use prometheus::IntGauge;
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::{sleep_until, timeout, Instant},
};
use tokio_modbus::client::{Client as _, Context};
use tokio_util::sync::CancellationToken;

use super::{
    backoff::{Backoff, UnitHealthMap},
    options::BusOptions,
    request::{BusError, Op, Priority, Reply, Target},
    transport,
};
use crate::metrics::Metrics;

/// First wait before reopening a failed connection; doubles up to `reconnect_backoff_max`.
const RECONNECT_BASE: Duration = Duration::from_millis(100);

/// A queued request with the channel its answer goes back on.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) unit: u8,
    pub(crate) op: Op,
    pub(crate) priority: Priority,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<Reply, BusError>>,
}

pub(crate) struct BusTask {
    opts: BusOptions,
    name: Arc<str>,
    metrics: Arc<Metrics>,
    queue_depth: IntGauge,
    ctx: Option<Context>,
    next_connect_at: Instant,
    connect_backoff: Backoff,
    last_connect_error: String,
    health: UnitHealthMap,
    last_end: Option<Instant>,
    connected: watch::Sender<bool>,
}

impl BusTask {
    pub(crate) fn new(
        opts: BusOptions,
        metrics: Arc<Metrics>,
        queue_depth: IntGauge,
        connected: watch::Sender<bool>,
    ) -> Self {
        BusTask {
            name: opts.name.as_str().into(),
            connect_backoff: Backoff::new(RECONNECT_BASE, opts.reconnect_backoff_max),
            health: UnitHealthMap::new(opts.dead_unit_backoff_max),
            opts,
            metrics,
            queue_depth,
            ctx: None,
            next_connect_at: Instant::now(),
            last_connect_error: "not connected yet".into(),
            last_end: None,
            connected,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut operator_rx: mpsc::Receiver<Job>,
        mut poll_rx: mpsc::Receiver<Job>,
        shutdown: CancellationToken,
    ) {
        loop {
            // Every handle dropped and nothing left to serve: no one will ever ask again.
            let abandoned = operator_rx.is_closed()
                && poll_rx.is_closed()
                && operator_rx.is_empty()
                && poll_rx.is_empty();
            if abandoned {
                break;
            }
            let job = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = sleep_until(self.next_connect_at), if self.ctx.is_none() => {
                    self.connect(None).await;
                    continue;
                }
                Some(job) = operator_rx.recv() => job,
                Some(job) = poll_rx.recv() => job,
                else => break,
            };
            self.queue_depth.dec();
            let result = self.serve(&job, &operator_rx).await;
            // The caller may have given up; nothing to do then.
            let _ = job.reply.send(result);
        }
        operator_rx.close();
        poll_rx.close();
        for rx in [&mut operator_rx, &mut poll_rx] {
            while let Ok(job) = rx.try_recv() {
                self.queue_depth.dec();
                let at = self.target(&job);
                let _ = job.reply.send(Err(BusError::Shutdown { at }));
            }
        }
        if let Some(mut ctx) = self.ctx.take() {
            let _ = timeout(self.opts.timeout, ctx.disconnect()).await;
        }
        self.set_connected(false);
        tracing::debug!(bus = %self.name, "bus task stopped");
    }

    fn target(&self, job: &Job) -> Target {
        Target {
            bus: Arc::clone(&self.name),
            unit: job.unit,
            function: job.op.function(),
            addr: job.op.addr(),
        }
    }

    fn set_connected(&self, up: bool) {
        self.connected.send_replace(up);
        self.metrics
            .bus_connected
            .with_label_values(&[&self.name])
            .set(i64::from(up));
    }

    fn count(&self, function: &str, result: &str) {
        self.metrics
            .modbus_requests
            .with_label_values(&[&self.name, function, result])
            .inc();
    }

    /// One attempt to open the connection, bounded by the timeout (and `deadline`).
    async fn connect(&mut self, deadline: Option<Instant>) {
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
        tracing::warn!(bus = %self.name, error = %error, retry_in = ?wait, "bus connection failed");
        self.last_connect_error = error;
        self.next_connect_at = Instant::now() + wait;
        self.set_connected(false);
    }

    /// Drops the connection; `backoff` when the transport itself failed, otherwise (after a
    /// timeout or a mismatched answer) reopen at once so a late answer cannot be mistaken
    /// for the next one.
    fn drop_connection(&mut self, reason: String, backoff: bool) {
        self.ctx = None;
        self.last_connect_error = reason;
        self.next_connect_at = if backoff {
            Instant::now() + self.connect_backoff.next_delay()
        } else {
            Instant::now()
        };
        self.set_connected(false);
    }

    async fn serve(
        &mut self,
        job: &Job,
        operators: &mpsc::Receiver<Job>,
    ) -> Result<Reply, BusError> {
        let at = self.target(job);
        let function = job.op.function();
        let now = Instant::now();
        // Expired, or the caller gave up waiting: a write nobody will hear about must not
        // reach the door.
        if now >= job.deadline || job.reply.is_closed() {
            self.count(function, "expired");
            return Err(BusError::DeadlineExpired { at });
        }
        if job.priority == Priority::Poll {
            if let Some(until) = self.health.is_backed_off(job.unit, now) {
                self.count(function, "skipped");
                return Err(BusError::Unavailable {
                    at,
                    reason: format!(
                        "unit stopped answering; next try in {:?}",
                        until.saturating_duration_since(now)
                    ),
                });
            }
        }
        // A dead unit gets one real try (a probe), never retries that would hold the line.
        // A write is never repeated here: when its answer is lost or late the device may
        // have acted on it, and a second write would apply the command twice. The caller
        // reads back to find out (bridge::io) and decides whether to write again.
        let attempts = if self.health.is_dead(job.unit) || job.op.is_write() {
            1
        } else {
            1 + self.opts.retries
        };
        let mut last_error = None;
        for _ in 0..attempts {
            // A poll gives up its retries to a waiting operator request, which must wait
            // for at most one transaction.
            if job.priority == Priority::Poll && last_error.is_some() && !operators.is_empty() {
                break;
            }
            match self.attempt(job, &at).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(e) => last_error = Some(e),
                // Running out of time on a retry: the caller wants to know why the try failed.
                Attempt::Stop(BusError::DeadlineExpired { .. }) if last_error.is_some() => break,
                Attempt::Stop(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(BusError::DeadlineExpired { at }))
    }

    async fn attempt(&mut self, job: &Job, at: &Target) -> Attempt {
        let function = job.op.function();
        if Instant::now() >= job.deadline {
            return Attempt::Stop(BusError::DeadlineExpired { at: at.clone() });
        }
        if self.ctx.is_none() {
            if self.next_connect_at > Instant::now() {
                self.count(function, "skipped");
                return Attempt::Stop(BusError::Unavailable {
                    at: at.clone(),
                    reason: format!("not connected: {}", self.last_connect_error),
                });
            }
            self.connect(Some(job.deadline)).await;
        }
        // Keep the line quiet between transactions for slow controllers.
        if let Some(end) = self.last_end {
            let ready = end + self.opts.inter_request_delay;
            if ready >= job.deadline {
                return Attempt::Stop(BusError::DeadlineExpired { at: at.clone() });
            }
            // Only when there is something to wait for: a timer, even one already due,
            // fires on the driver's next millisecond tick, which on a fast line (a 115200
            // baud transaction takes ~2 ms) would cost up to half of every transaction.
            if ready > Instant::now() {
                sleep_until(ready).await;
            }
        }
        let Some(ctx) = self.ctx.as_mut() else {
            self.count(function, "skipped");
            return Attempt::Stop(BusError::Unavailable {
                at: at.clone(),
                reason: format!("not connected: {}", self.last_connect_error),
            });
        };
        let limit = self
            .opts
            .timeout
            .min(job.deadline.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        let outcome = timeout(limit, transport::transact(ctx, job.unit, &job.op)).await;
        let end = Instant::now();
        self.last_end = Some(end);
        self.metrics
            .modbus_request_duration
            .with_label_values(&[&self.name, function])
            .observe((end - started).as_secs_f64());
        match outcome {
            Ok(Ok(Ok(reply))) => {
                self.count(function, "ok");
                self.health.answered(job.unit);
                Attempt::Done(Ok(reply))
            }
            Ok(Ok(Err(code))) => {
                self.count(function, "exception");
                self.health.answered(job.unit);
                Attempt::Done(Err(BusError::Exception {
                    at: at.clone(),
                    code,
                }))
            }
            Ok(Err(e)) => {
                self.count(function, "transport");
                let backoff = matches!(e, tokio_modbus::Error::Transport(_));
                tracing::warn!(bus = %self.name, unit = job.unit, function, error = %e, "bus transaction failed");
                let reason = e.to_string();
                self.drop_connection(reason.clone(), backoff);
                Attempt::Retry(BusError::Unavailable {
                    at: at.clone(),
                    reason,
                })
            }
            Err(_elapsed) => {
                self.count(function, "timeout");
                self.drop_connection(format!("unit {} timed out", job.unit), false);
                let error = BusError::Timeout {
                    at: at.clone(),
                    after: limit,
                };
                if self.health.timed_out(job.unit, end) {
                    tracing::warn!(bus = %self.name, unit = job.unit, "unit stopped answering; backing off");
                    Attempt::Stop(error)
                } else {
                    Attempt::Retry(error)
                }
            }
        }
    }
}

enum Attempt {
    Done(Result<Reply, BusError>),
    Retry(BusError),
    Stop(BusError),
}
