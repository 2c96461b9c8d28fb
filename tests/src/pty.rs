//! A real terminal for tests: a pseudo-terminal pair whose slave is the controlling terminal
//! of a process the test starts (in a new session, as a login shell's terminal is), and whose
//! master the test types into and reads, as a terminal emulator does.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};

/// A process on a terminal of the test's own.
pub struct Terminal {
    master: OwnedFd,
    /// Everything the terminal showed (the process's output and the line discipline's echo).
    seen: Arc<(Mutex<Vec<u8>>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    child: Child,
}

impl Terminal {
    /// A real `sh` on a `rows` x `cols` terminal of its own (session leader, the terminal its
    /// controlling terminal), with `lab`'s root, state and cgroup parent in its environment
    /// and the distill binary as `$D`; no prompts. It runs a line only once the previous one
    /// is done, as an interactive shell does.
    pub fn lab_shell(lab: &crate::Lab, rows: u16, cols: u16) -> Terminal {
        let mut sh = Command::new("/bin/sh");
        sh.env("DISTILL_ROOT", &lab.root)
            .env("DISTILL_STATE", &lab.state)
            .env("DISTILL_CGROUP_PARENT", &lab.cgroup_parent)
            .env("D", crate::distill_bin())
            .env("NO_COLOR", "1")
            .env("PS1", "")
            .env("PS2", "");
        Terminal::spawn(sh, rows, cols)
    }

    /// Starts `cmd` with a new pty's slave (`rows` x `cols`) as its stdin, stdout, stderr
    /// and controlling terminal, in a new session.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Terminal {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).expect("openpty");
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the process on the terminal");
        // (The Command's copies of the slave close with it: only the process holds it now.)
        drop(cmd);
        let seen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let rd = pty.master.try_clone().unwrap();
        let s = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = unsafe { libc::read(rd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // EIO: every slave descriptor is closed.
                if n <= 0 {
                    break;
                }
                s.0.lock().unwrap().extend_from_slice(&buf[..n as usize]);
                s.1.notify_all();
            }
            s.1.notify_all();
        });
        Terminal {
            master: pty.master,
            seen,
            reader: Some(reader),
            child,
        }
    }

    /// Types `s` (as keystrokes: the line discipline echoes and edits them).
    pub fn type_str(&self, s: &str) {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            let n = unsafe { libc::write(self.master.as_raw_fd(), b.as_ptr().cast(), b.len()) };
            assert!(
                n > 0,
                "type into the terminal: {}",
                std::io::Error::last_os_error()
            );
            b = &b[n as usize..];
        }
    }

    /// What the terminal has shown so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.seen.0.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `pat`, after position `from` of the transcript;
    /// returns the position right after it. Panics with the transcript after `timeout`.
    pub fn wait_for(&self, pat: &str, from: usize, timeout: Duration) -> usize {
        self.wait_for_any(&[pat], from, timeout)
    }

    /// Like [`Terminal::wait_for`], for whichever of `pats` shows first.
    pub fn wait_for_any(&self, pats: &[&str], from: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut g = self.seen.0.lock().unwrap();
        loop {
            let hay = &g[from.min(g.len())..];
            let hit = pats
                .iter()
                .filter_map(|p| find(hay, p.as_bytes()).map(|i| i + p.len()))
                .min();
            if let Some(end) = hit {
                return from + end;
            }
            let pat = pats.join(" or ");
            let now = Instant::now();
            assert!(
                now < deadline,
                "the terminal did not show {pat:?} within {timeout:?}; it showed:\n{}",
                String::from_utf8_lossy(&g)
            );
            g = self.seen.1.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// The terminal's current settings (read through the master: they are the slave's).
    pub fn termios(&self) -> Termios {
        tcgetattr(&self.master).expect("tcgetattr")
    }

    /// Whether the terminal is in canonical mode with echo (a shell's cooked mode).
    pub fn is_cooked(&self) -> bool {
        let t = self.termios();
        t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }

    /// Resizes the terminal (the session's foreground process group gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit (killing it after `timeout`); returns its status and
    /// the whole transcript.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait().unwrap();
                panic!(
                    "the process on the terminal did not exit within {timeout:?} ({st}); it showed:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends once every slave descriptor is closed; a leftover holder (a
        // process the test started left running) must not hang the test.
        let end = Instant::now() + Duration::from_secs(5);
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.reader.as_ref().is_some_and(|r| r.is_finished()) {
            let _ = self.reader.take().unwrap().join();
        }
        (status, self.transcript())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
