//! Pinning Debian packages with the machine's apt: exact version, sha256 and pool file name of
//! each package (optionally with its `Depends`/`Pre-Depends` closure), rendered as manifest
//! `[source.NAME]` entries.
//!
//! Only `apt-cache` is run (with `LC_ALL=C`), so the result reflects the machine's apt sources
//! and its last `apt-get update`; no package server is named here.
//!
//! Debian's archive stops serving old versions: [`check_pins`] lists a manifest's `deb` pins
//! that apt no longer serves (with the pinned sha256), and [`update_pins`] /
//! [`update_manifest`] re-pin those to apt's candidates in place (`pin_update.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::process::Command;

use thiserror::Error;

use crate::parse::{is_deb_arch, is_deb_name, is_deb_version};

pub use crate::pin_update::{
    check_manifest, check_pins, deb_pins, update_manifest, update_pins, AptServes, Candidate,
    Change, DebPin, PinCheck, PinUpdate, StalePin, Staleness,
};

/// A Debian package pinned to an exact version and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedDeb {
    /// The manifest source name to use (`[source.NAME]`); the package name.
    pub source_name: String,
    /// Debian package name.
    pub package: String,
    /// Exact version (apt's candidate at pin time).
    pub version: String,
    /// Architecture of that version (`amd64`, `all`, ...).
    pub arch: String,
    /// sha256 of the `.deb`, lowercase hex.
    pub sha256: String,
    /// The `Filename:` of the `.deb` in the archive (a `pool/...` path).
    pub filename: String,
}

