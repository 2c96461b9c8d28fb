//! `load_archive`: verify and unpack an OCI layout tar or docker-archive.

use crate::digest::{Digest, HashReader, PipelinedHashReader};
use crate::docs::ImageConfig;
use crate::error::{io_err, Error, Result};
use crate::layer::Compression;
use crate::outer::{image_config, ArchiveFormat, LayerRef, Outer, Parsed};
use crate::unpack::{EntryError, Unpacker};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What [`load_archive`] found and unpacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Which kind of archive it was.
    pub format: ArchiveFormat,
    /// Digest of the image manifest (None for a legacy docker-archive, which has none).
    pub manifest_digest: Option<Digest>,
    /// Digest of the image config (the docker "image id").
    pub config_digest: Digest,
    /// The runtime configuration (entrypoint, env, ...).
    pub config: ImageConfig,
    /// Blob digests of the layers, bottom first (for legacy docker-archives without
    /// content-addressed names, the diff_id).
    pub layers: Vec<Digest>,
    /// diff_ids (sha256 of each uncompressed layer tar), bottom first.
    pub diff_ids: Vec<Digest>,
    /// `org.opencontainers.image.ref.name` of the index entry, or the first docker RepoTag.
    pub ref_name: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Sum of the layer blob sizes as stored.
    pub blob_bytes: u64,
    /// Bytes of regular-file content written while unpacking (all layers).
    pub unpacked_bytes: u64,
    /// `dest/rootfs`.
    pub rootfs: PathBuf,
}

/// The file of a loaded image's directory holding its image manifest (for a docker-archive,
/// one made from the layers as read).
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// Loads an image archive (OCI layout tar or docker-archive) into `dest`, which must not
/// exist: `dest/rootfs` gets the unpacked layers, `dest/config.json` the image config,
/// `dest/manifest.json` the image manifest (made from the layers as read for a
/// docker-archive, which has none). Layer blobs are not kept.
///
/// Every document and layer blob is checked against its digest and size while it is
/// streamed (each byte is read once); layer entries that are absolute, contain `..`, go
/// through a symlink pointing outside the root, hard-link outside, or are device nodes are
/// refused. OCI whiteouts are applied. The work happens in a sibling temp directory that is
/// renamed to `dest` at the end, so a failed load leaves `dest` absent.
pub fn load_archive(archive: &Path, dest: &Path) -> Result<LoadedImage> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::DestinationExists(dest.to_path_buf()));
    }
    let outer = Outer::open(archive)?;
    let parsed = Parsed::read(&outer)?;
    // Removed with its content if anything below fails.
    let tmp_dir = crate::atomic::temp_dir_beside(dest, "load")
        .map_err(io_err(dest, "create a directory beside"))?;
    let tmp = tmp_dir.path().to_path_buf();
    let rootfs_tmp = tmp.join("rootfs");
    fs::create_dir(&rootfs_tmp).map_err(io_err(&rootfs_tmp, "create directory"))?;
    let mut un = Unpacker::new(&rootfs_tmp);
    let mut blob_bytes = 0;
    let mut layer_digests = Vec::new();
    let mut blobs = Vec::new();
    for (i, l) in parsed.layers.iter().enumerate() {
        un.start_layer();
        let (d, size, blob) = unpack_layer(&outer, i, l, &mut un)?;
        blob_bytes += size;
        layer_digests.push(d);
        blobs.push(blob);
    }
    un.finish()?;
    let cfg_path = tmp.join("config.json");
    fs::write(&cfg_path, &parsed.config_bytes).map_err(io_err(&cfg_path, "write"))?;
    // The layer descriptors, for images derived from this one (`commit`); a docker-archive
    // has no manifest, so one is made from what was read.
    let manifest = match &parsed.manifest {
        Some(m) => m.clone(),
        None => crate::docs::manifest_for(
            &parsed.config_digest,
            parsed.config_bytes.len() as u64,
            &blobs,
        )?,
    };
    let man_path = tmp.join(MANIFEST_FILE);
    fs::write(&man_path, &manifest).map_err(io_err(&man_path, "write"))?;
    fs::rename(&tmp, dest).map_err(io_err(dest, "rename into place"))?;
    // It is `dest` now: nothing to remove.
    let _ = tmp_dir.keep();
    Ok(LoadedImage {
        format: parsed.format,
        manifest_digest: parsed.manifest_digest.clone(),
        config_digest: parsed.config_digest.clone(),
        config: image_config(&parsed.config),
        layers: layer_digests,
        diff_ids: parsed.layers.iter().map(|l| l.diff_id.clone()).collect(),
        ref_name: parsed.ref_name.clone(),
        annotations: parsed.manifest_annotations.clone(),
        blob_bytes,
        unpacked_bytes: un.bytes,
        rootfs: dest.join("rootfs"),
    })
}

