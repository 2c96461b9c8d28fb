//! The state root: one directory per container holding `state.json`, `lock`, and logs.
//!
//! ```text
//! <state>/<name>/state.json   committed state (tmp file + fsync + rename + dir fsync)
//! <state>/<name>/lock         flock'd by every mutation (run's monitor, stop, rm, update)
//! <state>/<name>/stdout.log   detached-mode logs (until memlogd takes the fds)
//! <state>/<name>/stderr.log
//! <state>/<name>/checkpoint/  CRIU images + distill.json of the last checkpoint
//! <state>/<name>/criu-*.log   CRIU's logs of the last dump and restore
//! <state>/<name>/rw/<path>    writable directories (/tmp, /run, --rw), see container::writable_dirs
//! <state>/.trash/<name>.<pid>.<ns>  a removed container's directory until it is deleted
//! ```
//!
//! Creating the container directory with `mkdir` is the claim on the name, so two `run`s
//! racing for one name cannot both win. `list` and `inspect` never lock: they read only
//! `state.json` files, which are replaced atomically, and reconcile what they read with
//! `/proc` (a `running` container whose pid is gone or reused, with no live monitor, is
//! reported as exited with unknown status).

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ContainerConfig;

/// Default state root.
pub const DEFAULT_STATE: &str = "/run/distill";

/// Errors of the state root.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The container name is not acceptable.
    #[error("invalid container name {0:?}: use 1-128 characters from [A-Za-z0-9_.-], not starting with '.' or '-'")]
    BadName(String),
    /// Another container has the name.
    #[error("container name {0:?} is already in use: remove it with `distill rm {0}` or choose another --name")]
    NameInUse(String),
    /// No such container.
    #[error("no such container {0:?} (see `distill ps -a`)")]
    NotFound(String),
    /// A file operation failed.
    #[error("state {op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// state.json does not parse.
    #[error("corrupt state file {path}: {source}; remove the container directory by hand")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StateError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Directory claimed, process not started yet.
    Created,
    /// The container's init process is running.
    Running,
    /// The container has exited (or its fate is unknown, see `State::exit_unknown`).
    Exited,
    /// Its process tree was dumped by `checkpoint` and stopped; `restore` brings it back
    /// from [`State::checkpoint`].
    Checkpointed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Checkpointed => "checkpointed",
        })
    }
}

/// The committed state of one container (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Container name.
    pub name: String,
    /// Status.
    pub status: Status,
    /// Host pid of the container's init, once running.
    pub pid: Option<i32>,
    /// Start time of `pid` (field 22 of /proc/pid/stat), to detect pid reuse.
    pub pid_start: Option<u64>,
    /// Host pid of the monitor.
    pub monitor_pid: Option<i32>,
    /// Start time of the monitor.
    pub monitor_start: Option<u64>,
    /// Exit code (128+N for a signal, like a shell).
    pub exit_code: Option<i32>,
    /// The signal that killed the container, if any.
    pub signal: Option<i32>,
    /// True when the kernel OOM-killed a process of the container.
    pub oom_killed: bool,
    /// True when the exit status could not be observed (monitor died).
    pub exit_unknown: bool,
    /// Why the container failed to start, if it did.
    pub error: Option<String>,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: u64,
    /// Start time, ms since the epoch.
    pub started_ms: Option<u64>,
    /// Exit time, ms since the epoch.
    pub finished_ms: Option<u64>,
    /// cgroup directories.
    pub cgroup_paths: Vec<PathBuf>,
    /// The configuration it was started with (limits updated by `update`).
    pub config: ContainerConfig,
    /// The directory of its last checkpoint (CRIU images), if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    /// Inodes of the pipes or log files the init got as stdout and stderr (0 for anything
    /// else), so a checkpoint can find them in whichever process holds them later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stdio_inodes: Vec<u64>,
}

impl State {
    /// A fresh `created` state.
    pub fn new(config: ContainerConfig) -> Self {
        State {
            name: config.name.clone(),
            status: Status::Created,
            pid: None,
            pid_start: None,
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            signal: None,
            oom_killed: false,
            exit_unknown: false,
            error: None,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
            cgroup_paths: Vec::new(),
            config,
            checkpoint: None,
            stdio_inodes: Vec::new(),
        }
    }

    /// Records the calling process as the monitor, for a command that claims the container
    /// and works on it before its real monitor runs (`restore`, `import`): if that command
    /// is killed meanwhile, reconciliation sees the container as exited instead of leaving
    /// it `created` for ever.
    pub fn claimed_by_this_process(mut self) -> Self {
        let me = std::process::id() as i32;
        self.monitor_pid = Some(me);
        self.monitor_start = proc_start_time(me);
        self
    }

