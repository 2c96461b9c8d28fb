//! Checking a manifest's `deb` pins against the machine's apt, and re-pinning the stale ones in
//! place (`distill pin check`, `distill pin deb --update`).
//!
//! Debian's archive stops serving a version once a newer one replaces it, and `apt-get
//! download NAME=VERSION` then fails. A pin is *served* when apt's index has a record of that
//! exact version from a repository (one with a `SHA256:`; the record of an installed version,
//! from `/var/lib/dpkg/status`, has none) whose sha256 is the pinned one.
//!
//! Asking apt ([`check_pins`]: one `apt-cache policy` and one `apt-cache show` for all pins)
//! is kept apart from editing the text ([`update_pins`]: a pure function on the manifest text
//! that changes only the stale pins' `deb_version`, `arch`, `sha256` and `# pool/...` comment
//! and leaves every other byte as it was).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

use serde::Serialize;
use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::error::one_line;
use crate::parse::{is_deb_arch, is_deb_version};
use crate::pin::{candidates, show_records, toml_string, PinError, Record};
use crate::{is_sha256_hex, Location, Manifest, ManifestError, Source, SourceKind, DEFAULT_ARCH};

/// A `deb` source as a manifest pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebPin {
    /// The source's key in the manifest (`[source.KEY]`).
    pub source: String,
    /// The Debian package (`deb = `).
    pub package: String,
    /// The pinned version (`deb_version = `).
    pub version: String,
    /// The pinned architecture (`arch = `, `amd64` when absent).
    pub arch: String,
    /// The pinned sha256 of the `.deb`.
    pub sha256: String,
}

/// Why a pin is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Staleness {
    /// apt's index has no record of the version from a repository.
    VersionGone,
    /// apt serves the version, but its `.deb` has another sha256.
    OtherSha256 {
        /// The sha256 apt's index gives for the version.
        served_sha256: String,
    },
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::VersionGone => write!(f, "version no longer served"),
            Staleness::OtherSha256 { served_sha256 } => {
                write!(f, "served with another sha256 ({served_sha256})")
            }
        }
    }
}

/// A version apt serves: what a stale pin is updated to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// apt's candidate version.
    pub version: String,
    /// Its architecture.
    pub arch: String,
    /// Its `.deb`'s sha256.
    pub sha256: String,
    /// Its `Filename:` in the archive (`pool/...`).
    pub filename: String,
}

/// What apt serves now for a stale pin's package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "serves", rename_all = "kebab-case")]
pub enum AptServes {
    /// The candidate version, downloadable.
    Candidate(Candidate),
    /// Nothing: apt does not know the package.
    UnknownPackage,
    /// Nothing: apt knows the name but has no installable candidate (e.g. a virtual package).
    NoCandidate,
    /// Nothing downloadable: the candidate has no record with a `SHA256:` in apt's index (e.g.
    /// it is only installed, from a local `.deb`).
    NotDownloadable {
        /// The candidate version.
        version: String,
    },
}

impl AptServes {
    /// Why apt has nothing to download, or `None` for a candidate.
    pub fn nothing_because(&self) -> Option<String> {
        match self {
            AptServes::Candidate(_) => None,
            AptServes::UnknownPackage => Some("apt does not know the package".into()),
            AptServes::NoCandidate => Some("apt has no installable candidate".into()),
            AptServes::NotDownloadable { version } => Some(format!(
                "the candidate {version} has no SHA256 in apt's index; it is not downloadable"
            )),
        }
    }
}

impl fmt::Display for AptServes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.nothing_because()) {
            (AptServes::Candidate(c), _) => write!(f, "{}", c.version),
            (_, why) => write!(f, "nothing ({})", why.unwrap_or_default()),
        }
    }
}

/// A pin apt no longer serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StalePin {
    /// The pin as the manifest has it.
    #[serde(flatten)]
    pub pin: DebPin,
    /// Why it is stale.
    #[serde(flatten)]
    pub why: Staleness,
    /// What apt serves now.
    pub apt_serves: AptServes,
}

impl fmt::Display for StalePin {
    /// `source.KEY: PACKAGE VERSION: WHY; apt serves CANDIDATE` (or `nothing (...)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source.{}: {} {}: {}; apt serves {}",
            self.pin.source, self.pin.package, self.pin.version, self.why, self.apt_serves
        )
    }
}

/// The result of checking a manifest's pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinCheck {
    /// How many `deb` sources the manifest has.
    pub pins: usize,
    /// Those apt no longer serves, in source key order.
    pub stale: Vec<StalePin>,
}

