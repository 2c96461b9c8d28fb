//! distill-sandbox: the one place in distill that creates an isolated process.
//!
//! A [`Spec`] describes the process (argv, complete environment, cwd, uid/gid, capabilities,
//! rlimits, stdio) and its world (new namespaces, a root assembled from a tmpfs or an existing
//! directory plus ordered mounts, a minimal `/dev`, `/proc` with runc's masked paths, `/sys`,
//! hostname, loopback) and, optionally, a seccomp filter ([`SeccompFilter`]). [`spawn`] creates
//! it with a single `clone(2)` carrying the `CLONE_NEW*` flags, so the process is PID 1 of its
//! new pid namespace; [`spawn_in`] starts a process inside the namespaces and root of a running
//! one (`exec` into a container), not dumpable until it execs (CVE-2019-5736). The builder, the
//! tracer and the runtime all isolate processes through this crate.
//!
//! All memory the child needs is prepared before `clone`; the child only makes system calls.
//! Every failure in the child (which step, which errno) travels back over a close-on-exec pipe,
//! so `spawn` returns a precise [`SandboxError`] (also for a failed `execve`) instead of an exit
//! code.
//!
//! Security notes: mount targets inside the new root are resolved with `openat2(2)`
//! `RESOLVE_IN_ROOT`, so symlinks inside an image cannot redirect a mount to the host; mounts
//! are made with `open_tree`/`move_mount`/`mount_setattr` on file descriptors; the new mount
//! namespace is made `rprivate` before anything else; the old root is detached after
//! `pivot_root`.

mod caps;
mod child;
mod dmz;
pub mod seccomp;
mod sys;

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use caps::{cap, DOCKER_DEFAULT_CAPS};
pub use dmz::ExecShim;
pub use nix::sys::resource::Resource;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
pub use seccomp::SeccompFilter;

