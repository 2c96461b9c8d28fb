//! Tree hashing, normalization and removal.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Magic prefix of the canonical serialization; bump the version if the format changes.
pub const TREE_MAGIC: &[u8; 16] = b"distill-tree-v1\0";

const BUF_SIZE: usize = 256 * 1024;

/// The result of hashing a tree: its digest and how much it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSummary {
    /// `sha256:<64 hex>` over the canonical serialization (see [`hash_tree`]).
    pub hash: String,
    /// Total bytes of regular file contents plus symlink targets.
    pub size: u64,
    /// Number of regular files and symlinks (directories are not counted).
    pub files: u64,
}

fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn unsupported(path: &Path, ft: &fs::FileType) -> io::Error {
    let kind = if ft.is_socket() {
        "a socket"
    } else if ft.is_fifo() {
        "a fifo"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "of an unknown file type"
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {kind}; store outputs may hold only directories, regular files and symlinks, so remove it in the build",
            path.display()
        ),
    )
}

fn is_exec(mode: u32) -> bool {
    mode & 0o111 != 0
}

/// Hashes the tree at `path` (not following symlinks) and returns `sha256:<hex>`.
///
/// The digest covers only names, types, the exec bit, file contents and symlink targets;
/// never times, owners, other permission bits or the order in which the file system lists
/// directory entries. The exact bytes fed to sha256 are:
///
/// ```text
/// tree    := "distill-tree-v1\0" node          (16-byte magic, then the root node)
/// node    := dir | file | symlink
/// dir     := "d" u64le(n) entry{n}              entries sorted by the bytes of their name
/// entry   := u64le(len(name)) name node
/// file    := "f" exec u64le(len(contents)) contents
/// exec    := 0x01 if any of the mode bits 0o111 is set, else 0x00
/// symlink := "l" u64le(len(target)) target      target bytes as stored, not resolved
/// ```
///
/// `u64le` is an unsigned 64-bit little-endian integer. The root's own name is not part of
/// the hash. Sockets, fifos and devices are an error naming the path. A file that changes
/// length while it is read is an error too. Hard links are hashed as separate files.
pub fn hash_tree(path: &Path) -> io::Result<String> {
    Ok(hash_tree_with_size(path)?.hash)
}

/// Like [`hash_tree`], also returning the total size and number of files.
pub fn hash_tree_with_size(path: &Path) -> io::Result<TreeSummary> {
    let mut h = Hasher {
        sha: Sha256::new(),
        buf: vec![0u8; BUF_SIZE],
        size: 0,
        files: 0,
    };
    h.sha.update(TREE_MAGIC);
    let meta = fs::symlink_metadata(path).map_err(|e| ctx(path, "cannot stat", e))?;
    h.node(path, &meta)?;
    Ok(TreeSummary {
        hash: format!("sha256:{}", hex::encode(h.sha.finalize())),
        size: h.size,
        files: h.files,
    })
}

struct Hasher {
    sha: Sha256,
    buf: Vec<u8>,
    size: u64,
    files: u64,
}

impl Hasher {
    fn u64(&mut self, v: u64) {
        self.sha.update(v.to_le_bytes());
    }

    fn node(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_dir() {
            let entries = sorted_entries(path)?;
            self.sha.update(b"d");
            self.u64(entries.len() as u64);
            for name in entries {
                let child = path.join(&name);
                let cmeta =
                    fs::symlink_metadata(&child).map_err(|e| ctx(&child, "cannot stat", e))?;
                let nb = name.as_bytes();
                self.u64(nb.len() as u64);
                self.sha.update(nb);
                self.node(&child, &cmeta)?;
            }
            Ok(())
        } else if ft.is_file() {
            self.file(path, meta)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| ctx(path, "cannot read symlink", e))?;
            let tb = target.as_os_str().as_bytes();
            self.sha.update(b"l");
            self.u64(tb.len() as u64);
            self.sha.update(tb);
            self.size += tb.len() as u64;
            self.files += 1;
            Ok(())
        } else {
            Err(unsupported(path, &ft))
        }
    }

    fn file(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let len = meta.len();
        self.sha.update(b"f");
        self.sha.update([u8::from(is_exec(meta.mode()))]);
        self.u64(len);
        let mut f = File::open(path).map_err(|e| ctx(path, "cannot open", e))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} shrank while it was hashed; nothing may write to it during hashing",
                            path.display()
                        ),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx(path, "cannot read", e)),
            };
            self.sha.update(&self.buf[..n]);
            left -= n as u64;
        }
        let mut extra = [0u8; 1];
        loop {
            match f.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} grew while it was hashed; nothing may write to it during hashing",
                            path.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx(path, "cannot read", e)),
            }
        }
        self.size += len;
        self.files += 1;
        Ok(())
    }
}

