//! Canonical JSON and the OCI documents (config, manifest, index).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{LayerBlob, COMPRESSION_ANNOTATION};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

/// Annotation on the index entry naming the image reference.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Serializes `value` as canonical JSON: object keys sorted by byte order at every level,
/// no insignificant whitespace, serde_json's escaping. Used for every document we write.
pub fn canonical_json(value: &impl Serialize) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value).map_err(|e| Error::Json {
        what: "document".into(),
        source: e,
    })?;
    let mut out = Vec::new();
    write_value(&v, &mut out);
    Ok(out)
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing a string to a Vec cannot fail.
                out.extend_from_slice(&serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                write_value(&map[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(&serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// Formats seconds since 1970 as RFC 3339 UTC, e.g. `1970-01-01T00:00:00Z`.
pub fn rfc3339(epoch: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The runtime configuration of an image (the `config` object of the OCI image config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Entrypoint argv.
    pub entrypoint: Vec<String>,
    /// Default arguments.
    pub cmd: Vec<String>,
    /// Environment as `KEY=value` strings; written sorted.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// `user[:group]`.
    pub user: Option<String>,
    /// Exposed ports, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Stop signal, e.g. `SIGTERM`.
    pub stop_signal: Option<String>,
    /// GOARCH-style architecture; empty means the build machine's (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// GOOS-style OS; empty means `linux`.
    pub os: String,
}

/// Where an extra blob's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobData {
    /// In memory.
    Bytes(Vec<u8>),
    /// A file, streamed when the archive is written.
    File(PathBuf),
}

/// A blob added to the layout besides config and layers (e.g. an SBOM that a manifest
/// annotation refers to by digest). Compute its digest with [`Digest::of_bytes`] or
/// [`Digest::of_file`] to reference it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraBlob {
    /// Its content.
    pub data: BlobData,
}

/// Everything needed to write an image archive.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// Reference name, e.g. `hello:1.0` (index annotation and docker `RepoTags`).
    pub name: String,
    /// Runtime configuration.
    pub config: ImageConfig,
    /// Layers, bottom first.
    pub layers: Vec<LayerBlob>,
    /// Manifest annotations (manifest digest of the source, signer, SBOM digest, ...).
    pub annotations: BTreeMap<String, String>,
    /// Extra blobs stored in `blobs/sha256/`.
    pub extra_blobs: Vec<ExtraBlob>,
    /// `created` time of the config and history, seconds since 1970 (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
}

/// The three documents of an image, canonical and with their digests.
#[derive(Clone, Debug)]
pub struct Documents {
    /// The image config JSON.
    pub config: Vec<u8>,
    /// Its digest.
    pub config_digest: Digest,
    /// The image manifest JSON.
    pub manifest: Vec<u8>,
    /// Its digest (the image's identity).
    pub manifest_digest: Digest,
    /// The `index.json` of the layout.
    pub index: Vec<u8>,
}

fn oci_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> Error + '_ {
    move |e| Error::Invalid {
        field: what.to_string(),
        reason: e.to_string(),
    }
}

fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    oci_spec::image::Digest::from_str(d.as_str()).map_err(oci_err("digest"))
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    }
}

fn descriptor(
    mt: MediaType,
    digest: &Digest,
    size: u64,
    ann: Option<HashMap<String, String>>,
) -> Result<Descriptor> {
    let mut b = DescriptorBuilder::default()
        .media_type(mt)
        .digest(oci_digest(digest)?)
        .size(size);
    if let Some(a) = ann {
        b = b.annotations(a);
    }
    b.build().map_err(oci_err("descriptor"))
}

/// A stored blob as a manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// sha256 of the blob as stored.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its compression (gives the layer media type).
    pub compression: crate::layer::Compression,
}

/// A canonical OCI image manifest for a config and layers (no annotations).
pub(crate) fn manifest_for(
    config: &Digest,
    config_size: u64,
    layers: &[BlobRef],
) -> Result<Vec<u8>> {
    let mut descs = Vec::new();
    for l in layers {
        descs.push(descriptor(
            MediaType::from(l.compression.media_type()),
            &l.digest,
            l.size,
            None,
        )?);
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            config,
            config_size,
            None,
        )?)
        .layers(descs)
        .build()
        .map_err(oci_err("manifest"))?;
    canonical_json(&manifest)
}

/// Builds the canonical config, manifest and index for `spec`.
pub fn image_documents(spec: &ImageSpec) -> Result<Documents> {
    let c = &spec.config;
    let created = rfc3339(spec.epoch);
    let mut env = c.env.clone();
    env.sort();
    env.dedup();
    let mut ports = c.exposed_ports.clone();
    ports.sort();
    ports.dedup();
    let mut cb = ConfigBuilder::default();
    if !c.entrypoint.is_empty() {
        cb = cb.entrypoint(c.entrypoint.clone());
    }
    if !c.cmd.is_empty() {
        cb = cb.cmd(c.cmd.clone());
    }
    if !env.is_empty() {
        cb = cb.env(env);
    }
    if let Some(w) = &c.working_dir {
        cb = cb.working_dir(w.clone());
    }
    if let Some(u) = &c.user {
        cb = cb.user(u.clone());
    }
    if !ports.is_empty() {
        cb = cb.exposed_ports(ports);
    }
    if !c.labels.is_empty() {
        cb = cb.labels(
            c.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    if let Some(s) = &c.stop_signal {
        cb = cb.stop_signal(s.clone());
    }
    let runtime = cb.build().map_err(oci_err("config"))?;
    let diff_ids: Vec<String> = spec.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(oci_err("rootfs"))?;
    let mut history = Vec::new();
    for l in &spec.layers {
        let mut hb = HistoryBuilder::default().created(created.clone());
        if !l.created_by.is_empty() {
            hb = hb.created_by(l.created_by.clone());
        }
        history.push(hb.build().map_err(oci_err("history"))?);
    }
    let arch = if c.architecture.is_empty() {
        host_arch()
    } else {
        c.architecture.as_str()
    };
    let os = if c.os.is_empty() {
        "linux"
    } else {
        c.os.as_str()
    };
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::from(arch))
        .os(Os::from(os))
        .config(runtime)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(oci_err("image config"))?;
    let config_bytes = canonical_json(&config)?;
    let config_digest = Digest::of_bytes(&config_bytes);

    let mut layers = Vec::new();
    for l in &spec.layers {
        let ann = HashMap::from([(COMPRESSION_ANNOTATION.to_string(), l.compression.settings())]);
        layers.push(descriptor(
            MediaType::from(l.media_type()),
            &l.digest,
            l.size,
            Some(ann),
        )?);
    }
    let mut mb = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_bytes.len() as u64,
            None,
        )?)
        .layers(layers);
    if !spec.annotations.is_empty() {
        mb = mb.annotations(
            spec.annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let manifest = mb.build().map_err(oci_err("manifest"))?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = Digest::of_bytes(&manifest_bytes);

    let ann = if spec.name.is_empty() {
        None
    } else {
        Some(HashMap::from([(
            REF_NAME_ANNOTATION.to_string(),
            spec.name.clone(),
        )]))
    };
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor(
            MediaType::ImageManifest,
            &manifest_digest,
            manifest_bytes.len() as u64,
            ann,
        )?])
        .build()
        .map_err(oci_err("index"))?;
    let index_bytes = canonical_json(&index)?;
    Ok(Documents {
        config: config_bytes,
        config_digest,
        manifest: manifest_bytes,
        manifest_digest,
        index: index_bytes,
    })
}