/// What the sandboxed process runs as and in. Build one with [`Spec::new`] and
/// struct-update syntax (`Spec { uid: 1000, ..Spec::new(argv) }`) so new fields do not break you.
pub struct Spec {
    /// The program and its arguments. `argv[0]` is resolved inside the new root: an absolute
    /// path, a path relative to `cwd` if it contains `/`, otherwise searched in the `PATH` of
    /// [`Spec::env`] (default `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`).
    pub argv: Vec<OsString>,
    /// The complete environment; nothing is inherited from the caller.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory inside the new root; it must exist there (create it with a
    /// [`Mount::Dir`] or [`Mount::Tmpfs`] if needed).
    pub cwd: PathBuf,
    /// Where the new root comes from.
    pub root: Root,
    /// Remount the new root read-only once it is assembled (other mounts keep their own flags).
    pub readonly_root: bool,
    /// Extra mounts, applied in order after `/dev`, `/proc` and `/sys`.
    pub mounts: Vec<Mount>,
    /// The namespaces to create. `mount` is required for [`spawn`].
    pub namespaces: Namespaces,
    /// Hostname of the new UTS namespace (requires `namespaces.uts`).
    pub hostname: Option<String>,
    /// Bring `lo` up in the new network namespace (requires `namespaces.net`).
    pub loopback: bool,
    /// Mount a minimal `/dev`: null zero full random urandom tty (bound from the host),
    /// `pts` (a new devpts instance) with a `ptmx` symlink, `shm` (tmpfs), `mqueue`, and the
    /// `fd`, `stdin`, `stdout`, `stderr` symlinks.
    pub dev: bool,
    /// What to mount at `/proc`.
    pub proc: Proc,
    /// Mount a read-only sysfs at `/sys`.
    pub sys: bool,
    /// The umask of the process.
    pub umask: u32,
    /// User id of the process. When the real, effective and saved uids already equal it,
    /// no `setresuid` call is made (so a spawn works inside `unshare -r`).
    pub uid: u32,
    /// Group id of the process (skipped like `uid` when already in effect).
    pub gid: u32,
    /// Supplementary groups (exactly these; empty clears them). `setgroups` is skipped when
    /// the current list already grants the same groups, ignoring `gid` itself (e.g. `[0]`
    /// with gid 0 is the same as `[]`): inside `unshare -r` setgroups is refused.
    pub groups: Vec<u32>,
    /// Set `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// Run the process in a new user namespace whose ids `0..count` are the host's
    /// `host_uid..` / `host_gid..` (see [`IdMap`]): it is root inside, an unprivileged user
    /// outside, and its capabilities are those of its namespace (none over the host). The
    /// namespace is created once the new root is assembled (so the mounts, hostname and `lo`
    /// are made with the caller's privileges, and the mount, pid, net, uts and ipc namespaces
    /// belong to the caller's user namespace: the process cannot mount, remount or change the
    /// hostname), and the parent writes its `uid_map`/`gid_map` before the process goes on to
    /// `uid`/`gid` (ids of the new namespace), capabilities, no_new_privs, seccomp and exec.
    /// Every bind mount is also made `nosuid` and the `/dev` tmpfs `nodev`. [`spawn`] only, not
    /// with [`Spec::vfork`] or [`Spec::return_early`].
    pub user_namespace: Option<IdMap>,
    /// If `Some`, keep only these capabilities (numbers from [`cap`]) in the bounding,
    /// effective and permitted sets, and empty the inheritable and ambient sets (as runc
    /// does since CVE-2022-24769: an inheritable capability would reach any program whose
    /// file capabilities name it inheritable, whatever the user). If `None`, capabilities
    /// are left as the kernel computes them for `uid`.
    pub capabilities: Option<Vec<u32>>,
    /// A seccomp filter installed right before [`Spec::pre_exec`] and `execve` (after ids,
    /// capabilities and no_new_privs). Without `no_new_privs` the kernel demands
    /// CAP_SYS_ADMIN, which `capabilities` usually drops: set `no_new_privs` too.
    pub seccomp: Option<SeccompFilter>,
    /// Resource limits as `(resource, soft, hard)`; use `libc::RLIM_INFINITY` for unlimited.
    pub rlimits: Vec<(Resource, u64, u64)>,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
    /// Extra descriptors the program gets as fds 3, 4, ... in this order (like systemd's
    /// `LISTEN_FDS`). All other descriptors are closed before `pre_exec` and `execve`.
    pub preserve_fds: Vec<OwnedFd>,
    /// cgroup v1 `tasks` files (opened for writing) the process moves itself into first
    /// thing after `clone`, by writing `0` to each. A one-thread process moving itself does
    /// not wait for the RCU grace period that moving another process (writing its pid into
    /// `cgroup.procs`) waits for, 20 ms after a quiet moment on this kernel. (A v2
    /// `cgroup.procs` moves the whole thread group and waits: do not use it here.)
    pub join_cgroups: Vec<OwnedFd>,
    /// Namespaces made ahead by [`premake_namespaces`]: the process joins these instead of
    /// creating its network (and IPC) namespace at `clone`, with `lo` already up if they
    /// were made with it. `namespaces.net` (and `.ipc`) must be set: they are still what the
    /// process gets, only made earlier. Ignored by [`spawn_in`].
    pub premade: Option<PremadeNamespaces>,
    /// Kill the process with SIGKILL when the *thread* that spawned it exits
    /// (`PR_SET_PDEATHSIG`).
    pub die_with_parent: bool,
    /// Start a new session (`setsid`), so the process leads its own session and process
    /// group instead of sharing the caller's. A container's init needs it: CRIU can only
    /// checkpoint a pid namespace whose session leaders are inside it.
    pub new_session: bool,
    /// A connected unix socket (a console socket, as runc's `--console-socket`): the child
    /// allocates a pseudo-terminal in its own root's `/dev/pts/ptmx` (the container's devpts
    /// instance, so the terminal is the container's own: `tty` names it), makes the slave its
    /// controlling terminal (`TIOCSCTTY`, after [`Spec::new_session`], which it needs) and its
    /// stdin, stdout and stderr (in place of [`Spec::stdin`] & co.; the slave is owned by
    /// [`Spec::uid`]), and sends the master over this socket (`SCM_RIGHTS`, one byte of data)
    /// before it drops its ids. The caller receives it with [`recv_console`] and relays it.
    /// A `/dev/pts/ptmx` that is not the pty multiplexer (char 5:2) is refused.
    pub console_socket: Option<OwnedFd>,
    /// Runs in the child as the very last step before `execve` (after `wait_for_parent`,
    /// ids, capabilities, stdio, seccomp). It must be async-signal-safe: no allocation, no locks, and
    /// no glibc wrappers that coordinate threads (`setuid` & co.: use raw `syscall`). Only
    /// fds 0-2 and [`Spec::preserve_fds`] are open when it runs.
    /// `spawn` returns just before the hook runs (so the hook may stop the child for a
    /// tracer); an `Err` from it, or a failed `execve`, is reported by [`Child::exec_result`]
    /// and [`Child::wait`].
    #[allow(clippy::type_complexity)]
    pub pre_exec: Option<Box<dyn Fn() -> io::Result<()> + Send + Sync>>,
    /// The child blocks until [`Child::release`] is called, e.g. to put its pid into a cgroup
    /// first. It waits once its world is complete (new root and mounts made, or namespaces
    /// joined) and before rlimits, cwd, ids, capabilities, no_new_privs, stdio, seccomp,
    /// `pre_exec` and `execve`; errors of those steps are returned by `release`.
    pub wait_for_parent: bool,
    /// [`spawn`] returns right after `clone`, so the caller's work meanwhile (with
    /// `wait_for_parent`, before [`Child::release`]: a cgroup move costs an RCU grace period)
    /// overlaps the child's mounts. Setup errors (and, without `wait_for_parent`, the exec)
    /// are then reported by `release` instead of `spawn`. The child starts on another CPU than
    /// the caller's (if it may use one), so that the two do overlap; it takes the caller's CPU
    /// set back before it runs the program.
    pub return_early: bool,
    /// Create the cgroup namespace (`namespaces.cgroup`) once the child's world is complete
    /// instead of at `clone`, so the process sees as `/` the cgroup it was put into: by the
    /// parent before [`Child::release`] (needs `wait_for_parent`), or by itself
    /// ([`Spec::join_cgroups`]). Ignored by [`spawn_in`] (which joins the target's namespace).
    pub cgroup_ns_after_release: bool,
    /// The child borrows the caller's memory until it execs (`CLONE_VM | CLONE_VFORK`, as
    /// `posix_spawn` does) instead of getting a copy: no copy of the caller's page tables, no
    /// copy-on-write faults on either side, nothing to free at `execve`. The calling thread
    /// waits meanwhile: [`spawn`] returns once the program runs, or with what prevented it.
    /// Not with `wait_for_parent`, `return_early` or `pre_exec` (the child would wait for a
    /// caller that waits for it). The caller's signals are blocked around the `clone` and the
    /// child resets every handler before it unblocks them, so no handler of the caller runs
    /// on the shared memory.
    pub vfork: bool,
    /// Execute the program through this exec shim ([`ExecShim::fd`]): the child executes
    /// the shim (a sealed memfd) and the shim the program, so `/proc/self/exe` never names
    /// the caller's binary when the program runs or is a `#!/proc/self/exe` script
    /// (CVE-2019-5736). The caller keeps the shim open until [`spawn`] returns.
    pub exec_shim: Option<std::os::fd::RawFd>,
}

