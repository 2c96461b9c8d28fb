//! The plan (prepared in the parent, before `clone`) and the child side that executes it.
//!
//! The child runs in a copy-on-write copy of the parent's memory. It must not allocate or take
//! locks: the parent may be multi-threaded and another thread may have held the allocator lock
//! at the moment of `clone`. Everything it needs is therefore in [`Plan`], built here.

use crate::sys::{self, SysResult};
use crate::{ExitStatus, Mount, Proc, Root, SandboxError, Spec, Stdio};
use libc::{c_char, c_int, c_ulong, c_void};
use std::cell::Cell;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

pub(crate) const STEP_READY: u32 = 1;
const STEP_SETUP: u32 = 2;
pub(crate) const STEP_EXEC: u32 = 3;
pub(crate) const STEP_PRE_EXEC: u32 = 4;

const STAGE_NONE: u32 = 0;
const STAGE_TARGET: u32 = 1;
const STAGE_SOURCE: u32 = 2;
const STAGE_MOUNT: u32 = 3;
const STAGE_RDONLY: u32 = 4;

/// What the child writes to the report pipe: which step failed and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Report {
    pub step: u32,
    pub desc: u32,
    pub stage: u32,
    pub errno: i32,
}

impl Report {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.step.to_ne_bytes());
        b[4..8].copy_from_slice(&self.desc.to_ne_bytes());
        b[8..12].copy_from_slice(&self.stage.to_ne_bytes());
        b[12..16].copy_from_slice(&self.errno.to_ne_bytes());
        b
    }

    fn from_bytes(b: &[u8; 16]) -> Report {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Report {
            step: u32::from_ne_bytes(w(0)),
            desc: u32::from_ne_bytes(w(4)),
            stage: u32::from_ne_bytes(w(8)),
            errno: i32::from_ne_bytes(w(12)),
        }
    }
}

/// Read one report; `Ok(None)` on EOF (the child exec'd, or died).
pub(crate) fn read_report(fd: c_int) -> SysResult<Option<Report>> {
    let mut buf = [0u8; 16];
    if sys::read_exact_or_eof(fd, &mut buf)? {
        Ok(Some(Report::from_bytes(&buf)))
    } else {
        Ok(None)
    }
}

/// Turn a child's report into the error the caller sees.
pub(crate) fn describe(r: &Report, program: &str, descriptions: &[String]) -> SandboxError {
    let source = io::Error::from_raw_os_error(r.errno);
    if r.step == STEP_EXEC {
        return SandboxError::Exec {
            program: program.to_string(),
            source,
        };
    }
    let mut step = descriptions
        .get(r.desc as usize)
        .cloned()
        .unwrap_or_else(|| format!("sandbox setup step {}", r.desc));
    let stage = match r.stage {
        STAGE_TARGET => Some("create mount point"),
        STAGE_SOURCE => Some("open source"),
        STAGE_MOUNT => Some("mount"),
        STAGE_RDONLY => Some("set read-only/nodev"),
        _ => None,
    };
    if let Some(stage) = stage {
        step.push_str(": ");
        step.push_str(stage);
    }
    SandboxError::Setup { step, source }
}

/// `waitpid` with EINTR retry; `None` if `WNOHANG` and still running.
pub(crate) fn waitpid(pid: c_int, flags: c_int) -> SysResult<Option<ExitStatus>> {
    loop {
        let mut status: c_int = 0;
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = sys::errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(ExitStatus::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(ExitStatus::Signaled(libc::WTERMSIG(status))));
        }
        // Stopped/continued (only with WUNTRACED/WCONTINUED, which we do not pass): keep waiting.
        if flags & libc::WNOHANG != 0 {
            return Ok(None);
        }
    }
}

/// A path inside the new root, split for component-wise, symlink-safe creation.
struct Target {
    /// "a", "a/b", "a/b/c"
    prefixes: Vec<CString>,
    /// "a", "b", "c"
    names: Vec<CString>,
}

#[derive(Clone, Copy)]
enum Create<'a> {
    No,
    Dir(u32),
    File,
    Symlink(&'a CStr),
}

enum OpKind {
    /// Bind the pre-opened detached tree of `src` onto the target.
    Bind {
        src: CString,
        src_fd: Cell<c_int>,
        file: bool,
        readonly: bool,
        recursive: bool,
        /// `nodev` (every [`crate::Mount::Bind`]; not the host's own nodes bound into /dev).
        nodev: bool,
    },
    /// `mount(source, ".", fstype, flags, data)` after `fchdir` to the target directory.
    Fs {
        source: &'static CStr,
        fstype: &'static CStr,
        flags: c_ulong,
        data: Option<CString>,
        mode: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: CString,
    },
    /// Hide a path if it exists: /dev/null over a file, an empty read-only tmpfs over a dir.
    Mask,
    /// Make a path read-only (recursively) if it exists.
    ReadonlySelf,
}

struct Op {
    target: Target,
    kind: OpKind,
    desc: u32,
}

enum RootPlan {
    Tmpfs { base: CString, desc: u32 },
    Dir { path: CString, desc: u32 },
}

struct JoinPlan {
    /// setns these, in order, in the child.
    ns: Vec<(OwnedFd, c_int, u32)>,
    /// setns'd by the parent around clone (pid namespaces apply to children only).
    pid_ns: Option<(OwnedFd, OwnedFd)>,
    root: OwnedFd,
    root_desc: u32,
}

/// Everything the child needs, prepared before `clone`.
pub(crate) struct Plan<'a> {
    clone_flags: c_int,
    join: Option<JoinPlan>,
    root: Option<RootPlan>,
    ops: Vec<Op>,
    descriptions: Vec<String>,
    desc_private: u32,
    desc_pivot: u32,
    readonly_root: Option<u32>,
    hostname: Option<(Vec<u8>, u32)>,
    loopback: Option<u32>,
    rlimits: Vec<(c_int, libc::rlimit, u32)>,
    cwd: CString,
    desc_cwd: u32,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    desc_ids: u32,
    caps: Option<u64>,
    last_cap: u32,
    desc_caps: u32,
    no_new_privs: bool,
    desc_nnp: u32,
    /// [`crate::Spec::user_namespace`]: the maps, the child's end of the socket pair over
    /// which it asks the parent to write them, and the step's description.
    userns: Option<crate::IdMap>,
    userns_sock: Cell<c_int>,
    desc_userns: u32,
    umask: u32,
    stdio: [c_int; 3],
    desc_stdio: u32,
    _null: Option<OwnedFd>,
    die_with_parent: bool,
    desc_pdeathsig: u32,
    join_cgroups: Vec<c_int>,
    desc_join_cgroups: u32,
    /// Premade namespaces to setns into (fd, flag, description), instead of clone flags.
    premade: Vec<(c_int, c_int, u32)>,
    /// In the child: the first masked directory's (empty, read-only) tmpfs, cloned for the
    /// others (-1 until one is mounted).
    mask_dir: Cell<c_int>,
    /// In the child: the host's /dev/null (`O_PATH`), cloned over each masked file that
    /// exists (-1 when nothing is masked).
    mask_null: Cell<c_int>,
    new_session: bool,
    desc_setsid: u32,
    /// [`Spec::console_socket`] (-1: none).
    console: c_int,
    desc_console: u32,
    /// In the child: the slave of the terminal it allocated (-1: none), its stdio.
    tty_slave: Cell<c_int>,
    /// Owns the strings `argv_ptrs` points to.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    exec_candidates: Vec<CString>,
    program: String,
    pre_exec: Option<&'a (dyn Fn() -> io::Result<()> + Send + Sync)>,
    desc_pre_exec: u32,
    seccomp: Option<&'a [libc::sock_filter]>,
    desc_seccomp: u32,
    wait_for_parent: bool,
    return_early: bool,
    /// `CLONE_VM | CLONE_VFORK` ([`crate::Spec::vfork`]).
    vfork: bool,
    /// With `return_early`: the caller's CPU set (given back to the child once released) and
    /// the same without the caller's CPU (where the child is sent after clone).
    cpus: Option<Box<(libc::cpu_set_t, libc::cpu_set_t)>>,
    desc_cpus: u32,
    /// `unshare(CLONE_NEWCGROUP)` after release (desc).
    cgroup_late: Option<u32>,
    desc_dumpable: u32,
    report_wr: Cell<c_int>,
    release_rd: Cell<c_int>,
    /// The parent's ends of the two pipes: closed in the child.
    report_rd: c_int,
    release_wr: c_int,
    preserve: Vec<c_int>,
    preserve_tmp: Vec<Cell<c_int>>,
    /// [`crate::Spec::exec_shim`]: the program is executed through it.
    shim: Option<ShimExec>,
}

