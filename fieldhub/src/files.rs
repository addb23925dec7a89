//! Private files in the data directory: the CA key, `service.connstr` (the `iothubowner` key)
//! and the database (device keys, policies) are secrets, so they are created `0600` inside a
//! directory created `0700`, and loosened modes left by older versions are tightened.
//! On non-Unix systems these are plain file operations.

use std::io::Write as _;
use std::path::Path;

/// Creates `dir` (and its parents) if missing, the last component `0700`. An existing
/// directory is left as it is (it may be shared, like `/tmp`), with a warning if others can
/// enter it: the files inside are `0600` either way.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "data directory is accessible to other users; its secret files are 0600"
                );
            }
        }
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Writes `contents` to `path`, readable and writable by the owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = open_private(path)?;
    f.set_len(0)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Creates `path` `0600` if missing, or makes an existing file `0600`.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    open_private(path).map(drop)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let f = options.open(path)?;
    // `mode` applies to new files only; older versions created these world-readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}
