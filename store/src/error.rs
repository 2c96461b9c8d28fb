//! Error types of the store.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::name::NameError;

/// An error from a store operation. Every message names the file or path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create directory"`, `"rename into place"`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Hashing or normalizing a tree failed; the message names the offending path.
    #[error("{source}")]
    Tree {
        /// The underlying error, whose message includes the path.
        #[source]
        source: io::Error,
    },
    /// A store name (of a directory, meta file or record root) is malformed.
    #[error("{source} (in {})", path.display())]
    Name {
        /// Where the name was found.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: NameError,
    },
    /// A JSON file of the store could not be parsed.
    #[error("{} is not valid JSON of the expected shape: {source}; remove it or run `distill store gc`", path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A valid store path has no meta file (the store was modified by hand or is damaged).
    #[error("store path {} has no meta file {}; run `distill store verify`, then remove the path or rebuild it", path.display(), meta.display())]
    MissingMeta {
        /// The store path directory.
        path: PathBuf,
        /// The expected meta file.
        meta: PathBuf,
    },
    /// The meta file belongs to another path.
    #[error("meta file {} names `{found}`, expected `{expected}`; remove the path and rebuild it", path.display())]
    MetaMismatch {
        /// The meta file.
        path: PathBuf,
        /// The name it should hold.
        expected: String,
        /// The name it holds.
        found: String,
    },
    /// The build did not leave a directory at its output path.
    #[error("the build of {name} left {} that is not a directory; a build must fill the output directory it is given", path.display())]
    OutputNotDir {
        /// The store name being built.
        name: String,
        /// The output path.
        path: PathBuf,
    },
    /// A reference passed to `add` is not a valid store path.
    #[error("cannot add {name}: its reference {reference} is not in the store ({} missing); add the reference first", path.display())]
    MissingReference {
        /// The path being added.
        name: String,
        /// The missing reference.
        reference: String,
        /// Where the reference should be.
        path: PathBuf,
    },
    /// A record kind or name is not a plain file name.
    #[error("invalid record {what} `{value}`: {reason}")]
    BadRecordName {
        /// `"kind"` or `"name"`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The error of [`Store::add`](crate::Store::add): either the caller's build failed or the
/// store did.
#[derive(Debug)]
pub enum AddError<E> {
    /// The build closure returned an error; nothing was added.
    Build {
        /// The store name that was being built.
        name: String,
        /// The closure's error.
        error: E,
    },
    /// A store operation failed; nothing was added.
    Store(StoreError),
}

impl<E: fmt::Display> fmt::Display for AddError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::Build { name, error } => write!(f, "building {name} failed: {error}"),
            AddError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for AddError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AddError::Build { .. } => None,
            AddError::Store(e) => Some(e),
        }
    }
}

impl<E> From<StoreError> for AddError<E> {
    fn from(e: StoreError) -> Self {
        AddError::Store(e)
    }
}

/// The error of [`Store::cache_insert`](crate::Store::cache_insert).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The content's sha256 differs from the pinned one; nothing was cached.
    #[error("sha256 mismatch for {origin}: expected {expected}, got {actual}; check the pinned sha256 or the source")]
    Mismatch {
        /// Where the content came from (URL, file, package).
        origin: String,
        /// The pinned hex digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// The expected digest is not 64 hex characters.
    #[error("invalid sha256 `{value}` for {origin}: expected 64 hex characters")]
    BadDigest {
        /// Where the content was to come from.
        origin: String,
        /// The rejected digest.
        value: String,
    },
    /// Reading the content failed.
    #[error("cannot read {origin}: {source}")]
    Read {
        /// Where the content came from.
        origin: String,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
