//! The ptrace engine: spawn the command (on the host or in the sandbox), attach with
//! `PTRACE_SEIZE`, and record every path the traced system calls name.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;
use std::thread::JoinHandle;

use crate::mem::{read_bytes, read_cstring};
use crate::seccomp::ChildSetup;
use crate::syscalls::{lookup, Arg, Creates, SysDef};
use crate::TraceError;

/// What to run under the tracer.
#[derive(Debug, Clone, Default)]
pub struct TraceCommand {
    /// The program and its arguments. A program name without `/` is searched in the `PATH` of
    /// `env` (default `/usr/local/bin:/usr/bin:/bin`); the failed candidates are recorded too.
    pub argv: Vec<OsString>,
    /// The complete environment; nothing is inherited.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory (inside `root` when a root is given).
    pub cwd: PathBuf,
    /// Bytes fed to standard input; `None` connects `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Run inside this directory as the root, in distill's sandbox (new mount, pid, net, uts
    /// and ipc namespaces, `/dev`, `/proc`, a tmpfs `/tmp`, the root read-only). `None` runs
    /// on the host.
    pub root: Option<PathBuf>,
}

/// One path a traced process touched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Access {
    /// Absolute, lexically cleaned (`.` and repeated `/` removed, `..` kept), inside the root.
    pub path: PathBuf,
    /// The system call, e.g. `openat`.
    pub syscall: &'static str,
    /// The thread id that made the call (in the tracer's pid namespace).
    pub pid: i32,
    /// Whether the path existed when the call was made (ENOENT/ENOTDIR: no; success, EACCES,
    /// ELOOP, ...: yes; for calls that create the path: checked at syscall entry).
    pub existed: bool,
}

impl std::fmt::Display for Access {
    /// `PATH<TAB>SYSCALL<TAB>PID<TAB>exists|missing`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}",
            self.path.display(),
            self.syscall,
            self.pid,
            if self.existed { "exists" } else { "missing" }
        )
    }
}

/// The outcome of [`trace`].
#[derive(Debug)]
pub struct TraceResult {
    /// How the command's first process ended.
    pub exit: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
    /// Every path touched, in the order the system calls returned.
    pub accesses: Vec<Access>,
}

impl TraceResult {
    /// One entry per distinct path (its first access), sorted by path.
    pub fn unique_accesses(&self) -> Vec<&Access> {
        let mut seen = HashSet::new();
        let mut v: Vec<&Access> = self
            .accesses
            .iter()
            .filter(|a| seen.insert(&a.path))
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }
}

/// Run `cmd` under ptrace and record every path its processes and threads touch through the
/// traced file system calls (see [`crate::traced_syscalls`]). Only those calls stop the
/// tracee (seccomp `SECCOMP_RET_TRACE`); everything else runs at full speed. Returns when
/// every traced process has ended.
pub fn trace(cmd: TraceCommand) -> Result<TraceResult, TraceError> {
    if cmd.argv.is_empty() {
        return Err(TraceError::EmptyCommand);
    }
    match cmd.root.clone() {
        None => in_thread(Mode::Host(cmd)),
        Some(root) => {
            let spec = crate::sandboxed::default_spec(&cmd, &root);
            in_thread(Mode::Sandbox(Box::new(spec), cmd.stdin))
        }
    }
}

/// Like [`trace`] with a root, but with the caller's own sandbox spec (e.g. the builder's
/// mounts). The tracer replaces `stdin`/`stdout`/`stderr` (pipes), `pre_exec` and
/// `wait_for_parent`. Paths are recorded relative to the spec's root.
pub fn trace_spec(
    spec: distill_sandbox::Spec,
    stdin: Option<Vec<u8>>,
) -> Result<TraceResult, TraceError> {
    if spec.argv.is_empty() {
        return Err(TraceError::EmptyCommand);
    }
    in_thread(Mode::Sandbox(Box::new(spec), stdin))
}

enum Mode {
    Host(TraceCommand),
    Sandbox(Box<distill_sandbox::Spec>, Option<Vec<u8>>),
}

