//! distill-memlogd: distill's log daemon (after LinuxKit's memlogd).
//!
//! The daemon ([`run_daemon`]) receives file descriptors (container stdout/stderr pipes)
//! over a `SOCK_DGRAM` Unix socket (`<state>/logd.sock`, one fd per datagram in
//! `SCM_RIGHTS`, with a source name), reads them all with epoll, splits lines, stamps each
//! with its arrival time and source, and keeps them in a ring bounded by line count and by
//! bytes. Clients query it over `<state>/logdq.sock` (`SOCK_STREAM`): one JSON request,
//! JSON-line replies (dump, follow, dump-then-follow; filters by source, tail and time).
//! Slow followers never slow ingestion: they read the ring at their own pace and are told
//! how many lines they missed. With `--persist` every source is also written to a size-rotated
//! file ([`RotatingWriter`]), and those files are read back into the ring at restart.
//!
//! Client side: [`send_fd`], [`send_event`] (or several of them through one [`Sender`]),
//! [`query`], [`stats`], and the race-free
//! start-on-first-use helper [`ensure_running`]. The wire protocol is in `docs/logd.md`.

mod client;
mod daemon;
pub mod escape;
mod persist;
mod ring;
mod wire;

use std::io;
use std::path::{Path, PathBuf};

pub use client::{daemon_pid, ensure_running, query, send_event, send_fd, stats, Entries, Sender};
pub use daemon::run_daemon;
pub use persist::RotatingWriter;
pub use ring::LINE_OVERHEAD;
pub use wire::{
    format_time, parse_time, source_matches, validate_source, Entry, Mode, Request, Stats,
    EVENT_MAX, SOURCE_MAX,
};

/// File name of the ingest socket (`SOCK_DGRAM`) in the state directory.
pub const INGEST_SOCKET: &str = "logd.sock";
/// File name of the query socket (`SOCK_STREAM`) in the state directory.
pub const QUERY_SOCKET: &str = "logdq.sock";
/// File name of the daemon's lock (an OFD write lock held for its lifetime; holds its pid).
pub const LOCK_FILE: &str = "logd.lock";
/// File name of the lock that serializes starters in [`ensure_running`].
pub const START_LOCK_FILE: &str = "logd.start.lock";

/// Default `--lines`.
pub const DEFAULT_LINES: usize = 100_000;
/// Default `--bytes` (16 MiB).
pub const DEFAULT_BYTES: usize = 16 << 20;
/// Default `--line-max` (16 KiB).
pub const DEFAULT_LINE_MAX: usize = 16 << 10;
/// Default `--max-size` (1 MiB).
pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;
/// Default `--max-files`.
pub const DEFAULT_MAX_FILES: usize = 10;

/// Errors of the daemon and its clients. Each is one line naming the path or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on a file or socket failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or socket.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another daemon holds the lock of this state directory.
    #[error("logd is already running for {} (pid {pid}); use that one or stop it first", state_dir.display())]
    AlreadyRunning {
        /// The state directory.
        state_dir: PathBuf,
        /// The running daemon's pid (0 if unknown).
        pid: u32,
    },
    /// Nothing listens on the socket.
    #[error("logd is not running at {} ({source}); start it with `distill logd`", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect/send error.
        source: io::Error,
    },
    /// A source name that cannot be used.
    #[error("invalid log source name \"{source_name}\": {why}; use e.g. <container>.stdout")]
    InvalidSource {
        /// The name, debug-escaped.
        source_name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A time that is not RFC 3339.
    #[error("invalid time \"{value}\": {why}; use RFC 3339, e.g. 2024-05-01T12:00:00Z")]
    BadTime {
        /// The text given.
        value: String,
        /// The parser's complaint.
        why: String,
    },
    /// A configuration value out of range.
    #[error("invalid logd setting {field}: {why}")]
    Config {
        /// The option, e.g. `--lines`.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The peer sent something this version does not understand.
    #[error("logd protocol error: {what}; are the client and daemon the same version?")]
    Protocol {
        /// What was wrong.
        what: String,
    },
    /// The daemon refused a request.
    #[error("logd refused the request: {msg}")]
    Daemon {
        /// The daemon's message.
        msg: String,
    },
    /// The spawn callback of [`ensure_running`] failed.
    #[error("cannot start logd: {0}")]
    Spawn(io::Error),
    /// A started daemon did not become ready in time.
    #[error("logd for {} did not become ready within {secs} s; see its stderr", state_dir.display())]
    StartTimeout {
        /// The state directory.
        state_dir: PathBuf,
        /// How long was waited.
        secs: u64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and how to persist lines (`--persist DIR --max-size BYTES --max-files N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistConfig {
    /// Directory holding `<source>.log` and its rotations.
    pub dir: PathBuf,
    /// Rotate a file when the next record would take it past this many bytes.
    pub max_size: u64,
    /// Files kept per source, the current one included.
    pub max_files: usize,
}

impl PersistConfig {
    /// Persisting into `dir` with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PersistConfig {
            dir: dir.into(),
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// The daemon's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Directory of the sockets and the lock.
    pub state_dir: PathBuf,
    /// Most lines kept in the ring (`--lines`).
    pub lines: usize,
    /// Most bytes kept in the ring (`--bytes`): message bytes plus [`LINE_OVERHEAD`] per line.
    pub bytes: usize,
    /// Longest line kept whole (`--line-max`); longer lines are cut into pieces marked `cut`.
    pub line_max: usize,
    /// Optional persistence (`--persist`).
    pub persist: Option<PersistConfig>,
}

impl Config {
    /// Defaults for `state_dir`, no persistence.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Config {
            state_dir: state_dir.into(),
            lines: DEFAULT_LINES,
            bytes: DEFAULT_BYTES,
            line_max: DEFAULT_LINE_MAX,
            persist: None,
        }
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<()> {
        if self.lines == 0 {
            return Err(Error::Config {
                field: "--lines",
                why: "must be at least 1".into(),
            });
        }
        if self.line_max == 0 || self.line_max > 1 << 30 {
            return Err(Error::Config {
                field: "--line-max",
                why: "must be between 1 and 1 GiB".into(),
            });
        }
        if self.bytes < self.line_max + LINE_OVERHEAD {
            return Err(Error::Config {
                field: "--bytes",
                why: format!(
                    "must hold at least one full line ({} bytes with --line-max {})",
                    self.line_max + LINE_OVERHEAD,
                    self.line_max
                ),
            });
        }
        if let Some(p) = &self.persist {
            if p.max_size == 0 {
                return Err(Error::Config {
                    field: "--max-size",
                    why: "must be at least 1".into(),
                });
            }
            if p.max_files == 0 {
                return Err(Error::Config {
                    field: "--max-files",
                    why: "must be at least 1".into(),
                });
            }
        }
        for name in [INGEST_SOCKET, QUERY_SOCKET] {
            let p = self.state_dir.join(name);
            if p.as_os_str().len() >= 108 {
                return Err(Error::Config {
                    field: "state dir",
                    why: format!(
                        "socket path {} is longer than the 107 bytes a Unix socket allows; use a shorter state dir",
                        p.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Path of the ingest socket in `state_dir`.
pub fn ingest_socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(INGEST_SOCKET)
}

/// Path of the query socket in `state_dir`.
pub fn query_socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(QUERY_SOCKET)
}
