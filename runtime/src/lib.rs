//! distill-runtime: the daemonless container runtime behind `distill run/exec/ps/stop/...`.
//!
//! * [`cgroup`]: per-container cgroups on v1, v2 and hybrid hosts (limits, live update with
//!   rollback, OOM detection).
//! * [`state`]: the state root (`state.json` per container, atomic writes, per-container
//!   flock for mutations, lock-free `list`/`inspect` with reconciliation against `/proc`).
//! * [`Runtime`]: the lifecycle. `run` claims the name (its network and IPC namespaces being
//!   made meanwhile on another CPU, see [`premake`]), creates the v1 cgroup, then forks a small
//!   **monitor** (setsid; a second fork with `-d`) that clones the container's init into new
//!   mount/pid/uts/cgroup namespaces (joining the premade ones); the init moves itself into
//!   the cgroup before it sets itself up and execs. The monitor records `running`, reaps it,
//!   records the exit code, signal, OOM kill and time (for `--rm`: unlists it), reports the
//!   exit, and only then deletes an `--rm` container's files, in the background.
//!   `exec` joins every namespace and the cgroup of the running init; the exec'd process gets
//!   the same capabilities, no_new_privs and seccomp filter.
//!
//! * [`checkpoint`]: `checkpoint`/`restore` with CRIU and export/import archives; a restore
//!   is started by a monitor like `run`'s and supervised by the same code.
//!
//! The container's root is a read-only bind of the unpacked image directory; `/tmp`, `/run`
//! and `--rw` paths are directories under `<state>/<name>/rw/`, seeded from the image and
//! bind-mounted read-write ([`container::writable_dirs`]), so they outlive the container's
//! processes until `rm`. [`Runtime::commit`] turns them into a new image layer (freezing a
//! running container meanwhile, [`cgroup::Cgroup::freeze`]). See [`container`] for the
//! details. Where stdout/stderr of a detached container go is decided
//! in one place, [`Runtime::log_sink`]: with a log daemon configured ([`Runtime::with_logd`])
//! the read ends of two pipes are handed to memlogd (started on first use, race-free) before
//! the container execs, so no byte is lost; without one, or when the daemon cannot be
//! reached, they go to `stdout.log`/`stderr.log` in the container's state directory (with one
//! warning line on stderr). Lifecycle events (`created`, `started`, `oom-killed`,
//! `exited code=N` / `exited signal=NAME`) go to the daemon as `<name>.event`.
//! Foreground containers stream to the caller's terminal and, through the same daemon, to the
//! log (when the daemon cannot be reached, to the terminal only).

pub mod cgroup;
pub mod cgroup_devices;
pub mod checkpoint;
mod commit;
pub mod container;
pub mod state;
pub mod terminal;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use cgroup::{CgroupError, DeviceRate, Hierarchy, Limits};
pub use checkpoint::{CheckpointOptions, CheckpointReport, Criu, RestoreOptions};
pub use state::{State, StateError, StateRoot, Status};
pub use terminal::{is_terminal, Attach};

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration is not usable.
    #[error("invalid container configuration: {0}")]
    Config(String),
    /// State root problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// cgroup problem.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Image registry problem (`commit`).
    #[error(transparent)]
    Image(#[from] distill_oci::Error),
    /// The container is not running.
    #[error("container {0:?} is not running")]
    NotRunning(String),
    /// The container is running and the operation needs it stopped.
    #[error("container {0:?} is running: stop it first or use `rm -f`")]
    Running(String),
    /// The container failed to start.
    #[error("container {name:?} failed to start: {reason}")]
    StartFailed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
    /// `exec` failed before the command ran.
    #[error("exec in container {name:?} failed: {reason}")]
    ExecFailed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done.
        op: String,
        /// The cause.
        source: io::Error,
    },
    /// CRIU is missing, too old, or cannot do what was asked on this kernel.
    #[error("{0}")]
    Criu(String),
    /// `checkpoint` failed; the container is as it was.
    #[error("checkpoint of container {name:?} failed: {reason}")]
    CheckpointFailed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
    /// `restore` failed; the container is as it was.
    #[error("restore of container {name:?} failed: {reason}")]
    RestoreFailed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An export archive cannot be written or imported.
    #[error("checkpoint archive {path}: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The checkpoint succeeded (the container is checkpointed) but its export did not.
    #[error("container {name:?} is checkpointed, but its export failed: {reason}; `distill restore {name}` and checkpoint it again with --export")]
    ExportFailed {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Waiting for readiness timed out or the container died first.
    #[error("container {name:?} not ready: {reason}")]
    NotReady {
        /// Container name.
        name: String,
        /// Why.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, RuntimeError>;

fn sys(op: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let op = op.into();
    move |source| RuntimeError::Sys { op, source }
}

fn last_err(op: impl Into<String>) -> RuntimeError {
    RuntimeError::Sys {
        op: op.into(),
        source: io::Error::last_os_error(),
    }
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only loopback, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

impl std::str::FromStr for Network {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            _ => Err(RuntimeError::Config(format!(
                "--network {s:?}: expected none or host"
            ))),
        }
    }
}

/// A bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Host path.
    pub source: PathBuf,
    /// Path in the container.
    pub target: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

impl Volume {
    /// Parses `HOST:CTR[:ro|:rw]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [a, b] => (*a, *b, false),
            [a, b, "ro"] => (*a, *b, true),
            [a, b, "rw"] => (*a, *b, false),
            _ => {
                return Err(RuntimeError::Config(format!(
                    "-v {s:?}: expected HOST:CONTAINER[:ro]"
                )))
            }
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(RuntimeError::Config(format!(
                "-v {s:?}: both paths must be absolute"
            )));
        }
        Ok(Volume {
            source: src.into(),
            target: dst.into(),
            readonly: ro,
        })
    }
}

/// Everything needed to run a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Unique name (`[A-Za-z0-9_.-]`, see [`state::validate_name`]).
    pub name: String,
    /// The image it was started from (name or digest, for display by `ps`/`inspect`).
    pub image: String,
    /// The unpacked image directory (mounted read-only as `/`).
    pub rootfs: PathBuf,
    /// Command and arguments (resolved through `PATH` when without a slash).
    pub argv: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Working directory inside the container (default `/`).
    pub cwd: String,
    /// `UID[:GID]` (numeric); default 0:0.
    pub user: Option<String>,
    /// Hostname (default: the container name).
    pub hostname: String,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Extra tmpfs mount points (not captured by `commit`).
    pub tmpfs: Vec<PathBuf>,
    /// Extra writable directories (`--rw PATH`): on disk in the state directory, seeded from
    /// the image, captured by `commit` (see [`container::writable_dirs`]).
    pub rw: Vec<PathBuf>,
    /// No writable /tmp and /run (the root is always read-only; `rw` paths stay writable).
    pub read_only: bool,
    /// Network mode.
    pub network: Network,
    /// cgroup limits.
    pub limits: Limits,
    /// Signal `stop` sends first (default SIGTERM).
    pub stop_signal: i32,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: u64,
    /// Remove the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// Install the seccomp filter (false for `--security-opt seccomp=unconfined`).
    pub seccomp: bool,
    /// The cgroup (relative to each hierarchy's root) the container's cgroup is made in
    /// (`--cgroup-parent`; [`cgroup::DEFAULT_PARENT`] unless chosen, checked by
    /// [`cgroup::validate_parent`]). Recorded with the container, so every later command
    /// finds its cgroup whatever parent it was started with.
    pub cgroup_parent: String,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            name: String::new(),
            image: String::new(),
            rootfs: PathBuf::new(),
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            user: None,
            hostname: String::new(),
            volumes: Vec::new(),
            tmpfs: Vec::new(),
            rw: Vec::new(),
            read_only: false,
            network: Network::None,
            limits: Limits::default(),
            stop_signal: libc::SIGTERM,
            stop_timeout: 10,
            auto_remove: false,
            seccomp: true,
            cgroup_parent: cgroup::DEFAULT_PARENT.to_string(),
        }
    }
}

/// A process to start in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Extra `KEY=VALUE` (added to the container's environment).
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    pub cwd: Option<String>,
    /// `UID[:GID]` (default: the container's).
    pub user: Option<String>,
}

/// Where a foreground process's stdout/stderr go.
pub enum Output<'a> {
    /// Straight to the caller's own fds 1 and 2 (no copying).
    Inherit,
    /// Copied into these writers until the process closes them.
    Stream {
        /// Receives stdout.
        stdout: &'a mut dyn Write,
        /// Receives stderr.
        stderr: &'a mut dyn Write,
    },
}