impl Spec {
    /// A spec running `argv` with an empty environment in an empty tmpfs root, cwd `/`,
    /// as root, umask 022, with new mount, pid, net, uts and ipc namespaces, stdio inherited.
    pub fn new<I, S>(argv: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spec {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Spec::default()
        }
    }
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            root: Root::Tmpfs,
            readonly_root: false,
            mounts: Vec::new(),
            namespaces: Namespaces::all(),
            hostname: None,
            loopback: false,
            dev: false,
            proc: Proc::None,
            sys: false,
            umask: 0o022,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            no_new_privs: false,
            user_namespace: None,
            capabilities: None,
            seccomp: None,
            rlimits: Vec::new(),
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            preserve_fds: Vec::new(),
            join_cgroups: Vec::new(),
            premade: None,
            die_with_parent: false,
            new_session: false,
            console_socket: None,
            pre_exec: None,
            wait_for_parent: false,
            return_early: false,
            cgroup_ns_after_release: false,
            vfork: false,
            exec_shim: None,
        }
    }
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("argv", &self.argv)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("root", &self.root)
            .field("readonly_root", &self.readonly_root)
            .field("mounts", &self.mounts)
            .field("namespaces", &self.namespaces)
            .field("hostname", &self.hostname)
            .field("loopback", &self.loopback)
            .field("dev", &self.dev)
            .field("proc", &self.proc)
            .field("sys", &self.sys)
            .field("umask", &format_args!("{:04o}", self.umask))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("groups", &self.groups)
            .field("no_new_privs", &self.no_new_privs)
            .field("user_namespace", &self.user_namespace)
            .field("capabilities", &self.capabilities)
            .field("seccomp", &self.seccomp)
            .field("rlimits", &self.rlimits)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("preserve_fds", &self.preserve_fds)
            .field("join_cgroups", &self.join_cgroups)
            .field("premade", &self.premade)
            .field("die_with_parent", &self.die_with_parent)
            .field("new_session", &self.new_session)
            .field("console_socket", &self.console_socket)
            .field("pre_exec", &self.pre_exec.is_some())
            .field("wait_for_parent", &self.wait_for_parent)
            .field("return_early", &self.return_early)
            .field("cgroup_ns_after_release", &self.cgroup_ns_after_release)
            .field("vfork", &self.vfork)
            .finish()
    }
}

/// A bind mount of a host file or directory that [`spawn`] makes inside the new root (see
/// [`Spec::host_binds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBind {
    /// Where it is mounted, inside the new root.
    pub target: PathBuf,
    /// The host path it is bound from.
    pub source: PathBuf,
}