/// What the child needs to execute the program through the exec shim (`sandbox/dmz/dmz.c`):
/// the shim's descriptor and its argv `REPORT_FD NCAND CAND... ARGV...`, whose first
/// string (the report pipe's descriptor, known only in the child) the child writes into
/// `fd_arg` before the exec.
struct ShimExec {
    fd: Cell<c_int>,
    fd_arg: Box<[Cell<u8>; 12]>,
    _strings: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
}

impl ShimExec {
    fn new(shim_fd: c_int, candidates: &[CString], argv: &[*const c_char]) -> ShimExec {
        let fd_arg: Box<[Cell<u8>; 12]> = Box::new(std::array::from_fn(|_| Cell::new(0)));
        let ncand = CString::new(candidates.len().to_string()).expect("digits");
        let mut argv_ptrs = vec![fd_arg.as_ptr().cast::<c_char>(), ncand.as_ptr()];
        argv_ptrs.extend(candidates.iter().map(|c| c.as_ptr()));
        // `argv` ends with its NULL.
        argv_ptrs.extend_from_slice(argv);
        ShimExec {
            fd: Cell::new(shim_fd),
            fd_arg,
            _strings: vec![ncand],
            argv_ptrs,
        }
    }

    /// Writes `fd` in decimal (NUL-terminated) into the shim's first argument. No allocation.
    fn set_report_fd(&self, fd: c_int) {
        let mut digits = [0u8; 11];
        let (mut n, mut i) = (fd.max(0) as u32, digits.len());
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (k, d) in digits[i..].iter().enumerate() {
            self.fd_arg[k].set(*d);
        }
        self.fd_arg[digits.len() - i].set(0);
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SandboxError {
    SandboxError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn cstring(field: &str, s: &[u8]) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| invalid(field, "contains a NUL byte; remove it"))
}

fn target(field: &str, p: &Path) -> Result<Target, SandboxError> {
    if !p.is_absolute() {
        return Err(invalid(
            field,
            format!(
                "{} is not absolute; give the full path inside the sandbox",
                p.display()
            ),
        ));
    }
    let mut prefix: Vec<u8> = Vec::new();
    let mut t = Target {
        prefixes: Vec::new(),
        names: Vec::new(),
    };
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(
                    field,
                    format!("{} contains '..'; give a normalized path", p.display()),
                ))
            }
            Component::Normal(n) => {
                if !prefix.is_empty() {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(n.as_bytes());
                t.prefixes.push(cstring(field, &prefix)?);
                t.names.push(cstring(field, n.as_bytes())?);
            }
        }
    }
    if t.names.is_empty() {
        return Err(invalid(
            field,
            "is the root directory; mount over / is not supported, use Root::Dir instead",
        ));
    }
    Ok(t)
}