/// Parses a signal name or number: `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<distill_sandbox::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| RuntimeError::Config(format!("unknown signal {s:?}")))
}

/// Shell-style exit code of a wait status: the code, or 128+N for signal N.
pub fn exit_code(status: libc::c_int) -> (i32, Option<i32>) {
    if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        (128 + s, Some(s))
    } else {
        (libc::WEXITSTATUS(status), None)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(last_err("pipe"));
    }
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// A pidfd for `pid`, checked against the recorded start time (no pid-reuse races).
fn pidfd(pid: i32, start: Option<u64>) -> Option<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    if start.is_some() && state::proc_start_time(pid) != start {
        return None;
    }
    Some(fd)
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until the process behind `fd` exits; true if it did within `timeout`.
fn pidfd_wait(fd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r > 0 {
            return true;
        }
        if r == 0 {
            return false;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Writes everything to the terminal and to the log daemon's pipe; a failure of one (a closed
/// terminal, a daemon gone) does not stop the other.
struct Tee<'a> {
    terminal: &'a mut dyn Write,
    log: std::fs::File,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.terminal.write_all(buf);
        let _ = self.log.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.terminal.flush()
    }
}

/// The container whose init a [`Forwarder`] signals (a pidfd; -1 until it runs), and the
/// signals that came before it ran (a bit per signal number).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
static FORWARD_PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Whether a [`Forwarder`] is installed in this process (one at a time).
static FORWARD_ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The handler of forwarded signals: async-signal-safe (atomics and one system call).
extern "C" fn forward_signal(sig: libc::c_int) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: the thread's errno, saved and put back around the system call below.
    let errno = unsafe { *libc::__errno_location() };
    let fd = FORWARD_TO.load(SeqCst);
    if fd >= 0 {
        // SAFETY: a raw system call on a pidfd we own; errors (the container is gone) are
        // nothing to act on.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
    } else if (1..64).contains(&sig) {
        FORWARD_PENDING.fetch_or(1 << sig, SeqCst);
    }
    unsafe { *libc::__errno_location() = errno };
}

/// Passes the signals a foreground `run` receives on to its container (see
/// [`Runtime::run_foreground`]): a handler sends each to the container's init through a pidfd,
/// whatever the caller's threads are doing (e.g. blocked writing the container's output to a
/// full pipe), and no thread is started. Signals that arrive while the container starts are
/// remembered and sent once it runs. Dropping it puts the previous handlers back. One per
/// process at a time.
struct Forwarder {
    old: Vec<(i32, libc::sigaction)>,
    pidfd: Option<OwnedFd>,
}

impl Forwarder {
    /// `None` when there is nothing to forward.
    fn new(signals: &[i32]) -> Result<Option<Self>> {
        use std::sync::atomic::Ordering::SeqCst;
        if signals.is_empty() {
            return Ok(None);
        }
        if let Some(s) = signals.iter().find(|s| !(1..64).contains(*s)) {
            return Err(RuntimeError::Config(format!(
                "signal {s} to forward: no such signal"
            )));
        }
        if FORWARD_ACTIVE.swap(true, SeqCst) {
            return Err(RuntimeError::Config(
                "signals are already forwarded to another foreground container of this process; forward none for this one".into(),
            ));
        }
        FORWARD_TO.store(-1, SeqCst);
        FORWARD_PENDING.store(0, SeqCst);
        let mut fwd = Forwarder {
            old: Vec::new(),
            pidfd: None,
        };
        for &sig in signals {
            // SAFETY: sigaction with a handler that only touches atomics and makes one
            // async-signal-safe system call.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut old) != 0 {
                    let e = last_err(format!("install a handler for signal {sig}"));
                    drop(fwd);
                    return Err(e);
                }
                if old.sa_sigaction == libc::SIG_IGN {
                    // Ignored by whoever started us (`nohup`): stays ignored, not forwarded.
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                    continue;
                }
                fwd.old.push((sig, old));
            }
        }
        Ok(Some(fwd))
    }

    /// The container's init `pid` (started at `start`) runs: signals go to it from now on,
    /// and those that came meanwhile go now. Not if the pid is already another process's.
    fn started(&mut self, pid: i32, start: Option<u64>) {
        use std::sync::atomic::Ordering::SeqCst;
        let Some(start) = start else { return };
        let Some(fd) = pidfd(pid, Some(start)) else {
            return;
        };
        FORWARD_TO.store(fd.as_raw_fd(), SeqCst);
        self.pidfd = Some(fd);
        let pending = FORWARD_PENDING.swap(0, SeqCst);
        for sig in 1..64 {
            if pending & (1 << sig) != 0 {
                forward_signal(sig);
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        for (sig, old) in &self.old {
            // SAFETY: puts back the action saved by `new`.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        FORWARD_TO.store(-1, SeqCst);
        self.pidfd = None;
        FORWARD_ACTIVE.store(false, SeqCst);
    }
}

/// Reaps the foreground monitor `pid` if it has exited; otherwise a short-lived thread waits
/// for it, so that the caller returns as soon as the exit code is known (the monitor may still
/// be deleting an `--rm` container's files) and no zombie is left in a long-lived caller.
fn reap_monitor(pid: i32) {
    let mut st = 0;
    if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } != 0 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("monitor-reaper".into())
        .spawn(move || {
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
        });
}

/// Namespaces being made ahead for a container (see [`premake`]).
#[derive(Debug)]
pub struct Premade(distill_sandbox::PendingNamespaces);

/// Starts making, on another CPU, the namespaces a container with `network` has of its own
/// (with `Network::None`: its network namespace, `lo` up, and its IPC namespace), for
/// [`Runtime::use_premade`]. Call it as soon as the network mode is known: the longer before
/// the start, the more of their cost is hidden (a network namespace is the costliest part of
/// starting a container).
pub fn premake(network: Network) -> Option<Premade> {
    container::premake(network).map(Premade)
}

/// The runtime: a state root and the host's cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The state root.
    pub state: StateRoot,
    /// The cgroup hierarchy.
    pub cgroups: Hierarchy,
    /// The log daemon detached containers' output goes to (`None`: files in the state dir).
    pub logd: Option<Logd>,
    /// Whether [`Runtime::run_foreground`] makes sure its monitor is reaped (true by default).
    /// A caller that exits as soon as it returns (the `distill` command) sets it false: the
    /// monitor, which may still be deleting an `--rm` container's files, is re-parented to
    /// init, which reaps it, and no reaper thread is started for nothing.
    pub reap_monitor: bool,
    /// Namespaces already being made for the next container this runtime starts (see
    /// [`premake`]).
    premade: std::sync::Arc<std::sync::Mutex<Option<distill_sandbox::PendingNamespaces>>>,
}

/// What a container's monitor does to the container's record and log, from its start
/// (`monitor_main`) to its end (`monitor_supervise`).
struct Monitor<'a> {
    rt: &'a Runtime,
    name: &'a str,
    events: Option<&'a Logd>,
}

impl Monitor<'_> {
    /// Says `text` in the container's log (with a log daemon; nothing otherwise).
    fn event(&self, text: &str) {
        if let Some(l) = self.events {
            l.event(self.name, text);
        }
    }

    /// Changes the container's recorded state under its lock.
    fn record(&self, f: &dyn Fn(&mut State)) -> std::result::Result<(), String> {
        let state = &self.rt.state;
        let lock = state.lock(self.name).map_err(|e| e.to_string())?;
        let mut s = state.read_raw(self.name).map_err(|e| e.to_string())?;
        f(&mut s);
        state.write(&s, &lock).map_err(|e| e.to_string())
    }
}

/// The container's init as its monitor supervises it.
struct Init {
    pid: i32,
    /// Its start time (clock ticks), if it could be read.
    start: Option<u64>,
    /// The event that says it runs (`started`, `restored`).
    event: &'static str,
    /// Its mount namespace, held until the exit is reported ([`hold_mount_ns`]).
    mnt_ns: Option<File>,
}

/// Opens the mount namespace of the container's init `pid` for the monitor to hold until it
/// has reported the exit. The last process leaving a mount namespace tears it down (every
/// mount of the container's root, and an RCU grace period) before its parent learns of its
/// exit; held here, that happens in the monitor after the report instead: 230 -> 80 us from
/// the init's exit to its parent's `waitpid` in a microbenchmark with 30 mounts. None if
/// the process is gone (nothing to gain then).
fn hold_mount_ns(pid: i32) -> Option<File> {
    File::open(format!("/proc/{pid}/ns/mnt")).ok()
}