/// Names in `dir`, sorted by their bytes.
fn sorted_entries(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| ctx(dir, "cannot list", e))? {
        names.push(e.map_err(|e| ctx(dir, "cannot list", e))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Sets both times of `path` to `epoch` seconds without following a final symlink.
fn set_times_nofollow(path: &Path, epoch: i64) -> io::Result<()> {
    let t = filetime::FileTime::from_unix_time(epoch, 0);
    filetime::set_symlink_file_times(path, t, t).map_err(|e| ctx(path, "cannot set mtime of", e))
}

fn chown_root(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.uid() == 0 && meta.gid() == 0 {
        return Ok(());
    }
    match std::os::unix::fs::lchown(path, Some(0), Some(0)) {
        Ok(()) => Ok(()),
        // Without root, ownership cannot be changed. Owners are not part of the tree hash
        // and layer tars write 0:0 anyway, so an unprivileged store keeps the caller's owner.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !running_as_root() => Ok(()),
        Err(e) => Err(ctx(path, "cannot chown to 0:0", e)),
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Normalizes the tree at `path` in place so that only what [`hash_tree`] covers remains:
///
/// * owner and group 0:0 on everything (`lchown`, so symlinks too; skipped with `EPERM`
///   when not running as root, since owners are not part of the hash);
/// * regular files mode 0644, or 0755 if any exec bit was set; directories 0755; this
///   strips setuid, setgid and sticky bits;
/// * atime and mtime = `epoch` on everything, symlinks included (`utimensat` with
///   `AT_SYMLINK_NOFOLLOW`), directories last so nothing disturbs them afterwards.
///
/// Sockets, fifos and devices are refused with an error naming the path.
pub fn normalize_tree(path: &Path, epoch: i64) -> io::Result<()> {
    let meta = fs::symlink_metadata(path).map_err(|e| ctx(path, "cannot stat", e))?;
    normalize_node(path, &meta, epoch)
}

fn normalize_node(path: &Path, meta: &fs::Metadata, epoch: i64) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        chown_root(path, meta)?;
        // Set the mode first so an unreadable directory can still be walked.
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .map_err(|e| ctx(path, "cannot chmod", e))?;
        for name in sorted_entries(path)? {
            let child = path.join(name);
            let cmeta = fs::symlink_metadata(&child).map_err(|e| ctx(&child, "cannot stat", e))?;
            normalize_node(&child, &cmeta, epoch)?;
        }
        set_times_nofollow(path, epoch)
    } else if ft.is_file() {
        chown_root(path, meta)?;
        let mode = if is_exec(meta.mode()) { 0o755 } else { 0o644 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| ctx(path, "cannot chmod", e))?;
        set_times_nofollow(path, epoch)
    } else if ft.is_symlink() {
        chown_root(path, meta)?;
        set_times_nofollow(path, epoch)
    } else {
        Err(unsupported(path, &ft))
    }
}

/// Removes `path` and everything below it, also when directories are read-only, and returns
/// the number of bytes of regular files and symlink targets removed. A missing path is not
/// an error (returns 0).
pub fn remove_tree(path: &Path) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ctx(path, "cannot stat", e)),
    };
    if meta.is_dir() {
        if meta.mode() & 0o700 != 0o700 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| ctx(path, "cannot make writable", e))?;
        }
        let mut bytes = 0;
        let mut names = Vec::new();
        for e in fs::read_dir(path).map_err(|e| ctx(path, "cannot list", e))? {
            names.push(e.map_err(|e| ctx(path, "cannot list", e))?.file_name());
        }
        for name in names {
            bytes += remove_tree(&path.join(name))?;
        }
        match fs::remove_dir(path) {
            Ok(()) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(bytes),
            Err(e) => Err(ctx(path, "cannot remove directory", e)),
        }
    } else {
        match fs::remove_file(path) {
            Ok(()) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ctx(path, "cannot remove", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, data: &[u8], mode: u32) {
        fs::write(p, data).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Builds the same tree, creating entries in the given order.
    fn build(root: &Path, reverse: bool) {
        fs::create_dir_all(root).unwrap();
        let mut steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| write(&root.join("b.txt"), b"bee", 0o644)),
            Box::new(|| {
                fs::create_dir(root.join("dir")).unwrap();
                write(&root.join("dir/tool"), b"#!/bin/sh\n", 0o755);
            }),
            Box::new(|| symlink("dir/tool", root.join("link")).unwrap()),
            Box::new(|| write(&root.join("a.txt"), b"ay", 0o600)),
            Box::new(|| fs::create_dir(root.join("empty")).unwrap()),
        ];
        if reverse {
            steps.reverse();
        }
        for s in steps {
            s();
        }
    }

    #[test]
    fn hash_ignores_times_owners_order_and_mode_bits_other_than_exec() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        build(&a, false);
        build(&b, true);
        // Different non-exec mode bits, owners and times on b.
        fs::set_permissions(b.join("a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(b.join("dir/tool"), fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::lchown(b.join("b.txt"), Some(1234), Some(4321)).unwrap();
        std::os::unix::fs::lchown(b.join("link"), Some(7), Some(7)).unwrap();
        set_times_nofollow(&b.join("dir"), 5).unwrap();
        set_times_nofollow(&b.join("link"), 99).unwrap();
        let ha = hash_tree_with_size(&a).unwrap();
        let hb = hash_tree_with_size(&b).unwrap();
        assert_eq!(ha, hb);
        assert!(ha.hash.starts_with("sha256:") && ha.hash.len() == 7 + 64);
        // a.txt 2 + b.txt 3 + tool 10 + link target 8
        assert_eq!(ha.size, 2 + 3 + 10 + 8);
        assert_eq!(ha.files, 4);
        // The root's own name does not matter either.
        let c = t.path().join("other-name");
        fs::rename(&b, &c).unwrap();
        assert_eq!(hash_tree(&c).unwrap(), ha.hash);
    }

    #[test]
    fn hash_changes_with_content_exec_target_names_and_type() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        build(&base, false);
        let h0 = hash_tree(&base).unwrap();
        let mut seen = vec![h0.clone()];
        let mut check = |label: &str, f: &dyn Fn(&Path)| {
            let d = t.path().join(label);
            build(&d, false);
            f(&d);
            let h = hash_tree(&d).unwrap();
            assert!(!seen.contains(&h), "{label} did not change the hash");
            seen.push(h);
        };
        check("content", &|d| write(&d.join("b.txt"), b"bef", 0o644));
        check("length", &|d| write(&d.join("b.txt"), b"beee", 0o644));
        check("exec", &|d| {
            fs::set_permissions(d.join("b.txt"), fs::Permissions::from_mode(0o744)).unwrap()
        });
        check("target", &|d| {
            fs::remove_file(d.join("link")).unwrap();
            symlink("dir/tool2", d.join("link")).unwrap();
        });
        check("name", &|d| {
            fs::rename(d.join("a.txt"), d.join("c.txt")).unwrap()
        });
        check("nested-name", &|d| {
            fs::rename(d.join("dir"), d.join("dir2")).unwrap()
        });
        check("empty-dir-removed", &|d| {
            fs::remove_dir(d.join("empty")).unwrap()
        });
        check("type", &|d| {
            fs::remove_dir(d.join("empty")).unwrap();
            write(&d.join("empty"), b"", 0o644);
        });
        check("move-between-dirs", &|d| {
            fs::rename(d.join("a.txt"), d.join("dir/a.txt")).unwrap()
        });
        // Unchanged tree, fresh copy: same hash as base.
        let again = t.path().join("again");
        build(&again, false);
        assert_eq!(hash_tree(&again).unwrap(), h0);
    }

    #[test]
    fn hash_of_known_tree_matches_documented_format() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        fs::create_dir(&r).unwrap();
        write(&r.join("x"), b"hi", 0o755);
        symlink("x", r.join("y")).unwrap();
        let mut expect = Vec::new();
        expect.extend_from_slice(TREE_MAGIC);
        expect.push(b'd');
        expect.extend_from_slice(&2u64.to_le_bytes());
        expect.extend_from_slice(&1u64.to_le_bytes());
        expect.push(b'x');
        expect.push(b'f');
        expect.push(1);
        expect.extend_from_slice(&2u64.to_le_bytes());
        expect.extend_from_slice(b"hi");
        expect.extend_from_slice(&1u64.to_le_bytes());
        expect.push(b'y');
        expect.push(b'l');
        expect.extend_from_slice(&1u64.to_le_bytes());
        expect.push(b'x');
        let want = format!("sha256:{}", hex::encode(Sha256::digest(&expect)));
        assert_eq!(hash_tree(&r).unwrap(), want);
    }

    #[test]
    fn hash_streams_large_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        fs::create_dir(&r).unwrap();
        let data: Vec<u8> = (0..3 * BUF_SIZE + 17).map(|i| (i % 251) as u8).collect();
        write(&r.join("big"), &data, 0o644);
        let s = hash_tree_with_size(&r).unwrap();
        assert_eq!(s.size, data.len() as u64);
        let mut expect = Vec::new();
        expect.extend_from_slice(TREE_MAGIC);
        expect.push(b'd');
        expect.extend_from_slice(&1u64.to_le_bytes());
        expect.extend_from_slice(&3u64.to_le_bytes());
        expect.extend_from_slice(b"big");
        expect.push(b'f');
        expect.push(0);
        expect.extend_from_slice(&(data.len() as u64).to_le_bytes());
        expect.extend_from_slice(&data);
        assert_eq!(
            s.hash,
            format!("sha256:{}", hex::encode(Sha256::digest(&expect)))
        );
    }

    #[test]
    fn special_files_are_refused_with_their_path() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        fs::create_dir_all(r.join("sub")).unwrap();
        let fifo = r.join("sub/pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = hash_tree(&r).unwrap_err().to_string();
        assert!(e.contains("sub/pipe") && e.contains("fifo"), "{e}");
        let e = normalize_tree(&r, 0).unwrap_err().to_string();
        assert!(e.contains("sub/pipe") && e.contains("fifo"), "{e}");
        fs::remove_file(&fifo).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let e = normalize_tree(&r, 0).unwrap_err().to_string();
        assert!(e.contains("sock") && e.contains("socket"), "{e}");
    }

    #[test]
    fn normalize_sets_times_owner_and_modes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        build(&r, false);
        write(&r.join("suid"), b"s", 0o4755);
        write(&r.join("sgid"), b"g", 0o2640);
        fs::create_dir(r.join("sticky")).unwrap();
        fs::set_permissions(r.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir(r.join("locked")).unwrap();
        write(&r.join("locked/inner"), b"i", 0o600);
        fs::set_permissions(r.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        std::os::unix::fs::lchown(r.join("b.txt"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::lchown(r.join("link"), Some(1000), Some(1000)).unwrap();
        let before = hash_tree(&r).unwrap();

        normalize_tree(&r, 1_700_000_000).unwrap();
        assert_eq!(hash_tree(&r).unwrap(), before, "normalizing keeps the hash");

        let expect = [
            ("", 0o755),
            ("a.txt", 0o644),
            ("b.txt", 0o644),
            ("dir", 0o755),
            ("dir/tool", 0o755),
            ("empty", 0o755),
            ("suid", 0o755),
            ("sgid", 0o644),
            ("sticky", 0o755),
            ("locked", 0o755),
            ("locked/inner", 0o644),
        ];
        for (rel, mode) in expect {
            let p = if rel.is_empty() {
                r.clone()
            } else {
                r.join(rel)
            };
            let m = fs::symlink_metadata(&p).unwrap();
            assert_eq!(m.mode() & 0o7777, mode, "{rel}");
            assert_eq!(m.mtime(), 1_700_000_000, "{rel}");
            assert_eq!((m.uid(), m.gid()), (0, 0), "{rel}");
        }
        let l = fs::symlink_metadata(r.join("link")).unwrap();
        assert!(l.file_type().is_symlink());
        assert_eq!(l.mtime(), 1_700_000_000);
        assert_eq!((l.uid(), l.gid()), (0, 0));
        // The symlink's target was not touched through the link.
        assert_eq!(
            fs::read_link(r.join("link")).unwrap(),
            Path::new("dir/tool")
        );
    }

    #[test]
    fn remove_tree_handles_read_only_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        build(&r, false);
        fs::set_permissions(r.join("dir"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(&r, fs::Permissions::from_mode(0o500)).unwrap();
        let bytes = remove_tree(&r).unwrap();
        assert_eq!(bytes, 2 + 3 + 10 + 8);
        assert!(!r.exists());
        assert_eq!(remove_tree(&r).unwrap(), 0);
    }
}