/// Why pinning failed. One line each.
#[derive(Debug, Error)]
pub enum PinError {
    /// A name that is not a Debian package name was given.
    #[error("{name:?} is not a Debian package name ([a-z0-9][a-z0-9+.-]+)")]
    BadName {
        /// The name as given.
        name: String,
    },
    /// `apt-cache` could not be started.
    #[error("cannot run apt-cache: {source}; pinning needs Debian's apt installed")]
    AptMissing {
        /// The spawn error.
        source: io::Error,
    },
    /// `apt-cache` failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    AptFailed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its error output, on one line.
        stderr: String,
    },
    /// apt does not know the package.
    #[error("apt does not know package {name:?}; check the spelling, or run `apt-get update` if it is new")]
    UnknownPackage {
        /// The package.
        name: String,
    },
    /// apt knows the name but has nothing installable for it.
    #[error("package {name:?} has no installable candidate{hint}")]
    NoCandidate {
        /// The package.
        name: String,
        /// Extra advice (e.g. providers of a virtual package).
        hint: String,
    },
    /// apt's record for a version lacks a field.
    #[error("apt has no {field} for {name}={version} from a repository; run `apt-get update` and check the machine's apt sources")]
    MissingField {
        /// The package.
        name: String,
        /// The version.
        version: String,
        /// The missing field (`SHA256`, `Filename`, `Architecture`).
        field: &'static str,
    },
    /// A dependency cannot be satisfied by any alternative.
    #[error(
        "{package}: cannot resolve dependency `{relation}`: no alternative is a package apt knows"
    )]
    Unresolvable {
        /// The package whose dependency failed.
        package: String,
        /// The dependency, `a | b` form.
        relation: String,
    },
    /// The manifest to check or update cannot be read, or does not parse or validate.
    #[error(transparent)]
    Manifest(#[from] crate::ManifestError),
    /// A stale pin that apt has nothing to replace with (`pin deb --update`).
    #[error("{}: source.{source_name}: {package} {version} is no longer served and apt has nothing to replace it with ({why}); check the package name and the machine's apt sources, run `apt-get update`, or remove the source", path.display())]
    NoReplacement {
        /// The manifest.
        path: PathBuf,
        /// The source's key in the manifest.
        source_name: String,
        /// The Debian package.
        package: String,
        /// The pinned version.
        version: String,
        /// Why apt has nothing (e.g. `apt does not know the package`).
        why: String,
    },
    /// A pin could not be rewritten in the manifest text.
    #[error("{}: source.{source_name}: cannot rewrite the pin: {message}", path.display())]
    Edit {
        /// The manifest.
        path: PathBuf,
        /// The source's key in the manifest.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The updated manifest could not be written; the original is unchanged.
    #[error("{}: cannot write the updated manifest: {source}; the file is unchanged", path.display())]
    Write {
        /// The manifest.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl PinError {
    /// Whether the error is refused input (a manifest that cannot be read, parsed or
    /// validated, or a name that is not a package name) rather than a failure of apt or of
    /// the machine.
    pub fn is_refused_input(&self) -> bool {
        matches!(self, PinError::Manifest(_) | PinError::BadName { .. })
    }
}

fn apt_cache(args: &[&str]) -> Result<String, PinError> {
    let out = Command::new("apt-cache")
        .args(args)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env("LANGUAGE", "C")
        .output()
        .map_err(|source| PinError::AptMissing { source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(PinError::AptFailed {
            command: format!("apt-cache {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: crate::error::one_line(&stderr),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Candidate versions from `apt-cache policy NAMES...`: name -> candidate (`None` for
/// `(none)`). Names apt does not know are absent.
pub(crate) fn candidates(names: &[&str]) -> Result<BTreeMap<String, Option<String>>, PinError> {
    let mut args = vec!["policy", "--"];
    args.extend_from_slice(names);
    Ok(parse_policy(&apt_cache(&args)?))
}

/// [`candidates`]' parsing of `apt-cache policy` output.
pub(crate) fn parse_policy(text: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            let name = line.trim_end_matches(':');
            current = Some(name.strip_suffix(":any").unwrap_or(name).to_string());
        } else if let (Some(name), Some(c)) = (&current, line.trim().strip_prefix("Candidate:")) {
            let c = c.trim();
            out.insert(name.clone(), (c != "(none)").then(|| c.to_string()));
        }
    }
    out
}

/// One alternative of a dependency: a package, or a virtual package with its providers.
#[derive(Debug, Clone)]
struct Alt {
    name: String,
    providers: Option<Vec<String>>,
}

/// The `Depends`/`Pre-Depends` graph printed by `apt-cache depends --recurse`: package ->
/// groups of alternatives.
fn dependency_graph(roots: &[&str]) -> Result<BTreeMap<String, Vec<Vec<Alt>>>, PinError> {
    let mut args = vec![
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        "--",
    ];
    args.extend_from_slice(roots);
    let text = apt_cache(&args)?;
    Ok(parse_depends(&text))
}

fn strip_any(s: &str) -> &str {
    s.strip_suffix(":any").unwrap_or(s)
}

fn parse_depends(text: &str) -> BTreeMap<String, Vec<Vec<Alt>>> {
    let mut graph: BTreeMap<String, Vec<Vec<Alt>>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut pending: Vec<Alt> = Vec::new();
    // Whether provider lines (4-space indent) belong to a relation we keep.
    let mut keeping = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            let name = line.trim();
            if name.starts_with('<') {
                current = None; // a virtual package's block: it has no dependencies
            } else {
                current = Some(strip_any(name).to_string());
                graph.entry(strip_any(name).to_string()).or_default();
            }
            pending.clear();
            keeping = false;
            continue;
        }
        let Some(pkg) = &current else { continue };
        if line.starts_with("    ") {
            if keeping {
                if let Some(alt) = pending.last_mut().or_else(|| {
                    graph
                        .get_mut(pkg)
                        .and_then(|g| g.last_mut())
                        .and_then(|g| g.last_mut())
                }) {
                    alt.providers
                        .get_or_insert_with(Vec::new)
                        .push(strip_any(line.trim()).to_string());
                }
            }
            continue;
        }
        let or_next = line.starts_with(" |");
        let Some((kind, target)) = line.trim_start_matches([' ', '|']).split_once(':') else {
            continue;
        };
        keeping = matches!(kind, "Depends" | "PreDepends");
        if !keeping {
            pending.clear();
            continue;
        }
        let target = target.trim();
        let alt = match target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
            Some(v) => Alt {
                name: strip_any(v).to_string(),
                providers: Some(Vec::new()),
            },
            None => Alt {
                name: strip_any(target).to_string(),
                providers: None,
            },
        };
        pending.push(alt);
        if !or_next {
            let group = std::mem::take(&mut pending);
            if let Some(g) = graph.get_mut(pkg) {
                g.push(group);
            }
        }
    }
    // Provider lines follow the relation they belong to, so a group closed by its last
    // alternative may still receive providers: handled above through `graph...last_mut()`.
    graph
}

/// Picks the alternative apt would try first that is a real package: the first alternative,
/// or for a virtual package the provider that is also a requested root, else its first
/// provider.
fn choose<'a>(
    group: &'a [Alt],
    graph: &'a BTreeMap<String, Vec<Vec<Alt>>>,
    roots: &BTreeSet<String>,
) -> Option<&'a str> {
    for alt in group {
        match &alt.providers {
            None if graph.contains_key(&alt.name) => return Some(&alt.name),
            None => {}
            Some(providers) => {
                let known: Vec<&String> = providers
                    .iter()
                    .filter(|p| graph.contains_key(*p))
                    .collect();
                if let Some(p) = known.iter().find(|p| roots.contains(**p)) {
                    return Some(p);
                }
                if let Some(p) = known.first() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// The `Depends`/`Pre-Depends` closure of `roots`, sorted by name.
fn closure(roots: &[&str]) -> Result<Vec<String>, PinError> {
    let graph = dependency_graph(roots)?;
    let root_set: BTreeSet<String> = roots.iter().map(|s| s.to_string()).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().rev().map(|s| s.to_string()).collect();
    while let Some(pkg) = todo.pop() {
        if !seen.insert(pkg.clone()) {
            continue;
        }
        let Some(groups) = graph.get(&pkg) else {
            return Err(PinError::UnknownPackage { name: pkg });
        };
        for group in groups {
            let chosen =
                choose(group, &graph, &root_set).ok_or_else(|| PinError::Unresolvable {
                    package: pkg.clone(),
                    relation: group
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" | "),
                })?;
            if !seen.contains(chosen) {
                todo.push(chosen.to_string());
            }
        }
    }
    Ok(seen.into_iter().collect())
}

/// The fields of one `apt-cache show` record.
pub(crate) type Record = BTreeMap<String, String>;

/// `apt-cache show --no-all-versions SPEC...` (each `NAME=VERSION` or `NAME:ARCH=VERSION`):
/// every record printed, in order. Records from `/var/lib/dpkg/status` (an installed version)
/// have no `SHA256:`.
pub(crate) fn show_records(specs: &[String]) -> Result<Vec<Record>, PinError> {
    let mut args = vec!["show", "--no-all-versions", "--"];
    args.extend(specs.iter().map(String::as_str));
    Ok(parse_show(&apt_cache(&args)?))
}

/// [`show_records`]' parsing: records are separated by blank lines; continuation lines
/// (starting with a space) are skipped; records without `Package:` and `Version:` are dropped.
pub(crate) fn parse_show(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let mut fields = BTreeMap::new();
        for line in record.lines() {
            if line.starts_with(' ') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.to_string(), v.trim().to_string());
            }
        }
        if fields.contains_key("Package") && fields.contains_key("Version") {
            out.push(fields);
        }
    }
    out
}

/// `apt-cache show NAME=VERSION...` records, parsed as (Package, Version) -> fields of the
/// first record that carries a `SHA256:`.
fn show(pins: &[(String, String)]) -> Result<BTreeMap<(String, String), Record>, PinError> {
    let specs: Vec<String> = pins.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut out = BTreeMap::new();
    for fields in show_records(&specs)? {
        let (Some(p), Some(v)) = (fields.get("Package"), fields.get("Version")) else {
            continue;
        };
        let key = (p.clone(), v.clone());
        let has_sha = fields.contains_key("SHA256");
        match out.get(&key) {
            Some(existing) if !has_sha || existing_has_sha(existing) => {}
            _ => {
                out.insert(key, fields);
            }
        }
    }
    Ok(out)
}

fn existing_has_sha(f: &BTreeMap<String, String>) -> bool {
    f.contains_key("SHA256")
}

/// Pins Debian packages with the machine's apt: each name's candidate version (`apt-cache
/// policy`) and that version's `SHA256:`/`Filename:`/`Architecture:` (`apt-cache show`). With
/// `with_deps`, also every package in the `Depends`/`Pre-Depends` closure (first alternative
/// of `a | b`, a real provider for virtual packages). The result is sorted by package name.
pub fn pin_debs(names: &[String], with_deps: bool) -> Result<Vec<PinnedDeb>, PinError> {
    for n in names {
        if !is_deb_name(n) {
            return Err(PinError::BadName { name: n.clone() });
        }
    }
    let roots: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    // The roots first, so an unknown name is reported before the closure is walked.
    let root_cands = check_candidates(&roots)?;
    let (all, cands) = if with_deps {
        let all = closure(&roots)?;
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let cands = check_candidates(&refs)?;
        (all, cands)
    } else {
        let all: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        (all, root_cands)
    };
    let pins: Vec<(String, String)> = all.iter().map(|n| (n.clone(), cands[n].clone())).collect();
    let records = show(&pins)?;
    let mut out = Vec::new();
    for (name, version) in pins {
        let missing = |field| PinError::MissingField {
            name: name.clone(),
            version: version.clone(),
            field,
        };
        let rec = records
            .get(&(name.clone(), version.clone()))
            .ok_or_else(|| missing("record"))?;
        let sha256 = rec
            .get("SHA256")
            .filter(|s| crate::is_sha256_hex(s))
            .ok_or_else(|| missing("SHA256"))?;
        let filename = rec
            .get("Filename")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("Filename"))?;
        let arch = rec
            .get("Architecture")
            .filter(|s| is_deb_arch(s))
            .ok_or_else(|| missing("Architecture"))?;
        if !is_deb_version(&version) {
            return Err(missing("valid Version"));
        }
        out.push(PinnedDeb {
            source_name: name.clone(),
            package: name.clone(),
            version: version.clone(),
            arch: arch.clone(),
            sha256: sha256.clone(),
            filename: filename.clone(),
        });
    }
    Ok(out)
}

