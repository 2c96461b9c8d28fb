//! Seccomp filters the sandbox can install right before the program runs
//! ([`crate::Spec::seccomp`]).
//!
//! [`SeccompFilter::docker_default`] is an allow-list equivalent to Docker's default seccomp
//! profile for a container with Docker's default capabilities, on x86_64:
//!
//! - a foreign architecture (i386, x32 numbers) is refused: KILL for another audit arch,
//!   EPERM for x32 system call numbers;
//! - the system calls of [`allowed_syscalls`] are allowed unconditionally;
//! - `clone` is allowed only without namespace flags, `clone3` answers ENOSYS (so libcs fall back
//!   to `clone`), `personality` only with the few values Docker allows, `socket` for every
//!   family except AF_VSOCK;
//! - everything else answers EPERM: the calls Docker allows only with a capability the
//!   container does not hold (CAP_SYS_ADMIN: mount, unshare, setns, bpf, perf, ...;
//!   CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_SYS_TIME, CAP_SYS_BOOT, ...), the keyring, kexec,
//!   userfaultfd, io_uring and any system call newer than this list.
//!
//! The BPF is built by hand: an architecture check, the argument-checked calls, then a binary
//! search over the sorted allow-list.

const AUDIT_ARCH: u32 = if cfg!(target_arch = "x86_64") {
    0xC000_003E
} else if cfg!(target_arch = "aarch64") {
    0xC000_00B7
} else {
    0
};

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// Offsets of the system call number and the audit architecture in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

/// Offset of the low 32 bits of argument 0 in `struct seccomp_data` (little endian).
const ARG0_LO: u32 = 16;

/// Namespace flags `clone` may not carry (Docker's mask 0x7E020000).
const NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// `personality` values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff (query).
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// AF_VSOCK, the one socket family Docker refuses.
const AF_VSOCK: u32 = 40;

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as i64)),*]
    };
}

/// Docker's unconditional allow-list, for x86_64 (the names that exist there), plus
/// `arch_prctl`, `modify_ldt` (x86 only in Docker's profile) and `chroot` (Docker allows it with
/// CAP_SYS_CHROOT, which its default capability set holds; the kernel still checks it).
/// Not included although Docker's older profiles allow them: `io_uring_*` (dropped by
/// Docker 25), and `ptrace`/`process_vm_readv`/`process_vm_writev` (allowed by Docker on
/// kernels >= 4.8; refused here as for a container without CAP_SYS_PTRACE).
#[cfg(target_arch = "x86_64")]
const ALLOWED: &[(&str, i64)] = syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_access,
    SYS_adjtimex,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chmod,
    SYS_chown,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_creat,
    SYS_dup,
    SYS_dup2,
    SYS_dup3,
    SYS_epoll_create,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_ctl_old,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fork,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_futimesat,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpgrp,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_get_thread_area,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lchown,
    SYS_lgetxattr,
    SYS_link,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_lstat,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdir,
    SYS_mkdirat,
    SYS_mknod,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_modify_ldt,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_open,
    SYS_openat,
    SYS_openat2,
    SYS_pause,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_poll,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_pselect6,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlink,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_rename,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rmdir,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_select,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_thread_area,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd,
    SYS_signalfd4,
    SYS_socketpair,
    SYS_splice,
    SYS_stat,
    SYS_statfs,
    SYS_statx,
    SYS_symlink,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_time,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlink,
    SYS_unlinkat,
    SYS_utime,
    SYS_utimensat,
    SYS_utimes,
    SYS_vfork,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// Other architectures have no list yet: every unchecked system call is refused, which fails
/// loudly instead of running unconfined.
/// Allowed system calls the `libc` crate has no constant for.
#[cfg(target_arch = "x86_64")]
const ALLOWED_RAW: &[(&str, i64)] = &[("SYS_io_pgetevents", 333)];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_RAW: &[(&str, i64)] = &[];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED: &[(&str, i64)] = &[];

