//! Thin, allocation-free wrappers over the Linux system calls the child needs.
//!
//! Everything here is safe to call between `clone(2)` and `execve(2)`: no heap, no locks,
//! only raw system calls that return `Err(errno)`.

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::ffi::CStr;

/// Result of a raw system call: the errno on failure.
pub(crate) type SysResult<T> = Result<T, i32>;

#[inline]
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

#[inline]
fn check(r: c_int) -> SysResult<c_int> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

#[inline]
fn check_long(r: c_long) -> SysResult<c_long> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub(crate) const OPEN_TREE_CLONE: c_uint = 1;
pub(crate) const OPEN_TREE_CLOEXEC: c_uint = libc::O_CLOEXEC as c_uint;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;
pub(crate) const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const EMPTY: &CStr = c"";

pub(crate) fn close(fd: c_int) {
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
}

/// Closes every descriptor from `first` up except those in `keep` (any order), with
/// `close_range` over the gaps: a few system calls whatever the number of open descriptors.
/// Allocates nothing (safe between fork/clone and exec). False if `close_range` failed
/// (kernels before 5.9, or a seccomp filter refusing it).
pub(crate) fn close_from_except(first: c_int, keep: &[c_int]) -> bool {
    let mut next = first.max(0) as c_uint;
    loop {
        // The smallest kept descriptor at or above `next`.
        let kept = keep
            .iter()
            .filter(|&&k| k >= 0 && k as c_uint >= next)
            .min()
            .map(|&k| k as c_uint);
        match kept {
            Some(k) => {
                if k > next && unsafe { libc::close_range(next, k - 1, 0) } != 0 {
                    return false;
                }
                next = k + 1;
            }
            None => return unsafe { libc::close_range(next, c_uint::MAX, 0) } == 0,
        }
    }
}

/// `openat2(dirfd, path, O_PATH|O_CLOEXEC[|O_NOFOLLOW], RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`:
/// resolve `path` as if `dirfd` were `/`, so symlinks inside an image cannot escape it.
pub(crate) fn open_in_root(dirfd: c_int, path: &CStr, nofollow: bool) -> SysResult<c_int> {
    let mut flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    if nofollow {
        flags |= libc::O_NOFOLLOW as u64;
    }
    let how = OpenHow {
        flags,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    check_long(r).map(|fd| fd as c_int)
}

pub(crate) fn open(path: &CStr, flags: c_int) -> SysResult<c_int> {
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) })
}

pub(crate) fn openat(dirfd: c_int, path: &CStr, flags: c_int, mode: u32) -> SysResult<c_int> {
    check(unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

pub(crate) fn mkdirat(dirfd: c_int, name: &CStr, mode: u32) -> SysResult<()> {
    check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }).map(drop)
}

pub(crate) fn symlinkat(target: &CStr, dirfd: c_int, name: &CStr) -> SysResult<()> {
    check(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) }).map(drop)
}

/// Is `fd` (an `O_PATH` descriptor is fine) a directory?
pub(crate) fn is_dir(fd: c_int) -> SysResult<bool> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    check(unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data).cast::<c_void>(),
        )
    })
    .map(drop)
}

pub(crate) fn fchdir(fd: c_int) -> SysResult<()> {
    check(unsafe { libc::fchdir(fd) }).map(drop)
}

pub(crate) fn chdir(path: &CStr) -> SysResult<()> {
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub(crate) fn open_tree(dirfd: c_int, path: &CStr, flags: c_uint) -> SysResult<c_int> {
    let r = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    check_long(r).map(|fd| fd as c_int)
}

/// Attach the detached mount `from` onto the file or directory `to_fd`.
pub(crate) fn move_mount_fd(from: c_int, to_fd: c_int) -> SysResult<()> {
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            EMPTY.as_ptr(),
            to_fd,
            EMPTY.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check_long(r).map(drop)
}

/// Make the mount at `fd` (optionally recursively) read-only, keeping its other flags.
pub(crate) fn set_readonly(fd: c_int, path: &CStr, recursive: bool) -> SysResult<()> {
    set_mount_attr(fd, path, recursive, MOUNT_ATTR_RDONLY)
}

/// Sets the `MOUNT_ATTR_*` flags `set` on the mount at `fd` (optionally recursively),
/// keeping its other flags.
pub(crate) fn set_mount_attr(fd: c_int, path: &CStr, recursive: bool, set: u64) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = if path.is_empty() {
        libc::AT_EMPTY_PATH as c_uint
    } else {
        0
    };
    if recursive {
        flags |= libc::AT_RECURSIVE as c_uint;
    }
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(r).map(drop)
}

pub(crate) fn pivot_root_dot() -> SysResult<()> {
    let dot = c".";
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check_long(r)?;
    check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
    chdir(c"/")
}

pub(crate) fn chroot_dot() -> SysResult<()> {
    check(unsafe { libc::chroot(c".".as_ptr()) }).map(drop)
}

