//! What a container is, in terms of the sandbox: the [`distill_sandbox::Spec`] for a
//! container's init ([`Prepared`]) and for a process exec'd into it ([`exec_spec`]).
//!
//! All namespace, mount, capability, seccomp and exec code lives in `distill-sandbox`; this
//! module only decides the container's shape.
//!
//! Root file system: the image directory is bind-mounted and made **read-only**, shared by
//! every container of that image (no copy, no overlay: starting is a few mounts). Missing
//! mount points are created in the image directory by the sandbox on the first start, every
//! target resolved inside the root (`openat2(RESOLVE_IN_ROOT)`: symlinks of an image cannot
//! point a mount at the host). `/dev` is a minimal tmpfs (null, zero, full, random, urandom,
//! tty, a private devpts, shm, mqueue), `/proc` has runc's masked and read-only paths, `/sys`
//! is read-only.
//!
//! Writable places ([`writable_dirs`]): `/tmp` and `/run` (unless `read_only`) and every
//! `--rw PATH` are **directories on disk** in the container's state directory,
//! `<state>/<name>/rw/<PATH with '%' as %25 and '/' as %2F>` (`rw/tmp`, `rw/var%2Flib%2Fapp`: a
//! flat, collision-free layout, since `/var` and `/var/lib/app` may both be writable),
//! bind-mounted read-write. They are created when the container is and seeded with the
//! image's content at that path (mode, owner, mtime and symlinks kept; no fsync), so what a
//! committed image carries in `/tmp` is visible to its containers. They outlive the
//! container's processes (`distill commit` and checkpoint export read them) and go with its
//! state directory (`rm`, `--rm`). The top directory of `/tmp` and `/run` is always mode 1777
//! (as the tmpfs mounts they replace were); a `--rw` path missing from the image is created
//! 0755 and owned by the container's user. `--tmpfs` paths stay tmpfs and volumes stay host
//! directories: neither is captured by `commit`, like Docker.
//!
//! The process gets Docker's default capabilities, `no_new_privs`, the Docker-like seccomp
//! filter ([`distill_sandbox::SeccompFilter::docker_default`]) unless disabled, RLIMIT_NOFILE
//! 2^20, umask 022 and the supplementary groups `[gid]`. Its cgroup namespace is created once
//! it is in its cgroup (so the container sees that cgroup as `/`): on v1 it moves itself in
//! first thing, on v2 the monitor moves it while it builds its root and then releases it
//! ([`Spec::return_early`], [`Spec::wait_for_parent`]).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use distill_sandbox::{
    Child, Mount, Namespaces, Proc, Resource, Root, SandboxError, SeccompFilter, Spec, Stdio,
    DOCKER_DEFAULT_CAPS,
};

use crate::{ContainerConfig, Network, RuntimeError};

/// Capabilities a container's processes get (Docker's default set): CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
/// MKNOD, AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: &[u32] = DOCKER_DEFAULT_CAPS;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// RLIMIT_NOFILE of the container's init, decided in the (single-purpose) monitor process:
/// Docker's default 2^20, capped at the kernel's `fs.nr_open`; where raising the limit is not
/// allowed (no CAP_SYS_RESOURCE), the monitor's own hard limit (best effort, like Docker).
fn init_nofile() -> u64 {
    let want: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: plain system calls on this (monitor) process with valid pointers.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        return want;
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    cur.rlim_max
}

/// RLIMIT_NOFILE (hard) of process `pid`, the container's init.
fn nofile_of(pid: i32) -> Option<u64> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads another process's limit into `cur`; no new limit is passed.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut cur) };
    (r == 0).then_some(cur.rlim_max)
}

