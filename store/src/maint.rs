//! Store maintenance: `verify` (re-hash every valid path) and `gc` (collect unreachable paths).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::fsutil::{self, LockMode};
use crate::name::StoreName;
use crate::store::{list_names, list_raw};
use crate::tree::{hash_tree, remove_tree};
use crate::Store;

/// A valid path whose tree no longer hashes to the recorded output hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashMismatch {
    /// The store name.
    pub name: String,
    /// The output hash in its meta file.
    pub expected: String,
    /// The hash of the tree now.
    pub actual: String,
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Number of valid paths that were re-hashed.
    pub checked: u64,
    /// Paths whose content changed since they were added.
    pub mismatches: Vec<HashMismatch>,
    /// Valid paths without a meta file.
    pub missing_meta: Vec<String>,
    /// Other damage, one message each: entries under `store/` that are not store names or
    /// not directories, unreadable meta files, trees that cannot be hashed, references to
    /// paths that are gone.
    pub problems: Vec<String>,
    /// Meta files without a store path (a crash between writing meta and the rename); not an
    /// error, `gc` removes them.
    pub orphan_meta: Vec<String>,
    /// Leftover temp entries of builds that are not running; not an error, `gc` removes them.
    pub stale_temp: u64,
}

impl VerifyReport {
    /// One line per damaged path, covering mismatches, missing meta files and other
    /// problems (for printing).
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .mismatches
            .iter()
            .map(|m| {
                format!(
                    "{}: content changed: expected {}, found {}; rebuild it or remove it with `distill store gc`",
                    m.name, m.expected, m.actual
                )
            })
            .collect();
        out.extend(
            self.missing_meta
                .iter()
                .map(|n| format!("{n}: no meta file; remove the path and rebuild it")),
        );
        out.extend(self.problems.iter().cloned());
        out
    }

    /// True when no path is damaged (orphan meta files and stale temp entries are fine).
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty() && self.missing_meta.is_empty() && self.problems.is_empty()
    }
}

/// The result of [`Store::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Store paths removed (entry names under `store/`), sorted.
    pub removed: Vec<String>,
    /// Bytes freed: file contents and symlink targets of removed paths and temp entries.
    pub bytes: u64,
    /// Number of store paths kept.
    pub kept: u64,
    /// Meta files removed because their path is gone.
    pub removed_meta: Vec<String>,
    /// Number of stale temp entries removed.
    pub removed_temp: u64,
}

/// Whether a `tmp/` entry is locked by a live build; only directories and regular files can be
/// locked, anything else is stale.
fn temp_in_use(path: &Path) -> Result<bool, StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("stat", path, e)),
    };
    if !(meta.is_dir() || meta.is_file()) {
        return Ok(false);
    }
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let got = fsutil::flock(&f, LockMode::Exclusive, false)
        .map_err(|e| StoreError::io("test lock of", path, e))?;
    Ok(!got)
}