fn in_thread(mode: Mode) -> Result<TraceResult, TraceError> {
    // waitpid(-1, __WNOTHREAD) in a thread of our own sees only our tracees, never the
    // children of other threads of the caller.
    std::thread::Builder::new()
        .name("distill-tracer".into())
        .spawn(move || trace_in_thread(mode))
        .map_err(|e| TraceError::Os {
            op: "spawn the tracer thread".into(),
            source: e,
        })?
        .join()
        .map_err(|_| TraceError::Os {
            op: "tracer thread".into(),
            source: std::io::Error::other("panicked"),
        })?
}

fn os(op: impl Into<String>, e: impl Into<std::io::Error>) -> TraceError {
    TraceError::Os {
        op: op.into(),
        source: e.into(),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), TraceError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| os("pipe2", e))
}

fn cstring(s: &OsStr) -> Result<CString, TraceError> {
    CString::new(s.as_bytes()).map_err(|_| TraceError::NulByte(s.to_string_lossy().into_owned()))
}

fn reader(fd: OwnedFd) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut v = Vec::new();
        let _ = f.read_to_end(&mut v);
        v
    })
}

fn writer(fd: OwnedFd, data: Vec<u8>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        // The command may not read all of it; EPIPE is fine.
        let _ = f.write_all(&data);
    })
}

const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_EXITKILL;

pub(crate) fn seize(pid: i32) -> std::io::Result<()> {
    // SAFETY: plain ptrace request on a pid.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0usize, OPTIONS as usize) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

struct Stdio {
    stdin: Option<JoinHandle<()>>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

/// The child's ends of the standard streams.
pub(crate) struct ChildFds {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

fn make_stdio(input: Option<Vec<u8>>) -> Result<(ChildFds, Stdio), TraceError> {
    let (in_r, in_w) = match &input {
        Some(_) => {
            let (r, w) = pipe()?;
            (r, Some(w))
        }
        None => (
            OwnedFd::from(std::fs::File::open("/dev/null").map_err(|e| os("open /dev/null", e))?),
            None,
        ),
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = Stdio {
        stdin: in_w.map(|w| writer(w, input.unwrap_or_default())),
        stdout: reader(out_r),
        stderr: reader(err_r),
    };
    Ok((
        ChildFds {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        },
        stdio,
    ))
}

fn trace_in_thread(mode: Mode) -> Result<TraceResult, TraceError> {
    let setup = ChildSetup::new();
    let (root, stdin) = match &mode {
        Mode::Host(c) => (None, c.stdin.clone()),
        Mode::Sandbox(spec, stdin) => match &spec.root {
            distill_sandbox::Root::Dir(r) => (Some(r.clone()), stdin.clone()),
            _ => (None, stdin.clone()),
        },
    };
    let root_prefix = match &root {
        Some(r) => Some(std::fs::canonicalize(r).map_err(|e| TraceError::Io {
            path: r.clone(),
            op: "resolve the trace root",
            source: e,
        })?),
        None => None,
    };
    let (fds, stdio) = make_stdio(stdin)?;
    let mut tracer = Tracer {
        root: root_prefix,
        pending: HashMap::new(),
        accesses: Vec::new(),
        main: 0,
        main_status: None,
    };
    let outcome = match mode {
        Mode::Host(cmd) => {
            let spawned = spawn_host(&cmd, &setup, fds)?;
            tracer.main = spawned.pid;
            tracer.run()?;
            spawned.finish(&cmd)
        }
        Mode::Sandbox(spec, _) => {
            let released = crate::sandboxed::spawn(*spec, &setup, fds)?;
            tracer.main = released.pid;
            tracer.run()?;
            released.finish()
        }
    };
    let stdout = stdio.stdout.join().unwrap_or_default();
    let stderr = stdio.stderr.join().unwrap_or_default();
    if let Some(w) = stdio.stdin {
        let _ = w.join();
    }
    outcome?;
    let status = tracer.main_status.ok_or_else(|| TraceError::Os {
        op: format!("wait for traced process {}", tracer.main),
        source: std::io::Error::other("its exit status was never reported"),
    })?;
    Ok(TraceResult {
        exit: ExitStatus::from_raw(status),
        stdout,
        stderr,
        accesses: tracer.accesses,
    })
}

/// A host child that has been released to exec.
struct HostChild {
    pid: i32,
    report: OwnedFd,
}

const STEP_CHDIR: u32 = 1;
const STEP_SETUP: u32 = 2;
const STEP_EXEC: u32 = 3;

impl HostChild {
    fn finish(self, cmd: &TraceCommand) -> Result<(), TraceError> {
        let mut buf = [0u8; 8];
        let mut f = std::fs::File::from(self.report);
        if f.read_exact(&mut buf).is_err() {
            return Ok(());
        }
        let step = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
        let errno = i32::from_ne_bytes(buf[4..].try_into().expect("4 bytes"));
        let source = std::io::Error::from_raw_os_error(errno);
        Err(match step {
            STEP_CHDIR => TraceError::Io {
                path: cmd.cwd.clone(),
                op: "change into the working directory",
                source,
            },
            STEP_SETUP => os("install the seccomp filter in the traced child", source),
            _ => TraceError::Exec {
                program: cmd.argv[0].to_string_lossy().into_owned(),
                source,
            },
        })
    }
}

fn exec_candidates(cmd: &TraceCommand) -> Result<Vec<CString>, TraceError> {
    let prog = &cmd.argv[0];
    if prog.as_bytes().contains(&b'/') {
        return Ok(vec![cstring(prog)?]);
    }
    let path = cmd
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut out = Vec::new();
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut p = dir.to_vec();
        p.push(b'/');
        p.extend_from_slice(prog.as_bytes());
        out.push(cstring(OsStr::from_bytes(&p))?);
    }
    Ok(out)
}

fn spawn_host(
    cmd: &TraceCommand,
    setup: &ChildSetup,
    fds: ChildFds,
) -> Result<HostChild, TraceError> {
    let argv: Vec<CString> = cmd
        .argv
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = cmd
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(OsStr::from_bytes(&kv))
        })
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_p.push(std::ptr::null());
    let candidates = exec_candidates(cmd)?;
    let cwd = cstring(if cmd.cwd.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        cmd.cwd.as_os_str()
    })?;
    let (release_r, release_w) = pipe()?;
    let (report_r, report_w) = pipe()?;

    // SAFETY: the child only makes async-signal-safe system calls on memory prepared above,
    // then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        unsafe {
            child_main(
                &fds,
                &cwd,
                release_r.as_raw_fd(),
                report_w.as_raw_fd(),
                setup,
                &candidates,
                &argv_p,
                &env_p,
            )
        }
    }
    drop(fds);
    drop(release_r);
    drop(report_w);
    if let Err(e) = seize(pid) {
        // Closing the release pipe makes the child exit without running anything.
        drop(release_w);
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        return Err(os(format!("ptrace(PTRACE_SEIZE) pid {pid}"), e));
    }
    let mut w = std::fs::File::from(release_w);
    w.write_all(&[1])
        .map_err(|e| os("release the traced child", e))?;
    drop(w);
    Ok(HostChild {
        pid,
        report: report_r,
    })
}