/// What the monitor leaves until the exit is reported: the container's mount namespace goes
/// (its teardown, see [`hold_mount_ns`]) and so do its cgroup's directories, renamed aside.
fn after_report(mnt_ns: Option<File>, retired: Option<cgroup::Retired>) {
    drop(mnt_ns);
    if let Some(r) = retired {
        let _ = r.remove();
    }
}

/// Writes `m` (`S pid`, `E reason`, `X code`) to the monitor's status pipe for the process
/// waiting on it; if that process has gone, nobody needs to know.
fn say(status: &mut File, m: &str) {
    let _ = status.write_all(m.as_bytes());
}

/// Name of the log daemon's directory inside the state root. It starts with a `.`, which no
/// container name may, so it never collides with a container and `ps` skips it.
pub const LOGD_DIR: &str = ".logd";

/// The log daemon's state directory (sockets, locks) for the state root `state_root`.
pub fn logd_dir(state_root: &Path) -> PathBuf {
    state_root.join(LOGD_DIR)
}

/// How the runtime reaches (and, on first use, starts) the log daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logd {
    /// The daemon's state directory (`<state>/.logd`).
    pub dir: PathBuf,
    /// A command (program and arguments) that runs the daemon for `dir` in the foreground,
    /// e.g. `distill --state <state> logd`. It is started detached (own session, stdin and
    /// stdout on /dev/null, stderr appended to `<dir>/logd.err`).
    pub command: Vec<OsString>,
}

impl Logd {
    /// Makes sure the daemon runs, starting `command` if none is running or starting
    /// (race-free, see [`distill_memlogd::ensure_running`]). Returns whether it started one.
    pub fn ensure_running(&self) -> std::result::Result<bool, distill_memlogd::Error> {
        distill_memlogd::ensure_running(&self.dir, || self.spawn())
    }

    fn spawn(&self) -> io::Result<()> {
        let (prog, args) = self
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty logd command"))?;
        let mut err = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.dir.join("logd.err"))?;
        // One line per start in the daemon's own log: a daemon that started and exited at
        // once (e.g. a lost race) leaves a trace there, not only a live process.
        writeln!(
            err,
            "{} starting the log daemon (requested by pid {})",
            state::now_ms(),
            std::process::id()
        )?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err));
        // SAFETY: setsid is async-signal-safe; it detaches the daemon from the caller's
        // session and terminal so it outlives the command that started it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        // Reap it should it exit while this process still runs.
        let _ = std::thread::Builder::new()
            .name("logd-reaper".into())
            .spawn(move || child.wait());
        Ok(())
    }

    /// Sends a lifecycle event of container `name` (best effort).
    fn event(&self, name: &str, text: &str) -> bool {
        distill_memlogd::send_event(&self.dir, &format!("{name}.event"), text).is_ok()
    }
}

/// Where a detached container's output goes (see [`Runtime::log_sink`]).
#[derive(Debug)]
pub struct LogSink {
    /// The container's stdout.
    pub stdout: OwnedFd,
    /// The container's stderr.
    pub stderr: OwnedFd,
    /// True when the read ends went to the log daemon; false for the fallback files.
    pub logd: bool,
}

/// The name of a signal for events (`KILL`, `TERM`, ...; the number if unknown).
pub fn signal_name(sig: i32) -> String {
    match distill_sandbox::Signal::try_from(sig) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => sig.to_string(),
    }
}

/// What a monitor starts.
pub(crate) enum Launch {
    /// A new container (`run`).
    Run(Box<container::Prepared>),
    /// A checkpointed container (`restore`).
    Restore(Box<checkpoint::RestorePlan>),
}

/// A launched monitor: its status pipe (for the exit code), the init's pid and start time,
/// and, in the foreground, the monitor's pid (to reap).
type Launched = (BufReader<File>, (i32, Option<u64>), Option<i32>);

/// What the monitor tells `run`.
enum MonitorMsg {
    /// The init's pid and start time (`-` if unknown).
    Started(i32, Option<u64>),
    Failed(String),
}