impl Spec {
    /// Every bind mount of a host path that [`spawn`] makes for this spec, in mount order:
    /// the `/dev` nodes (with [`Spec::dev`]), the masked `/proc` files (bound from
    /// `/dev/null`, with [`Proc::Masked`]; only those that are files on this kernel, as a
    /// masked directory gets a tmpfs and a missing one nothing), and each [`Mount::Bind`].
    /// The root ([`Root::Dir`]) itself is not listed. A checkpoint tool (CRIU) needs this
    /// list: such mounts must be declared external when dumping and mapped when restoring.
    pub fn host_binds(&self) -> Vec<HostBind> {
        let mut out = Vec::new();
        if self.dev {
            for n in child::DEV_NODES {
                let p = PathBuf::from(format!("/dev/{n}"));
                out.push(HostBind {
                    target: p.clone(),
                    source: p,
                });
            }
        }
        if self.proc == Proc::Masked {
            // The container's /proc is a procfs of this same kernel: what is a file here is
            // a file there.
            for p in child::PROC_MASKED {
                if std::fs::metadata(p).is_ok_and(|m| !m.is_dir()) {
                    out.push(HostBind {
                        target: p.into(),
                        source: "/dev/null".into(),
                    });
                }
            }
        }
        for m in &self.mounts {
            if let Mount::Bind { src, dst, .. } = m {
                out.push(HostBind {
                    target: dst.clone(),
                    source: src.clone(),
                });
            }
        }
        out
    }

    /// Creates, in the [`Root::Dir`] directory, the mount points [`spawn`] would create there
    /// for this spec (`/dev`, `/proc`, `/sys` as enabled, and each mount's target; missing
    /// parents too; every path resolved inside the root, so an image's symlinks cannot lead
    /// out of it). Targets below another one are left out: they lie in that mount, not in the
    /// root. A tool that recreates the mounts without creating mount points (CRIU restoring a
    /// checkpoint into a root that is read-only) calls this first. Nothing to do for
    /// [`Root::Tmpfs`].
    pub fn create_mount_points(&self) -> Result<(), SandboxError> {
        let Root::Dir(root) = &self.root else {
            return Ok(());
        };
        let mut points: Vec<(&Path, bool, u32)> = Vec::new();
        if self.dev {
            points.push((Path::new("/dev"), false, 0o755));
        }
        if self.proc != Proc::None {
            points.push((Path::new("/proc"), false, 0o555));
        }
        if self.sys {
            points.push((Path::new("/sys"), false, 0o555));
        }
        for m in &self.mounts {
            match m {
                Mount::Bind { src, dst, .. } => {
                    let file = std::fs::metadata(src).is_ok_and(|m| !m.is_dir());
                    points.push((dst, file, 0o755));
                }
                Mount::Tmpfs { dst, mode, .. } => points.push((dst, false, *mode)),
                Mount::Dir { .. } | Mount::Symlink { .. } => {}
            }
        }
        let outer: Vec<PathBuf> = points.iter().map(|(p, _, _)| p.to_path_buf()).collect();
        points.retain(|(p, _, _)| !outer.iter().any(|o| p != o && p.starts_with(o)));
        child::create_mount_points(root, &points)
    }
}

/// The ids of a new user namespace ([`Spec::user_namespace`]): its ids `0..count` are the
/// host's `host_uid..host_uid + count` (and likewise for groups). Ids outside the range,
/// host root's included, are not mapped: files of the host's root appear owned by the
/// overflow id (65534) inside and the process has no privilege over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// The host uid of the namespace's uid 0.
    pub host_uid: u32,
    /// The host gid of the namespace's gid 0.
    pub host_gid: u32,
    /// How many consecutive ids are mapped (at least 1).
    pub count: u32,
}

impl IdMap {
    /// The host ids that builds and trace probes run as: root inside is host uid and gid
    /// 2000000000, and 65536 ids from there are mapped (so `tar`, `cp -a` and `chown` of the
    /// usual ids work inside). Why this range: it must belong to no one on the host (a host
    /// process of the same uid could signal or ptrace a build); 2000000000..2000065535 lies in
    /// 1879048192..2147483647, which systemd's allocation scheme (login users, system and
    /// dynamic users, container ranges from 524288 up) leaves unused, below 2^31 where
    /// tools start to break. Every build shares it: builds are kept apart by their pid,
    /// mount, net and ipc namespaces.
    pub const BUILD: IdMap = IdMap {
        host_uid: 2_000_000_000,
        host_gid: 2_000_000_000,
        count: 65536,
    };