/// The system calls [`SeccompFilter::docker_default`] allows unconditionally, as
/// `(name, number)` sorted by number. `clone`, `personality` and `socket` are allowed too, but
/// only with the arguments described in the module documentation.
pub fn allowed_syscalls() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = ALLOWED
        .iter()
        .chain(ALLOWED_RAW)
        .map(|&(name, nr)| (name.trim_start_matches("SYS_"), nr))
        .collect();
    v.sort_by_key(|&(_, nr)| nr);
    v.dedup_by_key(|&mut (_, nr)| nr);
    v
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Leaves of the search tree hold at most this many numbers (linear compares).
const LEAF: usize = 8;

/// Appends a binary search over the sorted `nrs` (the accumulator holds the system call
/// number): RET ALLOW on a match, RET EPERM otherwise. Long forward jumps use `BPF_JA`, whose
/// offset is 32 bits; conditional jumps only skip one instruction or a leaf.
fn search(p: &mut Vec<libc::sock_filter>, nrs: &[u32]) {
    if nrs.len() <= LEAF {
        // [JEQ nr_i -> allow]*n, RET EPERM, RET ALLOW
        let n = nrs.len();
        for (i, &nr) in nrs.iter().enumerate() {
            p.push(jump(BPF_JEQ_K, nr, (n - i) as u8, 0));
        }
        p.push(stmt(BPF_RET_K, RET_EPERM));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        return;
    }
    let mid = nrs.len() / 2;
    let (lo, hi) = nrs.split_at(mid);
    // JGE hi[0] ? (next: JA over the low half) : (skip the JA: low half)
    p.push(jump(BPF_JGE_K, hi[0], 0, 1));
    let ja = p.len();
    p.push(stmt(BPF_JA, 0));
    search(p, lo);
    p[ja].k = (p.len() - ja - 1) as u32;
    search(p, hi);
}

/// The BPF program of [`SeccompFilter::docker_default`].
fn docker_program() -> Vec<libc::sock_filter> {
    // seccomp_data: nr @0, arch @4, ip @8, args @16 (+8 each, low word first on LE).
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 ABI system call numbers: refuse all.
        p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, RET_EPERM));
    }
    // clone3: ENOSYS, so the libc falls back to clone, whose flags a filter can read.
    p.push(jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ENOSYS));
    // clone (flags in arg0 on x86_64 and aarch64): no namespace flags.
    p.push(jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 4));
    p.push(stmt(BPF_LD_W_ABS, ARG0_LO));
    p.push(jump(BPF_JSET_K, NS_FLAGS, 0, 1));
    p.push(stmt(BPF_RET_K, RET_EPERM));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // socket: every family but AF_VSOCK (the kernel reads the family as an int).
    p.push(jump(BPF_JEQ_K, libc::SYS_socket as u32, 0, 4));
    p.push(stmt(BPF_LD_W_ABS, ARG0_LO));
    p.push(jump(BPF_JEQ_K, AF_VSOCK, 0, 1));
    p.push(stmt(BPF_RET_K, RET_EPERM));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // personality (an unsigned int): the listed values only.
    let n = PERSONALITIES.len();
    p.push(jump(
        BPF_JEQ_K,
        libc::SYS_personality as u32,
        0,
        (n + 3) as u8,
    ));
    p.push(stmt(BPF_LD_W_ABS, ARG0_LO));
    for (i, &v) in PERSONALITIES.iter().enumerate() {
        p.push(jump(BPF_JEQ_K, v, (n - i) as u8, 0));
    }
    p.push(stmt(BPF_RET_K, RET_EPERM));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // The accumulator still holds the system call number here.
    // The numbers of `allowed_syscalls`, without building their names (this runs on every
    // container start).
    let mut nrs: Vec<u32> = ALLOWED
        .iter()
        .chain(ALLOWED_RAW)
        .map(|&(_, nr)| nr as u32)
        .collect();
    nrs.sort_unstable();
    nrs.dedup();
    search(&mut p, &nrs);
    p
}

/// A classic-BPF seccomp program. Build one with [`SeccompFilter::docker_default`] or
/// [`SeccompFilter::from_bpf`].
#[derive(Clone)]
pub struct SeccompFilter {
    prog: Vec<libc::sock_filter>,
}

