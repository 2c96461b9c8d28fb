//! Small file system helpers: flocks, fsync, atomic writes, new temporary entries.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Lock modes for [`flock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    Shared,
    Exclusive,
}

/// Takes a flock on `file`; with `wait == false` returns `Ok(false)` if it is held elsewhere.
pub(crate) fn flock(file: &File, mode: LockMode, wait: bool) -> io::Result<bool> {
    let mut op = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: the fd is valid for the lifetime of `file`.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// An open lock file holding a flock; the lock is released when this is dropped.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
}

/// Opens (creating if needed) `path` and takes a blocking flock on it. Every call opens a
/// new file description, so two calls in one process exclude each other like two processes.
pub(crate) fn lock_path(path: &Path, mode: LockMode) -> Result<LockFile, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io("open lock file", path, e))?;
    flock(&file, mode, true).map_err(|e| StoreError::io("lock", path, e))?;
    Ok(LockFile { _file: file })
}

/// fsyncs a directory so renames and creations inside it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// A [`tempfile::Builder`] for entries named `<label>.<random>`. Every entry it makes is
/// created under a name nobody could predict, with `O_CREAT|O_EXCL` or `mkdir` (or, for
/// [`rename_to_new_name`], a rename that never replaces), so nothing planted at a name is
/// followed or replaced, and another name is tried if one exists.
fn named(label: &str) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(label);
    b
}

/// Creates a new file `dir/<label>.<random>` (mode `0666 & !umask`, as `File::create`
/// would). The caller removes it.
pub(crate) fn new_temp_file(dir: &Path, label: &str) -> io::Result<(File, PathBuf)> {
    named(&format!("{label}."))
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)?
        .keep()
        .map_err(|e| e.error)
}

/// Creates a new directory `dir/<label>.<random>` (mode `0777 & !umask`). The caller
/// removes it.
pub(crate) fn new_temp_dir(dir: &Path, label: &str) -> io::Result<PathBuf> {
    Ok(named(&format!("{label}.")).tempdir_in(dir)?.keep())
}

/// Renames `from` to a new name `dir/<label>.<random>` (never replacing an entry) and
/// returns it.
pub(crate) fn rename_to_new_name(from: &Path, dir: &Path, label: &str) -> io::Result<PathBuf> {
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let moved = named(&format!("{label}.")).make_in(dir, |to| {
        let to_c = CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: both paths are valid NUL-terminated strings.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from_c.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    })?;
    moved.into_temp_path().keep().map_err(|e| e.error)
}

/// Writes `bytes` to `dir/name` atomically: a hidden new file `.<name>.<random>` in `dir`
/// ([`named`]), fsync, rename, fsync `dir`. Readers see the old file or the new one, never a
/// partial one.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let dest = dir.join(name);
    let mut tmp = named(&format!(".{name}."))
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| StoreError::io("create a temporary file in", dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| StoreError::io("write", &tmp_path, e))?;
    // On any error the new file is removed (dropping `tmp`).
    tmp.persist(&dest)
        .map_err(|e| StoreError::io("rename into place", &dest, e.error))?;
    fsync_dir(dir)?;
    Ok(dest)
}

/// Creates `path` as a directory (and any missing parent) if it does not exist, mode 0700:
/// the root and what is in it are root's alone (images and builds hold set-id files).
pub(crate) fn ensure_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StoreError::io("create directory", path, e))
}