unsafe fn report(fd: RawFd, step: u32, errno: i32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(fd, buf.as_ptr().cast(), 8);
    libc::_exit(127)
}

#[allow(clippy::too_many_arguments)]
unsafe fn child_main(
    fds: &ChildFds,
    cwd: &CString,
    release: RawFd,
    report_fd: RawFd,
    setup: &ChildSetup,
    candidates: &[CString],
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> ! {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    if libc::dup2(fds.stdin.as_raw_fd(), 0) < 0
        || libc::dup2(fds.stdout.as_raw_fd(), 1) < 0
        || libc::dup2(fds.stderr.as_raw_fd(), 2) < 0
    {
        report(report_fd, STEP_SETUP, *libc::__errno_location());
    }
    if libc::chdir(cwd.as_ptr()) != 0 {
        report(report_fd, STEP_CHDIR, *libc::__errno_location());
    }
    let mut b = [0u8; 1];
    if libc::read(release, b.as_mut_ptr().cast(), 1) != 1 {
        libc::_exit(127);
    }
    if let Err(e) = setup.run() {
        report(
            report_fd,
            STEP_SETUP,
            e.raw_os_error().unwrap_or(libc::EINVAL),
        );
    }
    let mut err = libc::ENOENT;
    for c in candidates {
        libc::execve(c.as_ptr(), argv.as_ptr(), env.as_ptr());
        let e = *libc::__errno_location();
        // Like execvp: report the most telling error, not the last ENOENT.
        if e != libc::ENOENT && e != libc::ENOTDIR {
            err = e;
        }
    }
    report(report_fd, STEP_EXEC, err)
}

// ---------------------------------------------------------------------------------------
// The tracer loop.

#[repr(C)]
#[derive(Clone, Copy)]
struct SysEntry {
    nr: u64,
    args: [u64; 6],
}
#[repr(C)]
#[derive(Clone, Copy)]
struct SysExit {
    rval: i64,
    is_error: u8,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct SysSeccomp {
    nr: u64,
    args: [u64; 6],
    ret_data: u32,
}
#[repr(C)]
#[derive(Clone, Copy)]
union SysData {
    entry: SysEntry,
    exit: SysExit,
    seccomp: SysSeccomp,
}
/// `struct ptrace_syscall_info` (Linux 5.3).
#[repr(C)]
#[derive(Clone, Copy)]
struct SyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    data: SysData,
}
const OP_ENTRY: u8 = 1;
const OP_EXIT: u8 = 2;
const OP_SECCOMP: u8 = 3;

fn syscall_info(pid: i32) -> Option<SyscallInfo> {
    // SAFETY: an all-zero SyscallInfo is valid; the kernel fills at most size bytes.
    let mut info: SyscallInfo = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid,
            std::mem::size_of::<SyscallInfo>(),
            &mut info as *mut SyscallInfo,
        )
    };
    if r <= 0 {
        None
    } else {
        Some(info)
    }
}

