//! distill's builder: from a signed manifest to store paths.
//!
//! [`build`] verifies the manifest's detached OpenPGP signature against the trusted keyrings
//! *before* anything else (nothing is fetched, run or written when it fails), then loads and
//! validates the manifest, turns it into a [`plan`] of derivations, fetches the sources that
//! are not in the store yet into the fetch cache ([`fetch`]), unpacks and builds packages in
//! the hermetic sandbox ([`step`]) and adds each output to the store atomically. A second
//! build of an unchanged manifest finds every store path valid and does no work.

pub mod fetch;
pub mod image;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod step;
pub mod unpack;

use std::path::{Path, PathBuf};

use distill_manifest::sign::{self, Signer, VerifyError};
use distill_manifest::{LoadedManifest, ManifestError};
use distill_store::{PathInfo, Store, StoreName};
use serde::Serialize;

pub use image::{ImageReport, OutputFormat};
pub use plan::{plan, Plan};
pub use progress::Progress;

/// Why a build did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The signature was refused; nothing was fetched, run or written.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The manifest is not valid; nothing was fetched, run or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A source could not be fetched or did not match its pin.
    #[error("source {source_name}: {reason}")]
    Fetch {
        /// The source's name in the manifest.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A build step failed.
    #[error("package {package}: build step {step} (`{command}`) {what}{}", tail_text(.tail))]
    Step {
        /// The package.
        package: String,
        /// 1-based step number.
        step: usize,
        /// The step's command line.
        command: String,
        /// Exit code, signal or sandbox error.
        what: String,
        /// The last lines of its output.
        tail: Vec<String>,
    },
    /// A package could not be assembled (unpack, store).
    #[error("package {package}: {reason}")]
    Package {
        /// The package (or source) name.
        package: String,
        /// What went wrong.
        reason: String,
    },
    /// The image could not be assembled or written.
    #[error("image {image}: {reason}")]
    Image {
        /// The image name.
        image: String,
        /// What went wrong.
        reason: String,
    },
    /// The store could not be opened or written.
    #[error("store {root}: {reason}")]
    Store {
        /// The root directory.
        root: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        let mut s = String::from("; last lines of its output:");
        for l in tail {
            s.push_str("\n  | ");
            s.push_str(l);
        }
        s
    }
}

impl BuildError {
    /// The process exit code for this error: 2 for refused input (signature, manifest), 1 for
    /// a build that failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Signature(_) | BuildError::Manifest(_) => 2,
            _ => 1,
        }
    }
}

/// Options of one build.
pub struct BuildOptions {
    /// The root directory (store, cache, records).
    pub root: PathBuf,
    /// Trusted keyrings; at least one.
    pub keyrings: Vec<PathBuf>,
    /// Where progress goes.
    pub progress: Progress,
    /// Echo every build output line to stderr.
    pub verbose: bool,
    /// Where to write the image (`<name>.oci.tar`, SBOM); `None` builds packages only.
    pub out: Option<PathBuf>,
    /// Which archive formats to write.
    pub format: OutputFormat,
}

/// One store path of a build.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BuiltPath {
    /// Name in the manifest.
    pub name: String,
    /// `source` or `package`.
    pub kind: String,
    /// Store name.
    pub store_name: String,
    /// Path on this machine.
    pub path: PathBuf,
    /// The output tree's digest.
    pub output_hash: String,
    /// Whether this build created it (false: it was already in the store).
    pub built: bool,
}

/// What a build produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BuildReport {
    /// The manifest file.
    pub manifest: PathBuf,
    /// sha256 of the manifest's bytes.
    pub manifest_digest: String,
    /// Fingerprint of the key that signed it.
    pub signer: String,
    /// Every source and package, in build order.
    pub paths: Vec<BuiltPath>,
    /// The image, when one was asked for.
    pub image: Option<ImageReport>,
}

/// The state a verified build works with; also what later stages (images) need.
pub struct Verified {
    /// The loaded manifest.
    pub manifest: LoadedManifest,
    /// Who signed it.
    pub signer: Signer,
}

