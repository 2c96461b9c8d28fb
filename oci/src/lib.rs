//! distill-oci: deterministic OCI images and safe loading.
//!
//! Writing: [`write_layer`] turns a directory tree (or a chosen set of its paths) into a
//! reproducible layer tar (sorted, fixed mtime/owner, PAX only for long values), compressed
//! with pinned settings; [`image_documents`] builds canonical config/manifest/index JSON
//! ([`canonical_json`]); [`write_oci_archive`] and [`write_docker_archive`] write the image
//! as a deterministic tarball, atomically.
//!
//! Reading: [`load_archive`] verifies every blob against its digest while streaming and
//! unpacks the layers into a plain directory, refusing entries that could escape it;
//! [`diff_archives`] names the first difference between two image archives.
//!
//! Registry: [`Images`] holds loaded images (unpacked root, config, manifest) and makes new
//! ones from a loaded image plus one layer ([`Images::commit`], for `distill commit`);
//! [`Images::holding`] maps an unpacked root back to its image. [`copy_tree`] reproduces a
//! tree with its metadata (hard-linked or copied).
//!
//! The crate knows nothing of manifests, the store or the runtime.

mod archive;
mod atomic;
mod copy;
mod diff;
mod digest;
mod docs;
mod error;
mod layer;
mod load;
mod outer;
mod tarfmt;
mod tree;
mod unpack;

pub use archive::{write_docker_archive, write_oci_archive};
pub use atomic::{persist, temp_dir_beside, temp_file_beside, write_file_atomic};
pub use copy::{copy_tree, FileCopy};
pub use diff::{diff_archives, DiffKind, DiffLocation, Difference};
pub use digest::Digest;
pub use docs::{
    canonical_json, image_documents, rfc3339, BlobData, Documents, ExtraBlob, ImageConfig,
    ImageSpec, REF_NAME_ANNOTATION,
};
pub use error::{Error, Result};
pub use layer::{
    write_layer, write_layer_to, Compression, LayerBlob, LayerOptions, LayerSource, Ownership,
    COMPRESSION_ANNOTATION, GZIP_LEVEL, WHITEOUT_PREFIX, ZSTD_LEVEL,
};
pub use load::{load_archive, LoadedImage};
pub use outer::ArchiveFormat;
pub use tree::TreeUnpacker;
mod inspect;
pub use inspect::{inspect_archive, ArchiveInfo};
mod private_dir;
pub use private_dir::{check_private_dir, ensure_private_dir};
mod images;
pub use images::{normalize_name, parse_config, validate_name, ImageRecord, Images};
mod commit;
pub use commit::{CommitLayer, BASE_DIGEST_ANNOTATION};
