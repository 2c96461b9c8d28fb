//! The exec shim: a tiny program (`dmz/dmz.c`) that a container process executes from a
//! sealed memfd right before the container's program (CVE-2019-5736).
//!
//! A process the runtime starts in a container is a copy of the runtime until its `execve`,
//! so `/proc/self/exe` names the runtime's binary. If the container's program is a script
//! starting with `#!/proc/self/exe`, the kernel executes that binary as the interpreter, in
//! the container, where the container can open it through `/proc/<pid>/exe` and write it
//! after it exits: the next `distill` anyone runs is the attacker's. With the shim, the
//! process executes the shim first, so at the container program's `execve` `/proc/self/exe`
//! names the shim's memfd, which is sealed against writing. The shim is a few KB, so making
//! the memfd costs microseconds where a sealed copy of the whole runtime binary (runc's
//! first fix) would cost milliseconds per container.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The shim's bytes (empty where it is not built: not x86_64).
#[cfg(target_arch = "x86_64")]
const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dmz"));
#[cfg(not(target_arch = "x86_64"))]
const SHIM: &[u8] = &[];

/// `MFD_EXEC` (Linux 6.3): the memfd may be executed even where `vm.memfd_noexec` asks
/// memfds to be made non-executable by default.
const MFD_EXEC: libc::c_uint = 0x10;

/// The exec shim in a sealed memfd, ready for [`crate::Spec::exec_shim`].
#[derive(Debug)]
pub struct ExecShim(OwnedFd);

impl ExecShim {
    /// Makes the memfd: the shim's bytes, then every seal (no write, no resize, no more
    /// seals). Fails where the shim is not built for this architecture or memfds cannot be
    /// executed (`vm.memfd_noexec = 2`).
    pub fn new() -> io::Result<ExecShim> {
        if SHIM.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the exec shim is built for x86_64 only",
            ));
        }
        let name = c"distill-exec-shim";
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: a valid NUL-terminated name; the result is a new descriptor or -1.
        let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // Before 6.3 there is no MFD_EXEC, and memfds are executable.
            fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just made and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::fs::File::from(fd.try_clone()?).write_all(SHIM)?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our descriptor.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ExecShim(fd))
    }

    /// The memfd, for [`crate::Spec::exec_shim`].
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The process-wide shim, made on first use.
    pub fn shared() -> io::Result<&'static ExecShim> {
        static SHARED: std::sync::OnceLock<ExecShim> = std::sync::OnceLock::new();
        if let Some(s) = SHARED.get() {
            return Ok(s);
        }
        let s = ExecShim::new()?;
        Ok(SHARED.get_or_init(|| s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim writes the sandbox child's exec report: the same step number.
    #[test]
    fn the_shim_reports_exec_failures_as_the_child_does() {
        let src = include_str!("../dmz/dmz.c");
        let want = format!("#define STEP_EXEC {}\n", crate::child::STEP_EXEC);
        assert!(src.contains(&want), "dmz.c must say {want:?}");
    }

    /// Nothing can write the sealed shim, not even through a writable descriptor.
    #[test]
    fn the_shim_cannot_be_written() {
        let s = ExecShim::new().unwrap();
        let path = format!("/proc/self/fd/{}", s.fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"#!/bin/sh\n"))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got, SHIM);
    }
}
