//! Reading the tracee's memory: `process_vm_readv`, falling back to `/proc/PID/mem`.

use std::fs::File;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
/// Longest path the kernel accepts, including the NUL.
const PATH_MAX: usize = 4096;

fn vm_read(pid: i32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec points into `buf`, which lives for the call.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        None
    } else {
        Some(n as usize)
    }
}

fn mem_read(pid: i32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    let f = File::open(format!("/proc/{pid}/mem")).ok()?;
    f.read_at(buf, addr).ok()
}

/// Read `buf.len()` bytes at `addr`; false if the memory is unreadable.
pub(crate) fn read_bytes(pid: i32, addr: u64, buf: &mut [u8]) -> bool {
    match vm_read(pid, addr, buf) {
        Some(n) if n == buf.len() => true,
        _ => matches!(mem_read(pid, addr, buf), Some(n) if n == buf.len()),
    }
}

/// Read a NUL-terminated string at `addr` (at most `PATH_MAX` bytes). Reads never cross into a
/// page the string does not reach, so a string at the end of a mapping is read correctly.
pub(crate) fn read_cstring(pid: i32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(128);
    let mut cur = addr;
    let mut use_mem = false;
    while out.len() < PATH_MAX {
        let chunk = (PAGE - cur % PAGE) as usize;
        let mut buf = [0u8; PAGE as usize];
        let buf = &mut buf[..chunk.min(PATH_MAX - out.len() + 1)];
        let n = if use_mem {
            mem_read(pid, cur, buf)?
        } else {
            match vm_read(pid, cur, buf) {
                Some(n) if n > 0 => n,
                _ => {
                    use_mem = true;
                    mem_read(pid, cur, buf)?
                }
            }
        };
        if n == 0 {
            return None;
        }
        if let Some(z) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        cur += n as u64;
    }
    None
}
