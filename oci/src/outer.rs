//! Reading the outer archive (OCI layout tar or docker-archive) without unpacking it:
//! an index of its files, and the parsed, digest-checked image documents.

use crate::digest::Digest;
use crate::error::{io_err, Error, Result};
use crate::layer::Compression;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Documents larger than this are refused (they are JSON of a few KiB normally).
const DOC_LIMIT: u64 = 16 << 20;

#[derive(Clone, Debug)]
enum OuterEntry {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An index of the regular files (and symlinks) of an archive: name -> position.
pub(crate) struct Outer {
    pub(crate) path: PathBuf,
    entries: BTreeMap<String, OuterEntry>,
}

fn normalize(name: &str) -> String {
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Outer {
    pub(crate) fn open(path: &Path) -> Result<Outer> {
        let f = File::open(path).map_err(io_err(path, "open"))?;
        let mut ar = tar::Archive::new(f);
        let bad = |e: std::io::Error| Error::Archive {
            archive: path.to_path_buf(),
            reason: format!("not a readable tar: {e}"),
        };
        let mut entries = BTreeMap::new();
        for e in ar.entries_with_seek().map_err(bad)? {
            let e = e.map_err(bad)?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let norm = normalize(&name);
            let et = e.header().entry_type();
            let value = if et.is_file() {
                OuterEntry::File {
                    offset: e.raw_file_position(),
                    size: e.size(),
                }
            } else if et.is_symlink() {
                let target = e
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let base = norm.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                let joined = if target.starts_with('/') {
                    target
                } else {
                    format!("{base}/{target}")
                };
                OuterEntry::Link(normalize(&joined))
            } else {
                continue;
            };
            if entries.insert(norm.clone(), value).is_some() {
                return Err(Error::Archive {
                    archive: path.to_path_buf(),
                    reason: format!("file {norm:?} appears twice; refusing an ambiguous archive"),
                });
            }
        }
        Ok(Outer {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// All file names (for diff).
    pub(crate) fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub(crate) fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut cur = normalize(name);
        for _ in 0..8 {
            match self.entries.get(&cur) {
                Some(OuterEntry::File { offset, size }) => return Ok((*offset, *size)),
                Some(OuterEntry::Link(t)) => cur = t.clone(),
                None => break,
            }
        }
        Err(Error::Archive {
            archive: self.path.clone(),
            reason: format!("file {name:?} is missing (or a symlink loop)"),
        })
    }

    /// A reader over one file of the archive, and its size.
    pub(crate) fn reader(&self, name: &str) -> Result<(std::io::Take<File>, u64)> {
        let (offset, size) = self.locate(name)?;
        let mut f = File::open(&self.path).map_err(io_err(&self.path, "open"))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(io_err(&self.path, "seek"))?;
        Ok((f.take(size), size))
    }

    pub(crate) fn read_small(&self, name: &str, what: &str) -> Result<Vec<u8>> {
        let (r, size) = self.reader(name)?;
        if size > DOC_LIMIT {
            return Err(Error::Archive {
                archive: self.path.clone(),
                reason: format!("{what} {name:?} is {size} bytes, more than the {DOC_LIMIT} allowed for a document"),
            });
        }
        let mut v = Vec::with_capacity(size as usize);
        let mut r = r;
        r.read_to_end(&mut v).map_err(io_err(&self.path, "read"))?;
        if v.len() as u64 != size {
            return Err(Error::Archive {
                archive: self.path.clone(),
                reason: format!("{what} {name:?} is truncated"),
            });
        }
        Ok(v)
    }

    /// Reads a document blob and checks it against its descriptor's digest and size.
    fn read_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        what: &str,
    ) -> Result<(String, Vec<u8>)> {
        let name = blob_name(digest);
        let (_, actual) = self.locate(&name)?;
        if let Some(s) = size {
            if s != actual {
                return Err(Error::Blob {
                    archive: self.path.clone(),
                    blob: name,
                    what: what.into(),
                    reason: format!("size is {actual} bytes, descriptor says {s}"),
                });
            }
        }
        let data = self.read_small(&name, what)?;
        let got = Digest::of_bytes(&data);
        if &got != digest {
            return Err(Error::Blob {
                archive: self.path.clone(),
                blob: name,
                what: what.into(),
                reason: format!("digest is {got}, descriptor says {digest}"),
            });
        }
        Ok((name, data))
    }
}

pub(crate) fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Which kind of archive was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout (index.json present; also Docker 25+ `docker save` output).
    OciLayout,
    /// A docker-archive with only manifest.json.
    DockerArchive,
}

/// One layer as the documents describe it.
#[derive(Clone, Debug)]
pub(crate) struct LayerRef {
    /// File name inside the outer archive.
    pub name: String,
    /// Expected digest of the blob as stored (None for legacy docker-archive names).
    pub digest: Option<Digest>,
    /// Expected size of the blob (OCI only).
    pub size: Option<u64>,
    /// Expected diff_id from the config.
    pub diff_id: Digest,
    /// Compression from the media type; None means "detect from magic bytes".
    pub compression: Option<Compression>,
}

/// The image documents of an archive, all digests checked.
pub(crate) struct Parsed {
    pub format: ArchiveFormat,
    pub index: Option<Vec<u8>>,
    pub manifest: Option<Vec<u8>>,
    pub manifest_digest: Option<Digest>,
    pub manifest_annotations: BTreeMap<String, String>,
    pub ref_name: Option<String>,
    pub config_bytes: Vec<u8>,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerRef>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn digest_from_name(name: &str) -> Option<Digest> {
    let n = normalize(name);
    let hex = n
        .strip_prefix("blobs/sha256/")
        .or_else(|| n.strip_suffix(".json"))
        .or_else(|| n.strip_suffix(".tar"))?;
    Digest::parse(&format!("sha256:{hex}"), "name").ok()
}

impl Parsed {
    pub(crate) fn read(outer: &Outer) -> Result<Parsed> {
        let arch = || outer.path.clone();
        let json_err = |what: &str| {
            let what = format!("{}: {what}", outer.path.display());
            move |e: serde_json::Error| Error::Json { what, source: e }
        };
        let (
            format,
            index,
            manifest,
            manifest_digest,
            annotations,
            ref_name,
            config_digest,
            config_size,
            layer_descs,
            docker_layers,
        ) = if outer.has("index.json") {
            let index_bytes = outer.read_small("index.json", "index")?;
            let index: ImageIndex =
                serde_json::from_slice(&index_bytes).map_err(json_err("index.json"))?;
            let desc = index.manifests().first().ok_or_else(|| Error::Archive {
                archive: arch(),
                reason: "index.json lists no manifests".into(),
            })?;
            let mt = desc.media_type().to_string();
            if mt != "application/vnd.oci.image.manifest.v1+json"
                && mt != "application/vnd.docker.distribution.manifest.v2+json"
            {
                return Err(Error::Archive {
                        archive: arch(),
                        reason: format!("index.json's first entry has media type {mt}; only a single image manifest is supported"),
                    });
            }
            let md = Digest::parse(desc.digest().as_ref(), "index.json manifests[0].digest")?;
            let (_, mbytes) = outer.read_blob(&md, Some(desc.size()), "manifest")?;
            let m: ImageManifest = serde_json::from_slice(&mbytes).map_err(json_err("manifest"))?;
            let ref_name = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(crate::docs::REF_NAME_ANNOTATION).cloned());
            let ann: BTreeMap<String, String> = m
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let cd = Digest::parse(m.config().digest().as_ref(), "manifest config.digest")?;
            let mut layers = Vec::new();
            for (i, l) in m.layers().iter().enumerate() {
                let d =
                    Digest::parse(l.digest().as_ref(), &format!("manifest layers[{i}].digest"))?;
                let mt = l.media_type().to_string();
                let c = Compression::from_media_type(&mt).ok_or_else(|| Error::Archive {
                        archive: arch(),
                        reason: format!("layer {i} ({d}) has media type {mt}, which is not a layer type we can unpack"),
                    })?;
                layers.push((d, l.size(), c));
            }
            (
                ArchiveFormat::OciLayout,
                Some(index_bytes),
                Some(mbytes),
                Some(md),
                ann,
                ref_name,
                Some(cd),
                Some(m.config().size()),
                Some(layers),
                None,
            )
        } else if outer.has("manifest.json") {
            let bytes = outer.read_small("manifest.json", "manifest.json")?;
            let entries: Vec<DockerEntry> =
                serde_json::from_slice(&bytes).map_err(json_err("manifest.json"))?;
            let e = entries.into_iter().next().ok_or_else(|| Error::Archive {
                archive: arch(),
                reason: "manifest.json lists no images".into(),
            })?;
            let ref_name = e.repo_tags.and_then(|t| t.into_iter().next());
            (
                ArchiveFormat::DockerArchive,
                None,
                None,
                None,
                BTreeMap::new(),
                ref_name,
                None,
                None,
                None,
                Some((e.config, e.layers)),
            )
        } else {
            return Err(Error::Archive {
                    archive: arch(),
                    reason: "has neither index.json (OCI layout) nor manifest.json (docker-archive); is it an image archive?".into(),
                });
        };

        // The config.
        let (config_bytes, config_digest) = match (&config_digest, &docker_layers) {
            (Some(cd), _) => (outer.read_blob(cd, config_size, "config")?.1, cd.clone()),
            (None, Some((cfg_name, _))) => {
                let bytes = outer.read_small(cfg_name, "config")?;
                let got = Digest::of_bytes(&bytes);
                if let Some(want) = digest_from_name(cfg_name) {
                    if want != got {
                        return Err(Error::Blob {
                            archive: arch(),
                            blob: cfg_name.clone(),
                            what: "config".into(),
                            reason: format!("digest is {got}, its name says {want}"),
                        });
                    }
                }
                (bytes, got)
            }
            (None, None) => {
                return Err(Error::Archive {
                    archive: arch(),
                    reason: "no manifest found".into(),
                })
            }
        };
        let config: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(json_err("config"))?;
        let diff_ids: Vec<Digest> = config
            .rootfs()
            .diff_ids()
            .iter()
            .enumerate()
            .map(|(i, d)| Digest::parse(d, &format!("config rootfs.diff_ids[{i}]")))
            .collect::<Result<_>>()?;

        let layers: Vec<LayerRef> = match (layer_descs, docker_layers) {
            (Some(descs), _) => {
                if descs.len() != diff_ids.len() {
                    return Err(Error::Archive {
                        archive: arch(),
                        reason: format!(
                            "manifest has {} layers but config rootfs.diff_ids has {}",
                            descs.len(),
                            diff_ids.len()
                        ),
                    });
                }
                descs
                    .into_iter()
                    .zip(diff_ids)
                    .map(|((d, size, c), diff_id)| LayerRef {
                        name: blob_name(&d),
                        digest: Some(d),
                        size: Some(size),
                        diff_id,
                        compression: Some(c),
                    })
                    .collect()
            }
            (None, Some((_, names))) => {
                if names.len() != diff_ids.len() {
                    return Err(Error::Archive {
                        archive: arch(),
                        reason: format!(
                            "manifest.json has {} layers but config rootfs.diff_ids has {}",
                            names.len(),
                            diff_ids.len()
                        ),
                    });
                }
                names
                    .into_iter()
                    .zip(diff_ids)
                    .map(|(name, diff_id)| LayerRef {
                        digest: digest_from_name(&name),
                        name,
                        size: None,
                        diff_id,
                        compression: None,
                    })
                    .collect()
            }
            (None, None) => {
                return Err(Error::Archive {
                    archive: arch(),
                    reason: "no manifest found".into(),
                })
            }
        };
        Ok(Parsed {
            format,
            index,
            manifest,
            manifest_digest,
            manifest_annotations: annotations,
            ref_name,
            config_bytes,
            config_digest,
            config,
            layers,
        })
    }
}

/// Converts an oci-spec config to ours.
pub(crate) fn image_config(c: &ImageConfiguration) -> crate::docs::ImageConfig {
    let rc = c.config().clone().unwrap_or_default();
    crate::docs::ImageConfig {
        entrypoint: rc.entrypoint().clone().unwrap_or_default(),
        cmd: rc.cmd().clone().unwrap_or_default(),
        env: rc.env().clone().unwrap_or_default(),
        working_dir: rc.working_dir().clone(),
        user: rc.user().clone(),
        exposed_ports: {
            let mut p = rc.exposed_ports().clone().unwrap_or_default();
            p.sort();
            p
        },
        labels: rc
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        stop_signal: rc.stop_signal().clone(),
        architecture: c.architecture().to_string(),
        os: c.os().to_string(),
    }
}
