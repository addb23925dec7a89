//! Checks shared by the sections of the device map (doors, hub, DPS, X.509): paths relative
//! to the config file, keys that must be base64, who may read a key file, and whether a
//! missing key file is an error. A leaf: it knows nothing of the sections themselves.

use std::path::{Path, PathBuf};

use base64::Engine;

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