    /// [`IdMap::BUILD`] if this process's user namespace has all of its ids (the initial one
    /// does); else, e.g. when distill itself runs inside `unshare -r` (reprotest does that),
    /// where no other id exists, this process's own effective uid and gid alone. The process
    /// is then the caller's user for files, but its capabilities still belong to a namespace
    /// of its own, which owns none of its other namespaces or mounts.
    pub fn build() -> IdMap {
        let b = IdMap::BUILD;
        if maps("/proc/self/uid_map", b.host_uid, b.count)
            && maps("/proc/self/gid_map", b.host_gid, b.count)
        {
            return b;
        }
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        IdMap {
            host_uid: uid,
            host_gid: gid,
            count: 1,
        }
    }
}

/// Does the id map file `path` (of this process's user namespace) hold all of
/// `first..first + count`?
fn maps(path: &str, first: u32, count: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let (first, end) = (u64::from(first), u64::from(first) + u64::from(count));
    text.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && f[0] <= first && end <= f[0] + f[2]
    })
}

/// Where the new root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A fresh, empty tmpfs (mode 0755, nosuid, nodev) assembled from [`Spec::mounts`].
    Tmpfs,
    /// An existing host directory, bind-mounted (recursively) onto itself and pivoted into.
    Dir(PathBuf),
}

/// One mount, applied inside the new root. All `dst` paths are absolute paths inside the new
/// root; missing parent directories are created (mode 0755). `..` is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// Bind-mount the host path `src` at `dst`. A directory or file is created at `dst` if
    /// missing, matching the type of `src`. Always `nodev` (a device node made or found
    /// there cannot be opened; only the sandbox's own /dev holds usable nodes); `readonly`
    /// too uses `mount_setattr`, which keeps the source's nosuid/noexec flags.
    Bind {
        /// Host path.
        src: PathBuf,
        /// Path inside the new root.
        dst: PathBuf,
        /// Make the bind mount read-only (recursively if `recursive`).
        readonly: bool,
        /// Also bind the mounts below `src` (`MS_REC`).
        recursive: bool,
    },
    /// A new tmpfs at `dst` (nosuid, nodev).
    Tmpfs {
        /// Path inside the new root.
        dst: PathBuf,
        /// Size limit in bytes (tmpfs default: half of RAM).
        size: Option<u64>,
        /// Mode of the tmpfs root directory, e.g. `0o1777`.
        mode: u32,
    },
    /// A directory created inside the root (mkdir -p; an existing one is kept as is).
    Dir {
        /// Path inside the new root.
        dst: PathBuf,
        /// Mode of the last component if created.
        mode: u32,
    },
    /// A symlink `dst -> target`. An existing symlink with the same target is accepted.
    Symlink {
        /// What the link points to (not resolved).
        target: PathBuf,
        /// Path inside the new root.
        dst: PathBuf,
    },
}

/// Which namespaces to create (for [`spawn`]) or join (for [`spawn_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Namespaces {
    /// Mount namespace (required by [`spawn`]).
    pub mount: bool,
    /// PID namespace: the process is PID 1 in it.
    pub pid: bool,
    /// Network namespace (only `lo`, down unless [`Spec::loopback`]).
    pub net: bool,
    /// UTS namespace (hostname).
    pub uts: bool,
    /// IPC namespace.
    pub ipc: bool,
    /// Cgroup namespace.
    pub cgroup: bool,
}

impl Namespaces {
    /// mount, pid, net, uts and ipc (bubblewrap's `--unshare-all` minus user and cgroup).
    pub fn all() -> Namespaces {
        Namespaces {
            mount: true,
            pid: true,
            net: true,
            uts: true,
            ipc: true,
            cgroup: false,
        }
    }

    /// No namespaces.
    pub fn none() -> Namespaces {
        Namespaces::default()
    }
}

/// What to mount at `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proc {
    /// Nothing.
    #[default]
    None,
    /// A procfs of the (new) pid namespace, nosuid/nodev/noexec.
    Mount,
    /// Like `Mount`, with runc's masked paths: kcore, keys, timer_list, sched_debug, scsi,
    /// acpi, latency_stats, timer_stats hidden (/dev/null or an empty read-only tmpfs);
    /// asound, bus, fs, irq, sys, sysrq-trigger read-only. With [`Spec::sys`], also hides
    /// /sys/firmware and /sys/devices/virtual/powercap.
    Masked,
}

/// A standard stream of the sandboxed process.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's stream.
    #[default]
    Inherit,
    /// `/dev/null` (of the host).
    Null,
    /// This descriptor (it stays owned by the spec; the child gets a duplicate).
    Fd(OwnedFd),
}

