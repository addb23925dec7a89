//! Checks shared by the sections of the device map (doors, hub, DPS, X.509): paths relative
//! to the config file, keys that must be base64, who may read a key file, group key files,
//! host names with ports, and whether a missing key file is an error. A leaf: it knows
//! nothing of the sections themselves.

use std::path::{Path, PathBuf};

use base64::Engine;
use toml::Spanned;

use super::error::Errors;
use super::model::Secret;

/// Whether missing key files are an error (running) or a job to do (provisioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Run,
    Provision,
}

/// Resolves `rel` against the config file's directory.
pub(crate) fn path_in(base: &Path, rel: &str) -> PathBuf {
    let p = Path::new(rel);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Checks a key is base64 without echoing any of it (messages end up in logs).
pub(crate) fn check_base64_key(what: &str, key: &str) -> Result<(), String> {
    use base64::DecodeError as E;
    match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(()),
        Ok(_) => Err(format!("{what} is empty")),
        Err(E::InvalidByte(at, _)) => Err(format!(
            "{what} is not valid base64 (character {} is not a base64 character)",
            at + 1
        )),
        Err(E::InvalidLength(_)) => Err(format!(
            "{what} is not valid base64 (its length is wrong: cut short?)"
        )),
        Err(_) => Err(format!(
            "{what} is not valid base64 (bad ending or padding)"
        )),
    }
}

/// Permission bits that make a key file unacceptable: writable by the group, or any access
/// for others. A group-readable file (0640, e.g. root:fieldgate) is accepted with a warning.
const KEY_MODE_REFUSED: u32 = 0o027;
const KEY_MODE_WARNED: u32 = 0o040;

/// Checks who may read a key file (`what` names it). `Err` refuses the file; a loose-but-
/// workable mode is logged as a warning. On non-Unix systems nothing is checked.
pub(crate) fn check_key_file_mode(what: &str, path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) => return Err(format!("cannot read {what} {}: {e}", path.display())),
        };
        if mode & KEY_MODE_REFUSED != 0 {
            return Err(format!(
                "{what} {} has mode {mode:03o}: other users can read or change it; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        if mode & KEY_MODE_WARNED != 0 {
            tracing::warn!(file = %path.display(), mode = %format!("{mode:03o}"), "{what} is readable by its group; 600 is safer");
        }
    }
    #[cfg(not(unix))]
    let _ = (what, path);
    Ok(())
}

/// Reads a group key file (base64, mode 0600 or 0640).
pub(crate) fn group_key_file(
    f: &Spanned<String>,
    base: &Path,
    errs: &mut Errors<'_>,
) -> Option<Secret> {
    let path = path_in(base, f.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            if let Err(e) = check_base64_key(&format!("the group key in {}", path.display()), &s) {
                errs.at_spanned(f, e);
            }
            if let Err(e) = check_key_file_mode("group key file", &path) {
                errs.at_spanned(f, e);
            }
            Some(Secret::new(s.trim()))
        }
        Err(e) => {
            errs.at_spanned(f, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `host` or `host:port` (`need_port`: the port is required).
pub(crate) fn check_host_port(s: &str, need_port: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.contains("://") || s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` must be a bare host name (no scheme, path or spaces)"
        ));
    }
    // A bracketed IPv6 literal keeps its colons inside the brackets.
    let port = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.contains(':') || h.ends_with(']')) => Some(p),
        _ => None,
    };
    match port {
        Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => {
            Err(format!("`{s}` has an invalid port `{p}`"))
        }
        None if need_port => Err(format!("`{s}` needs a port, e.g. `{s}:502`")),
        _ => Ok(()),
    }
}
