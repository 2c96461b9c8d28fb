//! The plan: every source and package of a manifest turned into a derivation with a store name.
//!
//! A derivation is everything that goes into a store path, serialized in a fixed field order
//! (structs, and `BTreeMap`s for maps) so that its sha256 is the same on every machine. The
//! digest never includes the root directory, the time, the user or the host.

use std::collections::BTreeMap;

use distill_manifest::{LoadedManifest, SourceKind};
use distill_store::{derivation_digest, StoreName};
use serde::Serialize;

/// Bumped whenever the meaning of a derivation changes (sandbox layout, env, normalization),
/// so that old store paths are not reused for builds that would now differ.
pub const BUILDER_VERSION: u32 = 1;

/// The system every derivation is built for.
pub const SYSTEM: &str = "x86_64-linux";

/// Where store paths appear inside a build sandbox, whatever the host root is.
pub const SANDBOX_STORE: &str = "/store";

/// One node of the plan.
#[derive(Debug, Clone)]
pub struct Node {
    /// Name in the manifest (`source.NAME` or `package.NAME`).
    pub name: String,
    /// The store path it builds to.
    pub store_name: StoreName,
    /// Its derivation, as serialized for the digest and recorded in the path info.
    pub derivation: serde_json::Value,
    /// Manifest names of the direct inputs (sources and packages).
    pub inputs: Vec<String>,
    /// Whether this is a source (fetched) or a package (unpacked/built).
    pub is_source: bool,
}

/// Sources and packages in build order, with their store names.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Nodes in an order where every input precedes its users.
    pub nodes: Vec<Node>,
    index: BTreeMap<String, usize>,
}

impl Plan {
    /// The node for a manifest name.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Store names of a node's direct inputs.
    pub fn references(&self, node: &Node) -> Vec<StoreName> {
        node.inputs
            .iter()
            .map(|i| self.get(i).expect("planned input").store_name.clone())
            .collect()
    }

    /// Store names of the nodes, in plan order.
    pub fn store_names(&self) -> Vec<StoreName> {
        self.nodes.iter().map(|n| n.store_name.clone()).collect()
    }
}

#[derive(Serialize)]
struct SourceDerivation<'a> {
    builder: u32,
    kind: &'static str,
    name: &'a str,
    version: &'a str,
    system: &'static str,
    sha256: &'a str,
    file_name: &'a str,
}

#[derive(Serialize)]
struct PackageDerivation<'a> {
    builder: u32,
    kind: &'static str,
    name: &'a str,
    version: &'a str,
    system: &'static str,
    /// input name -> store name
    inputs: BTreeMap<&'a str, String>,
    unpack: &'a [String],
    build: &'a [String],
    shell: Vec<String>,
    env: BTreeMap<&'a str, &'a str>,
    root: Option<&'a str>,
    source_date_epoch: i64,
}

/// Characters allowed in a store name's version part; others become `_`.
pub fn sanitize_version(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file name a source is stored under inside its store path.
pub fn source_file_name(name: &str, kind: &SourceKind) -> String {
    match kind {
        SourceKind::File { path } => path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string()),
        SourceKind::Url { url } => {
            let tail = url
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("");
            if tail.is_empty() {
                name.to_string()
            } else {
                tail.to_string()
            }
        }
        SourceKind::Deb {
            name: pkg,
            version,
            arch,
        } => format!("{}_{}_{}.deb", pkg, sanitize_version(version), arch),
    }
}

fn source_version(kind: &SourceKind) -> String {
    match kind {
        SourceKind::Deb { version, .. } => sanitize_version(version),
        _ => "src".to_string(),
    }
}

/// Turn a validated manifest into a plan. Packages come in the manifest's dependency order;
/// sources first.
pub fn plan(m: &LoadedManifest) -> Plan {
    let manifest = &m.manifest;
    let epoch = manifest.source_date_epoch as i64;
    let mut nodes: Vec<Node> = Vec::new();
    let mut index = BTreeMap::new();

    for (name, src) in &manifest.sources {
        let file_name = source_file_name(name, &src.kind);
        let version = source_version(&src.kind);
        let d = SourceDerivation {
            builder: BUILDER_VERSION,
            kind: "source",
            name,
            version: &version,
            system: SYSTEM,
            sha256: &src.sha256,
            file_name: &file_name,
        };
        let bytes = serde_json::to_vec(&d).expect("derivation serializes");
        let store_name = StoreName {
            digest: derivation_digest(&bytes),
            name: name.clone(),
            version,
        };
        index.insert(name.clone(), nodes.len());
        nodes.push(Node {
            name: name.clone(),
            store_name,
            derivation: serde_json::from_slice(&bytes).expect("derivation is JSON"),
            inputs: Vec::new(),
            is_source: true,
        });
    }

    for name in m.package_order() {
        let pkg = &manifest.packages[name];
        let inputs: Vec<String> = pkg.dependencies().into_iter().map(String::from).collect();
        let input_names: BTreeMap<&str, String> = inputs
            .iter()
            .map(|i| {
                let node = &nodes[index[i.as_str()]];
                (i.as_str(), node.store_name.to_string())
            })
            .collect();
        let shell = pkg.shell.clone();
        let d = PackageDerivation {
            builder: BUILDER_VERSION,
            kind: "package",
            name,
            version: &pkg.version,
            system: SYSTEM,
            inputs: input_names,
            unpack: &pkg.unpack,
            build: &pkg.build,
            shell,
            env: pkg
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            root: pkg.root.as_deref(),
            source_date_epoch: epoch,
        };
        let bytes = serde_json::to_vec(&d).expect("derivation serializes");
        let store_name = StoreName {
            digest: derivation_digest(&bytes),
            name: name.to_string(),
            version: sanitize_version(&pkg.version),
        };
        index.insert(name.to_string(), nodes.len());
        nodes.push(Node {
            name: name.to_string(),
            store_name,
            derivation: serde_json::from_slice(&bytes).expect("derivation is JSON"),
            inputs,
            is_source: false,
        });
    }
    Plan { nodes, index }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_sanitized() {
        assert_eq!(
            sanitize_version("1:1.35.0-4+deb12u1+b1"),
            "1_1.35.0_4+deb12u1+b1"
        );
    }

    #[test]
    fn url_file_names() {
        let k = SourceKind::Url {
            url: "https://example.org/a/b/x.tar.gz?sig=1".into(),
        };
        assert_eq!(source_file_name("s", &k), "x.tar.gz");
        let k = SourceKind::Url {
            url: "https://example.org/".into(),
        };
        assert_eq!(source_file_name("s", &k), "s");
    }
}