/// A spec with the process part shared by `run` and `exec`: argv, environment (with `PATH`
/// and `HOME` defaults), cwd, user, capabilities, no_new_privs, seccomp, rlimits.
fn process_spec(
    argv: &[String],
    env: &[String],
    cwd: &str,
    user: Option<(u32, u32)>,
    seccomp: bool,
) -> Result<Spec, RuntimeError> {
    if argv.is_empty() {
        return Err(RuntimeError::Config(
            "no command: the image has no entrypoint/cmd and none was given".into(),
        ));
    }
    let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = Vec::new();
    for e in env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| RuntimeError::Config(format!("env {e:?}: expected KEY=VALUE")))?;
        vars.retain(|(o, _)| o != k);
        vars.push((k.into(), v.into()));
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        vars.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !vars.iter().any(|(k, _)| k == "HOME") {
        vars.push(("HOME".into(), "/".into()));
    }
    let (uid, gid) = user.unwrap_or((0, 0));
    // CVE-2019-5736: the program is executed through the sealed exec shim, never as a copy
    // of this binary (see distill_sandbox::ExecShim).
    let shim = distill_sandbox::ExecShim::shared().map_err(|e| {
        RuntimeError::Config(format!(
            "cannot make the exec shim that keeps containers away from the runtime's binary (a sealed, executable memfd): {e}"
        ))
    })?;
    Ok(Spec {
        exec_shim: Some(shim.fd()),
        env: vars,
        cwd: if cwd.is_empty() {
            "/".into()
        } else {
            cwd.into()
        },
        uid,
        gid,
        groups: vec![gid],
        capabilities: Some(DEFAULT_CAPS.to_vec()),
        no_new_privs: true,
        seccomp: seccomp.then(SeccompFilter::docker_default),
        umask: 0o022,
        ..Spec::new(argv)
    })
}

/// The spec of a process exec'd into the running container whose init is `init_pid` (for
/// [`distill_sandbox::spawn_in`]); it gets the init's RLIMIT_NOFILE and waits for the caller
/// to put it into the container's cgroup.
pub(crate) fn exec_spec(
    argv: &[String],
    env: &[String],
    cwd: &str,
    user: Option<(u32, u32)>,
    seccomp: bool,
    init_pid: i32,
) -> Result<Spec, RuntimeError> {
    let mut spec = process_spec(argv, env, cwd, user, seccomp)?;
    if let Some(n) = nofile_of(init_pid) {
        spec.rlimits = vec![(Resource::RLIMIT_NOFILE, n, n)];
    }
    spec.wait_for_parent = true;
    Ok(spec)
}

/// Starts making, on another thread, the namespaces a container with `network` has of its
/// own and can get made ahead: with `Network::None` its network namespace (`lo` up, as the
/// spec asks) and its IPC namespace. `None` when there is nothing to make (or no thread).
pub(crate) fn premake(network: Network) -> Option<distill_sandbox::PendingNamespaces> {
    (network == Network::None)
        .then(|| distill_sandbox::premake_namespaces(true, true).ok())
        .flatten()
}

/// The namespaces an exec'd process joins: all of the container's.
pub(crate) fn exec_namespaces() -> Namespaces {
    Namespaces {
        cgroup: true,
        ..Namespaces::all()
    }
}

/// Everything the container's init needs, validated before the monitor forks.
#[derive(Debug)]
pub(crate) struct Prepared {
    spec: Spec,
    /// The init's stdin when it is not `/dev/null` (`run -i`), until the monitor is forked.
    stdin: Option<OwnedFd>,
}