/// A decompressing reader that hands back the raw reader at the end.
pub(crate) enum Decoded<R: Read> {
    Plain(R),
    Gzip(HashReader<flate2::read::MultiGzDecoder<R>>),
    Zstd(HashReader<zstd::stream::read::Decoder<'static, io::BufReader<R>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

/// Detects compression from the first bytes of a blob.
pub(crate) fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

impl<R: Read> Decoded<R> {
    pub(crate) fn new(r: R, c: Compression) -> io::Result<Decoded<R>> {
        Ok(match c {
            Compression::None => Decoded::Plain(r),
            Compression::Gzip => {
                Decoded::Gzip(HashReader::new(flate2::read::MultiGzDecoder::new(r)))
            }
            Compression::Zstd => {
                Decoded::Zstd(HashReader::new(zstd::stream::read::Decoder::new(r)?))
            }
        })
    }

    /// The raw reader, without decompressing the rest: after a refused entry the rest of a
    /// layer (a decompression bomb, say) is not worth inflating, only hashing.
    pub(crate) fn abandon(self) -> R {
        match self {
            Decoded::Plain(r) => r,
            Decoded::Gzip(h) => h.into_parts().2.into_inner(),
            Decoded::Zstd(h) => h.into_parts().2.finish().into_inner(),
        }
    }

    /// Reads to the end of the decompressed stream; returns whether that worked, the
    /// digest of the decompressed bytes (None for plain, where the raw digest is the
    /// diff_id) and the raw reader.
    pub(crate) fn finish(mut self) -> (io::Result<()>, Option<Digest>, R) {
        let drained = io::copy(&mut self, &mut io::sink()).map(|_| ());
        match self {
            Decoded::Plain(r) => (drained, None, r),
            Decoded::Gzip(h) => {
                let (d, _, dec) = h.into_parts();
                (drained, Some(d), dec.into_inner())
            }
            Decoded::Zstd(h) => {
                let (d, _, dec) = h.into_parts();
                (drained, Some(d), dec.finish().into_inner())
            }
        }
    }
}

fn unpack_layer(
    outer: &Outer,
    index: usize,
    l: &LayerRef,
    un: &mut Unpacker,
) -> Result<(Digest, u64, crate::docs::BlobRef)> {
    let archive = &outer.path;
    let (reader, size) = outer.reader(&l.name)?;
    let what = format!("layer {index}");
    let blob_err = |reason: String| Error::Blob {
        archive: archive.clone(),
        blob: l.name.clone(),
        what: what.clone(),
        reason,
    };
    if let Some(want) = l.size {
        if want != size {
            return Err(blob_err(format!(
                "size is {size} bytes, descriptor says {want}"
            )));
        }
    }
    let mut raw = PipelinedHashReader::new(reader);
    let compression = match l.compression {
        Some(c) => c,
        None => sniff(raw.peek().map_err(io_err(archive, "read"))?),
    };
    let digest_label = l.digest.as_ref().unwrap_or(&l.diff_id).to_string();
    let mut dec = Decoded::new(raw, compression).map_err(io_err(archive, "start decompression"))?;
    // Unpack; keep the first failure but always finish hashing, so that a corrupted blob is
    // reported as a digest mismatch rather than as whatever garbage it decoded to.
    let mut failure: Option<Error> = None;
    {
        let mut tar = tar::Archive::new(&mut dec);
        match tar.entries() {
            Err(e) => failure = Some(blob_err(format!("not a tar: {e}"))),
            Ok(entries) => {
                for e in entries {
                    let mut e = match e {
                        Ok(e) => e,
                        Err(err) => {
                            failure = Some(blob_err(format!("not a valid tar: {err}")));
                            break;
                        }
                    };
                    if let Err(err) = un.entry(&mut e) {
                        failure = Some(match err {
                            EntryError::Io(e) => e,
                            EntryError::Refused(reason) => Error::UnsafeEntry {
                                archive: archive.clone(),
                                layer: index,
                                digest: digest_label.clone(),
                                entry: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                                reason,
                            },
                        });
                        break;
                    }
                }
            }
        }
    }
    // After a refusal the rest is only hashed, not decompressed (see `abandon`).
    let (drained, diff, raw) = match failure {
        Some(_) => (Ok(()), None, dec.abandon()),
        None => dec.finish(),
    };
    let (raw_digest, count) = raw.finish().map_err(io_err(archive, "read"))?;
    if count != size {
        return Err(blob_err(format!(
            "truncated: {count} of {size} bytes present"
        )));
    }
    if let Some(want) = &l.digest {
        if &raw_digest != want {
            return Err(blob_err(format!(
                "digest is {raw_digest}, descriptor says {want}"
            )));
        }
    }
    let diff_id = diff.unwrap_or_else(|| raw_digest.clone());
    if let Some(f) = failure {
        return Err(f);
    }
    if let Err(e) = drained {
        return Err(blob_err(format!(
            "cannot decompress ({}): {e}",
            compression.settings()
        )));
    }
    if diff_id != l.diff_id {
        return Err(blob_err(format!(
            "uncompressed digest is {diff_id}, config rootfs.diff_ids[{index}] says {}",
            l.diff_id
        )));
    }
    let blob = crate::docs::BlobRef {
        digest: raw_digest,
        size,
        compression,
    };
    Ok((l.digest.clone().unwrap_or(diff_id), size, blob))
}
