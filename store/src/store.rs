//! The store root: layout, path info, atomic add, temp directories.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AddError, StoreError};
use crate::fsutil::{self, LockFile, LockMode};
use crate::name::StoreName;
use crate::tree::{hash_tree_with_size, normalize_tree, remove_tree};

/// Information about a valid store path, stored at `<root>/meta/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// The store name (`<digest>-<name>-<version>`).
    pub name: StoreName,
    /// The derivation the path was built from (the builder's JSON, stored as given).
    pub derivation: serde_json::Value,
    /// `sha256:<hex>` of the normalized output tree (see [`hash_tree`](crate::hash_tree)).
    pub output_hash: String,
    /// Bytes of regular file contents and symlink targets in the tree.
    pub size: u64,
    /// Number of regular files and symlinks in the tree.
    pub files: u64,
    /// Store names of the inputs this path refers to, sorted and deduplicated. `gc` keeps
    /// them alive as long as this path is alive.
    pub references: Vec<String>,
    /// The key (fingerprint or user id) that signed the manifest this path was built from.
    pub signer: Option<String>,
}

/// A handle on a store root directory (see the module docs for the layout).
///
/// The handle holds no open files; every operation opens what it needs, so one `Store` can be
/// shared between threads and many processes can use the same root at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A shared hold on the store's gc lock: while any guard is alive, `gc` waits. Builders hold
/// one across a whole plan so that paths added early are not collected before the record
/// that roots them is written.
#[derive(Debug)]
pub struct GcGuard {
    _lock: LockFile,
}

/// A directory under `<root>/tmp/`, locked (flock on the directory) while this value lives
/// so `gc` never removes it, and removed (even if read-only) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _lock: File,
}

impl TempDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover is a stale temp dir that `gc` removes later.
        let _ = remove_tree(&self.path);
    }
}

