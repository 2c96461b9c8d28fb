//! Image assembly: the manifest's `[image]` section and the built packages become a
//! deterministic OCI image layout tarball (and optionally a docker-archive), with an SPDX 2.3
//! SBOM beside it.
//!
//! One layer per package in `image.packages` order, up to `layer_budget`; packages past the
//! budget share the last layer (merged in order, later packages winning). Layers of a package
//! depend only on its store path and the layer settings, so images that share packages share
//! layers. Annotations name the manifest's digest, the signer and the SBOM's digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distill_manifest::{Image, LoadedManifest, SourceKind};
use distill_oci::{
    canonical_json, rfc3339, write_docker_archive, write_layer, write_oci_archive, BlobData,
    Digest, ExtraBlob, ImageConfig, ImageSpec, LayerOptions, LayerSource, Ownership,
};
use distill_store::Store;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::BuildError;

/// Annotation: sha256 of the signed manifest the image was built from.
pub const MANIFEST_DIGEST_ANNOTATION: &str = "dev.distill.manifest.digest";
/// Annotation: fingerprint of the key that signed the manifest.
pub const SIGNER_ANNOTATION: &str = "dev.distill.signer";
/// Annotation: digest of the SPDX SBOM blob (also stored in the layout).
pub const SBOM_ANNOTATION: &str = "dev.distill.sbom.digest";

/// Default number of layers an image may have.
pub const DEFAULT_LAYER_BUDGET: u32 = 64;

/// Which archive formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// An OCI image layout in a tar (`<name>.oci.tar`).
    #[default]
    Oci,
    /// Also a docker-archive (`<name>.docker.tar`) that `docker load` takes.
    DockerArchive,
}

/// What image assembly produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageReport {
    /// The image name.
    pub name: String,
    /// The image manifest digest (`sha256:...`).
    pub digest: String,
    /// The OCI layout tarball.
    pub archive: PathBuf,
    /// sha256 of the tarball's bytes (to recognise an unchanged file).
    pub archive_sha256: String,
    /// Size of the tarball in bytes.
    pub archive_size: u64,
    /// The docker-archive, if asked for.
    pub docker_archive: Option<PathBuf>,
    /// The SPDX SBOM beside the tarball.
    pub sbom: PathBuf,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
    /// Sizes and kept paths, when the manifest's probes pruned the image.
    pub pruned: Option<crate::prune::PruneReport>,
}

/// The image's runtime configuration from the manifest.
pub fn image_config(image: &Image) -> ImageConfig {
    ImageConfig {
        entrypoint: image.entrypoint.clone(),
        cmd: image.cmd.clone(),
        env: image.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: image.workdir.clone(),
        user: image.user.clone(),
        exposed_ports: image.ports.clone(),
        labels: image.labels.clone(),
        stop_signal: image.stop_signal.clone(),
        architecture: "amd64".into(),
        os: "linux".into(),
    }
}

fn oci_compression(c: distill_manifest::Compression) -> distill_oci::Compression {
    match c {
        distill_manifest::Compression::Gzip => distill_oci::Compression::Gzip,
        distill_manifest::Compression::Zstd => distill_oci::Compression::Zstd,
        distill_manifest::Compression::None => distill_oci::Compression::None,
    }
}

/// Groups of packages (names or indices), one group per layer, respecting the budget.
pub fn layer_groups<T: Clone>(packages: &[T], budget: u32) -> Vec<Vec<T>> {
    let budget = budget.max(1) as usize;
    let mut groups: Vec<Vec<T>> = Vec::new();
    for (i, p) in packages.iter().enumerate() {
        if i < budget {
            groups.push(vec![p.clone()]);
        } else {
            groups.last_mut().expect("budget >= 1").push(p.clone());
        }
    }
    groups
}

/// Merge trees into `dest` in order (later trees win), hard-linking files.
pub fn merge_trees(trees: &[PathBuf], dest: &Path) -> std::io::Result<()> {
    for t in trees {
        merge_one(t, dest)?;
    }
    Ok(())
}

fn merge_one(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        let to = dest.join(e.file_name());
        let ft = e.file_type()?;
        if ft.is_dir() {
            match std::fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&to)?;
                }
                Err(_) => {}
            }
            merge_one(&from, &to)?;
            let mode = std::fs::metadata(&from)?.permissions();
            std::fs::set_permissions(&to, mode)?;
        } else {
            match std::fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&to)?,
                Ok(_) => std::fs::remove_file(&to)?,
                Err(_) => {}
            }
            if ft.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            } else {
                std::fs::hard_link(&from, &to)?;
            }
        }
    }
    Ok(())
}

/// Everything [`assemble`] needs from the build.
pub struct ImageInputs<'a> {
    /// The store.
    pub store: &'a Store,
    /// The verified manifest.
    pub manifest: &'a LoadedManifest,
    /// Its plan.
    pub plan: &'a Plan,
    /// The signer's fingerprint.
    pub signer: &'a str,
    /// Output directory.
    pub out_dir: &'a Path,
    /// Which formats to write.
    pub format: OutputFormat,
}