fn abs_target(s: &str) -> Target {
    target("internal", Path::new(s)).expect("internal paths are valid")
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn ns_flag(name: &str) -> c_int {
    match name {
        "mnt" => libc::CLONE_NEWNS,
        "pid" => libc::CLONE_NEWPID,
        "net" => libc::CLONE_NEWNET,
        "uts" => libc::CLONE_NEWUTS,
        "ipc" => libc::CLONE_NEWIPC,
        "cgroup" => libc::CLONE_NEWCGROUP,
        _ => 0,
    }
}

/// Masked and read-only /proc paths (runc's defaults as listed in the design contract).
pub(crate) const PROC_MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/acpi",
    "/proc/latency_stats",
    "/proc/timer_stats",
];
const PROC_READONLY: &[&str] = &[
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
pub(crate) const SYS_MASKED: &[&str] = &["/sys/firmware", "/sys/devices/virtual/powercap"];
pub(crate) const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

impl<'a> Plan<'a> {
    fn desc(&mut self, s: String) -> u32 {
        self.descriptions.push(s);
        (self.descriptions.len() - 1) as u32
    }

    fn push_op(&mut self, target: Target, kind: OpKind, desc: String) {
        let desc = self.desc(desc);
        self.ops.push(Op { target, kind, desc });
    }

    fn push_bind(
        &mut self,
        src: &Path,
        dst: Target,
        readonly: bool,
        recursive: bool,
        desc: String,
    ) -> Result<(), SandboxError> {
        let meta = std::fs::metadata(src).map_err(|e| SandboxError::Setup {
            step: format!("{desc}: open source"),
            source: e,
        })?;
        let src = cstring("mounts.src", src.as_os_str().as_bytes())?;
        self.push_bind_op(src, dst, !meta.is_dir(), readonly, recursive, true, desc);
        Ok(())
    }

    /// A bind of `src` (a file, or a directory) onto `dst`.
    #[allow(clippy::too_many_arguments)]
    fn push_bind_op(
        &mut self,
        src: CString,
        dst: Target,
        file: bool,
        readonly: bool,
        recursive: bool,
        nodev: bool,
        desc: String,
    ) {
        let kind = OpKind::Bind {
            src,
            src_fd: Cell::new(-1),
            file,
            readonly,
            recursive,
            nodev,
        };
        self.push_op(dst, kind, desc);
    }

    fn push_fs(
        &mut self,
        dst: &str,
        fstype: &'static CStr,
        flags: c_ulong,
        data: Option<&str>,
        mode: u32,
    ) {
        let data = data.map(|d| CString::new(d).expect("internal mount data has no NUL"));
        self.push_op(
            abs_target(dst),
            OpKind::Fs {
                source: fstype,
                fstype,
                flags,
                data,
                mode,
            },
            format!("mount {} at {dst}", fstype.to_string_lossy()),
        );
    }

    /// Validate `spec` and prepare everything the child needs.
    pub(crate) fn new(
        spec: &'a Spec,
        join: Option<(crate::Pid, crate::Namespaces)>,
    ) -> Result<Plan<'a>, SandboxError> {
        if spec.argv.is_empty() {
            return Err(invalid(
                "argv",
                "is empty; give at least the program to run",
            ));
        }
        let mut argv = Vec::with_capacity(spec.argv.len());
        for (i, a) in spec.argv.iter().enumerate() {
            argv.push(cstring(&format!("argv[{i}]"), a.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(spec.env.len());
        let mut path_var: Option<&OsStr> = None;
        for (i, (k, v)) in spec.env.iter().enumerate() {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(invalid(
                    format!("env[{i}]"),
                    format!("name {k:?} is empty or contains '='; use a plain variable name"),
                ));
            }
            if k == "PATH" {
                path_var = Some(v);
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(cstring(&format!("env[{i}]"), &kv)?);
        }
        let prog = spec.argv[0].as_bytes();
        let mut exec_candidates = Vec::new();
        let program = if prog.contains(&b'/') {
            exec_candidates.push(argv[0].clone());
            String::from_utf8_lossy(prog).into_owned()
        } else {
            let path = path_var.map(OsStr::as_bytes).unwrap_or(
                b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".as_slice(),
            );
            for dir in path.split(|&b| b == b':') {
                let mut c = if dir.is_empty() {
                    Vec::new()
                } else {
                    let mut d = dir.to_vec();
                    d.push(b'/');
                    d
                };
                c.extend_from_slice(prog);
                exec_candidates.push(cstring("env.PATH", &c)?);
            }
            format!(
                "{} (searched PATH={})",
                String::from_utf8_lossy(prog),
                String::from_utf8_lossy(path)
            )
        };
        let cwd = cstring("cwd", spec.cwd.as_os_str().as_bytes())?;
        if !spec.cwd.is_absolute() {
            return Err(invalid(
                "cwd",
                format!(
                    "{} is not absolute; give the full path inside the sandbox",
                    spec.cwd.display()
                ),
            ));
        }

        let null = if [&spec.stdin, &spec.stdout, &spec.stderr]
            .iter()
            .any(|s| matches!(s, Stdio::Null))
        {
            let fd = sys::open(c"/dev/null", libc::O_RDWR)
                .map_err(|e| SandboxError::os("open /dev/null", e))?;
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            None
        };
        let fd_of = |s: &Stdio| match s {
            Stdio::Inherit => -1,
            Stdio::Null => null.as_ref().map_or(-1, |f| f.as_raw_fd()),
            Stdio::Fd(f) => f.as_raw_fd(),
        };
        let stdio = [fd_of(&spec.stdin), fd_of(&spec.stdout), fd_of(&spec.stderr)];

        let caps = match &spec.capabilities {
            None => None,
            Some(list) => {
                let mut mask = 0u64;
                for (i, &c) in list.iter().enumerate() {
                    if c > 63 {
                        return Err(invalid(
                            format!("capabilities[{i}]"),
                            format!("{c} is not a capability number; use the constants in distill_sandbox::cap"),
                        ));
                    }
                    mask |= 1 << c;
                }
                Some(mask)
            }
        };
        let last_cap = crate::caps::last_cap();

        let argv_ptrs: Vec<*const c_char> = argv
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let shim = spec
            .exec_shim
            .map(|fd| ShimExec::new(fd, &exec_candidates, &argv_ptrs));
        let envp_ptrs = envp
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();

        let mut plan = Plan {
            clone_flags: 0,
            join: None,
            root: None,
            ops: Vec::new(),
            descriptions: Vec::new(),
            desc_private: 0,
            desc_pivot: 0,
            readonly_root: None,
            hostname: None,
            loopback: None,
            rlimits: Vec::new(),
            cwd,
            desc_cwd: 0,
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            desc_ids: 0,
            caps,
            last_cap,
            desc_caps: 0,
            no_new_privs: spec.no_new_privs,
            desc_nnp: 0,
            userns: spec.user_namespace,
            userns_sock: Cell::new(-1),
            desc_userns: 0,
            umask: spec.umask & 0o777,
            stdio,
            desc_stdio: 0,
            _null: null,
            die_with_parent: spec.die_with_parent,
            desc_pdeathsig: 0,
            join_cgroups: spec.join_cgroups.iter().map(|f| f.as_raw_fd()).collect(),
            desc_join_cgroups: 0,
            premade: Vec::new(),
            mask_dir: Cell::new(-1),
            mask_null: Cell::new(-1),
            new_session: spec.new_session,
            desc_setsid: 0,
            console: spec.console_socket.as_ref().map_or(-1, |f| f.as_raw_fd()),
            desc_console: 0,
            tty_slave: Cell::new(-1),
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            exec_candidates,
            program,
            pre_exec: spec.pre_exec.as_deref(),
            desc_pre_exec: 0,
            seccomp: spec.seccomp.as_ref().map(|f| f.instructions()),
            desc_seccomp: 0,
            wait_for_parent: spec.wait_for_parent,
            return_early: spec.return_early,
            vfork: spec.vfork,
            shim,
            cpus: None,
            desc_cpus: 0,
            cgroup_late: None,
            desc_dumpable: 0,
            report_wr: Cell::new(-1),
            release_rd: Cell::new(-1),
            report_rd: -1,
            release_wr: -1,
            preserve: spec.preserve_fds.iter().map(|f| f.as_raw_fd()).collect(),
            preserve_tmp: spec.preserve_fds.iter().map(|_| Cell::new(-1)).collect(),
        };
        plan.desc_cwd = plan.desc(format!("chdir {}", spec.cwd.display()));
        plan.desc_ids = plan.desc(format!(
            "set uid {} gid {} groups {:?}",
            spec.uid, spec.gid, spec.groups
        ));
        plan.desc_caps = plan.desc(format!("set capabilities {:?}", spec.capabilities));
        plan.desc_nnp = plan.desc("set no_new_privs".into());
        if let Some(m) = spec.user_namespace {
            if join.is_some() || spec.vfork || spec.return_early || m.count == 0 {
                return Err(invalid(
                    "user_namespace",
                    "is set for spawn_in, with vfork or return_early, or maps no id; unset one",
                ));
            }
            plan.desc_userns = plan.desc(format!(
                "enter a new user namespace (ids 0..{} are host uid {}.., gid {}..)",
                m.count, m.host_uid, m.host_gid
            ));
        }
        plan.desc_stdio = plan.desc("set up stdin/stdout/stderr".into());
        plan.desc_pdeathsig = plan.desc("set parent-death signal".into());
        plan.desc_join_cgroups =
            plan.desc("move into the cgroup (write 0 to its tasks file)".into());
        plan.desc_setsid = plan.desc("start a new session (setsid)".into());
        plan.desc_console = plan.desc(
            "allocate the terminal (/dev/pts/ptmx, TIOCSCTTY, send the master to the console socket)"
                .into(),
        );
        if spec.console_socket.is_some() && !spec.new_session {
            return Err(invalid(
                "console_socket",
                "is set without new_session: a controlling terminal needs a session of its own",
            ));
        }
        plan.desc_pre_exec = plan.desc("pre_exec hook".into());
        plan.desc_seccomp = plan.desc(if spec.no_new_privs {
            "install the seccomp filter".into()
        } else {
            "install the seccomp filter (without no_new_privs it needs CAP_SYS_ADMIN; set no_new_privs)".into()
        });
        plan.desc_dumpable = plan.desc("set PR_SET_DUMPABLE 0".into());
        if spec.vfork && (spec.wait_for_parent || spec.return_early || spec.pre_exec.is_some()) {
            return Err(invalid(
                "vfork",
                "is set with wait_for_parent, return_early or pre_exec, which need the caller to run while the child waits; unset one",
            ));
        }
        if spec.return_early {
            plan.cpus = sys::cpus_and_others().map(Box::new);
            plan.desc_cpus = plan.desc("take back the CPU set of the caller".into());
        }
        if let Some(f) = &spec.seccomp {
            let max = crate::seccomp::BPF_MAXINSNS;
            if f.instructions().is_empty() || f.instructions().len() > max {
                return Err(invalid(
                    "seccomp",
                    format!(
                        "has {} instructions; a filter needs 1 to {max}",
                        f.instructions().len()
                    ),
                ));
            }
        }
        for (i, &(res, soft, hard)) in spec.rlimits.iter().enumerate() {
            if soft > hard {
                return Err(invalid(
                    format!("rlimits[{i}]"),
                    format!("soft limit {soft} is above hard limit {hard}; lower it"),
                ));
            }
            let d = plan.desc(format!("setrlimit {res:?} {soft} {hard}"));
            plan.rlimits.push((
                res as c_int,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                },
                d,
            ));
        }

        match join {
            Some((pid, ns)) => plan.prepare_join(pid, ns)?,
            None => plan.prepare_new(spec)?,
        }
        Ok(plan)
    }

    fn prepare_join(&mut self, pid: crate::Pid, ns: crate::Namespaces) -> Result<(), SandboxError> {
        let open_ns = |name: &str| -> Result<OwnedFd, SandboxError> {
            let p = format!("/proc/{pid}/ns/{name}");
            let c = CString::new(p.clone()).expect("no NUL");
            sys::open(&c, libc::O_RDONLY)
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .map_err(|e| SandboxError::os(format!("open {p} (is process {pid} running?)"), e))
        };
        let mut fds = Vec::new();
        // Mount last: after it, paths resolve in the target's world.
        for (sel, name) in [
            (ns.cgroup, "cgroup"),
            (ns.ipc, "ipc"),
            (ns.uts, "uts"),
            (ns.net, "net"),
            (ns.mount, "mnt"),
        ] {
            if sel {
                let fd = open_ns(name)?;
                let d = self.desc(format!("join {name} namespace of process {pid}"));
                fds.push((fd, ns_flag(name), d));
            }
        }
        let pid_ns = if ns.pid {
            let own = sys::open(c"/proc/thread-self/ns/pid", libc::O_RDONLY)
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .map_err(|e| SandboxError::os("open /proc/thread-self/ns/pid", e))?;
            Some((open_ns("pid")?, own))
        } else {
            None
        };
        let rp = format!("/proc/{pid}/root");
        let root = sys::open(
            &CString::new(rp.clone()).expect("no NUL"),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .map_err(|e| SandboxError::os(format!("open {rp} (is process {pid} running?)"), e))?;
        let root_desc = self.desc(format!("chroot into the root of process {pid}"));
        self.join = Some(JoinPlan {
            ns: fds,
            pid_ns,
            root,
            root_desc,
        });
        Ok(())
    }

    fn prepare_new(&mut self, spec: &Spec) -> Result<(), SandboxError> {
        let ns = spec.namespaces;
        if !ns.mount {
            return Err(invalid(
                "namespaces.mount",
                "is false; spawn always builds a new root and needs a mount namespace, set it",
            ));
        }
        let mut flags = libc::CLONE_NEWNS;
        if ns.pid {
            flags |= libc::CLONE_NEWPID;
        }
        if ns.net {
            flags |= libc::CLONE_NEWNET;
        }
        if ns.uts {
            flags |= libc::CLONE_NEWUTS;
        }
        if ns.ipc {
            flags |= libc::CLONE_NEWIPC;
        }
        if spec.cgroup_ns_after_release {
            // A cgroup to enter first: the parent's move (before the release) or its own.
            let entered = spec.wait_for_parent || !spec.join_cgroups.is_empty();
            if !ns.cgroup || !entered {
                return Err(invalid(
                    "cgroup_ns_after_release",
                    "needs namespaces.cgroup and a cgroup to enter first (wait_for_parent, or join_cgroups); set them",
                ));
            }
            self.cgroup_late = Some(self.desc("create the cgroup namespace".into()));
        } else if ns.cgroup {
            flags |= libc::CLONE_NEWCGROUP;
        }
        self.clone_flags = flags;
        self.desc_private = self.desc("make / rprivate in the new mount namespace".into());
        self.desc_pivot = self.desc("pivot_root into the new root".into());
        if let Some(h) = &spec.hostname {
            if !ns.uts {
                return Err(invalid(
                    "hostname",
                    "is set but namespaces.uts is false; enable the uts namespace",
                ));
            }
            if h.len() > 64 || h.contains('\0') {
                return Err(invalid(
                    "hostname",
                    format!("{h:?} is longer than 64 bytes or contains NUL; shorten it"),
                ));
            }
            let d = self.desc(format!("set hostname {h}"));
            self.hostname = Some((h.as_bytes().to_vec(), d));
        }
        if spec.loopback {
            if !ns.net {
                return Err(invalid(
                    "loopback",
                    "is set but namespaces.net is false; enable the net namespace (the host's lo is left alone)",
                ));
            }
            self.loopback = Some(self.desc("bring up lo".into()));
        }
        if let Some(p) = &spec.premade {
            for (fd, flag, wanted, what) in [
                (&p.net, libc::CLONE_NEWNET, ns.net, "net"),
                (&p.ipc, libc::CLONE_NEWIPC, ns.ipc, "ipc"),
            ] {
                let Some(fd) = fd else { continue };
                if !wanted {
                    return Err(invalid(
                        "premade",
                        format!("holds a {what} namespace but namespaces.{what} is false; set it"),
                    ));
                }
                self.clone_flags &= !flag;
                let d = self.desc(format!("join the premade {what} namespace"));
                self.premade.push((fd.as_raw_fd(), flag, d));
            }
            if p.net.is_some() && p.loopback {
                self.loopback = None;
            }
        }
        if spec.readonly_root {
            self.readonly_root = Some(self.desc("remount the new root read-only".into()));
        }
        self.root = Some(match &spec.root {
            Root::Tmpfs => {
                let base = ["/tmp", "/run", "/mnt", "/var/tmp", "/media", "/srv", "/opt"]
                    .into_iter()
                    .find(|p| Path::new(p).is_dir())
                    .ok_or_else(|| {
                        invalid(
                            "root",
                            "Root::Tmpfs needs a host directory to mount on (one of /tmp /run /mnt); create /tmp",
                        )
                    })?;
                let desc = self.desc(format!("mount the tmpfs root at {base}"));
                RootPlan::Tmpfs {
                    base: CString::new(base).expect("no NUL"),
                    desc,
                }
            }
            Root::Dir(p) => {
                if !p.is_absolute() {
                    return Err(invalid(
                        "root",
                        format!(
                            "Root::Dir({}) is not absolute; give an absolute host path",
                            p.display()
                        ),
                    ));
                }
                let desc = self.desc(format!("bind mount the root {} onto itself", p.display()));
                RootPlan::Dir {
                    path: cstring("root", p.as_os_str().as_bytes())?,
                    desc,
                }
            }
        });

        const NOSUID: c_ulong = libc::MS_NOSUID;
        const NODEV: c_ulong = libc::MS_NODEV;
        const NOEXEC: c_ulong = libc::MS_NOEXEC;
        if spec.dev {
            self.push_fs(
                "/dev",
                c"tmpfs",
                NOSUID
                    | libc::MS_STRICTATIME
                    | if spec.user_namespace.is_some() {
                        NODEV
                    } else {
                        0
                    },
                Some("mode=0755"),
                0o755,
            );
            // Device nodes, not directories: no need to look (a missing one fails to open in
            // the child, with the same description).
            for n in DEV_NODES {
                let host = format!("/dev/{n}");
                self.push_bind_op(
                    CString::new(host.as_str()).expect("no NUL"),
                    abs_target(&host),
                    true,
                    false,
                    false,
                    false,
                    format!("bind mount {host} at {host}"),
                );
            }
            self.push_fs(
                "/dev/pts",
                c"devpts",
                NOSUID | NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
                0o755,
            );
            self.push_fs(
                "/dev/shm",
                c"tmpfs",
                NOSUID | NODEV,
                Some("mode=1777"),
                0o1777,
            );
            self.push_fs(
                "/dev/mqueue",
                c"mqueue",
                NOSUID | NODEV | NOEXEC,
                None,
                0o755,
            );
            for (dst, to) in [
                ("/dev/ptmx", "pts/ptmx"),
                ("/dev/fd", "/proc/self/fd"),
                ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"),
            ] {
                self.push_op(
                    abs_target(dst),
                    OpKind::Symlink {
                        target: CString::new(to).expect("no NUL"),
                    },
                    format!("symlink {dst} -> {to}"),
                );
            }
        }
        if spec.proc != Proc::None {
            self.push_fs("/proc", c"proc", NOSUID | NODEV | NOEXEC, None, 0o555);
        }
        let mask = |plan: &mut Plan, p: &str| {
            plan.push_op(abs_target(p), OpKind::Mask, format!("mask {p}"))
        };
        if spec.proc == Proc::Masked {
            for p in PROC_MASKED {
                mask(self, p);
            }
            for p in PROC_READONLY {
                self.push_op(
                    abs_target(p),
                    OpKind::ReadonlySelf,
                    format!("make {p} read-only"),
                );
            }
        }
        if spec.sys {
            self.push_fs(
                "/sys",
                c"sysfs",
                libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                None,
                0o555,
            );
            if spec.proc == Proc::Masked {
                for p in SYS_MASKED {
                    mask(self, p);
                }
            }
        }
        for (i, m) in spec.mounts.iter().enumerate() {
            let field = format!("mounts[{i}].dst");
            match m {
                Mount::Bind {
                    src,
                    dst,
                    readonly,
                    recursive,
                } => {
                    if !src.is_absolute() {
                        return Err(invalid(
                            format!("mounts[{i}].src"),
                            format!(
                                "{} is not absolute; give an absolute host path",
                                src.display()
                            ),
                        ));
                    }
                    let t = target(&field, dst)?;
                    let ro = if *readonly { " (read-only)" } else { "" };
                    self.push_bind(
                        src,
                        t,
                        *readonly,
                        *recursive,
                        format!("bind mount {} at {}{ro}", path_str(src), path_str(dst)),
                    )?;
                }
                Mount::Tmpfs { dst, size, mode } => {
                    let t = target(&field, dst)?;
                    let mut data = format!("mode={:o}", mode & 0o7777);
                    if let Some(s) = size {
                        data.push_str(&format!(",size={s}"));
                    }
                    self.push_op(
                        t,
                        OpKind::Fs {
                            source: c"tmpfs",
                            fstype: c"tmpfs",
                            flags: NOSUID | NODEV,
                            data: Some(CString::new(data).expect("no NUL")),
                            mode: 0o755,
                        },
                        format!("mount tmpfs at {}", path_str(dst)),
                    );
                }
                Mount::Dir { dst, mode } => {
                    let t = target(&field, dst)?;
                    self.push_op(
                        t,
                        OpKind::Dir {
                            mode: mode & 0o7777,
                        },
                        format!("create directory {}", path_str(dst)),
                    );
                }
                Mount::Symlink { target: to, dst } => {
                    let t = target(&field, dst)?;
                    let to_c = cstring(&format!("mounts[{i}].target"), to.as_os_str().as_bytes())?;
                    self.push_op(
                        t,
                        OpKind::Symlink { target: to_c },
                        format!("symlink {} -> {}", path_str(dst), path_str(to)),
                    );
                }
            }
        }
        Ok(())
    }

    /// Clone the child and wait for its first report.
    pub(crate) fn spawn(mut self) -> Result<crate::Child, SandboxError> {
        let (rep_rd, rep_wr) = pipe()?;
        let userns = match self.userns {
            Some(_) => {
                let (parent, child) = socketpair()?;
                self.userns_sock.set(child.as_raw_fd());
                Some((parent, child))
            }
            None => None,
        };
        let release = if self.wait_for_parent {
            Some(pipe()?)
        } else {
            None
        };
        self.report_wr.set(rep_wr.as_raw_fd());
        self.report_rd = rep_rd.as_raw_fd();
        self.release_rd
            .set(release.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()));
        self.release_wr = release.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());

        const STACK: usize = 256 * 1024;
        let mut stack = vec![0u8; STACK];
        let top = unsafe { stack.as_mut_ptr().add(STACK) };
        let top = ((top as usize) & !15usize) as *mut c_void;

        let pid_ns = self.join.as_ref().and_then(|j| j.pid_ns.as_ref());
        if let Some((target, _)) = pid_ns {
            sys::setns(target.as_raw_fd(), libc::CLONE_NEWPID).map_err(|e| {
                SandboxError::os("join the target's pid namespace (for children)", e)
            })?;
        }
        let mut flags = self.clone_flags | libc::SIGCHLD;
        // (With vfork: no handler of ours may run in the child, on our memory, before it has
        // reset them all; it starts with every signal blocked.)
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        if self.vfork {
            flags |= libc::CLONE_VM | libc::CLONE_VFORK;
            // SAFETY: a full set, and a place for the old mask.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old_mask);
            }
        }
        // SAFETY: `child_main` runs on its own stack and never returns (it execs or _exits);
        // with vfork, this thread waits until then and the stack outlives it.
        let pid =
            unsafe { libc::clone(child_main, top, flags, &self as *const Plan as *mut c_void) };
        let clone_errno = sys::errno();
        if self.vfork {
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        }
        if let Some((_, own)) = pid_ns {
            if let Err(e) = sys::setns(own.as_raw_fd(), libc::CLONE_NEWPID) {
                if pid > 0 {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let _ = waitpid(pid, 0);
                }
                return Err(SandboxError::os("return to our own pid namespace", e));
            }
        }
        drop(stack);
        if pid < 0 {
            let hint = if clone_errno == libc::ENOMEM && pid_ns.is_some() {
                " (the target's pid namespace has no init any more)"
            } else {
                ""
            };
            return Err(SandboxError::os(format!("clone{hint}"), clone_errno));
        }
        drop(rep_wr);
        if let (Some((parent, child_end)), Some(map)) = (userns, self.userns) {
            drop(child_end);
            write_id_maps(pid, parent, &map)?;
        }
        let release_wr = release.map(|(r, w)| {
            drop(r);
            w
        });
        let mut child = crate::Child {
            pid: crate::Pid::from_raw(pid),
            status: None,
            report: None,
            release: release_wr,
            ready_pending: false,
            program: std::mem::take(&mut self.program),
            descriptions: std::mem::take(&mut self.descriptions),
        };
        if let Some(c) = &self.cpus {
            // Beside the caller, not behind it (best effort; the child takes the caller's set
            // back once released).
            // SAFETY: a valid cpu set and our child's pid.
            unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &c.1) };
        }
        if self.return_early {
            // READY (or the setup error) is read by `release`.
            child.report = Some(rep_rd);
            child.ready_pending = true;
            return Ok(child);
        }
        child.read_report(rep_rd, true)?;
        if child.release.is_some() && child.report.is_none() && child.status.is_none() {
            // Expected READY but got EOF: the child died before it could wait.
            let status = waitpid(pid, 0)
                .map_err(|e| SandboxError::os(format!("waitpid {pid}"), e))?
                .unwrap_or(ExitStatus::Exited(-1));
            child.status = Some(status);
            child.release = None;
            return Err(SandboxError::ChildDied { pid, status });
        }
        Ok(child)
    }
}

