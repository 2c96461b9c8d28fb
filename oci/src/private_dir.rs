//! Directories private to the user running distill: the root (`--root`: store, cache, every
//! loaded and committed image unpacked) and the state root (`--state`: every container's
//! writable files).
//!
//! Both hold files that containers made as root, set-id bits and all (an image's
//! setuid-root program, a container's `chmod 4755` committed into an image): a local user
//! who can reach them can run such a program on the host and be root (the class of
//! CVE-2021-41091). So each is mode 0700, not 0711: with 0711 every directory below would
//! have to keep others out on its own, and the modes of an image's directories (its
//! `rootfs` included) are the image's to choose; 0700 at the top closes every path below
//! at once. Nothing but root needs to get in: containers reach their image root and
//! writable directories through bind mounts that root makes (a mount's source is not looked
//! up again through its host path once mounted), and the log daemon and CRIU run as root.
//!
//! [`ensure_private_dir`] creates the directory (0700, missing parents too) or checks the
//! one there: owned by someone else, or writable by group or others (who could have
//! planted or swapped anything in it), is refused with what to do; one that is only
//! readable or searchable by others, owned by the caller (a 0755 root that an older
//! distill made), is made 0700 at once, since nobody but the owner could have changed it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Creates `path` (mode 0700, with missing parents) or checks it as the module docs say.
/// `what` names it in errors (`--root`, `--state`). Returns the old mode when it was
/// tightened to 0700.
pub fn ensure_private_dir(path: &Path, what: &str) -> io::Result<Option<u32>> {
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        return Err(io::Error::new(
            e.kind(),
            format!("cannot create the {what} directory {}: {e}", path.display()),
        ));
    }
    check_private_dir(path, what)
}

/// [`ensure_private_dir`] without creating anything: a missing `path` is fine (whoever
/// makes it later makes it 0700).
pub fn check_private_dir(path: &Path, what: &str) -> io::Result<Option<u32>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{what} {}: {e}", path.display()),
            ))
        }
    };
    let p = path.display();
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{what} {p} is not a directory; remove it or choose another {what}"
        )));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} {p} is owned by uid {}, not by uid {me} who runs distill: its owner could change what distill runs as root; if it is yours to trust, `chown {me} {p} && chmod 700 {p}`, or choose another {what}",
                meta.uid()
            ),
        ));
    }
    if mode & 0o022 != 0 {
        let by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} {p} is writable by {by} (mode {mode:04o}), who could have planted files in it: check what it holds, then `chmod 700 {p}`"
            ),
        ));
    }
    if mode != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot make {what} {p} private (`chmod 700 {p}`): {e}"),
            )
        })?;
        return Ok(Some(mode));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn created_private_checked_and_tightened() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("a/b");
        assert_eq!(ensure_private_dir(&new, "--root").unwrap(), None);
        assert_eq!(mode(&new), 0o700);
        fs::set_permissions(&new, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(ensure_private_dir(&new, "--root").unwrap(), Some(0o755));
        assert_eq!(mode(&new), 0o700);
        for bad in [0o777, 0o770, 0o1777, 0o702] {
            fs::set_permissions(&new, fs::Permissions::from_mode(bad)).unwrap();
            let e = ensure_private_dir(&new, "--state").unwrap_err().to_string();
            assert!(
                e.contains(&new.display().to_string()) && e.contains("chmod 700"),
                "{e}"
            );
            assert_eq!(mode(&new), bad, "left as it was");
        }
        let file = t.path().join("f");
        fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file, "--root").is_err());
    }
}
