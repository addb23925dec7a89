//! The assignments learnt from the provisioning service, kept in one JSON file (mode 0600)
//! so a restart connects every door straight to its hub instead of registering again
//! (DPS limits registrations per minute). Written whole to a temporary file and renamed, so a
//! power cut leaves the old or the new file, never half of one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::register::Assignment;

#[derive(Debug)]
pub struct AssignmentCache {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Assignment>>,
}

impl AssignmentCache {
    /// Loads the file; a missing one is an empty cache, an unreadable one is logged and
    /// ignored (the doors register again).
    pub fn open(path: &Path) -> AssignmentCache {
        let entries = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "DPS assignment cache is not valid JSON: doors will register again");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the DPS assignment cache: doors will register again");
                BTreeMap::new()
            }
        };
        AssignmentCache {
            path: path.to_path_buf(),
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, registration_id: &str) -> Option<Assignment> {
        self.lock().get(registration_id).cloned()
    }

    pub fn put(&self, registration_id: &str, a: Assignment) {
        let mut m = self.lock();
        m.insert(registration_id.to_string(), a);
        self.save(&m);
    }

    /// Drops an assignment the hub no longer honours; the door registers again.
    pub fn forget(&self, registration_id: &str) -> bool {
        let mut m = self.lock();
        let had = m.remove(registration_id).is_some();
        if had {
            self.save(&m);
        }
        had
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Assignment>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, m: &BTreeMap<String, Assignment>) {
        if let Err(e) = write_private(
            &self.path,
            &serde_json::to_vec_pretty(m).unwrap_or_default(),
        ) {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot write the DPS assignment cache: a restart will register these doors again");
        }
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/dps.json");
        let c = AssignmentCache::open(&path);
        let a = Assignment {
            assigned_hub: "hub.example:8883".into(),
            device_id: "door-1".into(),
        };
        c.put("door-1", a.clone());
        c.put("door-2", a.clone());
        assert!(c.forget("door-2"));
        let c = AssignmentCache::open(&path);
        assert_eq!(c.get("door-1"), Some(a));
        assert_eq!(c.get("door-2"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