fn socketpair() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as c_int; 2];
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    if unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) } < 0 {
        return Err(SandboxError::os("socketpair", sys::errno()));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The parent's side of [`crate::Spec::user_namespace`]: waits until the child has entered
/// its new user namespace, writes its `uid_map` and `gid_map` (one line each: a process may
/// write a map once) and lets it go on. If the child fails before (EOF), the caller reads
/// why from the report pipe. If the maps cannot be written, the child is killed and reaped.
fn write_id_maps(pid: c_int, sock: OwnedFd, map: &crate::IdMap) -> Result<(), SandboxError> {
    let mut b = [0u8; 1];
    match sys::read_exact_or_eof(sock.as_raw_fd(), &mut b) {
        Ok(true) => {}
        // It failed (or died) before: the report pipe says why.
        Ok(false) => return Ok(()),
        Err(e) => {
            return Err(SandboxError::os(
                "read the sandbox's user namespace socket",
                e,
            ))
        }
    }
    let write = |file: &str, host: u32| -> Result<(), SandboxError> {
        let path = format!("/proc/{pid}/{file}");
        let line = format!("0 {host} {}\n", map.count);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
            .map_err(|e| SandboxError::Os {
                op: format!("write {line:?} to {path}"),
                source: e,
            })
    };
    let r = write("uid_map", map.host_uid).and_then(|()| write("gid_map", map.host_gid));
    if let Err(e) = r {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = waitpid(pid, 0);
        return Err(e);
    }
    // (If the child died meanwhile, the report pipe says so.)
    sys::write_all(sock.as_raw_fd(), &[1]);
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as c_int; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SandboxError::os("pipe2", sys::errno()));
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

// ---------------------------------------------------------------------------------------------
// Child side. Nothing below this line may allocate.

struct Fail(Report);

fn setup(desc: u32, stage: u32) -> impl Fn(i32) -> Fail {
    move |errno| {
        Fail(Report {
            step: STEP_SETUP,
            desc,
            stage,
            errno,
        })
    }
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: the parent passed a pointer to a Plan that lives in our copy of its memory (or,
    // with vfork, in its memory itself, which it does not use until we exec or exit).
    let plan = unsafe { &*(arg as *const Plan) };
    let Fail(report) = plan.child();
    if report.step != 0 {
        sys::write_all(plan.report_wr.get(), &report.to_bytes());
    }
    unsafe { libc::_exit(127) }
}

impl Plan<'_> {
    /// Runs in the child; returns only on failure.
    fn child(&self) -> Fail {
        match self.child_setup() {
            Ok(()) => self.child_exec(),
            Err(f) => f,
        }
    }

    fn child_setup(&self) -> Result<(), Fail> {
        reset_signals();
        sys::close(self.report_rd);
        sys::close(self.release_wr);
        if self.die_with_parent {
            sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong)
                .map_err(setup(self.desc_pdeathsig, STAGE_NONE))?;
        }
        if self.join.is_some() {
            // CVE-2019-5736: we are a copy of the caller's binary until execve; keep the
            // target's processes from opening us through /proc/<pid>/exe.
            sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(setup(self.desc_dumpable, STAGE_NONE))?;
        }
        // Into the cgroup before anything else runs (after becoming non-dumpable: joining puts
        // us next to the target's processes).
        for fd in &self.join_cgroups {
            if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(setup(self.desc_join_cgroups, STAGE_NONE)(sys::errno()));
            }
            sys::close(*fd);
        }
        unsafe { libc::umask(0) };
        if let Some(j) = &self.join {
            for (fd, flag, desc) in &j.ns {
                sys::setns(fd.as_raw_fd(), *flag).map_err(setup(*desc, STAGE_NONE))?;
            }
            let f = setup(j.root_desc, STAGE_NONE);
            sys::fchdir(j.root.as_raw_fd()).map_err(&f)?;
            sys::chroot_dot().map_err(&f)?;
        } else {
            for (fd, flag, desc) in &self.premade {
                sys::setns(*fd, *flag).map_err(setup(*desc, STAGE_NONE))?;
            }
            self.child_build_root()?;
            if self.userns.is_some() {
                self.child_userns()?;
            }
        }
        if self.wait_for_parent {
            sys::write_all(
                self.report_wr.get(),
                &Report {
                    step: STEP_READY,
                    desc: 0,
                    stage: 0,
                    errno: 0,
                }
                .to_bytes(),
            );
            let mut b = [0u8; 1];
            match sys::read_exact_or_eof(self.release_rd.get(), &mut b) {
                Ok(true) => {}
                // The parent dropped the Child (or died): do not run the program.
                _ => unsafe { libc::_exit(1) },
            }
            sys::close(self.release_rd.get());
            self.release_rd.set(-1);
        }
        if let Some(c) = &self.cpus {
            // SAFETY: a valid cpu set.
            let r =
                unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &c.0) };
            if r < 0 {
                return Err(setup(self.desc_cpus, STAGE_NONE)(sys::errno()));
            }
        }
        if self.new_session && unsafe { libc::setsid() } < 0 {
            return Err(setup(self.desc_setsid, STAGE_NONE)(sys::errno()));
        }
        if self.console >= 0 {
            self.child_console()?;
        }
        if let Some(desc) = self.cgroup_late {
            if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
                return Err(setup(desc, STAGE_NONE)(sys::errno()));
            }
        }
        for (res, lim, desc) in &self.rlimits {
            if unsafe { libc::setrlimit(*res as _, lim) } < 0 {
                return Err(setup(*desc, STAGE_NONE)(sys::errno()));
            }
        }
        sys::chdir(&self.cwd).map_err(setup(self.desc_cwd, STAGE_NONE))?;
        self.child_ids()?;
        if self.userns.is_some() && self.die_with_parent {
            // Changing the effective uid (to the namespace's root) cleared it.
            sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong)
                .map_err(setup(self.desc_pdeathsig, STAGE_NONE))?;
        }
        if self.no_new_privs {
            sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(setup(self.desc_nnp, STAGE_NONE))?;
        }
        unsafe { libc::umask(self.umask) };
        self.child_fds()?;
        if let Some(prog) = self.seccomp {
            crate::seccomp::install(prog).map_err(setup(self.desc_seccomp, STAGE_NONE))?;
        }
        if let Some(f) = self.pre_exec {
            sys::write_all(
                self.report_wr.get(),
                &Report {
                    step: STEP_PRE_EXEC,
                    desc: 0,
                    stage: 0,
                    errno: 0,
                }
                .to_bytes(),
            );
            if let Err(e) = f() {
                return Err(setup(self.desc_pre_exec, STAGE_NONE)(
                    e.raw_os_error().unwrap_or(libc::EIO),
                ));
            }
        }
        Ok(())
    }

    /// Enters a new user namespace and waits until the parent has written its id maps
    /// (see [`write_id_maps`]). Until `child_ids` the process keeps the host's kernel ids;
    /// there it becomes the namespace's root (a mapped id), with the namespace's capabilities.
    fn child_userns(&self) -> Result<(), Fail> {
        let f = setup(self.desc_userns, STAGE_NONE);
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
            return Err(f(sys::errno()));
        }
        let sock = self.userns_sock.get();
        sys::write_all(sock, &[1]);
        let mut b = [0u8; 1];
        match sys::read_exact_or_eof(sock, &mut b) {
            Ok(true) => {}
            // The parent could not write the maps: it kills us.
            Ok(false) => return Err(f(libc::EPIPE)),
            Err(e) => return Err(f(e)),
        }
        sys::close(sock);
        self.userns_sock.set(-1);
        Ok(())
    }

    fn child_exec(&self) -> Fail {
        if let Some(shim) = &self.shim {
            if let Err(e) = self.carry_caps_across_shim() {
                return setup(self.desc_caps, STAGE_NONE)(e);
            }
            // The shim gets the report pipe (it marks it close-on-exec itself) and does the
            // search below; on success the pipe closes at the program's exec, as without it.
            let rep = self.report_wr.get();
            shim.set_report_fd(rep);
            let err = if unsafe { libc::fcntl(rep, libc::F_SETFD, 0) } < 0 {
                sys::errno()
            } else {
                unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        shim.fd.get(),
                        c"".as_ptr(),
                        shim.argv_ptrs.as_ptr(),
                        self.envp_ptrs.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                };
                sys::errno()
            };
            return Fail(Report {
                step: STEP_EXEC,
                desc: 0,
                stage: 0,
                errno: err,
            });
        }
        let mut err = libc::ENOENT;
        let mut eacces = false;
        for c in &self.exec_candidates {
            unsafe { libc::execve(c.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr()) };
            err = sys::errno();
            match err {
                libc::EACCES => eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {}
                _ => break,
            }
        }
        if eacces && err != libc::ENOEXEC && (err == libc::ENOENT || err == libc::ENOTDIR) {
            err = libc::EACCES;
        }
        Fail(Report {
            step: STEP_EXEC,
            desc: 0,
            stage: 0,
            errno: err,
        })
    }

    /// A non-root process's permitted capabilities are cleared by any exec unless they are
    /// ambient, so through the shim the program would start with none, and a program with
    /// file capabilities (`ping`, `cap_net_raw+ep`), which under no_new_privs gets at most
    /// what its caller had, would get nothing. So they cross the shim's exec as ambient
    /// (inheritable too, as ambient requires), and the shim empties both sets again before
    /// the program's exec: the program starts exactly as without the shim.
    fn carry_caps_across_shim(&self) -> Result<(), i32> {
        let Some(mask) = self.caps else { return Ok(()) };
        if self.uid == 0 {
            return Ok(());
        }
        let all = if self.last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (self.last_cap + 1)) - 1
        };
        sys::capset(mask & all, mask & all)?;
        for c in 0..=self.last_cap {
            if mask & (1u64 << c) != 0 {
                sys::prctl4(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as c_ulong,
                    c as c_ulong,
                )?;
            }
        }
        Ok(())
    }

    fn child_build_root(&self) -> Result<(), Fail> {
        let private = setup(self.desc_private, STAGE_NONE);
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(private)?;
        // Open every bind source first: the root tmpfs may cover where they live (e.g. /tmp).
        for op in &self.ops {
            match &op.kind {
                OpKind::Bind {
                    src,
                    src_fd,
                    recursive,
                    ..
                } => {
                    let mut flags = sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC;
                    if *recursive {
                        flags |= libc::AT_RECURSIVE as u32;
                    }
                    let fd = sys::open_tree(libc::AT_FDCWD, src, flags)
                        .map_err(setup(op.desc, STAGE_SOURCE))?;
                    src_fd.set(fd);
                    if self.userns.is_some() {
                        sys::set_mount_attr(fd, c"", *recursive, sys::MOUNT_ATTR_NOSUID)
                            .map_err(setup(op.desc, STAGE_SOURCE))?;
                    }
                }
                // Not a clone per masked path up front: a clone that ends up unused (the
                // path does not exist, or is a directory) is dissolved when closed, and that
                // waits for an RCU grace period (~100 us each here). Only the file is held.
                OpKind::Mask if self.mask_null.get() < 0 => {
                    let fd = sys::open(c"/dev/null", libc::O_PATH | libc::O_CLOEXEC)
                        .map_err(setup(op.desc, STAGE_SOURCE))?;
                    self.mask_null.set(fd);
                }
                _ => {}
            }
        }
        let root = match self.root.as_ref() {
            Some(RootPlan::Tmpfs { base, desc }) => {
                let f = setup(*desc, STAGE_NONE);
                sys::mount(
                    Some(c"tmpfs"),
                    base,
                    Some(c"tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(c"mode=0755"),
                )
                .map_err(&f)?;
                sys::open(base, libc::O_PATH | libc::O_DIRECTORY).map_err(&f)?
            }
            Some(RootPlan::Dir { path, desc }) => {
                let f = setup(*desc, STAGE_NONE);
                sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(&f)?;
                if self.userns.is_some() {
                    let attr = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
                    sys::set_mount_attr(libc::AT_FDCWD, path, true, attr).map_err(&f)?;
                }
                sys::open(path, libc::O_PATH | libc::O_DIRECTORY).map_err(&f)?
            }
            None => return Ok(()),
        };
        for op in &self.ops {
            self.child_op(root, op)?;
        }
        let f = setup(self.desc_pivot, STAGE_NONE);
        sys::fchdir(root).map_err(&f)?;
        sys::pivot_root_dot().map_err(&f)?;
        sys::close(root);
        if let Some(desc) = self.readonly_root {
            sys::set_readonly(libc::AT_FDCWD, c"/", false).map_err(setup(desc, STAGE_NONE))?;
        }
        if let Some((name, desc)) = &self.hostname {
            sys::sethostname(name).map_err(setup(*desc, STAGE_NONE))?;
        }
        if let Some(desc) = self.loopback {
            sys::loopback_up().map_err(setup(desc, STAGE_NONE))?;
        }
        Ok(())
    }

    fn child_op(&self, root: c_int, op: &Op) -> Result<(), Fail> {
        let t = &op.target;
        let target_err = setup(op.desc, STAGE_TARGET);
        let mount_err = setup(op.desc, STAGE_MOUNT);
        match &op.kind {
            OpKind::Bind {
                src_fd,
                file,
                readonly,
                recursive,
                nodev,
                ..
            } => {
                let tree = src_fd.get();
                let create = if *file {
                    Create::File
                } else {
                    Create::Dir(0o755)
                };
                let fd = resolve(root, t, create).map_err(target_err)?;
                let r = (|| {
                    let attr = if *readonly { sys::MOUNT_ATTR_RDONLY } else { 0 }
                        | if *nodev { sys::MOUNT_ATTR_NODEV } else { 0 };
                    if attr != 0 {
                        sys::set_mount_attr(tree, c"", *recursive, attr)
                            .map_err(setup(op.desc, STAGE_RDONLY))?;
                    }
                    sys::move_mount_fd(tree, fd).map_err(&mount_err)
                })();
                sys::close(fd);
                sys::close(tree);
                r
            }
            OpKind::Fs {
                source,
                fstype,
                flags,
                data,
                mode,
            } => {
                let fd = resolve(root, t, Create::Dir(*mode)).map_err(target_err)?;
                let r = sys::fchdir(fd).and_then(|()| {
                    sys::mount(Some(source), c".", Some(fstype), *flags, data.as_deref())
                });
                sys::close(fd);
                r.map_err(mount_err)
            }
            OpKind::Dir { mode } => {
                let fd = resolve(root, t, Create::Dir(*mode)).map_err(target_err)?;
                sys::close(fd);
                Ok(())
            }
            OpKind::Symlink { target } => {
                let fd = resolve(root, t, Create::Symlink(target)).map_err(target_err)?;
                sys::close(fd);
                Ok(())
            }
            OpKind::Mask => {
                let fd = match resolve(root, t, Create::No) {
                    Ok(fd) => fd,
                    Err(libc::ENOENT) => return Ok(()),
                    Err(e) => return Err(target_err(e)),
                };
                let r = match sys::is_dir(fd) {
                    // Every masked directory shows the same empty read-only tmpfs: the first
                    // gets a new one, the others a clone of that mount (a bind costs a third
                    // of a new tmpfs superblock).
                    Ok(true) if self.mask_dir.get() >= 0 => sys::open_tree(
                        self.mask_dir.get(),
                        c"",
                        sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32,
                    )
                    .and_then(|tree| {
                        let r = sys::move_mount_fd(tree, fd);
                        sys::close(tree);
                        r
                    }),
                    Ok(true) => sys::fchdir(fd)
                        .and_then(|()| {
                            sys::mount(
                                Some(c"tmpfs"),
                                c".",
                                Some(c"tmpfs"),
                                libc::MS_RDONLY
                                    | libc::MS_NOSUID
                                    | libc::MS_NODEV
                                    | libc::MS_NOEXEC,
                                Some(c"mode=0555,size=4k"),
                            )
                        })
                        // The path now leads to the new mount's root.
                        .and_then(|()| resolve(root, t, Create::No))
                        .map(|top| self.mask_dir.set(top)),
                    Ok(false) => sys::open_tree(
                        self.mask_null.get(),
                        c"",
                        sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32,
                    )
                    .and_then(|null| {
                        let r = sys::move_mount_fd(null, fd);
                        sys::close(null);
                        r
                    }),
                    Err(e) => Err(e),
                };
                sys::close(fd);
                r.map_err(mount_err)
            }
            OpKind::ReadonlySelf => {
                let fd = match resolve(root, t, Create::No) {
                    Ok(fd) => fd,
                    Err(libc::ENOENT) => return Ok(()),
                    Err(e) => return Err(target_err(e)),
                };
                let r = (|| {
                    let tree = sys::open_tree(
                        fd,
                        c"",
                        sys::OPEN_TREE_CLONE
                            | sys::OPEN_TREE_CLOEXEC
                            | libc::AT_EMPTY_PATH as u32
                            | libc::AT_RECURSIVE as u32,
                    )
                    .map_err(setup(op.desc, STAGE_SOURCE))?;
                    let r = sys::set_readonly(tree, c"", true)
                        .map_err(setup(op.desc, STAGE_RDONLY))
                        .and_then(|()| sys::move_mount_fd(tree, fd).map_err(&mount_err));
                    sys::close(tree);
                    r
                })();
                sys::close(fd);
                r
            }
        }
    }

    fn child_ids(&self) -> Result<(), Fail> {
        let caps = setup(self.desc_caps, STAGE_NONE);
        if let Some(mask) = self.caps {
            for c in 0..=self.last_cap {
                if mask & (1u64 << c) == 0 {
                    match sys::prctl(libc::PR_CAPBSET_DROP, c as c_ulong) {
                        Ok(()) | Err(libc::EINVAL) => {}
                        Err(e) => return Err(caps(e)),
                    }
                }
            }
            if self.uid != 0 {
                sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(&caps)?;
            }
        }
        let ids = setup(self.desc_ids, STAGE_NONE);
        // Raw system calls: glibc's set*id wrappers signal every thread of the parent (which
        // do not exist in this copy) and wait for them on a futex forever. Calls that would
        // change nothing are skipped: inside `unshare -r` setgroups is refused.
        unsafe {
            if !self.groups_in_effect().map_err(&ids)?
                && libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr()) < 0
            {
                return Err(ids(sys::errno()));
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            if libc::syscall(libc::SYS_getresgid, &mut r, &mut e, &mut s) < 0 {
                return Err(ids(sys::errno()));
            }
            if (r, e, s) != (self.gid, self.gid, self.gid)
                && libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid) < 0
            {
                return Err(ids(sys::errno()));
            }
            if libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s) < 0 {
                return Err(ids(sys::errno()));
            }
            if (r, e, s) != (self.uid, self.uid, self.uid)
                && libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid) < 0
            {
                return Err(ids(sys::errno()));
            }
        }
        if let Some(mask) = self.caps {
            let all = if self.last_cap >= 63 {
                u64::MAX
            } else {
                (1u64 << (self.last_cap + 1)) - 1
            };
            // Effective and permitted: the mask; inheritable: empty, so no program's file
            // capabilities can take any from it. Ambient (a subset of inheritable): cleared.
            sys::capset(mask & all, 0).map_err(&caps)?;
            match sys::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            ) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err(caps(e)),
            }
            if self.uid != 0 {
                sys::prctl(libc::PR_SET_KEEPCAPS, 0).map_err(&caps)?;
            }
        }
        Ok(())
    }

    /// Do the current supplementary groups grant exactly `self.groups` (ignoring `self.gid`,
    /// which the process has as its group anyway)? No allocation: a fixed buffer.
    fn groups_in_effect(&self) -> SysResult<bool> {
        let mut cur = [0 as libc::gid_t; 256];
        let n = unsafe { libc::syscall(libc::SYS_getgroups, cur.len() as c_int, cur.as_mut_ptr()) };
        if n < 0 {
            // EINVAL: more than 256 groups; just set them.
            return match sys::errno() {
                libc::EINVAL => Ok(false),
                e => Err(e),
            };
        }
        let cur = &cur[..n as usize];
        let covers = |a: &[libc::gid_t], b: &[libc::gid_t]| {
            a.iter().all(|g| *g == self.gid || b.contains(g))
        };
        Ok(covers(cur, &self.groups) && covers(&self.groups, cur))
    }

    /// stdio at 0..2, preserved fds at 3.., our pipes above them, everything else closed.
    fn child_fds(&self) -> Result<(), Fail> {
        let f = setup(self.desc_stdio, STAGE_NONE);
        let first_free = 3 + self.preserve.len() as c_int;
        let shim_fd = self.shim.as_ref().map(|s| &s.fd);
        for cell in [&self.report_wr, &self.release_rd]
            .into_iter()
            .chain(shim_fd)
        {
            let fd = cell.get();
            if fd >= 0 && fd < first_free {
                let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free) };
                if r < 0 {
                    return Err(f(sys::errno()));
                }
                sys::close(fd);
                cell.set(r);
            }
        }
        self.child_stdio()?;
        for (src, tmp) in self.preserve.iter().zip(&self.preserve_tmp) {
            let r = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, first_free) };
            if r < 0 {
                return Err(f(sys::errno()));
            }
            tmp.set(r);
        }
        for (i, tmp) in self.preserve_tmp.iter().enumerate() {
            if unsafe { libc::dup2(tmp.get(), 3 + i as c_int) } < 0 {
                return Err(f(sys::errno()));
            }
        }
        // (Without close_range, kernels before 5.9, the descriptors stay open, as they did.)
        let _ = sys::close_from_except(
            first_free,
            &[
                self.report_wr.get(),
                self.release_rd.get(),
                self.shim.as_ref().map_or(-1, |s| s.fd.get()),
            ],
        );
        Ok(())
    }

    /// Allocates the process's own terminal (see [`Spec::console_socket`]): the slave
    /// becomes its controlling terminal and, in [`Plan::child_stdio`], its stdio.
    fn child_console(&self) -> Result<(), Fail> {
        let f = setup(self.desc_console, STAGE_NONE);
        let (m, s) = sys::open_pty(self.uid, self.gid).map_err(&f)?;
        self.tty_slave.set(s);
        let r = if unsafe { libc::ioctl(s, libc::TIOCSCTTY, 0) } < 0 {
            Err(sys::errno())
        } else {
            sys::send_fd(self.console, m)
        };
        sys::close(m);
        sys::close(self.console);
        r.map_err(f)
    }

    fn child_stdio(&self) -> Result<(), Fail> {
        let f = setup(self.desc_stdio, STAGE_NONE);
        // Move sources that sit on 0..2 out of the way so dup2 cannot clobber them.
        let mut src = self.stdio;
        if self.tty_slave.get() >= 0 {
            src = [self.tty_slave.get(); 3];
        }
        for s in src.iter_mut() {
            if *s >= 0 && *s < 3 {
                let r = unsafe { libc::fcntl(*s, libc::F_DUPFD_CLOEXEC, 3) };
                if r < 0 {
                    return Err(f(sys::errno()));
                }
                *s = r;
            }
        }
        for (target, &s) in src.iter().enumerate() {
            if s >= 0 && unsafe { libc::dup2(s, target as c_int) } < 0 {
                return Err(f(sys::errno()));
            }
        }
        Ok(())
    }
}

