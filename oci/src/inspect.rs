//! `inspect_archive`: an image archive's documents without unpacking its layers.

use crate::digest::Digest;
use crate::docs::ImageConfig;
use crate::error::Result;
use crate::outer::{image_config, ArchiveFormat, Outer, Parsed};
use std::collections::BTreeMap;
use std::path::Path;

/// What an archive's documents say (its index, manifest and config were read and checked
/// against their digests; layer blobs were not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Which kind of archive it is.
    pub format: ArchiveFormat,
    /// Digest of the image manifest (None for a legacy docker-archive).
    pub manifest_digest: Option<Digest>,
    /// Digest of the image config.
    pub config_digest: Digest,
    /// The runtime configuration.
    pub config: ImageConfig,
    /// `org.opencontainers.image.ref.name`, or the first docker RepoTag.
    pub ref_name: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Number of layers.
    pub layers: usize,
}

/// Read an archive's documents (cheap: layer blobs are not read).
pub fn inspect_archive(archive: &Path) -> Result<ArchiveInfo> {
    let outer = Outer::open(archive)?;
    let parsed = Parsed::read(&outer)?;
    Ok(ArchiveInfo {
        format: parsed.format,
        manifest_digest: parsed.manifest_digest.clone(),
        config_digest: parsed.config_digest.clone(),
        config: image_config(&parsed.config),
        ref_name: parsed.ref_name.clone(),
        annotations: parsed.manifest_annotations.clone(),
        layers: parsed.layers.len(),
    })
}
