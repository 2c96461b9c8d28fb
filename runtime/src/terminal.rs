//! How a foreground process (`run`, `exec`) is attached to the caller's standard streams.
//!
//! A container's process never gets a descriptor of the caller's terminal, and runs in a
//! session of its own, so it has no controlling terminal of the caller's either: with the
//! terminal as its stdin, stdout or stderr, or as its controlling terminal, it could push
//! input into the caller's shell with `TIOCSTI` (which the shell then runs, as root), read
//! the caller's keystrokes or change the terminal's settings.
//!
//! * Without `-t`: stdin is `/dev/null` unless `-i`; with `-i` it is the caller's stdin
//!   itself when that is not a terminal, else a pipe this module fills from it. stdout and
//!   stderr are the caller's own descriptors when they are not terminals (no copy, no
//!   thread: the start path of `run --rm` and of scripts stays as it was), else pipes copied
//!   to them.
//! * With `-t`: the process allocates a pseudo-terminal of its own, in the container's
//!   devpts (`distill_sandbox::Spec::console_socket`), and sends the master here; this
//!   module relays it to the caller's stdin and stdout, with the caller's terminal (if any)
//!   in raw mode meanwhile ([`RawMode`], restored on every way out: return, panic, a fatal
//!   signal) and its window size copied at start and on every `SIGWINCH`.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

/// How a foreground process is attached to the caller (`-i`, `-t`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    /// Give it the caller's stdin (`-i`); otherwise its stdin is `/dev/null`.
    pub stdin: bool,
    /// Give it a pseudo-terminal of its own as stdin, stdout, stderr and controlling
    /// terminal (`-t`), relayed to the caller's stdin and stdout.
    pub tty: bool,
}

