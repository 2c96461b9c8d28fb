//! Writing an image as an OCI layout tarball or a docker-archive.

use crate::digest::{Digest, HashReader};
use crate::docs::{canonical_json, image_documents, BlobData, ImageSpec};
use crate::error::{io_err, Error, Result};
use crate::tarfmt::{EntryHeader, Kind, TarWriter};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

enum Src<'a> {
    Mem(&'a [u8]),
    File {
        path: &'a Path,
        digest: Option<&'a Digest>,
        size: u64,
    },
}

/// Writes `files` (archive path -> source) as a deterministic tar at `out`, atomically.
fn write_tar(out: &Path, files: &BTreeMap<String, Src<'_>>) -> Result<()> {
    let tmp = crate::atomic::temp_file_beside(out, "tmp", 0o644)
        .map_err(io_err(out, "create a temporary file beside"))?;
    let tmp_path = tmp.path().to_path_buf();
    let result = (|| -> Result<()> {
        let f: &File = tmp.as_file();
        let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, f));
        let werr = |e: io::Error| Error::Io {
            path: tmp_path.clone(),
            op: "write",
            source: e,
        };
        let mut dirs_done: std::collections::BTreeSet<String> = Default::default();
        let mut buf = vec![0u8; 1 << 20];
        for (name, src) in files {
            // Parent directories first, each once (names are sorted, so parents come first).
            let mut acc = String::new();
            let parts: Vec<&str> = name.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(p);
                if dirs_done.insert(acc.clone()) {
                    tar.header(&EntryHeader {
                        path: acc.as_bytes(),
                        kind: Kind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: 0,
                    })
                    .map_err(werr)?;
                }
            }
            match src {
                Src::Mem(b) => tar.bytes(name.as_bytes(), b, 0o644, 0).map_err(werr)?,
                Src::File { path, digest, size } => {
                    let f = File::open(path).map_err(io_err(*path, "open"))?;
                    let mut r = HashReader::new(f);
                    let h = EntryHeader {
                        path: name.as_bytes(),
                        kind: Kind::File { size: *size },
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                        mtime: 0,
                    };
                    tar.file(&h, &mut r, &mut buf)
                        .map_err(io_err(*path, "copy into archive"))?;
                    let (got, _) = r.finish();
                    if let Some(want) = digest {
                        if got != **want {
                            return Err(Error::Source {
                                path: path.to_path_buf(),
                                reason: format!("blob changed since it was written: digest is {got}, expected {want}; rebuild the layer"),
                            });
                        }
                    }
                }
            }
        }
        let mut w = tar.finish().map_err(werr)?;
        w.flush().map_err(werr)?;
        w.into_inner().map_err(|e| werr(e.into_error()))?;
        Ok(())
    })();
    // On error the temporary file is removed when `tmp` is dropped.
    result?;
    crate::atomic::persist(tmp, out).map_err(io_err(out, "rename into place"))
}

struct Layout<'a> {
    files: BTreeMap<String, Src<'a>>,
    manifest_digest: Digest,
}

const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn layout<'a>(
    spec: &'a ImageSpec,
    docs: &'a crate::docs::Documents,
    extra: &'a [(Digest, u64)],
) -> Result<Layout<'a>> {
    if spec.layers.is_empty() {
        return Err(Error::Invalid {
            field: "image layers".into(),
            reason: "an image needs at least one layer".into(),
        });
    }
    let mut files = BTreeMap::new();
    files.insert("oci-layout".to_string(), Src::Mem(OCI_LAYOUT));
    files.insert("index.json".to_string(), Src::Mem(&docs.index));
    files.insert(blob_name(&docs.manifest_digest), Src::Mem(&docs.manifest));
    files.insert(blob_name(&docs.config_digest), Src::Mem(&docs.config));
    for l in &spec.layers {
        files.insert(
            blob_name(&l.digest),
            Src::File {
                path: &l.path,
                digest: Some(&l.digest),
                size: l.size,
            },
        );
    }
    for (b, (d, size)) in spec.extra_blobs.iter().zip(extra) {
        let src = match &b.data {
            BlobData::Bytes(v) => Src::Mem(v),
            BlobData::File(p) => Src::File {
                path: p,
                digest: Some(d),
                size: *size,
            },
        };
        files.insert(blob_name(d), src);
    }
    Ok(Layout {
        files,
        manifest_digest: docs.manifest_digest.clone(),
    })
}

fn extra_digests(spec: &ImageSpec) -> Result<Vec<(Digest, u64)>> {
    spec.extra_blobs
        .iter()
        .map(|b| match &b.data {
            BlobData::Bytes(v) => Ok((Digest::of_bytes(v), v.len() as u64)),
            BlobData::File(p) => Digest::of_file(p),
        })
        .collect()
}

/// Writes `image` as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`)
/// in a deterministic tar at `out` (sorted entries, mtime 0, mode 0644/0755, owner 0),
/// atomically (temp file in the same directory, fsync, rename). Returns the manifest digest.
pub fn write_oci_archive(out: &Path, image: &ImageSpec) -> Result<Digest> {
    let docs = image_documents(image)?;
    let extra = extra_digests(image)?;
    let l = layout(image, &docs, &extra)?;
    write_tar(out, &l.files)?;
    Ok(l.manifest_digest)
}

/// Writes `image` as a docker-archive that `docker load` and `podman load` accept: the OCI
/// layout plus `manifest.json` (Config, RepoTags, Layers) and `repositories`, the layout
/// Docker 25+ itself writes. Layers are the same (possibly compressed) blobs. Returns the
/// manifest digest, identical to [`write_oci_archive`]'s for the same image.
pub fn write_docker_archive(out: &Path, image: &ImageSpec) -> Result<Digest> {
    let docs = image_documents(image)?;
    let extra = extra_digests(image)?;
    let tag = docker_tag(&image.name);
    let layers: Vec<String> = image.layers.iter().map(|x| blob_name(&x.digest)).collect();
    let mut entry = serde_json::Map::new();
    entry.insert("Config".into(), blob_name(&docs.config_digest).into());
    entry.insert("Layers".into(), layers.into());
    let mut repositories = serde_json::Map::new();
    if let Some((repo, t)) = &tag {
        entry.insert("RepoTags".into(), vec![format!("{repo}:{t}")].into());
        let top = image
            .layers
            .last()
            .map(|x| x.digest.hex().to_string())
            .unwrap_or_default();
        let mut tags = serde_json::Map::new();
        tags.insert(t.clone(), top.into());
        repositories.insert(repo.clone(), tags.into());
    }
    let manifest_json = canonical_json(&vec![serde_json::Value::Object(entry)])?;
    let repositories_json = canonical_json(&serde_json::Value::Object(repositories))?;
    let mut l = layout(image, &docs, &extra)?;
    l.files
        .insert("manifest.json".into(), Src::Mem(&manifest_json));
    if tag.is_some() {
        l.files
            .insert("repositories".into(), Src::Mem(&repositories_json));
    }
    write_tar(out, &l.files)?;
    Ok(l.manifest_digest)
}

/// Splits `name[:tag]` into repository and tag (default `latest`); None for an empty name.
fn docker_tag(name: &str) -> Option<(String, String)> {
    if name.is_empty() {
        return None;
    }
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => Some((
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
        )),
        None => Some((name.to_string(), "latest".to_string())),
    }
}
