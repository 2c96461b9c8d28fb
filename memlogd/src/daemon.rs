//! The daemon: one epoll thread ingests (signals, fd-passing datagrams, query accepts, and
//! every passed fd); one thread per query client reads the ring at its own pace.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::persist::{read_persisted, RotatingWriter};
use crate::ring::{Cursor, Out, Ring, Shared};
use crate::wire::{self, Mode, Stats, WireRequest, TAG_EVENT, TAG_FD};
use crate::{Config, Error, PersistConfig, Result, LOCK_FILE};

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_DGRAM: u64 = 1;
const TOKEN_LISTEN: u64 = 2;
const FIRST_INPUT: u64 = 3;
/// Reads per readable fd per epoll round, so one busy writer cannot starve the others.
const READS_PER_ROUND: usize = 4;
const READ_BUF: usize = 128 * 1024;
/// How long a query client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters outside the ring.
#[derive(Default)]
pub(crate) struct Counters {
    pub open_fds: AtomicU64,
    pub bad_datagrams: AtomicU64,
    pub persist_errors: AtomicU64,
}

struct Input {
    file: File,
    src: u32,
    container: String,
    partial: Vec<u8>,
}

struct Pending {
    src: u32,
    cut: bool,
    msg: Box<[u8]>,
}

struct Persister {
    cfg: PersistConfig,
    writers: HashMap<u32, RotatingWriter>,
    failed: HashMap<u32, ()>,
}

struct Daemon {
    line_max: usize,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    epoll: Epoll,
    dgram: UnixDatagram,
    listener: UnixListener,
    inputs: HashMap<u64, Input>,
    next_token: u64,
    names: Vec<Arc<str>>,
    persist: Option<Persister>,
    buf: Vec<u8>,
    dbuf: Vec<u8>,
    pending: Vec<Pending>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the daemon's lock: an OFD write lock on `<state>/logd.lock`, held as long as the
/// returned file is open. Writes the pid into the file.
fn take_lock(state_dir: &Path) -> Result<File> {
    let path = state_dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open", &path))?;
    if !ofd_lock(&f, libc::F_OFD_SETLK).map_err(io_err("lock", &path))? {
        return Err(Error::AlreadyRunning {
            state_dir: state_dir.to_path_buf(),
            pid: crate::client::daemon_pid(state_dir).unwrap_or(0),
        });
    }
    f.set_len(0).map_err(io_err("truncate", &path))?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io_err("write", &path))?;
    Ok(f)
}

/// `F_OFD_SETLK`: true if the write lock was taken. `F_OFD_GETLK`: true if it could be taken
/// (nobody holds it).
pub(crate) fn ofd_lock(f: &File, cmd: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fd is open for the duration of the call; fl is a valid flock.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl) };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) if cmd == libc::F_OFD_SETLK => Ok(false),
            _ => Err(e),
        };
    }
    if cmd == libc::F_OFD_GETLK {
        return Ok(fl.l_type == libc::F_UNLCK as libc::c_short);
    }
    Ok(true)
}

fn bind_fresh(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            op: "remove stale socket",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs the daemon until SIGTERM or SIGINT (then returns `Ok(())`).
///
/// Takes the state directory's lock (so a second daemon fails with
/// [`Error::AlreadyRunning`]), reloads persisted lines into the ring, binds
/// `<state>/logd.sock` and `<state>/logdq.sock`, and serves. SIGTERM and SIGINT are blocked
/// in the calling thread (and so in the threads it starts) and taken through a signalfd;
/// call it before starting other threads that should not see those signals.
pub fn run_daemon(config: Config) -> Result<()> {
    config.validate()?;
    let state_dir = config.state_dir.clone();
    fs::create_dir_all(&state_dir).map_err(io_err("create directory", &state_dir))?;
    let lock_file = take_lock(&state_dir)?;

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    let old_mask = mask
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| io_err("block signals for", &state_dir)(e.into()))?;
    let result = serve(config, &state_dir);
    let _ = old_mask.thread_set_mask();
    drop(lock_file);
    result
}

