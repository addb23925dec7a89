//! `devices provision`: makes the hub match the gateway's device map. Creates missing
//! identities, patches twin tags where they differ from the map, and writes each device's
//! primary key to `KEYS_DIR/<device-id>.key` (mode 0600, the base64 key alone — a form the
//! gateway's `key_file` reads). Running it twice changes nothing the second time.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::CtlError;
use crate::service::model::{Device, TwinPatch};
use crate::service::{ClientError, ServiceClient};

/// One device of the map, as far as provisioning cares.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionItem {
    pub device_id: String,
    pub tags: Map<String, Value>,
    /// The primary key the map fixes for this door (given inline, or derived from a group
    /// key), which the identity must have; `None` lets fieldctl generate one.
    pub key: Option<String>,
    /// Where the map's `key_file` says this door's key lives; written when `--keys-dir` is
    /// not given.
    pub key_file: Option<PathBuf>,
}

/// The gateway's device map → the devices to provision, through the gateway's own config
/// loader, so provisioning sees exactly what `fieldgate check` validates (key files that do
/// not exist yet are fine: provisioning writes them).
pub fn provision_items_from_config(path: &Path) -> Result<Vec<ProvisionItem>, CtlError> {
    let map = crate::config::load_for_provisioning(path)
        .map_err(|e| CtlError::Usage(format!("invalid device map:\n{e}")))?;
    Ok(items_from_map(map))
}

fn items_from_map(map: crate::config::Provisioning) -> Vec<ProvisionItem> {
    use crate::config::ProvisionKey;
    map.doors
        .into_iter()
        .map(|d| {
            let (key, key_file) = match d.key {
                ProvisionKey::Known(k) => (Some(k.expose().to_string()), None),
                ProvisionKey::File { path, key } => (Some(key.expose().to_string()), Some(path)),
                ProvisionKey::MissingFile { path } => (None, Some(path)),
            };
            ProvisionItem {
                device_id: d.device_id,
                tags: d.tags,
                key,
                key_file,
            }
        })
        .collect()
}

/// What happened to one device's identity and tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
    Failed,
}

