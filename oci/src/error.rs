//! The crate's error type: one line, naming the file, blob, layer or entry concerned.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing, loading or comparing images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a named path failed.
    #[error("{path}: {op} failed: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done ("read", "create", ...).
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A source tree cannot be turned into a layer (fifo, socket, path through a symlink, ...).
    #[error("{path}: {reason}")]
    Source {
        /// The offending path on disk.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// An archive is malformed or not one we can read.
    #[error("archive {archive}: {reason}")]
    Archive {
        /// The archive file.
        archive: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A blob's content does not match its descriptor.
    #[error("archive {archive}: blob {blob} ({what}): {reason}; the archive is corrupted or was tampered with")]
    Blob {
        /// The archive file.
        archive: PathBuf,
        /// The blob's name inside the archive.
        blob: String,
        /// What the blob is ("layer 0", "config", "manifest").
        what: String,
        /// The mismatch, with expected and actual values.
        reason: String,
    },
    /// A layer entry was refused during unpacking.
    #[error("archive {archive}: layer {layer} ({digest}): entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The archive file.
        archive: PathBuf,
        /// Index of the layer in the manifest (0 = bottom).
        layer: usize,
        /// The layer's blob digest.
        digest: String,
        /// The entry's path as written in the layer.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The destination of a load already exists.
    #[error("{0}: destination already exists; remove it or choose another directory")]
    DestinationExists(PathBuf),
    /// Serializing or parsing a JSON document failed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A source file's name begins with `.wh.`, which OCI layers reserve for whiteouts: the
    /// entry would vanish (or delete a file) when the layer is unpacked.
    #[error("{0}: a name beginning with .wh. is reserved for whiteouts in image layers, so it would be lost; rename it")]
    WhiteoutName(
        /// The entry's path in the layer (`/` is the layer's root).
        PathBuf,
    ),
    /// The caller gave an invalid value (bad digest string, empty layer list, ...).
    #[error("{field}: {reason}")]
    Invalid {
        /// Which argument or field.
        field: String,
        /// Why, and what to do.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    path: impl Into<PathBuf>,
    op: &'static str,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, op, source }
}