/// How a sandboxed process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match *self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal number, if it was killed.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(s) => Some(s),
        }
    }

    /// The shell convention: the code, or 128 + signal.
    pub fn as_shell_code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Everything that can go wrong creating or managing a sandboxed process.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec is inconsistent; `field` names the offending field.
    #[error("sandbox spec field {field}: {reason}")]
    Invalid {
        /// The field, e.g. `mounts[2].dst`.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A setup step in the child failed, e.g. `bind mount /store/abc at /store/abc: open
    /// source: No such file or directory (os error 2)`.
    #[error("{step}: {source}")]
    Setup {
        /// The step, naming its paths.
        step: String,
        /// The errno.
        source: io::Error,
    },
    /// `execve` failed inside the sandbox.
    #[error("exec {program}: {source}")]
    Exec {
        /// `argv[0]` (and the PATH that was searched).
        program: String,
        /// The errno.
        source: io::Error,
    },
    /// A system call in the calling process failed.
    #[error("{op}: {source}")]
    Os {
        /// What was attempted.
        op: String,
        /// The errno.
        source: io::Error,
    },
    /// The child vanished during setup without saying why.
    #[error("sandbox child {pid} ended during setup without reporting an error ({status}); check the kernel log")]
    ChildDied {
        /// Its pid.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
    },
}

impl SandboxError {
    pub(crate) fn os(op: impl Into<String>, errno: i32) -> SandboxError {
        SandboxError::Os {
            op: op.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }
}

/// A running sandboxed process. Dropping it does not kill or reap the process; call
/// [`Child::wait`]. If it waits for [`Child::release`] and the `Child` is dropped unreleased,
/// the process exits with code 1 without running its program.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    status: Option<ExitStatus>,
    // Report pipe (read end), kept while the child waits for release.
    report: Option<OwnedFd>,
    // Release pipe (write end).
    release: Option<OwnedFd>,
    // Spawned with `return_early`: the READY report is still to be read.
    ready_pending: bool,
    program: String,
    descriptions: Vec<String>,
}

impl Child {
    /// The process id (in the caller's pid namespace).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// True while the child is blocked waiting for [`Child::release`].
    pub fn is_waiting(&self) -> bool {
        self.release.is_some()
    }

    /// Let a child spawned with [`Spec::wait_for_parent`] continue to `pre_exec` and
    /// `execve`; returns once it has exec'd, or the error that prevented it. For a child
    /// spawned with [`Spec::return_early`] alone, only waits for that outcome. No-op otherwise.
    pub fn release(&mut self) -> Result<(), SandboxError> {
        if self.release.is_none() && !self.ready_pending {
            return Ok(());
        }
        if std::mem::take(&mut self.ready_pending) {
            // Wait for the end of the setup first: writing to a child that already failed
            // would raise SIGPIPE.
            if let Some(report) = self.report.take() {
                if self.release.is_none() {
                    // Nothing to release: what comes is the exec (or why it failed).
                    return self.read_report(report, false);
                }
                match child::read_report(report.as_raw_fd()) {
                    Err(errno) => {
                        return Err(SandboxError::os("read sandbox report pipe", errno));
                    }
                    Ok(Some(r)) if r.step == child::STEP_READY => self.report = Some(report),
                    Ok(Some(r)) => return Err(self.failed(&r)),
                    Ok(None) => {
                        self.release = None;
                        let status = child::waitpid(self.pid.as_raw(), 0)
                            .map_err(|e| SandboxError::os(format!("waitpid {}", self.pid), e))?
                            .unwrap_or(ExitStatus::Exited(-1));
                        self.status = Some(status);
                        return Err(SandboxError::ChildDied {
                            pid: self.pid.as_raw(),
                            status,
                        });
                    }
                }
            }
        }
        let Some(release) = self.release.take() else {
            return Ok(());
        };
        sys::write_all(release.as_raw_fd(), &[1]);
        drop(release);
        match self.report.take() {
            Some(report) => self.read_report(report, false),
            None => Ok(()),
        }
    }