fn restart(req: libc::c_uint, pid: i32, sig: i32) {
    // SAFETY: plain ptrace request. ESRCH (the tracee was killed meanwhile) is fine: its
    // exit is reported by waitpid.
    unsafe {
        libc::ptrace(req, pid, 0usize, sig as usize);
    }
}

struct Captured {
    path: PathBuf,
    /// Existence judged at entry (calls that create the path).
    precheck: Option<bool>,
}

struct Pending {
    def: &'static SysDef,
    paths: Vec<Captured>,
}

struct Tracer {
    /// The canonical root directory when tracing inside one.
    root: Option<PathBuf>,
    pending: HashMap<i32, Pending>,
    accesses: Vec<Access>,
    main: i32,
    main_status: Option<i32>,
}

/// Lexically clean an absolute path: drop `.` and empty components, keep `..`.
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

impl Tracer {
    fn run(&mut self) -> Result<(), TraceError> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
            if pid < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => break,
                    _ => return Err(os("waitpid", std::io::Error::last_os_error())),
                }
            }
            if libc::WIFSTOPPED(status) {
                let sig = libc::WSTOPSIG(status);
                let event = (status >> 16) & 0xffff;
                if sig == (libc::SIGTRAP | 0x80) {
                    self.on_syscall_stop(pid);
                } else if event != 0 {
                    self.on_event(pid, event);
                } else {
                    // Signal-delivery-stop: deliver the signal.
                    self.resume(pid, sig);
                }
            } else if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.on_gone(pid);
                if pid == self.main {
                    self.main_status = Some(status);
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, pid: i32, event: i32) {
        match event {
            libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(pid),
            libc::PTRACE_EVENT_EXEC => {
                let mut former: libc::c_ulong = 0;
                // SAFETY: GETEVENTMSG writes one unsigned long.
                unsafe {
                    libc::ptrace(
                        libc::PTRACE_GETEVENTMSG,
                        pid,
                        0usize,
                        &mut former as *mut libc::c_ulong,
                    );
                }
                let former = former as i32;
                if former != pid && former != 0 {
                    // A non-leader thread exec'd and took over the thread group id.
                    if let Some(p) = self.pending.remove(&former) {
                        self.pending.insert(pid, p);
                    }
                }
                self.resume(pid, 0);
            }
            // PTRACE_EVENT_STOP: the first stop of an auto-attached child, or a group-stop
            // (job control inside a probe is not supported: it is resumed at once).
            // FORK/VFORK/CLONE/VFORK_DONE: the child is attached automatically.
            _ => self.resume(pid, 0),
        }
    }

    /// Restart a stopped tracee; one inside a traced system call goes on to its exit stop.
    fn resume(&self, pid: i32, sig: i32) {
        if self.pending.contains_key(&pid) {
            restart(libc::PTRACE_SYSCALL as _, pid, sig);
        } else {
            restart(libc::PTRACE_CONT as _, pid, sig);
        }
    }

    fn on_seccomp(&mut self, pid: i32) {
        let Some(info) = syscall_info(pid) else {
            return restart(libc::PTRACE_CONT as _, pid, 0);
        };
        if info.op != OP_SECCOMP {
            return restart(libc::PTRACE_CONT as _, pid, 0);
        }
        // SAFETY: op == SECCOMP selects the seccomp member.
        let sc = unsafe { info.data.seccomp };
        let Some(def) = lookup(sc.nr as i64) else {
            return restart(libc::PTRACE_CONT as _, pid, 0);
        };
        let paths = self.capture(pid, def, &sc.args);
        if paths.is_empty() {
            return restart(libc::PTRACE_CONT as _, pid, 0);
        }
        self.pending.insert(pid, Pending { def, paths });
        // Run to the syscall-exit-stop to see the result.
        restart(libc::PTRACE_SYSCALL as _, pid, 0);
    }

    fn on_syscall_stop(&mut self, pid: i32) {
        let info = syscall_info(pid);
        match info {
            Some(i) if i.op == OP_EXIT => {
                // SAFETY: op == EXIT selects the exit member.
                let ex = unsafe { i.data.exit };
                if let Some(p) = self.pending.remove(&pid) {
                    self.finish(pid, p, Some((ex.rval, ex.is_error != 0)));
                }
                restart(libc::PTRACE_CONT as _, pid, 0);
            }
            Some(i) if i.op == OP_ENTRY => restart(libc::PTRACE_SYSCALL as _, pid, 0),
            _ => restart(libc::PTRACE_CONT as _, pid, 0),
        }
    }

    fn on_gone(&mut self, pid: i32) {
        if let Some(p) = self.pending.remove(&pid) {
            self.finish(pid, p, None);
        }
    }

    fn finish(&mut self, pid: i32, p: Pending, ret: Option<(i64, bool)>) {
        for c in p.paths {
            let existed = match (c.precheck, ret) {
                (Some(b), _) => b,
                (None, Some((_, false))) => true,
                (None, Some((rval, true))) => {
                    let errno = (-rval) as i32;
                    !matches!(errno, libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG)
                }
                (None, None) => self.exists_in_root(&c.path),
            };
            let ok_exec =
                matches!(p.def.name, "execve" | "execveat") && matches!(ret, Some((_, false)));
            let path = c.path;
            if ok_exec {
                self.accesses.push(Access {
                    path: path.clone(),
                    syscall: p.def.name,
                    pid,
                    existed,
                });
                self.record_interpreters(pid, &path, p.def.name, 0);
            } else {
                self.accesses.push(Access {
                    path,
                    syscall: p.def.name,
                    pid,
                    existed,
                });
            }
        }
    }

    /// The kernel opens a script's `#!` interpreter itself, without a traced system call;
    /// record it as an access of the `execve`.
    fn record_interpreters(&mut self, pid: i32, script: &Path, syscall: &'static str, depth: u32) {
        if depth >= 4 {
            return;
        }
        let Ok(fd) = open_in_proc_root(pid, script, false) else {
            return;
        };
        let mut buf = [0u8; 256];
        let mut f = std::fs::File::from(fd);
        let n = f.read(&mut buf).unwrap_or(0);
        let head = &buf[..n];
        if !head.starts_with(b"#!") {
            return;
        }
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let line: Vec<u8> = line
            .iter()
            .copied()
            .skip_while(|b| *b == b' ' || *b == b'\t')
            .take_while(|b| *b != b' ' && *b != b'\t')
            .collect();
        if line.is_empty() {
            return;
        }
        let interp = Path::new(OsStr::from_bytes(&line));
        let interp = if interp.is_absolute() {
            clean(interp)
        } else {
            match self.cwd(pid) {
                Some(c) => clean(&c.join(interp)),
                None => return,
            }
        };
        let existed = exists_via_proc(pid, &interp).unwrap_or_else(|| self.exists_in_root(&interp));
        self.accesses.push(Access {
            path: interp.clone(),
            syscall,
            pid,
            existed,
        });
        if existed {
            self.record_interpreters(pid, &interp, syscall, depth + 1);
        }
    }

    fn exists_in_root(&self, path: &Path) -> bool {
        let root = self.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        crate::prune::lookup_in_root(&root, path, false).is_some()
    }

    /// Map a path read from `/proc/PID/{cwd,fd/N}` into the root. Inside the sandbox's own
    /// mount namespace the kernel already prints it relative to the tracee's root; after a
    /// plain chroot it carries the host prefix.
    fn map_into_root(&self, p: PathBuf) -> PathBuf {
        if let Some(root) = &self.root {
            if let Ok(rest) = p.strip_prefix(root) {
                return Path::new("/").join(rest);
            }
        }
        p
    }

    fn proc_link(&self, pid: i32, what: &str) -> Option<PathBuf> {
        let p = std::fs::read_link(format!("/proc/{pid}/{what}")).ok()?;
        if !p.is_absolute() {
            return None; // pipe:[..], socket:[..], anon_inode:..
        }
        Some(self.map_into_root(p))
    }

    fn cwd(&self, pid: i32) -> Option<PathBuf> {
        self.proc_link(pid, "cwd")
    }

    fn fd_path(&self, pid: i32, fd: i32) -> Option<PathBuf> {
        if fd == libc::AT_FDCWD {
            return self.cwd(pid);
        }
        if fd < 0 {
            return None;
        }
        self.proc_link(pid, &format!("fd/{fd}"))
    }

    fn capture(&self, pid: i32, def: &'static SysDef, args: &[u64; 6]) -> Vec<Captured> {
        let mut out = Vec::with_capacity(def.paths.len());
        for spec in def.paths {
            let (dirfd, ptr) = match spec.arg {
                Arg::Path(i) => (libc::AT_FDCWD, args[i]),
                Arg::At(d, i) => (args[d] as i32, args[i]),
                Arg::Fd(d) => {
                    if let Some(p) = self.fd_path(pid, args[d] as i32) {
                        out.push(Captured {
                            path: clean(&p),
                            precheck: None,
                        });
                    }
                    continue;
                }
            };
            let Some(raw) = read_cstring(pid, ptr) else {
                continue;
            };
            let path = if raw.is_empty() {
                if !def.empty_is_fd {
                    continue; // fstatat(fd, "", AT_EMPTY_PATH) and friends: an fd, not a path
                }
                match self.fd_path(pid, dirfd) {
                    Some(p) => clean(&p),
                    None => continue,
                }
            } else if raw[0] == b'/' {
                clean(Path::new(OsStr::from_bytes(&raw)))
            } else {
                match self.fd_path(pid, dirfd) {
                    Some(base) => clean(&base.join(OsStr::from_bytes(&raw))),
                    None => continue,
                }
            };
            let creates = match spec.creates {
                Creates::No => false,
                Creates::Yes => true,
                Creates::IfOCreat(i) => args[i] as i32 & libc::O_CREAT != 0,
                Creates::IfOCreatHow(i) => {
                    let mut b = [0u8; 8];
                    read_bytes(pid, args[i], &mut b)
                        && u64::from_ne_bytes(b) & libc::O_CREAT as u64 != 0
                }
            };
            let precheck = if creates {
                Some(exists_via_proc(pid, &path).unwrap_or_else(|| self.exists_in_root(&path)))
            } else {
                None
            };
            out.push(Captured { path, precheck });
        }
        out
    }
}

/// Open `path` (absolute, in the tracee's root) through `/proc/PID/root` with
/// `RESOLVE_IN_ROOT`, so absolute symlinks resolve inside the tracee's root.
fn open_in_proc_root(pid: i32, path: &Path, path_only: bool) -> Result<OwnedFd, i32> {
    let root = std::fs::File::open(format!("/proc/{pid}/root"))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ESRCH))?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = if path_only {
        (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64
    } else {
        (libc::O_RDONLY | libc::O_CLOEXEC) as u64
    };
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with valid pointers; the returned fd is owned by us.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        // SAFETY: a fresh fd from openat2.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// Whether `path` exists (without following a final symlink) in the tracee's root, or
/// `None` if that cannot be told (the process is gone).
fn exists_via_proc(pid: i32, path: &Path) -> Option<bool> {
    match open_in_proc_root(pid, path, true) {
        Ok(_) => Some(true),
        Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ENAMETOOLONG) => {
            // Is the root itself still there? Then the answer is a real "no".
            if Path::new(&format!("/proc/{pid}/root")).exists() {
                Some(false)
            } else {
                None
            }
        }
        Err(libc::ELOOP) | Err(libc::EACCES) => Some(true),
        Err(_) => None,
    }
}
