//! Pruning: from traced accesses, keep rules and the ELF closure to the minimal file set, and
//! materialising that set into a new directory.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::engine::Access;
use crate::TraceError;

/// Why a path is in the minimal image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A probe touched it through this system call.
    Traced {
        /// The probe's name.
        probe: String,
        /// The system call, e.g. `openat`.
        syscall: String,
    },
    /// It is a directory on the way to this kept path.
    Parent {
        /// The kept path (or the missing path whose lookup must fail the same way).
        of: PathBuf,
    },
    /// It is a symlink met while resolving this path.
    Symlink {
        /// The path being resolved.
        of: PathBuf,
    },
    /// It is what this symlink resolves to.
    SymlinkTarget {
        /// The symlink.
        of: PathBuf,
    },
    /// It is a `DT_NEEDED` library of this ELF object.
    ElfDependency {
        /// The object that needs it.
        of: PathBuf,
    },
    /// It is the `PT_INTERP` program interpreter of this ELF object.
    Interpreter {
        /// The object.
        of: PathBuf,
    },
    /// It matched this `keep` glob.
    Keep {
        /// The glob.
        rule: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Traced { probe, syscall } => write!(f, "traced by probe `{probe}` ({syscall})"),
            Reason::Parent { of } => write!(f, "parent directory of {}", of.display()),
            Reason::Symlink { of } => write!(f, "symlink on the way to {}", of.display()),
            Reason::SymlinkTarget { of } => write!(f, "target of symlink {}", of.display()),
            Reason::ElfDependency { of } => {
                write!(f, "ELF dependency (DT_NEEDED) of {}", of.display())
            }
            Reason::Interpreter { of } => {
                write!(f, "ELF interpreter (PT_INTERP) of {}", of.display())
            }
            Reason::Keep { rule } => write!(f, "keep rule `{rule}`"),
        }
    }
}

/// The paths of the minimal image (absolute, inside the root, free of symlinked components)
/// and why each is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MinimalSet {
    /// Every kept path with its reasons (at most one `Parent` reason per path).
    pub paths: BTreeMap<PathBuf, Vec<Reason>>,
}

impl MinimalSet {
    /// Why `path` is in the set (`None`: it is not).
    pub fn why(&self, path: &Path) -> Option<&[Reason]> {
        self.paths
            .get(&crate::engine::clean(path))
            .map(|v| v.as_slice())
    }
}

/// Resolves paths component by component inside a root, remembering the symlinks met.
pub(crate) struct Resolver<'a> {
    root: &'a Path,
    followed: u32,
    /// (symlink, what it resolved to)
    pub links: Vec<(PathBuf, Option<PathBuf>)>,
}

fn host(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(root: &'a Path) -> Self {
        Resolver {
            root,
            followed: 0,
            links: Vec::new(),
        }
    }

    /// Resolve `rel` from the directory `start`. `Ok(real path)`, or `Err(deepest existing
    /// directory)` when a component is missing, not a directory, or a symlink loop.
    pub(crate) fn walk(
        &mut self,
        start: PathBuf,
        rel: &Path,
        follow_last: bool,
    ) -> Result<PathBuf, PathBuf> {
        let comps: Vec<Component> = rel.components().collect();
        let n = comps.len();
        let mut cur = start;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == n;
            match c {
                Component::RootDir | Component::Prefix(_) => cur = PathBuf::from("/"),
                Component::CurDir => {}
                Component::ParentDir => {
                    cur.pop();
                }
                Component::Normal(name) => {
                    let cand = cur.join(name);
                    let Ok(md) = std::fs::symlink_metadata(host(self.root, &cand)) else {
                        return Err(cur);
                    };
                    if md.file_type().is_symlink() && (!last || follow_last) {
                        self.followed += 1;
                        if self.followed > 40 {
                            return Err(cur);
                        }
                        let Ok(target) = std::fs::read_link(host(self.root, &cand)) else {
                            return Err(cur);
                        };
                        let idx = self.links.len();
                        self.links.push((cand, None));
                        let t = self.walk(cur.clone(), &target, true)?;
                        self.links[idx].1 = Some(t.clone());
                        cur = t;
                    } else {
                        if !last && !md.is_dir() {
                            return Err(cur);
                        }
                        cur = cand;
                    }
                }
            }
        }
        Ok(cur)
    }
}

/// Resolve an absolute in-root path to its real in-root path, if it exists.
pub(crate) fn lookup_in_root(root: &Path, path: &Path, follow_last: bool) -> Option<PathBuf> {
    Resolver::new(root)
        .walk(PathBuf::from("/"), path, follow_last)
        .ok()
}

