//! The fetch cache: `<root>/cache/sha256/<hex>`, content checked on insert.

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::error::{CacheError, StoreError};
use crate::fsutil::{self, LockMode};
use crate::Store;

/// Normalizes a sha256 given as 64 hex characters, optionally prefixed `sha256:`, to
/// lowercase hex; `None` if it is malformed.
pub fn parse_sha256(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(hex.to_ascii_lowercase())
    } else {
        None
    }
}

impl Store {
    fn cache_dir(&self) -> PathBuf {
        self.root().join("cache").join("sha256")
    }

    /// `<root>/cache/sha256/<hex>` (the digest is lowercased; a `sha256:` prefix is
    /// dropped). The file may not exist; see [`Store::cache_has`].
    pub fn cache_path(&self, sha256: &str) -> PathBuf {
        let s = sha256.strip_prefix("sha256:").unwrap_or(sha256);
        self.cache_dir().join(s.to_ascii_lowercase())
    }

    /// Whether content with this sha256 is in the cache. A malformed digest is never cached.
    pub fn cache_has(&self, sha256: &str) -> bool {
        parse_sha256(sha256).is_some() && self.cache_path(sha256).is_file()
    }

    /// Streams `reader` into the cache, checking its sha256 against `expected_sha256`
    /// (64 hex characters, `sha256:` prefix allowed). If the content is already cached the
    /// reader is not read. The data goes to a locked temp file under `tmp/` first; on a
    /// mismatch or read error it is removed and the error names `origin`, the expected and
    /// the actual digest. On success the file is fsynced and renamed into place, and its path
    /// is returned.
    pub fn cache_insert(
        &self,
        expected_sha256: &str,
        mut reader: impl Read,
        origin: &str,
    ) -> Result<PathBuf, CacheError> {
        let expected = parse_sha256(expected_sha256).ok_or_else(|| CacheError::BadDigest {
            origin: origin.to_string(),
            value: expected_sha256.to_string(),
        })?;
        let dest = self.cache_dir().join(&expected);
        if dest.is_file() {
            return Ok(dest);
        }
        let tmp = {
            // Create and lock the temp file under the gc lock so gc never sees it unlocked.
            let _gc = self.gc_guard()?;
            let (file, path) = fsutil::new_temp_file(&self.tmp_dir(), "fetch")
                .map_err(|e| StoreError::io("create a file in", &self.tmp_dir(), e))?;
            let guard = TempFile { path, file };
            fsutil::flock(&guard.file, LockMode::Exclusive, true)
                .map_err(|e| StoreError::io("lock", &guard.path, e))?;
            guard
        };
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CacheError::Read {
                        origin: origin.to_string(),
                        source,
                    })
                }
            };
            sha.update(&buf[..n]);
            (&tmp.file)
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io("write", &tmp.path, e))?;
        }
        let actual = hex::encode(sha.finalize());
        if actual != expected {
            return Err(CacheError::Mismatch {
                origin: origin.to_string(),
                expected,
                actual,
            });
        }
        tmp.file
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &tmp.path, e))?;
        fs::rename(&tmp.path, &dest).map_err(|e| StoreError::io("rename into place", &dest, e))?;
        fsutil::fsync_dir(&self.cache_dir())?;
        Ok(dest)
    }
}

/// A locked temp file that is removed when dropped (a no-op once it was renamed away).
struct TempFile {
    path: PathBuf,
    file: fs::File,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
