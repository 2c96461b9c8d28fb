//! TOML parsing (into raw, span-carrying structs) and validation into the typed [`Manifest`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::{one_line, Location, ManifestError};
use crate::schema::*;

type S<T> = Spanned<T>;
type SpannedMap = BTreeMap<S<String>, S<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<S<i64>>,
    source_date_epoch: Option<S<i64>>,
    #[serde(default)]
    source: BTreeMap<S<String>, S<RawSource>>,
    #[serde(default)]
    package: BTreeMap<S<String>, S<RawPackage>>,
    image: Option<S<RawImage>>,
    trace: Option<S<RawTrace>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    file: Option<S<String>>,
    url: Option<S<String>>,
    deb: Option<S<String>>,
    deb_version: Option<S<String>>,
    arch: Option<S<String>>,
    sha256: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    version: Option<S<String>>,
    #[serde(default)]
    inputs: Vec<S<String>>,
    #[serde(default)]
    unpack: Vec<S<String>>,
    #[serde(default)]
    build: Vec<S<String>>,
    shell: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    env: SpannedMap,
    root: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Option<S<String>>,
    packages: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    entrypoint: Vec<S<String>>,
    #[serde(default)]
    cmd: Vec<S<String>>,
    #[serde(default)]
    env: SpannedMap,
    workdir: Option<S<String>>,
    user: Option<S<String>>,
    #[serde(default)]
    ports: Vec<S<String>>,
    #[serde(default)]
    labels: SpannedMap,
    stop_signal: Option<S<String>>,
    compression: Option<S<String>>,
    layer_budget: Option<S<i64>>,
    owner: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    #[serde(default)]
    keep: Vec<S<String>>,
    #[serde(default)]
    exclude: Vec<S<String>>,
    #[serde(default)]
    probe: Vec<S<RawProbe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: Option<S<String>>,
    args: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    env: SpannedMap,
    stdin: Option<S<String>>,
    exit_code: Option<S<i64>>,
}

/// Validation context: turns spans into `path:line:col` errors.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        ManifestError::Invalid {
            path: self.path.to_path_buf(),
            location: span.map(|s| Location::from_offset(self.text, s.start)),
            field: field.into(),
            message: one_line(&message.into()),
        }
    }
}

fn is_name(s: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if first(c) => chars.all(rest),
        _ => false,
    }
}

/// `[a-z0-9][a-z0-9._+-]*`: names of sources and packages.
pub(crate) fn is_item_name(s: &str) -> bool {
    let lower_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    is_name(s, lower_digit, |c| {
        lower_digit(c) || matches!(c, '.' | '_' | '+' | '-')
    })
}

/// The build environment variable that holds an input's in-sandbox path: the name with `-`,
/// `.` and `+` replaced by `_` (`hello-src` -> `hello_src`). `None` when the result is not a
/// valid variable name (it starts with a digit) or is the reserved `out`.
pub fn input_env_name(name: &str) -> Option<String> {
    let var: String = name
        .chars()
        .map(|c| if matches!(c, '-' | '.' | '+') { '_' } else { c })
        .collect();
    (is_env_name(&var) && var != "out").then_some(var)
}

/// `[a-z0-9][a-z0-9._-]*`: image names.
fn is_image_name(s: &str) -> bool {
    let lower_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    is_name(s, lower_digit, |c| {
        lower_digit(c) || matches!(c, '.' | '_' | '-')
    })
}

