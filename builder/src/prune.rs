//! Pruning an image to what its probes touch, and proving the pruned image still works.
//!
//! The image's packages are merged (hard links) into a full root; every `[[trace.probe]]` runs
//! there under the tracer, inside distill's sandbox, and must exit with its expected code. The
//! traced paths, their parents, symlink chains, the ELF closure and the `keep` globs, minus the
//! `exclude` globs, make the minimal set. The set is copied into a minimal root and every probe
//! runs again there: a different exit code or stdout fails the build and names the probe and
//! the first differing line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use distill_manifest::{Image, LoadedManifest, Probe};
use distill_tracer::{
    compare_runs, copy_minimal, minimal_set, trace, MinimalSet, ProbeOutcome, TraceCommand,
};
use serde::{Deserialize, Serialize};

use crate::BuildError;

/// The default `PATH` of a probe when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sizes before and after pruning.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sizes {
    /// Bytes of regular files and symlink targets.
    pub bytes: u64,
    /// Regular files and symlinks.
    pub files: u64,
}

/// What pruning found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneReport {
    /// The full package closure of the image.
    pub full: Sizes,
    /// The minimal image.
    pub minimal: Sizes,
    /// Every kept path and why (what `distill why` reads).
    pub set: MinimalSet,
}

fn prune_err(image: &str, reason: impl std::fmt::Display) -> BuildError {
    BuildError::Image {
        image: image.to_string(),
        reason: reason.to_string(),
    }
}

/// A probe's command in an image root.
fn probe_command(image: &Image, probe: &Probe, root: &Path) -> TraceCommand {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for (k, v) in image.env.iter().chain(probe.env.iter()) {
        env.retain(|(ek, _)| ek != k.as_str());
        env.push((k.into(), v.into()));
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env.sort();
    TraceCommand {
        argv: probe.args.iter().map(OsString::from).collect(),
        env,
        cwd: PathBuf::from(image.workdir.as_deref().unwrap_or("/")),
        stdin: probe.stdin.as_ref().map(|s| s.as_bytes().to_vec()),
        root: Some(root.to_path_buf()),
    }
}

fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Sizes of a tree (regular files and symlinks).
pub fn tree_sizes(p: &Path) -> std::io::Result<Sizes> {
    let mut s = Sizes::default();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                s.files += 1;
                s.bytes += m.len();
            }
        }
    }
    Ok(s)
}

/// Run the probes in `full` (the merged image root), compute the minimal set, copy it to
/// `minimal` and run the probes again there.
pub fn prune(m: &LoadedManifest, full: &Path, minimal: &Path) -> Result<PruneReport, BuildError> {
    let image = m.manifest.image.as_ref().expect("caller checked [image]");
    let tr = m.manifest.trace.as_ref().expect("caller checked [trace]");
    let name = &image.name;
    let mut accesses = Vec::new();
    let mut outcomes = Vec::new();
    for (i, probe) in tr.probes.iter().enumerate() {
        let label = probe.label(i);
        let r = trace(probe_command(image, probe, full))
            .map_err(|e| prune_err(name, format!("probe `{label}`: {e}")))?;
        let outcome = ProbeOutcome::of(&r);
        if outcome.exit_code != probe.exit_code {
            return Err(prune_err(
                name,
                format!(
                    "probe `{label}` exited with {} in the full image, expected {}; its stderr ends: {}",
                    outcome.exit_code,
                    probe.exit_code,
                    tail(&r.stderr, 5)
                ),
            ));
        }
        accesses.extend(r.accesses.into_iter().map(|a| (label.clone(), a)));
        outcomes.push((label, outcome));
    }
    let set =
        minimal_set(full, &accesses, &tr.keep, &tr.exclude).map_err(|e| prune_err(name, e))?;
    copy_minimal(full, &set, minimal).map_err(|e| prune_err(name, e))?;
    for ((label, full_outcome), probe) in outcomes.iter().zip(&tr.probes) {
        let r = trace(probe_command(image, probe, minimal))
            .map_err(|e| prune_err(name, format!("probe `{label}` in the minimal image: {e}")))?;
        compare_runs(label, full_outcome, &ProbeOutcome::of(&r)).map_err(|e| prune_err(name, e))?;
    }
    let full_sizes = tree_sizes(full)
        .map_err(|e| prune_err(name, format!("measure {}: {e}", full.display())))?;
    let minimal_sizes = tree_sizes(minimal)
        .map_err(|e| prune_err(name, format!("measure {}: {e}", minimal.display())))?;
    Ok(PruneReport {
        full: full_sizes,
        minimal: minimal_sizes,
        set,
    })
}

/// The kept paths (relative) of one package's tree: a non-directory goes to the last package
/// (in image order) that provides it, as in the merged root; a directory to every package
/// that has it.
pub fn paths_for_package(
    set: &MinimalSet,
    trees: &[PathBuf],
    index: usize,
) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for p in set.paths.keys() {
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            continue;
        }
        let here = trees[index].join(rel);
        let Ok(meta) = here.symlink_metadata() else {
            continue;
        };
        let keep = if meta.is_dir() {
            true
        } else {
            // The last tree providing it wins.
            !trees[index + 1..]
                .iter()
                .any(|t| t.join(rel).symlink_metadata().is_ok())
        };
        if keep {
            out.insert(rel.to_path_buf());
        }
    }
    out
}
