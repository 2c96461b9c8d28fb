//! The typed, validated manifest.
//!
//! Values of these types only come out of [`Manifest::parse_str`] / [`Manifest::load`], which
//! check every rule documented in `docs/manifest.md`; code that receives a [`Manifest`] can rely
//! on names being resolvable, packages being acyclic, and so on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The only manifest format version this crate understands.
pub const MANIFEST_VERSION: u32 = 1;

/// The default shell used to run build steps: `sh -e -c STEP`, `sh` taken from `PATH`.
pub const DEFAULT_SHELL: [&str; 3] = ["sh", "-e", "-c"];

/// The default Debian architecture of a `deb` source.
pub const DEFAULT_ARCH: &str = "amd64";

/// The default package version when a package does not set one.
pub const DEFAULT_PACKAGE_VERSION: &str = "0";

/// Environment variable names a package's `env` may not set: the builder owns them.
pub const RESERVED_BUILD_ENV: [&str; 6] =
    ["PATH", "HOME", "out", "SOURCE_DATE_EPOCH", "TZ", "LC_ALL"];

/// A parsed and validated manifest (`version = 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Format version; always [`MANIFEST_VERSION`].
    pub version: u32,
    /// Modification time (seconds since the epoch) for every output file and layer entry.
    pub source_date_epoch: u64,
    /// Pinned inputs, by name (`[source.NAME]`).
    pub sources: BTreeMap<String, Source>,
    /// Build recipes, by name (`[package.NAME]`).
    pub packages: BTreeMap<String, Package>,
    /// The image to assemble, if any (`[image]`).
    pub image: Option<Image>,
    /// Probes that decide which files the image keeps, if any (`[trace]`).
    pub trace: Option<Trace>,
}

/// A pinned input: where it comes from and the sha256 its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Where the bytes come from.
    pub kind: SourceKind,
    /// Lowercase hex sha256 (64 characters) of the exact bytes.
    pub sha256: String,
}

/// Where a source's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A file next to the manifest; `path` is relative to the manifest's directory.
    File {
        /// Relative path (never absolute; may contain `..`).
        path: PathBuf,
    },
    /// A file downloaded over `http` or `https`.
    Url {
        /// The URL.
        url: String,
    },
    /// A Debian binary package fetched with the machine's apt configuration.
    Deb {
        /// Debian package name.
        name: String,
        /// Exact Debian version (with epoch if any).
        version: String,
        /// Debian architecture (`amd64`, `all`, ...).
        arch: String,
    },
}

/// A package: a build recipe whose output becomes one store path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Version string used in the store path name (default `"0"`).
    pub version: String,
    /// Sources and packages visible inside the build sandbox (at `/store/NAME`, `$NAME`).
    pub inputs: Vec<String>,
    /// Sources unpacked into `$out`, in order, before the build steps run.
    pub unpack: Vec<String>,
    /// Shell steps, each run as `shell... STEP`.
    pub build: Vec<String>,
    /// The command prefix that runs each step (default [`DEFAULT_SHELL`]).
    pub shell: Vec<String>,
    /// Extra environment for the build steps.
    pub env: BTreeMap<String, String>,
    /// A package whose tree is mounted read-only as `/` inside the sandbox.
    pub root: Option<String>,
}

impl Package {
    /// Every name this package depends on: `inputs`, `unpack` and `root`, sorted, without
    /// duplicates.
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self
            .inputs
            .iter()
            .chain(self.unpack.iter())
            .chain(self.root.iter())
            .map(String::as_str)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        deps
    }
}

/// Layer compression of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (the default).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// Uncompressed tar layers.
    None,
}