fn serve(config: Config, state_dir: &Path) -> Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| io_err("create signalfd for", state_dir)(e.into()))?;

    let mut ring = Ring::new(config.lines, config.bytes);
    let mut names: Vec<Arc<str>> = Vec::new();
    if let Some(p) = &config.persist {
        fs::create_dir_all(&p.dir).map_err(io_err("create directory", &p.dir))?;
        for rec in read_persisted(&p.dir)? {
            let id = ring.intern(&rec.source);
            if id as usize == names.len() {
                names.push(ring.source_name(id).clone());
            }
            ring.push(rec.time, id, rec.cut, rec.raw.into_boxed_slice());
        }
    }
    let shared = Arc::new(Shared {
        ring: Mutex::new(ring),
        cond: Condvar::new(),
        shutdown: AtomicBool::new(false),
    });

    let ingest_path = crate::ingest_socket_path(state_dir);
    let query_path = crate::query_socket_path(state_dir);
    bind_fresh(&ingest_path)?;
    let dgram = UnixDatagram::bind(&ingest_path).map_err(io_err("bind", &ingest_path))?;
    dgram
        .set_nonblocking(true)
        .map_err(io_err("set non-blocking", &ingest_path))?;
    bind_fresh(&query_path)?;
    let listener = UnixListener::bind(&query_path).map_err(io_err("bind", &query_path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("set non-blocking", &query_path))?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| io_err("create epoll for", state_dir)(e.into()))?;
    let add = |fd: std::os::fd::BorrowedFd<'_>, token: u64, path: &Path| {
        epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|e| io_err("watch", path)(e.into()))
    };
    add(sfd.as_fd(), TOKEN_SIGNAL, state_dir)?;
    add(dgram.as_fd(), TOKEN_DGRAM, &ingest_path)?;
    add(listener.as_fd(), TOKEN_LISTEN, &query_path)?;

    let mut d = Daemon {
        line_max: config.line_max,
        shared: shared.clone(),
        counters: Arc::new(Counters::default()),
        epoll,
        dgram,
        listener,
        inputs: HashMap::new(),
        next_token: FIRST_INPUT,
        names,
        persist: config.persist.clone().map(|cfg| Persister {
            cfg,
            writers: HashMap::new(),
            failed: HashMap::new(),
        }),
        buf: vec![0; READ_BUF],
        dbuf: vec![0; wire::EVENT_MAX + wire::SOURCE_MAX + 16],
        pending: Vec::new(),
    };
    let r = d.event_loop(&sfd);
    shared.shutdown.store(true, Ordering::SeqCst);
    shared.cond.notify_all();
    if let Some(p) = &mut d.persist {
        for w in p.writers.values_mut() {
            let _ = w.flush();
        }
    }
    let _ = fs::remove_file(&ingest_path);
    let _ = fs::remove_file(&query_path);
    r
}