/// `[A-Za-z_][A-Za-z0-9_]*`: environment variable names.
fn is_env_name(s: &str) -> bool {
    is_name(
        s,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

/// Debian package names: `[a-z0-9][a-z0-9+.-]+`.
pub(crate) fn is_deb_name(s: &str) -> bool {
    s.len() >= 2
        && is_name(
            s,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '-'),
        )
}

/// Debian versions: `[0-9][0-9A-Za-z.+~:-]*`.
pub(crate) fn is_deb_version(s: &str) -> bool {
    is_name(
        s,
        |c| c.is_ascii_digit(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'),
    )
}

/// Debian architectures: `[a-z0-9-]+`.
pub(crate) fn is_deb_arch(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Package versions: `[A-Za-z0-9][A-Za-z0-9._+~-]*` (they appear in store path names).
fn is_package_version(s: &str) -> bool {
    is_name(
        s,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-'),
    )
}

/// 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

const SIGNALS: [&str; 31] = [
    "SIGABRT",
    "SIGALRM",
    "SIGBUS",
    "SIGCHLD",
    "SIGCONT",
    "SIGFPE",
    "SIGHUP",
    "SIGILL",
    "SIGINT",
    "SIGIO",
    "SIGKILL",
    "SIGPIPE",
    "SIGPROF",
    "SIGPWR",
    "SIGQUIT",
    "SIGSEGV",
    "SIGSTKFLT",
    "SIGSTOP",
    "SIGSYS",
    "SIGTERM",
    "SIGTRAP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGUSR1",
    "SIGUSR2",
    "SIGVTALRM",
    "SIGWINCH",
    "SIGXCPU",
    "SIGXFSZ",
];

fn is_signal(s: &str) -> bool {
    if SIGNALS.contains(&s) {
        return true;
    }
    let small = |n: &str| n.parse::<u32>().is_ok_and(|v| v <= 30) && !n.starts_with('+');
    if let Some(n) = s
        .strip_prefix("SIGRTMIN+")
        .or_else(|| s.strip_prefix("SIGRTMAX-"))
    {
        return small(n);
    }
    s == "SIGRTMIN"
        || s == "SIGRTMAX"
        || (!s.starts_with('+') && s.parse::<u32>().is_ok_and(|v| (1..=64).contains(&v)))
}

fn is_user(s: &str) -> bool {
    let part = |p: &str| {
        is_name(
            p,
            |c| c.is_ascii_alphanumeric() || c == '_',
            |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        )
    };
    match s.split_once(':') {
        Some((u, g)) => part(u) && part(g),
        None => part(s),
    }
}

/// Checks an http(s) URL: scheme, non-empty host, no credentials, no whitespace.
fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("only http:// and https:// URLs are supported (lowercase scheme)")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URL contains whitespace or control characters; percent-encode them");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("credentials do not belong in a manifest; remove the user:password@ part");
    }
    let host = authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority);
    if host.is_empty() {
        return Err("URL has no host name");
    }
    Ok(())
}

/// Normalizes `PORT`, `PORT/tcp`, `PORT/udp`, `PORT/sctp` to `PORT/PROTO`.
fn normalize_port(p: &str) -> Option<String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let n: u16 = num
        .parse()
        .ok()
        .filter(|n| *n > 0 && !num.starts_with('+'))?;
    matches!(proto, "tcp" | "udp" | "sctp").then(|| format!("{n}/{proto}"))
}

fn check_no_nul(ctx: &Ctx, v: &S<String>, field: &str) -> Result<(), ManifestError> {
    if v.get_ref().contains('\0') {
        return Err(ctx.err(
            Some(v.span()),
            field,
            "contains a NUL character, which cannot be passed to a process; remove it",
        ));
    }
    Ok(())
}

fn convert_env(
    ctx: &Ctx,
    raw: &SpannedMap,
    field: &str,
    reserved: &[&str],
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let name = k.get_ref();
        let f = format!("{field}.{name}");
        if !is_env_name(name) {
            return Err(ctx.err(
                Some(k.span()),
                &f,
                format!("invalid variable name {name:?}; names match [A-Za-z_][A-Za-z0-9_]*"),
            ));
        }
        if reserved.contains(&name.as_str()) {
            return Err(ctx.err(
                Some(k.span()),
                &f,
                format!(
                    "{name} is set by the builder and cannot be overridden (reserved: {})",
                    reserved.join(" ")
                ),
            ));
        }
        check_no_nul(ctx, v, &f)?;
        out.insert(name.clone(), v.get_ref().clone());
    }
    Ok(out)
}

fn strings(ctx: &Ctx, raw: &[S<String>], field: &str) -> Result<Vec<String>, ManifestError> {
    raw.iter()
        .enumerate()
        .map(|(i, v)| {
            check_no_nul(ctx, v, &format!("{field}[{i}]"))?;
            Ok(v.get_ref().clone())
        })
        .collect()
}

