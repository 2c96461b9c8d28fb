//! Clients of the daemon: fd passing, events, queries, and start-on-first-use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::wire::{self, Entry, Request, Stats, WireRequest, TAG_EVENT, TAG_FD};
use crate::{Error, Result, LOCK_FILE, START_LOCK_FILE};

/// How long [`ensure_running`] waits for a daemon to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn not_running(path: &Path, source: io::Error) -> Error {
    Error::NotRunning {
        path: path.to_path_buf(),
        source,
    }
}

/// One socket to the daemon's ingest socket, for several messages ([`Sender::send_fd`],
/// [`Sender::send_event`]). Creating it does not contact the daemon: a send to a daemon that
/// does not run fails with [`Error::NotRunning`] (no socket file, or nobody bound to it), which
/// is how a caller can find out without a query connection (see [`ensure_running`]).
pub struct Sender {
    sock: UnixDatagram,
    addr: UnixAddr,
    path: std::path::PathBuf,
}

impl Sender {
    /// A sender to the daemon of `state_dir`.
    pub fn new(state_dir: &Path) -> Result<Sender> {
        let path = crate::ingest_socket_path(state_dir);
        let sock = UnixDatagram::unbound().map_err(|e| Error::Io {
            op: "create socket for",
            path: path.clone(),
            source: e,
        })?;
        let addr = UnixAddr::new(&path).map_err(|e| not_running(&path, e.into()))?;
        Ok(Sender { sock, addr, path })
    }

    /// Hands `fd` to the daemon under `source`, as [`send_fd`].
    pub fn send_fd(&self, source: &str, fd: BorrowedFd<'_>) -> Result<()> {
        wire::validate_source(source)?;
        let mut payload = Vec::with_capacity(source.len() + 1);
        payload.push(TAG_FD);
        payload.extend_from_slice(source.as_bytes());
        self.send(&payload, Some(fd))
    }

    /// Adds a lifecycle event, as [`send_event`].
    pub fn send_event(&self, source: &str, text: &str) -> Result<()> {
        wire::validate_source(source)?;
        if text.len() > wire::EVENT_MAX {
            return Err(Error::Protocol {
                what: format!(
                    "event text for {source} is {} bytes, more than the {} allowed",
                    text.len(),
                    wire::EVENT_MAX
                ),
            });
        }
        let mut payload = Vec::with_capacity(source.len() + text.len() + 2);
        payload.push(TAG_EVENT);
        payload.extend_from_slice(source.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(text.as_bytes());
        self.send(&payload, None)
    }

    fn send(&self, payload: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let (sock, addr, path) = (&self.sock, &self.addr, &self.path);
        let iov = [IoSlice::new(payload)];
        let raw;
        let cmsgs: &[ControlMessage] = match fd {
            Some(fd) => {
                raw = [fd.as_raw_fd()];
                &[ControlMessage::ScmRights(&raw)]
            }
            None => &[],
        };
        loop {
            match sendmsg(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), Some(addr)) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(not_running(path, e.into())),
            }
        }
    }
}

/// Hands `fd` (the read end of a container's stdout or stderr pipe) to the daemon under the
/// name `source` (`<container>.stdout` / `<container>.stderr`). The daemon reads it until EOF.
/// Once this returns the fd is queued in the daemon's socket: the caller may close its copy,
/// and nothing written to the pipe afterwards is lost. The daemon sets `O_NONBLOCK` on the
/// (shared) open file description, so do not keep reading it yourself.
pub fn send_fd(state_dir: &Path, source: &str, fd: BorrowedFd<'_>) -> Result<()> {
    Sender::new(state_dir)?.send_fd(source, fd)
}

/// Adds a lifecycle event (e.g. `started`, `exited code=0`, `exited signal=KILL`,
/// `oom-killed`) to the stream under `source` (by convention `<container>.event`). Before
/// recording it the daemon reads whatever is already waiting in that container's pipes, so a
/// container's last lines come before its `exited` event.
pub fn send_event(state_dir: &Path, source: &str, text: &str) -> Result<()> {
    Sender::new(state_dir)?.send_event(source, text)
}

fn connect_query(state_dir: &Path) -> Result<UnixStream> {
    let path = crate::query_socket_path(state_dir);
    UnixStream::connect(&path).map_err(|e| not_running(&path, e))
}

/// The entries of a query, read as they arrive. Ends when the daemon closes the stream
/// (after a dump, or when it stops); a follow never ends by itself.
pub struct Entries {
    reader: BufReader<UnixStream>,
    line: String,
    done: bool,
}

impl Entries {
    /// The underlying socket (e.g. to set a read timeout or shut it down from another thread).
    pub fn socket(&self) -> &UnixStream {
        self.reader.get_ref()
    }
}