fn reset_signals() {
    // Handlers first, then the mask: a vfork child starts with every signal blocked, and
    // none of the caller's handlers may run in it (on the caller's memory).
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Resolve `t` below `root` (as if `root` were `/`), creating missing parents (0755) and,
/// per `create`, the last component. Returns an `O_PATH` descriptor of the result.
fn resolve(root: c_int, t: &Target, create: Create) -> SysResult<c_int> {
    let n = t.prefixes.len();
    let symlink = matches!(create, Create::Symlink(_));
    // Most targets exist (the /proc, /sys and /dev entries, the image's own directories) or
    // lack only their last component: one lookup of the whole path, then of its parent, before
    // walking it a component at a time (each of those lookups starts again at the root).
    // `start`: the first component to walk; `missing`: it is known not to exist.
    let (mut parent, start, missing) = match n {
        0 => (-1, 0, false),
        _ => match sys::open_in_root(root, &t.prefixes[n - 1], symlink) {
            Ok(fd) => return check_symlink(fd, create),
            Err(libc::ENOENT) if matches!(create, Create::No) => return Err(libc::ENOENT),
            Err(libc::ENOENT) if n == 1 => (-1, 0, true),
            Err(libc::ENOENT) => match sys::open_in_root(root, &t.prefixes[n - 2], false) {
                Ok(fd) => (fd, n - 1, true),
                Err(libc::ENOENT) => (-1, 0, false),
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        },
    };
    for i in start..n {
        let last = i + 1 == n;
        let nofollow = last && symlink;
        let found = if missing && i == start {
            Err(libc::ENOENT)
        } else {
            sys::open_in_root(root, &t.prefixes[i], nofollow)
        };
        let fd = match found {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                let dir = if parent >= 0 { parent } else { root };
                let name = &t.names[i];
                // What we just created is opened by name in `dir`, not followed: it is ours.
                let own = |made: SysResult<()>| {
                    made.and_then(|()| sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0))
                };
                let r = match (last, create) {
                    (false, _) => own(sys::mkdirat(dir, name, 0o755)),
                    (true, Create::Dir(mode)) => own(sys::mkdirat(dir, name, mode)),
                    // (A new empty file: its descriptor serves as the mount target.)
                    (true, Create::File) => sys::openat(
                        dir,
                        name,
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                        0o644,
                    ),
                    (true, Create::Symlink(to)) => own(sys::symlinkat(to, dir, name)),
                    (true, Create::No) => Err(libc::ENOENT),
                };
                // mkdirat's mode is not affected by our umask (0), but tmpfs/sticky bits are
                // applied by the kernel as given. Something there already (made meanwhile, or
                // a dangling symlink) is resolved in the root like any existing path.
                let r = match r {
                    Err(libc::EEXIST) => sys::open_in_root(root, &t.prefixes[i], nofollow),
                    r => r,
                };
                match r {
                    Ok(fd) => fd,
                    Err(e) => {
                        sys::close(parent);
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                sys::close(parent);
                return Err(e);
            }
        };
        sys::close(parent);
        if last {
            return check_symlink(fd, create);
        }
        parent = fd;
    }
    Ok(parent)
}

/// `fd` (the resolved target) as the result of [`resolve`]: for `Create::Symlink`, an existing
/// symlink is accepted only if it points where we want.
fn check_symlink(fd: c_int, create: Create) -> SysResult<c_int> {
    if let Create::Symlink(to) = create {
        let mut buf = [0u8; 4096];
        let len = unsafe {
            libc::readlinkat(
                fd,
                c"".as_ptr(),
                buf.as_mut_ptr().cast::<c_char>(),
                buf.len(),
            )
        };
        if len < 0 || &buf[..len as usize] != to.to_bytes() {
            sys::close(fd);
            return Err(libc::EEXIST);
        }
    }
    Ok(fd)
}

/// Creates in the host directory `root` (resolved inside it, like [`spawn`] does) each
/// missing mount point of `points`: (path inside the root, a file rather than a directory,
/// mode of a created directory). See [`Spec::create_mount_points`].
pub(crate) fn create_mount_points(
    root: &Path,
    points: &[(&Path, bool, u32)],
) -> Result<(), SandboxError> {
    let os = |op: String| {
        move |e: i32| SandboxError::Os {
            op,
            source: io::Error::from_raw_os_error(e),
        }
    };
    let r = cstring("root", root.as_os_str().as_bytes())?;
    let fd = sys::open(&r, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(os(format!("open the root {}", root.display())))?;
    let mut result = Ok(());
    for (p, file, mode) in points {
        let create = if *file {
            Create::File
        } else {
            Create::Dir(*mode)
        };
        let t = match target("mount point", p) {
            Ok(t) => t,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        match resolve(fd, &t, create) {
            Ok(m) => sys::close(m),
            Err(e) => {
                result = Err(os(format!(
                    "create mount point {} in {}",
                    p.display(),
                    root.display()
                ))(e));
                break;
            }
        }
    }
    sys::close(fd);
    result
}