impl Manifest {
    /// Parses and validates manifest text. `origin` is the path used in error messages (it is
    /// not read).
    pub fn parse_str(text: &str, origin: &Path) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            path: origin.to_path_buf(),
            location: e.span().map(|s| Location::from_offset(text, s.start)),
            message: one_line(e.message()),
        })?;
        let ctx = Ctx { text, path: origin };
        validate(&ctx, raw)
    }

    /// Reads, parses and validates the manifest at `path`, and records the sha256 of its exact
    /// bytes and its (absolute) directory.
    pub fn load(path: &Path) -> Result<LoadedManifest, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::load_bytes(path, &bytes)
    }

    /// Like [`Manifest::load`], for the bytes the caller already read from `path` (e.g. the
    /// bytes whose signature it verified).
    pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<LoadedManifest, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.valid_up_to(),
        })?;
        let manifest = Manifest::parse_str(text, path)?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::path::absolute(&parent).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LoadedManifest {
            manifest,
            path: path.to_path_buf(),
            dir,
            digest,
        })
    }
}

fn validate(ctx: &Ctx, raw: RawManifest) -> Result<Manifest, ManifestError> {
    let version = match &raw.version {
        None => return Err(ctx.err(None, "version", "missing; put `version = 1` at the top of the manifest")),
        Some(v) if *v.get_ref() != i64::from(MANIFEST_VERSION) => {
            return Err(ctx.err(
                Some(v.span()),
                "version",
                format!("unsupported manifest version {}; this distill understands version {MANIFEST_VERSION}", v.get_ref()),
            ))
        }
        Some(_) => MANIFEST_VERSION,
    };
    let source_date_epoch = match &raw.source_date_epoch {
        None => 0,
        Some(v) => u64::try_from(*v.get_ref()).map_err(|_| {
            ctx.err(
                Some(v.span()),
                "source_date_epoch",
                "must be zero or a positive number of seconds since 1970-01-01",
            )
        })?,
    };

    // Names: syntax, and one namespace across sources and packages.
    for k in raw.source.keys().chain(raw.package.keys()) {
        if k.get_ref() == "out" {
            let table = if is_source(&raw, "out") {
                "source"
            } else {
                "package"
            };
            return Err(ctx.err(
                Some(k.span()),
                format!("{table}.out"),
                "the name `out` is reserved ($out is the build output); rename it",
            ));
        }
    }
    for k in raw.source.keys() {
        if !is_item_name(k.get_ref()) {
            return Err(ctx.err(
                Some(k.span()),
                format!("source.{}", k.get_ref()),
                "invalid name; source and package names match [a-z0-9][a-z0-9._+-]*",
            ));
        }
    }
    for k in raw.package.keys() {
        let name = k.get_ref();
        if !is_item_name(name) {
            return Err(ctx.err(
                Some(k.span()),
                format!("package.{name}"),
                "invalid name; source and package names match [a-z0-9][a-z0-9._+-]*",
            ));
        }
        if raw.source.keys().any(|s| s.get_ref() == name) {
            return Err(ctx.err(
                Some(k.span()),
                format!("package.{name}"),
                format!("name {name:?} is also a source; sources and packages share one namespace, rename one"),
            ));
        }
    }

    let mut sources = BTreeMap::new();
    for (k, v) in &raw.source {
        sources.insert(k.get_ref().clone(), convert_source(ctx, k.get_ref(), v)?);
    }
    let mut packages = BTreeMap::new();
    for (k, v) in &raw.package {
        packages.insert(
            k.get_ref().clone(),
            convert_package(ctx, k.get_ref(), v, &raw)?,
        );
    }
    check_cycles(ctx, &raw)?;

    let image = raw
        .image
        .as_ref()
        .map(|i| convert_image(ctx, i, &raw))
        .transpose()?;
    let trace = match &raw.trace {
        None => None,
        Some(t) => {
            if image.is_none() {
                return Err(ctx.err(
                    Some(t.span()),
                    "trace",
                    "[trace] needs an [image] to run its probes in; add [image] or remove [trace]",
                ));
            }
            Some(convert_trace(ctx, t)?)
        }
    };
    Ok(Manifest {
        version,
        source_date_epoch,
        sources,
        packages,
        image,
        trace,
    })
}

