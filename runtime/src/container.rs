//! Creating the container process and joining it (exec).
//!
//! This is the smallest isolation layer the runtime needs, written here because the
//! `distill-sandbox` crate had no code yet when the runtime was written; it is meant to move
//! into (or be replaced by) `distill_sandbox::spawn` / its join API. Everything that can
//! allocate or fail with a rich error is prepared on the host side (`Prepared::new`); the
//! cloned child runs straight-line setup and reports failure through a CLOEXEC pipe.
//!
//! Root file system: the image directory is bind-mounted and made **read-only**, shared by
//! every container of that image (no copy, no overlay: starting is a few mounts). Writable
//! places are tmpfs mounts at `/tmp` and `/run` (unless `read_only`), `--tmpfs` paths and
//! volumes. Missing mount points (`/proc`, `/dev`, `/sys`, `/tmp`, `/run`, volume targets)
//! are created as empty directories in the image directory before the first start; every
//! mount target is resolved inside the root (symlinks cannot point a mount at the host).

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::seccomp;
use crate::{ContainerConfig, Network, RuntimeError};

/// Capabilities Docker grants by default: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DEFAULT_CAPS: &[u32] = &[0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// /proc paths runc masks (files get /dev/null, directories an empty read-only tmpfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// /proc paths runc makes read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resolves `rel` inside `root` like a chroot would: `..` stops at the root and absolute
/// symlink targets restart at the root. Missing trailing components are kept as they are.
pub fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let mut cur = root.to_path_buf();
        cur.extend(&parts);
        cur.push(&c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&cur)?;
                if target.is_absolute() {
                    parts.clear();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => parts.push(PathBuf::from(c)),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Ok(out)
}

fn cstr(p: impl AsRef<OsStr>) -> CString {
    CString::new(p.as_ref().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent"))
}

/// A mount performed in the child, in order.
#[derive(Debug)]
struct MountOp {
    src: CString,
    dst: CString,
    fstype: Option<CString>,
    flags: libc::c_ulong,
    data: Option<CString>,
    /// Remount read-only afterwards (bind mounts).
    readonly: bool,
}

/// The process part shared by `run` and `exec`.
#[derive(Debug)]
pub(crate) struct ProcessSpec {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub path_dirs: Vec<String>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub caps: Vec<u32>,
    pub cap_last: u32,
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

impl ProcessSpec {
    pub fn new(
        argv: &[String],
        env: &[String],
        cwd: &str,
        user: Option<(u32, u32)>,
        seccomp_on: bool,
    ) -> Result<Self, RuntimeError> {
        if argv.is_empty() {
            return Err(RuntimeError::Config(
                "no command: the image has no entrypoint/cmd and none was given".into(),
            ));
        }
        let mut env: Vec<String> = env.to_vec();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push("HOME=/".into());
        }
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        for (what, s) in argv
            .iter()
            .map(|a| ("argument", a))
            .chain(env.iter().map(|e| ("env", e)))
        {
            if s.contains('\0') {
                return Err(RuntimeError::Config(format!(
                    "{what} {s:?} contains a NUL byte"
                )));
            }
        }
        let cap_last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let (uid, gid) = user.unwrap_or((0, 0));
        Ok(ProcessSpec {
            argv: argv.iter().map(cstr).collect(),
            env: env.iter().map(cstr).collect(),
            path_dirs: path.split(':').map(str::to_string).collect(),
            cwd: cstr(if cwd.is_empty() { "/" } else { cwd }),
            uid,
            gid,
            caps: DEFAULT_CAPS.to_vec(),
            cap_last,
            seccomp: if seccomp_on {
                Some(seccomp::program())
            } else {
                None
            },
        })
    }
}

/// Everything the container's init needs, prepared before clone.
#[derive(Debug)]
pub(crate) struct Prepared {
    root: CString,
    mounts: Vec<MountOp>,
    proc_dir: PathBuf,
    root_path: PathBuf,
    hostname: Option<CString>,
    loopback: bool,
    pub proc: ProcessSpec,
}

fn ensure_mountpoint(root: &Path, target: &Path, dir: bool) -> Result<PathBuf, RuntimeError> {
    let p = resolve_in_root(root, target)
        .map_err(|e| RuntimeError::Config(format!("mount target {}: {e}", target.display())))?;
    if !p.starts_with(root) {
        return Err(RuntimeError::Config(format!(
            "mount target {} escapes the root",
            target.display()
        )));
    }
    if fs::symlink_metadata(&p).is_err() {
        let made = if dir {
            fs::create_dir_all(&p)
        } else {
            p.parent()
                .map(fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| {
                    fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&p)
                        .map(drop)
                })
        };
        made.map_err(|e| {
            RuntimeError::Config(format!(
                "cannot create mount point {} in the image directory: {e}",
                p.display()
            ))
        })?;
    }
    Ok(p)
}

