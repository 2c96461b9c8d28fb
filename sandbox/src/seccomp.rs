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
//! The BPF is built by hand: an architecture check, the x32 check, the argument-checked calls,
//! then a search over the allow-list compiled into ranges of consecutive numbers (`search`,
//! also the core of [`SeccompFilter::trace`]). The range boundaries cut the numbers into
//! intervals that alternate between allowed and refused, and a balanced tree of `JGE`
//! comparisons (one per boundary) finds a number's interval; the argument-checked calls never
//! reach the search, so a gap made only of them does not split a range. Docker's ~290 allowed
//! numbers form 28 ranges: 55 comparisons and 2 RETs after the 27 fixed instructions, 84 in
//! all, against 570 for the binary search over single numbers this replaced (a tree of
//! 8-number `JEQ` leaves), with the same verdict for every number and argument (checked by
//! `tests/seccomp.rs` with a BPF interpreter over every number and the arguments that matter).
//!
//! Why size matters: a filter is installed in every container, and at `prctl` time the
//! kernel checks it, converts it to eBPF, JITs it and runs it once for each of the ~460
//! numbers of the architecture to find the ones it can allow without running it. Measured by
//! `cargo bench -p distill-sandbox --bench seccomp` on this 2-core VM (kernel 6.18, JIT on):
//! the `prctl` took 103 us for the old program and 31 us for this one (8 us for a
//! one-instruction filter), fork + install + `_exit` + wait 115 us -> 42 us over the same
//! without a filter. Of the 31 us, ~0.2 us is each instruction and ~0.8 us each instruction
//! on every number's path (the kernel's per-number run): the 4 linear argument-call checks
//! and the x32 check before the search cost ~4 us of it.

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

/// The longest program the kernel accepts.
pub(crate) const BPF_MAXINSNS: usize = 4096;

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

/// A block of the decision tree holds at most this many comparisons, so that every one of
/// them reaches the block's two RET instructions with an 8-bit forward jump.
const BLOCK: usize = 255;

/// Appends a search over system call numbers (the accumulator holds the number): RET `hit`
/// for the numbers in `nrs` (any order, duplicates allowed), RET `miss` for every other
/// number. The numbers of `decided` never reach the search (instructions before it answer
/// them), so they may answer either way: a gap made only of them joins its two neighbouring
/// ranges.
///
/// The numbers are compiled into ranges of consecutive numbers; the range boundaries
/// `t_1 < t_2 < ...` cut the number line into intervals that alternate between miss and hit,
/// and a balanced tree of `JGE t_i` comparisons finds the interval: one instruction per
/// boundary, two RETs per block of [`BLOCK`] comparisons.
fn search(p: &mut Vec<libc::sock_filter>, nrs: &[u32], decided: &[u32], hit: u32, miss: u32) {
    let mut sorted = nrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    // Ranges [start, end) of hit numbers; end is a u64 so that u32::MAX can be in a range.
    let mut ranges: Vec<(u32, u64)> = Vec::new();
    for nr in sorted {
        match ranges.last_mut() {
            // The gap [end, nr) is empty or only holds decided numbers.
            Some((_, end)) if (*end..u64::from(nr)).all(|n| decided.contains(&(n as u32))) => {
                *end = u64::from(nr) + 1
            }
            _ => ranges.push((nr, u64::from(nr) + 1)),
        }
    }
    // The boundaries. Below the first one lies interval 0: a miss unless a range starts at 0,
    // whose start is no boundary (every number is >= 0); an end past u32::MAX is none either.
    let mut bounds: Vec<u32> = Vec::with_capacity(2 * ranges.len());
    for &(start, end) in &ranges {
        if start > 0 {
            bounds.push(start);
        }
        if let Ok(end) = u32::try_from(end) {
            bounds.push(end);
        }
    }
    let first = if ranges.first().is_some_and(|r| r.0 == 0) {
        [hit, miss]
    } else {
        [miss, hit]
    };
    tree(p, &bounds, first);
}

/// Appends the comparisons over the sorted boundaries `t`; `v[i % 2]` answers interval `i`
/// (interval 0 lies below `t[0]`, interval `i` between `t[i - 1]` and `t[i]`). A tree too big
/// for 8-bit jumps is split at its middle boundary with a `BPF_JA` (32-bit offset) over the
/// lower half.
fn tree(p: &mut Vec<libc::sock_filter>, t: &[u32], v: [u32; 2]) {
    if t.is_empty() {
        p.push(stmt(BPF_RET_K, v[0]));
        return;
    }
    if t.len() <= BLOCK {
        // Jumps to the block's RETs, patched once their place is known: (at, jt?, verdict).
        let mut leaves: Vec<(usize, bool, usize)> = Vec::new();
        node(p, t, 0, &mut leaves);
        let ret = p.len();
        p.push(stmt(BPF_RET_K, v[0]));
        p.push(stmt(BPF_RET_K, v[1]));
        for (at, jt, verdict) in leaves {
            let off = (ret + verdict - at - 1) as u8;
            if jt {
                p[at].jt = off;
            } else {
                p[at].jf = off;
            }
        }
        return;
    }
    let mid = t.len() / 2;
    // JGE t[mid] ? (next: JA over the lower half) : (skip the JA: lower half)
    p.push(jump(BPF_JGE_K, t[mid], 0, 1));
    let ja = p.len();
    p.push(stmt(BPF_JA, 0));
    tree(p, &t[..mid], v);
    p[ja].k = (p.len() - ja - 1) as u32;
    // The upper half starts with interval mid + 1.
    let upper = if (mid + 1).is_multiple_of(2) {
        v
    } else {
        [v[1], v[0]]
    };
    tree(p, &t[mid + 1..], upper);
}

