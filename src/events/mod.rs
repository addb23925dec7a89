//! Durable store-and-forward of door events (state changes of points with
//! `telemetry = true`): every event is written to disk before it is sent and removed only
//! when the hub has acknowledged it (PUBACK), so hub outages, cut uplinks, gateway restarts
//! and SIGKILL lose none that was stored. Delivery is at least once, per door in order; the
//! per-door sequence number lets a consumer drop duplicates and see gaps ([`wire`]).
//!
//! One writer task owns the store's write side ([`EventStore`]); pollers append through a
//! [`DoorEvents`] handle, and each door's link reads its door's events directly (redb is
//! MVCC: a read never waits for the writer) and hands acknowledgements back to the writer.
//!
//! # Sync policy and what a power cut can lose
//! New events are committed in batches: the first event of a batch starts a timer of
//! `commit_interval` (default 250 ms); everything appended meanwhile goes into one redb
//! commit with `Durability::Immediate` (fsync), and only then is it readable by the links. A
//! power cut or SIGKILL therefore loses at most the events read in the last
//! `commit_interval` plus the time of one commit. Those changes are not lost for good: the
//! last value of every event point is stored with its event, so after a restart the first
//! poll compares the door with it and sends the change again (only the intermediate steps of
//! that window are gone). Removals of acknowledged events are committed without fsync
//! (`Durability::None`) and made durable by the next durable commit, at the latest
//! [`ACK_SYNC`] later: a crash in between resends those events, which the sequence numbers
//! mark as duplicates. redb's `Eventual` level is no cheaper on Linux (it also fsyncs), so
//! the choice is between one fsync per batch and none.
//!
//! An idle door costs no disk writes: nothing is committed unless an event or an
//! acknowledgement is pending.
//!
//! # Bounds
//! `max_bytes` bounds the events' keys and bodies; when a commit goes beyond it the oldest
//! events of the whole gateway are dropped, and events older than `max_age` are dropped too,
//! both counted in `fieldgate_events_dropped_total{reason="full"|"age"}` and logged. redb
//! reuses freed pages, so the file stays within a small multiple of `max_bytes`.
//!
//! # When the disk fails
//! If the store cannot be opened (directory missing or unwritable) the gateway runs
//! without it, and if a commit fails (disk full, I/O error) that batch is refused: either
//! way the poller sends the event live when the door's link is up (at most once, no
//! sequence number) and counts it in `fieldgate_events_dropped_total{reason="store_error"}`;
//! methods, desired properties, reported properties and readiness are not affected.

mod db;
mod task;
pub mod wire;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::Database;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::EventsSettings;
use crate::metrics::Metrics;
pub use wire::{EventBody, StoredEvent};

/// Removals of acknowledged events are made durable at most this long after they were
/// committed without fsync.
pub const ACK_SYNC: Duration = Duration::from_secs(5);
/// Commands waiting for the writer. A poller waits for room (its door's events are never
/// refused for a full queue); an acknowledgement that finds no room stays with the link and
/// goes with the next one.
const QUEUE: usize = 4096;
/// The store's file inside `[events] dir`.
pub const FILE_NAME: &str = "events.redb";

#[derive(Debug, Clone, thiserror::Error)]
pub enum EventsError {
    #[error("event store: {0}")]
    Db(String),
    #[error("cannot create the event store directory {dir}: {error}")]
    Dir { dir: PathBuf, error: String },
    #[error("the event store has stopped")]
    Stopped,
}

pub(crate) enum Cmd {
    Append {
        door: Arc<str>,
        changes: Vec<(String, Value)>,
        created_ms: i64,
        reply: oneshot::Sender<Result<(u64, u64), EventsError>>,
    },
    Acked {
        door: Arc<str>,
        seqs: Vec<u64>,
    },
}

/// Per door: the sequence number after the last committed event, and the last value of each
/// event point as stored.
#[derive(Debug, Default)]
pub(crate) struct Doors {
    heads: std::collections::HashMap<String, watch::Sender<u64>>,
    last: std::collections::HashMap<String, Map<String, Value>>,
}

impl Doors {
    fn head(&mut self, door: &str) -> &watch::Sender<u64> {
        self.heads
            .entry(door.to_string())
            .or_insert_with(|| watch::channel(0).0)
    }
}

/// The gateway's event store: a writer task and the shared read side.
#[derive(Debug, Clone)]
pub struct EventStore {
    db: Arc<Database>,
    tx: mpsc::Sender<Cmd>,
    doors: Arc<Mutex<Doors>>,
    path: PathBuf,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Append { door, changes, .. } => write!(f, "Append({door}, {})", changes.len()),
            Cmd::Acked { door, seqs } => write!(f, "Acked({door}, {})", seqs.len()),
        }
    }
}

