//! Safe unpacking of a plain tar that is not an image layer (e.g. a container checkpoint
//! archive) with the same protections as layers: every path stays inside the target
//! directory, nothing is written through a symlink, devices are refused.

use crate::error::{Error, Result};
use crate::unpack::{EntryError, Unpacker};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Unpacks tar entries, one at a time, into a directory.
pub struct TreeUnpacker {
    inner: Unpacker,
    archive: PathBuf,
}

impl TreeUnpacker {
    /// Unpacks into the existing directory `root`; `archive` names the tar in errors.
    pub fn new(root: &Path, archive: &Path) -> TreeUnpacker {
        let mut inner = Unpacker::new(root);
        inner.start_layer();
        TreeUnpacker {
            inner,
            archive: archive.to_path_buf(),
        }
    }

    /// Unpacks one entry; an unsafe or unsupported one is refused with its name.
    pub fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        self.inner.entry(e).map_err(|err| match err {
            EntryError::Refused(reason) => Error::Archive {
                archive: self.archive.clone(),
                reason: format!("entry {name:?}: {reason}"),
            },
            EntryError::Io(e) => e,
        })
    }

    /// Applies directory modes and times; returns the bytes of file content written.
    pub fn finish(mut self) -> Result<u64> {
        self.inner.finish()?;
        Ok(self.inner.bytes)
    }
}
