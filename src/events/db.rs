//! The event store on redb, synchronous: what one commit does (append, remove what the hub
//! acknowledged, enforce the size and age bounds) and the per-door summary kept in memory so
//! that neither bound needs a scan.
//!
//! Tables: `events` — `(device id, seq)` → record ([`wire::record`]); `doors` — device id →
//! [`DoorMeta`] (the next sequence number and the last value of each event point, so a
//! restart continues the numbering and sees a change that happened while it was down).
//! Keys sort by door then sequence, so a door's events read back in order with one range.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::wire::{self, StoredEvent};
use super::EventsError;

const EVENTS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("events");
const DOORS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("doors");

/// redb's page cache (default up to 1 GiB): a Pi needs only the hot pages of a small tree.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

fn db<E: Into<redb::Error>>(e: E) -> EventsError {
    EventsError::Db(e.into().to_string())
}

/// What a door's row in `doors` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DoorMeta {
    /// The sequence number of the door's next event (the first is 1).
    pub(crate) next_seq: u64,
    /// The last value of each event point, as stored with its event.
    pub(crate) last: Map<String, Value>,
}

/// What the store holds for one door, kept in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct DoorSummary {
    pub(crate) meta: DoorMeta,
    pub(crate) count: u64,
    /// Key and record bytes of the door's events (what `max_bytes` bounds).
    pub(crate) bytes: u64,
    /// The door's oldest event: (seq, created ms).
    pub(crate) front: Option<(u64, i64)>,
}

/// New events of one door, in order.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) door: String,
    /// (point, value) per event.
    pub(crate) changes: Vec<(String, Value)>,
    pub(crate) created_ms: i64,
}

/// Everything one commit writes.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) appends: Vec<Append>,
    /// Events the hub acknowledged: (door, seq).
    pub(crate) acked: Vec<(String, u64)>,
    /// fsync before returning; otherwise a non-durable commit, made durable by a later one.
    pub(crate) durable: bool,
}

/// What a commit did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Committed {
    /// First and last sequence number given to each append, in batch order.
    pub(crate) seqs: Vec<(u64, u64)>,
    pub(crate) removed_acked: u64,
    pub(crate) dropped_full: u64,
    pub(crate) dropped_age: u64,
}

/// The bounds a commit enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_bytes: u64,
    pub(crate) max_age_ms: i64,
}

/// The open store and its summary.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) db: std::sync::Arc<Database>,
    pub(crate) doors: HashMap<String, DoorSummary>,
    pub(crate) bytes: u64,
    pub(crate) count: u64,
}

fn key_bytes(door: &str) -> u64 {
    door.len() as u64 + 8
}

impl Store {
    /// Opens (or creates) the store file and summarises it. After a crash redb repairs the
    /// file first (back to its last durable commit).
    pub(crate) fn open(path: &Path) -> Result<Store, EventsError> {
        let database = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(db)?;
        let tx = database.begin_write().map_err(db)?;
        tx.open_table(EVENTS).map_err(db)?;
        tx.open_table(DOORS).map_err(db)?;
        tx.commit().map_err(db)?;
        let mut s = Store {
            db: std::sync::Arc::new(database),
            doors: HashMap::new(),
            bytes: 0,
            count: 0,
        };
        s.rescan()?;
        Ok(s)
    }

