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
            let file = File::open(&full).map_err(|e| BuildError::Fetch {
                source_name: name.into(),
                reason: format!("cannot read {}: {e}", full.display()),
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
