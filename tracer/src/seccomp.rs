//! The seccomp-bpf filter that stops the tracee only at the traced file system calls, and the
//! async-signal-safe child-side setup that installs it.

use std::io;
use std::sync::Arc;

use crate::syscalls::{table, AUDIT_ARCH};

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
// offsetof(struct seccomp_data, nr) and (.., arch)
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The BPF program: foreign-architecture calls and untraced calls are allowed at full speed,
/// the traced ones return `SECCOMP_RET_TRACE`.
fn program() -> Vec<libc::sock_filter> {
    let nrs: Vec<u32> = table().iter().map(|d| d.nr as u32).collect();
    let n = nrs.len();
    assert!(n < 250, "the syscall table must fit 8-bit BPF jump offsets");
    let mut prog = vec![
        ins(BPF_LD_W_ABS, 0, 0, OFF_ARCH),
        ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH),
        ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ins(BPF_LD_W_ABS, 0, 0, OFF_NR),
    ];
    for (i, nr) in nrs.iter().enumerate() {
        // Jump over the remaining comparisons and the ALLOW to reach TRACE.
        prog.push(ins(BPF_JEQ_K, (n - i) as u8, 0, *nr));
    }
    prog.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    prog.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE));
    prog
}

/// The child side of tracing: installs the seccomp filter that makes the traced system calls
/// stop for the tracer. Build it in the parent (it allocates), run [`ChildSetup::run`] in the
/// child right before `execve` (it does not allocate). The tracer attaches with
/// `PTRACE_SEIZE` before the child runs it, so no `PTRACE_TRACEME`/`SIGSTOP` dance is needed
/// and the same hook works for a plain fork and for `distill_sandbox::Spec::pre_exec`.
#[derive(Clone)]
pub struct ChildSetup {
    filter: Arc<[libc::sock_filter]>,
}

impl std::fmt::Debug for ChildSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSetup")
            .field("filter_len", &self.filter.len())
            .finish()
    }
}

impl Default for ChildSetup {
    fn default() -> Self {
        Self::new()
    }
}

impl ChildSetup {
    /// Prepare the filter for the traced system calls of this architecture.
    pub fn new() -> ChildSetup {
        ChildSetup {
            filter: program().into(),
        }
    }

    /// Install the filter: `PR_SET_NO_NEW_PRIVS` then `seccomp(SECCOMP_SET_MODE_FILTER)`.
    /// Async-signal-safe. The calling process must already be traced with
    /// `PTRACE_O_TRACESECCOMP`, or every traced system call fails with `ENOSYS`.
    pub fn run(&self) -> io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: plain system calls with valid pointers to memory that outlives them.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// The hook in the shape `distill_sandbox::Spec::pre_exec` wants.
    #[allow(clippy::type_complexity)]
    pub fn hook(&self) -> Box<dyn Fn() -> io::Result<()> + Send + Sync> {
        let me = self.clone();
        Box::new(move || me.run())
    }
}
