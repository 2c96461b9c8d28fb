//! Images derived from a loaded image plus one layer (`distill commit`).
//!
//! Two steps, so that a caller can keep the source of the layer quiet (a frozen container)
//! only while it is read: [`Images::write_commit_layer`] writes the deterministic layer into
//! a work directory of the image registry, [`Images::commit`] makes the image of it.
//!
//! The new image's documents are the base image's, changed only where they must be: the
//! config gets the layer's diff_id, one history entry and the labels (merged over the base's),
//! `created` is the commit's epoch; the manifest keeps the base's layer descriptors (kept at
//! load in `manifest.json`), adds the new layer's, points at the new config, and carries one
//! annotation, `org.opencontainers.image.base.digest` (the base manifest's annotations, such
//! as a signer, describe the base and are dropped). All JSON is canonical, so the same base,
//! layer, labels and epoch give the same digest.
//!
//! The new image's root is made without copying content: the base's unpacked root is
//! reproduced with hard links (directories and symlinks are recreated), then the layer is
//! unpacked over it by the same unpacker `load` uses (a changed file is a new inode, never a
//! write through a link). Both roots are only ever mounted read-only.
//!
//! Like `load`, the registry keeps no layer blobs (the base's are in the archive it was
//! loaded from; the commit's own blob is deleted once unpacked): images here are for running.
//! Exporting a committed image would need the blobs kept at load, at the cost of the
//! compressed size of every image; nothing exports images from the registry yet.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::copy::{copy_tree, FileCopy};
use crate::digest::Digest;
use crate::docs::{canonical_json, rfc3339};
use crate::error::{io_err, Error, Result};
use crate::images::{validate_name, ImageRecord, Images};
use crate::layer::{write_layer, Compression, LayerBlob, LayerOptions, LayerSource, Ownership};
use crate::load::{Decoded, MANIFEST_FILE};
use crate::unpack::{EntryError, Unpacker};
use crate::COMPRESSION_ANNOTATION;

/// OCI annotation naming the manifest digest of the image an image was made from.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// A layer written for a commit, in a work directory removed when this is dropped.
#[derive(Debug)]
pub struct CommitLayer {
    work: Option<PathBuf>,
    /// The layer blob (inside the work directory).
    pub blob: LayerBlob,
    epoch: u64,
}

impl Drop for CommitLayer {
    fn drop(&mut self) {
        if let Some(w) = self.work.take() {
            let _ = fs::remove_dir_all(w);
        }
    }
}

impl Images {
    /// Writes the layer of a commit on top of `base`: the host directories `dirs` placed at
    /// their container paths ([`LayerSource::Mapped`], parents' metadata from the base's
    /// root), each with an opaque whiteout; mtime `epoch`, gzip. Owners are the numeric
    /// uid/gid the files have (a service's data stays owned by its user).
    pub fn write_commit_layer(
        &self,
        base: &ImageRecord,
        dirs: &[(PathBuf, PathBuf)],
        epoch: u64,
        created_by: &str,
    ) -> Result<CommitLayer> {
        // Private to root, as `load` makes it.
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(self.dir())
            .map_err(io_err(self.dir(), "create directory"))?;
        // Removed by `CommitLayer`'s drop from here on.
        let work = tempfile::Builder::new()
            .prefix(".commit-")
            .tempdir_in(self.dir())
            .map_err(io_err(self.dir(), "create a directory in"))?
            .keep();
        let mut layer = CommitLayer {
            work: Some(work.clone()),
            blob: LayerBlob {
                path: PathBuf::new(),
                compression: Default::default(),
                digest: Digest::of_bytes(b""),
                size: 0,
                diff_id: Digest::of_bytes(b""),
                created_by: String::new(),
            },
            epoch,
        };
        let source = LayerSource::Mapped {
            parents_from: self.rootfs(base),
            dirs: dirs
                .iter()
                .map(|(host, inside)| (inside.clone(), host.clone()))
                .collect(),
        };
        // Uncompressed: the registry keeps no blobs, so this file is unpacked once and
        // deleted, and a running container stays frozen while it is written.
        let opts = LayerOptions {
            epoch,
            owner: Ownership::FromDisk,
            compression: Compression::None,
            created_by: created_by.to_string(),
        };
        layer.blob = write_layer(&source, &opts, &work.join("layer"))?;
        Ok(layer)
    }

