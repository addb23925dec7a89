//! Persistence in one redb database (`DATA_DIR/fieldhub.redb`): device records (identity +
//! twin), shared access policies and MQTT session subscriptions. Values are JSON documents.
//! Other modules (jobs) may define their own tables on [`Store::database`].

use std::path::Path;
use std::sync::Mutex;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const DEVICES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("devices");
pub const POLICIES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("policies");
pub const SESSIONS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("sessions");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: Box<redb::DatabaseError>,
    },
    /// Boxed: redb's error is large and every store call returns this type.
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    #[error("stored record is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("database is closed (hub shut down)")]
    Closed,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
    })*};
}
db_err!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The hub database. Closed explicitly on shutdown, so the same directory can be reopened
/// in-process (tests restart the hub) even while stray handles remain.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Option<Database>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("fieldhub.redb");
        // Device keys and policies live here: owner-only, created so before redb opens it.
        crate::files::make_private(&path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(redb::DatabaseError::Storage(redb::StorageError::Io(e))),
        })?;
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(source),
        })?;
        let store = Store {
            db: Mutex::new(Some(db)),
        };
        // Create the tables so that reads on a fresh database find them.
        store.with_db(|db| {
            let tx = db.begin_write()?;
            tx.open_table(DEVICES)?;
            tx.open_table(POLICIES)?;
            tx.open_table(SESSIONS)?;
            tx.commit()?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `f` on the open database (for modules that keep their own tables).
    pub fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Closed),
        }
    }

    /// Writes (or with `None` deletes) one JSON record. `durable = false` lets redb skip waiting for the
    /// fsync (reported properties, sessions): they are made durable by the next durable
    /// commit or [`Store::close`].
    pub fn put<T: Serialize>(
        &self,
        table: TableDefinition<'static, &str, &[u8]>,
        key: &str,
        value: Option<&T>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let bytes = value.map(serde_json::to_vec).transpose()?;
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            if !durable {
                tx.set_durability(Durability::Eventual);
            }
            {
                let mut t = tx.open_table(table)?;
                match &bytes {
                    Some(b) => {
                        t.insert(key, b.as_slice())?;
                    }
                    None => {
                        t.remove(key)?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// All records of a table, decoded.
    pub fn load<T: DeserializeOwned>(
        &self,
        table: TableDefinition<'static, &str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            // Tables other modules define appear with their first write.
            let t = match tx.open_table(table) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), serde_json::from_slice(v.value())?));
            }
            Ok(out)
        })
    }

    /// Makes every earlier non-durable commit durable, then closes the database.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = guard.as_ref() {
            let tx = db.begin_write()?;
            tx.commit()?;
        }
        *guard = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_including_non_durable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(DEVICES, "a", Some(&1u32), true).unwrap();
        s.put(DEVICES, "b", Some(&2u32), false).unwrap();
        s.put(DEVICES, "c", Some(&3u32), true).unwrap();
        s.put::<u32>(DEVICES, "c", None, true).unwrap();
        s.close().unwrap();
        assert!(matches!(s.load::<u32>(DEVICES), Err(StoreError::Closed)));
        let s = Store::open(dir.path()).unwrap();
        let rows: Vec<(String, u32)> = s.load(DEVICES).unwrap();
        assert_eq!(rows, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        const OTHER: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("other");
        assert!(s.load::<u32>(OTHER).unwrap().is_empty());
    }
}
