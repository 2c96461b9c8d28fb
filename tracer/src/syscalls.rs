//! The table of traced system calls: which arguments are paths, which are directory fds, and
//! which calls may create the path they name.

use std::sync::OnceLock;

/// How one path argument of a system call is located.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    /// A path string at this argument index, relative to the cwd when not absolute.
    Path(usize),
    /// A directory fd at `.0` and a path string at `.1` (the `*at` family).
    At(usize, usize),
    /// A file descriptor whose path is recorded (`fchdir`).
    Fd(usize),
}

/// Whether the call may create the path, which decides how `existed` is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Creates {
    /// Never creates: the return value says whether the path existed.
    No,
    /// Always creates (mkdir, symlink, ...), or the return value is ambiguous: existence is
    /// checked at syscall entry.
    Yes,
    /// Creates when the flags at this argument index contain `O_CREAT`.
    IfOCreat(usize),
    /// `openat2`: creates when `open_how.flags` (read through the pointer at this index)
    /// contains `O_CREAT`.
    IfOCreatHow(usize),
}

/// One path a system call names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathSpec {
    pub arg: Arg,
    pub creates: Creates,
}

/// One traced system call.
#[derive(Debug)]
pub(crate) struct SysDef {
    pub nr: i64,
    pub name: &'static str,
    pub paths: &'static [PathSpec],
    /// An empty path with a dirfd names the dirfd itself (`execveat(fd, "", AT_EMPTY_PATH)`).
    pub empty_is_fd: bool,
}

const fn p(i: usize) -> PathSpec {
    PathSpec {
        arg: Arg::Path(i),
        creates: Creates::No,
    }
}
const fn pc(i: usize) -> PathSpec {
    PathSpec {
        arg: Arg::Path(i),
        creates: Creates::Yes,
    }
}
const fn at(d: usize, i: usize) -> PathSpec {
    PathSpec {
        arg: Arg::At(d, i),
        creates: Creates::No,
    }
}
const fn atc(d: usize, i: usize) -> PathSpec {
    PathSpec {
        arg: Arg::At(d, i),
        creates: Creates::Yes,
    }
}

macro_rules! def {
    ($nr:expr, $name:literal, [$($spec:expr),*]) => {
        SysDef { nr: $nr as i64, name: $name, paths: { const P: &[PathSpec] = &[$($spec),*]; P }, empty_is_fd: false }
    };
}