impl Runtime {
    /// Opens the state root at `state_dir` and detects cgroups.
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Runtime {
            state: StateRoot::open(state_dir)?,
            cgroups: Hierarchy::detect()?,
            logd: None,
            reap_monitor: true,
            premade: Default::default(),
        })
    }

    /// Sends detached containers' output to the log daemon of this state root
    /// (`<state>/.logd`), started on first use with `command` (program and arguments that run
    /// the daemon in the foreground for that directory, e.g. `distill --state S logd`).
    pub fn with_logd(mut self, command: Vec<OsString>) -> Self {
        self.logd = Some(Logd {
            dir: logd_dir(self.state.path()),
            command,
        });
        self
    }

    /// The cgroup of the container `cfg` describes.
    pub fn cgroup(&self, cfg: &ContainerConfig) -> cgroup::Cgroup {
        self.cgroups
            .cgroup(&cfg.cgroup_parent, &self.cgroup_name(&cfg.name))
    }

    /// The cgroup of a container is `<cgroup parent>/<name>-<tag>`, the tag naming the state root
    /// (FNV-1a of its path): two state roots on one host (two users, two test runs) may both
    /// have a container called `web` without sharing, or refusing, a cgroup.
    pub fn cgroup_name(&self, name: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.state.path().as_os_str().as_encoded_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{name}-{:08x}", h as u32)
    }

    /// The one place that decides where a detached container's stdout/stderr go. With a log
    /// daemon ([`Runtime::with_logd`]): it is started if needed, gets the container's
    /// `event` (`created`; recorded before any line can be), then the read ends of two pipes
    /// are handed to it as `<name>.stdout` / `<name>.stderr` (before the container exists, so
    /// no byte is lost) and the write ends are returned. Without one, or if the daemon cannot
    /// be reached (one warning line on stderr): `stdout.log`/`stderr.log` (append) in the
    /// container's state directory.
    pub fn log_sink(&self, name: &str, event: Option<&str>) -> Result<LogSink> {
        if let Some(logd) = &self.logd {
            match self.logd_sink(logd, name, event) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    let dir = self.state.dir(name);
                    eprintln!(
                        "distill: warning: log daemon unavailable ({e}); logs of {name} go to {} and {}",
                        dir.join("stdout.log").display(),
                        dir.join("stderr.log").display()
                    );
                }
            }
        }
        let (stdout, stderr) = self.file_sink(name)?;
        Ok(LogSink {
            stdout,
            stderr,
            logd: false,
        })
    }

    fn logd_sink(
        &self,
        logd: &Logd,
        name: &str,
        event: Option<&str>,
    ) -> std::result::Result<LogSink, String> {
        let (or, ow) = pipe().map_err(|e| e.to_string())?;
        let (er, ew) = pipe().map_err(|e| e.to_string())?;
        let sender = distill_memlogd::Sender::new(&logd.dir).map_err(|e| e.to_string())?;
        let source = format!("{name}.event");
        // `event` (`created`) goes first, before the pipes: the daemon records it before it can
        // read a line from them. A daemon that runs takes the first datagram at once; only when
        // none answers is one started (no query connection, and so no daemon thread, on the
        // common path).
        let mut first = true;
        let mut deliver = |send: &dyn Fn() -> distill_memlogd::Result<()>| {
            let r = match send() {
                Err(distill_memlogd::Error::NotRunning { .. }) if first => {
                    logd.ensure_running().map_err(|e| e.to_string())?;
                    send()
                }
                r => r,
            };
            first = false;
            r.map_err(|e| e.to_string())
        };
        if let Some(text) = event {
            deliver(&|| sender.send_event(&source, text))?;
        }
        deliver(&|| sender.send_fd(&format!("{name}.stdout"), or.as_fd()))?;
        deliver(&|| sender.send_fd(&format!("{name}.stderr"), er.as_fd()))?;
        Ok(LogSink {
            stdout: ow,
            stderr: ew,
            logd: true,
        })
    }

    /// `stdout.log`/`stderr.log` in the container's state directory.
    fn file_sink(&self, name: &str) -> Result<(OwnedFd, OwnedFd)> {
        let dir = self.state.dir(name);
        let open = |f: &str| -> Result<OwnedFd> {
            let p = dir.join(f);
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&p)
                .map(OwnedFd::from)
                .map_err(sys(format!("open log {}", p.display())))
        };
        Ok((open("stdout.log")?, open("stderr.log")?))
    }

    /// Starts a detached container (`run -d`); returns once its command has been exec'd.
    /// Output goes to the log sink.
    pub fn run_detached(&self, cfg: &ContainerConfig) -> Result<State> {
        let premade = self.claim(cfg)?;
        let sink = match self.log_sink(&cfg.name, Some("created")) {
            Ok(x) => x,
            Err(e) => {
                self.discard(&cfg.name);
                return Err(e);
            }
        };
        // (The daemon has its `created` event: `logd_sink` sent it.)
        let events = match (&self.logd, sink.logd) {
            (Some(l), true) => Some(l),
            _ => None,
        };
        let (status, _, _) = self.start(
            cfg,
            (None, sink.stdout, sink.stderr),
            None,
            events,
            true,
            premade,
        )?;
        drop(status);
        match self.state.inspect(&cfg.name) {
            Ok(s) => Ok(s),
            // `--rm` and already gone: report what it was.
            Err(StateError::NotFound(_)) if cfg.auto_remove => {
                let mut s = State::new(cfg.clone());
                s.status = Status::Exited;
                Ok(s)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a container in the foreground: streams its output and returns its exit code
    /// (128+N when killed by signal N) once the monitor has recorded it. The signals in
    /// `forward` (e.g. SIGINT, SIGTERM) are blocked in the calling thread meanwhile and passed
    /// on to the container. Its stdin is `/dev/null`; see [`Runtime::run_foreground_attached`].
    pub fn run_foreground(
        &self,
        cfg: &ContainerConfig,
        output: Output<'_>,
        forward: &[i32],
    ) -> Result<i32> {
        self.run_foreground_attached(cfg, output, forward, Attach::default())
    }

    /// [`Runtime::run_foreground`] with the caller's stdin (`attach.stdin`, `run -i`) and/or
    /// a pseudo-terminal of the container's own (`attach.tty`, `run -t`): see
    /// [`terminal`](crate::terminal). The init never gets a descriptor of the caller's
    /// terminal: where the caller's stdin, stdout or stderr is one, the container gets a
    /// pipe that this call copies.
    pub fn run_foreground_attached(
        &self,
        cfg: &ContainerConfig,
        output: Output<'_>,
        forward: &[i32],
        attach: Attach,
    ) -> Result<i32> {
        let mut fwd = Forwarder::new(forward)?;
        let premade = self.claim(cfg)?;
        let dup = |fd: RawFd| -> Result<OwnedFd> {
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if n < 0 {
                return Err(last_err(format!("dup fd {fd}")));
            }
            Ok(unsafe { OwnedFd::from_raw_fd(n) })
        };
        // A foreground container's output goes to the terminal and, like a detached one's, to
        // the log daemon (started on first use), so `distill logs` has it too. When the daemon
        // cannot be reached the output goes to the terminal only.
        let sink = match output {
            Output::Inherit => self
                .logd
                .as_ref()
                .and_then(|l| self.logd_sink(l, &cfg.name, Some("created")).ok()),
            Output::Stream { .. } => None,
        };
        // With a log sink the daemon has its `created` event (`logd_sink` sent it first).
        let events = match sink {
            Some(_) => self.logd.as_ref(),
            None => self.logd.as_ref().filter(|l| l.event(&cfg.name, "created")),
        };
        // Until `start` owns the claim (it undoes it on its own failures), a failure here
        // must not leave a `created` container behind.
        let undo = |e: RuntimeError| {
            self.discard(&cfg.name);
            e
        };
        // stdin: /dev/null (None), the caller's own when it is not a terminal, else a pipe
        // copied from it (`relay`: the caller's fd and the pipe's write end).
        let mut relay: Option<(RawFd, OwnedFd)> = None;
        let stdin = if attach.stdin && !attach.tty {
            if terminal::is_terminal(0) {
                let (r, w) = pipe().map_err(undo)?;
                relay = Some((0, w));
                Some(r)
            } else {
                Some(dup(0).map_err(undo)?)
            }
        } else {
            None
        };
        let monitor: Option<i32>;
        if attach.tty {
            let (mine, theirs) = terminal::console_pair()
                .map_err(sys("socketpair for the container's terminal"))
                .map_err(undo)?;
            // Its stdio is the terminal it allocates; these only fill the monitor's slots.
            let null = || -> Result<OwnedFd> {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(sys("open /dev/null"))
            };
            let (o, e) = (null().map_err(undo)?, null().map_err(undo)?);
            let (status, pid, m) =
                self.start(cfg, (None, o, e), Some(theirs), events, false, premade)?;
            if let Some(f) = fwd.as_mut() {
                f.started(pid.0, pid.1);
            }
            monitor = m;
            // Every copy of the child's end is closed by now: no terminal means it failed.
            if let Ok(Some(master)) = distill_sandbox::recv_console(&mine) {
                drop(mine);
                // Readable once the monitor reports the exit (or already read ahead).
                let (ended_r, ended_w) = pipe()?;
                let done = if status.buffer().is_empty() {
                    status.get_ref().as_raw_fd()
                } else {
                    drop(ended_w);
                    ended_r.as_raw_fd()
                };
                let mut term_out = io::stdout();
                match (output, sink) {
                    (Output::Stream { stdout, .. }, _) => {
                        terminal::relay_pty(master, attach.stdin, done, stdout)
                    }
                    (Output::Inherit, Some(sink)) => {
                        let mut tee = Tee {
                            terminal: &mut term_out,
                            log: std::fs::File::from(sink.stdout),
                        };
                        terminal::relay_pty(master, attach.stdin, done, &mut tee)
                    }
                    (Output::Inherit, None) => {
                        terminal::relay_pty(master, attach.stdin, done, &mut term_out)
                    }
                }
            }
            let code = read_exit(status);
            return self.foreground_end(cfg, fwd, monitor, code);
        }
        // The caller's own descriptors when nothing needs a copy (no pipe, no copying, no
        // thread); otherwise pipes, relayed below: to the log daemon as well, to the caller's
        // writers, or to a terminal the container must never hold.
        let direct = matches!(output, Output::Inherit)
            && sink.is_none()
            && relay.is_none()
            && !terminal::is_terminal(1)
            && !terminal::is_terminal(2);
        let (out_w, err_w, pipes) = if direct {
            (dup(1).map_err(undo)?, dup(2).map_err(undo)?, None)
        } else {
            let (or, ow) = pipe().map_err(undo)?;
            let (er, ew) = pipe().map_err(undo)?;
            (ow, ew, Some((or, er)))
        };
        let (status, pid, m) =
            self.start(cfg, (stdin, out_w, err_w), None, events, false, premade)?;
        if let Some(f) = fwd.as_mut() {
            f.started(pid.0, pid.1);
        }
        monitor = m;
        if let Some((or, er)) = pipes {
            match output {
                Output::Stream { stdout, stderr } => {
                    terminal::relay_pipes(relay, or, er, stdout, stderr)
                }
                Output::Inherit => {
                    let (mut term_out, mut term_err) = (io::stdout(), io::stderr());
                    match sink {
                        Some(sink) => {
                            let mut out = Tee {
                                terminal: &mut term_out,
                                log: std::fs::File::from(sink.stdout),
                            };
                            let mut err = Tee {
                                terminal: &mut term_err,
                                log: std::fs::File::from(sink.stderr),
                            };
                            terminal::relay_pipes(relay, or, er, &mut out, &mut err);
                        }
                        None => terminal::relay_pipes(relay, or, er, &mut term_out, &mut term_err),
                    }
                }
            }
        }
        let code = read_exit(status);
        self.foreground_end(cfg, fwd, monitor, code)
    }

    /// The end of a foreground run: signals no longer forwarded, the monitor reaped (when
    /// asked), the exit code or why there is none.
    fn foreground_end(
        &self,
        cfg: &ContainerConfig,
        fwd: Option<Forwarder>,
        monitor: Option<i32>,
        code: Option<i32>,
    ) -> Result<i32> {
        drop(fwd);
        if let (Some(m), true) = (monitor, self.reap_monitor) {
            // The monitor is our direct child in the foreground (single fork).
            reap_monitor(m);
        }
        code.ok_or_else(|| match self.state.inspect(&cfg.name) {
            Ok(s) if s.exit_unknown => RuntimeError::StartFailed {
                name: cfg.name.clone(),
                reason: "the monitor died; exit status unknown".into(),
            },
            _ => RuntimeError::StartFailed {
                name: cfg.name.clone(),
                reason: "monitor closed its status pipe without an exit code".into(),
            },
        })
    }

    /// Gives the next container this runtime starts the namespaces [`premake`] is making (if
    /// it asks for them; unused ones are dropped).
    pub fn use_premade(&self, premade: Option<Premade>) {
        if let (Some(p), Ok(mut slot)) = (premade, self.premade.lock()) {
            *slot = Some(p.0);
        }
    }

    /// Validates `cfg` and claims its name. With a network namespace of its own, also
    /// starts making that namespace (and the IPC one) on another thread
    /// ([`distill_sandbox::premake_namespaces`]): the costliest part of the start then
    /// overlaps the claim, the log hand-off and the monitor's fork, and the container joins
    /// them.
    fn claim(&self, cfg: &ContainerConfig) -> Result<Option<distill_sandbox::PendingNamespaces>> {
        cfg.limits.validate()?;
        cgroup::validate_parent(&cfg.cgroup_parent)?;
        let early = self.premade.lock().ok().and_then(|mut p| p.take());
        let premade = if cfg.network == Network::None {
            early.or_else(|| container::premake(cfg.network))
        } else {
            None
        };
        self.prearm();
        let lock = self.state.create(&State::new(cfg.clone()))?;
        drop(lock);
        Ok(premade)
    }

    /// Starts, on a short-lived thread, the RCU grace period that the container's cgroup
    /// migration would otherwise wait for.
    ///
    /// Moving a task between cgroups takes `cgroup_threadgroup_rwsem` for writing, and the
    /// first writer after a quiet period waits for a full RCU grace period (several ms on this
    /// kernel), the largest single cost of starting a container on cgroup v1. The thread moves
    /// this process into the cgroup it is already in (a no-op move) while `run` claims the
    /// name, prepares the mounts and forks the monitor; the monitor's real migration then
    /// finds the grace period already elapsed (or nearly). Best effort: failures are ignored.
    /// (On v2, `clone3(CLONE_INTO_CGROUP)` would avoid the migration altogether; not done yet.)
    fn prearm(&self) {
        // v1 does not migrate another process at all (see `Cgroup::tasks_files`).
        if self.cgroups.is_v1() {
            return;
        }
        let Some(path) = self.prearm_path() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("cgroup-prearm".into())
            .spawn(move || {
                let _ = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(b"0"));
            });
    }

    fn discard(&self, name: &str) {
        if let Ok(l) = self.state.lock(name) {
            let _ = self.state.remove(name, &l);
        }
    }

    /// Forks the monitor of a new container; waits for "started" or a start failure.
    fn start(
        &self,
        cfg: &ContainerConfig,
        (stdin, out, err): (Option<OwnedFd>, OwnedFd, OwnedFd),
        console: Option<OwnedFd>,
        events: Option<&Logd>,
        detach: bool,
        premade: Option<distill_sandbox::PendingNamespaces>,
    ) -> Result<Launched> {
        let fail = |e: RuntimeError| {
            self.discard(&cfg.name);
            e
        };
        let dir = std::path::absolute(self.state.dir(&cfg.name))
            .map_err(sys("resolve the state directory"))
            .map_err(fail)?;
        let mut prepared = container::Prepared::new(cfg, &dir).map_err(fail)?;
        prepared.attach(stdin, console);
        let owner = match &cfg.user {
            Some(u) => container::parse_user(u).map_err(fail)?,
            None => (0, 0),
        };
        container::create_writable_dirs(&dir, cfg, owner).map_err(fail)?;
        // v1: the cgroup is made here, while the namespaces are still being made on another
        // CPU, rather than in the monitor on the way to the clone.
        if self.cgroups.is_v1() {
            let tasks = self.make_v1_cgroup(cfg).map_err(fail)?;
            prepared.join_cgroups(tasks);
        }
        // Made meanwhile on another thread; if that failed, the clone makes them as before.
        if let Some(ns) = premade.and_then(|p| p.wait().ok()) {
            prepared.use_premade(ns);
        }
        self.launch(
            cfg,
            Launch::Run(Box::new(prepared)),
            out,
            err,
            events,
            detach,
        )
    }

    /// v1: checks that the container's cgroup is not in use, creates the directories its
    /// limits need, writes the limits and opens the `tasks` files for its init to move
    /// itself in.
    fn make_v1_cgroup(&self, cfg: &ContainerConfig) -> Result<Vec<OwnedFd>> {
        let cg = self.cgroup(cfg);
        if let Ok(procs) = cg.procs() {
            if !procs.is_empty() {
                return Err(RuntimeError::StartFailed {
                    name: cfg.name.clone(),
                    reason: format!("cgroup {:?} is in use by processes {procs:?}", cg.paths()),
                });
            }
        }
        let needed = cg.needed(&cfg.limits)?;
        let made = needed.make(&cfg.limits).and_then(|()| needed.tasks_files());
        made.map_err(|e| {
            // Whatever part of it was made.
            let _ = needed.remove();
            e.into()
        })
    }

    /// Undoes the claim of a launch that failed before its monitor ran (or whose monitor
    /// died without a word): a new container is removed with its cgroup, a restore puts back
    /// the state it started from.
    fn abort_launch(&self, cfg: &ContainerConfig, launch: &Launch) {
        let name = &cfg.name;
        match launch {
            Launch::Run(p) => {
                // The monitor never ran: the cgroup made for it goes too.
                if p.has_cgroup() {
                    let _ = self.cgroup(cfg).remove();
                }
                self.discard(name)
            }
            Launch::Restore(plan) => {
                if let Ok(l) = self.state.lock(name) {
                    let _ = self.state.write(&plan.prev, &l);
                }
            }
        }
    }

    /// Forks the monitor for `launch` (with the container's stdout/stderr); waits for
    /// "started" or a start failure.
    fn launch(
        &self,
        cfg: &ContainerConfig,
        mut launch: Launch,
        out: OwnedFd,
        err: OwnedFd,
        events: Option<&Logd>,
        detach: bool,
    ) -> Result<Launched> {
        let fail = |launch: &Launch, e: RuntimeError| {
            self.abort_launch(cfg, launch);
            e
        };
        // The init's stdin: /dev/null unless `run -i` gave it one.
        let given = match &mut launch {
            Launch::Run(p) => p.take_stdin(),
            Launch::Restore(_) => None,
        };
        let devnull = match given {
            Some(fd) => fd,
            None => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(sys("open /dev/null"))
                .map_err(|e| fail(&launch, e))?,
        };
        let (status_r, status_w) = pipe().map_err(|e| fail(&launch, e))?;
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(fail(&launch, last_err("fork monitor")));
        }
        if pid == 0 {
            // The monitor runs in its own session. Detached: fork once more and let the
            // intermediate exit, so the monitor is orphaned (re-parented to init or the nearest
            // subreaper) and nobody has to reap it. Foreground: the caller waits for the exit
            // code anyway and reaps the monitor itself, so one fork is enough (a fork and an
            // exit fewer on the start path); if the caller dies, the monitor is re-parented
            // all the same.
            unsafe { libc::setsid() };
            if detach {
                let m = unsafe { libc::fork() };
                if m != 0 {
                    unsafe { libc::_exit(if m < 0 { 1 } else { 0 }) };
                }
            }
            drop(status_r);
            self.monitor_main(
                cfg,
                &mut launch,
                [devnull.into_raw_fd(), out.into_raw_fd(), err.into_raw_fd()],
                status_w.into_raw_fd(),
                events,
            );
        }
        drop(status_w);
        drop(out);
        drop(err);
        let mut reader = BufReader::new(File::from(status_r));
        let msg = read_msg(&mut reader);
        let reap = |pid: i32| {
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
        };
        if detach || !matches!(msg, Some(MonitorMsg::Started(..))) {
            // The intermediate (detached), or a monitor that failed and exits.
            reap(pid);
        }
        match msg {
            Some(MonitorMsg::Started(p, start)) => {
                Ok((reader, (p, start), (!detach).then_some(pid)))
            }
            Some(MonitorMsg::Failed(reason)) => Err(RuntimeError::StartFailed {
                name: cfg.name.clone(),
                reason,
            }),
            None => {
                // The monitor (or, detached, the process forking it) died without a word:
                // nothing of this launch stays (state, cgroup and whatever is in it).
                self.abort_launch(cfg, &launch);
                Err(RuntimeError::StartFailed {
                    name: cfg.name.clone(),
                    reason: "the monitor exited before starting the container".into(),
                })
            }
        }
    }

    /// `cgroup.procs` of the cgroup this process is in (see [`Runtime::prearm`]).
    fn prearm_path(&self) -> Option<PathBuf> {
        // v1: a hierarchy the container joins anyway; v2: the unified one ("" controllers).
        let (mount, ctrl) = if self.cgroups.is_v1() {
            ["freezer", "pids", "memory"]
                .iter()
                .find_map(|c| Some((self.cgroups.v1.get(*c)?, *c)))?
        } else {
            (self.cgroups.v2.as_ref()?, "")
        };
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let hit = if ctrl.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == ctrl)
            };
            hit.then(|| path.to_string())
        })?;
        Some(mount.join(rel.trim_start_matches('/')).join("cgroup.procs"))
    }

    /// The monitor process. Never returns.
    fn monitor_main(
        &self,
        cfg: &ContainerConfig,
        launch: &mut Launch,
        stdio: [RawFd; 3],
        status_fd: RawFd,
        events: Option<&Logd>,
    ) -> ! {
        let mon = Monitor {
            rt: self,
            name: &cfg.name,
            events,
        };
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            // Not the caller's forwarding handlers (`Forwarder`): a signal to the monitor
            // acts on the monitor.
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            // Do not hold the caller's terminal or pipes: stdio to /dev/null and close every
            // other inherited descriptor.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                if !stdio.contains(&fd) && fd != status_fd {
                    libc::dup2(null, fd);
                }
            }
            if null > 2 {
                libc::close(null);
            }
        }
        let mut keep = vec![0, 1, 2, stdio[0], stdio[1], stdio[2], status_fd];
        if let Launch::Run(p) = &*launch {
            keep.extend(p.held_fds());
        }
        distill_sandbox::close_fds_except(&keep);
        let mut status = unsafe { File::from_raw_fd(status_fd) };
        let name = cfg.name.clone();
        let cg = self.cgroup(cfg);
        let me = unsafe { libc::getpid() };
        // A failed restore leaves the container as it was (checkpointed, images kept).
        let restoring: Option<State> = match launch {
            Launch::Restore(plan) => Some(plan.prev.clone()),
            Launch::Run(_) => None,
        };
        let finish_failed = |status: &mut File, reason: String, cleanup_cg: bool| -> ! {
            if cleanup_cg {
                let _ = cg.remove();
            }
            if let Some(prev) = &restoring {
                let _ = mon.record(&|s: &mut State| *s = prev.clone());
            } else {
                let _ = mon.record(&|s: &mut State| {
                    s.status = Status::Exited;
                    s.error = Some(reason.clone());
                    s.exit_code = Some(127);
                    s.finished_ms = Some(state::now_ms());
                });
                if cfg.auto_remove {
                    self.discard(&name);
                }
            }
            mon.event(&format!("failed: {}", reason.replace('\n', " ")));
            say(status, &format!("E {}\n", reason.replace('\n', " ")));
            unsafe { libc::_exit(1) }
        };
        let kill_child = |child: &mut distill_sandbox::Child| {
            let _ = child.kill(distill_sandbox::Signal::SIGKILL);
            let _ = child.wait();
        };
        // SAFETY: the monitor owns these descriptors (dup'd for it by `start`).
        let stdio_fds = stdio.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        // (A new v1 container's cgroup was checked and made by `start`.)
        let made = matches!(launch, Launch::Run(p) if p.has_cgroup());
        if let Some(Ok(procs)) = (!made).then(|| cg.procs()) {
            if !procs.is_empty() {
                finish_failed(
                    &mut status,
                    format!("cgroup {:?} is in use by processes {procs:?}", cg.paths()),
                    false,
                );
            }
        }
        // v1: only the controllers the limits use (plus memory and pids).
        let cg_full = cg.clone();
        let cg = match cg.needed(&cfg.limits) {
            Ok(c) => c,
            Err(e) => finish_failed(&mut status, e.to_string(), false),
        };
        let stdio_inodes = checkpoint::stdio_inodes(&stdio_fds[1..]);
        let record_monitor = |paths: Vec<PathBuf>| {
            mon.record(&|s: &mut State| {
                s.monitor_pid = Some(me);
                s.monitor_start = state::proc_start_time(me);
                s.cgroup_paths = paths.clone();
                s.stdio_inodes = stdio_inodes.clone();
            })
        };
        let prepared = match launch {
            Launch::Run(p) => p,
            Launch::Restore(plan) => {
                // CRIU creates the tasks; they join the cgroup (created here, with the
                // limits) through its --cgroup-root, like a new container's init would.
                if let Err(e) = cg.make(&cfg.limits) {
                    finish_failed(&mut status, e.to_string(), true);
                }
                if let Err(e) = record_monitor(cg.paths()) {
                    finish_failed(&mut status, e, true);
                }
                let pid = match checkpoint::restore_tree(plan, stdio_fds) {
                    Ok(p) => p,
                    Err(e) => finish_failed(&mut status, e, true),
                };
                let init = Init {
                    mnt_ns: hold_mount_ns(pid),
                    pid,
                    start: state::proc_start_time(pid),
                    event: "restored",
                };
                self.monitor_supervise(cfg, init, &cg, &cg_full, status, &mon)
            }
        };
        let (mut child, child_pid) = if self.cgroups.is_v1() {
            // v1: the container's init moves itself into its cgroup (made, with its limits,
            // by `start`) first thing after clone (`Spec::join_cgroups`): a one-thread
            // self-move skips the RCU grace period that moving another process waits for.
            if !prepared.has_cgroup() {
                finish_failed(
                    &mut status,
                    "no cgroup was made for the container".into(),
                    true,
                );
            }
            let child = match prepared.spawn(stdio_fds) {
                Ok(c) => c,
                Err(e) => finish_failed(&mut status, e.to_string(), true),
            };
            let child_pid = child.pid().as_raw();
            (child, child_pid)
        } else {
            // v2: the sandbox builds the container's root while the cgroup is created and the
            // child moved into it; it waits before exec.
            let mut child = match prepared.spawn(stdio_fds) {
                Ok(c) => c,
                Err(e) => finish_failed(&mut status, e.to_string(), true),
            };
            let child_pid = child.pid().as_raw();
            if let Err(e) = cg.make(&cfg.limits) {
                kill_child(&mut child);
                finish_failed(&mut status, e.to_string(), true);
            }
            if let Err(e) = cg.add_pid(child_pid) {
                kill_child(&mut child);
                finish_failed(&mut status, e.to_string(), true);
            }
            (child, child_pid)
        };
        // (On v2 before the release: the init cannot have exited yet. On v1 it has just
        // exec'd; a program that is gone already leaves nothing to hold.)
        let mnt_ns = hold_mount_ns(child_pid);
        let child_start = state::proc_start_time(child_pid);
        // On v1 the program already runs: recording the monitor before the clone instead
        // would put this write (~0.2 ms with the faults it takes) back on the way to the
        // program. Meanwhile the state says `created` without a monitor, as it does from the
        // claim on; an `rm -f` that lands there removes the cgroup, which kills the program,
        // and this record then fails and reports a failed start, as before the program ran.
        if let Err(e) = record_monitor(cg.paths()) {
            kill_child(&mut child);
            finish_failed(&mut status, e, true);
        }
        // Returns once the container's command has been exec'd, or why it could not be.
        if let Err(e) = child.release() {
            let _ = child.wait();
            finish_failed(&mut status, e.to_string(), true);
        }
        let init = Init {
            pid: child_pid,
            start: child_start,
            event: "started",
            mnt_ns,
        };
        self.monitor_supervise(cfg, init, &cg, &cg_full, status, &mon)
    }

    /// The rest of the monitor's life once the container's init runs (started or restored,
    /// and our child either way): records `running`, reaps it and records its exit. Never
    /// returns.
    fn monitor_supervise(
        &self,
        cfg: &ContainerConfig,
        init: Init,
        cg: &cgroup::Cgroup,
        cg_full: &cgroup::Cgroup,
        mut status: File,
        mon: &Monitor<'_>,
    ) -> ! {
        let Init {
            pid: child,
            start: child_start,
            event: started,
            mnt_ns,
        } = init;
        let name = &cfg.name;
        let _ = mon.record(&|s: &mut State| {
            s.status = Status::Running;
            s.pid = Some(child);
            s.pid_start = child_start;
            s.started_ms = Some(state::now_ms());
        });
        mon.event(started);
        let start = child_start.map_or_else(|| "-".to_string(), |s| s.to_string());
        say(&mut status, &format!("S {child} {start}\n"));
        let mut st = 0;
        let reaped = loop {
            let r = unsafe { libc::waitpid(child, &mut st, 0) };
            if r == child {
                break true;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break false;
            }
        };
        // A status that was never read is unknown, not "exited 0".
        let (code, signal) = if reaped { exit_code(st) } else { (255, None) };
        let oom = cg.oom_killed();
        // A checkpoint (without --leave-running) ends the container on purpose and records
        // `checkpointed` itself, holding the lock until it has: that is not an exit to
        // record, nor one that removes an --rm container. The cgroup goes either way (all
        // controllers: an update may have added some): renamed out of the way under the lock,
        // so that a restore or a new container of that name never meets it, and deleted
        // after the exit is reported.
        //
        // The init can be reaped only after `checkpoint` has returned and a `restore` (or an
        // `rm`) has taken the container over: the monitor then acts only while the state
        // still names it as the container's monitor (a restore records itself, `rm` removes
        // the state), so it never removes the restored container's cgroup nor records an exit
        // over it.
        let me = unsafe { libc::getpid() };
        // The exit (or the removal of an --rm container) is recorded under the same lock.
        let mut trash = None;
        let mut retired = None;
        let checkpointed = {
            let lock = self.state.lock(name);
            match (&lock, self.state.read_raw(name)) {
                (Ok(lock), Ok(mut s)) if s.monitor_pid == Some(me) => {
                    // Out of the way under the lock; deleted once the exit is reported.
                    retired = Some(cg_full.retire());
                    if s.status == Status::Checkpointed {
                        s.monitor_pid = None;
                        s.monitor_start = None;
                        let _ = self.state.write(&s, lock);
                        Some(true)
                    } else {
                        if cfg.auto_remove {
                            // Unlisted at once; its files are deleted after the exit is
                            // reported, so that the caller does not wait for them.
                            trash = self.state.unlist(name, lock).ok();
                        } else {
                            s.status = Status::Exited;
                            s.exit_code = reaped.then_some(code);
                            s.exit_unknown = !reaped;
                            s.signal = signal;
                            s.oom_killed = oom;
                            s.finished_ms = Some(state::now_ms());
                            let _ = self.state.write(&s, lock);
                        }
                        Some(false)
                    }
                }
                _ => None,
            }
        };
        if checkpointed != Some(false) {
            if checkpointed == Some(true) {
                mon.event("checkpointed");
            }
            say(&mut status, "X 0\n");
            after_report(mnt_ns, retired);
            unsafe { libc::_exit(0) }
        }
        // After the state is committed, so a reader that sees `exited` finds it recorded.
        if oom {
            mon.event("oom-killed");
        }
        match (reaped, signal) {
            (false, _) => mon.event("exited status unknown"),
            (true, Some(sig)) => mon.event(&format!("exited signal={}", signal_name(sig))),
            (true, None) => mon.event(&format!("exited code={code}")),
        }
        say(&mut status, &format!("X {code}\n"));
        drop(status);
        after_report(mnt_ns, retired);
        if let Some(t) = trash {
            // The files go in the background, in a process of their own at idle priority:
            // the caller, woken by the code just written and likely placed on this CPU, runs
            // first, and `stop`, `rm -f` and `wait`, which wait for the monitor to exit, do
            // not wait for a large /tmp to be deleted.
            // SAFETY: fork in this single-threaded process; the child only deletes files
            // and exits.
            match unsafe { libc::fork() } {
                0 => {
                    unsafe {
                        let p = libc::sched_param { sched_priority: 0 };
                        libc::sched_setscheduler(0, libc::SCHED_IDLE, &p);
                    }
                    t.purge();
                    unsafe { libc::_exit(0) }
                }
                -1 => t.purge(),
                _ => {}
            }
        }
        unsafe { libc::_exit(0) }
    }

    /// All containers (reconciled, lock-free).
    pub fn list(&self) -> Result<Vec<State>> {
        Ok(self.state.list()?)
    }

    /// One container (reconciled, lock-free).
    pub fn inspect(&self, name: &str) -> Result<State> {
        Ok(self.state.inspect(name)?)
    }

    /// Sends `sig` to the container's init.
    pub fn kill(&self, name: &str, sig: i32) -> Result<()> {
        let _lock = self.state.lock(name)?;
        let s = self.state.inspect(name)?;
        let fd = running_pidfd(&s)?;
        pidfd_signal(&fd, sig).map_err(sys(format!("signal {sig} to container {name}")))
    }

    /// Stops the container: its stop signal, up to `timeout` (default: its stop timeout)
    /// for it to exit, then SIGKILL. Returns the final state. The lock is held only while
    /// signalling, so `ps`, `kill` and the monitor are never held up by the grace period.
    pub fn stop(&self, name: &str, timeout: Option<Duration>) -> Result<State> {
        let (fd, s) = {
            let _lock = self.state.lock(name)?;
            let s = self.state.inspect(name)?;
            if s.status != Status::Running {
                return Ok(s);
            }
            let Ok(fd) = running_pidfd(&s) else {
                return Ok(s);
            };
            let _ = pidfd_signal(&fd, s.config.stop_signal);
            (fd, s)
        };
        let grace = timeout.unwrap_or(Duration::from_secs(s.config.stop_timeout));
        if !pidfd_wait(&fd, Some(grace)) {
            let _lock = self.state.lock(name)?;
            let _ = pidfd_signal(&fd, libc::SIGKILL);
        }
        pidfd_wait(&fd, Some(Duration::from_secs(10)));
        self.wait_monitor(&s, Duration::from_secs(10));
        match self.state.inspect(name) {
            Ok(s) => Ok(s),
            Err(StateError::NotFound(_)) if s.config.auto_remove => {
                let mut s = s;
                s.status = Status::Exited;
                Ok(s)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn wait_monitor(&self, s: &State, timeout: Duration) {
        if let Some(mp) = s.monitor_pid {
            if let Some(fd) = pidfd(mp, s.monitor_start) {
                pidfd_wait(&fd, Some(timeout));
            }
        }
    }

    /// Waits for the container to exit and returns its final state.
    pub fn wait(&self, name: &str) -> Result<State> {
        let s = self.state.inspect(name)?;
        if s.status == Status::Exited {
            return Ok(s);
        }
        if let Some(mp) = s.monitor_pid {
            if let Some(fd) = pidfd(mp, s.monitor_start) {
                pidfd_wait(&fd, None);
                return Ok(self.state.inspect(name).unwrap_or_else(|_| {
                    let mut s = s.clone();
                    s.status = Status::Exited;
                    s
                }));
            }
        }
        // No monitor: wait on the init itself.
        if let Some(p) = s.pid {
            if let Some(fd) = pidfd(p, s.pid_start) {
                pidfd_wait(&fd, None);
            }
        }
        Ok(self.state.inspect(name)?)
    }

    /// Removes an exited container; with `force`, kills a running one first.
    pub fn rm(&self, name: &str, force: bool) -> Result<()> {
        let s = {
            let _lock = self.state.lock(name)?;
            let s = self.state.inspect(name)?;
            if !matches!(s.status, Status::Exited | Status::Checkpointed) {
                if !force {
                    return Err(RuntimeError::Running(name.into()));
                }
                if let Ok(fd) = running_pidfd(&s) {
                    let _ = pidfd_signal(&fd, libc::SIGKILL);
                }
            }
            s
        };
        if !matches!(s.status, Status::Exited | Status::Checkpointed) {
            if let Some(p) = s.pid {
                if let Some(fd) = pidfd(p, s.pid_start) {
                    pidfd_wait(&fd, Some(Duration::from_secs(10)));
                }
            }
            self.wait_monitor(&s, Duration::from_secs(10));
        }
        let lock = match self.state.lock(name) {
            Ok(l) => l,
            Err(StateError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let _ = self.cgroup(&s.config).remove();
        self.state.remove(name, &lock)?;
        Ok(())
    }

    /// Changes the limits of a running container live. Only the fields set in `new` change;
    /// a refused write restores the old values and the recorded limits stay as they were.
    pub fn update(&self, name: &str, new: &Limits) -> Result<Limits> {
        let lock = self.state.lock(name)?;
        let mut s = self.state.inspect(name)?;
        if s.status != Status::Running {
            return Err(RuntimeError::NotRunning(name.into()));
        }
        if new.is_empty() {
            return Err(RuntimeError::Config("update: no limit given".into()));
        }
        let merged = s.config.limits.merged(new);
        merged.validate()?;
        // A container started without, say, a CPU limit has no cpu directory yet (v1).
        let cg = self.cgroup(&s.config);
        cg.existing().grow_to(&cg.needed(&merged)?)?;
        cg.update(new)?;
        s.cgroup_paths = cg.existing().paths();
        s.config.limits = merged.clone();
        self.state.write(&s, &lock)?;
        Ok(merged)
    }

    /// Runs a command inside the running container (all its namespaces and its cgroup,
    /// with its capabilities, no_new_privs and seccomp). Returns the exit code. Its stdin is
    /// `/dev/null`; see [`Runtime::exec_attached`].
    pub fn exec(&self, name: &str, ex: &ExecConfig, output: Output<'_>) -> Result<i32> {
        self.exec_attached(name, ex, output, Attach::default())
    }

    /// [`Runtime::exec`] with the caller's stdin (`attach.stdin`, `exec -i`) and/or a
    /// pseudo-terminal of the container's own (`attach.tty`, `exec -t`): see
    /// [`terminal`](crate::terminal). The process is in a session of its own and never gets
    /// a descriptor of the caller's terminal.
    pub fn exec_attached(
        &self,
        name: &str,
        ex: &ExecConfig,
        output: Output<'_>,
        attach: Attach,
    ) -> Result<i32> {
        let s = self.state.inspect(name)?;
        if s.status != Status::Running {
            return Err(RuntimeError::NotRunning(name.into()));
        }
        let pid = s.pid.ok_or_else(|| RuntimeError::NotRunning(name.into()))?;
        let exec_err = |reason: String| RuntimeError::ExecFailed {
            name: name.into(),
            reason,
        };
        let cfg = &s.config;
        let mut env = cfg.env.clone();
        for e in &ex.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|o| o.split('=').next() != Some(key));
            env.push(e.clone());
        }
        let user = match ex.user.as_ref().or(cfg.user.as_ref()) {
            Some(u) => Some(container::parse_user(u)?),
            None => None,
        };
        let cwd = ex.cwd.clone().unwrap_or_else(|| cfg.cwd.clone());
        let mut spec = container::exec_spec(&ex.argv, &env, &cwd, user, cfg.seccomp, pid)?;
        // Never in the caller's session: its controlling terminal would be the caller's.
        spec.new_session = true;
        let mut console = None;
        let mut relay: Option<(RawFd, OwnedFd)> = None;
        if attach.tty {
            let (mine, theirs) =
                terminal::console_pair().map_err(sys("socketpair for the process's terminal"))?;
            spec.console_socket = Some(theirs);
            console = Some(mine);
        } else if !attach.stdin {
            spec.stdin = distill_sandbox::Stdio::Null;
        } else if terminal::is_terminal(0) {
            let (r, w) = pipe()?;
            spec.stdin = distill_sandbox::Stdio::Fd(r);
            relay = Some((0, w));
        }
        // (Otherwise the caller's stdin, which is not a terminal, as it is.)
        let copy_output = match &output {
            Output::Inherit => {
                !attach.tty
                    && (relay.is_some() || terminal::is_terminal(1) || terminal::is_terminal(2))
            }
            Output::Stream { .. } => !attach.tty,
        };
        let pipes = if copy_output {
            let (or, ow) = pipe()?;
            let (er, ew) = pipe()?;
            spec.stdout = distill_sandbox::Stdio::Fd(ow);
            spec.stderr = distill_sandbox::Stdio::Fd(ew);
            Some((or, er))
        } else {
            None
        };
        // Joins every namespace of the container; not dumpable until it execs (CVE-2019-5736).
        let target = distill_sandbox::Pid::from_raw(pid);
        let cg = self.cgroup(&s.config).existing();
        // v1: the process moves itself into the container's cgroup right after clone (a
        // self-move is cheap; moving it from here afterwards would wait for an RCU grace
        // period, 20 ms for the first exec after a quiet moment), before anything else runs.
        let v1 = self.cgroups.is_v1();
        if v1 {
            spec.join_cgroups = cg
                .tasks_files()
                .map_err(|e| exec_err(format!("join its cgroup: {e}")))?;
        }
        let mut child = distill_sandbox::spawn_in(target, &container::exec_namespaces(), &spec)
            .map_err(|e| exec_err(e.to_string()))?;
        drop(spec);
        // The pid may have been reused by the time the namespaces were opened.
        if state::proc_start_time(pid) != s.pid_start {
            let _ = child.wait();
            return Err(RuntimeError::NotRunning(name.into()));
        }
        if !v1 {
            if let Err(e) = cg.add_pid(child.pid().as_raw()) {
                let _ = child.wait();
                return Err(exec_err(format!("join its cgroup: {e}")));
            }
        }
        let released = child.release();
        if let (Some(sock), true) = (&console, released.is_ok()) {
            // Readable when the process has exited (it is our child).
            let done = unsafe { libc::syscall(libc::SYS_pidfd_open, child.pid().as_raw(), 0) };
            let done = (done >= 0).then(|| unsafe { OwnedFd::from_raw_fd(done as RawFd) });
            if let (Ok(Some(master)), Some(done)) = (distill_sandbox::recv_console(sock), done) {
                match output {
                    Output::Stream { stdout, .. } => {
                        terminal::relay_pty(master, attach.stdin, done.as_raw_fd(), stdout)
                    }
                    Output::Inherit => terminal::relay_pty(
                        master,
                        attach.stdin,
                        done.as_raw_fd(),
                        &mut io::stdout(),
                    ),
                }
            }
        } else if let Some((or, er)) = pipes {
            match output {
                Output::Stream { stdout, stderr } => {
                    terminal::relay_pipes(relay, or, er, stdout, stderr)
                }
                Output::Inherit => {
                    terminal::relay_pipes(relay, or, er, &mut io::stdout(), &mut io::stderr())
                }
            }
        }
        released.map_err(|e| exec_err(e.to_string()))?;
        let st = child
            .wait()
            .map_err(|e| exec_err(format!("wait for the exec'd process: {e}")))?;
        Ok(st.as_shell_code())
    }

    /// Polls `url` (plain `http://host:port/path`) until it answers 2xx, the container
    /// exits, or `timeout` passes (`run --ready-http`).
    pub fn wait_ready_http(&self, name: &str, url: &str, timeout: Duration) -> Result<()> {
        let not_ready = |reason: String| RuntimeError::NotReady {
            name: name.into(),
            reason,
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            RuntimeError::Config(format!(
                "--ready-http {url:?}: only http:// URLs are supported"
            ))
        })?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let s = self.state.inspect(name)?;
            if s.status == Status::Exited {
                return Err(not_ready(format!(
                    "it exited (code {:?}) before {url} answered 2xx",
                    s.exit_code
                )));
            }
            match http_status(&addr, hostport, path) {
                Ok(code) if (200..300).contains(&code) => return Ok(()),
                Ok(code) => last = format!("last answer was HTTP {code}"),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(not_ready(format!(
                    "{url} did not answer 2xx within {timeout:?} ({last})"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn http_status(addr: &str, host: &str, path: &str) -> io::Result<u16> {
    use std::net::{TcpStream, ToSocketAddrs};
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}")))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })
}

fn running_pidfd(s: &State) -> Result<OwnedFd> {
    if s.status != Status::Running {
        return Err(RuntimeError::NotRunning(s.name.clone()));
    }
    let pid = s
        .pid
        .ok_or_else(|| RuntimeError::NotRunning(s.name.clone()))?;
    pidfd(pid, s.pid_start).ok_or_else(|| RuntimeError::NotRunning(s.name.clone()))
}

fn read_msg(r: &mut BufReader<File>) -> Option<MonitorMsg> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let line = line.trim_end();
    if let Some(p) = line.strip_prefix("S ") {
        let mut it = p.split(' ');
        let pid = it.next()?.parse().ok()?;
        return Some(MonitorMsg::Started(
            pid,
            it.next().and_then(|s| s.parse().ok()),
        ));
    }
    line.strip_prefix("E ")
        .map(|m| MonitorMsg::Failed(m.to_string()))
}

/// Reads the monitor's `X code` line.
fn read_exit(mut r: BufReader<File>) -> Option<i32> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    line.trim_end().strip_prefix("X ")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_with_or_without_sig_and_by_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGSEGV").unwrap(), libc::SIGSEGV);
        assert_eq!(parse_signal("chld").unwrap(), libc::SIGCHLD);
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("40").unwrap(), 40);
        for bad in ["0", "65", "SIGNOPE", "", "-1"] {
            let e = parse_signal(bad).unwrap_err().to_string();
            assert!(e.contains("unknown signal"), "{bad}: {e}");
        }
    }

    #[test]
    fn signal_names_round_trip_without_the_sig_prefix() {
        for sig in [libc::SIGTERM, libc::SIGKILL, libc::SIGWINCH, libc::SIGSYS] {
            let name = signal_name(sig);
            assert!(!name.starts_with("SIG"), "{name}");
            assert_eq!(parse_signal(&name).unwrap(), sig);
        }
        assert_eq!(signal_name(libc::SIGTERM), "TERM");
        // Real-time signals have no name: the number.
        assert_eq!(signal_name(40), "40");
    }
}