fn convert_source(ctx: &Ctx, name: &str, v: &S<RawSource>) -> Result<Source, ManifestError> {
    let f = |x: &str| format!("source.{name}.{x}");
    let r = v.get_ref();
    let given: Vec<&S<String>> = [&r.file, &r.url, &r.deb].into_iter().flatten().collect();
    if given.len() != 1 {
        let span = given.get(1).map(|s| s.span()).unwrap_or(v.span());
        let what = if given.is_empty() {
            "has none"
        } else {
            "has more than one"
        };
        return Err(ctx.err(
            Some(span),
            format!("source.{name}"),
            format!("a source needs exactly one of `file`, `url` or `deb`; this one {what}"),
        ));
    }
    let sha256 = match &r.sha256 {
        None => {
            return Err(ctx.err(
                Some(v.span()),
                f("sha256"),
                "missing; every source is pinned by the sha256 of its bytes (`sha256sum FILE`)",
            ))
        }
        Some(s) if !is_sha256_hex(s.get_ref()) => {
            let hint =
                if s.get_ref().len() == 64 && s.get_ref().bytes().all(|b| b.is_ascii_hexdigit()) {
                    "write it in lowercase"
                } else {
                    "it must be 64 lowercase hex digits"
                };
            return Err(ctx.err(
                Some(s.span()),
                f("sha256"),
                format!("{:?} is not a sha256; {hint}", s.get_ref()),
            ));
        }
        Some(s) => s.get_ref().clone(),
    };
    if r.deb.is_none() {
        for (field, val) in [("deb_version", &r.deb_version), ("arch", &r.arch)] {
            if let Some(val) = val {
                return Err(ctx.err(
                    Some(val.span()),
                    f(field),
                    "only valid with `deb`; remove it",
                ));
            }
        }
    }
    let kind = if let Some(file) = &r.file {
        let p = file.get_ref();
        if p.is_empty() {
            return Err(ctx.err(
                Some(file.span()),
                f("file"),
                "empty path; give a path relative to the manifest's directory",
            ));
        }
        check_no_nul(ctx, file, &f("file"))?;
        if Path::new(p).is_absolute() {
            return Err(ctx.err(
                Some(file.span()),
                f("file"),
                format!(
                    "absolute path {p:?} is refused; give it relative to the manifest's directory"
                ),
            ));
        }
        if Path::new(p)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(ctx.err(
                Some(file.span()),
                f("file"),
                format!(
                    "{p:?} climbs out with '..'; a file source must be beneath the manifest's directory (copy the file next to the manifest)"
                ),
            ));
        }
        SourceKind::File {
            path: PathBuf::from(p),
        }
    } else if let Some(url) = &r.url {
        check_url(url.get_ref()).map_err(|m| {
            ctx.err(
                Some(url.span()),
                f("url"),
                format!("{:?}: {m}", url.get_ref()),
            )
        })?;
        SourceKind::Url {
            url: url.get_ref().clone(),
        }
    } else if let Some(deb) = &r.deb {
        if !is_deb_name(deb.get_ref()) {
            return Err(ctx.err(
                Some(deb.span()),
                f("deb"),
                format!(
                    "{:?} is not a Debian package name ([a-z0-9][a-z0-9+.-]+)",
                    deb.get_ref()
                ),
            ));
        }
        let version = match &r.deb_version {
            None => {
                return Err(ctx.err(
                    Some(deb.span()),
                    f("deb_version"),
                    "missing; a deb source needs its exact version (see `distill pin deb`)",
                ))
            }
            Some(ver) if !is_deb_version(ver.get_ref()) => {
                return Err(ctx.err(
                    Some(ver.span()),
                    f("deb_version"),
                    format!("{:?} is not a Debian version", ver.get_ref()),
                ))
            }
            Some(ver) => ver.get_ref().clone(),
        };
        let arch = match &r.arch {
            None => DEFAULT_ARCH.to_string(),
            Some(a) if !is_deb_arch(a.get_ref()) => {
                return Err(ctx.err(
                    Some(a.span()),
                    f("arch"),
                    format!(
                        "{:?} is not a Debian architecture (e.g. amd64, arm64, all)",
                        a.get_ref()
                    ),
                ))
            }
            Some(a) => a.get_ref().clone(),
        };
        SourceKind::Deb {
            name: deb.get_ref().clone(),
            version,
            arch,
        }
    } else {
        // `given.len() == 1` above guarantees one of the three.
        return Err(ctx.err(
            Some(v.span()),
            format!("source.{name}"),
            "a source needs exactly one of `file`, `url` or `deb`",
        ));
    };
    Ok(Source { kind, sha256 })
}