impl Prepared {
    pub fn new(cfg: &ContainerConfig) -> Result<Self, RuntimeError> {
        let root_path = fs::canonicalize(&cfg.rootfs).map_err(|e| {
            RuntimeError::Config(format!(
                "rootfs {}: {e}; unpack the image first",
                cfg.rootfs.display()
            ))
        })?;
        if !root_path.is_dir() {
            return Err(RuntimeError::Config(format!(
                "rootfs {} is not a directory",
                root_path.display()
            )));
        }
        let r = &root_path;
        let mut mounts = Vec::new();
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        mounts.push(MountOp {
            src: cstr(r),
            dst: cstr(r),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            readonly: false,
        });
        let proc_dir = ensure_mountpoint(r, Path::new("proc"), true)?;
        mounts.push(MountOp {
            src: cstr("proc"),
            dst: cstr(&proc_dir),
            fstype: Some(cstr("proc")),
            flags: nosuid_nodev | libc::MS_NOEXEC,
            data: None,
            readonly: false,
        });
        let dev = ensure_mountpoint(r, Path::new("dev"), true)?;
        mounts.push(MountOp {
            src: cstr("tmpfs"),
            dst: cstr(&dev),
            fstype: Some(cstr("tmpfs")),
            flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
            data: Some(cstr("mode=755,size=65536k")),
            readonly: false,
        });
        let sys = ensure_mountpoint(r, Path::new("sys"), true)?;
        mounts.push(MountOp {
            src: cstr("sysfs"),
            dst: cstr(&sys),
            fstype: Some(cstr("sysfs")),
            flags: nosuid_nodev | libc::MS_NOEXEC | libc::MS_RDONLY,
            data: None,
            readonly: false,
        });
        let mut tmpfs: Vec<PathBuf> = Vec::new();
        if !cfg.read_only {
            tmpfs.push("/tmp".into());
            tmpfs.push("/run".into());
        }
        tmpfs.extend(cfg.tmpfs.iter().cloned());
        for t in &tmpfs {
            check_target(t)?;
            let p = ensure_mountpoint(r, t, true)?;
            mounts.push(MountOp {
                src: cstr("tmpfs"),
                dst: cstr(&p),
                fstype: Some(cstr("tmpfs")),
                flags: nosuid_nodev,
                data: Some(cstr("mode=1777")),
                readonly: false,
            });
        }
        for v in &cfg.volumes {
            check_target(&v.target)?;
            let meta = fs::metadata(&v.source).map_err(|e| {
                RuntimeError::Config(format!("volume source {}: {e}", v.source.display()))
            })?;
            let p = ensure_mountpoint(r, &v.target, meta.is_dir())?;
            mounts.push(MountOp {
                src: cstr(&v.source),
                dst: cstr(&p),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
                readonly: v.readonly,
            });
        }
        let user = match &cfg.user {
            Some(u) => Some(parse_user(u)?),
            None => None,
        };
        Ok(Prepared {
            root: cstr(r),
            mounts,
            proc_dir,
            root_path: root_path.clone(),
            hostname: Some(cstr(if cfg.hostname.is_empty() {
                &cfg.name
            } else {
                &cfg.hostname
            })),
            loopback: cfg.network == Network::None,
            proc: ProcessSpec::new(&cfg.argv, &cfg.env, &cfg.cwd, user, cfg.seccomp)?,
        })
    }