impl Daemon {
    fn event_loop(&mut self, sfd: &SignalFd) -> Result<()> {
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Io {
                        op: "wait on epoll in",
                        path: PathBuf::from("logd"),
                        source: e.into(),
                    })
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_SIGNAL => {
                        if let Ok(Some(_)) = sfd.read_signal() {
                            return Ok(());
                        }
                    }
                    TOKEN_DGRAM => self.recv_datagrams(),
                    TOKEN_LISTEN => self.accept_clients(),
                    token => self.read_input(token, false),
                }
            }
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        let id = lock(&self.shared.ring).intern(name);
        while self.names.len() <= id as usize {
            self.names.push(Arc::from(name));
        }
        id
    }

    fn recv_datagrams(&mut self) {
        let mut dbuf = std::mem::take(&mut self.dbuf);
        loop {
            let mut cmsg = nix::cmsg_space!([RawFd; 16]);
            let mut iov = [IoSliceMut::new(&mut dbuf)];
            let (bytes, fds, truncated) = match recvmsg::<()>(
                self.dgram.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(it) = m.cmsgs() {
                        for c in it {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                for fd in v {
                                    // SAFETY: the kernel just installed this fd for us.
                                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    (m.bytes, fds, m.flags.intersects(MsgFlags::MSG_TRUNC))
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if truncated {
                self.counters.bad_datagrams.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let payload = dbuf[..bytes].to_vec();
            self.handle_datagram(&payload, fds);
        }
        self.dbuf = dbuf;
    }

    fn handle_datagram(&mut self, payload: &[u8], mut fds: Vec<OwnedFd>) {
        let bad = |c: &Counters| {
            c.bad_datagrams.fetch_add(1, Ordering::Relaxed);
        };
        match payload.first() {
            Some(&TAG_FD) => {
                let Ok(source) = std::str::from_utf8(&payload[1..]) else {
                    return bad(&self.counters);
                };
                if fds.len() != 1 || wire::validate_source(source).is_err() {
                    return bad(&self.counters);
                }
                let source = source.to_string();
                let fd = fds.pop().expect("one fd");
                if self.add_input(&source, fd).is_err() {
                    bad(&self.counters);
                }
            }
            Some(&TAG_EVENT) if fds.is_empty() => {
                let body = &payload[1..];
                let Some(nl) = body.iter().position(|b| *b == b'\n') else {
                    return bad(&self.counters);
                };
                let Ok(source) = std::str::from_utf8(&body[..nl]) else {
                    return bad(&self.counters);
                };
                if wire::validate_source(source).is_err() {
                    return bad(&self.counters);
                }
                let source = source.to_string();
                let text = body[nl + 1..].to_vec();
                // Lines the container wrote before the event come before it: read what is
                // already in its pipes first.
                let container = wire::container_of(&source).to_string();
                let tokens: Vec<u64> = self
                    .inputs
                    .iter()
                    .filter(|(_, i)| i.container == container)
                    .map(|(t, _)| *t)
                    .collect();
                for t in tokens {
                    self.read_input(t, true);
                }
                let src = self.intern(&source);
                self.pending.push(Pending {
                    src,
                    cut: false,
                    msg: text.into_boxed_slice(),
                });
                self.commit(wire::nanos_of(SystemTime::now()));
            }
            _ => bad(&self.counters),
        }
    }

    fn add_input(&mut self, source: &str, fd: OwnedFd) -> io::Result<()> {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if fl == -1 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        let token = self.next_token;
        self.epoll
            .add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io::Error::from)?;
        self.next_token += 1;
        let src = self.intern(source);
        self.inputs.insert(
            token,
            Input {
                file: File::from(fd),
                src,
                container: wire::container_of(source).to_string(),
                partial: Vec::new(),
            },
        );
        self.counters.open_fds.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_input(&mut self, token: u64, drain: bool) {
        let Some(mut input) = self.inputs.remove(&token) else {
            return;
        };
        let mut eof = false;
        let mut reads = 0;
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            match input.file.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    split_lines(&mut input, &buf[..n], self.line_max, &mut self.pending);
                    self.commit(wire::nanos_of(SystemTime::now()));
                    reads += 1;
                    if !drain && reads >= READS_PER_ROUND {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        self.buf = buf;
        if eof {
            if !input.partial.is_empty() {
                let msg = std::mem::take(&mut input.partial).into_boxed_slice();
                self.pending.push(Pending {
                    src: input.src,
                    cut: false,
                    msg,
                });
                self.commit(wire::nanos_of(SystemTime::now()));
            }
            let _ = self.epoll.delete(&input.file);
            self.counters.open_fds.fetch_sub(1, Ordering::Relaxed);
            // Dropping `input` closes the fd.
        } else {
            self.inputs.insert(token, input);
        }
    }

    /// Persists, then appends to the ring, everything in `pending`, stamped `time`.
    fn commit(&mut self, time: u64) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(p) = &mut self.persist {
            let mut rec = Vec::with_capacity(256);
            let mut touched: Vec<u32> = Vec::new();
            for l in &self.pending {
                let name = &self.names[l.src as usize];
                let w = match p.writers.get_mut(&l.src) {
                    Some(w) => w,
                    None => match RotatingWriter::open(
                        &p.cfg.dir,
                        name,
                        p.cfg.max_size,
                        p.cfg.max_files,
                    ) {
                        Ok(w) => p.writers.entry(l.src).or_insert(w),
                        Err(e) => {
                            self.counters.persist_errors.fetch_add(1, Ordering::Relaxed);
                            if p.failed.insert(l.src, ()).is_none() {
                                eprintln!("distill logd: {e}");
                            }
                            continue;
                        }
                    },
                };
                rec.clear();
                wire::encode_line(&mut rec, time, name, &l.msg, l.cut, 0);
                if let Err(e) = w.write_record(&rec) {
                    self.counters.persist_errors.fetch_add(1, Ordering::Relaxed);
                    if p.failed.insert(l.src, ()).is_none() {
                        eprintln!("distill logd: {e}");
                    }
                }
                if !touched.contains(&l.src) {
                    touched.push(l.src);
                }
            }
            for src in touched {
                if let Some(w) = p.writers.get_mut(&src) {
                    if let Err(e) = w.flush() {
                        self.counters.persist_errors.fetch_add(1, Ordering::Relaxed);
                        if p.failed.insert(src, ()).is_none() {
                            eprintln!("distill logd: {e}");
                        }
                    }
                }
            }
        }
        {
            let mut ring = lock(&self.shared.ring);
            for l in self.pending.drain(..) {
                ring.push(time, l.src, l.cut, l.msg);
            }
        }
        self.shared.cond.notify_all();
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let shared = self.shared.clone();
                    let counters = self.counters.clone();
                    let _ = std::thread::Builder::new()
                        .name("logd-client".into())
                        .stack_size(256 * 1024)
                        .spawn(move || serve_client(&shared, &counters, stream));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

/// Splits `data` (the next bytes of `input`) into lines, cutting lines longer than
/// `line_max` into pieces (all but the last marked `cut`) at a UTF-8 boundary when possible.
fn split_lines(input: &mut Input, data: &[u8], line_max: usize, out: &mut Vec<Pending>) {
    let src = input.src;
    let mut rest = data;
    while !rest.is_empty() {
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                if input.partial.is_empty() && line.len() <= line_max {
                    out.push(Pending {
                        src,
                        cut: false,
                        msg: line.into(),
                    });
                } else {
                    input.partial.extend_from_slice(line);
                    cut_long(&mut input.partial, src, line_max, out);
                    let msg = std::mem::take(&mut input.partial).into_boxed_slice();
                    out.push(Pending {
                        src,
                        cut: false,
                        msg,
                    });
                }
            }
            None => {
                input.partial.extend_from_slice(rest);
                cut_long(&mut input.partial, src, line_max, out);
                break;
            }
        }
    }
}

/// Emits `cut` pieces from the front of `buf` while it is longer than `line_max`.
fn cut_long(buf: &mut Vec<u8>, src: u32, line_max: usize, out: &mut Vec<Pending>) {
    let mut start = 0;
    while buf.len() - start > line_max {
        let piece = &buf[start..start + line_max + 1];
        let at = utf8_cut(piece, line_max);
        out.push(Pending {
            src,
            cut: true,
            msg: buf[start..start + at].into(),
        });
        start += at;
    }
    if start > 0 {
        buf.drain(..start);
    }
}

/// Where to cut `b` (which has more than `max` bytes) so that no UTF-8 character is split:
/// `max`, or up to 3 bytes earlier if `b[max]` continues a character begun there.
fn utf8_cut(b: &[u8], max: usize) -> usize {
    let is_cont = |x: u8| x & 0xc0 == 0x80;
    if !is_cont(b[max]) {
        return max;
    }
    let mut i = max;
    while i > 0 && max - i < 3 && is_cont(b[i]) {
        i -= 1;
    }
    if i > 0 && !is_cont(b[i]) && b[i] >= 0xc0 {
        i
    } else {
        max
    }
}

fn peer_gone(stream: &UnixStream) -> bool {
    let mut p = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn read_request(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut req = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(if req.is_empty() { None } else { Some(req) });
        }
        req.extend_from_slice(&chunk[..n]);
        if let Some(i) = req.iter().position(|b| *b == b'\n') {
            req.truncate(i);
            return Ok(Some(req));
        }
        if req.len() > wire::REQUEST_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request longer than 64 KiB",
            ));
        }
    }
}

