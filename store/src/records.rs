//! Records (`<root>/records/<kind>/<name>.json`): build and image records, the gc roots.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::fsutil;
use crate::name::StoreName;
use crate::store::list_names;
use crate::Store;

/// One record file. `gc` keeps `roots` and everything they reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record kind (a directory under `records/`, e.g. `build` or `image`).
    pub kind: String,
    /// The record name (the file name without `.json`).
    pub name: String,
    /// Store paths this record keeps alive, sorted and deduplicated.
    pub roots: Vec<StoreName>,
    /// The caller's record, stored as given.
    pub record: serde_json::Value,
}

fn check_part(what: &'static str, value: &str) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if value.starts_with('.') {
        Some("it must not start with `.`")
    } else if value.contains('/') || value.contains('\0') {
        Some("it must not contain `/` or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::BadRecordName {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

impl Store {
    /// `<root>/records/<kind>/<name>.json` (not checked for validity).
    pub fn record_path(&self, kind: &str, name: &str) -> PathBuf {
        self.records_dir().join(kind).join(format!("{name}.json"))
    }

    /// Writes (or replaces) the record `kind`/`name` atomically as a [`Record`] JSON object
    /// `{"kind", "name", "roots", "record"}`. `kind` and `name` are plain file names (no `/`,
    /// not starting with `.`). Holds the gc lock shared while writing, so a running `gc` either
    /// sees the record or finishes before it is written.
    pub fn write_record(
        &self,
        kind: &str,
        name: &str,
        record: &serde_json::Value,
        roots: &[StoreName],
    ) -> Result<PathBuf, StoreError> {
        check_part("kind", kind)?;
        check_part("name", name)?;
        let mut roots = roots.to_vec();
        roots.sort();
        roots.dedup();
        let rec = Record {
            kind: kind.to_string(),
            name: name.to_string(),
            roots,
            record: record.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&rec).expect("Record serializes to JSON");
        json.push(b'\n');
        let _gc = self.gc_guard()?;
        let dir = self.records_dir().join(kind);
        fsutil::ensure_dir(&dir)?;
        fsutil::write_atomic(&dir, &format!("{name}.json"), &json)
    }

    /// Reads the record `kind`/`name`, `None` if it does not exist.
    pub fn record(&self, kind: &str, name: &str) -> Result<Option<Record>, StoreError> {
        check_part("kind", kind)?;
        check_part("name", name)?;
        let path = self.record_path(kind, name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        let rec = serde_json::from_slice(&bytes)
            .map_err(|source| StoreError::BadJson { path, source })?;
        Ok(Some(rec))
    }

    /// All records, sorted by kind then name. Hidden files (in-progress writes) are skipped;
    /// a record file that does not parse is an error naming it.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for kind in list_names(&self.records_dir())? {
            let dir = self.records_dir().join(&kind);
            if kind.starts_with('.') || !dir.is_dir() {
                continue;
            }
            for file in list_names(&dir)? {
                if file.starts_with('.') {
                    continue;
                }
                let Some(name) = file.strip_suffix(".json") else {
                    continue;
                };
                if let Some(rec) = self.record(&kind, name)? {
                    out.push(rec);
                }
            }
        }
        out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(out)
    }

    /// Removes the record `kind`/`name`; returns whether it existed.
    pub fn remove_record(&self, kind: &str, name: &str) -> Result<bool, StoreError> {
        check_part("kind", kind)?;
        check_part("name", name)?;
        let path = self.record_path(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => {
                fsutil::fsync_dir(&self.records_dir().join(kind))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }
}