    /// Namespace flags for clone.
    pub fn clone_flags(&self) -> libc::c_int {
        let mut f =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if self.loopback {
            f |= libc::CLONE_NEWNET;
        }
        f
    }
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

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn chk(r: libc::c_int, what: impl FnOnce() -> String) -> Result<(), String> {
    if r < 0 {
        Err(os_err(&what()))
    } else {
        Ok(())
    }
}

fn do_mount(m: &MountOp) -> Result<(), String> {
    let r = unsafe {
        libc::mount(
            m.src.as_ptr(),
            m.dst.as_ptr(),
            m.fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            m.flags,
            m.data
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    chk(r, || format!("mount {:?} on {:?}", m.src, m.dst))?;
    if m.readonly {
        remount_ro(&m.dst)?;
    }
    Ok(())
}

fn remount_ro(dst: &CString) -> Result<(), String> {
    // Keep the existing nosuid/nodev/noexec flags; the kernel refuses to drop locked ones.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    if unsafe { libc::statvfs(dst.as_ptr(), &mut st) } == 0 {
        for (vf, mf) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
        ] {
            if st.f_flag & vf != 0 {
                flags |= mf;
            }
        }
    }
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    chk(r, || format!("remount {dst:?} read-only"))
}

fn setup_dev(root: &Path) -> Result<(), String> {
    let dev = root.join("dev");
    unsafe { libc::umask(0) };
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = cstr(dev.join(name));
        let r = unsafe {
            libc::mknod(
                p.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        chk(r, || format!("mknod /dev/{name}"))?;
    }
    for d in ["pts", "shm"] {
        let p = cstr(dev.join(d));
        chk(unsafe { libc::mkdir(p.as_ptr(), 0o755) }, || {
            format!("mkdir /dev/{d}")
        })?;
    }
    do_mount(&MountOp {
        src: cstr("devpts"),
        dst: cstr(dev.join("pts")),
        fstype: Some(cstr("devpts")),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(cstr("newinstance,ptmxmode=0666,mode=0620")),
        readonly: false,
    })?;
    do_mount(&MountOp {
        src: cstr("shm"),
        dst: cstr(dev.join("shm")),
        fstype: Some(cstr("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(cstr("mode=1777,size=65536k")),
        readonly: false,
    })?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = cstr(dev.join(name));
        let t = cstr(target);
        chk(unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) }, || {
            format!("symlink /dev/{name}")
        })?;
    }
    Ok(())
}

fn mask_paths(root: &Path) -> Result<(), String> {
    let null = cstr(root.join("dev/null"));
    for m in MASKED_PATHS {
        let p = root.join(&m[1..]);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let dst = cstr(&p);
        let r = if meta.is_dir() {
            unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    dst.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            }
        } else {
            unsafe {
                libc::mount(
                    null.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            }
        };
        chk(r, || format!("mask {m}"))?;
    }
    for m in READONLY_PATHS {
        let p = root.join(&m[1..]);
        if fs::symlink_metadata(&p).is_err() {
            continue;
        }
        let dst = cstr(&p);
        let r = unsafe {
            libc::mount(
                dst.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        chk(r, || format!("bind {m}"))?;
        remount_ro(&dst)?;
    }
    Ok(())
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up() -> Result<(), String> {
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    chk(s, || "socket for loopback".into())?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let r = unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut req) };
    chk(r, || "SIOCGIFFLAGS lo".into())?;
    req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    let r = unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS as _, &req) };
    unsafe { libc::close(s) };
    chk(r, || "bring loopback up".into())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops the bounding set to `caps`, switches uid/gid, sets the remaining capability sets,
/// no_new_privs and seccomp, then execs. Only returns on failure.
pub(crate) fn finish_and_exec(p: &ProcessSpec) -> String {
    match finish(p) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn finish(p: &ProcessSpec) -> Result<Never, String> {
    unsafe { libc::umask(0o022) };
    // RLIMIT_NOFILE like Docker's default (best effort: bounded by fs.nr_open).
    let lim = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    for cap in 0..=p.cap_last {
        if !p.caps.contains(&cap) {
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            chk(r, || format!("drop capability {cap} from the bounding set"))?;
        }
    }
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let groups = [p.gid];
    chk(unsafe { libc::setgroups(1, groups.as_ptr()) }, || {
        "setgroups".into()
    })?;
    chk(unsafe { libc::setresgid(p.gid, p.gid, p.gid) }, || {
        format!("setgid {}", p.gid)
    })?;
    chk(unsafe { libc::setresuid(p.uid, p.uid, p.uid) }, || {
        format!("setuid {}", p.uid)
    })?;
    if p.uid == 0 {
        let mut mask = [0u32; 2];
        for c in &p.caps {
            mask[(*c / 32) as usize] |= 1 << (c % 32);
        }
        let hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [0, 1].map(|i| CapData {
            effective: mask[i],
            permitted: mask[i],
            inheritable: 0,
        });
        let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) } as libc::c_int;
        chk(r, || "capset".into())?;
    }
    chk(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        || "no_new_privs".into(),
    )?;
    if unsafe { libc::chdir(p.cwd.as_ptr()) } < 0 {
        return Err(os_err(&format!("working directory {:?}", p.cwd)));
    }
    // Resolve the program through PATH inside the container.
    let prog = {
        let a0 = p.argv[0].to_bytes();
        if a0.contains(&b'/') {
            p.argv[0].clone()
        } else {
            let mut found = None;
            for d in &p.path_dirs {
                let c = cstr(Path::new(d).join(OsStr::from_bytes(a0)));
                if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                    found = Some(c);
                    break;
                }
            }
            found.ok_or_else(|| format!("executable {:?} not found in PATH", p.argv[0]))?
        }
    };
    let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    if let Some(prog) = &p.seccomp {
        seccomp::install(prog).map_err(|e| format!("seccomp: {e}"))?;
    }
    unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(os_err(&format!("exec {prog:?}")))
}

