//! Resolution of `[[door]]` entries: identity, bus and unit, profile with per-door
//! overrides merged in, the device key (inline, key file, or derived from the group key)
//! and twin tags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use hmac::{Hmac, Mac};
use iothub_proto::{ConnectionString, ConnectionStringError};
use sha2::Sha256;
use toml::de::DeValue;
use toml::Spanned;

use super::checks::{check_base64_key, check_key_file_mode, path_in, Mode};
use super::de;
use super::error::Errors;
use super::model::{Door, KeySource, Secret};
use super::names::{check_device_id, check_twin_key, toml_to_json};
use super::points::{self, Maps};
use super::raw::RawDoor;
use crate::bus::BusOptions;

pub(crate) struct Context<'a, 'i> {
    pub buses: &'a [BusOptions],
    /// Buses and profiles that failed to parse: doors naming them get no second error.
    pub broken_buses: &'a [String],
    /// A bus too broken to have a name: any unknown bus name may be that one.
    pub unnamed_broken_bus: bool,
    pub profiles: &'a BTreeMap<String, (Spanned<DeValue<'i>>, Maps)>,
    pub broken_profiles: &'a [String],
    pub group_key: Option<&'a Secret>,
    pub base: &'a Path,
    pub mode: Mode,
}

/// A door whose key file does not exist yet (provisioning mode only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub device_id: String,
    pub path: PathBuf,
}

/// Keys of `[door.overrides]` and what they may override.
const OVERRIDABLE: &[&str] = &["poll_interval", "methods", "desired", "reported"];

/// IoT Hub DPS group enrollment derivation: base64(HMAC-SHA256(base64decode(group key), device id)).
pub fn derive_device_key(group_key: &Secret, device_id: &str) -> Option<Secret> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(group_key.expose().trim())
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(device_id.as_bytes());
    Some(Secret::new(
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
    ))
}

pub(crate) fn resolve_all(
    doors: &[Spanned<DeValue<'_>>],
    ctx: &Context<'_, '_>,
    errs: &mut Errors<'_>,
) -> (Vec<Door>, Vec<Pending>) {
    let mut out: Vec<Door> = Vec::new();
    let mut pending = Vec::new();
    let mut seen_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_units: BTreeMap<(String, u8), String> = BTreeMap::new();
    for (i, v) in doors.iter().enumerate() {
        let mut v = v.clone();
        let overrides = match v.get_mut() {
            DeValue::Table(t) => t.remove_entry("overrides"),
            _ => None,
        };
        let Some(raw) = de::item::<RawDoor>(&v, errs) else {
            continue;
        };
        let id = raw.device_id.get_ref().clone();
        if let Err(e) = check_device_id(&id) {
            errs.at_spanned(&raw.device_id, e);
        }
        if let Some(first) = seen_ids.insert(id.clone(), i) {
            errs.at_spanned(
                &raw.device_id,
                format!("device id `{id}` is already used by door[{first}]"),
            );
        }
        let bus = raw.bus.get_ref().clone();
        let known = ctx.buses.iter().any(|b| b.name == bus)
            || ctx.broken_buses.contains(&bus)
            || ctx.unnamed_broken_bus;
        if !known {
            let names: Vec<&str> = ctx.buses.iter().map(|b| b.name.as_str()).collect();
            errs.at_spanned(
                &raw.bus,
                format!("no [[bus]] is named `{bus}` (buses: {})", list(&names)),
            );
        }
        let unit = *raw.unit.get_ref();
        let unit = if (1..=247).contains(&unit) {
            unit as u8
        } else {
            errs.at_spanned(
                &raw.unit,
                format!("unit {unit} is not a Modbus unit id (1 to 247)"),
            );
            0
        };
        if unit != 0 {
            if let Some(other) = seen_units.insert((bus.clone(), unit), id.clone()) {
                errs.at_spanned(
                    &raw.unit,
                    format!("unit {unit} on bus `{bus}` is already door `{other}`"),
                );
            }
        }
        let tags = tags(&raw, errs);
        let maps = maps(&raw, overrides.as_ref(), ctx, errs);
        let key = key(&raw, ctx, errs);
        let (Some(maps), Some((key, source, missing))) = (maps, key) else {
            continue;
        };
        // A write starts only with its whole transaction timeout left before the method's
        // deadline: a method shorter than that could never write.
        if let Some(opts) = ctx.buses.iter().find(|b| b.name == bus) {
            let need = opts.timeout + opts.inter_request_delay;
            for (name, m) in maps.methods.iter().filter(|(_, m)| m.timeout < need) {
                errs.at_spanned(
                    &raw.bus,
                    format!(
                        "method `{name}` has timeout {} but a write on bus `{bus}` needs {} (its timeout and inter_request_delay): it could never be written; raise the method's `timeout` or lower the bus's",
                        humantime::format_duration(m.timeout),
                        humantime::format_duration(need)
                    ),
                );
            }
        }
        if let Some(path) = missing {
            pending.push(Pending {
                device_id: id.clone(),
                path,
            });
        }
        out.push(Door {
            device_id: id,
            bus,
            unit,
            profile: raw.profile.get_ref().clone(),
            key,
            key_source: source,
            tags,
            poll_interval: maps.poll_interval,
            model_id: maps.model_id,
            methods: maps.methods,
            desired: maps.desired,
            reported: maps.reported,
        });
    }
    (out, pending)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none defined".into()
    } else {
        names.join(", ")
    }
}