fn image_err(name: &str, reason: impl std::fmt::Display) -> BuildError {
    BuildError::Image {
        image: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Write the image's archive(s) and SBOM into `out_dir`.
pub fn assemble(inp: &ImageInputs<'_>) -> Result<ImageReport, BuildError> {
    let m = &inp.manifest.manifest;
    let image = m
        .image
        .as_ref()
        .ok_or_else(|| image_err("?", "the manifest has no [image] section"))?;
    let name = &image.name;
    let epoch = m.source_date_epoch;
    std::fs::create_dir_all(inp.out_dir).map_err(|e| {
        image_err(
            name,
            format!("cannot create {}: {e}", inp.out_dir.display()),
        )
    })?;
    let work = inp
        .store
        .temp_dir(&format!("image-{name}"))
        .map_err(|e| image_err(name, e))?;

    let owner = image
        .owner
        .map_or(Ownership::default(), |o| Ownership::Fixed {
            uid: o.uid,
            gid: o.gid,
        });
    let compression = oci_compression(image.compression);
    let budget = image.layer_budget.unwrap_or(DEFAULT_LAYER_BUDGET);
    let all_trees: Vec<PathBuf> = image
        .packages
        .iter()
        .map(|p| {
            inp.store.path(
                &inp.plan
                    .get(p)
                    .expect("image package is planned")
                    .store_name,
            )
        })
        .collect();

    // With probes, prune to what they touch (and prove the pruned image still runs them).
    let probes = m.trace.as_ref().is_some_and(|t| !t.probes.is_empty());
    let pruned = if probes {
        let full = work.path().join("full");
        merge_trees(&all_trees, &full)
            .map_err(|e| image_err(name, format!("assemble the full root: {e}")))?;
        Some(crate::prune::prune(
            inp.manifest,
            &full,
            &work.path().join("minimal"),
        )?)
    } else {
        None
    };
    // Kept paths of each package (all of it when not pruned).
    let kept: Vec<Option<std::collections::BTreeSet<PathBuf>>> = (0..all_trees.len())
        .map(|i| {
            pruned
                .as_ref()
                .map(|r| crate::prune::paths_for_package(&r.set, &all_trees, i))
        })
        .collect();
    // Indices of the packages that still have something in the image.
    let contributing: Vec<usize> = (0..all_trees.len())
        .filter(|&i| kept[i].as_ref().is_none_or(|k| !k.is_empty()))
        .collect();

    let mut layers = Vec::new();
    for (i, indices) in layer_groups(&contributing, budget).iter().enumerate() {
        let group: Vec<&str> = indices
            .iter()
            .map(|&j| image.packages[j].as_str())
            .collect();
        let trees: Vec<PathBuf> = indices.iter().map(|&j| all_trees[j].clone()).collect();
        let root = if trees.len() == 1 {
            trees[0].clone()
        } else {
            let merged = work.path().join(format!("merged-{i}"));
            merge_trees(&trees, &merged)
                .map_err(|e| image_err(name, format!("merge layer {i}: {e}")))?;
            merged
        };
        let source = match &pruned {
            None => LayerSource::Dir(root),
            Some(_) => LayerSource::Paths {
                root,
                paths: indices
                    .iter()
                    .flat_map(|&j| kept[j].clone().unwrap_or_default())
                    .collect(),
            },
        };
        let created_by = group
            .iter()
            .map(|p| {
                let n = inp.plan.get(p).expect("planned");
                format!("distill: package {} ({})", p, n.store_name)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let opts = LayerOptions {
            epoch,
            owner,
            compression,
            created_by,
        };
        let blob = write_layer(&source, &opts, &work.path().join(format!("layer-{i}")))
            .map_err(|e| image_err(name, format!("layer {i} ({}): {e}", group.join(", "))))?;
        layers.push(blob);
    }

    let sbom = sbom_json(inp)?;
    let sbom_digest = Digest::of_bytes(&sbom);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        MANIFEST_DIGEST_ANNOTATION.to_string(),
        inp.manifest.digest.clone(),
    );
    annotations.insert(SIGNER_ANNOTATION.to_string(), inp.signer.to_string());
    annotations.insert(
        SBOM_ANNOTATION.to_string(),
        sbom_digest.as_str().to_string(),
    );
    let spec = ImageSpec {
        name: format!("{name}:latest"),
        config: image_config(image),
        layers: layers.clone(),
        annotations,
        extra_blobs: vec![ExtraBlob {
            data: BlobData::Bytes(sbom.clone()),
        }],
        epoch,
    };
    let archive = inp.out_dir.join(format!("{name}.oci.tar"));
    let digest = write_oci_archive(&archive, &spec).map_err(|e| image_err(name, e))?;
    let docker_archive = if inp.format == OutputFormat::DockerArchive {
        let p = inp.out_dir.join(format!("{name}.docker.tar"));
        write_docker_archive(&p, &spec).map_err(|e| image_err(name, e))?;
        Some(p)
    } else {
        None
    };
    let sbom_path = inp.out_dir.join(format!("{name}.spdx.json"));
    distill_oci::write_file_atomic(&sbom_path, &sbom, 0o644)
        .map_err(|e| image_err(name, format!("write {}: {e}", sbom_path.display())))?;
    let (archive_digest, archive_size) =
        Digest::of_file(&archive).map_err(|e| image_err(name, e))?;
    Ok(ImageReport {
        name: name.clone(),
        digest: digest.as_str().to_string(),
        archive,
        archive_sha256: archive_digest.as_str().to_string(),
        archive_size,
        docker_archive,
        sbom: sbom_path,
        layers: layers
            .iter()
            .map(|l| l.digest.as_str().to_string())
            .collect(),
        pruned,
    })
}

/// The SPDX 2.3 JSON SBOM: every package in the image with its name, version, store path and
/// output digest, and every source it was made from with its pinned sha256.
pub fn sbom_json(inp: &ImageInputs<'_>) -> Result<Vec<u8>, BuildError> {
    let m = &inp.manifest.manifest;
    let image = m.image.as_ref().expect("checked by assemble");
    let hex = inp.manifest.digest.trim_start_matches("sha256:");
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // The image's packages and their whole input closure.
    let mut stack: Vec<String> = image.packages.clone();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let node = inp.plan.get(&p).expect("planned");
        stack.extend(node.inputs.iter().cloned());
    }
    for name in &seen {
        let node = inp.plan.get(name).expect("planned");
        let info = inp
            .store
            .info(&node.store_name)
            .map_err(|e| image_err(&image.name, e))?
            .ok_or_else(|| {
                image_err(
                    &image.name,
                    format!("{} is not in the store", node.store_name),
                )
            })?;
        let id = format!(
            "SPDXRef-{}-{}",
            if node.is_source { "Source" } else { "Package" },
            spdx_id(name)
        );
        let mut pkg = serde_json::json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": node.store_name.version,
            "filesAnalyzed": false,
            "downloadLocation": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": format!("store path {}, output {}", node.store_name, info.output_hash),
        });
        if let Some(src) = m.sources.get(name) {
            pkg["checksums"] =
                serde_json::json!([{ "algorithm": "SHA256", "checksumValue": src.sha256 }]);
            match &src.kind {
                SourceKind::Url { url } => pkg["downloadLocation"] = url.clone().into(),
                SourceKind::Deb {
                    name: deb,
                    version,
                    arch,
                } => {
                    pkg["versionInfo"] = version.clone().into();
                    pkg["externalRefs"] = serde_json::json!([{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": format!("pkg:deb/debian/{deb}@{}?arch={arch}", version.replace(':', "%3A")),
                    }]);
                }
                SourceKind::File { .. } => {}
            }
        } else if let Some(p) = m.packages.get(name) {
            pkg["versionInfo"] = p.version.clone().into();
        }
        packages.push(pkg);
        for input in &node.inputs {
            let input_node = inp.plan.get(input).expect("planned");
            relationships.push(serde_json::json!({
                "spdxElementId": id,
                "relationshipType": "GENERATED_FROM",
                "relatedSpdxElement": format!("SPDXRef-{}-{}", if input_node.is_source { "Source" } else { "Package" }, spdx_id(input)),
            }));
        }
    }
    for p in &image.packages {
        relationships.push(serde_json::json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": format!("SPDXRef-Package-{}", spdx_id(p)),
        }));
    }
    relationships.sort_by_key(|r| r.to_string());
    let doc = serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image.name,
        "documentNamespace": format!("urn:distill:manifest:sha256:{hex}"),
        "creationInfo": {
            "created": rfc3339(m.source_date_epoch),
            "creators": [format!("Tool: distill-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    canonical_json(&doc).map_err(|e| image_err(&image.name, e))
}

fn spdx_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_merges_the_tail() {
        let p: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            layer_groups(&p, 2),
            vec![
                vec!["a".to_string()],
                vec!["b".into(), "c".into(), "d".into()]
            ]
        );
        assert_eq!(layer_groups(&p, 10).len(), 4);
    }

    #[test]
    fn merge_later_trees_win() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        std::fs::create_dir_all(a.join("bin")).unwrap();
        std::fs::create_dir_all(b.join("bin")).unwrap();
        std::fs::write(a.join("bin/x"), "a").unwrap();
        std::fs::write(a.join("bin/only-a"), "a").unwrap();
        std::fs::write(b.join("bin/x"), "b").unwrap();
        std::os::unix::fs::symlink("x", b.join("bin/link")).unwrap();
        let out = d.path().join("out");
        merge_trees(&[a, b], &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("bin/x")).unwrap(), "b");
        assert_eq!(
            std::fs::read_to_string(out.join("bin/only-a")).unwrap(),
            "a"
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/link")).unwrap(),
            Path::new("x")
        );
    }
}