    /// Makes the image `base` + `layer` and records it under `name` (validated and
    /// normalized, taken from any image that had it) with `labels` merged into the base's.
    /// Returns its record and whether it was new (committing the same thing twice gives the
    /// same image). Nothing is visible until the image directory is renamed into place.
    pub fn commit(
        &self,
        base: &ImageRecord,
        layer: CommitLayer,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(ImageRecord, bool)> {
        let name = validate_name(name)?;
        let base_dir = self.path(base);
        let cfg_path = base_dir.join("config.json");
        let man_path = base_dir.join(MANIFEST_FILE);
        let cfg_bytes = fs::read(&cfg_path).map_err(io_err(&cfg_path, "read"))?;
        let man_bytes = match fs::read(&man_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Invalid {
                    field: format!("image {}", base.name.as_deref().unwrap_or(&base.digest)),
                    reason: format!(
                        "{} is missing (loaded by an older distill); remove the image with `distill rmi` and load it again",
                        man_path.display()
                    ),
                })
            }
            Err(e) => return Err(io_err(&man_path, "read")(e)),
        };
        let created = rfc3339(layer.epoch);
        let config = derived_config(&cfg_bytes, &layer.blob, labels, &created)?;
        let config_bytes = canonical_json(&config)?;
        let config_digest = Digest::of_bytes(&config_bytes);
        let manifest = derived_manifest(
            &man_bytes,
            &layer.blob,
            &config_digest,
            config_bytes.len() as u64,
            &base.digest,
        )?;
        let manifest_bytes = canonical_json(&manifest)?;
        let digest = Digest::of_bytes(&manifest_bytes);
        let dest = self.dir().join(digest.hex());
        let fresh = !dest.join("rootfs").exists();
        if fresh {
            let work = layer.work.clone().unwrap_or_default();
            let img = work.join("image");
            let rootfs = img.join("rootfs");
            fs::create_dir(&img).map_err(io_err(&img, "create directory"))?;
            copy_tree(&self.rootfs(base), &rootfs, FileCopy::HardLink, &[])?;
            apply_layer(&layer.blob, &rootfs)?;
            for (file, bytes) in [
                ("config.json", &config_bytes),
                (MANIFEST_FILE, &manifest_bytes),
            ] {
                let p = img.join(file);
                fs::write(&p, bytes).map_err(io_err(&p, "write"))?;
            }
            match fs::rename(&img, &dest) {
                Ok(()) => {}
                // The same commit finished meanwhile.
                Err(_) if dest.join("rootfs").exists() => {}
                Err(e) => return Err(io_err(&dest, "rename into place")(e)),
            }
        }
        drop(layer);
        let rec = ImageRecord {
            name: Some(name),
            digest: digest.as_str().to_string(),
            config_digest: config_digest.as_str().to_string(),
            size: crate::images::dir_size(&dest.join("rootfs"))
                .map_err(io_err(&dest, "measure"))?,
            created: Some(created),
            loaded_at: crate::images::now_secs(),
            annotations: BTreeMap::from([(
                BASE_DIGEST_ANNOTATION.to_string(),
                base.digest.clone(),
            )]),
        };
        self.record_named(rec, fresh)
    }
}

fn bad_doc(what: &str, reason: &str) -> Error {
    Error::Invalid {
        field: what.to_string(),
        reason: reason.to_string(),
    }
}

/// The base config with the layer's diff_id, a history entry, `labels` and `created`.
fn derived_config(
    base: &[u8],
    layer: &LayerBlob,
    labels: &BTreeMap<String, String>,
    created: &str,
) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(base).map_err(|source| Error::Json {
        what: "base image config".into(),
        source,
    })?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| bad_doc("base image config", "is not a JSON object"))?;
    obj.insert("created".into(), json!(created));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad_doc("base image config", "has no rootfs.diff_ids list"))?
        .push(json!(layer.diff_id.as_str()));
    let history = obj.entry("history").or_insert_with(|| json!([]));
    history
        .as_array_mut()
        .ok_or_else(|| bad_doc("base image config", "history is not a list"))?
        .push(json!({"created": created, "created_by": layer.created_by}));
    if !labels.is_empty() {
        let rt = obj.entry("config").or_insert_with(|| json!({}));
        let rt = rt
            .as_object_mut()
            .ok_or_else(|| bad_doc("base image config", "config is not an object"))?;
        let l = rt.entry("Labels").or_insert_with(|| json!({}));
        if l.is_null() {
            *l = json!({});
        }
        let l = l
            .as_object_mut()
            .ok_or_else(|| bad_doc("base image config", "config.Labels is not an object"))?;
        for (k, val) in labels {
            l.insert(k.clone(), json!(val));
        }
    }
    Ok(v)
}

/// The base manifest pointing at the new config, with the layer added and only the base
/// annotation.
fn derived_manifest(
    base: &[u8],
    layer: &LayerBlob,
    config: &Digest,
    config_size: u64,
    base_digest: &str,
) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(base).map_err(|source| Error::Json {
        what: "base image manifest".into(),
        source,
    })?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| bad_doc("base image manifest", "is not a JSON object"))?;
    let cfg = obj
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad_doc("base image manifest", "has no config descriptor"))?;
    cfg.insert("digest".into(), json!(config.as_str()));
    cfg.insert("size".into(), json!(config_size));
    cfg.remove("annotations");
    let mut desc = Map::new();
    desc.insert("mediaType".into(), json!(layer.media_type()));
    desc.insert("digest".into(), json!(layer.digest.as_str()));
    desc.insert("size".into(), json!(layer.size));
    desc.insert(
        "annotations".into(),
        json!({ COMPRESSION_ANNOTATION: layer.compression.settings() }),
    );
    obj.get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad_doc("base image manifest", "has no layers list"))?
        .push(Value::Object(desc));
    obj.insert(
        "annotations".into(),
        json!({ BASE_DIGEST_ANNOTATION: base_digest }),
    );
    Ok(v)
}

/// Unpacks the commit's own layer blob into `rootfs` (whiteouts applied).
fn apply_layer(blob: &LayerBlob, rootfs: &Path) -> Result<()> {
    let f = fs::File::open(&blob.path).map_err(io_err(&blob.path, "open"))?;
    let mut dec = Decoded::new(io::BufReader::new(f), blob.compression)
        .map_err(io_err(&blob.path, "start decompression"))?;
    let mut un = Unpacker::new(rootfs);
    un.start_layer();
    let mut tar = tar::Archive::new(&mut dec);
    let entries = tar.entries().map_err(io_err(&blob.path, "read layer"))?;
    for e in entries {
        let mut e = e.map_err(io_err(&blob.path, "read layer"))?;
        if let Err(err) = un.entry(&mut e) {
            return Err(match err {
                EntryError::Io(e) => e,
                EntryError::Refused(reason) => Error::Source {
                    path: PathBuf::from(std::ffi::OsStr::from_bytes(&e.path_bytes())),
                    reason: format!("cannot be part of an image: {reason}"),
                },
            });
        }
    }
    un.finish()
}