/// Whether `fd` is a terminal (one `TCGETS`).
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// A connected pair of unix stream sockets (close-on-exec): (the caller's end, the child's
/// end), for [`distill_sandbox::Spec::console_socket`].
pub(crate) fn console_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Bytes read from one side waiting to be written to the other (which may not take them
/// all at once: a container that does not read its stdin must not stall its output).
struct Pending {
    buf: Vec<u8>,
    /// Stop reading the source (EOF or error).
    eof: bool,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads what `src` has (up to 64 KiB) into the buffer.
    fn fill(&mut self, src: RawFd) {
        let mut b = [0u8; 65536];
        // SAFETY: read into a local buffer.
        let n = unsafe { libc::read(src, b.as_mut_ptr().cast(), b.len()) };
        if n > 0 {
            self.buf.extend_from_slice(&b[..n as usize]);
        } else if n == 0 || !matches!(errno(), libc::EINTR | libc::EAGAIN) {
            self.eof = true;
        }
    }

    /// Writes what it can of the buffer to `dst` (non-blocking); false once `dst` is gone.
    fn drain(&mut self, dst: RawFd) -> bool {
        while !self.buf.is_empty() {
            // SAFETY: write from our buffer.
            let n = unsafe { libc::write(dst, self.buf.as_ptr().cast(), self.buf.len()) };
            if n < 0 {
                return matches!(errno(), libc::EINTR | libc::EAGAIN);
            }
            self.buf.drain(..n as usize);
        }
        true
    }
}

fn poll(pfds: &mut [libc::pollfd]) -> bool {
    // SAFETY: a valid array of pollfds.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
    r >= 0 || errno() == libc::EINTR
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Copies the container's stdout and stderr pipes into `w_out` and `w_err` until both reach
/// EOF, and meanwhile, with `stdin` = (the caller's stdin, the container's stdin pipe), what
/// the caller types into that pipe (closed at the caller's EOF, so the container sees EOF).
pub(crate) fn relay_pipes(
    stdin: Option<(RawFd, OwnedFd)>,
    out: OwnedFd,
    err: OwnedFd,
    w_out: &mut dyn Write,
    w_err: &mut dyn Write,
) {
    let mut open = [Some(out), Some(err)];
    let (src, mut sink) = match stdin {
        Some((s, p)) => {
            set_nonblocking(p.as_raw_fd());
            (s, Some(p))
        }
        None => (-1, None),
    };
    let mut pending = Pending::new();
    let mut buf = vec![0u8; 65536];
    while open.iter().any(|o| o.is_some()) {
        let reading_stdin = sink.is_some() && !pending.eof && pending.buf.is_empty();
        let mut pfds = [
            pollfd(open[0].as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN),
            pollfd(open[1].as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN),
            pollfd(if reading_stdin { src } else { -1 }, libc::POLLIN),
            pollfd(
                match &sink {
                    Some(p) if !pending.buf.is_empty() => p.as_raw_fd(),
                    _ => -1,
                },
                libc::POLLOUT,
            ),
        ];
        if !poll(&mut pfds) {
            return;
        }
        for i in 0..2 {
            if pfds[i].revents == 0 {
                continue;
            }
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(pfds[i].fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                open[i] = None;
                continue;
            }
            let w: &mut dyn Write = if i == 0 { &mut *w_out } else { &mut *w_err };
            let _ = w.write_all(&buf[..n as usize]);
            let _ = w.flush();
        }
        if pfds[2].revents != 0 {
            pending.fill(src);
        }
        if let Some(p) = &sink {
            if !pending.drain(p.as_raw_fd()) {
                // The container closed its stdin: nothing more to give it.
                pending.buf.clear();
                pending.eof = true;
            }
            if pending.eof && pending.buf.is_empty() {
                sink = None;
            }
        }
    }
}

/// The caller's terminal settings while a [`RawMode`] is in force, for the handlers of
/// fatal signals (which put them back before the signal's default action).
static RAW_FD: AtomicI32 = AtomicI32::new(-1);
static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);
static mut RAW_SAVED: std::mem::MaybeUninit<libc::termios> = std::mem::MaybeUninit::uninit();
/// The write end of the self-pipe `SIGWINCH` wakes the relay with (-1: none).
static WINCH_FD: AtomicI32 = AtomicI32::new(-1);

fn restore_saved() {
    let fd = RAW_FD.load(SeqCst);
    if fd >= 0 && RAW_ACTIVE.load(SeqCst) {
        // SAFETY: RAW_SAVED was written before RAW_ACTIVE was set; tcsetattr is
        // async-signal-safe. TCSAFLUSH: keystrokes typed for the container and not read by
        // it are dropped, never left for the caller's shell to run.
        unsafe {
            let saved = &*std::ptr::addr_of!(RAW_SAVED);
            libc::tcsetattr(fd, libc::TCSAFLUSH, saved.as_ptr());
        }
    }
}

/// A fatal signal (one nobody handles) while the terminal is raw: settings back, then the
/// signal's default action.
extern "C" fn restore_and_die(sig: libc::c_int) {
    restore_saved();
    // SAFETY: async-signal-safe calls.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
}

extern "C" fn winch(_: libc::c_int) {
    let e = errno();
    let fd = WINCH_FD.load(SeqCst);
    if fd >= 0 {
        // SAFETY: one byte into a non-blocking pipe; a full pipe already says "resized".
        unsafe { libc::write(fd, b"w".as_ptr().cast(), 1) };
    }
    // SAFETY: errno put back as it was.
    unsafe { *libc::__errno_location() = e };
}

/// The caller's terminal in raw mode (as `cfmakeraw`, output processing kept) until dropped;
/// the handlers it installs for the fatal signals nobody handles (SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT: a foreground `run` forwards those, and its relay then ends normally) put the
/// settings back first. A panic unwinds through the drop.
pub(crate) struct RawMode {
    fd: RawFd,
    old: Vec<(i32, libc::sigaction)>,
}

impl RawMode {
    /// `None` when `fd` is not a terminal (nothing to do) or another one is in force.
    pub(crate) fn new(fd: RawFd) -> Option<RawMode> {
        if !is_terminal(fd) || RAW_ACTIVE.load(SeqCst) {
            return None;
        }
        // SAFETY: termios calls on a terminal; RAW_SAVED is written while no RawMode is in
        // force (so no handler reads it).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) < 0 {
                return None;
            }
            (*std::ptr::addr_of_mut!(RAW_SAVED)).write(t);
            RAW_FD.store(fd, SeqCst);
            RAW_ACTIVE.store(true, SeqCst);
            let mut old = Vec::new();
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                let mut cur: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut cur);
                if cur.sa_sigaction != libc::SIG_DFL {
                    continue;
                }
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = restore_and_die as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut());
                old.push((sig, cur));
            }
            let mut raw = t;
            libc::cfmakeraw(&mut raw);
            // Keep the caller's output processing (\n -> \r\n is the container's pty's job,
            // but a message of ours printed meanwhile should still look right).
            raw.c_oflag = t.c_oflag;
            // TCSANOW: what was typed ahead (for the container) is kept.
            libc::tcsetattr(fd, libc::TCSANOW, &raw);
            Some(RawMode { fd, old })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
        RAW_ACTIVE.store(false, SeqCst);
        RAW_FD.store(-1, SeqCst);
        for (sig, old) in &self.old {
            // SAFETY: puts back the action saved by `new`.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        let _ = self.fd;
    }
}

