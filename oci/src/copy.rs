//! Reproducing a directory tree elsewhere with its metadata: the root of a committed image
//! (hard links to its base's files) and a container's writable directories (copies of the
//! image's content) are made by the same walk.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// How [`copy_tree`] reproduces regular files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCopy {
    /// A new file with the same content (the copy can change without touching the source).
    Content,
    /// A hard link to the source file (no content copied; only ever for trees nobody
    /// writes to in place).
    HardLink,
}

/// Reproduces the directory `src` at `dst` (which must not exist): directories, symlinks
/// (as links, never followed) and fifos are recreated, regular files copied or linked as
/// `files` says, each with its mode, numeric owner and mtime (for a hard link these are the
/// source's own). Sockets and device nodes are left out. `skip` lists paths relative to
/// `src` whose subtrees are left out.
pub fn copy_tree(src: &Path, dst: &Path, files: FileCopy, skip: &[PathBuf]) -> Result<()> {
    copy_dir(src, dst, Path::new(""), files, skip)
}

fn copy_dir(src: &Path, dst: &Path, rel: &Path, files: FileCopy, skip: &[PathBuf]) -> Result<()> {
    let m = fs::symlink_metadata(src).map_err(io_err(src, "lstat"))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dst)
        .map_err(io_err(dst, "create directory"))?;
    for e in fs::read_dir(src).map_err(io_err(src, "read directory"))? {
        let e = e.map_err(io_err(src, "read directory"))?;
        let name = e.file_name();
        let child_rel = rel.join(&name);
        if skip.contains(&child_rel) {
            continue;
        }
        let (s, d) = (e.path(), dst.join(&name));
        let cm = fs::symlink_metadata(&s).map_err(io_err(&s, "lstat"))?;
        let ft = cm.file_type();
        if ft.is_dir() {
            copy_dir(&s, &d, &child_rel, files, skip)?;
            continue;
        }
        if ft.is_file() && files == FileCopy::HardLink {
            fs::hard_link(&s, &d).map_err(io_err(&d, "hard link"))?;
            continue;
        }
        if ft.is_file() {
            fs::copy(&s, &d).map_err(io_err(&d, "copy"))?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&s).map_err(io_err(&s, "read link"))?;
            std::os::unix::fs::symlink(t, &d).map_err(io_err(&d, "create symlink"))?;
        } else if ft.is_fifo() {
            let c = std::ffi::CString::new(d.as_os_str().as_bytes())
                .map_err(|_| io_err(&d, "mkfifo")(io::ErrorKind::InvalidInput.into()))?;
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(io_err(&d, "mkfifo")(io::Error::last_os_error()));
            }
        } else {
            continue;
        }
        copy_meta(&d, &cm)?;
    }
    copy_meta(dst, &m)
}

/// Owner, mode (not for symlinks) and mtime of a reproduced entry, from `m`.
fn copy_meta(p: &Path, m: &fs::Metadata) -> Result<()> {
    if m.uid() != 0 || m.gid() != 0 {
        std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid())).map_err(io_err(p, "chown"))?;
    }
    if !m.file_type().is_symlink() {
        fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err(p, "chmod"))?;
    }
    let t = filetime::FileTime::from_last_modification_time(m);
    filetime::set_symlink_file_times(p, t, t).map_err(io_err(p, "set times"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_or_linked_with_its_metadata_and_skips() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("a/skip")).unwrap();
        fs::write(src.join("a/f"), "f").unwrap();
        fs::write(src.join("a/skip/g"), "g").unwrap();
        fs::set_permissions(src.join("a/f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("/nowhere", src.join("l")).unwrap();
        std::os::unix::fs::lchown(src.join("a"), Some(7), Some(8)).unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000, 5);
        filetime::set_file_mtime(src.join("a/f"), old).unwrap();
        for (how, dst) in [(FileCopy::Content, "c"), (FileCopy::HardLink, "h")] {
            let dst = t.path().join(dst);
            copy_tree(&src, &dst, how, &[PathBuf::from("a/skip")]).unwrap();
            let f = fs::metadata(dst.join("a/f")).unwrap();
            let orig = fs::metadata(src.join("a/f")).unwrap();
            assert_eq!(f.ino() == orig.ino(), how == FileCopy::HardLink);
            assert_eq!(f.mode() & 0o7777, 0o640);
            assert_eq!(filetime::FileTime::from_last_modification_time(&f), old);
            let a = fs::metadata(dst.join("a")).unwrap();
            assert_eq!((a.uid(), a.gid()), (7, 8));
            assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("/nowhere"));
            assert!(!dst.join("a/skip").exists());
        }
        // The destination must be new.
        let e = copy_tree(&src, &t.path().join("c"), FileCopy::Content, &[]).unwrap_err();
        assert!(e.to_string().contains("create directory"), "{e}");
    }
}