/// One re-pinned source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The source's key in the manifest.
    pub source: String,
    /// The Debian package.
    pub package: String,
    /// The version it was pinned to.
    pub old_version: String,
    /// The version it is pinned to now.
    pub new_version: String,
    /// The architecture it was pinned to.
    pub old_arch: String,
    /// The architecture it is pinned to now.
    pub new_arch: String,
    /// The sha256 it was pinned to.
    pub old_sha256: String,
    /// The sha256 it is pinned to now.
    pub new_sha256: String,
    /// The new version's `Filename:` in the archive.
    pub filename: String,
}

impl fmt::Display for Change {
    /// `PACKAGE OLD -> NEW`, plus the sha256s when the version stayed and the architectures
    /// when they differ.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.package, self.old_version, self.new_version
        )?;
        if self.old_version == self.new_version {
            write!(f, " (sha256 {} -> {})", self.old_sha256, self.new_sha256)?;
        }
        if self.old_arch != self.new_arch {
            write!(f, " (arch {} -> {})", self.old_arch, self.new_arch)?;
        }
        Ok(())
    }
}

/// The result of [`update_manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinUpdate {
    /// How many `deb` sources the manifest has.
    pub pins: usize,
    /// The pins rewritten; empty when all were served (and the file was not written).
    pub changes: Vec<Change>,
}

