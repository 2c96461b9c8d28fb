//! What a container is, in terms of the sandbox: the [`distill_sandbox::Spec`] for a
//! container's init ([`Prepared`]) and for a process exec'd into it ([`exec_spec`]).
//!
//! All namespace, mount, capability, seccomp and exec code lives in `distill-sandbox`; this
//! module only decides the container's shape.
//!
//! Root file system: the image directory is bind-mounted and made **read-only**, shared by
//! every container of that image (no copy, no overlay: starting is a few mounts). Writable
//! places are tmpfs mounts at `/tmp` and `/run` (unless `read_only`), `--tmpfs` paths and
//! volumes. Missing mount points are created in the image directory by the sandbox on the
//! first start, every target resolved inside the root (`openat2(RESOLVE_IN_ROOT)`: symlinks of
//! an image cannot point a mount at the host). `/dev` is a minimal tmpfs (null, zero, full,
//! random, urandom, tty, a private devpts, shm, mqueue), `/proc` has runc's masked and
//! read-only paths, `/sys` is read-only.
//!
//! The process gets Docker's default capabilities, `no_new_privs`, the Docker-like seccomp
//! filter ([`distill_sandbox::SeccompFilter::docker_default`]) unless disabled, RLIMIT_NOFILE
//! 2^20, umask 022 and the supplementary groups `[gid]`. Its cgroup namespace is created after
//! the monitor moved it into its cgroup (so the container sees that cgroup as `/`), and the
//! monitor's cgroup work overlaps the container's mounts ([`Spec::return_early`]).

use std::fs;
use std::os::fd::OwnedFd;
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
    Ok(Spec {
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
}

impl Prepared {
    /// Checks `cfg` and builds the sandbox spec of the container's init.
    pub fn new(cfg: &ContainerConfig) -> Result<Self, RuntimeError> {
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
        let mut tmpfs: Vec<PathBuf> = Vec::new();
        if !cfg.read_only {
            tmpfs.push("/tmp".into());
            tmpfs.push("/run".into());
        }
        tmpfs.extend(cfg.tmpfs.iter().cloned());
        for t in tmpfs {
            check_target(&t)?;
            mounts.push(Mount::Tmpfs {
                dst: t,
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
                dst: v.target.clone(),
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
        Ok(Prepared { spec })
    }

    /// Clones the container's init with `stdio` (stdin, stdout, stderr). Call it in the
    /// monitor process (it raises that process's RLIMIT_NOFILE). Returns right away:
    /// the init builds its root while the caller moves it into its cgroup, then waits for
    /// [`Child::release`] (which reports any setup or exec failure).
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
        r
    }
}

/// Every bind mount of a host path inside the container of `cfg` (dev nodes, masked /proc
/// files, volumes and any other bind the spec has), as its sandbox spec will make them: the
/// one list `checkpoint` declares to CRIU as external mounts and `restore` maps back.
pub(crate) fn host_binds(
    cfg: &ContainerConfig,
) -> Result<Vec<distill_sandbox::HostBind>, RuntimeError> {
    Ok(Prepared::new(cfg)?.spec.host_binds())
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
        let e = Prepared::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("relative"), "{e}");
    }
}
