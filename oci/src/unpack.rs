//! Unpacking layer tars into a plain directory, safely: every path is resolved inside the
//! root (symlinks followed as the container would see them), nothing is written through a
//! symlink, and entries that could escape the root or create devices are refused.

use crate::error::{io_err, Error};
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why one entry could not be unpacked.
pub(crate) enum EntryError {
    /// The entry is unsafe or unsupported (reported with the entry's name and layer).
    Refused(String),
    /// A system call failed.
    Io(Error),
}

impl From<Error> for EntryError {
    fn from(e: Error) -> Self {
        EntryError::Io(e)
    }
}

type R<T> = std::result::Result<T, EntryError>;

fn refuse<T>(msg: impl Into<String>) -> R<T> {
    Err(EntryError::Refused(msg.into()))
}

/// Splits an entry name into components, refusing absolute paths and `..`.
fn components(raw: &[u8], what: &str) -> R<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        return refuse(format!(
            "{what} is an absolute path; layer paths must be relative to the root"
        ));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return refuse(format!(
                    "{what} has a '..' component, which could escape the root"
                ))
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn process_umask() -> u32 {
    // Read, not set: setting the umask would race with other threads creating files.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Sets both times of `p` to `secs` without following a final symlink.
pub(crate) fn set_mtime_nofollow(p: &Path, secs: u64) -> io::Result<()> {
    let t = filetime::FileTime::from_unix_time(secs.min(i64::MAX as u64) as i64, 0);
    filetime::set_symlink_file_times(p, t, t)
}

fn lchown(p: &Path, uid: u64, gid: u64) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid as u32), Some(gid as u32))
}

/// State of one unpack into one root directory, across layers.
pub(crate) struct Unpacker {
    root: PathBuf,
    is_root: bool,
    umask: u32,
    cache: HashMap<Vec<u8>, PathBuf>,
    this_layer: HashSet<PathBuf>,
    dirs: HashMap<PathBuf, (u32, u64)>,
    buf: Vec<u8>,
    /// Bytes of regular file content written.
    pub(crate) bytes: u64,
}

impl Unpacker {
    pub(crate) fn new(root: &Path) -> Unpacker {
        Unpacker {
            root: root.to_path_buf(),
            // SAFETY: geteuid has no preconditions.
            is_root: unsafe { libc::geteuid() } == 0,
            umask: process_umask(),
            cache: HashMap::new(),
            this_layer: HashSet::new(),
            dirs: HashMap::new(),
            buf: vec![0u8; 1 << 20],
            bytes: 0,
        }
    }

    pub(crate) fn start_layer(&mut self) {
        self.this_layer.clear();
    }