/// Verify the signature, then load and validate the manifest. Writes nothing. The file is
/// read once: what is parsed is exactly what was verified.
pub fn verify_and_load(manifest: &Path, keyrings: &[PathBuf]) -> Result<Verified, BuildError> {
    let bytes = std::fs::read(manifest).map_err(|source| VerifyError::Read {
        file: manifest.to_path_buf(),
        source,
    })?;
    let signer = sign::verify_bytes(manifest, &bytes, keyrings)?;
    let manifest = distill_manifest::Manifest::load_bytes(manifest, &bytes)?;
    Ok(Verified { manifest, signer })
}

/// Build everything a signed manifest declares.
pub fn build(manifest: &Path, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let verified = verify_and_load(manifest, &opts.keyrings)?;
    build_verified(&verified, opts)
}

/// Build a manifest whose signature was already verified.
pub fn build_verified(v: &Verified, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let m = &v.manifest;
    let name = record_name(m);
    // Refused before anything is fetched or built.
    if opts.out.is_some() && m.manifest.image.is_none() {
        return Err(BuildError::Image {
            image: name,
            reason: format!(
                "{} has no [image] section; drop --out or add one",
                m.path.display()
            ),
        });
    }
    let store = Store::open(&opts.root).map_err(|e| BuildError::Store {
        root: opts.root.clone(),
        reason: e.to_string(),
    })?;
    // Paths added early must not be collected before the record that roots them is written.
    let _gc_guard = store.gc_guard().map_err(|e| BuildError::Store {
        root: opts.root.clone(),
        reason: e.to_string(),
    })?;
    let plan = plan::plan(m);
    let fingerprint = v.signer.fingerprint.clone();
    let epoch = m.manifest.source_date_epoch as i64;

    // Each path's info is read once: what is already valid, and what is left to do.
    let existing: Vec<Option<PathInfo>> = plan
        .nodes
        .iter()
        .map(|n| store.info(&n.store_name).ok().flatten())
        .collect();
    let pending = existing.iter().filter(|i| i.is_none()).count();
    let overall = (pending > 0).then(|| opts.progress.steps("building", pending as u64));

    let mut infos: Vec<(&plan::Node, bool, PathInfo)> = Vec::new();
    for (node, existing) in plan.nodes.iter().zip(existing) {
        if let Some(info) = existing {
            infos.push((node, false, info));
            continue;
        }
        if let Some(b) = &overall {
            b.set_message(&format!(
                "{} {}",
                if node.is_source { "fetch" } else { "build" },
                node.name
            ));
        }
        // Another build may finish this path while we wait for its lock; `ran` tells.
        let ran = std::cell::Cell::new(false);
        let info = if node.is_source {
            let src = &m.manifest.sources[&node.name];
            let cached = fetch::fetch(&store, &m.dir, &node.name, src, &opts.progress)?;
            let file_name = plan::source_file_name(&node.name, &src.kind);
            store
                .add(
                    &node.store_name,
                    &node.derivation,
                    &[],
                    Some(&fingerprint),
                    epoch,
                    |out: &Path| -> Result<(), std::io::Error> {
                        ran.set(true);
                        std::fs::copy(&cached, out.join(&file_name)).map(|_| ())
                    },
                )
                .map_err(|e| BuildError::Package {
                    package: node.name.clone(),
                    reason: e.to_string(),
                })?
        } else {
            build_package(&store, m, &plan, node, &fingerprint, opts, &ran)?
        };
        if let Some(b) = &overall {
            b.inc();
        }
        infos.push((node, ran.get(), info));
    }
    drop(overall);

    let roots: Vec<StoreName> = plan.store_names();
    let mut report = BuildReport {
        manifest: m.path.clone(),
        manifest_digest: m.digest.clone(),
        signer: fingerprint,
        paths: infos
            .into_iter()
            .map(|(node, built, info)| BuiltPath {
                kind: if node.is_source { "source" } else { "package" }.into(),
                name: node.name.clone(),
                store_name: info.name.to_string(),
                path: store.path(&info.name),
                output_hash: info.output_hash.clone(),
                built,
            })
            .collect(),
        image: None,
    };
    if let Some(out) = &opts.out {
        report.image = Some(match unchanged_image(&store, &name, m, out, opts.format) {
            Some(previous) => previous,
            None => image::assemble(&image::ImageInputs {
                store: &store,
                manifest: m,
                plan: &plan,
                signer: &report.signer,
                out_dir: out,
                format: opts.format,
            })?,
        });
    }
    let record = serde_json::to_value(&report).expect("report serializes");
    store
        .write_record("build", &name, &record, &roots)
        .map_err(|e| BuildError::Store {
            root: opts.root.clone(),
            reason: e.to_string(),
        })?;
    Ok(report)
}