pub(crate) fn setns(fd: c_int, nstype: c_int) -> SysResult<()> {
    check(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> SysResult<()> {
    check(unsafe { libc::sethostname(name.as_ptr().cast::<c_char>(), name.len()) }).map(drop)
}

const SIOCGIFFLAGS: c_ulong = 0x8913;
const SIOCSIFFLAGS: c_ulong = 0x8914;

#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Bring the `lo` interface of the current network namespace up.
pub(crate) fn loopback_up() -> SysResult<()> {
    let sock =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let r = (|| {
        check(unsafe { libc::ioctl(sock, SIOCGIFFLAGS as _, &mut req as *mut IfreqFlags) })?;
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(unsafe { libc::ioctl(sock, SIOCSIFFLAGS as _, &mut req as *mut IfreqFlags) })
    })();
    close(sock);
    r.map(drop)
}

pub(crate) fn prctl(option: c_int, arg: c_ulong) -> SysResult<()> {
    check(unsafe { libc::prctl(option, arg, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

pub(crate) fn prctl4(option: c_int, arg: c_ulong, arg3: c_ulong) -> SysResult<()> {
    check(unsafe { libc::prctl(option, arg, arg3, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Set the effective and permitted capability sets to `mask` and the inheritable set to
/// `inheritable`: empty for every program, since an inheritable capability would pass to any
/// program whose file capabilities name it inheritable (`+ei`), even as a non-root user and
/// with no_new_privs (CVE-2022-24769); only carried across the exec shim, which empties it.
pub(crate) fn capset(mask: u64, inheritable: u64) -> SysResult<()> {
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    check_long(r).map(drop)
}

pub(crate) fn write_all(fd: c_int, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        let r = unsafe { libc::write(fd, buf[off..].as_ptr().cast::<c_void>(), buf.len() - off) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        off += r as usize;
    }
}

/// Read exactly `buf.len()` bytes; `Ok(false)` on EOF before any byte.
pub(crate) fn read_exact_or_eof(fd: c_int, buf: &mut [u8]) -> SysResult<bool> {
    let mut off = 0;
    while off < buf.len() {
        let r = unsafe {
            libc::read(
                fd,
                buf[off..].as_mut_ptr().cast::<c_void>(),
                buf.len() - off,
            )
        };
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return if off == 0 {
                Ok(false)
            } else {
                Err(libc::EPROTO)
            };
        }
        off += r as usize;
    }
    Ok(true)
}

/// This thread's CPU set and the same without the CPU it runs on, if that leaves any: where to
/// send work that should run beside this thread rather than wait for its CPU. A new thread or
/// process otherwise starts on its creator's CPU and waits there while the creator keeps it
/// busy (558 us measured on this 2-CPU VM before a new thread ran, 59 us when sent away).
pub(crate) fn cpus_and_others() -> Option<(libc::cpu_set_t, libc::cpu_set_t)> {
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let here = libc::sched_getcpu();
        if here < 0 || libc::CPU_COUNT(&set) < 2 || !libc::CPU_ISSET(here as usize, &set) {
            return None;
        }
        let mut others = set;
        libc::CPU_CLR(here as usize, &mut others);
        Some((set, others))
    }
}

/// A new pseudo-terminal from the devpts instance at `/dev/pts` of the current root:
/// (master, slave), both close-on-exec and neither made the controlling terminal. The master
/// must be the pty multiplexer (char 5:2, whatever the path led to); the slave is opened
/// through the master (`TIOCGPTPEER`, no path lookup) and owned by `uid`:`gid`.
pub(crate) fn open_pty(uid: u32, gid: u32) -> SysResult<(c_int, c_int)> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let m = check(unsafe { libc::open(c"/dev/pts/ptmx".as_ptr(), flags) })?;
    let fail = |e: i32| {
        close(m);
        Err(e)
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(m, &mut st) } < 0 {
        return fail(errno());
    }
    let is_ptmx = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == 5
        && libc::minor(st.st_rdev) == 2;
    if !is_ptmx {
        return fail(libc::ENOTTY);
    }
    let unlock: c_int = 0;
    if unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &unlock) } < 0 {
        return fail(errno());
    }
    let s = unsafe {
        libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return fail(errno());
    }
    if unsafe { libc::fchown(s, uid, gid) } < 0 {
        let e = errno();
        close(s);
        return fail(e);
    }
    Ok((m, s))
}

/// Control-message buffer for one descriptor, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct FdCmsg([u8; 64]);

/// Sends descriptor `fd` over unix socket `sock` (one byte of data, `SCM_RIGHTS`).
pub(crate) fn send_fd(sock: c_int, fd: c_int) -> SysResult<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = FdCmsg([0; 64]);
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), fd);
    }
    loop {
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        if errno() != libc::EINTR {
            return Err(errno());
        }
    }
}

/// Receives a descriptor [`send_fd`] sent; `Ok(None)` at end of stream without one.
pub(crate) fn recv_fd(sock: c_int) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = FdCmsg([0; 64]);
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    let r = loop {
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 || errno() != libc::EINTR {
            break r;
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut got = None;
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<c_int>();
                for i in 0..n {
                    let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<c_int>().add(i));
                    let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if r == 0 && got.is_none() {
        return Ok(None);
    }
    Ok(got)
}