    /// Resolves a directory path inside the root, following symlinks as the container
    /// would (absolute targets are relative to the root). Missing directories are created
    /// when `create` is set. Refuses anything that leaves the root.
    fn resolve_dir(&mut self, comps: &[Vec<u8>], create: bool) -> R<PathBuf> {
        let key = comps.join(&b'/');
        if let Some(p) = self.cache.get(&key) {
            return Ok(p.clone());
        }
        let mut stack: Vec<Vec<u8>> = comps.iter().rev().cloned().collect();
        let mut cur = self.root.clone();
        let mut depth = 0usize;
        let mut hops = 0;
        while let Some(c) = stack.pop() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if depth == 0 {
                        return refuse(
                            "its path goes through a symlink that points outside the root",
                        );
                    }
                    cur.pop();
                    depth -= 1;
                    continue;
                }
                _ => {}
            }
            let next = cur.join(OsStr::from_bytes(&c));
            match fs::symlink_metadata(&next) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return refuse("its path has too many levels of symlinks");
                    }
                    let target = fs::read_link(&next).map_err(io_err(&next, "read link"))?;
                    let t = target.as_os_str().as_bytes();
                    if t.first() == Some(&b'/') {
                        cur = self.root.clone();
                        depth = 0;
                    }
                    for part in t.split(|b| *b == b'/').rev() {
                        stack.push(part.to_vec());
                    }
                    continue;
                }
                Ok(_) => {
                    return refuse(format!(
                        "its parent {} is not a directory",
                        next.strip_prefix(&self.root).unwrap_or(&next).display()
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&next)
                        .map_err(io_err(&next, "create directory"))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return refuse(format!(
                        "{} does not exist",
                        next.strip_prefix(&self.root).unwrap_or(&next).display()
                    ))
                }
                Err(e) => {
                    return Err(Error::Io {
                        path: next,
                        op: "lstat",
                        source: e,
                    }
                    .into())
                }
            }
            cur = next;
            depth += 1;
        }
        self.cache.insert(key, cur.clone());
        Ok(cur)
    }

    /// Removes whatever is at `p` (not following symlinks).
    fn remove_any(&mut self, p: &Path) -> R<()> {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(p).map_err(io_err(p, "remove directory"))?;
                self.dirs.retain(|k, _| !k.starts_with(p));
                self.cache.clear();
            }
            Ok(m) => {
                fs::remove_file(p).map_err(io_err(p, "remove"))?;
                if m.file_type().is_symlink() {
                    self.cache.clear();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: p.to_path_buf(),
                    op: "lstat",
                    source: e,
                }
                .into())
            }
        }
        Ok(())
    }

    fn own(&self, p: &Path, uid: u64, gid: u64) -> R<()> {
        if self.is_root && (uid != 0 || gid != 0) {
            lchown(p, uid, gid).map_err(io_err(p, "chown"))?;
        }
        Ok(())
    }

    /// Unpacks one entry.
    pub(crate) fn entry<T: Read>(&mut self, e: &mut tar::Entry<'_, T>) -> R<()> {
        let raw = e.path_bytes().into_owned();
        let comps = components(&raw, "the entry")?;
        let h = e.header();
        let et = h.entry_type();
        let bad_header = |what: &str, err: io::Error| {
            EntryError::Refused(format!("bad {what} field in header: {err}"))
        };
        let mode = h.mode().map_err(|x| bad_header("mode", x))? & 0o7777;
        let uid = h.uid().map_err(|x| bad_header("uid", x))?;
        let gid = h.gid().map_err(|x| bad_header("gid", x))?;
        let mtime = h.mtime().map_err(|x| bad_header("mtime", x))?;
        let Some((name, parent)) = comps.split_last() else {
            // The root directory itself: keep ours.
            return Ok(());
        };
        if et.is_pax_global_extensions() {
            return Ok(());
        }
        let dir = self.resolve_dir(parent, true)?;

        if let Some(target) = name.strip_prefix(b".wh.") {
            if name.as_slice() == b".wh..wh..opq" {
                self.opaque(&dir)?;
            } else if target.starts_with(b".wh.") {
                // Other aufs metadata (.wh..wh.plnk etc.): not part of the file system.
            } else {
                if target.is_empty() || target == b"." || target == b".." {
                    return refuse("whiteout names no file");
                }
                let victim = dir.join(OsStr::from_bytes(target));
                if !self.this_layer.contains(&victim) {
                    self.remove_any(&victim)?;
                }
            }
            return Ok(());
        }

        let path = dir.join(OsStr::from_bytes(name));
        if et.is_dir() {
            match fs::DirBuilder::new().mode(0o700 | mode).create(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    let m = fs::symlink_metadata(&path).map_err(io_err(&path, "lstat"))?;
                    if !m.is_dir() {
                        self.remove_any(&path)?;
                        fs::DirBuilder::new()
                            .mode(0o700 | mode)
                            .create(&path)
                            .map_err(io_err(&path, "create directory"))?;
                    }
                }
                Err(err) => {
                    return Err(Error::Io {
                        path,
                        op: "create directory",
                        source: err,
                    }
                    .into())
                }
            }
            self.own(&path, uid, gid)?;
            self.dirs.insert(path.clone(), (mode, mtime));
        } else if et.is_file() || et == tar::EntryType::Continuous {
            let mut f = match self.create_file(&path, mode) {
                Ok(f) => f,
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    self.remove_any(&path)?;
                    self.create_file(&path, mode)
                        .map_err(io_err(&path, "create"))?
                }
                Err(err) => {
                    return Err(Error::Io {
                        path,
                        op: "create",
                        source: err,
                    }
                    .into())
                }
            };
            loop {
                let mut filled = 0;
                while filled < self.buf.len() {
                    let n = e.read(&mut self.buf[filled..]).map_err(|x| {
                        EntryError::Refused(format!("cannot read its content: {x}"))
                    })?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    break;
                }
                f.write_all(&self.buf[..filled])
                    .map_err(io_err(&path, "write"))?;
                self.bytes += filled as u64;
                if filled < self.buf.len() {
                    break;
                }
            }
            if self.is_root && (uid != 0 || gid != 0) {
                std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32))
                    .map_err(io_err(&path, "chown"))?;
            }
            if mode & self.umask != 0 || mode & 0o7000 != 0 {
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(&path, "chmod"))?;
            }
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
                .map_err(io_err(&path, "set times"))?;
        } else if et.is_symlink() {
            let Some(target) = e.link_name_bytes() else {
                return refuse("symlink without a target");
            };
            let target = OsStr::from_bytes(&target).to_os_string();
            if let Err(err) = std::os::unix::fs::symlink(&target, &path) {
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(Error::Io {
                        path,
                        op: "create symlink",
                        source: err,
                    }
                    .into());
                }
                self.remove_any(&path)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(io_err(&path, "create symlink"))?;
            }
            // A symlink created at a fresh path cannot change any cached resolution (cached
            // paths consist of existing directories); replacing something went through
            // remove_any, which clears the cache when needed.
            self.own(&path, uid, gid)?;
            set_mtime_nofollow(&path, mtime).map_err(io_err(&path, "set times"))?;
        } else if et.is_hard_link() {
            let Some(target) = e.link_name_bytes() else {
                return refuse("hard link without a target");
            };
            let tcomps = components(&target, "the hard link target")?;
            let Some((tname, tparent)) = tcomps.split_last() else {
                return refuse("hard link to the root directory");
            };
            let tdir = self.resolve_dir(tparent, false)?;
            let tpath = tdir.join(OsStr::from_bytes(tname));
            match fs::symlink_metadata(&tpath) {
                Ok(m) if m.is_dir() => return refuse("hard link to a directory"),
                Ok(_) => {}
                Err(_) => {
                    return refuse(format!(
                        "hard link target {:?} does not exist in the image",
                        String::from_utf8_lossy(&target)
                    ))
                }
            }
            if tpath == path {
                return Ok(());
            }
            if let Err(err) = fs::hard_link(&tpath, &path) {
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(Error::Io {
                        path,
                        op: "create hard link",
                        source: err,
                    }
                    .into());
                }
                self.remove_any(&path)?;
                fs::hard_link(&tpath, &path).map_err(io_err(&path, "create hard link"))?;
            }
        } else if et.is_character_special() || et.is_block_special() {
            return refuse(
                "is a device node; images may not carry device nodes (the runtime provides /dev)",
            );
        } else if et.is_fifo() {
            self.remove_any(&path)?;
            let c = cpath(&path).map_err(io_err(&path, "mkfifo"))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) } != 0 {
                return Err(Error::Io {
                    path,
                    op: "mkfifo",
                    source: io::Error::last_os_error(),
                }
                .into());
            }
            self.own(&path, uid, gid)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(io_err(&path, "chmod"))?;
            set_mtime_nofollow(&path, mtime).map_err(io_err(&path, "set times"))?;
        } else {
            return refuse(format!(
                "has unsupported entry type {:?}",
                et.as_byte() as char
            ));
        }
        self.mark(path);
        Ok(())
    }

    /// Applies an opaque whiteout: removes everything under `dir` that the current layer
    /// did not write (recursively, so this layer's files in kept subdirectories stay and
    /// lower layers' files next to them go).
    fn opaque(&mut self, dir: &Path) -> R<()> {
        let rd = fs::read_dir(dir).map_err(io_err(dir, "read directory"))?;
        let mut children = Vec::new();
        for c in rd {
            let c = c.map_err(io_err(dir, "read directory"))?;
            let is_dir = c.file_type().map(|t| t.is_dir()).unwrap_or(false);
            children.push((c.path(), is_dir));
        }
        for (p, is_dir) in children {
            if !self.this_layer.contains(&p) {
                self.remove_any(&p)?;
            } else if is_dir {
                self.opaque(&p)?;
            }
        }
        Ok(())
    }

    /// Records `path` and its ancestors as written by the current layer, so that an opaque
    /// or plain whiteout later in the same layer does not remove them.
    fn mark(&mut self, path: PathBuf) {
        let mut p = path;
        while p != self.root && self.this_layer.insert(p.clone()) {
            if !p.pop() {
                break;
            }
        }
    }

    fn create_file(&self, p: &Path, mode: u32) -> io::Result<File> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(p)
    }

    /// Applies directory modes and mtimes (after all children are in place).
    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        for (p, (mode, mtime)) in &self.dirs {
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            fs::set_permissions(p, fs::Permissions::from_mode(*mode))
                .map_err(io_err(p, "chmod"))?;
            set_mtime_nofollow(p, *mtime).map_err(io_err(p, "set times"))?;
        }
        Ok(())
    }
}
