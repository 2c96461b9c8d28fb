//! Small file system helpers: flocks, fsync, atomic writes, unique temp names.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A name unique within this store for a temporary file or directory:
/// `<label>.<pid>.<counter>`.
pub(crate) fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label}.{}.{n}", std::process::id())
}

/// Writes `bytes` to `dir/name` atomically: a hidden temp file in `dir`, fsync, rename,
/// fsync `dir`. Readers see the old file or the new one, never a partial one.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let tmp = dir.join(format!(".{}", unique_name(name)));
    let dest = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| StoreError::io("rename into place", &dest, e))?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|_| dest)
}

/// Creates `path` as a directory if it does not exist.
pub(crate) fn ensure_dir(path: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(path).map_err(|e| StoreError::io("create directory", path, e))
}