impl SeccompFilter {
    /// The allow-list equivalent of Docker's default profile described in the module
    /// documentation.
    pub fn docker_default() -> SeccompFilter {
        SeccompFilter {
            prog: docker_program(),
        }
    }

    /// A filter for a ptrace tracer: the system calls numbered `nrs` (of this architecture)
    /// stop the process for its tracer (`SECCOMP_RET_TRACE`, seen as `PTRACE_EVENT_SECCOMP`);
    /// every other call, and every call of a foreign architecture, runs at full speed.
    /// The process must be traced with `PTRACE_O_TRACESECCOMP` before it installs this, or
    /// the listed calls fail with ENOSYS.
    ///
    /// `nrs` may hold at most 250 numbers (8-bit BPF jump offsets); more is an
    /// `InvalidInput` error.
    pub fn trace(nrs: &[u32]) -> std::io::Result<SeccompFilter> {
        let n = nrs.len();
        if n >= 250 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{n} traced system calls do not fit 8-bit BPF jump offsets (at most 249)"),
            ));
        }
        let mut p = vec![
            stmt(BPF_LD_W_ABS, OFF_ARCH),
            jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
            stmt(BPF_RET_K, RET_ALLOW),
            stmt(BPF_LD_W_ABS, OFF_NR),
        ];
        for (i, nr) in nrs.iter().enumerate() {
            // Over the remaining comparisons and the ALLOW, to the TRACE.
            p.push(jump(BPF_JEQ_K, *nr, (n - i) as u8, 0));
        }
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        p.push(stmt(BPF_RET_K, RET_TRACE));
        Ok(SeccompFilter { prog: p })
    }

    /// A filter from raw BPF instructions (at most `BPF_MAXINSNS`, 4096; checked by the
    /// kernel when it is installed).
    pub fn from_bpf(prog: Vec<libc::sock_filter>) -> SeccompFilter {
        SeccompFilter { prog }
    }

    /// The BPF instructions.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.prog
    }

    /// Installs the filter on the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
    /// Allocation-free, so it may run between `clone` and `execve`.
    pub fn install(&self) -> std::io::Result<()> {
        install(&self.prog).map_err(std::io::Error::from_raw_os_error)
    }
}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeccompFilter({} instructions)", self.prog.len())
    }
}

/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)`; `Err(errno)`. No allocation.
pub(crate) fn install(prog: &[libc::sock_filter]) -> Result<(), i32> {
    let fprog = libc::sock_fprog {
        len: prog.len().min(u16::MAX as usize) as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(crate::sys::errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_filter_has_one_comparison_per_call_and_refuses_too_many() {
        let f = SeccompFilter::trace(&[2, 257, 59]).unwrap();
        let p = f.instructions();
        // arch check (3), load nr, 3 comparisons, ALLOW, TRACE.
        assert_eq!(p.len(), 9);
        assert_eq!(p[p.len() - 1].k, RET_TRACE);
        assert_eq!(p[p.len() - 2].k, RET_ALLOW);
        // The first comparison jumps over the two others and the ALLOW.
        assert_eq!((p[4].k, p[4].jt), (2, 3));
        let many: Vec<u32> = (0..250).collect();
        let e = SeccompFilter::trace(&many).unwrap_err();
        assert!(e.to_string().contains("250 traced system calls"), "{e}");
    }

    #[test]
    fn filter_refuses_mount_and_unshare_but_allows_fork() {
        // Run in a forked child so the test process keeps its syscalls.
        let filter = SeccompFilter::docker_default();
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            }
            if filter.install().is_err() {
                unsafe { libc::_exit(10) };
            }
            let src = c"none";
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                unsafe { libc::_exit(11) };
            }
            if unsafe { libc::unshare(libc::CLONE_NEWNS) } == 0 {
                unsafe { libc::_exit(12) };
            }
            let c = unsafe { libc::fork() };
            if c == 0 {
                unsafe { libc::_exit(0) };
            }
            if c < 0 {
                unsafe { libc::_exit(13) };
            }
            let mut st = 0;
            unsafe { libc::waitpid(c, &mut st, 0) };
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "status {st:#x}");
        assert_eq!(libc::WEXITSTATUS(st), 0);
    }
}
