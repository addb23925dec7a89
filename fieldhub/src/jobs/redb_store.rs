//! [`JobStore`] on the hub's own redb database (`DATA_DIR/fieldhub.redb`), so jobs, their
//! schedules and per-device results survive a restart.
//!
//! Two tables: `jobs` (job id → the job without its device records, JSON) and `job_devices`
//! (`(job id, device id)` → one device record, JSON). Every commit is durable (redb's default
//! `Durability::Immediate`: fsynced before `commit` returns), device records included: the
//! engine records that it is about to call a device before calling it, so after a crash (even
//! `kill -9` between two device calls) the record tells whether the device may have been
//! reached. The engine batches device records into [`JobStore::save_devices`] so that one
//! fsync covers many devices when jobs are unthrottled.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition};

use super::model::DeviceJob;
use super::state::JobState;
use super::store::{JobStore, JobStoreError};
use crate::hub::Hub;
use crate::store::StoreError;

pub const JOBS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("jobs");
pub const JOB_DEVICES: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("job_devices");

/// The jobs tables in the database of a [`Hub`]. Holding the hub (not the database) keeps the
/// hub's close-on-shutdown working: writes after shutdown fail instead of reopening anything.
#[derive(Debug, Clone)]
pub struct RedbJobStore {
    hub: Hub,
}

fn err(job_id: &str, e: impl std::fmt::Display) -> JobStoreError {
    JobStoreError(format!("job '{job_id}': {e}"))
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// The job's header: the job with an empty device map (those have their own rows).
fn header(job: &JobState) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&JobHeader(job))
}

/// Serialises a job without cloning its device records.
struct JobHeader<'a>(&'a JobState);

impl serde::Serialize for JobHeader<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let j = self.0;
        let empty = JobState {
            request: j.request.clone(),
            status: j.status,
            created_time: j.created_time,
            end_time: j.end_time,
            started_time: j.started_time,
            failure_reason: j.failure_reason.clone(),
            selected_time: j.selected_time,
            devices: BTreeMap::new(),
        };
        empty.serialize(s)
    }
}

impl RedbJobStore {
    /// Creates the tables if needed.
    pub fn open(hub: Hub) -> Result<Self, StoreError> {
        hub.store().with_db(|d| {
            let tx = d.begin_write().map_err(db)?;
            tx.open_table(JOBS).map_err(db)?;
            tx.open_table(JOB_DEVICES).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(())
        })?;
        Ok(Self { hub })
    }
}