/// Writes `msg` to the error pipe and exits 127 (in a child).
pub(crate) fn child_fail(err_fd: RawFd, msg: &str) -> ! {
    unsafe {
        libc::write(err_fd, msg.as_ptr() as *const libc::c_void, msg.len());
        libc::_exit(127)
    }
}

/// Body of the container's init after clone. The mounts are set up while the monitor moves
/// us into the cgroup (a cgroup migration waits for an RCU grace period, several ms); before
/// creating the cgroup namespace and exec'ing, `sync_fd` is read until the monitor says the
/// move is done, so the limits are in place before any code of the image runs.
/// Failures go to `err_fd`.
pub(crate) fn container_init(p: &Prepared, sync_fd: RawFd, err_fd: RawFd, stdio: [RawFd; 3]) -> ! {
    if let Err(e) = setup(p, stdio) {
        child_fail(err_fd, &e);
    }
    let mut b = [0u8; 1];
    let n = unsafe { libc::read(sync_fd, b.as_mut_ptr() as *mut libc::c_void, 1) };
    if n != 1 {
        child_fail(
            err_fd,
            "monitor went away before moving the container into its cgroup",
        );
    }
    // The cgroup namespace is made after the monitor moved us into our cgroup, so the
    // container sees its own cgroup as the root.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
        child_fail(err_fd, &os_err("unshare cgroup namespace"));
    }
    let e = finish_and_exec(&p.proc);
    child_fail(err_fd, &e)
}

fn setup(p: &Prepared, stdio: [RawFd; 3]) -> Result<(), String> {
    let r = unsafe {
        libc::mount(
            c"".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    chk(r, || "make / private".into())?;
    for (i, m) in p.mounts.iter().enumerate() {
        do_mount(m)?;
        if i == 2 {
            setup_dev(&p.root_path)?;
        }
    }
    let _ = &p.proc_dir;
    mask_paths(&p.root_path)?;
    remount_ro(&p.root)?;
    for (i, fd) in stdio.iter().enumerate() {
        if *fd != i as RawFd {
            chk(unsafe { libc::dup2(*fd, i as RawFd) }, || {
                format!("dup2 fd {i}")
            })?;
        }
    }
    chk(unsafe { libc::chdir(p.root.as_ptr()) }, || {
        "chdir to root".into()
    })?;
    chk(
        unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } as libc::c_int,
        || "pivot_root".into(),
    )?;
    chk(
        unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) },
        || "detach old root".into(),
    )?;
    chk(unsafe { libc::chdir(c"/".as_ptr()) }, || "chdir /".into())?;
    if let Some(h) = &p.hostname {
        let b = h.to_bytes();
        chk(
            unsafe { libc::sethostname(b.as_ptr() as *const libc::c_char, b.len()) },
            || "sethostname".into(),
        )?;
    }
    if p.loopback {
        loopback_up()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_stays_in_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../..", r.join("a/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/evil/x")).unwrap(),
            r.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/a/up/tmp")).unwrap(),
            r.join("tmp")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("../../x")).unwrap(),
            r.join("x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/a/b")).unwrap(),
            r.join("a/b")
        );
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, Path::new("/loop")).is_err());
    }

    #[test]
    fn user_parsing() {
        assert_eq!(parse_user("1000").unwrap(), (1000, 1000));
        assert_eq!(parse_user("5:7").unwrap(), (5, 7));
        assert!(parse_user("bob")
            .unwrap_err()
            .to_string()
            .contains("--user"));
    }
}