/// Candidate version of every name, or the error for the first name without one.
fn check_candidates(names: &[&str]) -> Result<BTreeMap<String, String>, PinError> {
    let found = candidates(names)?;
    let mut out = BTreeMap::new();
    for n in names {
        match found.get(*n) {
            None => {
                return Err(PinError::UnknownPackage {
                    name: n.to_string(),
                })
            }
            Some(None) => {
                let providers = providers_of(n).unwrap_or_default();
                let hint = if providers.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it is virtual; name one of its providers: {})",
                        providers.join(", ")
                    )
                };
                return Err(PinError::NoCandidate {
                    name: n.to_string(),
                    hint,
                });
            }
            Some(Some(v)) => {
                out.insert(n.to_string(), v.clone());
            }
        }
    }
    Ok(out)
}

/// Providers of a virtual package, from `apt-cache showpkg`'s "Reverse Provides:" section.
fn providers_of(name: &str) -> Result<Vec<String>, PinError> {
    let text = apt_cache(&["showpkg", "--", name])?;
    let mut in_section = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("Reverse Provides:") {
            in_section = true;
            continue;
        }
        if in_section {
            match line.split_whitespace().next() {
                Some(p) if !line.ends_with(':') => {
                    out.insert(p.to_string());
                }
                _ => in_section = false,
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// `s` as a TOML basic string (double quotes).
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders pinned packages as manifest `[source.NAME]` tables, in the given order, separated
/// by blank lines. Each table carries a comment with the archive file name.
pub fn render_sources(pins: &[PinnedDeb]) -> String {
    let mut out = String::new();
    for (i, p) in pins.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Bare TOML keys allow only [A-Za-z0-9_-]; Debian names may contain '.' and '+'.
        let bare = !p.source_name.is_empty()
            && p.source_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if bare {
            p.source_name.clone()
        } else {
            toml_string(&p.source_name)
        };
        out.push_str(&format!("[source.{key}]\n"));
        out.push_str(&format!("# {}\n", p.filename.replace('\n', " ")));
        out.push_str(&format!("deb = {}\n", toml_string(&p.package)));
        out.push_str(&format!("deb_version = {}\n", toml_string(&p.version)));
        out.push_str(&format!("arch = {}\n", toml_string(&p.arch)));
        out.push_str(&format!("sha256 = {}\n", toml_string(&p.sha256)));
    }
    out
}
