//! `distill commit`: a container's writable directories become a new layer on its image.
//!
//! The container's lock is held throughout (no `rm`, `update` or exit record meanwhile); a
//! running container is frozen with the cgroup freezer ([`crate::cgroup::Cgroup::freeze`])
//! only while its writable directories are read into the layer, and thawed on every path
//! out, error or not. The image itself is made by the registry ([`Images::commit`]).
//!
//! Determinism: the layer's mtimes and the image's `created` are `SOURCE_DATE_EPOCH` when
//! set, else the base image's `created` (so committing the same steps twice gives the same
//! digest); the history line is `distill commit: <the container's command>` (never its name or
//! a time). Files keep their numeric uid/gid (a service's data stays its user's).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use distill_oci::{ImageRecord, Images};

use crate::state::Status;
use crate::{container, Result, Runtime, RuntimeError};

/// How long `commit` waits for a container's processes to freeze.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Thaws the cgroup when dropped.
struct Frozen(crate::cgroup::Cgroup);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.0.thaw();
    }
}

impl Runtime {
    /// Commits container `name`'s writable directories as a new image `image_name` (with
    /// `labels` merged into the base's) in `images`, the registry its image was loaded into.
    /// Returns the new image's record and whether it is new.
    pub fn commit(
        &self,
        name: &str,
        images: &Images,
        image_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(ImageRecord, bool)> {
        let image_name = distill_oci::validate_name(image_name)?;
        let lock = self.state.lock(name)?;
        let s = self.state.inspect(name)?;
        if s.status == Status::Created {
            return Err(RuntimeError::Config(format!(
                "container {name:?} is still starting; commit it once it runs or has exited"
            )));
        }
        let base = Images::holding(&s.config.rootfs)
            .filter(|(reg, _)| fs::canonicalize(images.dir()).is_ok_and(|d| d == reg.dir()))
            .map(|(_, rec)| rec)
            .ok_or_else(|| {
            RuntimeError::Config(format!(
                "container {name:?} was not started from an image loaded in {} (its root is {}); commit needs that image",
                images.dir().display(),
                s.config.rootfs.display()
            ))
        })?;
        let dir = std::path::absolute(self.state.dir(name))
            .map_err(crate::sys("resolve the state directory"))?;
        let dirs = container::writable_dirs(&dir, &s.config);
        for (host, inside) in &dirs {
            if !host.is_dir() {
                return Err(RuntimeError::Config(format!(
                    "container {name:?} has no writable directory {} for {} (started by an older distill?); nothing to commit",
                    host.display(),
                    inside.display()
                )));
            }
        }
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v.trim().parse::<u64>().map_err(|_| {
                RuntimeError::Config(format!(
                    "SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970"
                ))
            })?,
            Err(_) => base
                .created
                .as_deref()
                .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        };
        let created_by = format!("distill commit: {}", s.config.argv.join(" "));
        let layer = {
            let _frozen = if s.status == Status::Running && s.pid_alive() {
                let cg = self.cgroup(&s.config);
                // A failure part-way leaves nothing frozen.
                cg.freeze(FREEZE_TIMEOUT).inspect_err(|_| {
                    let _ = cg.thaw();
                })?;
                Some(Frozen(cg))
            } else {
                None
            };
            images
                .write_commit_layer(&base, &dirs, epoch, &created_by)
                .map_err(|e| reserved_name(name, e))?
        };
        // A v1 container that started without the freezer controller has joined it now.
        if s.status == Status::Running {
            let mut now = self.state.read_raw(name)?;
            let paths: Vec<PathBuf> = self.cgroup(&s.config).existing().paths();
            if now.cgroup_paths != paths {
                now.cgroup_paths = paths;
                self.state.write(&now, &lock)?;
            }
        }
        drop(lock);
        Ok(images.commit(&base, layer, &image_name, labels)?)
    }
}

/// A whiteout name in container `name`'s writable directories is a bad input of the
/// container's (exit 2), named with it; other errors pass through.
pub(crate) fn reserved_name(name: &str, e: distill_oci::Error) -> RuntimeError {
    match e {
        distill_oci::Error::WhiteoutName(_) => {
            RuntimeError::Config(format!("container {name:?}: {e}"))
        }
        e => e.into(),
    }
}