fn is_source(raw: &RawManifest, name: &str) -> bool {
    raw.source.keys().any(|k| k.get_ref() == name)
}

fn is_package(raw: &RawManifest, name: &str) -> bool {
    raw.package.keys().any(|k| k.get_ref() == name)
}

fn convert_package(
    ctx: &Ctx,
    name: &str,
    v: &S<RawPackage>,
    raw: &RawManifest,
) -> Result<Package, ManifestError> {
    let f = |x: &str| format!("package.{name}.{x}");
    let r = v.get_ref();
    let version = match &r.version {
        None => DEFAULT_PACKAGE_VERSION.to_string(),
        Some(ver) if !is_package_version(ver.get_ref()) => {
            return Err(ctx.err(
                Some(ver.span()),
                f("version"),
                format!(
                    "{:?} is not a valid package version; use [A-Za-z0-9][A-Za-z0-9._+~-]*",
                    ver.get_ref()
                ),
            ))
        }
        Some(ver) => ver.get_ref().clone(),
    };
    let mut inputs = Vec::new();
    for (i, inp) in r.inputs.iter().enumerate() {
        let n = inp.get_ref();
        let field = format!("package.{name}.inputs[{i}]");
        if n == name {
            return Err(ctx.err(
                Some(inp.span()),
                field,
                format!("dependency cycle: {name} -> {name}; a package cannot be its own input"),
            ));
        }
        if !is_source(raw, n) && !is_package(raw, n) {
            return Err(ctx.err(
                Some(inp.span()),
                field,
                format!("unknown input {n:?} (not a source or package in this manifest)"),
            ));
        }
        if let Some(var) = input_env_name(n) {
            if let Some(other) = inputs
                .iter()
                .find(|o: &&String| input_env_name(o).as_deref() == Some(var.as_str()))
            {
                if other != n {
                    return Err(ctx.err(
                        Some(inp.span()),
                        field,
                        format!("inputs {other:?} and {n:?} would both be ${var} in the build; rename one"),
                    ));
                }
            }
        }
        if inputs.contains(n) {
            return Err(ctx.err(
                Some(inp.span()),
                field,
                format!("input {n:?} is listed twice; remove one"),
            ));
        }
        inputs.push(n.clone());
    }
    let mut unpack = Vec::new();
    for (i, u) in r.unpack.iter().enumerate() {
        let n = u.get_ref();
        let field = format!("package.{name}.unpack[{i}]");
        if is_package(raw, n) {
            return Err(ctx.err(
                Some(u.span()),
                field,
                format!(
                    "{n:?} is a package; only sources can be unpacked (list packages in `inputs`)"
                ),
            ));
        }
        if !is_source(raw, n) {
            return Err(ctx.err(
                Some(u.span()),
                field,
                format!("unknown source {n:?} (not a source in this manifest)"),
            ));
        }
        if unpack.contains(n) {
            return Err(ctx.err(
                Some(u.span()),
                field,
                format!("{n:?} is unpacked twice; remove one"),
            ));
        }
        unpack.push(n.clone());
    }
    let mut build = Vec::new();
    for (i, step) in r.build.iter().enumerate() {
        let field = format!("package.{name}.build[{i}]");
        if step.get_ref().trim().is_empty() {
            return Err(ctx.err(Some(step.span()), field, "empty build step; remove it"));
        }
        check_no_nul(ctx, step, &field)?;
        build.push(step.get_ref().clone());
    }
    if unpack.is_empty() && build.is_empty() {
        return Err(ctx.err(
            Some(v.span()),
            format!("package.{name}"),
            "a package needs `unpack` or `build` (or both); it would produce nothing",
        ));
    }
    let shell = match &r.shell {
        None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        Some(sh) => {
            if sh.get_ref().first().is_none_or(|s| s.get_ref().is_empty()) {
                return Err(ctx.err(
                    Some(sh.span()),
                    f("shell"),
                    "needs at least a program, e.g. [\"sh\", \"-e\", \"-c\"]",
                ));
            }
            strings(ctx, sh.get_ref(), &f("shell"))?
        }
    };
    let env = convert_env(ctx, &r.env, &f("env"), &RESERVED_BUILD_ENV)?;
    let root = match &r.root {
        None => None,
        Some(rt) => {
            let n = rt.get_ref();
            if n == name {
                return Err(ctx.err(
                    Some(rt.span()),
                    f("root"),
                    format!("dependency cycle: {name} -> {name}; a package cannot be its own root"),
                ));
            }
            if is_source(raw, n) {
                return Err(ctx.err(
                    Some(rt.span()),
                    f("root"),
                    format!("{n:?} is a source; `root` must be a package (make a package that unpacks it)"),
                ));
            }
            if !is_package(raw, n) {
                return Err(ctx.err(
                    Some(rt.span()),
                    f("root"),
                    format!("unknown package {n:?} (not a package in this manifest)"),
                ));
            }
            Some(n.clone())
        }
    };
    let package = Package {
        version,
        inputs,
        unpack,
        build,
        shell,
        env,
        root,
    };
    // Every dependency (inputs, unpack and root alike) is exported as a variable in the build;
    // two that map to the same variable would silently shadow each other.
    let mut vars: BTreeMap<String, &str> = BTreeMap::new();
    for dep in package.dependencies() {
        if let Some(var) = input_env_name(dep) {
            if let Some(other) = vars.insert(var.clone(), dep) {
                return Err(ctx.err(
                    None,
                    format!("package.{name}"),
                    format!("inputs {other:?} and {dep:?} would both be ${var} in the build; rename one"),
                ));
            }
        }
    }
    Ok(package)
}