impl Store {
    /// Re-hashes every valid path and compares it with its meta file; also reports valid
    /// paths without meta, other damage, orphan meta files and stale temp entries (the last
    /// two are not errors). Holds the gc lock shared so paths do not vanish mid-check.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let _gc = self.gc_guard()?;
        let mut report = VerifyReport::default();
        let store_dir = self.store_dir();
        for entry in self.store_entries()? {
            let path = store_dir.join(&entry);
            let name: StoreName = match entry.parse() {
                Ok(n) => n,
                Err(e) => {
                    report.problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            if !self.is_valid(&name)? {
                report
                    .problems
                    .push(format!("{} is not a directory; remove it", path.display()));
                continue;
            }
            let info = match self.info(&name) {
                Ok(Some(info)) => info,
                Ok(None) => continue,
                Err(StoreError::MissingMeta { .. }) => {
                    report.missing_meta.push(entry);
                    continue;
                }
                Err(e) => {
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            report.checked += 1;
            match hash_tree(&path) {
                Ok(actual) if actual == info.output_hash => {}
                Ok(actual) => report.mismatches.push(HashMismatch {
                    name: entry.clone(),
                    expected: info.output_hash.clone(),
                    actual,
                }),
                Err(e) => report
                    .problems
                    .push(format!("cannot hash {}: {e}", path.display())),
            }
            for r in &info.references {
                let ok = match r.parse::<StoreName>() {
                    Ok(rn) => self.is_valid(&rn)?,
                    Err(_) => false,
                };
                if !ok {
                    report.problems.push(format!(
                        "{entry} references {r}, which is not in the store; rebuild {r} or remove {entry}"
                    ));
                }
            }
        }
        for file in list_names(&self.meta_dir())? {
            if file.starts_with('.') {
                continue;
            }
            let has_path = file
                .strip_suffix(".json")
                .is_some_and(|stem| store_dir.join(stem).is_dir());
            if !has_path {
                report.orphan_meta.push(file);
            }
        }
        for entry in list_raw(&self.tmp_dir())? {
            if !temp_in_use(&self.tmp_dir().join(entry))? {
                report.stale_temp += 1;
            }
        }
        Ok(report)
    }

    /// Collects garbage. Takes the gc lock exclusively (waiting for running `add`s and
    /// [`GcGuard`](crate::GcGuard)s), then keeps every path reachable through `references` from the roots of
    /// all records and from `extra_roots`, and removes:
    ///
    /// * every other entry under `store/` (renamed into `tmp/` first, so it stops being
    ///   valid atomically, then its meta file is removed and its tree deleted, read-only
    ///   directories included);
    /// * meta files without a path and leftover hidden temp files in `meta/` and `records/`;
    /// * `tmp/` entries not locked by a live build or download;
    /// * per-path lock files under `locks/`.
    ///
    /// A live path whose meta cannot be read aborts gc with that error, since its references
    /// would otherwise be collected. Roots that are not valid are ignored.
    pub fn gc(&self, extra_roots: &[StoreName]) -> Result<GcReport, StoreError> {
        let _gc = fsutil::lock_path(&self.gc_lock_path(), LockMode::Exclusive)?;
        let mut report = GcReport::default();

        let mut queue: VecDeque<StoreName> = extra_roots.iter().cloned().collect();
        for rec in self.records()? {
            queue.extend(rec.roots);
        }
        let mut live: BTreeSet<String> = BTreeSet::new();
        while let Some(name) = queue.pop_front() {
            if live.contains(&name.to_string()) {
                continue;
            }
            let Some(info) = self.info(&name)? else {
                continue;
            };
            live.insert(name.to_string());
            for r in &info.references {
                let rn: StoreName = r.parse().map_err(|source| StoreError::Name {
                    path: self.meta_path(&name),
                    source,
                })?;
                queue.push_back(rn);
            }
        }

        let store_dir = self.store_dir();
        let mut touched_store = false;
        let mut entries = Vec::new();
        for e in fs::read_dir(&store_dir).map_err(|e| StoreError::io("list", &store_dir, e))? {
            entries.push(
                e.map_err(|e| StoreError::io("list", &store_dir, e))?
                    .file_name(),
            );
        }
        entries.sort();
        for raw in entries {
            let entry = raw.to_string_lossy().into_owned();
            if raw.to_str().is_some_and(|s| live.contains(s)) {
                report.kept += 1;
                continue;
            }
            let src = store_dir.join(&raw);
            let label = crate::store::sanitize_label(&format!("gc-{entry}"));
            let doomed = fsutil::rename_to_new_name(&src, &self.tmp_dir(), &label)
                .map_err(|e| StoreError::io("move out of the store", &src, e))?;
            touched_store = true;
            let mut meta_name = raw.clone();
            meta_name.push(".json");
            let meta = self.meta_dir().join(meta_name);
            match fs::remove_file(&meta) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &meta, e)),
            }
            report.bytes +=
                remove_tree(&doomed).map_err(|e| StoreError::io("remove", &doomed, e))?;
            report.removed.push(entry);
        }
        if touched_store {
            fsutil::fsync_dir(&store_dir)?;
        }

        for raw in list_raw(&self.meta_dir())? {
            let file = raw.to_str();
            let keep = file.is_some_and(|f| {
                !f.starts_with('.')
                    && f.strip_suffix(".json")
                        .is_some_and(|stem| store_dir.join(stem).is_dir())
            });
            if keep {
                continue;
            }
            let p = self.meta_dir().join(&raw);
            remove_tree(&p).map_err(|e| StoreError::io("remove", &p, e))?;
            if !raw.as_encoded_bytes().starts_with(b".") {
                report.removed_meta.push(raw.to_string_lossy().into_owned());
            }
        }
        fsutil::fsync_dir(&self.meta_dir())?;

        for kind in list_names(&self.records_dir())? {
            let dir = self.records_dir().join(&kind);
            if !dir.is_dir() {
                continue;
            }
            for file in list_raw(&dir)? {
                if file.as_encoded_bytes().starts_with(b".") {
                    let p = dir.join(&file);
                    remove_tree(&p).map_err(|e| StoreError::io("remove", &p, e))?;
                }
            }
        }

        for entry in list_raw(&self.tmp_dir())? {
            let p = self.tmp_dir().join(&entry);
            if temp_in_use(&p)? {
                continue;
            }
            report.bytes += remove_tree(&p).map_err(|e| StoreError::io("remove", &p, e))?;
            report.removed_temp += 1;
        }

        // No `add` can hold a per-path lock now (it takes the gc lock shared first).
        for file in list_names(&self.locks_dir())? {
            let is_path_lock = file
                .strip_suffix(".lock")
                .is_some_and(|stem| stem.parse::<StoreName>().is_ok());
            if is_path_lock {
                let p = self.locks_dir().join(&file);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove", &p, e)),
                }
            }
        }
        Ok(report)
    }
}
