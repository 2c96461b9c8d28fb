//! Images loaded on this machine: a plain directory per image under `<root>/images/`.
//!
//! ```text
//! <root>/images/<hex>/rootfs/       the unpacked layers (what a container's root is made from)
//! <root>/images/<hex>/config.json   the verified image config blob
//! <root>/images/<hex>/manifest.json the image manifest (layer descriptors, for `commit`)
//! <root>/images/<hex>/image.json    name, digest, size, created, loaded_at, annotations
//! ```
//! `<hex>` is the image manifest digest (the config digest for a legacy docker-archive, which
//! has no manifest). An image directory appears only once complete ([`load_archive`] unpacks
//! in a sibling temp directory and renames); removal renames it away first, so readers never
//! see a half-removed image. Names (`hello:latest`) are unique: loading a new image under a
//! name takes the name from the image that had it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::docs::ImageConfig;
use crate::error::{io_err, Error, Result};
use crate::inspect::inspect_archive;
use crate::load::load_archive;
use crate::outer::image_config;

/// What `image.json` records about a loaded image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Reference name (`hello:latest`), if it still has one.
    pub name: Option<String>,
    /// `sha256:...` of the image manifest (or of the config for a legacy docker-archive).
    pub digest: String,
    /// `sha256:...` of the config.
    pub config_digest: String,
    /// Bytes of unpacked file content.
    pub size: u64,
    /// The config's `created` time (RFC 3339), if set.
    pub created: Option<String>,
    /// When it was loaded here (seconds since 1970).
    pub loaded_at: u64,
    /// The image manifest's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The directory of loaded images.
#[derive(Clone, Debug)]
pub struct Images {
    dir: PathBuf,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parse an image config blob into the runtime configuration.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    let cfg: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "image config".into(),
            source,
        })?;
    Ok(image_config(&cfg))
}

fn created_of(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("created")?.as_str().map(str::to_string)
}

impl Images {
    /// The image directory under `root` (`<root>/images`); nothing is created until a load.
    pub fn new(root: &Path) -> Images {
        Images {
            dir: root.join("images"),
        }
    }

    /// `<root>/images`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of an image.
    pub fn path(&self, rec: &ImageRecord) -> PathBuf {
        self.dir.join(rec.digest.trim_start_matches("sha256:"))
    }

    /// The unpacked root of an image.
    pub fn rootfs(&self, rec: &ImageRecord) -> PathBuf {
        self.path(rec).join("rootfs")
    }

    /// The registry and the loaded image whose unpacked root is `rootfs`
    /// (`<root>/images/<hex>/rootfs`, symlinks resolved), if it is one: the one place that
    /// maps a container's root back to its image (`commit`, checkpoint export).
    pub fn holding(rootfs: &Path) -> Option<(Images, ImageRecord)> {
        let rootfs = fs::canonicalize(rootfs).ok()?;
        if rootfs.file_name()? != "rootfs" {
            return None;
        }
        let dir = rootfs.parent()?;
        let images = Images {
            dir: dir.parent()?.to_path_buf(),
        };
        let rec = images.read_record(dir).ok()?;
        (images.path(&rec) == dir).then_some((images, rec))
    }

    /// The runtime configuration of an image.
    pub fn config(&self, rec: &ImageRecord) -> Result<ImageConfig> {
        let p = self.path(rec).join("config.json");
        let bytes = fs::read(&p).map_err(io_err(&p, "read"))?;
        parse_config(&bytes)
    }