/// The `deb` sources of a manifest, in source key order.
pub fn deb_pins(manifest: &Manifest) -> Vec<DebPin> {
    manifest
        .sources
        .iter()
        .filter_map(|(key, src)| match &src.kind {
            SourceKind::Deb {
                name,
                version,
                arch,
            } => Some(DebPin {
                source: key.clone(),
                package: name.clone(),
                version: version.clone(),
                arch: arch.clone(),
                sha256: src.sha256.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Parses and validates `manifest_text` (`origin` names it in errors) and asks the machine's
/// apt which of its `deb` pins are no longer served with their pinned sha256, and what apt
/// serves instead. One `apt-cache policy` and one `apt-cache show` for all pins.
pub fn check_pins(manifest_text: &str, origin: &Path) -> Result<PinCheck, PinError> {
    let manifest = Manifest::parse_str(manifest_text, origin)?;
    let pins = deb_pins(&manifest);
    let stale = ask_apt(&pins)?;
    Ok(PinCheck {
        pins: pins.len(),
        stale,
    })
}

/// [`check_pins`] of the manifest file at `path`.
pub fn check_manifest(path: &Path) -> Result<PinCheck, PinError> {
    check_pins(&read_text(path)?, path)
}

/// Re-pins the stale `deb` pins of the manifest at `path` to apt's candidates, in place: the
/// file is replaced atomically (same permissions), and only when something changed. Nothing is
/// written on any error, e.g. a stale pin apt has no candidate for.
pub fn update_manifest(path: &Path) -> Result<PinUpdate, PinError> {
    let text = read_text(path)?;
    let check = check_pins(&text, path)?;
    let (new_text, changes) = update_pins(&text, path, &check.stale)?;
    if !changes.is_empty() {
        write_atomic(path, &new_text)?;
    }
    Ok(PinUpdate {
        pins: check.pins,
        changes,
    })
}

fn read_text(path: &Path) -> Result<String, PinError> {
    let bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        PinError::Manifest(ManifestError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        })
    })
}

/// The `apt-cache show` specs for the pins: each pinned `NAME:ARCH=VERSION`, and each
/// candidate `NAME:ARCH=CANDIDATE`, for the names apt knows.
fn show_specs(pins: &[DebPin], cands: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut specs = BTreeSet::new();
    for p in pins {
        let Some(cand) = cands.get(&p.package) else {
            continue; // unknown to apt: asking would only make `show` fail
        };
        specs.insert(format!("{}:{}={}", p.package, p.arch, p.version));
        if let Some(c) = cand {
            specs.insert(format!("{}:{}={}", p.package, p.arch, c));
        }
    }
    specs.into_iter().collect()
}

fn ask_apt(pins: &[DebPin]) -> Result<Vec<StalePin>, PinError> {
    if pins.is_empty() {
        return Ok(Vec::new());
    }
    let names: BTreeSet<&str> = pins.iter().map(|p| p.package.as_str()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let cands = candidates(&names)?;
    let specs = show_specs(pins, &cands);
    let records = if specs.is_empty() {
        Vec::new()
    } else {
        match show_records(&specs) {
            Ok(r) => r,
            // apt-cache show fails when none of the specs matches anything.
            Err(PinError::AptFailed { stderr, .. }) if stderr.contains("No packages found") => {
                Vec::new()
            }
            Err(e) => return Err(e),
        }
    };
    Ok(classify(pins, &cands, &records))
}

/// Whether a record of architecture `record` is the `.deb` `NAME:pinned=...` fetches: apt
/// treats `all` and the native architecture alike there.
fn arch_matches(record: &str, pinned: &str) -> bool {
    record == pinned || record == "all" || pinned == "all"
}

/// The repository records (with a valid `SHA256:`) of `package` `version` for `arch`, those of
/// exactly that architecture first.
fn served<'a>(records: &'a [Record], package: &str, version: &str, arch: &str) -> Vec<&'a Record> {
    let field = |r: &'a Record, k: &str| r.get(k).map(String::as_str).unwrap_or("");
    let mut out: Vec<&Record> = records
        .iter()
        .filter(|r| {
            field(r, "Package") == package
                && field(r, "Version") == version
                && is_sha256_hex(field(r, "SHA256"))
                && arch_matches(field(r, "Architecture"), arch)
        })
        .collect();
    out.sort_by_key(|r| field(r, "Architecture") != arch);
    out
}

/// The stale pins, given apt's candidates (`apt-cache policy`) and records (`apt-cache show`).
fn classify(
    pins: &[DebPin],
    cands: &BTreeMap<String, Option<String>>,
    records: &[Record],
) -> Vec<StalePin> {
    let mut out = Vec::new();
    for p in pins {
        let now = served(records, &p.package, &p.version, &p.arch);
        if now.iter().any(|r| r.get("SHA256") == Some(&p.sha256)) {
            continue;
        }
        let why = match now.first().and_then(|r| r.get("SHA256")) {
            Some(sha) => Staleness::OtherSha256 {
                served_sha256: sha.clone(),
            },
            None => Staleness::VersionGone,
        };
        let apt_serves = match cands.get(&p.package) {
            None => AptServes::UnknownPackage,
            Some(None) => AptServes::NoCandidate,
            Some(Some(version)) => served(records, &p.package, version, &p.arch)
                .into_iter()
                .find_map(|r| {
                    let filename = r.get("Filename").filter(|f| !f.is_empty())?;
                    let arch = r.get("Architecture").filter(|a| is_deb_arch(a))?;
                    Some(Candidate {
                        version: version.clone(),
                        arch: arch.clone(),
                        sha256: r.get("SHA256")?.clone(),
                        filename: filename.clone(),
                    })
                })
                .filter(|c| is_deb_version(&c.version))
                .map(AptServes::Candidate)
                .unwrap_or_else(|| AptServes::NotDownloadable {
                    version: version.clone(),
                }),
        };
        out.push(StalePin {
            pin: p.clone(),
            why,
            apt_serves,
        });
    }
    out
}

/// Rewrites the `stale` pins of `manifest_text` (`origin` names it in errors) to what apt
/// serves: `deb_version`, `arch` and `sha256` of each stale pin's table, and the `# pool/...`
/// comment line just above its `deb = ` if it has one. Everything else (other tables, comments,
/// order, formatting) is kept byte for byte. A pure function: apt is not asked.
///
/// Fails, changing nothing, when a stale pin has no candidate ([`PinError::NoReplacement`]),
/// when the text does not pin what `stale` says (it changed since it was checked), or when the
/// result would not be the same manifest with only those pins changed.
pub fn update_pins(
    manifest_text: &str,
    origin: &Path,
    stale: &[StalePin],
) -> Result<(String, Vec<Change>), PinError> {
    let old = Manifest::parse_str(manifest_text, origin)?;
    let mut plan: Vec<(&DebPin, &Candidate)> = Vec::new();
    let mut seen = BTreeSet::new();
    for s in stale {
        let AptServes::Candidate(c) = &s.apt_serves else {
            return Err(PinError::NoReplacement {
                path: origin.to_path_buf(),
                source_name: s.pin.source.clone(),
                package: s.pin.package.clone(),
                version: s.pin.version.clone(),
                why: s.apt_serves.nothing_because().unwrap_or_default(),
            });
        };
        if seen.insert(s.pin.source.as_str()) {
            plan.push((&s.pin, c));
        }
    }
    if plan.is_empty() {
        return Ok((manifest_text.to_string(), Vec::new()));
    }
    let mut doc: DocumentMut =
        manifest_text
            .parse()
            .map_err(|e: toml_edit::TomlError| ManifestError::Syntax {
                path: origin.to_path_buf(),
                location: e
                    .span()
                    .map(|s| Location::from_offset(manifest_text, s.start)),
                message: one_line(e.message()),
            })?;
    let old_pins = deb_pins(&old);
    let mut expected = old.clone();
    let mut changes = Vec::new();
    for (pin, cand) in plan {
        let edit_error = |message: String| PinError::Edit {
            path: origin.to_path_buf(),
            source_name: pin.source.clone(),
            message,
        };
        if !old_pins.contains(pin) {
            return Err(edit_error(format!(
                "the manifest does not pin {} {} with sha256 {} there; it changed since it was checked, check it again",
                pin.package, pin.version, pin.sha256
            )));
        }
        let item = doc
            .get_mut("source")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.get_mut(&pin.source))
            .filter(|i| i.is_table_like())
            .ok_or_else(|| edit_error("its table was not found in the text".into()))?;
        if !item.as_table_like().is_some_and(|t| t.contains_key("arch"))
            && cand.arch != DEFAULT_ARCH
        {
            insert_string(item, "arch", &cand.arch);
        }
        let Some(table) = item.as_table_like_mut() else {
            return Err(edit_error("its table was not found in the text".into()));
        };
        set_string(table, "deb_version", &cand.version).map_err(edit_error)?;
        set_string(table, "sha256", &cand.sha256).map_err(edit_error)?;
        if table.contains_key("arch") {
            set_string(table, "arch", &cand.arch).map_err(edit_error)?;
        }
        if let Some(mut key) = table.key_mut("deb") {
            let decor = key.leaf_decor_mut();
            let prefix = decor.prefix().and_then(|p| p.as_str()).map(str::to_string);
            if let Some(new) = prefix.and_then(|p| replace_pool_comment(&p, &cand.filename)) {
                decor.set_prefix(new);
            }
        }
        expected.sources.insert(
            pin.source.clone(),
            Source {
                kind: SourceKind::Deb {
                    name: pin.package.clone(),
                    version: cand.version.clone(),
                    arch: cand.arch.clone(),
                },
                sha256: cand.sha256.clone(),
            },
        );
        changes.push(Change {
            source: pin.source.clone(),
            package: pin.package.clone(),
            old_version: pin.version.clone(),
            new_version: cand.version.clone(),
            old_arch: pin.arch.clone(),
            new_arch: cand.arch.clone(),
            old_sha256: pin.sha256.clone(),
            new_sha256: cand.sha256.clone(),
            filename: cand.filename.clone(),
        });
    }
    let new_text = doc.to_string();
    // The rewritten text must be the same manifest with exactly these pins changed.
    let reparsed = Manifest::parse_str(&new_text, origin);
    if !matches!(&reparsed, Ok(m) if *m == expected) {
        let why = match reparsed {
            Err(e) => format!("the rewritten manifest is refused: {e}"),
            Ok(_) => "the rewritten manifest says something else than intended".to_string(),
        };
        return Err(PinError::Edit {
            path: origin.to_path_buf(),
            // Displayed after `source.`: every changed source, each with its prefix.
            source_name: changes
                .iter()
                .map(|c| c.source.as_str())
                .collect::<Vec<_>>()
                .join(", source."),
            message: format!("{why}; nothing was written"),
        });
    }
    Ok((new_text, changes))
}