/// Appends the subtree over the non-empty `t`, whose lowest interval is interval `first` of
/// its block, in preorder: `JGE t[mid]`, then the lower subtree (reached by falling through),
/// then the upper one. A side without boundaries is a single interval: its jump goes to the
/// block's RET for that interval's parity, recorded in `leaves`.
fn node(
    p: &mut Vec<libc::sock_filter>,
    t: &[u32],
    first: usize,
    leaves: &mut Vec<(usize, bool, usize)>,
) {
    let mid = t.len() / 2;
    let at = p.len();
    p.push(jump(BPF_JGE_K, t[mid], 0, 0));
    if mid == 0 {
        leaves.push((at, false, first % 2));
    } else {
        node(p, &t[..mid], first, leaves);
    }
    let upper = &t[mid + 1..];
    if upper.is_empty() {
        leaves.push((at, true, (first + mid + 1) % 2));
    } else {
        p[at].jt = (p.len() - at - 1) as u8;
        node(p, upper, first + mid + 1, leaves);
    }
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
    // container start). clone, clone3, socket and personality are answered above.
    let nrs: Vec<u32> = ALLOWED
        .iter()
        .chain(ALLOWED_RAW)
        .map(|&(_, nr)| nr as u32)
        .collect();
    let decided = [
        libc::SYS_clone3 as u32,
        libc::SYS_clone as u32,
        libc::SYS_socket as u32,
        libc::SYS_personality as u32,
    ];
    search(&mut p, &nrs, &decided, RET_ALLOW, RET_EPERM);
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
    /// `nrs` may come in any order and repeat numbers. The numbers are searched as ranges
    /// (see the module documentation), so a program holds about two instructions per run of
    /// consecutive numbers; a list so scattered that the program would exceed the kernel's
    /// 4096 instructions (more than about 2000 separate runs) is an `InvalidInput` error.
    pub fn trace(nrs: &[u32]) -> std::io::Result<SeccompFilter> {
        let mut p = vec![
            stmt(BPF_LD_W_ABS, OFF_ARCH),
            jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
            stmt(BPF_RET_K, RET_ALLOW),
            stmt(BPF_LD_W_ABS, OFF_NR),
        ];
        search(&mut p, nrs, &[], RET_TRACE, RET_ALLOW);
        if p.len() > BPF_MAXINSNS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} traced system calls need {} BPF instructions, more than the kernel's \
                     {BPF_MAXINSNS}; trace fewer or more consecutive numbers",
                    nrs.len(),
                    p.len()
                ),
            ));
        }
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
    fn trace_filter_compares_range_boundaries_and_refuses_too_many() {
        // Runs 2, 59 and 257..=259: boundaries 2 3 59 60 257 260.
        let f = SeccompFilter::trace(&[259, 2, 257, 59, 258, 2]).unwrap();
        let p = f.instructions();
        // arch check (3), load nr, 6 comparisons, the two RETs.
        assert_eq!(p.len(), 12);
        let mut bounds: Vec<u32> = p[4..10].iter().map(|i| i.k).collect();
        assert!(p[4..10].iter().all(|i| i.code == BPF_JGE_K));
        bounds.sort_unstable();
        assert_eq!(bounds, [2, 3, 59, 60, 257, 260]);
        // Interval 0 (below 2) misses: the first RET allows, the second traces.
        assert_eq!((p[10].k, p[11].k), (RET_ALLOW, RET_TRACE));
        // 300 separate numbers: 600 comparisons, more than one block of 8-bit jumps.
        let spread: Vec<u32> = (0..300).map(|i| 2 * i).collect();
        let f = SeccompFilter::trace(&spread).unwrap();
        assert!(f.instructions().iter().any(|i| i.code == BPF_JA));
        // 2100 separate numbers need 4200 comparisons.
        let many: Vec<u32> = (0..2100).map(|i| 2 * i).collect();
        let e = SeccompFilter::trace(&many).unwrap_err();
        assert!(
            e.to_string().contains("2100 traced system calls need"),
            "{e}"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn docker_program_joins_ranges_across_the_calls_answered_before_the_search() {
        let p = docker_program();
        // The search starts after the personality check's RET ALLOW, the last RET before it.
        let start = p
            .iter()
            .position(|i| i.code == BPF_JGE_K && i.k < 0x4000_0000)
            .unwrap();
        let bounds: Vec<u32> = p[start..]
            .iter()
            .filter(|i| i.code == BPF_JGE_K)
            .map(|i| i.k)
            .collect();
        // socket (41) and clone (56) sit between allowed calls: no boundary around them.
        for nr in [41, 42, 56, 57] {
            assert!(!bounds.contains(&nr), "boundary {nr} in {bounds:?}");
        }
        // One boundary per start and end of a run of allowed numbers, except the start at 0
        // (read); a gap of decided numbers only (41, 56, 435; not 135, next to 134 and 136,
        // which are refused) does not end a run.
        let nrs: Vec<u32> = allowed_syscalls().iter().map(|&(_, n)| n as u32).collect();
        let decided = [41, 56, 135, 435];
        let runs = 1 + nrs
            .windows(2)
            .filter(|w| (w[0] + 1..w[1]).any(|n| !decided.contains(&n)))
            .count();
        assert_eq!(nrs[0], 0);
        assert_eq!(bounds.len(), 2 * runs - 1);
        assert_eq!(p.len(), start + bounds.len() + 2);
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
