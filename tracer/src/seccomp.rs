//! The child side of tracing: the seccomp filter ([`distill_sandbox::SeccompFilter::trace`])
//! that stops the tracee only at the traced file system calls, and its async-signal-safe
//! installation.

use std::io;
use std::sync::Arc;

use distill_sandbox::SeccompFilter;

use crate::syscalls::table;

/// The child side of tracing: installs the seccomp filter that makes the traced system calls
/// stop for the tracer. Build it in the parent (it allocates), run [`ChildSetup::run`] in the
/// child right before `execve` (it does not allocate). The tracer attaches with
/// `PTRACE_SEIZE` before the child runs it, so no `PTRACE_TRACEME`/`SIGSTOP` dance is needed
/// and the same hook works for a plain fork and for `distill_sandbox::Spec::pre_exec`.
#[derive(Clone, Debug)]
pub struct ChildSetup {
    filter: Arc<SeccompFilter>,
}

impl Default for ChildSetup {
    fn default() -> Self {
        Self::new()
    }
}

impl ChildSetup {
    /// Prepare the filter for the traced system calls of this architecture.
    pub fn new() -> ChildSetup {
        let nrs: Vec<u32> = table().iter().map(|d| d.nr as u32).collect();
        // The table is a compile-time list of about 55 calls (about 50 instructions as ranges),
        // far below the kernel's 4096.
        let filter = SeccompFilter::trace(&nrs).expect("the traced system call table fits BPF");
        ChildSetup {
            filter: Arc::new(filter),
        }
    }

    /// Install the filter: `PR_SET_NO_NEW_PRIVS` then the seccomp filter. Async-signal-safe.
    /// The calling process must already be traced with `PTRACE_O_TRACESECCOMP`, or every
    /// traced system call fails with `ENOSYS`.
    pub fn run(&self) -> io::Result<()> {
        // SAFETY: a plain prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.filter.install()
    }

    /// The hook in the shape `distill_sandbox::Spec::pre_exec` wants.
    #[allow(clippy::type_complexity)]
    pub fn hook(&self) -> Box<dyn Fn() -> io::Result<()> + Send + Sync> {
        let me = self.clone();
        Box::new(move || me.run())
    }
}