/// A TOML basic string value (double quotes), as `render_sources` writes them.
fn basic_string(s: &str) -> Value {
    toml_string(s).parse().unwrap_or_else(|_| Value::from(s))
}

/// Adds `key = "value"` at the end of the table `item` (a table, a dotted table or an inline
/// table, where the space before the closing brace stays last).
fn insert_string(item: &mut Item, key: &str, value: &str) {
    let mut new = basic_string(value);
    if let Item::Value(Value::InlineTable(t)) = item {
        if let Some((_, last)) = t.iter_mut().last() {
            if let Some(suffix) = last.decor().suffix().cloned() {
                last.decor_mut().set_suffix("");
                new.decor_mut().set_suffix(suffix);
            }
        }
        new.decor_mut().set_prefix(" ");
        t.insert(key, new);
    } else if let Some(t) = item.as_table_like_mut() {
        t.insert(key, Item::Value(new));
    }
}

/// Sets the string `key` of `table` to `new`, keeping the whitespace and comments around the
/// value. An unchanged value keeps its exact text.
fn set_string(table: &mut dyn TableLike, key: &str, new: &str) -> Result<(), String> {
    let value = table
        .get_mut(key)
        .and_then(Item::as_value_mut)
        .ok_or_else(|| format!("`{key}` is not a plain value in the text"))?;
    if value.as_str() == Some(new) {
        return Ok(());
    }
    let decor = value.decor().clone();
    let mut replacement = basic_string(new);
    *replacement.decor_mut() = decor;
    *value = replacement;
    Ok(())
}