/// What happened to one device's key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyChange {
    Written,
    Unchanged,
    /// The identity has no symmetric key (X.509 devices).
    NoKey,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionResult {
    pub device_id: String,
    pub change: Change,
    /// Tag keys (top level) that were, or in a dry run would be, patched.
    pub tags_changed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The smallest JSON merge patch that makes `current` hold everything in `wanted`. Tags the
/// map does not mention are left alone: operators may add their own.
pub fn tags_patch(current: &Map<String, Value>, wanted: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (k, want) in wanted {
        match (current.get(k), want) {
            (Some(Value::Object(cur)), Value::Object(w)) => {
                let sub = tags_patch(cur, w);
                if !sub.is_empty() {
                    patch.insert(k.clone(), Value::Object(sub));
                }
            }
            (Some(cur), want) if cur == want => {}
            (_, want) => {
                patch.insert(k.clone(), want.clone());
            }
        }
    }
    patch
}

pub fn key_file_path(dir: &Path, device_id: &str) -> PathBuf {
    dir.join(format!("{device_id}.key"))
}

fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Writes `key` to `path` with mode 0600 unless it already holds exactly that key with that
/// mode. Written via a temporary file and rename, so a reader never sees half a key.
pub fn write_key_file(path: &Path, key: &str, dry_run: bool) -> Result<KeyChange, CtlError> {
    let err = |e: std::io::Error| CtlError::Write {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    if let Ok(existing) = std::fs::read_to_string(path) {
        if existing.trim() == key && mode_is_private(path) {
            return Ok(KeyChange::Unchanged);
        }
    }
    if dry_run {
        return Ok(KeyChange::Written);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    // The mode given to open() only applies to new files; a stale temp file keeps its own.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(key.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(KeyChange::Written)
}

fn mode_is_private(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        true
    }
}

/// Errors that make every other device fail too: stop instead of listing them all.
fn is_fatal(e: &ClientError) -> bool {
    match e {
        ClientError::Service(s) => matches!(s.status, 401 | 403),
        _ => true,
    }
}

/// Provisions every item, one after the other (the registry is throttled per minute).
pub async fn provision(
    client: &ServiceClient,
    items: &[ProvisionItem],
    keys_dir: Option<&Path>,
    dry_run: bool,
) -> Result<Vec<ProvisionResult>, CtlError> {
    let mut seen = std::collections::HashSet::new();
    for it in items {
        if !seen.insert(it.device_id.as_str()) {
            return Err(CtlError::usage(format!(
                "device '{}' appears twice in the map",
                it.device_id
            )));
        }
    }
    let mut results = Vec::with_capacity(items.len());
    for it in items {
        let r = match provision_one(client, it, keys_dir, dry_run).await {
            Ok(r) => r,
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Device(error)) => ProvisionResult {
                device_id: it.device_id.clone(),
                change: Change::Failed,
                tags_changed: Vec::new(),
                key_file: None,
                key: None,
                error: Some(error),
            },
        };
        results.push(r);
    }
    Ok(results)
}

enum Step {
    Fatal(CtlError),
    Device(String),
}

impl From<ClientError> for Step {
    fn from(e: ClientError) -> Self {
        if is_fatal(&e) {
            Step::Fatal(e.into())
        } else {
            Step::Device(e.to_string())
        }
    }
}

async fn provision_one(
    client: &ServiceClient,
    it: &ProvisionItem,
    keys_dir: Option<&Path>,
    dry_run: bool,
) -> Result<ProvisionResult, Step> {
    let id = &it.device_id;
    let existing = match client.get_device(id).await {
        Ok(d) => Some(d),
        Err(ClientError::Service(s)) if s.status == 404 => None,
        Err(e) => return Err(e.into()),
    };
    let created = existing.is_none();
    let device = match existing {
        Some(d) => Some(d),
        None if dry_run => None,
        None => {
            let primary = it.key.clone().unwrap_or_else(random_key);
            let mut d = client
                .create_device(&Device::new_sas(id, primary.clone(), random_key()))
                .await?;
            // A hub that ignores the keys it was given reports its own; keep ours otherwise.
            if d.primary_key().is_none() {
                d = Device::new_sas(id, primary, String::new());
            }
            Some(d)
        }
    };
    if let (Some(want), Some(d)) = (&it.key, &device) {
        if d.primary_key() != Some(want.as_str()) {
            // Rotating an identity's key would cut off whatever uses it now: the operator
            // decides, fieldctl only reports.
            return Err(Step::Device(
                "the identity's primary key differs from the key the map gives this door; \
                 fix the map or rotate the identity's key"
                    .into(),
            ));
        }
    }
    let current_tags = match (&device, created && dry_run) {
        (_, true) | (None, _) => Map::new(),
        (Some(_), false) => client.get_twin(id).await?.tags,
    };
    let patch = tags_patch(&current_tags, &it.tags);
    let tags_changed: Vec<String> = patch.keys().cloned().collect();
    if !patch.is_empty() && !dry_run {
        client
            .patch_twin(
                id,
                &TwinPatch {
                    tags: patch,
                    desired: Map::new(),
                },
            )
            .await?;
    }
    let target = keys_dir
        .map(|dir| key_file_path(dir, id))
        .or_else(|| it.key_file.clone());
    let (key_file, key) = match target {
        None => (None, None),
        Some(path) => {
            let change = match device.as_ref().and_then(Device::primary_key) {
                Some(k) => write_key_file(&path, k, dry_run).map_err(Step::Fatal)?,
                // Dry run of a device still to be created: its key will be written.
                None if device.is_none() => KeyChange::Written,
                None => KeyChange::NoKey,
            };
            (Some(path), Some(change))
        }
    };
    let change = if created {
        Change::Created
    } else if !tags_changed.is_empty() {
        Change::Updated
    } else {
        Change::Unchanged
    };
    Ok(ProvisionResult {
        device_id: id.clone(),
        change,
        tags_changed,
        key_file,
        key,
        error: None,
    })
}

/// Table and totals for people.
pub fn render(style: super::output::Style, results: &[ProvisionResult], dry_run: bool) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let what = match r.change {
                Change::Created => "created",
                Change::Updated => "updated",
                Change::Unchanged => "unchanged",
                Change::Failed => "failed",
            };
            let detail = match &r.error {
                Some(e) => e.clone(),
                None if r.tags_changed.is_empty() => String::new(),
                None => format!("tags: {}", r.tags_changed.join(", ")),
            };
            let key = match (r.key, &r.key_file) {
                (Some(KeyChange::Written), Some(p)) => format!("written {}", p.display()),
                (Some(KeyChange::Unchanged), Some(p)) => format!("unchanged {}", p.display()),
                (Some(KeyChange::NoKey), _) => "no symmetric key".into(),
                _ => String::new(),
            };
            vec![r.device_id.clone(), what.into(), detail, key]
        })
        .collect();
    let count = |c: Change| results.iter().filter(|r| r.change == c).count();
    let mut out = super::output::table(style, &["DEVICE", "RESULT", "DETAIL", "KEY FILE"], &rows);
    out.push_str(&format!(
        "\n{} created, {} updated, {} unchanged, {} failed",
        count(Change::Created),
        count(Change::Updated),
        count(Change::Unchanged),
        count(Change::Failed)
    ));
    if dry_run {
        out.push_str(" (dry run: nothing was changed)");
    }
    out
}

#[cfg(test)]
#[path = "provision_tests.rs"]
mod tests;