/// The image of the previous build of the same manifest, if its files are still there and
/// unchanged (same manifest digest, same archive bytes, every asked-for format written):
/// then nothing needs writing.
fn unchanged_image(
    store: &Store,
    name: &str,
    m: &LoadedManifest,
    out: &Path,
    format: OutputFormat,
) -> Option<ImageReport> {
    let record = store.record("build", name).ok()??;
    let previous: BuildReport = serde_json::from_value(record.record).ok()?;
    let image = previous.image?;
    if previous.manifest_digest != m.digest
        || image.archive != out.join(format!("{}.oci.tar", image.name))
        || !image.sbom.exists()
        || (format == OutputFormat::DockerArchive
            && !image.docker_archive.as_ref().is_some_and(|d| d.exists()))
    {
        return None;
    }
    let meta = std::fs::metadata(&image.archive).ok()?;
    if meta.len() != image.archive_size {
        return None;
    }
    let (digest, _) = distill_oci::Digest::of_file(&image.archive).ok()?;
    (digest.as_str() == image.archive_sha256).then_some(image)
}

/// The name of a manifest's build record: its image name, else its directory's name.
pub fn record_name(m: &LoadedManifest) -> String {
    if let Some(image) = &m.manifest.image {
        return image.name.clone();
    }
    let dir = m
        .path
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    dir.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn build_package(
    store: &Store,
    m: &LoadedManifest,
    plan: &Plan,
    node: &plan::Node,
    fingerprint: &str,
    opts: &BuildOptions,
    ran: &std::cell::Cell<bool>,
) -> Result<PathInfo, BuildError> {
    let pkg = &m.manifest.packages[&node.name];
    let references = plan.references(node);
    let inputs: Vec<step::SandboxInput> = node
        .inputs
        .iter()
        .map(|i| {
            let n = plan.get(i).expect("planned input");
            step::SandboxInput {
                name: i.clone(),
                store_name: n.store_name.to_string(),
                host_path: store.path(&n.store_name),
            }
        })
        .collect();
    let root_input = pkg
        .root
        .as_ref()
        .and_then(|r| inputs.iter().find(|i| &i.name == r));
    let env: Vec<(String, String)> = pkg
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let shell = pkg.shell.clone();
    let out_store_name = node.store_name.to_string();
    let epoch = m.manifest.source_date_epoch as i64;

    let result = store.add(
        &node.store_name,
        &node.derivation,
        &references,
        Some(fingerprint),
        epoch,
        |out: &Path| -> Result<(), BuildError> {
            ran.set(true);
            for u in &pkg.unpack {
                let src = &m.manifest.sources[u];
                let input = inputs
                    .iter()
                    .find(|i| &i.name == u)
                    .expect("unpack is an input");
                let file = input.host_path.join(plan::source_file_name(u, &src.kind));
                unpack::unpack(&file, out).map_err(|e| BuildError::Package {
                    package: node.name.clone(),
                    reason: format!("unpack {u}: {e}"),
                })?;
            }
            if pkg.build.is_empty() {
                return Ok(());
            }
            let build_dir = store
                .temp_dir(&format!("build-{}", node.name))
                .map_err(|e| BuildError::Package {
                    package: node.name.clone(),
                    reason: format!("cannot create a build directory: {e}"),
                })?;
            for dir in [out, build_dir.path()] {
                step::give_to_build_user(dir).map_err(|e| BuildError::Package {
                    package: node.name.clone(),
                    reason: format!("cannot hand the build directories to the build user: {e}"),
                })?;
            }
            let ctx = step::StepContext {
                package: &node.name,
                inputs: &inputs,
                root: root_input,
                out_store_name: &out_store_name,
                out_host: out,
                build_host: build_dir.path(),
                env: &env,
                shell: &shell,
                epoch,
            };
            let bar = opts
                .progress
                .steps(&format!("build {}", node.name), pkg.build.len() as u64);
            for (i, cmd) in pkg.build.iter().enumerate() {
                bar.set_message(&format!("{}: {}", node.name, first_line(cmd)));
                ctx.run(cmd, |line| {
                    if opts.verbose {
                        eprintln!("{}> {line}", node.name);
                    }
                })
                .map_err(|f| BuildError::Step {
                    package: node.name.clone(),
                    step: i + 1,
                    command: first_line(cmd).to_string(),
                    what: f.what,
                    tail: f.tail,
                })?;
                bar.inc();
            }
            Ok(())
        },
    );
    result.map_err(|e| match e {
        distill_store::AddError::Build { error, .. } => error,
        other => BuildError::Package {
            package: node.name.clone(),
            reason: other.to_string(),
        },
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    /// The image that was compared against.
    pub reference: PathBuf,
    /// Its manifest digest.
    pub expected: String,
    /// The rebuilt image's manifest digest.
    pub actual: String,
    /// The first difference, when the digests differ.
    pub difference: Option<String>,
}

impl VerifyOutcome {
    /// Whether the rebuild reproduced the reference bit for bit.
    pub fn identical(&self) -> bool {
        self.expected == self.actual
    }
}

/// Rebuild a signed manifest from scratch, in a fresh temporary root and output directory,
/// and compare the image with `reference` (default: the image this root last built for the
/// manifest). The signature is checked first, as for a build.
pub fn verify(
    manifest: &Path,
    reference: Option<&Path>,
    opts: &BuildOptions,
) -> Result<VerifyOutcome, BuildError> {
    let v = verify_and_load(manifest, &opts.keyrings)?;
    let name = record_name(&v.manifest);
    let reference = match reference {
        Some(r) => r.to_path_buf(),
        None => Store::open(&opts.root)
            .ok()
            .and_then(|s| s.record("build", &name).ok().flatten())
            .and_then(|r| serde_json::from_value::<BuildReport>(r.record).ok())
            .and_then(|r| r.image)
            .map(|i| i.archive)
            .ok_or_else(|| BuildError::Image {
                image: name.clone(),
                reason: format!(
                    "no image to compare with: pass --image FILE.oci.tar, or build it first with `distill build {} --out DIR`",
                    manifest.display()
                ),
            })?,
    };
    if !reference.exists() {
        return Err(BuildError::Image {
            image: name,
            reason: format!("{} does not exist", reference.display()),
        });
    }
    let scratch = tempfile::Builder::new()
        .prefix("distill-verify-")
        .tempdir()
        .map_err(|e| BuildError::Image {
            image: name.clone(),
            reason: format!("cannot create a temporary directory: {e}"),
        })?;
    let expected = distill_oci::inspect_archive(&reference)
        .map_err(|e| BuildError::Image {
            image: name.clone(),
            reason: format!("{}: {e}", reference.display()),
        })?
        .manifest_digest
        .ok_or_else(|| BuildError::Image {
            image: name.clone(),
            reason: format!(
                "{} has no image manifest digest (a legacy docker-archive?)",
                reference.display()
            ),
        })?
        .as_str()
        .to_string();
    let fresh = BuildOptions {
        root: scratch.path().join("root"),
        keyrings: opts.keyrings.clone(),
        progress: opts.progress.clone(),
        verbose: opts.verbose,
        out: Some(scratch.path().join("out")),
        format: OutputFormat::Oci,
    };
    let report = build_verified(&v, &fresh)?;
    let image = report.image.expect("an image was asked for");
    let difference = if image.digest == expected {
        None
    } else {
        let diff = distill_oci::diff_archives(&reference, &image.archive).map_err(|e| {
            BuildError::Image {
                image: name.clone(),
                reason: e.to_string(),
            }
        })?;
        Some(match diff {
            Some(d) => d.to_string(),
            None => "the digests differ but no difference was found in the contents".to_string(),
        })
    };
    Ok(VerifyOutcome {
        reference,
        expected,
        actual: image.digest,
        difference,
    })
}