    /// Load an archive (OCI layout tar or docker-archive): verify every blob, unpack safely,
    /// record it. Loading an image that is already here only updates its name.
    pub fn load(&self, archive: &Path) -> Result<(ImageRecord, bool)> {
        // Private to root, as the root above it (see `ensure_private_dir`).
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir, "create directory"))?;
        let info = inspect_archive(archive)?;
        if let Some(n) = &info.ref_name {
            check_printable_name(n)?;
        }
        let digest = info
            .manifest_digest
            .clone()
            .unwrap_or_else(|| info.config_digest.clone());
        let dest = self.dir.join(digest.hex());
        // `Some(bytes unpacked)` when this call unpacked it.
        let unpacked: Option<u64> = if dest.join("rootfs").exists() {
            None
        } else {
            match load_archive(archive, &dest) {
                Ok(loaded) => Some(loaded.unpacked_bytes),
                // Another load of the same image won the race.
                Err(Error::DestinationExists(_)) => None,
                Err(e) => {
                    if dest.join("rootfs").exists() {
                        None
                    } else {
                        return Err(e);
                    }
                }
            }
        };
        let fresh = unpacked.is_some();
        let name = info.ref_name.clone().map(|n| normalize_name(&n));
        let lock = self.lock()?;
        // The record is written after the unpacked directory is renamed into place: a
        // concurrent load that lost the rename, or a load interrupted in between, finds the
        // directory without it, and writes it here.
        let rec = if fresh || !dest.join("image.json").exists() {
            let cfg_path = dest.join("config.json");
            let cfg = fs::read(&cfg_path).map_err(io_err(&cfg_path, "read"))?;
            ImageRecord {
                name: name.clone(),
                digest: digest.as_str().to_string(),
                config_digest: info.config_digest.as_str().to_string(),
                size: match unpacked {
                    Some(bytes) => bytes,
                    None => dir_size(&dest.join("rootfs")).map_err(io_err(&dest, "measure"))?,
                },
                created: created_of(&cfg),
                loaded_at: now_secs(),
                annotations: info.annotations.clone(),
            }
        } else {
            let mut rec = self.read_record(&dest)?;
            rec.name = name.clone().or(rec.name);
            rec
        };
        self.take_name(&rec, &lock)?;
        self.write_record(&rec)?;
        Ok((rec, fresh))
    }

    /// Records an image made here (`commit`): a fresh one as `rec`; one already present
    /// keeps its record but gets `rec`'s name. The name is taken from any other image.
    pub(crate) fn record_named(
        &self,
        rec: ImageRecord,
        fresh: bool,
    ) -> Result<(ImageRecord, bool)> {
        let lock = self.lock()?;
        let dir = self.path(&rec);
        let rec = if fresh || !dir.join("image.json").exists() {
            rec
        } else {
            let mut old = self.read_record(&dir)?;
            old.name = rec.name.clone();
            old
        };
        self.take_name(&rec, &lock)?;
        self.write_record(&rec)?;
        Ok((rec, fresh))
    }

    /// Removes `rec`'s name from every other image (names are unique). Needs the lock.
    fn take_name(&self, rec: &ImageRecord, _lock: &fs::File) -> Result<()> {
        if let Some(n) = &rec.name {
            for mut other in self.list()? {
                if other.digest != rec.digest && other.name.as_deref() == Some(n) {
                    other.name = None;
                    self.write_record(&other)?;
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<fs::File> {
        let p = self.dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p, "open"))?;
        // SAFETY: flock on a valid fd we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            return Err(io_err(&p, "lock")(io::Error::last_os_error()));
        }
        Ok(f)
    }

    fn read_record(&self, dir: &Path) -> Result<ImageRecord> {
        let p = dir.join("image.json");
        let bytes = fs::read(&p).map_err(io_err(&p, "read"))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: p.display().to_string(),
            source,
        })
    }

    fn write_record(&self, rec: &ImageRecord) -> Result<()> {
        let dst = self.path(rec).join("image.json");
        let mut bytes = serde_json::to_vec_pretty(rec).expect("record serializes");
        bytes.push(b'\n');
        crate::atomic::write_file_atomic(&dst, &bytes, 0o644).map_err(io_err(&dst, "write"))
    }

    /// Every loaded image, newest first (ties by digest).
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, "read directory")(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(&self.dir, "read directory"))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.len() != 64 {
                continue;
            }
            if e.path().join("image.json").exists() {
                out.push(self.read_record(&e.path())?);
            }
        }
        out.sort_by(|a, b| b.loaded_at.cmp(&a.loaded_at).then(a.digest.cmp(&b.digest)));
        Ok(out)
    }

    /// Find an image by name (`hello`, `hello:latest`), digest (`sha256:...`) or a unique
    /// prefix of at least 12 hex digits.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        let all = self.list()?;
        let wanted = normalize_name(reference);
        if let Some(r) = all
            .iter()
            .find(|r| r.name.as_deref() == Some(wanted.as_str()))
        {
            return Ok(r.clone());
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&ImageRecord> = all
                .iter()
                .filter(|r| r.digest.trim_start_matches("sha256:").starts_with(hex))
                .collect();
            match matches.len() {
                1 => return Ok(matches[0].clone()),
                n if n > 1 => {
                    return Err(Error::Invalid {
                        field: "image".into(),
                        reason: format!(
                            "{reference:?} is ambiguous ({n} images match); give more digits"
                        ),
                    })
                }
                _ => {}
            }
        }
        Err(Error::Invalid {
            field: "image".into(),
            reason: format!(
                "no image {reference:?} is loaded here; `distill images` lists them, `distill load FILE.oci.tar` adds one"
            ),
        })
    }

    /// Remove an image.
    pub fn remove(&self, reference: &str) -> Result<ImageRecord> {
        let rec = self.resolve(reference)?;
        let _lock = self.lock()?;
        let dir = self.path(&rec);
        let trash = self.dir.join(format!(
            ".removing-{}-{}",
            std::process::id(),
            digest_hex(&rec)
        ));
        fs::rename(&dir, &trash).map_err(io_err(&dir, "rename away"))?;
        fs::remove_dir_all(&trash).map_err(io_err(&trash, "remove"))?;
        Ok(rec)
    }

    /// Remove every image loaded at least `age` ago.
    pub fn prune_older_than(&self, age: Duration) -> Result<Vec<ImageRecord>> {
        let cutoff = now_secs().saturating_sub(age.as_secs());
        let mut removed = Vec::new();
        for rec in self.list()? {
            if rec.loaded_at <= cutoff {
                removed.push(self.remove(&rec.digest)?);
            }
        }
        Ok(removed)
    }
}