impl Compression {
    /// The manifest spelling: `gzip`, `zstd` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// A numeric `uid:gid` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The image to assemble from packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Image name, `[a-z0-9][a-z0-9._-]*`.
    pub name: String,
    /// Packages whose trees are merged into the root, in order, one layer each.
    pub packages: Vec<String>,
    /// OCI `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// OCI `Cmd`.
    pub cmd: Vec<String>,
    /// OCI `Env`, by name.
    pub env: BTreeMap<String, String>,
    /// OCI `WorkingDir` (absolute).
    pub workdir: Option<String>,
    /// OCI `User` (`uid`, `uid:gid`, `name` or `name:group`).
    pub user: Option<String>,
    /// OCI `ExposedPorts`, normalized to `PORT/PROTO`, sorted, without duplicates.
    pub ports: Vec<String>,
    /// OCI `Labels`.
    pub labels: BTreeMap<String, String>,
    /// OCI `StopSignal` (e.g. `SIGTERM`).
    pub stop_signal: Option<String>,
    /// Layer compression.
    pub compression: Compression,
    /// Maximum number of layers; packages past it share the last layer.
    pub layer_budget: Option<u32>,
    /// Owner written for every file in the layers (default `0:0`).
    pub owner: Option<Owner>,
}

/// Probes run under the tracer, and path globs that override its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Absolute path globs always kept in the image.
    pub keep: Vec<String>,
    /// Absolute path globs always removed from the image (wins over `keep` and traced files).
    pub exclude: Vec<String>,
    /// The commands to run.
    pub probes: Vec<Probe>,
}

/// One command run in the assembled image under the tracer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Optional name, shown in progress and errors (unique when given).
    pub name: Option<String>,
    /// argv; `args[0]` is looked up like the image's entrypoint would be.
    pub args: Vec<String>,
    /// Extra environment on top of the image's `env`.
    pub env: BTreeMap<String, String>,
    /// Text fed on standard input (empty input when absent).
    pub stdin: Option<String>,
    /// Expected exit status (default 0).
    pub exit_code: i32,
}

impl Probe {
    /// A label for messages: the name if given, else `probe[INDEX]`.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("probe[{index}]"),
        }
    }
}

/// A manifest read from disk, with where it came from and the digest of its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The path it was loaded from, as given.
    pub path: PathBuf,
    /// The manifest's directory, absolute; `file` sources are relative to it.
    pub dir: PathBuf,
    /// `sha256:<hex>` of the file's exact bytes.
    pub digest: String,
}

impl LoadedManifest {
    /// Packages in dependency order: every package after all packages it depends on; ties
    /// broken by name, so the order is deterministic.
    pub fn package_order(&self) -> Vec<&str> {
        self.manifest.package_order()
    }

    /// The absolute location of a `file` source's path (relative to the manifest's directory).
    pub fn resolve_file(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }
}

impl Manifest {
    /// Packages in dependency order (topological; among packages that are ready at the same
    /// time, the smallest name first).
    pub fn package_order(&self) -> Vec<&str> {
        use std::collections::{BTreeSet, HashMap};
        let mut remaining: HashMap<&str, usize> = HashMap::new();
        let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, pkg) in &self.packages {
            let deps: Vec<&str> = pkg
                .dependencies()
                .into_iter()
                .filter(|d| self.packages.contains_key(*d))
                .collect();
            remaining.insert(name.as_str(), deps.len());
            for d in deps {
                dependents.entry(d).or_default().push(name.as_str());
            }
        }
        let mut ready: BTreeSet<&str> = remaining
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::with_capacity(self.packages.len());
        while let Some(next) = ready.pop_first() {
            order.push(next);
            for dep in dependents.get(next).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(n) = remaining.get_mut(dep) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(dep);
                    }
                }
            }
        }
        // Validation rejects cycles, so every package is placed; anything left over would be
        // part of a cycle and is appended by name so the function stays total.
        if order.len() < self.packages.len() {
            for name in self.packages.keys() {
                if !order.contains(&name.as_str()) {
                    order.push(name.as_str());
                }
            }
        }
        order
    }

    /// The manifest as canonical JSON: keys sorted, no insignificant whitespace, defaults
    /// filled in. Two manifests that mean the same thing give the same bytes.
    pub fn canonical_json(&self) -> String {
        // Every map is a BTreeMap and every struct serializes its fields in a fixed order, so
        // serde_json's compact output is canonical. Serialization of these plain types cannot
        // fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