    /// Rebuilds the summary from the file (at open, and after a failed commit).
    pub(crate) fn rescan(&mut self) -> Result<(), EventsError> {
        let tx = self.db.begin_read().map_err(db)?;
        let mut doors: HashMap<String, DoorSummary> = HashMap::new();
        for row in tx.open_table(DOORS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let meta: DoorMeta = serde_json::from_slice(v.value()).unwrap_or_default();
            doors.entry(k.value().to_string()).or_default().meta = meta;
        }
        let (mut bytes, mut count) = (0, 0);
        let events = tx.open_table(EVENTS).map_err(db)?;
        for row in events.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let (door, seq) = k.value();
            let d = doors.entry(door.to_string()).or_default();
            let size = key_bytes(door) + v.value().len() as u64;
            d.count += 1;
            d.bytes += size;
            if d.front.is_none() {
                d.front = Some((seq, wire::record_created(v.value())));
            }
            // A row written before its meta could never be renumbered over.
            d.meta.next_seq = d.meta.next_seq.max(seq + 1);
            bytes += size;
            count += 1;
        }
        self.doors = doors;
        self.bytes = bytes;
        self.count = count;
        Ok(())
    }

    /// Up to `max` events of `door` with a sequence number of at least `from`, in order.
    /// A read transaction never waits for the writer (redb is MVCC).
    pub(crate) fn read(
        database: &Database,
        door: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, EventsError> {
        let tx = database.begin_read().map_err(db)?;
        let table = tx.open_table(EVENTS).map_err(db)?;
        let mut out = Vec::new();
        for row in table.range((door, from)..=(door, u64::MAX)).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            if let Some(ev) = wire::parse_record(k.value().1, v.value()) {
                out.push(ev);
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Events stored in the file (for tests).
    #[cfg(test)]
    pub(crate) fn len_on_disk(database: &Database) -> Result<u64, EventsError> {
        use redb::ReadableTableMetadata as _;
        let tx = database.begin_read().map_err(db)?;
        tx.open_table(EVENTS).map_err(db)?.len().map_err(db)
    }

    /// Writes one batch: appends (numbered from each door's `next_seq`), removals of
    /// acknowledged events, then drops the oldest events beyond `limits`. On error nothing is
    /// written and the summary is rebuilt from the file.
    pub(crate) fn commit(
        &mut self,
        batch: Batch,
        limits: Limits,
        now_ms: i64,
    ) -> Result<Committed, EventsError> {
        let r = self.try_commit(batch, limits, now_ms);
        if r.is_err() {
            // The summary may hold changes the file does not; the file is the truth.
            let _ = self.rescan();
        }
        r
    }

    fn try_commit(
        &mut self,
        batch: Batch,
        limits: Limits,
        now_ms: i64,
    ) -> Result<Committed, EventsError> {
        let mut tx = self.db.begin_write().map_err(db)?;
        tx.set_durability(if batch.durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        let mut out = Committed::default();
        {
            let mut events = tx.open_table(EVENTS).map_err(db)?;
            let mut metas = tx.open_table(DOORS).map_err(db)?;
            for a in &batch.appends {
                let d = self.doors.entry(a.door.clone()).or_default();
                let first = d.meta.next_seq.max(1);
                let mut seq = first;
                for (point, value) in &a.changes {
                    let rec =
                        wire::record(a.created_ms, &wire::body(seq, point, value, a.created_ms));
                    events
                        .insert((a.door.as_str(), seq), rec.as_slice())
                        .map_err(db)?;
                    let size = key_bytes(&a.door) + rec.len() as u64;
                    d.count += 1;
                    d.bytes += size;
                    d.front.get_or_insert((seq, a.created_ms));
                    d.meta.last.insert(point.clone(), value.clone());
                    self.bytes += size;
                    self.count += 1;
                    seq += 1;
                }
                d.meta.next_seq = seq;
                let meta = serde_json::to_vec(&d.meta).expect("meta serialises");
                metas.insert(a.door.as_str(), meta.as_slice()).map_err(db)?;
                out.seqs.push((first, seq - 1));
            }
            for (door, seq) in &batch.acked {
                if self.remove(&mut events, door, *seq)? {
                    out.removed_acked += 1;
                }
            }
            while self.bytes > limits.max_bytes {
                let Some((door, seq, _)) = self.oldest() else {
                    break;
                };
                self.remove(&mut events, &door, seq)?;
                out.dropped_full += 1;
            }
            while let Some((door, seq, created)) = self.oldest() {
                if now_ms.saturating_sub(created) <= limits.max_age_ms {
                    break;
                }
                self.remove(&mut events, &door, seq)?;
                out.dropped_age += 1;
            }
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// The oldest event of the store: (door, seq, created ms).
    pub(crate) fn oldest(&self) -> Option<(String, u64, i64)> {
        self.doors
            .iter()
            .filter_map(|(k, d)| d.front.map(|(s, c)| (c, s, k)))
            .min()
            .map(|(c, s, k)| (k.clone(), s, c))
    }

    fn remove(
        &mut self,
        events: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
        door: &str,
        seq: u64,
    ) -> Result<bool, EventsError> {
        let Some(size) = events
            .remove((door, seq))
            .map_err(db)?
            .map(|v| key_bytes(door) + v.value().len() as u64)
        else {
            return Ok(false);
        };
        let Some(d) = self.doors.get_mut(door) else {
            return Ok(true);
        };
        d.count = d.count.saturating_sub(1);
        d.bytes = d.bytes.saturating_sub(size);
        self.count = self.count.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(size);
        if d.front.is_some_and(|(s, _)| s == seq) {
            d.front = match events
                .range((door, seq + 1)..=(door, u64::MAX))
                .map_err(db)?
                .next()
            {
                Some(row) => {
                    let (k, v) = row.map_err(db)?;
                    Some((k.value().1, wire::record_created(v.value())))
                }
                None => None,
            };
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOMY: Limits = Limits {
        max_bytes: u64::MAX,
        max_age_ms: i64::MAX,
    };

    fn append(door: &str, n: usize, created_ms: i64) -> Append {
        Append {
            door: door.into(),
            changes: (0..n).map(|i| ("p".to_string(), json!(i))).collect(),
            created_ms,
        }
    }

    fn batch(appends: Vec<Append>, acked: Vec<(&str, u64)>) -> Batch {
        Batch {
            appends,
            acked: acked.into_iter().map(|(d, s)| (d.to_string(), s)).collect(),
            durable: true,
        }
    }

    fn seqs(s: &Store, door: &str) -> Vec<u64> {
        Store::read(&s.db, door, 0, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn numbering_survives_reopen_and_acks_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        let mut s = Store::open(&path).unwrap();
        let c = s
            .commit(
                batch(vec![append("a", 3, 10), append("b", 1, 11)], vec![]),
                ROOMY,
                20,
            )
            .unwrap();
        assert_eq!(c.seqs, [(1, 3), (1, 1)]);
        let c = s
            .commit(batch(vec![], vec![("a", 1), ("a", 9)]), ROOMY, 20)
            .unwrap();
        assert_eq!(c.removed_acked, 1, "an unknown seq is not counted");
        assert_eq!(seqs(&s, "a"), [2, 3]);
        assert_eq!(s.doors["a"].front, Some((2, 10)));
        drop(s);

        let mut s = Store::open(&path).unwrap();
        assert_eq!((s.count, s.doors["a"].meta.next_seq), (3, 4));
        assert_eq!(s.doors["a"].meta.last["p"], json!(2));
        let c = s
            .commit(batch(vec![append("a", 1, 30)], vec![]), ROOMY, 30)
            .unwrap();
        assert_eq!(c.seqs, [(4, 4)], "numbering continues after a restart");
        assert_eq!(Store::len_on_disk(&s.db).unwrap(), 4);
    }

    #[test]
    fn full_store_drops_the_oldest_across_doors_and_old_events_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("e.redb")).unwrap();
        s.commit(
            batch(vec![append("a", 2, 100), append("b", 2, 50)], vec![]),
            ROOMY,
            100,
        )
        .unwrap();
        let per_event = s.bytes / 4;
        let limits = Limits {
            max_bytes: per_event * 3,
            max_age_ms: i64::MAX,
        };
        let c = s
            .commit(batch(vec![append("a", 1, 200)], vec![]), limits, 200)
            .unwrap();
        assert_eq!(c.dropped_full, 2, "two over the bound");
        assert_eq!(
            seqs(&s, "b"),
            Vec::<u64>::new(),
            "b's events were the oldest"
        );
        assert_eq!(seqs(&s, "a"), [1, 2, 3]);

        let aging = Limits {
            max_bytes: u64::MAX,
            max_age_ms: 150,
        };
        let c = s.commit(batch(vec![], vec![]), aging, 300).unwrap();
        assert_eq!(c.dropped_age, 2);
        assert_eq!(seqs(&s, "a"), [3]);
        assert_eq!(s.count, 1);
    }

    /// Bytes this process has handed to write(2) so far (Linux).
    fn written() -> u64 {
        std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("wchar: ")?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Figures for docs/BENCHMARKS.md, on the disk that holds `FIELDGATE_EVENTS_BENCH_DIR`
    /// (default: the system temp dir): events per second with one durable commit per batch,
    /// and bytes written per event (appended, then removed by acknowledgement). Run with
    /// `cargo test --release --lib events::db::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_commit_rate_and_bytes_per_event() {
        let base = std::env::var_os("FIELDGATE_EVENTS_BENCH_DIR")
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
        let dir = tempfile::tempdir_in(base).unwrap();
        let mut s = Store::open(&dir.path().join("e.redb")).unwrap();
        for (doors, per_door) in [(1usize, 1usize), (10, 1), (100, 1), (1000, 1)] {
            let batches = 200 / doors.max(1) + 20;
            let w0 = written();
            let t0 = std::time::Instant::now();
            let mut seq = 0;
            for b in 0..batches {
                let appends = (0..doors)
                    .map(|d| append(&format!("r{doors}-{d:04}"), per_door, b as i64))
                    .collect();
                s.commit(batch(appends, vec![]), ROOMY, b as i64).unwrap();
                seq += per_door as u64;
            }
            let took = t0.elapsed();
            let events = (batches * doors * per_door) as u64;
            let w_append = written() - w0;
            let w1 = written();
            let acked: Vec<(String, u64)> = (0..doors)
                .flat_map(|d| (1..=seq).map(move |q| (format!("r{doors}-{d:04}"), q)))
                .collect();
            for chunk in acked.chunks(doors.max(8)) {
                let b = Batch {
                    appends: vec![],
                    acked: chunk.to_vec(),
                    durable: false,
                };
                s.commit(b, ROOMY, 0).unwrap();
            }
            s.commit(batch(vec![], vec![]), ROOMY, 0).unwrap();
            let w_remove = written() - w1;
            println!(
                "batch of {doors:>4} events: {:>7.0} events/s ({:>5.1} durable commits/s), {:>6} B written per event appended, {:>6} B per event removed",
                events as f64 / took.as_secs_f64(),
                batches as f64 / took.as_secs_f64(),
                w_append / events,
                w_remove / events
            );
        }
    }
}