/// The running writer: stop it with [`EventStoreTask::stop`] after every door has stopped.
#[derive(Debug)]
pub struct EventStoreTask {
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

impl EventStoreTask {
    /// Commits what is pending (durably) and closes the file.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

impl EventStore {
    /// Opens (or creates) `dir/events.redb` and starts its writer task.
    pub fn open(
        settings: &EventsSettings,
        metrics: Arc<Metrics>,
    ) -> Result<(EventStore, EventStoreTask), EventsError> {
        std::fs::create_dir_all(&settings.dir).map_err(|e| EventsError::Dir {
            dir: settings.dir.clone(),
            error: e.to_string(),
        })?;
        let path = settings.dir.join(FILE_NAME);
        let store = db::Store::open(&path)?;
        let mut doors = Doors::default();
        for (id, d) in &store.doors {
            doors.head(id).send_replace(d.meta.next_seq);
            doors.last.insert(id.clone(), d.meta.last.clone());
        }
        tracing::info!(file = %path.display(), events = store.count, bytes = store.bytes, "event store open");
        let (tx, rx) = mpsc::channel(QUEUE);
        let doors = Arc::new(Mutex::new(doors));
        let cancel = CancellationToken::new();
        let database = Arc::clone(&store.db);
        let writer = task::Writer::new(store, settings, metrics, Arc::clone(&doors));
        let join = tokio::spawn(writer.run(rx, cancel.clone()));
        Ok((
            EventStore {
                db: database,
                tx,
                doors,
                path,
            },
            EventStoreTask { cancel, join },
        ))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The handle of one door, for its poller and its link.
    pub fn door(&self, device_id: &str) -> DoorEvents {
        let head = self
            .doors
            .lock()
            .expect("event doors lock")
            .head(device_id)
            .subscribe();
        DoorEvents {
            device_id: device_id.into(),
            db: Arc::clone(&self.db),
            tx: self.tx.clone(),
            head,
            doors: Arc::clone(&self.doors),
            unsent_acks: Vec::new(),
        }
    }

    /// Events of `device_id` on disk, in order (tests and tools).
    pub fn read(&self, device_id: &str) -> Result<Vec<StoredEvent>, EventsError> {
        db::Store::read(&self.db, device_id, 0, usize::MAX)
    }
}

/// One door's view of the store: its poller appends, its link reads and acknowledges.
#[derive(Debug)]
pub struct DoorEvents {
    device_id: Arc<str>,
    db: Arc<Database>,
    tx: mpsc::Sender<Cmd>,
    head: watch::Receiver<u64>,
    doors: Arc<Mutex<Doors>>,
    /// Acknowledgements the writer had no room for; sent with the next ones.
    unsent_acks: Vec<u64>,
}

impl Clone for DoorEvents {
    fn clone(&self) -> Self {
        DoorEvents {
            device_id: Arc::clone(&self.device_id),
            db: Arc::clone(&self.db),
            tx: self.tx.clone(),
            head: self.head.clone(),
            doors: Arc::clone(&self.doors),
            unsent_acks: Vec::new(),
        }
    }
}

impl DoorEvents {
    /// The last stored value of each event point (empty for a door never seen).
    pub fn last_values(&self) -> Map<String, Value> {
        self.doors
            .lock()
            .expect("event doors lock")
            .last
            .get(&*self.device_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Stores one event per change, in order, and returns the first and last sequence
    /// numbers once they are on disk (after at most `commit_interval` plus a commit).
    pub async fn append(&self, changes: Vec<(String, Value)>) -> Result<(u64, u64), EventsError> {
        let (reply, rx) = oneshot::channel();
        let created_ms = chrono::Utc::now().timestamp_millis();
        self.tx
            .send(Cmd::Append {
                door: Arc::clone(&self.device_id),
                changes,
                created_ms,
                reply,
            })
            .await
            .map_err(|_| EventsError::Stopped)?;
        rx.await.map_err(|_| EventsError::Stopped)?
    }

    /// The sequence number after the door's last committed event; changes when new events
    /// are committed.
    pub fn head(&mut self) -> &mut watch::Receiver<u64> {
        &mut self.head
    }

    /// Up to `max` stored events with a sequence number of at least `from`, in order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<StoredEvent>, EventsError> {
        db::Store::read(&self.db, &self.device_id, from, max)
    }

    /// The hub acknowledged `seq`: remove it (with the next commit).
    pub fn acked(&mut self, seq: u64) {
        self.unsent_acks.push(seq);
        let seqs = std::mem::take(&mut self.unsent_acks);
        match self.tx.try_send(Cmd::Acked {
            door: Arc::clone(&self.device_id),
            seqs,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Cmd::Acked { seqs, .. })) => {
                // At most one per event of the door the hub acknowledged meanwhile. Should
                // they never reach the writer (the link stops first), those events are only
                // sent again later: duplicates, marked by their seq.
                self.unsent_acks = seqs;
            }
            Err(_) => {}
        }
    }
}