impl Prepared {
    /// Checks `cfg` and builds the sandbox spec of the container's init, whose state
    /// directory (holding its writable directories) is `container_dir` (absolute).
    pub fn new(cfg: &ContainerConfig, container_dir: &Path) -> Result<Self, RuntimeError> {
        let root = fs::canonicalize(&cfg.rootfs).map_err(|e| {
            RuntimeError::Config(format!(
                "rootfs {}: {e}; unpack the image first",
                cfg.rootfs.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(RuntimeError::Config(format!(
                "rootfs {} is not a directory",
                root.display()
            )));
        }
        let mut mounts = Vec::new();
        for p in &cfg.rw {
            check_target(p)?;
        }
        // Writable directories first (parents before children), so that tmpfs mounts and
        // volumes below them land on top.
        let rw = container_dir.join(RW_DIR);
        for (src, dst) in writable_dirs(container_dir, cfg) {
            // Bound read-write: never through a symlink (an imported archive could plant
            // one pointing at a host directory). Missing ones are created at `run`.
            for p in [&rw, &src] {
                if fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) {
                    return Err(RuntimeError::Config(format!(
                        "writable directory {} of container {} is not a directory (a symlink?); remove the container",
                        p.display(),
                        cfg.name
                    )));
                }
            }
            mounts.push(Mount::Bind {
                src,
                dst,
                readonly: false,
                recursive: false,
            });
        }
        // Targets resolved inside the image root as the sandbox will resolve them, so that
        // they read as the container's mount table shows them (checkpoint matches them).
        let inside = |t: &Path| resolve_in_root(&root, t).unwrap_or_else(|| t.to_path_buf());
        for t in &cfg.tmpfs {
            check_target(t)?;
            mounts.push(Mount::Tmpfs {
                dst: inside(t),
                size: None,
                mode: 0o1777,
            });
        }
        for v in &cfg.volumes {
            check_target(&v.target)?;
            let src = fs::canonicalize(&v.source).map_err(|e| {
                RuntimeError::Config(format!("volume source {}: {e}", v.source.display()))
            })?;
            mounts.push(Mount::Bind {
                src,
                dst: inside(&v.target),
                readonly: v.readonly,
                recursive: true,
            });
        }
        let user = match &cfg.user {
            Some(u) => Some(parse_user(u)?),
            None => None,
        };
        let own_net = cfg.network == Network::None;
        let spec = Spec {
            root: Root::Dir(root),
            readonly_root: true,
            mounts,
            namespaces: Namespaces {
                net: own_net,
                cgroup: true,
                ..Namespaces::all()
            },
            // Default: the container's name, cut to the 64 bytes a hostname may have (names
            // may be longer; they are ASCII, so bytes are characters).
            hostname: Some(if cfg.hostname.is_empty() {
                cfg.name.chars().take(63).collect()
            } else {
                cfg.hostname.clone()
            }),
            loopback: own_net,
            dev: true,
            proc: Proc::Masked,
            sys: true,
            wait_for_parent: true,
            return_early: true,
            cgroup_ns_after_release: true,
            // Its own session inside its pid namespace (as runc does): a checkpoint needs it.
            new_session: true,
            ..process_spec(&cfg.argv, &cfg.env, &cfg.cwd, user, cfg.seccomp)?
        };
        Ok(Prepared { spec, stdin: None })
    }

    /// The container joins these namespaces (made ahead by [`premake`]) instead of creating
    /// them.
    pub fn use_premade(&mut self, ns: distill_sandbox::PremadeNamespaces) {
        self.spec.premade = Some(ns);
    }

    /// The container's init moves itself into the cgroup of these (v1 `tasks` files opened
    /// by [`crate::cgroup::Cgroup::tasks_files`], limits already written) first thing after
    /// clone. It then has nothing to wait for: it makes its cgroup namespace once its root is
    /// built and runs the program without the READY/release exchange with the monitor (two
    /// wake-ups across CPUs on the way to `execve`). And since the monitor then has nothing
    /// to do until the program runs, the init borrows the monitor's memory until its
    /// `execve` ([`distill_sandbox::Spec::vfork`]) instead of copying it.
    pub fn join_cgroups(&mut self, tasks: Vec<OwnedFd>) {
        let own = !tasks.is_empty();
        self.spec.wait_for_parent = !own;
        self.spec.return_early = !own;
        self.spec.vfork = own;
        self.spec.join_cgroups = tasks;
    }

    /// How the init is attached to the caller: `stdin` instead of `/dev/null` (`run -i`),
    /// and with `console` (the child's end of a console socket, `run -t`) a pseudo-terminal
    /// of its own as stdio and controlling terminal, whose master it sends there
    /// ([`distill_sandbox::Spec::console_socket`]).
    pub fn attach(&mut self, stdin: Option<OwnedFd>, console: Option<OwnedFd>) {
        self.stdin = stdin;
        self.spec.console_socket = console;
    }

    /// The stdin given by [`Prepared::attach`], if any (taken by the launch).
    pub fn take_stdin(&mut self) -> Option<OwnedFd> {
        self.stdin.take()
    }

    /// Whether [`Prepared::join_cgroups`] gave it its cgroup.
    pub fn has_cgroup(&self) -> bool {
        !self.spec.join_cgroups.is_empty()
    }

    /// The descriptors the spec holds (premade namespaces, cgroup `tasks` files): the
    /// monitor keeps them open.
    pub fn held_fds(&self) -> Vec<RawFd> {
        let mut v = self
            .spec
            .premade
            .as_ref()
            .map_or_else(Vec::new, |p| p.fds());
        v.extend(self.spec.join_cgroups.iter().map(|f| f.as_raw_fd()));
        v.extend(self.spec.exec_shim);
        v.extend(self.spec.console_socket.iter().map(|f| f.as_raw_fd()));
        v
    }

    /// Clones the container's init with `stdio` (stdin, stdout, stderr), which moves itself
    /// into its cgroup first (see [`Prepared::join_cgroups`]). Call it in the
    /// monitor process (it raises that process's RLIMIT_NOFILE). On v2 it returns right away:
    /// the init builds its root meanwhile and waits for [`Child::release`] while the caller
    /// puts it into its cgroup; `release` reports the exec or any failure. On v1 it returns
    /// once the program runs, or with what prevented it.
    pub fn spawn(&mut self, stdio: [OwnedFd; 3]) -> Result<Child, SandboxError> {
        let n = init_nofile();
        self.spec.rlimits = vec![(Resource::RLIMIT_NOFILE, n, n)];
        let [i, o, e] = stdio;
        self.spec.stdin = Stdio::Fd(i);
        self.spec.stdout = Stdio::Fd(o);
        self.spec.stderr = Stdio::Fd(e);
        let r = distill_sandbox::spawn(&self.spec);
        // Our copies of the container's stdio must close (EOF for log readers).
        self.spec.stdin = Stdio::Inherit;
        self.spec.stdout = Stdio::Inherit;
        self.spec.stderr = Stdio::Inherit;
        // The child has its own copies (it joined or moved in already, or it failed).
        self.spec.join_cgroups = Vec::new();
        self.spec.premade = None;
        self.spec.console_socket = None;
        r
    }
}

/// Every bind mount of a host path inside the container of `cfg` whose state directory is
/// `container_dir` (dev nodes, masked /proc files, volumes, writable directories and any other
/// bind the spec has), as its sandbox spec will make them: the one list `checkpoint` declares
/// to CRIU as external mounts and `restore` maps back.
pub(crate) fn host_binds(
    cfg: &ContainerConfig,
    container_dir: &Path,
) -> Result<Vec<distill_sandbox::HostBind>, RuntimeError> {
    Ok(Prepared::new(cfg, container_dir)?.spec.host_binds())
}

/// Creates the container's missing mount points in its image directory, as the sandbox
/// does on a first start: a restore needs them (CRIU recreates the mounts but no mount
/// points, and the root is read-only by then), and an image loaded on another machine, or
/// never run, has none.
pub(crate) fn create_mount_points(
    cfg: &ContainerConfig,
    container_dir: &Path,
) -> Result<(), RuntimeError> {
    Prepared::new(cfg, container_dir)?
        .spec
        .create_mount_points()
        .map_err(|e| {
            RuntimeError::Config(format!(
                "container {}: prepare its image directory {}: {e}",
                cfg.name,
                cfg.rootfs.display()
            ))
        })
}

/// Name of the directory in a container's state directory that holds its writable
/// directories (see [`writable_dirs`]).
pub const RW_DIR: &str = "rw";

/// The writable directories of a container whose state directory is `container_dir`: pairs
/// of (directory on the host, path inside the container), parents before children. The host
/// directory is `<container_dir>/rw/<encoded path>`; the container path is the requested one
/// (`/tmp`, `/run` unless `read_only`, then every `rw` entry) resolved inside the image root
/// the way the sandbox resolves mount targets (an image whose `/run` is a symlink to
/// `/var/run` gets `/var/run`). Paths that resolve to the same place are listed once.
/// Whether the host directories exist is not checked.
///
/// This is the one list `run` seeds and mounts, `commit` turns into a layer, and checkpoint
/// export carries.
pub fn writable_dirs(container_dir: &Path, cfg: &ContainerConfig) -> Vec<(PathBuf, PathBuf)> {
    let mut wanted: Vec<PathBuf> = Vec::new();
    if !cfg.read_only {
        wanted.push("/tmp".into());
        wanted.push("/run".into());
    }
    wanted.extend(cfg.rw.iter().map(|p| lexical(p)));
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for w in wanted {
        let inside = resolve_in_root(&cfg.rootfs, &w).unwrap_or_else(|| w.clone());
        if out.iter().any(|(_, p)| *p == inside) {
            continue;
        }
        out.push((container_dir.join(RW_DIR).join(encode_rw(&w)), inside));
    }
    out.sort_by(|a, b| a.1.as_os_str().as_bytes().cmp(b.1.as_os_str().as_bytes()));
    // Byte order puts "/var-x" before "/var/a"; parents must precede their children.
    out.sort_by_key(|(_, p)| p.components().count());
    out
}

/// `/var/lib/app` -> `var%2Flib%2Fapp` (and `%` -> `%25`): one flat, reversible name.
fn encode_rw(p: &Path) -> OsString {
    let raw = p.as_os_str().as_bytes();
    let raw = raw.strip_prefix(b"/").unwrap_or(raw);
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'/' => out.extend_from_slice(b"%2F"),
            _ => out.push(b),
        }
    }
    OsString::from_vec(out)
}

