//! Fetching sources into the fetch cache (`<root>/cache/sha256/<hex>`), each checked against
//! its pinned sha256 while it is written. Local files are read relative to the manifest, URLs
//! over http(s), and Debian packages with the machine's own apt configuration
//! (`apt-get download NAME=VERSION`): no package server is named here.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_manifest::{Source, SourceKind};
use distill_store::Store;

use crate::progress::Progress;
use crate::BuildError;

/// Opens the regular file `rel` beneath `dir`, resolving every component (symlinks
/// included) without ever leaving `dir` (`openat2` with `RESOLVE_BENEATH`): a manifest's
/// `file` source names something its signer placed beside it, never a host file that a path
/// or a symlink leads to (root would otherwise copy e.g. /etc/shadow into the world-readable
/// cache, and a wrong pin would print its sha256).
fn open_beneath(dir: &Path, rel: &Path) -> std::io::Result<File> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let dirfd = File::open(dir)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(&dirfd, rel, how).map_err(|e| {
        if e == nix::errno::Errno::EXDEV {
            std::io::Error::other(format!(
                "it resolves outside the manifest's directory {} (through '..' or a symlink); a file source must be beneath it: copy the file next to the manifest",
                dir.display()
            ))
        } else {
            std::io::Error::from(e)
        }
    })?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file; a file source is one file beside the manifest",
        ));
    }
    Ok(file)
}

/// Make sure the bytes of `source` are in the fetch cache; return the cached file.
pub fn fetch(
    store: &Store,
    manifest_dir: &Path,
    name: &str,
    source: &Source,
    progress: &Progress,
) -> Result<PathBuf, BuildError> {
    if store.cache_has(&source.sha256) {
        return Ok(store.cache_path(&source.sha256));
    }
    match &source.kind {
        SourceKind::File { path } => {
            let full = manifest_dir.join(path);
            let file = open_beneath(manifest_dir, path).map_err(|e| BuildError::Fetch {
                source_name: name.into(),
                reason: format!("file = {:?}: cannot read {}: {e}", path, full.display()),
            })?;
            let len = file.metadata().map(|m| m.len()).ok();
            let bar = progress.bytes(&format!("read {name}"), len);
            insert(
                store,
                name,
                source,
                bar.wrap_read(file),
                &full.display().to_string(),
            )
        }
        SourceKind::Url { url } => {
            let response = ureq::get(url.as_str())
                .call()
                .map_err(|e| BuildError::Fetch {
                    source_name: name.into(),
                    reason: format!("GET {url} failed: {e}"),
                })?;
            let len = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let bar = progress.bytes(&format!("fetch {name}"), len);
            let reader = response.into_body().into_reader();
            insert(store, name, source, bar.wrap_read(reader), url)
        }
        SourceKind::Deb {
            name: pkg,
            version,
            arch,
        } => {
            let bar = progress.spinner(&format!("apt-get download {pkg}={version}"));
            let dir = store
                .temp_dir(&format!("fetch-{name}"))
                .map_err(|e| BuildError::Fetch {
                    source_name: name.into(),
                    reason: format!("cannot create a temporary directory: {e}"),
                })?;
            let spec = format!("{pkg}:{arch}={version}");
            let out = Command::new("apt-get")
                .args(["-q", "-o", "APT::Sandbox::User=root", "download", &spec])
                .current_dir(dir.path())
                .env("LC_ALL", "C")
                .output()
                .map_err(|e| BuildError::Fetch {
                    source_name: name.into(),
                    reason: format!(
                        "cannot run apt-get: {e} (install apt, or use a file/url source)"
                    ),
                })?;
            bar.finish();
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let why = stderr
                    .lines()
                    .rfind(|l| l.starts_with("E:"))
                    .or_else(|| stderr.lines().last())
                    .unwrap_or("no output")
                    .trim();
                return Err(BuildError::Fetch {
                    source_name: name.into(),
                    reason: format!(
                        "apt-get download {spec} failed: {why} (Debian may no longer serve this version: run `apt-get update`, then `distill pin check MANIFEST` lists the stale pins and `distill pin deb --update MANIFEST` re-pins them to apt's candidates)"
                    ),
                });
            }
            let deb = std::fs::read_dir(dir.path())
                .ok()
                .and_then(|mut it| it.find_map(|e| e.ok().map(|e| e.path())))
                .ok_or_else(|| BuildError::Fetch {
                    source_name: name.into(),
                    reason: format!("apt-get download {spec} wrote no file"),
                })?;
            let file = File::open(&deb).map_err(|e| BuildError::Fetch {
                source_name: name.into(),
                reason: format!("cannot read {}: {e}", deb.display()),
            })?;
            insert(store, name, source, file, &format!("deb {spec}"))
        }
    }
}

fn insert(
    store: &Store,
    name: &str,
    source: &Source,
    reader: impl Read,
    origin: &str,
) -> Result<PathBuf, BuildError> {
    store
        .cache_insert(&source.sha256, reader, origin)
        .map_err(|e| BuildError::Fetch {
            source_name: name.into(),
            reason: e.to_string(),
        })
}