fn tags(raw: &RawDoor, errs: &mut Errors<'_>) -> serde_json::Map<String, serde_json::Value> {
    let Some(t) = &raw.tags else {
        return serde_json::Map::new();
    };
    let json = toml_to_json(&toml::Value::Table(t.get_ref().clone()));
    fn check(v: &serde_json::Value, span: &Spanned<toml::Table>, errs: &mut Errors<'_>) {
        if let serde_json::Value::Object(m) = v {
            for (k, v) in m {
                if let Err(e) = check_twin_key("tag name", k) {
                    errs.at_spanned(span, e);
                }
                check(v, span, errs);
            }
        }
    }
    check(&json, t, errs);
    match json {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn maps(
    raw: &RawDoor,
    overrides: Option<&(Spanned<toml::de::DeString<'_>>, Spanned<DeValue<'_>>)>,
    ctx: &Context<'_, '_>,
    errs: &mut Errors<'_>,
) -> Option<Maps> {
    let name = raw.profile.get_ref();
    let Some((profile_v, maps)) = ctx.profiles.get(name) else {
        if !ctx.broken_profiles.contains(name) {
            let names: Vec<&str> = ctx.profiles.keys().map(String::as_str).collect();
            errs.at_spanned(
                &raw.profile,
                format!(
                    "no [profile.{name}] is defined (profiles: {})",
                    list(&names)
                ),
            );
        }
        return None;
    };
    let Some((ok, ov)) = overrides else {
        return Some(maps.clone());
    };
    let Some(over) = ov.get_ref().as_table() else {
        errs.at(
            ok.span(),
            "`overrides` must be a table, e.g. [door.overrides.methods.lockDoor]",
        );
        return None;
    };
    let mut fine = true;
    for (k, v) in over.iter() {
        let key = k.get_ref().as_ref();
        if !OVERRIDABLE.contains(&key) {
            errs.at(
                k.span(),
                format!(
                    "`{key}` cannot be overridden (overridable: {})",
                    OVERRIDABLE.join(", ")
                ),
            );
            fine = false;
            continue;
        }
        if key == "poll_interval" {
            continue;
        }
        let existing = profile_v
            .get_ref()
            .get(key)
            .and_then(|m| m.get_ref().as_table());
        match v.get_ref().as_table() {
            Some(entries) => {
                for (ek, _) in entries.iter() {
                    if !existing.is_some_and(|m| m.contains_key(ek.get_ref().as_ref())) {
                        errs.at(
                            ek.span(),
                            format!(
                                "profile `{name}` has no {} entry `{}` to override",
                                key.trim_end_matches('s'),
                                ek.get_ref()
                            ),
                        );
                        fine = false;
                    }
                }
            }
            None => {
                errs.at(k.span(), format!("`overrides.{key}` must be a table"));
                fine = false;
            }
        }
    }
    if !fine {
        return None;
    }
    let mut merged = profile_v.clone();
    if let DeValue::Table(t) = merged.get_mut() {
        de::merge(t, over);
    }
    points::resolve(&merged, errs)
}

/// The door's key, where it came from, and (provisioning) the key file still to write.
fn key(
    raw: &RawDoor,
    ctx: &Context<'_, '_>,
    errs: &mut Errors<'_>,
) -> Option<(Secret, KeySource, Option<PathBuf>)> {
    let group = raw.group_key.as_ref().filter(|g| *g.get_ref());
    let given = [
        raw.key.as_ref().map(|k| k.span()),
        raw.key_file.as_ref().map(|k| k.span()),
        group.map(|g| g.span()),
        raw.cert_file.as_ref().map(|k| k.span()),
    ];
    let count = given.iter().flatten().count();
    if count == 0 {
        errs.at_spanned(&raw.device_id, format!(
            "door `{}` needs a key: one of `key = \"<base64>\"`, `key_file = \"keys/{}.key\"` or `group_key = true`",
            raw.device_id.get_ref(),
            raw.device_id.get_ref()
        ));
        return None;
    }
    if count > 1 {
        let second = given.iter().flatten().nth(1).cloned().unwrap_or_default();
        errs.at(
            second,
            "give exactly one of key, key_file or group_key (or cert_file for X.509)",
        );
        return None;
    }
    let id = raw.device_id.get_ref();
    if let Some(c) = &raw.cert_file {
        return super::x509::certificate(raw, c, ctx.base, errs)
            .map(|source| (Secret::new(""), source, None));
    }
    if let Some(k) = &raw.cert_key_file {
        errs.at_spanned(
            k,
            "cert_key_file goes with cert_file (the door's X.509 certificate)",
        );
        return None;
    }
    if let Some(k) = &raw.key {
        if let Err(e) = check_base64_key("key", k.get_ref()) {
            errs.at_spanned(k, e);
            return None;
        }
        return Some((Secret::new(k.get_ref().trim()), KeySource::Inline, None));
    }
    if let Some(g) = group {
        let Some(gk) = ctx.group_key else {
            errs.at_spanned(
                g,
                "group_key = true needs `group_key` or `group_key_file` in [hub] (or `group_key_file` in [dps])",
            );
            return None;
        };
        let key = derive_device_key(gk, id)?;
        return Some((key, KeySource::Group, None));
    }
    let f = raw.key_file.as_ref()?;
    let path = path_in(ctx.base, f.get_ref());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ctx.mode == Mode::Provision => {
            return Some((Secret::new(""), KeySource::File(path.clone()), Some(path)));
        }
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (`fieldctl devices provision --config <this file>` creates it)"
            } else {
                ""
            };
            errs.at_spanned(
                f,
                format!("cannot read key file {}: {e}{hint}", path.display()),
            );
            return None;
        }
    };
    if let Err(e) = check_key_file_mode("key file", &path) {
        errs.at_spanned(f, e);
        return None;
    }
    match key_from_file(&text, id) {
        Ok(k) => Some((k, KeySource::File(path), None)),
        Err(e) => {
            errs.at_spanned(f, format!("{}: {e}", path.display()));
            None
        }
    }
}

/// A key file holds the base64 key, or a device connection string for this device.
pub(crate) fn key_from_file(text: &str, device_id: &str) -> Result<Secret, String> {
    let t = text.trim();
    if t.contains("SharedAccessKey=") || t.contains("HostName=") {
        let cs = ConnectionString::parse(t).map_err(|e| match e {
            // Its text could be the key itself: do not echo it.
            ConnectionStringError::NotKeyValue(_) => {
                "the connection string has a part that is not Key=Value".to_string()
            }
            other => other.to_string(),
        })?;
        match cs.device_id.as_deref() {
            Some(d) if d == device_id => {}
            Some(d) => {
                return Err(format!(
                    "the connection string is for device `{d}`, not `{device_id}`"
                ))
            }
            None => {
                return Err(
                    "the connection string is a service policy, not a device connection string"
                        .into(),
                )
            }
        }
        check_base64_key("SharedAccessKey", &cs.key)?;
        return Ok(Secret::new(cs.key));
    }
    check_base64_key("the key", t)?;
    Ok(Secret::new(t))
}