fn digest_hex(rec: &ImageRecord) -> &str {
    rec.digest.trim_start_matches("sha256:")
}

/// Checks an image name for naming an image here (`commit`, docker's reference grammar
/// without a digest): `[HOST[:PORT]/]PATH[:TAG]`, PATH components of lowercase letters and
/// digits joined by `.`, `_`, `__` or `-`s, TAG up to 128 of `[A-Za-z0-9_.-]` not starting
/// with `.` or `-`. Returns it normalized (`:latest` added).
pub fn validate_name(name: &str) -> Result<String> {
    let bad = |why: &str| Error::Invalid {
        field: format!("image name {name:?}"),
        reason: format!(
            "{why}; use e.g. `myapp`, `myapp:1.0` or `registry.example:5000/team/myapp:1.0`"
        ),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("must be 1-255 characters"));
    }
    if name.contains('@') {
        return Err(bad("a digest cannot be a new image's name"));
    }
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(bad(&format!("tag {t:?} is not valid")));
        }
    }
    let parts: Vec<&str> = repo.split('/').collect();
    let host = parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
    for (i, p) in parts.iter().enumerate() {
        if i == 0 && host {
            let (h, port) = match p.split_once(':') {
                Some((h, port)) => (h, Some(port)),
                None => (*p, None),
            };
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                && port.is_none_or(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(bad(&format!("registry host {p:?} is not valid")));
            }
            continue;
        }
        if !path_component_ok(p) {
            return Err(bad(&format!(
                "path component {p:?} is not valid (lowercase letters and digits, joined by '.', '_', '__' or '-')"
            )));
        }
    }
    if parts.len() == 1 && repo.len() == 64 && repo.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("64 hex digits would read as an image digest"));
    }
    Ok(normalize_name(name))
}

fn path_component_ok(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `hello` -> `hello:latest`; names with a tag or digest are kept.
/// Refuses an image name from an archive that holds anything but printable ASCII: an OCI
/// reference has no use for escape sequences, newlines or bidi controls, which `load` and
/// `images` would otherwise print to the admin's terminal as they are. The error names the
/// first such character, escaped.
fn check_printable_name(name: &str) -> Result<()> {
    match name.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        None => Ok(()),
        Some((at, c)) => Err(Error::Invalid {
            field: format!("image name {}", name.escape_default()),
            reason: format!(
                "holds {} (U+{:04X}) at byte {at}; an image name is printable ASCII without spaces: rename the image where the archive was made",
                c.escape_default(),
                c as u32
            ),
        }),
    }
}

pub fn normalize_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

pub(crate) fn dir_size(p: &Path) -> io::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(p)? {
        let e = e?;
        let m = e.path().symlink_metadata()?;
        if m.is_dir() {
            total += dir_size(&e.path())?;
        } else if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in [
            "app",
            "app:1.0",
            "team/my-app_x__y.z:v1_2-3",
            "localhost/app",
            "registry.example:5000/team/app:latest",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate_name("app").unwrap(), "app:latest");
        for bad in [
            "",
            "App",
            "app:",
            "app:-x",
            "a@sha256:00",
            "-app",
            "app/",
            "a..b",
            "a b",
            "host:x/app",
            &"a".repeat(256),
            &"ab".repeat(32),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains("image name"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_image_is_found_by_its_root() {
        let t = tempfile::tempdir().unwrap();
        let images = Images::new(t.path());
        let hex = "ab".repeat(32);
        let rec = ImageRecord {
            name: Some("x:latest".into()),
            digest: format!("sha256:{hex}"),
            config_digest: format!("sha256:{}", "cd".repeat(32)),
            size: 0,
            created: None,
            loaded_at: 0,
            annotations: Default::default(),
        };
        fs::create_dir_all(images.rootfs(&rec)).unwrap();
        images.write_record(&rec).unwrap();
        let (reg, found) = Images::holding(&images.rootfs(&rec)).unwrap();
        assert_eq!(found, rec);
        assert_eq!(reg.dir(), fs::canonicalize(images.dir()).unwrap());
        // Through a symlink too.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(images.rootfs(&rec), &link).unwrap();
        assert_eq!(Images::holding(&link).unwrap().1, rec);
        // Not an image's root: its directory, another directory, a record naming another
        // image.
        assert!(Images::holding(&images.path(&rec)).is_none());
        assert!(Images::holding(t.path()).is_none());
        let other = images.dir().join("ef".repeat(32));
        fs::create_dir_all(other.join("rootfs")).unwrap();
        fs::copy(
            images.path(&rec).join("image.json"),
            other.join("image.json"),
        )
        .unwrap();
        assert!(Images::holding(&other.join("rootfs")).is_none());
    }

    #[test]
    fn names_default_to_latest() {
        assert_eq!(normalize_name("hello"), "hello:latest");
        assert_eq!(normalize_name("hello:1.0"), "hello:1.0");
        assert_eq!(
            normalize_name("localhost:5000/hello"),
            "localhost:5000/hello:latest"
        );
    }
}
