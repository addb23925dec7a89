//! `devices provision`: makes the hub match the gateway's device map. Creates missing
//! identities, patches twin tags where they differ from the map, and writes each device's
//! primary key to `KEYS_DIR/<device-id>.key` (mode 0600, the base64 key alone — a form the
//! gateway's `key_file` reads). Running it twice changes nothing the second time.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use super::client::{ClientError, ServiceClient};
use super::error::CtlError;
use super::model::{Device, TwinPatch};

/// One device of the map, as far as provisioning cares.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionItem {
    pub device_id: String,
    pub tags: Map<String, Value>,
}

/// PLUG-IN POINT: the gateway's device map (TOML) → the devices to provision.
///
/// Until the gateway's config loader is merged this reads the map loosely: every `[[door]]`
/// table's `device_id` (string) and optional `tags` (table). Replace the body with a call to
/// the config loader (`config::load(path)?` → doors → `ProvisionItem`) so provisioning sees
/// exactly what the gateway validates.
pub fn provision_items_from_config(path: &Path) -> Result<Vec<ProvisionItem>, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|e| CtlError::File {
        what: "device map",
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    items_from_toml(&text)
        .map_err(|detail| CtlError::Usage(format!("{}: {detail}", path.display())))
}

fn items_from_toml(text: &str) -> Result<Vec<ProvisionItem>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| super::error::one_line(&e.to_string()))?;
    let Some(doors) = table.get("door") else {
        return Ok(Vec::new());
    };
    let doors = doors
        .as_array()
        .ok_or("`door` must be an array of tables ([[door]])")?;
    doors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let n = i + 1;
            let device_id = d
                .get("device_id")
                .and_then(toml::Value::as_str)
                .ok_or(format!("door #{n} has no device_id"))?
                .to_string();
            let tags = match d.get("tags") {
                None => Map::new(),
                Some(t @ toml::Value::Table(_)) => match serde_json::to_value(t) {
                    Ok(Value::Object(m)) => m,
                    _ => return Err(format!("door {device_id}: tags cannot be turned into JSON")),
                },
                Some(_) => return Err(format!("door {device_id}: tags must be a table")),
            };
            Ok(ProvisionItem { device_id, tags })
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
            let primary = random_key();
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
    let (key_file, key) = match keys_dir {
        None => (None, None),
        Some(dir) => {
            let path = key_file_path(dir, id);
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
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tags_patch_is_minimal_and_keeps_foreign_tags() {
        let cur = obj(json!({"building":"43","floor":2,"site":{"zone":"A","row":1},"owner":"ops"}));
        let want = obj(json!({"building":"43","floor":3,"site":{"zone":"A","row":2},"new":true}));
        assert_eq!(
            Value::Object(tags_patch(&cur, &want)),
            json!({"floor":3,"site":{"row":2},"new":true})
        );
        assert!(tags_patch(&cur, &obj(json!({"building":"43"}))).is_empty());
        // An object replacing a scalar is sent whole.
        assert_eq!(
            Value::Object(tags_patch(&obj(json!({"a":1})), &obj(json!({"a":{"b":2}})))),
            json!({"a":{"b":2}})
        );
    }

    #[test]
    fn reads_doors_from_toml() {
        let items = items_from_toml(
            r#"
            [hub]
            hostname = "localhost:8883"
            [[door]]
            device_id = "door-01"
            tags = { building = "43", floor = 3, site = { zone = "B" } }
            [[door]]
            device_id = "door-02"
            "#,
        )
        .unwrap();
        assert_eq!(
            items,
            vec![
                ProvisionItem {
                    device_id: "door-01".into(),
                    tags: obj(json!({"building":"43","floor":3,"site":{"zone":"B"}}))
                },
                ProvisionItem {
                    device_id: "door-02".into(),
                    tags: Map::new()
                },
            ]
        );
        assert_eq!(
            items_from_toml("[[door]]\nbus = \"a\"").unwrap_err(),
            "door #1 has no device_id"
        );
        assert!(items_from_toml("door = [").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_idempotent() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(&dir.path().join("keys"), "door-01");
        assert_eq!(
            write_key_file(&path, "a2V5", true).unwrap(),
            KeyChange::Written
        );
        assert!(!path.exists(), "dry run wrote a file");
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Written
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a2V5");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Unchanged
        );
        // Loose permissions are repaired even when the key matches.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            write_key_file(&path, "a2V5", false).unwrap(),
            KeyChange::Written
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            write_key_file(&path, "bmV3", false).unwrap(),
            KeyChange::Written
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bmV3");
    }

    #[test]
    fn render_counts() {
        let r = |id: &str, change, tags: &[&str]| ProvisionResult {
            device_id: id.into(),
            change,
            tags_changed: tags.iter().map(|s| s.to_string()).collect(),
            key_file: None,
            key: None,
            error: None,
        };
        let text = render(
            super::super::output::Style { color: false },
            &[
                r("a", Change::Created, &["building"]),
                r("b", Change::Unchanged, &[]),
            ],
            true,
        );
        assert!(text.contains("a       created    tags: building"), "{text}");
        assert!(text.ends_with(
            "1 created, 0 updated, 1 unchanged, 0 failed (dry run: nothing was changed)"
        ));
    }
}

#[cfg(test)]
mod hub_tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use clap::Parser as _;
    use serde_json::{json, Value};

    use super::*;
    use crate::ctl::cli::Cli;
    use crate::ctl::output::{Console, SharedBuf};
    use crate::ctl::testhub::{client, mock, Mock, T};

    /// A registry of (primary key, tags) per device, behind the scripted hub.
    type Registry = Arc<Mutex<BTreeMap<String, (String, Value)>>>;

    async fn registry_hub(reg: Registry) -> Mock {
        mock(Arc::new(move |s, _| {
            let mut reg = reg.lock().unwrap();
            let not_found = (
                404,
                vec![("iothub-errorcode", "DeviceNotFound".to_string())],
                json!({"Message":"ErrorCode:DeviceNotFound;not found"}),
            );
            let (kind, id) = s.path[1..].split_once('/').unwrap();
            let body: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
            match (s.method.as_str(), kind) {
                ("GET", "devices") => match reg.get(id) {
                    Some((key, _)) => (200, vec![], json!({"deviceId":id,"etag":"MQ==",
                        "authentication":{"type":"sas","symmetricKey":{"primaryKey":key,"secondaryKey":"c2Vj"}}})),
                    None => not_found,
                },
                ("PUT", "devices") => {
                    let key = body["authentication"]["symmetricKey"]["primaryKey"].as_str().unwrap().to_string();
                    reg.insert(id.to_string(), (key, json!({})));
                    (200, vec![], body)
                }
                ("GET", "twins") => match reg.get(id) {
                    Some((_, tags)) => (200, vec![], json!({"deviceId":id,"tags":tags})),
                    None => not_found,
                },
                ("PATCH", "twins") => match reg.get_mut(id) {
                    Some((_, tags)) => {
                        let mut t = tags.as_object().unwrap().clone();
                        crate::ctl::args::merge(&mut t, body["tags"].as_object().unwrap().clone());
                        *tags = Value::Object(t);
                        (200, vec![], json!({"deviceId":id,"tags":tags}))
                    }
                    None => not_found,
                },
                _ => not_found,
            }
        }))
        .await
    }

    fn items() -> Vec<ProvisionItem> {
        vec![
            ProvisionItem {
                device_id: "door-01".into(),
                tags: json!({"building":"43","floor":3})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            ProvisionItem {
                device_id: "door-02".into(),
                tags: json!({"building":"43"}).as_object().unwrap().clone(),
            },
        ]
    }

    fn writes(m: &Mock) -> usize {
        m.seen()
            .iter()
            .filter(|s| s.method == "PUT" || s.method == "PATCH")
            .count()
    }

    #[tokio::test]
    async fn provisioning_creates_updates_and_is_idempotent() {
        let reg: Registry = Arc::default();
        reg.lock().unwrap().insert(
            "door-01".into(),
            (
                "ZXhpc3Rpbmc=".into(),
                json!({"building":"43","owner":"ops"}),
            ),
        );
        let m = registry_hub(reg.clone()).await;
        let c = client(&m);
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");

        let first = tokio::time::timeout(T, provision(&c, &items(), Some(&keys), false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first[0].change, Change::Updated);
        assert_eq!(first[0].tags_changed, ["floor"]);
        assert_eq!(first[0].key, Some(KeyChange::Written));
        assert_eq!(first[1].change, Change::Created);
        assert_eq!(first[1].tags_changed, ["building"]);
        assert_eq!(
            std::fs::read_to_string(keys.join("door-01.key")).unwrap(),
            "ZXhpc3Rpbmc="
        );
        let created_key = reg.lock().unwrap()["door-02"].0.clone();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&created_key)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            std::fs::read_to_string(keys.join("door-02.key")).unwrap(),
            created_key
        );
        // The operator's own tag survives.
        assert_eq!(
            reg.lock().unwrap()["door-01"].1,
            json!({"building":"43","owner":"ops","floor":3})
        );
        let writes_after_first = writes(&m);
        assert_eq!(writes_after_first, 3, "one create, two tag patches");

        let second = tokio::time::timeout(T, provision(&c, &items(), Some(&keys), false))
            .await
            .unwrap()
            .unwrap();
        for r in &second {
            assert_eq!(r.change, Change::Unchanged, "{r:?}");
            assert_eq!(r.key, Some(KeyChange::Unchanged), "{r:?}");
        }
        assert_eq!(
            writes(&m),
            writes_after_first,
            "second run wrote to the hub"
        );
    }

    #[tokio::test]
    async fn dry_run_changes_nothing() {
        let reg: Registry = Arc::default();
        let m = registry_hub(reg.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let res = tokio::time::timeout(T, provision(&client(&m), &items(), Some(&keys), true))
            .await
            .unwrap()
            .unwrap();
        assert!(res.iter().all(|r| r.change == Change::Created));
        assert!(res.iter().all(|r| r.key == Some(KeyChange::Written)));
        assert_eq!(writes(&m), 0);
        assert!(reg.lock().unwrap().is_empty());
        assert!(!keys.exists());
    }

    #[tokio::test]
    async fn provision_command_reads_the_map_and_prints_json() {
        let reg: Registry = Arc::default();
        let m = registry_hub(reg.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("fieldgate.toml");
        std::fs::write(
            &map,
            "[[door]]\ndevice_id = \"door-01\"\ntags = { building = \"43\" }\n",
        )
        .unwrap();
        let keys = dir.path().join("keys");
        let cli = Cli::try_parse_from([
            "fieldctl",
            "--json",
            "devices",
            "provision",
            "--config",
            map.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
        ])
        .unwrap();
        let mut out = Vec::new();
        let err = SharedBuf::default();
        let code = tokio::time::timeout(
            T,
            crate::ctl::run_with_client(
                client(&m),
                cli.command,
                true,
                &mut out,
                Console::new(err.clone()),
            ),
        )
        .await
        .unwrap();
        assert_eq!(code, 0, "{}", err.contents());
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["dryRun"], false);
        assert_eq!(doc["devices"][0]["deviceId"], "door-01");
        assert_eq!(doc["devices"][0]["change"], "created");
        assert_eq!(doc["devices"][0]["key"], "written");
        assert_eq!(reg.lock().unwrap()["door-01"].1, json!({"building":"43"}));
    }
}