/// `prefix` (the text before a key on its line and the lines above it) with its last line, the
/// one just above the key, replaced by `# FILENAME` if it is a `# pool/...` comment; `None`
/// when it is not.
fn replace_pool_comment(prefix: &str, filename: &str) -> Option<String> {
    let last_nl = prefix.rfind('\n')?;
    let above = &prefix[..last_nl];
    let line_start = above.rfind('\n').map_or(0, |i| i + 1);
    let line = &above[line_start..];
    let (line, cr) = match line.strip_suffix('\r') {
        Some(l) => (l, "\r"),
        None => (line, ""),
    };
    let comment = line.trim_start();
    let indent = &line[..line.len() - comment.len()];
    if !comment.strip_prefix('#')?.trim_start().starts_with("pool/") {
        return None;
    }
    Some(format!(
        "{}{indent}# {}{cr}{}",
        &above[..line_start],
        filename.replace(['\n', '\r'], " "),
        &prefix[last_nl..]
    ))
}

/// Replaces the file at `path` (the file a symlink points to) with `text`
/// ([`crate::atomic::write_atomic`]), keeping the old file's permissions (and owner, where
/// allowed). On any error the original is untouched.
fn write_atomic(path: &Path, text: &str) -> Result<(), PinError> {
    use std::os::unix::fs::MetadataExt;
    let err = |source: io::Error| PinError::Write {
        path: path.to_path_buf(),
        source,
    };
    let target = std::fs::canonicalize(path).map_err(err)?;
    let meta = std::fs::metadata(&target).map_err(err)?;
    crate::atomic::write_atomic(
        &target,
        text.as_bytes(),
        meta.permissions(),
        Some((meta.uid(), meta.gid())),
    )
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::{parse_policy, parse_show};

    const OLD_SHA: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const NEW_SHA: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const LIB_SHA: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    const NEW_LIB_SHA: &str = "4444444444444444444444444444444444444444444444444444444444444444";
    const KEEP_SHA: &str = "5555555555555555555555555555555555555555555555555555555555555555";

    /// A manifest in the shape `render_sources` writes, with comments everywhere.
    const MANIFEST: &str = r#"# A manifest with comments.
version = 1

[source.hello-src]
file = "hello.c" # the program
sha256 = "5555555555555555555555555555555555555555555555555555555555555555"

# The toolchain.
[package.toolchain]
version = "12"
unpack = [
    "linux-libc-dev", # headers
    "libstdc++6",
    "bare",
]

[source.linux-libc-dev]
# pool/main/l/linux/linux-libc-dev_6.1.192-2_amd64.deb
deb = "linux-libc-dev"
deb_version = "6.1.192-2"
arch = "amd64"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111" # pinned

[source."libstdc++6"]
# pool/main/g/gcc-12/libstdc++6_12.2.0-14_amd64.deb
deb = "libstdc++6"
deb_version = "12.2.0-14"
arch = "amd64"
sha256 = "3333333333333333333333333333333333333333333333333333333333333333"

[source.bare]
deb = "bare-pkg"
deb_version = "1.0-1"
sha256   =   "5555555555555555555555555555555555555555555555555555555555555555"
"#;

    fn pin(source: &str, package: &str, version: &str, sha256: &str) -> DebPin {
        DebPin {
            source: source.into(),
            package: package.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: sha256.into(),
        }
    }

    fn stale(p: DebPin, version: &str, arch: &str, sha256: &str, filename: &str) -> StalePin {
        StalePin {
            pin: p,
            why: Staleness::VersionGone,
            apt_serves: AptServes::Candidate(Candidate {
                version: version.into(),
                arch: arch.into(),
                sha256: sha256.into(),
                filename: filename.into(),
            }),
        }
    }

    fn origin() -> &'static Path {
        Path::new("dir/manifest.toml")
    }

    #[test]
    fn deb_pins_lists_deb_sources_in_key_order() {
        let m = Manifest::parse_str(MANIFEST, origin()).unwrap();
        let pins = deb_pins(&m);
        let keys: Vec<&str> = pins.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(keys, ["bare", "libstdc++6", "linux-libc-dev"]);
        assert_eq!(pins[0], pin("bare", "bare-pkg", "1.0-1", KEEP_SHA));
    }

    #[test]
    fn rewrite_changes_only_the_stale_fields_and_keeps_everything_else() {
        let stale = [stale(
            pin("linux-libc-dev", "linux-libc-dev", "6.1.192-2", OLD_SHA),
            "6.1.192-3",
            "amd64",
            NEW_SHA,
            "pool/main/l/linux/linux-libc-dev_6.1.192-3_amd64.deb",
        )];
        let (text, changes) = update_pins(MANIFEST, origin(), &stale).unwrap();
        let expected = MANIFEST
            .replace(
                "# pool/main/l/linux/linux-libc-dev_6.1.192-2_amd64.deb",
                "# pool/main/l/linux/linux-libc-dev_6.1.192-3_amd64.deb",
            )
            .replace("deb_version = \"6.1.192-2\"", "deb_version = \"6.1.192-3\"")
            .replace(
                &format!("sha256 = \"{OLD_SHA}\" # pinned"),
                &format!("sha256 = \"{NEW_SHA}\" # pinned"),
            );
        assert_ne!(expected, MANIFEST);
        assert_eq!(text, expected);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].to_string(),
            "linux-libc-dev 6.1.192-2 -> 6.1.192-3"
        );
        assert_eq!(changes[0].source, "linux-libc-dev");
        assert_eq!(changes[0].new_sha256, NEW_SHA);
    }

    #[test]
    fn rewrite_of_a_quoted_key_and_of_a_table_without_the_pool_comment() {
        let stale = [
            stale(
                pin("libstdc++6", "libstdc++6", "12.2.0-14", LIB_SHA),
                "12.2.0-14+deb12u1",
                "amd64",
                NEW_LIB_SHA,
                "pool/main/g/gcc-12/libstdc++6_12.2.0-14+deb12u1_amd64.deb",
            ),
            stale(
                pin("bare", "bare-pkg", "1.0-1", KEEP_SHA),
                "1.0-2",
                "amd64",
                NEW_SHA,
                "pool/main/b/bare/bare-pkg_1.0-2_amd64.deb",
            ),
        ];
        let (text, changes) = update_pins(MANIFEST, origin(), &stale).unwrap();
        let expected = MANIFEST
            .replace(
                "# pool/main/g/gcc-12/libstdc++6_12.2.0-14_amd64.deb",
                "# pool/main/g/gcc-12/libstdc++6_12.2.0-14+deb12u1_amd64.deb",
            )
            .replace(
                "deb_version = \"12.2.0-14\"",
                "deb_version = \"12.2.0-14+deb12u1\"",
            )
            .replace(
                &format!("sha256 = \"{LIB_SHA}\""),
                &format!("sha256 = \"{NEW_LIB_SHA}\""),
            )
            .replace("deb_version = \"1.0-1\"", "deb_version = \"1.0-2\"")
            .replace(
                &format!("sha256   =   \"{KEEP_SHA}\""),
                &format!("sha256   =   \"{NEW_SHA}\""),
            );
        assert_eq!(text, expected);
        // No `arch` was added for the default architecture, and no comment for `bare`.
        assert!(!text.contains("bare-pkg_1.0-2"));
        let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "libstdc++6 12.2.0-14 -> 12.2.0-14+deb12u1",
                "bare-pkg 1.0-1 -> 1.0-2"
            ]
        );
    }

    #[test]
    fn rewrite_adds_arch_when_the_candidate_is_not_the_default() {
        let stale = [stale(
            pin("bare", "bare-pkg", "1.0-1", KEEP_SHA),
            "1.0-2",
            "all",
            NEW_SHA,
            "pool/main/b/bare/bare-pkg_1.0-2_all.deb",
        )];
        let (text, changes) = update_pins(MANIFEST, origin(), &stale).unwrap();
        let m = Manifest::parse_str(&text, origin()).unwrap();
        assert_eq!(
            m.sources["bare"].kind,
            SourceKind::Deb {
                name: "bare-pkg".into(),
                version: "1.0-2".into(),
                arch: "all".into()
            }
        );
        assert_eq!(
            changes[0].to_string(),
            "bare-pkg 1.0-1 -> 1.0-2 (arch amd64 -> all)"
        );
        // Everything before the table is unchanged.
        let at = MANIFEST.find("[source.bare]").unwrap();
        assert_eq!(text[..at], MANIFEST[..at]);
    }

    #[test]
    fn same_version_with_another_sha256_changes_only_the_sha256() {
        let mut s = stale(
            pin("bare", "bare-pkg", "1.0-1", KEEP_SHA),
            "1.0-1",
            "amd64",
            NEW_SHA,
            "pool/main/b/bare/bare-pkg_1.0-1_amd64.deb",
        );
        s.why = Staleness::OtherSha256 {
            served_sha256: NEW_SHA.into(),
        };
        let (text, changes) = update_pins(MANIFEST, origin(), &[s]).unwrap();
        assert_eq!(
            text,
            MANIFEST.replace(
                &format!("sha256   =   \"{KEEP_SHA}\""),
                &format!("sha256   =   \"{NEW_SHA}\"")
            )
        );
        assert!(changes[0]
            .to_string()
            .contains(&format!("sha256 {KEEP_SHA} -> {NEW_SHA}")));
    }

    #[test]
    fn nothing_stale_returns_the_text_unchanged() {
        let (text, changes) = update_pins(MANIFEST, origin(), &[]).unwrap();
        assert_eq!(text, MANIFEST);
        assert!(changes.is_empty());
    }

    #[test]
    fn a_stale_pin_without_candidate_is_an_error_naming_it() {
        let s = StalePin {
            pin: pin("bare", "bare-pkg", "1.0-1", KEEP_SHA),
            why: Staleness::VersionGone,
            apt_serves: AptServes::UnknownPackage,
        };
        let e = update_pins(MANIFEST, origin(), &[s]).unwrap_err();
        assert!(matches!(e, PinError::NoReplacement { .. }), "{e:?}");
        let msg = e.to_string();
        for part in [
            "dir/manifest.toml",
            "source.bare",
            "bare-pkg",
            "1.0-1",
            "does not know",
        ] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn a_pin_the_text_does_not_have_is_an_error() {
        let s = stale(
            pin("bare", "bare-pkg", "0.9-1", KEEP_SHA),
            "1.0-2",
            "amd64",
            NEW_SHA,
            "pool/x.deb",
        );
        let e = update_pins(MANIFEST, origin(), &[s]).unwrap_err();
        assert!(matches!(e, PinError::Edit { .. }), "{e:?}");
        assert!(e.to_string().contains("source.bare"), "{e}");
    }

    #[test]
    fn an_invalid_manifest_is_refused_naming_the_file() {
        let e = update_pins("version = 1\n[source.x]\ndeb = 3\n", origin(), &[]).unwrap_err();
        assert!(e.is_refused_input(), "{e:?}");
        assert!(e.to_string().starts_with("dir/manifest.toml:"), "{e}");
    }

    #[test]
    fn inline_and_dotted_tables_are_rewritten_too() {
        let text = format!(
            "version = 1\n\n[source]\na = {{ deb = \"aa\", deb_version = \"1\", sha256 = \"{OLD_SHA}\" }} # a\nb.deb = \"bb\"\nb.deb_version = \"1\"\nb.sha256 = \"{OLD_SHA}\"\n"
        );
        let stale = [
            stale(
                pin("a", "aa", "1", OLD_SHA),
                "2",
                "all",
                NEW_SHA,
                "pool/a.deb",
            ),
            stale(
                pin("b", "bb", "1", OLD_SHA),
                "3",
                "amd64",
                NEW_SHA,
                "pool/b.deb",
            ),
        ];
        let (new, _) = update_pins(&text, origin(), &stale).unwrap();
        let m = Manifest::parse_str(&new, origin()).unwrap();
        assert_eq!(m.sources["a"].sha256, NEW_SHA);
        assert_eq!(
            m.sources["a"].kind,
            SourceKind::Deb {
                name: "aa".into(),
                version: "2".into(),
                arch: "all".into()
            }
        );
        assert_eq!(m.sources["b"].sha256, NEW_SHA);
        assert!(new.contains("b.deb_version = \"3\"\n"), "{new}");
        assert!(
            new.contains(&format!(
                "a = {{ deb = \"aa\", deb_version = \"2\", sha256 = \"{NEW_SHA}\", arch = \"all\" }} # a\n"
            )),
            "{new}"
        );
    }

    #[test]
    fn pool_comment_is_replaced_only_just_above_the_key() {
        assert_eq!(
            replace_pool_comment("# pool/a_1.deb\n", "pool/a_2.deb").as_deref(),
            Some("# pool/a_2.deb\n")
        );
        assert_eq!(
            replace_pool_comment("# keep\n  #pool/a_1.deb\r\n  ", "pool/a_2.deb").as_deref(),
            Some("# keep\n  # pool/a_2.deb\r\n  ")
        );
        assert_eq!(replace_pool_comment("# pool/a_1.deb\n# other\n", "x"), None);
        assert_eq!(replace_pool_comment("", "x"), None);
        assert_eq!(replace_pool_comment("\n", "x"), None);
        assert_eq!(replace_pool_comment("  ", "x"), None);
    }

    const POLICY: &str = "\
linux-libc-dev:
  Installed: 6.1.187-1
  Candidate: 6.1.192-3
  Version table:
     6.1.192-3 500
        500 http://mirror.example/debian-security bookworm-security/main amd64 Packages
 *** 6.1.187-1 100
        100 /var/lib/dpkg/status
served:
  Installed: (none)
  Candidate: 1.0
other-sha:
  Installed: (none)
  Candidate: 2.0
virtual:
  Installed: (none)
  Candidate: (none)
local-only:
  Installed: 9.0
  Candidate: 9.0
";

    const SHOW: &str = "\
Package: linux-libc-dev
Version: 6.1.192-3
Architecture: amd64
Filename: pool/main/l/linux/linux-libc-dev_6.1.192-3_amd64.deb
SHA256: 2222222222222222222222222222222222222222222222222222222222222222
Description: Linux support headers for userspace development
 continuation: line

Package: served
Version: 1.0
Architecture: all
Filename: pool/main/s/served/served_1.0_all.deb
SHA256: 5555555555555555555555555555555555555555555555555555555555555555

Package: other-sha
Version: 2.0
Architecture: amd64
Filename: pool/main/o/other-sha/other-sha_2.0_amd64.deb
SHA256: 4444444444444444444444444444444444444444444444444444444444444444

Package: local-only
Version: 9.0
Architecture: amd64
Status: install ok installed

";

    #[test]
    fn classify_names_each_stale_pin_and_what_apt_serves() {
        let pins = [
            pin("linux-libc-dev", "linux-libc-dev", "6.1.192-2", OLD_SHA),
            pin("served", "served", "1.0", KEEP_SHA),
            pin("other", "other-sha", "2.0", OLD_SHA),
            pin("virtual", "virtual", "1", OLD_SHA),
            pin("unknown", "no-such-package-xyz", "1", OLD_SHA),
            pin("local", "local-only", "9.0", OLD_SHA),
        ];
        let cands = parse_policy(POLICY);
        assert_eq!(
            show_specs(&pins, &cands),
            [
                "linux-libc-dev:amd64=6.1.192-2",
                "linux-libc-dev:amd64=6.1.192-3",
                "local-only:amd64=9.0",
                "other-sha:amd64=2.0",
                "served:amd64=1.0",
                "virtual:amd64=1",
            ]
        );
        let stale = classify(&pins, &cands, &parse_show(SHOW));
        let lines: Vec<String> = stale.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            lines,
            [
                "source.linux-libc-dev: linux-libc-dev 6.1.192-2: version no longer served; apt serves 6.1.192-3",
                &format!("source.other: other-sha 2.0: served with another sha256 ({NEW_LIB_SHA}); apt serves 2.0"),
                "source.virtual: virtual 1: version no longer served; apt serves nothing (apt has no installable candidate)",
                "source.unknown: no-such-package-xyz 1: version no longer served; apt serves nothing (apt does not know the package)",
                "source.local: local-only 9.0: version no longer served; apt serves nothing (the candidate 9.0 has no SHA256 in apt's index; it is not downloadable)",
            ]
        );
        assert_eq!(
            stale[0].apt_serves,
            AptServes::Candidate(Candidate {
                version: "6.1.192-3".into(),
                arch: "amd64".into(),
                sha256: NEW_SHA.into(),
                filename: "pool/main/l/linux/linux-libc-dev_6.1.192-3_amd64.deb".into(),
            })
        );
        let json = serde_json::to_value(&stale[1]).unwrap();
        assert_eq!(json["source"], "other");
        assert_eq!(json["reason"], "other-sha256");
        assert_eq!(json["served_sha256"], NEW_LIB_SHA);
        assert_eq!(json["apt_serves"]["serves"], "candidate");
        assert_eq!(json["apt_serves"]["version"], "2.0");
    }

    #[test]
    fn classify_does_not_take_a_foreign_architecture_for_the_pinned_one() {
        let show = format!(
            "Package: p\nVersion: 1\nArchitecture: amd64\nFilename: pool/p_1_amd64.deb\nSHA256: {OLD_SHA}\n"
        );
        let mut p = pin("p", "p", "1", OLD_SHA);
        let cands = parse_policy("p:\n  Installed: (none)\n  Candidate: 1\n");
        assert!(classify(&[p.clone()], &cands, &parse_show(&show)).is_empty());
        p.arch = "all".into();
        assert!(classify(&[p.clone()], &cands, &parse_show(&show)).is_empty());
        p.arch = "i386".into();
        let stale = classify(&[p], &cands, &parse_show(&show));
        assert_eq!(stale.len(), 1);
        assert_eq!(
            stale[0].apt_serves,
            AptServes::NotDownloadable {
                version: "1".into()
            }
        );
    }

    #[test]
    fn check_pins_of_a_manifest_without_deb_sources_asks_nothing() {
        let text = format!("version = 1\n[source.f]\nfile = \"f\"\nsha256 = \"{KEEP_SHA}\"\n");
        let check = check_pins(&text, origin()).unwrap();
        assert_eq!(check.pins, 0);
        assert!(check.stale.is_empty());
    }

    #[test]
    fn check_manifest_of_a_missing_file_names_it() {
        let e = check_manifest(Path::new("/nonexistent/distill/manifest.toml")).unwrap_err();
        assert!(e.is_refused_input());
        assert!(
            e.to_string()
                .starts_with("/nonexistent/distill/manifest.toml:"),
            "{e}"
        );
    }

    #[test]
    fn write_atomic_keeps_the_permissions_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("manifest.toml");
        std::fs::write(&m, "old").unwrap();
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&m, &link).unwrap();
        write_atomic(&link, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&m).unwrap(), "new");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::metadata(&m).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