impl JobStore for RedbJobStore {
    fn save_job(&self, job: &JobState) -> Result<(), JobStoreError> {
        let id = job.id();
        let head = header(job).map_err(|e| err(id, e))?;
        let devices = job
            .devices
            .values()
            .map(|d| Ok((d.device_id.as_str(), serde_json::to_vec(d)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| err(id, e))?;
        self.hub
            .store()
            .with_db(|d| {
                let tx = d.begin_write().map_err(db)?;
                {
                    tx.open_table(JOBS)
                        .map_err(db)?
                        .insert(id, head.as_slice())
                        .map_err(db)?;
                    // Device records are only ever added to a job, never removed: upsert.
                    let mut t = tx.open_table(JOB_DEVICES).map_err(db)?;
                    for (device, bytes) in &devices {
                        t.insert((id, *device), bytes.as_slice()).map_err(db)?;
                    }
                }
                tx.commit().map_err(db)?;
                Ok(())
            })
            .map_err(|e| err(id, e))
    }

    fn save_devices(&self, job_id: &str, devices: &[&DeviceJob]) -> Result<(), JobStoreError> {
        let rows = devices
            .iter()
            .map(|d| Ok((d.device_id.as_str(), serde_json::to_vec(d)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| err(job_id, e))?;
        self.hub
            .store()
            .with_db(|d| {
                let tx = d.begin_write().map_err(db)?;
                {
                    let mut t = tx.open_table(JOB_DEVICES).map_err(db)?;
                    for (device, bytes) in &rows {
                        t.insert((job_id, *device), bytes.as_slice()).map_err(db)?;
                    }
                }
                tx.commit().map_err(db)?;
                Ok(())
            })
            .map_err(|e| err(job_id, e))
    }

    fn delete_job(&self, job_id: &str) -> Result<(), JobStoreError> {
        self.hub
            .store()
            .with_db(|d| {
                let tx = d.begin_write().map_err(db)?;
                {
                    tx.open_table(JOBS)
                        .map_err(db)?
                        .remove(job_id)
                        .map_err(db)?;
                    let mut t = tx.open_table(JOB_DEVICES).map_err(db)?;
                    // Device ids are non-empty, so ("", ..) sorts before every record of the
                    // job; collect first because the range borrows the table.
                    let mut keys = Vec::new();
                    for row in t.range((job_id, "")..).map_err(db)? {
                        let (k, _) = row.map_err(db)?;
                        let (j, device) = k.value();
                        if j != job_id {
                            break;
                        }
                        keys.push(device.to_owned());
                    }
                    for device in &keys {
                        t.remove((job_id, device.as_str())).map_err(db)?;
                    }
                }
                tx.commit().map_err(db)?;
                Ok(())
            })
            .map_err(|e| err(job_id, e))
    }

    fn load_jobs(&self) -> Result<Vec<JobState>, JobStoreError> {
        let (heads, rows) = self
            .hub
            .store()
            .with_db(|d| {
                let tx = d.begin_read().map_err(db)?;
                let mut heads = Vec::new();
                for row in tx.open_table(JOBS).map_err(db)?.iter().map_err(db)? {
                    let (k, v) = row.map_err(db)?;
                    heads.push((k.value().to_owned(), v.value().to_vec()));
                }
                let mut rows = Vec::new();
                for row in tx.open_table(JOB_DEVICES).map_err(db)?.iter().map_err(db)? {
                    let (k, v) = row.map_err(db)?;
                    rows.push((k.value().0.to_owned(), v.value().to_vec()));
                }
                Ok((heads, rows))
            })
            .map_err(|e| JobStoreError(format!("loading jobs: {e}")))?;
        let mut jobs = BTreeMap::new();
        for (id, bytes) in heads {
            let job: JobState = serde_json::from_slice(&bytes).map_err(|e| err(&id, e))?;
            jobs.insert(id, job);
        }
        for (job_id, bytes) in rows {
            let d: DeviceJob = serde_json::from_slice(&bytes).map_err(|e| err(&job_id, e))?;
            match jobs.get_mut(&job_id) {
                Some(job) => {
                    job.devices.insert(d.device_id.clone(), d);
                }
                None => tracing::warn!(job = job_id, "device record of an unknown job ignored"),
            }
        }
        Ok(jobs.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{DeviceJobStatus, JobRequest};
    use serde_json::{json, Value};

    fn job(id: &str) -> JobState {
        let req: JobRequest =
            serde_json::from_value(json!({"jobId": id, "type": "scheduleUpdateTwin",
            "updateTwin": {"etag": "*", "properties": {"desired": {"Floor": 3}}}, "queryCondition": "*"}))
            .unwrap();
        let mut j = JobState::new(req, chrono::Utc::now()).unwrap();
        let twins: Vec<Value> = (0..3)
            .map(|i| json!({"deviceId": format!("d{i}")}))
            .collect();
        j.start(&twins, chrono::Utc::now());
        j
    }

    /// A hub over the database in `dir`, without listeners or a job engine.
    fn bare_hub(dir: &std::path::Path) -> Hub {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let store = crate::store::Store::open(dir).unwrap();
        Hub::open(
            "localhost".into(),
            addr,
            addr,
            store,
            Default::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn jobs_and_device_records_survive_reopen_and_delete_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let hub = bare_hub(dir.path());
        let store = RedbJobStore::open(hub.clone()).unwrap();
        let mut a = job("a");
        let b = job("a-b");
        store.save_job(&a).unwrap();
        store.save_job(&b).unwrap();
        a.device_started("d1", chrono::Utc::now());
        store.save_device("a", &a.devices["d1"]).unwrap();
        hub.close_store();

        let hub = bare_hub(dir.path());
        let store = RedbJobStore::open(hub.clone()).unwrap();
        let loaded = store.load_jobs().unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], a, "header and device records round-trip");
        assert_eq!(loaded[0].devices["d1"].status, DeviceJobStatus::Running);
        store.delete_job("a").unwrap();
        let loaded = store.load_jobs().unwrap();
        assert_eq!(loaded, vec![b], "deleting 'a' leaves 'a-b' and its devices");
        hub.close_store();
    }
}