/// Copies the window size of `from` (a terminal) to `to` (a pty master).
fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: winsize ioctls with a local struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Relays the container's pseudo-terminal `master` to the caller: its output to `out`, and
/// with `stdin` what the caller types into it. The caller's terminal (stdin, else stdout)
/// is in raw mode meanwhile and its window size follows. Returns when the container's side
/// is closed (every holder of the slave gone) or, once `done` (a descriptor that becomes
/// readable when the process has exited) is readable, after what the master still holds.
pub(crate) fn relay_pty(master: OwnedFd, stdin: bool, done: RawFd, out: &mut dyn Write) {
    let m = master.as_raw_fd();
    set_nonblocking(m);
    let term = [0, 1].into_iter().find(|fd| is_terminal(*fd));
    // Raw only when we read the keystrokes: the terminal's own line editing and signals
    // would otherwise apply before the container's. Without -i the terminal stays as it is.
    let _raw = term.filter(|_| stdin).and_then(RawMode::new);
    // SIGWINCH wakes the loop through a self-pipe (no lost wake-up between checks).
    let mut winch_pipe = [-1; 2];
    let mut old_winch: Option<libc::sigaction> = None;
    if let Some(t) = term {
        copy_winsize(t, m);
        // SAFETY: a pipe and a handler that writes one byte to it.
        unsafe {
            if libc::pipe2(winch_pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) == 0 {
                WINCH_FD.store(winch_pipe[1], SeqCst);
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = winch as extern "C" fn(libc::c_int) as usize;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGWINCH, &act, &mut old);
                old_winch = Some(old);
            }
        }
    }
    let mut typed = Pending::new();
    typed.eof = !stdin;
    let mut sent_eof = !stdin;
    let mut buf = vec![0u8; 65536];
    let mut drain_output = |out: &mut dyn Write| -> bool {
        loop {
            // SAFETY: read into our buffer.
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let _ = out.write_all(&buf[..n as usize]);
                continue;
            }
            let _ = out.flush();
            // 0 or EIO: no slave left; EAGAIN: nothing more for now.
            return n < 0 && matches!(errno(), libc::EAGAIN | libc::EINTR);
        }
    };
    loop {
        let mut pfds = [
            pollfd(
                m,
                libc::POLLIN
                    | if typed.buf.is_empty() {
                        0
                    } else {
                        libc::POLLOUT
                    },
            ),
            pollfd(
                if typed.eof || !typed.buf.is_empty() {
                    -1
                } else {
                    0
                },
                libc::POLLIN,
            ),
            pollfd(winch_pipe[0], libc::POLLIN),
            pollfd(done, libc::POLLIN),
        ];
        if !poll(&mut pfds) {
            break;
        }
        if pfds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
            && !drain_output(out)
        {
            break;
        }
        if pfds[1].revents != 0 {
            typed.fill(0);
        }
        if !typed.drain(m) {
            typed.buf.clear();
        }
        if typed.eof && typed.buf.is_empty() && !sent_eof {
            // The caller's stdin ended (a pipe or file): an end-of-file character, which a
            // program reading the terminal in canonical mode sees as EOF.
            sent_eof = true;
            // SAFETY: write of one byte.
            unsafe { libc::write(m, b"\x04".as_ptr().cast(), 1) };
        }
        if pfds[2].revents != 0 {
            let mut b = [0u8; 64];
            // SAFETY: read into a local buffer.
            while unsafe { libc::read(winch_pipe[0], b.as_mut_ptr().cast(), b.len()) } > 0 {}
            if let Some(t) = term {
                copy_winsize(t, m);
            }
        }
        if pfds[3].revents != 0 {
            // The process exited: what it wrote is in the master already.
            drain_output(out);
            break;
        }
    }
    if let Some(old) = old_winch {
        WINCH_FD.store(-1, SeqCst);
        // SAFETY: the saved action back; then our pipe closed.
        unsafe {
            libc::sigaction(libc::SIGWINCH, &old, std::ptr::null_mut());
            libc::close(winch_pipe[0]);
            libc::close(winch_pipe[1]);
        }
    }
}
