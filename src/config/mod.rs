//! The TOML device map: raw serde model, resolution into a validated model, errors with
//! file:line:column.
//!
//! `load`/`parse` give the [`Config`] the gateway runs on, or every problem in the file at
//! once ([`ConfigErrors`], one `file:line:col: key: message` per line). `provisioning`
//! gives `fieldctl devices provision` the doors, tags and key sources, tolerating key files
//! that do not exist yet. The commented examples in `config/` document every key and default.
//!
//! Sections: `[hub]`, `[dps]`, `[metrics]`, `[events]`, `[[bus]]`, `[profile.NAME]` (with `methods`, `desired`,
//! `reported` tables), `[[door]]` (with optional `tags` and `overrides`). Relative paths
//! (`ca_file`, `key_file`, `group_key_file`, events `dir`) are relative to the config file's directory.

mod checks;
mod de;
mod doors;
mod dps;
mod error;
mod model;
mod names;
mod points;
mod raw;
mod resolve;
mod x509;

use std::path::{Path, PathBuf};

pub use doors::derive_device_key;
pub use dps::{
    DpsSettings, DEFAULT_CACHE_FILE, DEFAULT_DPS_ENDPOINT, DEFAULT_REGISTRATIONS_PER_SECOND,
};
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    Config, DesiredPoint, Door, EventsSettings, HubSettings, HubTransport, KeySource, Method,
    MethodAction, MetricsSettings, Profile, ReadTable, ReportedPoint, Secret, ValueSource,
    WriteTable,
};
pub use points::{DEFAULT_METHOD_TIMEOUT, DEFAULT_POLL_INTERVAL, DEFAULT_PULSE, DEFAULT_PULSE_MAX};
pub use resolve::{
    DEFAULT_BAUD, DEFAULT_CONNECTS_PER_SECOND, DEFAULT_DIAL_TIMEOUT,
    DEFAULT_EVENTS_COMMIT_INTERVAL, DEFAULT_EVENTS_DIR, DEFAULT_EVENTS_MAX_AGE,
    DEFAULT_EVENTS_MAX_BYTES, DEFAULT_EVENTS_SEND_RATE, DEFAULT_KEEP_ALIVE, DEFAULT_METRICS_LISTEN,
    DEFAULT_OPERATION_TIMEOUT, DEFAULT_RECONNECT_MAX, DEFAULT_RECONNECT_MIN,
    DEFAULT_TOKEN_LIFETIME, DEFAULT_TOKEN_RENEW_MARGIN, DEFAULT_WEBSOCKET_PORT,
};

use checks::Mode;

/// Reads and resolves a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let (text, origin) = read(path)?;
    parse(&text, &origin)
}

/// Resolves config text. `origin` names it in messages and, read as a path, gives the
/// directory relative paths are resolved against (its parent; `.` when it has none).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    resolve::resolve(text, origin, &base_dir(origin), Mode::Run).map(|(c, _)| c)
}

/// What `fieldctl devices provision` needs from the map.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioning {
    pub hub_hostname: String,
    pub doors: Vec<ProvisionDoor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionDoor {
    pub device_id: String,
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub key: ProvisionKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionKey {
    /// Inline or derived from the group key: create the identity with this key.
    Known(Secret),
    /// A key file that exists: create the identity with its key.
    File { path: PathBuf, key: Secret },
    /// A key file still to be written: let the hub (or fieldctl) choose a key, then write
    /// it with [`key_file_contents`].
    MissingFile { path: PathBuf },
}

/// Like `load`, but key files that do not exist yet are reported as `MissingFile`.
pub fn load_for_provisioning(path: &Path) -> Result<Provisioning, ConfigErrors> {
    let (text, origin) = read(path)?;
    parse_for_provisioning(&text, &origin)
}

/// Like `parse`, but key files that do not exist yet are reported as `MissingFile`.
pub fn parse_for_provisioning(text: &str, origin: &str) -> Result<Provisioning, ConfigErrors> {
    let (config, pending) = resolve::resolve(text, origin, &base_dir(origin), Mode::Provision)?;
    // X.509 doors are registered with their certificate's thumbprint or through a CA, not
    // with a key: provisioning leaves them out.
    let doors = config
        .doors
        .into_iter()
        .filter(|d| !matches!(d.key_source, KeySource::Certificate { .. }))
        .map(|d| {
            let missing = pending.iter().find(|p| p.device_id == d.device_id);
            let key = match (missing, d.key_source) {
                (Some(p), _) => ProvisionKey::MissingFile {
                    path: p.path.clone(),
                },
                (None, KeySource::File(path)) => ProvisionKey::File { path, key: d.key },
                (None, _) => ProvisionKey::Known(d.key),
            };
            ProvisionDoor {
                device_id: d.device_id,
                tags: d.tags,
                key,
            }
        })
        .collect();
    Ok(Provisioning {
        hub_hostname: config.hub.hostname,
        doors,
    })
}

/// What a key file holds, in the form `key_file` reads back: the base64 key and a newline.
pub fn key_file_contents(key: &Secret) -> String {
    format!("{}\n", key.expose())
}

fn read(path: &Path) -> Result<(String, String), ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(t) => Ok((t, origin)),
        Err(e) => Err(ConfigErrors::whole_file(
            &origin,
            format!("cannot read: {e}"),
        )),
    }
}

fn base_dir(origin: &str) -> PathBuf {
    match Path::new(origin).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
