//! `[dps]`: the Device Provisioning Service the doors register with (Microsoft Learn, "What is
//! Azure IoT Hub Device Provisioning Service?"). The gateway holds only the enrollment group's
//! key; each door's key is derived from it (`group_key = true`) and the service tells each
//! door its hub.

use std::path::{Path, PathBuf};

use toml::de::DeValue;
use toml::Spanned;

use super::checks::{check_host_port, group_key_file, path_in};
use super::de;
use super::error::Errors;
use super::model::{EventsSettings, Secret};
use super::raw::RawDps;

/// Azure DPS's global device endpoint.
pub const DEFAULT_DPS_ENDPOINT: &str = "global.azure-devices-provisioning.net";
/// New registrations per second across the gateway. DPS limits registrations per minute per
/// service unit (Microsoft Learn, "Quotas and limits"); a first start of a large site spreads
/// its registrations instead of drawing 429s.
pub const DEFAULT_REGISTRATIONS_PER_SECOND: u32 = 2;
/// The cache file's name in the events directory when `cache` is not given.
pub const DEFAULT_CACHE_FILE: &str = "dps-assignments.json";

#[derive(Debug, Clone, PartialEq)]
pub struct DpsSettings {
    pub id_scope: String,
    /// `host` or `host:port`.
    pub global_endpoint: String,
    /// Assignments learnt so far (0600), so a restart does not register every door again.
    pub cache: PathBuf,
    /// 0: unpaced.
    pub registrations_per_second: u32,
}

/// Resolves `[dps]`; also returns the group key when `group_key_file` is given there.
pub(crate) fn resolve(
    v: &Spanned<DeValue<'_>>,
    base: &Path,
    events: &EventsSettings,
    errs: &mut Errors<'_>,
) -> (Option<DpsSettings>, Option<Secret>) {
    let Some(raw) = de::item::<RawDps>(v, errs) else {
        return (None, None);
    };
    let scope = raw.id_scope.get_ref().trim();
    if scope.is_empty() || !scope.bytes().all(|b| b.is_ascii_alphanumeric()) {
        errs.at_spanned(
            &raw.id_scope,
            "id_scope must be the provisioning service's ID scope (letters and digits, e.g. \"0ne00123ABC\")",
        );
    }
    let global_endpoint = match &raw.global_endpoint {
        Some(e) => {
            if let Err(msg) = check_host_port(e.get_ref(), false) {
                errs.at_spanned(e, format!("global_endpoint {msg}"));
            }
            e.get_ref().clone()
        }
        None => DEFAULT_DPS_ENDPOINT.to_string(),
    };
    let cache = match &raw.cache {
        Some(c) if c.get_ref().is_empty() => {
            errs.at_spanned(c, "cache is empty");
            events.dir.join(DEFAULT_CACHE_FILE)
        }
        Some(c) => path_in(base, c.get_ref()),
        None => events.dir.join(DEFAULT_CACHE_FILE),
    };
    let key = raw
        .group_key_file
        .as_ref()
        .and_then(|f| group_key_file(f, base, errs));
    (
        Some(DpsSettings {
            id_scope: scope.to_string(),
            global_endpoint,
            cache,
            registrations_per_second: raw
                .registrations_per_second
                .as_ref()
                .map_or(DEFAULT_REGISTRATIONS_PER_SECOND, |r| *r.get_ref()),
        }),
        key,
    )
}
