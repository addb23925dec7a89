//! The writer task: gathers appends and acknowledgements into batches, commits each batch
//! on a blocking thread (an fsync on an SD card can take tens of milliseconds), then tells
//! the links what is new and updates the metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::db::{Append, Batch, Committed, Limits, Store};
use super::{Cmd, Doors, EventsError, ACK_SYNC};
use crate::config::EventsSettings;
use crate::metrics::Metrics;

type AppendReply = oneshot::Sender<Result<(u64, u64), EventsError>>;

/// How often the oldest event's age is refreshed (and `max_age` enforced) while events wait.
const AGE_TICK: Duration = Duration::from_secs(1);

pub(super) struct Writer {
    store: Option<Store>,
    limits: Limits,
    commit_interval: Duration,
    metrics: Arc<Metrics>,
    doors: Arc<Mutex<Doors>>,
    appends: Vec<(Append, AppendReply)>,
    acked: Vec<(String, u64)>,
    /// When the pending batch is committed.
    commit_at: Option<Instant>,
    /// A non-durable commit happened since the last durable one: make it durable then.
    durable_due: Option<Instant>,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        s: &EventsSettings,
        metrics: Arc<Metrics>,
        doors: Arc<Mutex<Doors>>,
    ) -> Self {
        let w = Writer {
            store: Some(store),
            limits: Limits {
                max_bytes: s.max_bytes,
                max_age_ms: i64::try_from(s.max_age.as_millis()).unwrap_or(i64::MAX),
            },
            commit_interval: s.commit_interval,
            metrics,
            doors,
            appends: Vec::new(),
            acked: Vec::new(),
            commit_at: None,
            durable_due: None,
        };
        w.gauges();
        w
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, cancel: CancellationToken) {
        let mut age_tick = tokio::time::interval(AGE_TICK);
        age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let waiting = self.store.as_ref().is_some_and(|s| s.count > 0);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = sleep_until(self.commit_at.unwrap_or(far)), if self.commit_at.is_some() => {
                    self.commit(false).await;
                }
                () = sleep_until(self.durable_due.unwrap_or(far)), if self.durable_due.is_some() => {
                    self.commit(true).await;
                }
                _ = age_tick.tick(), if waiting => {
                    let expired = self.store.as_ref().and_then(Store::oldest).is_some_and(|(_, _, c)| {
                        now_ms().saturating_sub(c) > self.limits.max_age_ms
                    });
                    if expired {
                        self.commit(false).await;
                    } else {
                        self.gauges();
                    }
                }
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(cmd) => self.take(cmd),
                },
            }
        }
        // What was appended but not yet committed is written before the file closes.
        while let Ok(cmd) = rx.try_recv() {
            self.take(cmd);
        }
        self.commit(true).await;
    }

    fn take(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Append {
                door,
                changes,
                created_ms,
                reply,
            } => self.appends.push((
                Append {
                    door: door.to_string(),
                    changes,
                    created_ms,
                },
                reply,
            )),
            Cmd::Acked { door, seqs } => {
                self.acked
                    .extend(seqs.into_iter().map(|s| (door.to_string(), s)));
            }
        }
        // A batch is opened by its first command and closed `commit_interval` later.
        self.commit_at
            .get_or_insert_with(|| Instant::now() + self.commit_interval);
    }

    /// Commits what is pending: durably if it holds new events (or `force_durable`).
    async fn commit(&mut self, force_durable: bool) {
        self.commit_at = None;
        let appends = std::mem::take(&mut self.appends);
        let (appends, replies): (Vec<_>, Vec<_>) = appends.into_iter().unzip();
        let durable = force_durable || !appends.is_empty();
        let batch = Batch {
            appends,
            acked: std::mem::take(&mut self.acked),
            durable,
        };
        let doors_touched: Vec<String> = batch.appends.iter().map(|a| a.door.clone()).collect();
        let Some(mut store) = self.store.take() else {
            for r in replies {
                let _ = r.send(Err(EventsError::Stopped));
            }
            return;
        };
        let (limits, now) = (self.limits, now_ms());
        let label = if durable { "durable" } else { "lazy" };
        let (store, result) = tokio::task::spawn_blocking(move || {
            let r = store.commit(batch, limits, now);
            (store, r)
        })
        .await
        .expect("event store commit does not panic");
        self.metrics
            .events_commits
            .with_label_values(&[label, if result.is_ok() { "ok" } else { "failed" }])
            .inc();
        match result {
            Ok(c) => {
                self.durable_due = if durable {
                    None
                } else {
                    self.durable_due.or(Some(Instant::now() + ACK_SYNC))
                };
                self.committed(&store, &c, &doors_touched, replies);
            }
            Err(e) => {
                tracing::error!(error = %e, file = "events.redb", events = replies.len(), "event store commit failed; these events are sent live if their link is up");
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
        self.store = Some(store);
        self.gauges();
    }

    fn committed(
        &self,
        store: &Store,
        c: &Committed,
        doors_touched: &[String],
        replies: Vec<AppendReply>,
    ) {
        // Counted before anyone hears of the commit, so a reader of the store never sees a
        // drop the metrics do not show yet.
        let m = &self.metrics;
        m.events_delivered.inc_by(c.removed_acked);
        m.events_stored
            .inc_by(c.seqs.iter().map(|(first, last)| last + 1 - first).sum());
        for (reason, n) in [("full", c.dropped_full), ("age", c.dropped_age)] {
            if n > 0 {
                m.events_dropped.with_label_values(&[reason]).inc_by(n);
                tracing::warn!(
                    dropped = n,
                    reason,
                    "event store over its bound: oldest events dropped unsent"
                );
            }
        }
        let mut doors = self.doors.lock().expect("event doors lock");
        for (door, (reply, seqs)) in doors_touched.iter().zip(replies.into_iter().zip(&c.seqs)) {
            let _ = reply.send(Ok(*seqs));
            if let Some(d) = store.doors.get(door) {
                doors.last.insert(door.clone(), d.meta.last.clone());
            }
            doors.head(door).send_replace(seqs.1 + 1);
        }
    }

    fn gauges(&self) {
        let Some(s) = &self.store else { return };
        let m = &self.metrics;
        m.events_pending
            .set(i64::try_from(s.count).unwrap_or(i64::MAX));
        m.events_pending_bytes
            .set(i64::try_from(s.bytes).unwrap_or(i64::MAX));
        let age = s.oldest().map_or(0.0, |(_, _, c)| {
            (now_ms().saturating_sub(c)).max(0) as f64 / 1000.0
        });
        m.events_oldest_age.set(age);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