impl Store {
    /// Opens the store at `root`, creating `store/`, `meta/`, `cache/sha256/`, `records/`,
    /// `locks/` and `tmp/` if they are missing.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            store.store_dir(),
            store.meta_dir(),
            store.root.join("cache").join("sha256"),
            store.records_dir(),
            store.locks_dir(),
            store.tmp_dir(),
        ] {
            fsutil::ensure_dir(&dir)?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/store`.
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    pub(crate) fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    pub(crate) fn records_dir(&self) -> PathBuf {
        self.root.join("records")
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<root>/store/<name>`: where the path lives once valid.
    pub fn path(&self, name: &StoreName) -> PathBuf {
        self.store_dir().join(name.to_string())
    }

    /// `<root>/meta/<name>.json`.
    pub fn meta_path(&self, name: &StoreName) -> PathBuf {
        self.meta_dir().join(format!("{name}.json"))
    }

    fn lock_file_path(&self, name: &StoreName) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }

    /// Whether `name` is valid (its directory exists under `store/`).
    pub fn is_valid(&self, name: &StoreName) -> Result<bool, StoreError> {
        let p = self.path(name);
        match fs::symlink_metadata(&p) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("stat", &p, e)),
        }
    }

    /// The path info of `name` if it is valid, `None` if it is not. A valid path without a
    /// readable meta file is an error.
    pub fn info(&self, name: &StoreName) -> Result<Option<PathInfo>, StoreError> {
        if !self.is_valid(name)? {
            return Ok(None);
        }
        let meta = self.meta_path(name);
        let bytes = match fs::read(&meta) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingMeta {
                    path: self.path(name),
                    meta,
                })
            }
            Err(e) => return Err(StoreError::io("read", &meta, e)),
        };
        let info: PathInfo =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::BadJson {
                path: meta.clone(),
                source,
            })?;
        if &info.name != name {
            return Err(StoreError::MetaMismatch {
                path: meta,
                expected: name.to_string(),
                found: info.name.to_string(),
            });
        }
        Ok(Some(info))
    }

    /// Takes a shared hold on the gc lock (see [`GcGuard`]).
    pub fn gc_guard(&self) -> Result<GcGuard, StoreError> {
        Ok(GcGuard {
            _lock: fsutil::lock_path(&self.gc_lock_path(), LockMode::Shared)?,
        })
    }

    pub(crate) fn gc_lock_path(&self) -> PathBuf {
        self.locks_dir().join("gc.lock")
    }

    /// Creates a fresh, locked directory `<root>/tmp/<label>.<random>` (see [`TempDir`]).
    /// The label is only for people reading `tmp/`: characters other than
    /// `A-Z a-z 0-9 + . _ -` (and a leading `.`) become `_`, and it is cut to 64 characters.
    pub fn temp_dir(&self, label: &str) -> Result<TempDir, StoreError> {
        let label = sanitize_label(label);
        // Hold the gc lock while creating so gc cannot see the directory before it is locked.
        let _gc = self.gc_guard()?;
        let path = fsutil::new_temp_dir(&self.tmp_dir(), &label)
            .map_err(|e| StoreError::io("create a temp directory in", &self.tmp_dir(), e))?;
        let lock = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(StoreError::io("open temp directory", &path, e));
            }
        };
        if let Err(e) = fsutil::flock(&lock, LockMode::Exclusive, true) {
            let _ = fs::remove_dir(&path);
            return Err(StoreError::io("lock temp directory", &path, e));
        }
        Ok(TempDir { path, _lock: lock })
    }

    /// Adds the store path `name`, running `build` to produce it unless it is already valid.
    ///
    /// * Fast path: if `name` is valid, its info is returned without taking any lock.
    /// * Otherwise the gc lock is held shared and the per-path lock `locks/<name>.lock`
    ///   exclusively (blocking); if another process finished `name` meanwhile, its info is
    ///   returned and `build` is not run.
    /// * `build` gets an empty directory under `tmp/` to fill. Then the tree is normalized
    ///   ([`normalize_tree`] with `epoch`), hashed, flushed to disk (syncfs), the meta file is
    ///   written atomically and fsynced, the directory is renamed to `store/<name>` and
    ///   `store/` is fsynced.
    /// * Every reference must be a valid path. On any error the temp directory is removed
    ///   and neither `store/<name>` nor `meta/<name>.json` exists afterwards.
    pub fn add<E>(
        &self,
        name: &StoreName,
        derivation: &serde_json::Value,
        references: &[StoreName],
        signer: Option<&str>,
        epoch: i64,
        build: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathInfo, AddError<E>> {
        if let Some(info) = self.info(name)? {
            return Ok(info);
        }
        let _gc = self.gc_guard()?;
        let _path_lock = fsutil::lock_path(&self.lock_file_path(name), LockMode::Exclusive)?;
        if let Some(info) = self.info(name)? {
            return Ok(info);
        }
        let mut refs = Vec::with_capacity(references.len());
        for r in references {
            if !self.is_valid(r)? {
                return Err(AddError::Store(StoreError::MissingReference {
                    name: name.to_string(),
                    reference: r.to_string(),
                    path: self.path(r),
                }));
            }
            refs.push(r.to_string());
        }
        refs.sort();
        refs.dedup();

        let tmp = self.temp_dir(&format!("add-{}", name.name))?;
        let out = tmp.path().join("out");
        fs::create_dir(&out).map_err(|e| StoreError::io("create output directory", &out, e))?;
        build(&out).map_err(|error| AddError::Build {
            name: name.to_string(),
            error,
        })?;
        match fs::symlink_metadata(&out) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(AddError::Store(StoreError::OutputNotDir {
                    name: name.to_string(),
                    path: out,
                }))
            }
        }
        normalize_tree(&out, epoch).map_err(|source| StoreError::Tree { source })?;
        let summary = hash_tree_with_size(&out).map_err(|source| StoreError::Tree { source })?;
        syncfs(&out)?;
        let info = PathInfo {
            name: name.clone(),
            derivation: derivation.clone(),
            output_hash: summary.hash,
            size: summary.size,
            files: summary.files,
            references: refs,
            signer: signer.map(str::to_string),
        };
        let mut json = serde_json::to_vec_pretty(&info).expect("PathInfo serializes to JSON");
        json.push(b'\n');
        let meta = fsutil::write_atomic(&self.meta_dir(), &format!("{name}.json"), &json)?;
        let dest = self.path(name);
        if let Err(e) = fs::rename(&out, &dest) {
            let _ = fs::remove_file(&meta);
            return Err(AddError::Store(StoreError::io(
                "rename into place",
                &dest,
                e,
            )));
        }
        fsutil::fsync_dir(&self.store_dir())?;
        drop(tmp);
        Ok(info)
    }

    /// All valid paths' info, sorted by store name. A directory under `store/` that is not a
    /// store name or has no meta file is an error (run `verify` to see every problem).
    pub fn list(&self) -> Result<Vec<PathInfo>, StoreError> {
        let mut out = Vec::new();
        for name in self.store_entries()? {
            let parsed: StoreName = name.parse().map_err(|source| StoreError::Name {
                path: self.store_dir().join(&name),
                source,
            })?;
            if let Some(info) = self.info(&parsed)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Names of the entries directly under `store/`, sorted.
    pub(crate) fn store_entries(&self) -> Result<Vec<String>, StoreError> {
        list_names(&self.store_dir())
    }
}

/// Sorted entry names of `dir` (names that are not UTF-8 are returned lossily).
pub(crate) fn list_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| StoreError::io("list", dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Sorted raw entry names of `dir`.
pub(crate) fn list_raw(dir: &Path) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let mut names = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    for e in rd {
        names.push(e.map_err(|e| StoreError::io("list", dir, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// A file-name-safe label: at most 64 characters from `A-Z a-z 0-9 + . _ -`, no leading `.`.
pub(crate) fn sanitize_label(label: &str) -> String {
    let mut out: String = label
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// Flushes the file system holding `path` so the tree is durable before it is renamed in.
fn syncfs(path: &Path) -> Result<(), StoreError> {
    let f = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    // SAFETY: the fd is valid while `f` lives.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(StoreError::io(
            "sync file system of",
            path,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