    /// Wait for the process to end (retrying on EINTR) and return how it ended.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        // An unreleased child would block forever; closing the pipe makes it exit.
        if self.release.take().is_some() {
            self.report = None;
        }
        let s = child::waitpid(self.pid.as_raw(), 0)
            .map_err(|e| SandboxError::os(format!("waitpid {}", self.pid), e))?
            .ok_or_else(|| SandboxError::os(format!("waitpid {}", self.pid), libc::ECHILD))?;
        self.status = Some(s);
        // With `pre_exec`, spawn returned before exec: a failure after it is reported now.
        // (A child spawned `return_early` and never released has its "about to run the
        // hook" record still unread: that is not a failure.)
        if let Some(report) = self.report.take() {
            while let Ok(Some(r)) = child::read_report(report.as_raw_fd()) {
                if r.step != child::STEP_PRE_EXEC && r.step != child::STEP_READY {
                    return Err(child::describe(&r, &self.program, &self.descriptions));
                }
            }
        }
        Ok(s)
    }

    /// With [`Spec::pre_exec`], `spawn` (and `release`) return as soon as the child is about
    /// to run the hook, so a tracer can handle the stop it raises. This then blocks until the
    /// child has exec'd (`Ok`) or reports why the hook or `execve` failed. Without `pre_exec`
    /// it returns `Ok` at once. Do not call it while the child is stopped by you.
    pub fn exec_result(&mut self) -> Result<(), SandboxError> {
        if self.release.is_some() {
            return Ok(());
        }
        let Some(report) = self.report.take() else {
            return Ok(());
        };
        match child::read_report(report.as_raw_fd()) {
            Err(errno) => Err(SandboxError::os("read sandbox report pipe", errno)),
            Ok(None) => Ok(()),
            Ok(Some(r)) => Err(child::describe(&r, &self.program, &self.descriptions)),
        }
    }

    /// Return the status if the process has ended, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let s = child::waitpid(self.pid.as_raw(), libc::WNOHANG)
            .map_err(|e| SandboxError::os(format!("waitpid {}", self.pid), e))?;
        self.status = s;
        Ok(s)
    }

    /// Send `sig` to the process (a no-op error-free call once it has been reaped).
    pub fn kill(&self, sig: Signal) -> Result<(), SandboxError> {
        if self.status.is_some() {
            return Ok(());
        }
        nix::sys::signal::kill(self.pid, sig)
            .map_err(|e| SandboxError::os(format!("kill {} {sig}", self.pid), e as i32))
    }

    pub(crate) fn read_report(
        &mut self,
        report: OwnedFd,
        initial: bool,
    ) -> Result<(), SandboxError> {
        match child::read_report(report.as_raw_fd()) {
            Err(errno) => Err(SandboxError::os("read sandbox report pipe", errno)),
            Ok(None) => Ok(()),
            Ok(Some(r))
                if (initial && r.step == child::STEP_READY) || r.step == child::STEP_PRE_EXEC =>
            {
                self.report = Some(report);
                Ok(())
            }
            Ok(Some(r)) => {
                drop(report);
                Err(self.failed(&r))
            }
        }
    }

    /// The child reported `r` and exits: reap it and describe the failure.
    fn failed(&mut self, r: &child::Report) -> SandboxError {
        self.release = None;
        self.ready_pending = false;
        let status = child::waitpid(self.pid.as_raw(), 0).ok().flatten();
        self.status = status;
        child::describe(r, &self.program, &self.descriptions)
    }
}

/// Copies the program `src` to `dst` (mode kept) so that it can be run in a sandbox while
/// other threads of this process start sandboxes too. `std::fs::copy` would hold `dst` open
/// for writing in this process, and a sandbox child cloned meanwhile keeps its copy of that
/// descriptor until it execs, so running `dst` could fail with ETXTBSY ("text file busy").
/// The copy is made by `cp` in a process of its own, whose descriptors no clone inherits.
pub fn copy_executable(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    let st = std::process::Command::new("cp")
        .arg("--")
        .arg(src)
        .arg(dst)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp {} {} failed: {st}",
            src.display(),
            dst.display()
        )))
    }
}

/// A new network namespace (with `lo` up or not) and a new IPC namespace, made ahead of
/// [`spawn`] by [`premake_namespaces`] (see [`Spec::premade`]).
#[derive(Debug)]
pub struct PremadeNamespaces {
    pub(crate) net: Option<OwnedFd>,
    pub(crate) ipc: Option<OwnedFd>,
    pub(crate) loopback: bool,
}

impl PremadeNamespaces {
    /// The descriptors that hold the namespaces (to keep open when closing others).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        [&self.net, &self.ipc]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd())
            .collect()
    }
}

/// Namespaces being made on a helper thread; [`PendingNamespaces::wait`] for them.
#[derive(Debug)]
pub struct PendingNamespaces(std::thread::JoinHandle<io::Result<PremadeNamespaces>>);

impl PendingNamespaces {
    /// Waits until they are made.
    pub fn wait(self) -> io::Result<PremadeNamespaces> {
        self.0
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread making namespaces panicked")))
    }
}