impl Iterator for Entries {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => {
                self.done = true;
                None
            }
            Ok(_) => {
                let r = wire::decode_entry(self.line.trim_end_matches('\n'));
                if r.is_err() {
                    self.done = true;
                }
                Some(r)
            }
            Err(e) => {
                self.done = true;
                Some(Err(Error::Io {
                    op: "read from",
                    path: self
                        .reader
                        .get_ref()
                        .peer_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                        .unwrap_or_default(),
                    source: e,
                }))
            }
        }
    }
}

/// Sends `request` to the daemon of `state_dir` and returns its entries.
pub fn query(state_dir: &Path, request: &Request) -> Result<Entries> {
    if let Some(s) = &request.source {
        if s.is_empty() || s.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidSource {
                source_name: s.escape_debug().to_string(),
                why: "a filter must be non-empty and without control characters".into(),
            });
        }
    }
    let mut stream = connect_query(state_dir)?;
    let mut req =
        serde_json::to_vec(&WireRequest::from_request(request)).map_err(|e| Error::Protocol {
            what: e.to_string(),
        })?;
    req.push(b'\n');
    let path = crate::query_socket_path(state_dir);
    stream.write_all(&req).map_err(|e| Error::Io {
        op: "send request to",
        path,
        source: e,
    })?;
    Ok(Entries {
        reader: BufReader::with_capacity(64 * 1024, stream),
        line: String::new(),
        done: false,
    })
}

/// The daemon's counters.
pub fn stats(state_dir: &Path) -> Result<Stats> {
    let path = crate::query_socket_path(state_dir);
    let mut stream = connect_query(state_dir)?;
    let io = |op: &'static str| {
        let path = path.clone();
        move |source| Error::Io { op, path, source }
    };
    stream
        .write_all(b"{\"mode\":\"stats\"}\n")
        .map_err(io("send request to"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io("read from"))?;
    if line.contains("\"error\"") {
        wire::decode_entry(line.trim_end())?;
    }
    serde_json::from_str(&line).map_err(|e| Error::Protocol {
        what: format!("bad stats reply: {e}"),
    })
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::Io {
            op: "open",
            path: path.to_path_buf(),
            source: e,
        })
}

/// True if a daemon holds the lock of `state_dir` (it may still be starting).
fn lock_held(state_dir: &Path) -> Result<bool> {
    let path = state_dir.join(LOCK_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::Io {
                op: "open",
                path,
                source: e,
            })
        }
    };
    let free = crate::daemon::ofd_lock(&f, libc::F_OFD_GETLK).map_err(|e| Error::Io {
        op: "test lock",
        path,
        source: e,
    })?;
    Ok(!free)
}

/// The pid of the daemon serving `state_dir`, if one is running.
pub fn daemon_pid(state_dir: &Path) -> Option<u32> {
    if !lock_held(state_dir).ok()? {
        return None;
    }
    fs::read_to_string(state_dir.join(LOCK_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn ready(state_dir: &Path) -> bool {
    UnixStream::connect(crate::query_socket_path(state_dir)).is_ok()
}

/// Makes sure a daemon serves `state_dir`, calling `spawn` to start one (detached, e.g.
/// `distill logd --state-dir ...`) only if none is running or starting. Returns whether it
/// called `spawn`. Race-free: starters serialize on an flock of `logd.start.lock`, and the
/// daemon holds an OFD lock on `logd.lock` for its lifetime, so two concurrent callers start
/// exactly one daemon. Returns once the daemon accepts queries (or after 10 s with
/// [`Error::StartTimeout`]).
pub fn ensure_running(state_dir: &Path, spawn: impl FnOnce() -> io::Result<()>) -> Result<bool> {
    if ready(state_dir) {
        return Ok(false);
    }
    fs::create_dir_all(state_dir).map_err(|e| Error::Io {
        op: "create directory",
        path: state_dir.to_path_buf(),
        source: e,
    })?;
    let start_path = state_dir.join(START_LOCK_FILE);
    let start = open_lock(&start_path)?;
    // SAFETY: flock on an fd we own; the lock is released when `start` is dropped.
    loop {
        if unsafe { libc::flock(start.as_raw_fd(), libc::LOCK_EX) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Error::Io {
                op: "lock",
                path: start_path,
                source: e,
            });
        }
    }
    let spawned = if ready(state_dir) || lock_held(state_dir)? {
        false
    } else {
        spawn().map_err(Error::Spawn)?;
        true
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready(state_dir) {
        if Instant::now() > deadline {
            return Err(Error::StartTimeout {
                state_dir: state_dir.to_path_buf(),
                secs: START_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(start);
    Ok(spawned)
}