fn globset(field: &'static str, rules: &[String]) -> Result<GlobSet, TraceError> {
    let mut b = GlobSetBuilder::new();
    for r in rules {
        let g: Glob = GlobBuilder::new(r)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| TraceError::Glob {
                field,
                glob: r.clone(),
                reason: e.kind().to_string(),
            })?;
        b.add(g);
    }
    b.build().map_err(|e| TraceError::Glob {
        field,
        glob: rules.join(", "),
        reason: e.to_string(),
    })
}

struct SetBuilder<'a> {
    root: &'a Path,
    paths: BTreeMap<PathBuf, Vec<Reason>>,
}

impl SetBuilder<'_> {
    fn add(&mut self, p: PathBuf, r: Reason) {
        if p.as_os_str() == "/" {
            return;
        }
        let v = self.paths.entry(p).or_default();
        if matches!(r, Reason::Parent { .. })
            && v.iter().any(|x| matches!(x, Reason::Parent { .. }))
        {
            return;
        }
        if !v.contains(&r) {
            v.push(r);
        }
    }

    /// Resolve `path`, keep every symlink met and its target, and (if `reason` is given and
    /// the path exists) its real path with `reason`. A missing path keeps the deepest existing
    /// directory so that the lookup fails the same way. Returns the real path.
    fn add_resolved(&mut self, path: &Path, reason: Option<Reason>) -> Option<PathBuf> {
        let mut res = Resolver::new(self.root);
        let out = res.walk(PathBuf::from("/"), path, true);
        for (link, target) in std::mem::take(&mut res.links) {
            self.add(
                link.clone(),
                Reason::Symlink {
                    of: path.to_path_buf(),
                },
            );
            if let Some(t) = target {
                self.add(t, Reason::SymlinkTarget { of: link });
            }
        }
        match out {
            Ok(real) => {
                if let Some(r) = reason {
                    self.add(real.clone(), r);
                } else {
                    self.add(
                        real.clone(),
                        Reason::Parent {
                            of: path.to_path_buf(),
                        },
                    );
                }
                Some(real)
            }
            Err(deepest) => {
                self.add(
                    deepest,
                    Reason::Parent {
                        of: path.to_path_buf(),
                    },
                );
                None
            }
        }
    }
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b == b"\x7fELF"
}