/// A dependency edge: target package, span of the reference, field path of the reference.
type Edge<'a> = (&'a str, Range<usize>, String);

/// Finds a dependency cycle among packages (edges: package inputs and root) and names it.
fn check_cycles(ctx: &Ctx, raw: &RawManifest) -> Result<(), ManifestError> {
    // Edges in listing order, with the span of the reference for the error location.
    let mut edges: BTreeMap<&str, Vec<Edge>> = BTreeMap::new();
    for (k, v) in &raw.package {
        let name = k.get_ref().as_str();
        let r = v.get_ref();
        let mut out = Vec::new();
        for (i, inp) in r.inputs.iter().enumerate() {
            if is_package(raw, inp.get_ref()) {
                out.push((
                    inp.get_ref().as_str(),
                    inp.span(),
                    format!("package.{name}.inputs[{i}]"),
                ));
            }
        }
        if let Some(rt) = &r.root {
            out.push((
                rt.get_ref().as_str(),
                rt.span(),
                format!("package.{name}.root"),
            ));
        }
        edges.insert(name, out);
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = edges.keys().map(|k| (*k, Mark::New)).collect();
    for start in edges.keys() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: stack of (node, next edge index).
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Active);
        while let Some((node, idx)) = stack.last().cloned() {
            let out = &edges[node];
            if idx == out.len() {
                mark.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let (next, span, field) = &out[idx];
            match mark.get(next).copied().unwrap_or(Mark::Done) {
                Mark::Done => {}
                Mark::New => {
                    mark.insert(next, Mark::Active);
                    stack.push((next, 0));
                }
                Mark::Active => {
                    let pos = stack.iter().position(|(n, _)| n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                    cycle.push(next);
                    return Err(ctx.err(
                        Some(span.clone()),
                        field.clone(),
                        format!(
                            "dependency cycle: {}; remove one of these inputs",
                            cycle.join(" -> ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn convert_image(ctx: &Ctx, v: &S<RawImage>, raw: &RawManifest) -> Result<Image, ManifestError> {
    let r = v.get_ref();
    let name = match &r.name {
        None => {
            return Err(ctx.err(
                Some(v.span()),
                "image.name",
                "missing; give the image a name like \"hello\"",
            ))
        }
        Some(n) if !is_image_name(n.get_ref()) => {
            return Err(ctx.err(
                Some(n.span()),
                "image.name",
                format!(
                    "{:?} is not a valid image name; use [a-z0-9][a-z0-9._-]*",
                    n.get_ref()
                ),
            ))
        }
        Some(n) => n.get_ref().clone(),
    };
    let mut packages = Vec::new();
    match &r.packages {
        None => {
            return Err(ctx.err(
                Some(v.span()),
                "image.packages",
                "missing; list the packages whose trees make up the image",
            ))
        }
        Some(p) if p.get_ref().is_empty() => {
            return Err(ctx.err(
                Some(p.span()),
                "image.packages",
                "empty; list at least one package",
            ))
        }
        Some(p) => {
            for (i, pk) in p.get_ref().iter().enumerate() {
                let n = pk.get_ref();
                let field = format!("image.packages[{i}]");
                if is_source(raw, n) {
                    return Err(ctx.err(
                        Some(pk.span()),
                        field,
                        format!("{n:?} is a source, not a package; make a package that unpacks it and list that"),
                    ));
                }
                if !is_package(raw, n) {
                    return Err(ctx.err(
                        Some(pk.span()),
                        field,
                        format!("unknown package {n:?} (not a package in this manifest)"),
                    ));
                }
                if packages.contains(n) {
                    return Err(ctx.err(
                        Some(pk.span()),
                        field,
                        format!("package {n:?} is listed twice; remove one"),
                    ));
                }
                packages.push(n.clone());
            }
        }
    }
    let entrypoint = strings(ctx, &r.entrypoint, "image.entrypoint")?;
    let cmd = strings(ctx, &r.cmd, "image.cmd")?;
    let env = convert_env(ctx, &r.env, "image.env", &[])?;
    let workdir = match &r.workdir {
        None => None,
        Some(w) if !w.get_ref().starts_with('/') => {
            return Err(ctx.err(
                Some(w.span()),
                "image.workdir",
                format!("{:?} must be an absolute path", w.get_ref()),
            ))
        }
        Some(w) => {
            check_no_nul(ctx, w, "image.workdir")?;
            Some(w.get_ref().clone())
        }
    };
    let user = match &r.user {
        None => None,
        Some(u) if !is_user(u.get_ref()) => {
            return Err(ctx.err(
                Some(u.span()),
                "image.user",
                format!(
                    "{:?} is not a user; use UID, UID:GID, NAME or NAME:GROUP",
                    u.get_ref()
                ),
            ))
        }
        Some(u) => Some(u.get_ref().clone()),
    };
    let mut ports = BTreeSet::new();
    for (i, p) in r.ports.iter().enumerate() {
        let norm = normalize_port(p.get_ref()).ok_or_else(|| {
            ctx.err(
                Some(p.span()),
                format!("image.ports[{i}]"),
                format!(
                    "{:?} is not a port; use PORT or PORT/tcp|udp|sctp with PORT 1-65535",
                    p.get_ref()
                ),
            )
        })?;
        ports.insert(norm);
    }
    let mut labels = BTreeMap::new();
    for (k, val) in &r.labels {
        if k.get_ref().is_empty() || k.get_ref().chars().any(char::is_control) {
            return Err(ctx.err(
                Some(k.span()),
                "image.labels",
                "label keys must be non-empty and free of control characters",
            ));
        }
        labels.insert(k.get_ref().clone(), val.get_ref().clone());
    }
    let stop_signal = match &r.stop_signal {
        None => None,
        Some(s) if !is_signal(s.get_ref()) => {
            return Err(ctx.err(
                Some(s.span()),
                "image.stop_signal",
                format!(
                    "{:?} is not a signal; use a name like SIGTERM or a number 1-64",
                    s.get_ref()
                ),
            ))
        }
        Some(s) => Some(s.get_ref().clone()),
    };
    let compression = match r.compression.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "gzip")) => Compression::Gzip,
        Some((_, "zstd")) => Compression::Zstd,
        Some((_, "none")) => Compression::None,
        Some((c, other)) => {
            return Err(ctx.err(
                Some(c.span()),
                "image.compression",
                format!("unknown compression {other:?}; use gzip, zstd or none"),
            ))
        }
    };
    let layer_budget = match &r.layer_budget {
        None => None,
        Some(b) => Some(
            u32::try_from(*b.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ctx.err(
                        Some(b.span()),
                        "image.layer_budget",
                        "must be a whole number of layers, at least 1",
                    )
                })?,
        ),
    };
    let owner = match &r.owner {
        None => None,
        Some(o) => {
            let parsed = o.get_ref().split_once(':').and_then(|(u, g)| {
                let num = |s: &str| {
                    if s.starts_with('+') {
                        None
                    } else {
                        s.parse::<u32>().ok()
                    }
                };
                Some(Owner {
                    uid: num(u)?,
                    gid: num(g)?,
                })
            });
            Some(parsed.ok_or_else(|| {
                ctx.err(
                    Some(o.span()),
                    "image.owner",
                    format!(
                        "{:?} is not UID:GID (two numbers, e.g. \"0:0\")",
                        o.get_ref()
                    ),
                )
            })?)
        }
    };
    Ok(Image {
        name,
        packages,
        entrypoint,
        cmd,
        env,
        workdir,
        user,
        ports: ports.into_iter().collect(),
        labels,
        stop_signal,
        compression,
        layer_budget,
        owner,
    })
}

fn convert_globs(ctx: &Ctx, raw: &[S<String>], field: &str) -> Result<Vec<String>, ManifestError> {
    let mut out = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let s = g.get_ref();
        if !s.starts_with('/') {
            return Err(ctx.err(
                Some(g.span()),
                f,
                format!("{s:?} must be an absolute path glob (start with /)"),
            ));
        }
        if let Err(e) = globset::Glob::new(s) {
            return Err(ctx.err(Some(g.span()), f, format!("bad glob {s:?}: {}", e.kind())));
        }
        out.push(s.clone());
    }
    Ok(out)
}

fn convert_trace(ctx: &Ctx, v: &S<RawTrace>) -> Result<Trace, ManifestError> {
    let r = v.get_ref();
    let keep = convert_globs(ctx, &r.keep, "trace.keep")?;
    let exclude = convert_globs(ctx, &r.exclude, "trace.exclude")?;
    let mut probes = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in r.probe.iter().enumerate() {
        let pr = p.get_ref();
        let f = |x: &str| format!("trace.probe[{i}].{x}");
        let name = match &pr.name {
            None => None,
            Some(n) => {
                if n.get_ref().is_empty() || n.get_ref().chars().any(char::is_control) {
                    return Err(ctx.err(
                        Some(n.span()),
                        f("name"),
                        "must be non-empty and free of control characters",
                    ));
                }
                if !names.insert(n.get_ref().clone()) {
                    return Err(ctx.err(
                        Some(n.span()),
                        f("name"),
                        format!(
                            "probe name {:?} is used twice; names must be unique",
                            n.get_ref()
                        ),
                    ));
                }
                Some(n.get_ref().clone())
            }
        };
        let args = match &pr.args {
            None => {
                return Err(ctx.err(
                    Some(p.span()),
                    f("args"),
                    "missing; give the command to run, e.g. [\"/bin/hello\"]",
                ))
            }
            Some(a) if a.get_ref().first().is_none_or(|s| s.get_ref().is_empty()) => {
                return Err(ctx.err(Some(a.span()), f("args"), "needs at least a program to run"))
            }
            Some(a) => strings(ctx, a.get_ref(), &f("args"))?,
        };
        let env = convert_env(ctx, &pr.env, &f("env"), &[])?;
        let stdin = pr.stdin.as_ref().map(|s| s.get_ref().clone());
        let exit_code = match &pr.exit_code {
            None => 0,
            Some(c) => i32::try_from(*c.get_ref())
                .ok()
                .filter(|c| (0..=255).contains(c))
                .ok_or_else(|| {
                    ctx.err(
                        Some(c.span()),
                        f("exit_code"),
                        "must be an exit status between 0 and 255",
                    )
                })?,
        };
        probes.push(Probe {
            name,
            args,
            env,
            stdin,
            exit_code,
        });
    }
    Ok(Trace {
        keep,
        exclude,
        probes,
    })
}