    /// True when the container's init is alive (same pid and start time).
    pub fn pid_alive(&self) -> bool {
        matches!((self.pid, self.pid_start), (Some(p), Some(s)) if proc_start_time(p) == Some(s))
    }

    /// True when the monitor is alive.
    pub fn monitor_alive(&self) -> bool {
        matches!((self.monitor_pid, self.monitor_start), (Some(p), Some(s)) if proc_start_time(p) == Some(s))
    }

    /// True when /proc contradicts this view: a `running` container whose init is gone (or
    /// whose pid now belongs to another process) and whose monitor is gone too, or a
    /// `created` container whose monitor is gone.
    fn looks_stale(&self) -> bool {
        match self.status {
            Status::Running => !self.pid_alive() && !self.monitor_alive(),
            Status::Created => self.monitor_pid.is_some() && !self.monitor_alive(),
            Status::Exited | Status::Checkpointed => false,
        }
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parens: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); starttime is field 22.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// An exclusive per-container lock (flock), released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Checks a container name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_string()))
    }
}

/// The state root directory.
#[derive(Debug, Clone)]
pub struct StateRoot {
    path: PathBuf,
}

impl StateRoot {
    /// Opens (creating, mode 0700) the state root at `path`. One there already must be the
    /// caller's and writable by nobody else; one others can only read or search is made
    /// 0700 ([`distill_oci::ensure_private_dir`]: the containers' writable files, set-id
    /// programs included, are below it).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        distill_oci::ensure_private_dir(&path, "--state").map_err(io_err("check", &path))?;
        Ok(StateRoot { path })
    }

    /// `$DISTILL_STATE` or `/run/distill`.
    pub fn default_path() -> PathBuf {
        std::env::var_os("DISTILL_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE))
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory of container `name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Claims `name` by creating its directory; fails if it exists. Returns the lock,
    /// held, with the initial state committed.
    pub fn create(&self, state: &State) -> Result<Lock> {
        validate_name(&state.name)?;
        let dir = self.dir(&state.name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StateError::NameInUse(state.name.clone()))
            }
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
        let lock = self
            .lock_inner(&state.name, true, false)?
            .ok_or_else(|| StateError::NotFound(state.name.clone()))?;
        self.write(state, &lock)?;
        Ok(lock)
    }

    /// Takes the container's lock, waiting for it.
    pub fn lock(&self, name: &str) -> Result<Lock> {
        self.lock_inner(name, true, true)?
            .ok_or_else(|| StateError::NotFound(name.to_string()))
    }

    /// Takes the lock if it is free; `Ok(None)` when someone else holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<Lock>> {
        self.lock_inner(name, false, true)
    }

    fn lock_inner(&self, name: &str, block: bool, need_state: bool) -> Result<Option<Lock>> {
        validate_name(name)?;
        let dir = self.dir(name);
        let p = dir.join("lock");
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        let op = if block {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !block => return Ok(None),
                _ => return Err(io_err("lock", &p)(e)),
            }
        }
        // The directory may have been removed while we waited (rm by another process), or
        // removed and its name taken by a new container: the lock held must be the one at the
        // path now, or it locks nothing.
        use std::os::unix::fs::MetadataExt;
        let same = match (file.metadata(), fs::metadata(&p)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same || (need_state && !dir.join("state.json").exists()) {
            return Err(StateError::NotFound(name.to_string()));
        }
        Ok(Some(Lock { _file: file }))
    }

    /// Commits `state` (a new file with a random name, fsync, rename, fsync of the
    /// directory). Needs the lock.
    pub fn write(&self, state: &State, _lock: &Lock) -> Result<()> {
        let dir = self.dir(&state.name);
        let fin = dir.join("state.json");
        let data = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: fin.clone(),
            source,
        })?;
        distill_oci::write_file_atomic(&fin, &data, 0o600).map_err(io_err("write", &fin))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the committed state without locking or reconciling.
    pub fn read_raw(&self, name: &str) -> Result<State> {
        validate_name(name)?;
        let p = self.dir(name).join("state.json");
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path: p, source })
    }

    /// The reconciled state of one container. Takes no lock.
    pub fn inspect(&self, name: &str) -> Result<State> {
        let s = self.read_raw(name)?;
        self.reconcile(s)
    }

    /// The view of `s` (just read from the state of `s.name`) after reconciling with /proc: a
    /// container that [looks stale](State::looks_stale) is exited with unknown status.
    ///
    /// A stale-looking state is read once more first: a monitor records the exit and only then
    /// exits, so a state read just before that record and checked against /proc just after
    /// it looks stale when it is not. The second read comes after the monitor was seen gone,
    /// so it has whatever the monitor recorded; stale again, the monitor died without a word.
    fn reconcile(&self, s: State) -> Result<State> {
        if !s.looks_stale() {
            return Ok(s);
        }
        let mut s = self.read_raw(&s.name)?;
        if s.looks_stale() {
            s.status = Status::Exited;
            s.exit_unknown = true;
            s.exit_code = None;
        }
        Ok(s)
    }

    /// Every container's reconciled state, sorted by creation time then name. Takes no
    /// lock; directories without a committed state.json (a `run` mid-claim) are skipped.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.path).map_err(io_err("read", &self.path))?;
        for ent in rd {
            let ent = ent.map_err(io_err("read", &self.path))?;
            let Some(name) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue;
            }
            match self.read_raw(&name) {
                Ok(s) => match self.reconcile(s) {
                    Ok(s) => out.push(s),
                    // Removed between the two reads (an --rm container's exit).
                    Err(StateError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                },
                Err(StateError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        Ok(out)
    }

    /// Removes the container directory. Needs the lock.
    pub fn remove(&self, name: &str, lock: &Lock) -> Result<()> {
        self.unlist(name, lock)?.purge();
        Ok(())
    }

    /// Removes container `name` from the state root at once, leaving the (possibly large)
    /// contents of its directory to [`Trash::purge`]: the directory is renamed into
    /// `<root>/.trash/`, which unlists the container and frees its name in one step. Needs
    /// the lock. What a purge that never
    /// ran leaves behind (a killed process) is purged by the next one.
    pub fn unlist(&self, name: &str, _lock: &Lock) -> Result<Trash> {
        let dir = self.dir(name);
        let trash = self.path.join(TRASH_DIR);
        let made = match fs::DirBuilder::new().mode(0o700).create(&trash) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let to = trash.join(format!("{name}.{}.{nanos}", std::process::id()));
        // One rename takes the state and the directory away together: a reader never sees
        // the name without state, nor a directory left behind once `inspect` says it is gone.
        if made.and_then(|()| fs::rename(&dir, &to)).is_err() {
            // No trash to move it to (a full or read-only state root...): delete it here,
            // state first (so that it is unlisted even if the rest fails), so that no
            // nameless directory stays behind.
            let _ = fs::remove_file(dir.join("state.json"));
            fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        }
        Ok(Trash { dir: trash })
    }
}

/// Name of the directory, inside the state root, of removed containers' directories not yet
/// deleted. It starts with a `.`, which no container name may.
pub const TRASH_DIR: &str = ".trash";

/// Removed containers' directories waiting in `<root>/.trash` (see [`StateRoot::unlist`]).
#[must_use = "purge it, or the directory stays in the trash until the next purge"]
pub struct Trash {
    dir: PathBuf,
}

impl Trash {
    /// Deletes everything in the trash (best effort: a concurrent purge may take some of it).
    pub fn purge(self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn cfg(name: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            rootfs: "/nonexistent".into(),
            argv: vec!["/bin/true".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_lock_waited_for_across_a_removal_and_reuse_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path().join("state")).unwrap();
        let lock = root.create(&State::new(cfg("reused"))).unwrap();
        let waiter = {
            let root = root.clone();
            std::thread::spawn(move || root.lock("reused").map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(100));
        // Removed and claimed again by a new container while the waiter waits on the old lock.
        root.unlist("reused", &lock).unwrap().purge();
        let new = root.create(&State::new(cfg("reused"))).unwrap();
        drop(lock);
        assert!(matches!(
            waiter.join().unwrap(),
            Err(StateError::NotFound(_))
        ));
        drop(new);
        // The new container's lock works as ever.
        root.lock("reused").unwrap();
    }

    #[test]
    fn create_claims_name_once() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path().join("state")).unwrap();
        let lock = root.create(&State::new(cfg("a"))).unwrap();
        assert!(matches!(
            root.create(&State::new(cfg("a"))),
            Err(StateError::NameInUse(_))
        ));
        assert!(matches!(
            root.create(&State::new(cfg("../x"))),
            Err(StateError::BadName(_))
        ));
        let s = root.inspect("a").unwrap();
        assert_eq!(s.status, Status::Created);
        root.remove("a", &lock).unwrap();
        assert!(matches!(root.inspect("a"), Err(StateError::NotFound(_))));
    }

    #[test]
    fn concurrent_claims_have_one_winner() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| root.create(&State::new(cfg("same"))).map(drop).is_ok()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn reconcile_dead_pid_is_exited_unknown() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        let lock = root.create(&State::new(cfg("r"))).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = proc_start_time(pid);
        child.wait().unwrap();
        let mut s = root.read_raw("r").unwrap();
        s.status = Status::Running;
        s.pid = Some(pid);
        s.pid_start = start.or(Some(1));
        root.write(&s, &lock).unwrap();
        let r = root.inspect("r").unwrap();
        assert_eq!(r.status, Status::Exited);
        assert!(r.exit_unknown);
        // A live pid with a different start time (reuse) is not the container either.
        s.pid = Some(std::process::id() as i32);
        s.pid_start = Some(proc_start_time(std::process::id() as i32).unwrap() + 1);
        root.write(&s, &lock).unwrap();
        assert_eq!(root.inspect("r").unwrap().status, Status::Exited);
        // The real pid and start time: running.
        s.pid_start = proc_start_time(std::process::id() as i32);
        root.write(&s, &lock).unwrap();
        assert_eq!(root.inspect("r").unwrap().status, Status::Running);
    }

    #[test]
    fn an_exit_recorded_between_the_read_and_the_proc_check_is_not_lost() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        let lock = root.create(&State::new(cfg("x"))).unwrap();
        let dead = |n: usize| -> Vec<(Option<i32>, Option<u64>)> {
            (0..n)
                .map(|_| {
                    let mut c = std::process::Command::new("true").spawn().unwrap();
                    let pid = c.id() as i32;
                    let start = proc_start_time(pid).or(Some(1));
                    c.wait().unwrap();
                    (Some(pid), start)
                })
                .collect()
        };
        let gone = dead(2);
        // What a reader had read while the container ran: init and monitor, both gone by
        // the time it looks at /proc...
        let mut before = root.read_raw("x").unwrap();
        before.status = Status::Running;
        (before.pid, before.pid_start) = gone[0];
        (before.monitor_pid, before.monitor_start) = gone[1];
        // ...because meanwhile the monitor recorded the exit and exited.
        let mut after = before.clone();
        after.status = Status::Exited;
        after.exit_code = Some(7);
        root.write(&after, &lock).unwrap();
        let r = root.reconcile(before.clone()).unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.exit_unknown),
            (Status::Exited, Some(7), false)
        );
        // Nothing recorded (the monitor was killed): exited, status unknown.
        root.write(&before, &lock).unwrap();
        let r = root.reconcile(before.clone()).unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.exit_unknown),
            (Status::Exited, None, true)
        );
        // Removed meanwhile (an --rm container): gone, and list skips it.
        root.remove("x", &lock).unwrap();
        assert!(matches!(
            root.reconcile(before),
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn a_claim_whose_process_died_reconciles_as_exited() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        // Claimed by a live process (this one): still being restored.
        let lock = root
            .create(&State::new(cfg("c")).claimed_by_this_process())
            .unwrap();
        assert_eq!(root.inspect("c").unwrap().status, Status::Created);
        // Claimed by a process that is gone (a killed `restore`): not stuck in `created`.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = proc_start_time(pid);
        child.wait().unwrap();
        let mut s = root.read_raw("c").unwrap();
        s.monitor_pid = Some(pid);
        s.monitor_start = start.or(Some(1));
        root.write(&s, &lock).unwrap();
        assert_eq!(root.inspect("c").unwrap().status, Status::Exited);
    }

    #[test]
    fn list_does_not_wait_for_a_held_lock() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        for i in 0..20 {
            drop(root.create(&State::new(cfg(&format!("c{i}")))).unwrap());
        }
        let held = root.lock("c3").unwrap();
        assert!(root.try_lock("c3").unwrap().is_none());
        let t0 = Instant::now();
        let l = root.list().unwrap();
        assert_eq!(l.len(), 20);
        assert!(t0.elapsed() < Duration::from_millis(500));
        drop(held);
        assert!(root.try_lock("c3").unwrap().is_some());
    }

    #[test]
    fn state_file_is_replaced_atomically() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::open(t.path()).unwrap();
        let lock = root.create(&State::new(cfg("w"))).unwrap();
        let mut s = root.read_raw("w").unwrap();
        s.exit_code = Some(3);
        root.write(&s, &lock).unwrap();
        let left: Vec<_> = fs::read_dir(root.dir("w"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".state.json."))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(root.read_raw("w").unwrap().exit_code, Some(3));
        fs::write(root.dir("w").join("state.json"), "{").unwrap();
        let e = root.inspect("w").unwrap_err().to_string();
        assert!(e.contains("state.json"), "{e}");
    }
}
