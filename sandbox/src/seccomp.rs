//! Seccomp filters the sandbox can install right before the program runs
//! ([`crate::Spec::seccomp`]).
//!
//! [`SeccompFilter::docker_default`] is equivalent in effect to Docker's default profile for
//! the system calls that matter to container escape: it refuses (EPERM) the system calls
//! Docker's profile leaves out for a container without CAP_SYS_ADMIN & co. (mount,
//! namespaces, modules, kexec, bpf, perf, keyring, clock setting, reboot, swap, ...), refuses
//! `clone`/`unshare` with namespace flags, answers `clone3` with ENOSYS (so libcs fall back to
//! `clone`, which is filtered by flags, as Docker does), and kills on a foreign architecture.
//! Docker's profile is an allow-list; this is a deny-list of the same dangerous calls, which is
//! smaller and keeps working for new harmless system calls.

const AUDIT_ARCH: u32 = if cfg!(target_arch = "x86_64") {
    0xC000_003E
} else if cfg!(target_arch = "aarch64") {
    0xC000_00B7
} else {
    0
};

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

const NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// System calls refused with EPERM.
pub fn denied_syscalls() -> Vec<i64> {
    let mut v: Vec<libc::c_long> = vec![
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_keyctl,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_quotactl,
        libc::SYS_lookup_dcookie,
        libc::SYS_userfaultfd,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_get_mempolicy,
        libc::SYS_set_mempolicy,
        libc::SYS_mbind,
        libc::SYS_move_pages,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
        174, // create_module
        177, // get_kernel_syms
        178, // query_module
        libc::SYS_nfsservctl,
        libc::SYS_ustat,
    ]);
    #[allow(clippy::useless_conversion)] // c_long is i32 on 32-bit targets
    v.into_iter().map(i64::from).collect()
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

/// The BPF program of [`SeccompFilter::docker_default`].
fn docker_program() -> Vec<libc::sock_filter> {
    // seccomp_data: nr @0, arch @4, ip @8, args @16 (+8 each, low word first on LE).
    let mut p = vec![
        stmt(BPF_LD_W_ABS, 4),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, 0),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        // x32 ABI syscalls: refuse all.
        p.push(jump(BPF_JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
    }
    for nr in denied_syscalls() {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
    }
    p.push(jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
    // clone (flags in arg0 on x86_64 and aarch64) and unshare (arg0): no namespace flags.
    for nr in [libc::SYS_clone, libc::SYS_unshare] {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 4));
        p.push(stmt(BPF_LD_W_ABS, 16));
        p.push(jump(BPF_JSET_K, NS_FLAGS, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
    }
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

/// A classic-BPF seccomp program. Build one with [`SeccompFilter::docker_default`] or
/// [`SeccompFilter::from_bpf`].
#[derive(Clone)]
pub struct SeccompFilter {
    prog: Vec<libc::sock_filter>,
}

impl SeccompFilter {
    /// The Docker-like deny list described in the module documentation.
    pub fn docker_default() -> SeccompFilter {
        SeccompFilter {
            prog: docker_program(),
        }
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