/// Starts making a new network namespace (with `lo` brought up if `loopback`) and, if `ipc`,
/// a new IPC namespace, on a short-lived thread, to hand to [`Spec::premade`].
///
/// Why: a network namespace is the costliest part of starting a sandbox, ~0.3 ms of `clone`
/// on this machine plus ~60 us to bring `lo` up, all of it on the path before the program
/// runs. Made ahead, it overlaps whatever the caller does meanwhile (a container's state,
/// its log pipes, the monitor's fork) on another CPU. The thread unshares only its own
/// namespaces; the caller's are untouched, and the namespaces live as long as the returned
/// descriptors (or the processes that join them).
///
/// The thread is sent to another CPU than the caller's at once: left to the scheduler, a new
/// thread waits on its parent's busy CPU, and the work it was to overlap is done by then.
pub fn premake_namespaces(loopback: bool, ipc: bool) -> io::Result<PendingNamespaces> {
    // The thread is born with every signal blocked: signals are for the caller's threads
    // (e.g. a foreground run forwarding Ctrl-C to its container), never for this one.
    // SAFETY: plain sigset manipulation on local storage.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let handle = std::thread::Builder::new()
        .name("premake-ns".into())
        .spawn(move || {
            let mut flags = libc::CLONE_NEWNET;
            if ipc {
                flags |= libc::CLONE_NEWIPC;
            }
            // SAFETY: unshare affects this thread only (no CLONE_NEWNS/NEWUSER/FS/VM).
            if unsafe { libc::unshare(flags) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let open = |name: &std::ffi::CStr| -> io::Result<OwnedFd> {
                sys::open(name, libc::O_RDONLY | libc::O_CLOEXEC)
                    .map(|fd| {
                        // SAFETY: a descriptor we just opened and own.
                        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
                    })
                    .map_err(io::Error::from_raw_os_error)
            };
            let net = open(c"/proc/thread-self/ns/net")?;
            let ipc = if ipc {
                Some(open(c"/proc/thread-self/ns/ipc")?)
            } else {
                None
            };
            if loopback {
                sys::loopback_up().map_err(io::Error::from_raw_os_error)?;
            }
            Ok(PremadeNamespaces {
                net: Some(net),
                ipc,
                loopback,
            })
        });
    // SAFETY: restores this thread's mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    let handle = handle?;
    elsewhere(&handle);
    Ok(PendingNamespaces(handle))
}

/// Restricts the thread of `handle` to the CPUs this thread may use except the one it runs on
/// (if there is another, see `sys::cpus_and_others`). Best effort.
fn elsewhere<T>(handle: &std::thread::JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    if let Some((_, others)) = sys::cpus_and_others() {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a valid cpu set and a live thread.
        unsafe { libc::pthread_setaffinity_np(handle.as_pthread_t(), size, &others) };
    }
}

/// Closes every file descriptor of this process except those in `keep` (with `close_range`;
/// where the kernel refuses it, one by one from the list in `/proc/self/fd`).
pub fn close_fds_except(keep: &[std::os::fd::RawFd]) {
    if sys::close_from_except(0, keep) {
        return;
    }
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<std::os::fd::RawFd> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| !keep.contains(fd)) {
        sys::close(fd);
    }
}

/// Receives the pseudo-terminal master a child with [`Spec::console_socket`] sends on the
/// other end of `sock`. `Ok(None)`: the socket was closed without one (the child failed
/// before, or exited).
pub fn recv_console(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    sys::recv_fd(sock.as_raw_fd())
}

/// Create the sandboxed process described by `spec`. Returns once it has exec'd its program
/// (or, with [`Spec::wait_for_parent`], once it is waiting for [`Child::release`], or right
/// after `clone` with [`Spec::return_early`]; or, with [`Spec::pre_exec`], once it is about
/// to run the hook: see [`Child::exec_result`]).
pub fn spawn(spec: &Spec) -> Result<Child, SandboxError> {
    let plan = child::Plan::new(spec, None)?;
    plan.spawn()
}

/// [`spawn`] and [`Child::wait`].
pub fn run(spec: &Spec) -> Result<ExitStatus, SandboxError> {
    spawn(spec)?.wait()
}

/// Start a process inside the namespaces of the running process `target` (`exec` into a
/// container): join each namespace selected in `join` (a new process is created in the
/// target's pid namespace), chroot into the target's root directory, then apply `spec`'s
/// cwd, env, rlimits, uid/gid/groups, capabilities, no_new_privs, umask, stdio, seccomp,
/// `pre_exec`, `wait_for_parent` and `return_early` exactly as [`spawn`] does. `spec`'s
/// `root`, `readonly_root`, `mounts`, `namespaces`, `hostname`, `loopback`, `dev`, `proc`,
/// `sys` and `cgroup_ns_after_release` are ignored (they describe a new world; this joins an
/// existing one). Put the new process into the target's cgroup with `wait_for_parent` +
/// [`Child::release`].
///
/// CVE-2019-5736: the new process is a copy of the calling binary until it execs. Its first
/// step, before joining anything, is `PR_SET_DUMPABLE 0`, so processes of the target cannot
/// open it (or its `/proc/<pid>/exe`, the caller's binary) while it joins; `execve` of the
/// target's program makes it dumpable again.
pub fn spawn_in(target: Pid, join: &Namespaces, spec: &Spec) -> Result<Child, SandboxError> {
    let plan = child::Plan::new(spec, Some((target, *join)))?;
    plan.spawn()
}