fn serve_client(shared: &Shared, counters: &Counters, mut stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let req = match read_request(&mut stream) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let _ = stream.write_all(&wire::encode_error(&format!("reading the request: {e}")));
            return;
        }
    };
    let req: WireRequest = match serde_json::from_slice(&req) {
        Ok(r) => r,
        Err(e) => {
            let _ = stream.write_all(&wire::encode_error(&format!("bad request: {e}")));
            return;
        }
    };
    let mode = match req.mode.as_str() {
        "dump" => Mode::Dump,
        "follow" => Mode::Follow,
        "dump-follow" => Mode::DumpFollow,
        "stats" => {
            let s = {
                let ring = lock(&shared.ring);
                Stats {
                    lines_total: ring.lines_total,
                    bytes_total: ring.bytes_total,
                    evicted_total: ring.evicted_total,
                    ring_lines: ring.len() as u64,
                    ring_bytes: ring.bytes() as u64,
                    open_fds: counters.open_fds.load(Ordering::Relaxed),
                    bad_datagrams: counters.bad_datagrams.load(Ordering::Relaxed),
                    persist_errors: counters.persist_errors.load(Ordering::Relaxed),
                }
            };
            let mut v = serde_json::to_vec(&s).unwrap_or_default();
            v.push(b'\n');
            let _ = stream.write_all(&v);
            return;
        }
        other => {
            let _ = stream.write_all(&wire::encode_error(&format!(
                "unknown mode \"{other}\"; use dump, follow, dump-follow or stats"
            )));
            return;
        }
    };
    let since = match req.since.as_deref().map(wire::parse_time).transpose() {
        Ok(t) => t.map(wire::nanos_of).unwrap_or(0),
        Err(e) => {
            let _ = stream.write_all(&wire::encode_error(&e.to_string()));
            return;
        }
    };
    let mut cursor = {
        let ring = lock(&shared.ring);
        Cursor::new(
            &ring,
            req.source,
            req.tail,
            since,
            mode == Mode::Follow,
            mode == Mode::Dump,
        )
    };
    let mut batch: Vec<Out> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        batch.clear();
        {
            let mut ring = lock(&shared.ring);
            loop {
                cursor.fill(&ring, &mut batch, 1024, 256 * 1024);
                if !batch.is_empty() || cursor.done() || shared.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                let (g, to) = shared
                    .cond
                    .wait_timeout(ring, Duration::from_millis(250))
                    .unwrap_or_else(|e| e.into_inner());
                ring = g;
                if to.timed_out() {
                    break;
                }
            }
        }
        if batch.is_empty() {
            if cursor.done() || shared.shutdown.load(Ordering::SeqCst) || peer_gone(&stream) {
                return;
            }
            continue;
        }
        out.clear();
        for o in &batch {
            wire::encode_line(&mut out, o.time, &o.source, &o.msg, o.cut, o.dropped);
        }
        if stream.write_all(&out).is_err() {
            return;
        }
        if cursor.done() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]], line_max: usize) -> Vec<(bool, Vec<u8>)> {
        let f = tempfile::tempfile().unwrap();
        let mut input = Input {
            file: f,
            src: 0,
            container: "c".into(),
            partial: Vec::new(),
        };
        let mut out = Vec::new();
        for c in chunks {
            split_lines(&mut input, c, line_max, &mut out);
        }
        let mut v: Vec<(bool, Vec<u8>)> = out.into_iter().map(|p| (p.cut, p.msg.into())).collect();
        if !input.partial.is_empty() {
            v.push((false, input.partial));
        }
        v
    }

    #[test]
    fn lines_are_joined_across_reads_and_long_ones_cut() {
        let v = split_all(&[b"ab", b"c\nde", b"f\n\nxyz"], 100);
        assert_eq!(
            v,
            [
                (false, b"abc".to_vec()),
                (false, b"def".to_vec()),
                (false, b"".to_vec()),
                (false, b"xyz".to_vec())
            ]
        );
        let v = split_all(&[b"0123456789", b"abc\n"], 4);
        assert_eq!(
            v,
            [
                (true, b"0123".to_vec()),
                (true, b"4567".to_vec()),
                (true, b"89ab".to_vec()),
                (false, b"c".to_vec())
            ]
        );
        // "é" is 2 bytes: a cut at 4 would split it, so the piece is 3 bytes.
        let v = split_all(&["abcé€x\n".as_bytes()], 4);
        assert_eq!(
            v,
            [
                (true, b"abc".to_vec()),
                (true, "é".as_bytes().to_vec()),
                (false, "€x".as_bytes().to_vec())
            ]
        );
    }
}