/// `p` without `.` components and trailing slashes (`..` is refused by [`check_target`]).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// Resolves the absolute container path `p` inside `root` like `openat2(RESOLVE_IN_ROOT)`:
/// symlinks are followed with absolute targets taken relative to `root`, `..` stops at the
/// root. Missing components are kept as written. Returns the resolved container path, or
/// None when the image loops or a component is a non-directory.
pub fn resolve_in_root(root: &Path, p: &Path) -> Option<PathBuf> {
    let mut stack: Vec<OsString> = p
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur: Vec<OsString> = Vec::new();
    let mut hops = 0;
    let mut missing = false;
    while let Some(c) = stack.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        if !missing {
            let mut host = root.to_path_buf();
            host.extend(&cur);
            host.push(&c);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    let t = fs::read_link(&host).ok()?;
                    if t.is_absolute() {
                        cur.clear();
                    }
                    for part in t.components().rev() {
                        match part {
                            Component::Normal(n) => stack.push(n.to_os_string()),
                            Component::ParentDir => stack.push("..".into()),
                            _ => {}
                        }
                    }
                    continue;
                }
                Ok(m) if !m.is_dir() && !stack.is_empty() => return None,
                Ok(_) => {}
                Err(_) => missing = true,
            }
        }
        cur.push(c);
    }
    let mut out = PathBuf::from("/");
    out.extend(cur);
    Some(out)
}