fn build() -> Vec<SysDef> {
    use libc::*;
    #[allow(unused_mut)]
    let mut v = vec![
        def!(
            SYS_openat,
            "openat",
            [PathSpec {
                arg: Arg::At(0, 1),
                creates: Creates::IfOCreat(2)
            }]
        ),
        def!(
            SYS_openat2,
            "openat2",
            [PathSpec {
                arg: Arg::At(0, 1),
                creates: Creates::IfOCreatHow(2)
            }]
        ),
        def!(SYS_execve, "execve", [p(0)]),
        SysDef {
            nr: SYS_execveat,
            name: "execveat",
            paths: {
                const P: &[PathSpec] = &[at(0, 1)];
                P
            },
            empty_is_fd: true,
        },
        def!(SYS_newfstatat, "newfstatat", [at(0, 1)]),
        def!(SYS_statx, "statx", [at(0, 1)]),
        def!(SYS_faccessat, "faccessat", [at(0, 1)]),
        def!(SYS_faccessat2, "faccessat2", [at(0, 1)]),
        def!(SYS_readlinkat, "readlinkat", [at(0, 1)]),
        def!(SYS_chdir, "chdir", [p(0)]),
        def!(
            SYS_fchdir,
            "fchdir",
            [PathSpec {
                arg: Arg::Fd(0),
                creates: Creates::No
            }]
        ),
        def!(SYS_truncate, "truncate", [p(0)]),
        def!(SYS_mkdirat, "mkdirat", [atc(0, 1)]),
        def!(SYS_unlinkat, "unlinkat", [at(0, 1)]),
        def!(SYS_renameat2, "renameat2", [atc(0, 1), atc(2, 3)]),
        def!(SYS_linkat, "linkat", [atc(0, 1), atc(2, 3)]),
        def!(SYS_symlinkat, "symlinkat", [atc(1, 2)]),
        def!(SYS_fchmodat, "fchmodat", [at(0, 1)]),
        def!(SYS_fchownat, "fchownat", [at(0, 1)]),
        def!(SYS_utimensat, "utimensat", [at(0, 1)]),
        def!(SYS_statfs, "statfs", [p(0)]),
        def!(SYS_getxattr, "getxattr", [p(0)]),
        def!(SYS_lgetxattr, "lgetxattr", [p(0)]),
        def!(SYS_setxattr, "setxattr", [p(0)]),
        def!(SYS_lsetxattr, "lsetxattr", [p(0)]),
        def!(SYS_listxattr, "listxattr", [p(0)]),
        def!(SYS_llistxattr, "llistxattr", [p(0)]),
        def!(SYS_removexattr, "removexattr", [p(0)]),
        def!(SYS_lremovexattr, "lremovexattr", [p(0)]),
        // The fd of inotify_add_watch is the inotify instance; the path is cwd-relative.
        def!(SYS_inotify_add_watch, "inotify_add_watch", [p(1)]),
        def!(SYS_mknodat, "mknodat", [atc(0, 1)]),
        def!(SYS_chroot, "chroot", [p(0)]),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        def!(
            SYS_open,
            "open",
            [PathSpec {
                arg: Arg::Path(0),
                creates: Creates::IfOCreat(1)
            }]
        ),
        def!(SYS_creat, "creat", [pc(0)]),
        def!(SYS_stat, "stat", [p(0)]),
        def!(SYS_lstat, "lstat", [p(0)]),
        def!(SYS_access, "access", [p(0)]),
        def!(SYS_readlink, "readlink", [p(0)]),
        def!(SYS_mkdir, "mkdir", [pc(0)]),
        def!(SYS_rmdir, "rmdir", [p(0)]),
        def!(SYS_unlink, "unlink", [p(0)]),
        def!(SYS_rename, "rename", [pc(0), pc(1)]),
        def!(SYS_renameat, "renameat", [atc(0, 1), atc(2, 3)]),
        def!(SYS_link, "link", [pc(0), pc(1)]),
        def!(SYS_symlink, "symlink", [pc(1)]),
        def!(SYS_chmod, "chmod", [p(0)]),
        def!(SYS_chown, "chown", [p(0)]),
        def!(SYS_lchown, "lchown", [p(0)]),
        def!(SYS_utime, "utime", [p(0)]),
        def!(SYS_utimes, "utimes", [p(0)]),
        def!(SYS_futimesat, "futimesat", [at(0, 1)]),
        // uselib is ENOSYS on most kernels; judge existence at entry.
        def!(SYS_uselib, "uselib", [pc(0)]),
        def!(SYS_mknod, "mknod", [pc(0)]),
        // fchmodat2 (Linux 6.6) is not in every libc table yet.
        def!(452, "fchmodat2", [at(0, 1)]),
    ]);
    #[cfg(not(target_arch = "x86_64"))]
    v.extend([def!(SYS_renameat, "renameat", [atc(0, 1), atc(2, 3)])]);
    v
}

/// All traced system calls of this architecture.
pub(crate) fn table() -> &'static [SysDef] {
    static TABLE: OnceLock<Vec<SysDef>> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// Look a syscall number up.
pub(crate) fn lookup(nr: i64) -> Option<&'static SysDef> {
    static INDEX: OnceLock<Vec<Option<u16>>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let t = table();
        let max = t.iter().map(|d| d.nr).max().unwrap_or(0) as usize;
        let mut idx = vec![None; max + 1];
        for (i, d) in t.iter().enumerate() {
            idx[d.nr as usize] = Some(i as u16);
        }
        idx
    });
    let i = usize::try_from(nr).ok()?;
    index
        .get(i)
        .copied()
        .flatten()
        .map(|i| &table()[i as usize])
}

/// The names of all traced system calls (for `strace -e trace=...` comparisons and docs).
pub fn traced_syscalls() -> Vec<&'static str> {
    let mut v: Vec<_> = table().iter().map(|d| d.name).collect();
    v.sort_unstable();
    v
}