/// Compute the minimal file set of an image.
///
/// `root` is the image's full root, unmodified (run the probes on a scratch copy or a
/// read-only root). `accesses` are the probes' traced accesses with the probe names. Kept:
/// every traced path that existed (at its real location); for a path that did not exist,
/// the deepest existing directory on its way, so the lookup fails the same way; every
/// parent directory; every symlink met while resolving a kept path, and its target; every
/// path matching a `keep` glob; the ELF closure (interpreter and needed libraries) of every
/// kept ELF file. Then every path matching an `exclude` glob is removed, with everything
/// below it. Globs match absolute paths; `*` does not cross `/`, `**` does.
pub fn minimal_set(
    root: &Path,
    accesses: &[(String, Access)],
    keep: &[String],
    exclude: &[String],
) -> Result<MinimalSet, TraceError> {
    let keep_set = globset("keep", keep)?;
    let exclude_set = globset("exclude", exclude)?;
    if !root.is_dir() {
        return Err(TraceError::Io {
            path: root.to_path_buf(),
            op: "read the image root",
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    let mut b = SetBuilder {
        root,
        paths: BTreeMap::new(),
    };

    // Traced paths, in a deterministic order.
    let mut sorted: Vec<(&String, &Access)> = accesses.iter().map(|(p, a)| (p, a)).collect();
    sorted.sort_by(|x, y| {
        (&x.1.path, x.0, x.1.syscall, x.1.existed).cmp(&(&y.1.path, y.0, y.1.syscall, y.1.existed))
    });
    for (probe, a) in sorted {
        let reason = Reason::Traced {
            probe: probe.clone(),
            syscall: a.syscall.to_string(),
        };
        if a.existed {
            b.add_resolved(&a.path, Some(reason));
        } else {
            // Keep the way to it (symlinks, existing directories), not the path itself.
            let mut res = Resolver::new(root);
            let out = res.walk(PathBuf::from("/"), &a.path, true);
            for (link, target) in std::mem::take(&mut res.links) {
                b.add(link.clone(), Reason::Symlink { of: a.path.clone() });
                if let Some(t) = target {
                    b.add(t, Reason::SymlinkTarget { of: link });
                }
            }
            let dir = match out {
                Ok(real) => real.parent().map(Path::to_path_buf),
                Err(deepest) => Some(deepest),
            };
            if let Some(d) = dir {
                b.add(d, Reason::Parent { of: a.path.clone() });
            }
        }
    }

    // Keep rules.
    if !keep.is_empty() {
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| TraceError::Io {
                path: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf()),
                op: "walk the image root for keep rules",
                source: e.into(),
            })?;
            let Ok(rel) = entry.path().strip_prefix(root) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let abs = Path::new("/").join(rel);
            for i in keep_set.matches(&abs) {
                b.add_resolved(
                    &abs,
                    Some(Reason::Keep {
                        rule: keep[i].clone(),
                    }),
                );
            }
        }
    }

    // ELF closure of every kept ELF file.
    let elves: Vec<PathBuf> = b
        .paths
        .keys()
        .filter(|p| {
            let h = host(root, p);
            std::fs::symlink_metadata(&h)
                .map(|m| m.is_file())
                .unwrap_or(false)
                && is_elf(&h)
        })
        .cloned()
        .collect();
    for (dep, reason) in crate::elf::elf_closure(root, &elves)? {
        b.add_resolved(&dep, Some(reason));
    }

    // Exclude rules.
    let mut paths = b.paths;
    if !exclude.is_empty() {
        let removed: BTreeSet<PathBuf> = paths
            .keys()
            .filter(|p| exclude_set.is_match(p))
            .cloned()
            .collect();
        paths.retain(|p, _| !p.ancestors().any(|a| removed.contains(a)));
    }

    // Parents.
    let mut b = SetBuilder { root, paths };
    let keys: Vec<PathBuf> = b.paths.keys().cloned().collect();
    for k in keys {
        for a in k.ancestors().skip(1) {
            if a.as_os_str() == "/" {
                break;
            }
            b.add(a.to_path_buf(), Reason::Parent { of: k.clone() });
        }
    }
    Ok(MinimalSet { paths: b.paths })
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> TraceError {
    let path = path.to_path_buf();
    move |source| TraceError::Io { path, op, source }
}

fn set_times(path: &Path, md: &std::fs::Metadata) -> Result<(), TraceError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| TraceError::NulByte(path.display().to_string()))?;
    let ts = [
        libc::timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    // SAFETY: valid C string and timespec array.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io(path, "set the times of")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Materialise `set` from `root` into `dest` (which must be missing or empty): directories,
/// regular files (hard links become copies), symlinks (same target), fifos and device nodes,
/// with their modes, owners (when permitted) and times.
pub fn copy_minimal(root: &Path, set: &MinimalSet, dest: &Path) -> Result<(), TraceError> {
    match std::fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(TraceError::DestNotEmpty(dest.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(io(dest, "create the destination"))?
        }
        Err(e) => return Err(io(dest, "read the destination")(e)),
    }
    let mut done: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    for p in set.paths.keys() {
        let src = host(root, p);
        let dst = host(dest, p);
        let md = std::fs::symlink_metadata(&src).map_err(io(&src, "read"))?;
        if let Some(parent) = dst.parent() {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(io(parent, "create"))?;
            }
        }
        let ft = md.file_type();
        if ft.is_dir() {
            match std::fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&dst, "create directory")(e)),
            }
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&dst, "copy a file to"))?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&src).map_err(io(&src, "read the symlink"))?;
            std::os::unix::fs::symlink(&t, &dst).map_err(io(&dst, "create the symlink"))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let c = CString::new(dst.as_os_str().as_bytes())
                .map_err(|_| TraceError::NulByte(dst.display().to_string()))?;
            // SAFETY: valid C string.
            if unsafe { libc::mknod(c.as_ptr(), md.mode(), md.rdev()) } != 0 {
                return Err(io(&dst, "create the device node or fifo")(
                    std::io::Error::last_os_error(),
                ));
            }
        } else {
            continue; // sockets are not image content
        }
        // Owners need privileges; without them the copy keeps the caller's.
        let _ = std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()));
        done.push((dst, md));
    }
    // Modes and times last, deepest first, so writing children does not disturb them.
    for (dst, md) in done.iter().rev() {
        if !md.file_type().is_symlink() {
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(io(dst, "set the mode of"))?;
        }
        set_times(dst, md)?;
    }
    let rmd = std::fs::metadata(root).map_err(io(root, "read"))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(rmd.mode() & 0o7777))
        .map_err(io(dest, "set the mode of"))?;
    set_times(dest, &rmd)?;
    Ok(())
}
