//! Replacing a file atomically in a directory that may be another user's (the signature
//! beside a manifest, a manifest re-pinned in place).

use std::fs::Permissions;
use std::io::{self, Write};
use std::path::Path;

/// Writes `data` to `path` atomically: a new file in the same directory, created with
/// `O_CREAT|O_EXCL` under a random name (`.<name>.tmp.<random>`, so nothing planted at a
/// predictable name is followed), given `perms` (and `owner`, best effort: only root can
/// give a file away), synced, renamed over `path`, then the directory synced. On any error
/// `path` is untouched and the new file removed.
pub(crate) fn write_atomic(
    path: &Path,
    data: &[u8],
    perms: Permissions,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp.", name.to_string_lossy()))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid));
    }
    tmp.as_file().set_permissions(perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the directory is synced; the file is already complete.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