/// Creates the container's writable directories ([`writable_dirs`]) in `container_dir`,
/// each seeded from the image's content at its path. Nested writable directories are left
/// out of their parent's copy (they are mounted over it). Nothing is fsynced: they are
/// scratch space until committed.
pub(crate) fn create_writable_dirs(
    container_dir: &Path,
    cfg: &ContainerConfig,
    owner: (u32, u32),
) -> Result<(), RuntimeError> {
    let dirs = writable_dirs(container_dir, cfg);
    if dirs.is_empty() {
        return Ok(());
    }
    let base = container_dir.join(RW_DIR);
    mkdir(&base, 0o700)?;
    for (i, (host, inside)) in dirs.iter().enumerate() {
        let nested: Vec<PathBuf> = dirs[i + 1..]
            .iter()
            .filter_map(|(_, p)| Some(p.strip_prefix(inside).ok()?.to_path_buf()))
            .collect();
        let default = *inside == Path::new("/tmp") || *inside == Path::new("/run");
        let src = image_path(&cfg.rootfs, inside);
        let fail = |what: &str, e: io::Error| {
            RuntimeError::Config(format!(
                "writable directory {} of container {}: {what}: {e}",
                inside.display(),
                cfg.name
            ))
        };
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {
                distill_oci::copy_tree(&src, host, distill_oci::FileCopy::Content, &nested)
                    .map_err(|e| {
                        RuntimeError::Config(format!(
                            "writable directory {} of container {}: seed from the image: {e}",
                            inside.display(),
                            cfg.name
                        ))
                    })?;
                if default {
                    fs::set_permissions(host, fs::Permissions::from_mode(0o1777))
                        .map_err(|e| fail("chmod", e))?;
                }
            }
            Ok(_) => {
                return Err(RuntimeError::Config(format!(
                    "writable directory {}: the image has a file there, not a directory; --rw takes directories",
                    inside.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mode = if default { 0o1777 } else { 0o755 };
                mkdir(host, mode)?;
                fs::set_permissions(host, fs::Permissions::from_mode(mode))
                    .map_err(|e| fail("chmod", e))?;
                if !default && owner != (0, 0) {
                    std::os::unix::fs::lchown(host, Some(owner.0), Some(owner.1))
                        .map_err(|e| fail("chown", e))?;
                }
            }
            Err(e) => return Err(fail("stat the image's directory", e)),
        }
    }
    Ok(())
}

/// The host path of container path `inside` in the image root.
fn image_path(root: &Path, inside: &Path) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(
        inside
            .components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    p
}

fn mkdir(p: &Path, mode: u32) -> Result<(), RuntimeError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .map_err(|e| RuntimeError::Sys {
            op: format!("create {}", p.display()),
            source: e,
        })
}

fn check_target(t: &Path) -> Result<(), RuntimeError> {
    if !t.is_absolute() || t.components().any(|c| c == Component::ParentDir) || t == Path::new("/")
    {
        return Err(RuntimeError::Config(format!(
            "container path {} must be absolute, not / and without '..'",
            t.display()
        )));
    }
    Ok(())
}

/// Parses `UID[:GID]` (numeric).
pub fn parse_user(u: &str) -> Result<(u32, u32), RuntimeError> {
    let bad = || RuntimeError::Config(format!("--user {u:?}: expected numeric UID[:GID]"));
    let (a, b) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid: u32 = a.parse().map_err(|_| bad())?;
    let gid: u32 = match b {
        Some(b) => b.parse().map_err(|_| bad())?,
        None => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn user_parsing() {
        assert_eq!(parse_user("1000").unwrap(), (1000, 1000));
        assert_eq!(parse_user("5:7").unwrap(), (5, 7));
        assert!(parse_user("bob")
            .unwrap_err()
            .to_string()
            .contains("--user"));
    }

    #[test]
    fn process_defaults_and_env_override() {
        let s = process_spec(
            &["sh".into()],
            &["A=1".into(), "A=2".into(), "HOME=/root".into()],
            "",
            Some((5, 7)),
            true,
        )
        .unwrap();
        assert_eq!(s.cwd, Path::new("/"));
        assert_eq!((s.uid, s.gid, s.groups.clone()), (5, 7, vec![7]));
        let get = |k: &str| s.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("A").unwrap(), "2");
        assert_eq!(get("HOME").unwrap(), "/root");
        assert_eq!(get("PATH").unwrap(), DEFAULT_PATH);
        assert!(s.no_new_privs && s.seccomp.is_some());
        assert!(process_spec(&[], &[], "/", None, false).is_err());
        assert!(process_spec(&["x".into()], &["NOEQ".into()], "/", None, false).is_err());
    }

    #[test]
    fn bad_mount_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ContainerConfig {
            name: "t".into(),
            rootfs: dir.path().into(),
            argv: vec!["true".into()],
            tmpfs: vec!["relative".into()],
            ..Default::default()
        };
        let e = Prepared::new(&cfg, dir.path()).unwrap_err().to_string();
        assert!(e.contains("relative"), "{e}");
        let cfg = ContainerConfig {
            tmpfs: vec![],
            rw: vec!["/var/../etc".into()],
            ..cfg
        };
        let e = Prepared::new(&cfg, dir.path()).unwrap_err().to_string();
        assert!(e.contains("/var/../etc"), "{e}");
    }

    #[test]
    fn writable_dirs_are_flat_resolved_and_parents_first() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("var/run")).unwrap();
        std::os::unix::fs::symlink("/var/run", img.path().join("run")).unwrap();
        let cfg = ContainerConfig {
            name: "w".into(),
            rootfs: img.path().into(),
            rw: vec![
                "/var/lib/app/".into(),
                "/var".into(),
                "/var-x".into(),
                "/a%b".into(),
            ],
            ..Default::default()
        };
        let d = Path::new("/state/w");
        let got = writable_dirs(d, &cfg);
        let want: Vec<(PathBuf, PathBuf)> = [
            ("a%25b", "/a%b"),
            ("tmp", "/tmp"),
            ("var", "/var"),
            ("var-x", "/var-x"),
            ("run", "/var/run"),
            ("var%2Flib%2Fapp", "/var/lib/app"),
        ]
        .iter()
        .map(|(h, p)| (d.join("rw").join(h), PathBuf::from(p)))
        .collect();
        assert_eq!(got, want);
        let ro = ContainerConfig {
            read_only: true,
            rw: vec![],
            ..cfg
        };
        assert!(writable_dirs(d, &ro).is_empty());
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let img = tempfile::tempdir().unwrap();
        let r = img.path();
        fs::create_dir_all(r.join("real")).unwrap();
        std::os::unix::fs::symlink("../../../real", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/loop", r.join("loop")).unwrap();
        fs::write(r.join("file"), "").unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/up/x")).unwrap(),
            Path::new("/real/x")
        );
        assert_eq!(resolve_in_root(r, Path::new("/loop")), None);
        assert_eq!(resolve_in_root(r, Path::new("/file/x")), None);
        assert_eq!(
            resolve_in_root(r, Path::new("/new/a")).unwrap(),
            Path::new("/new/a")
        );
    }

    #[test]
    fn seeding_copies_the_image_and_leaves_nested_dirs_out() {
        let img = tempfile::tempdir().unwrap();
        let r = img.path();
        fs::create_dir_all(r.join("var/lib/app")).unwrap();
        fs::create_dir_all(r.join("tmp")).unwrap();
        fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(r.join("var/lib/app/data"), "app").unwrap();
        fs::write(r.join("var/f"), "f").unwrap();
        std::os::unix::fs::symlink("f", r.join("var/l")).unwrap();
        fs::set_permissions(r.join("var/f"), fs::Permissions::from_mode(0o640)).unwrap();
        let st = tempfile::tempdir().unwrap();
        let cfg = ContainerConfig {
            name: "s".into(),
            rootfs: r.into(),
            rw: vec!["/var".into(), "/var/lib/app".into(), "/srv".into()],
            ..Default::default()
        };
        create_writable_dirs(st.path(), &cfg, (7, 8)).unwrap();
        let rw = st.path().join("rw");
        assert_eq!(fs::read_to_string(rw.join("var/f")).unwrap(), "f");
        let m = fs::metadata(rw.join("var/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(fs::read_link(rw.join("var/l")).unwrap(), Path::new("f"));
        assert!(!rw.join("var/lib/app").exists(), "nested dir copied twice");
        assert!(rw.join("var/lib").is_dir());
        assert_eq!(
            fs::read_to_string(rw.join("var%2Flib%2Fapp/data")).unwrap(),
            "app"
        );
        // /tmp is 1777 whatever the image says; /run (missing) too; a missing --rw path
        // belongs to the container's user.
        for d in ["tmp", "run"] {
            let m = fs::metadata(rw.join(d)).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o1777, "{d}");
        }
        let m = fs::metadata(rw.join("srv")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 7, 8));
    }
}
