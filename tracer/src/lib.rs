//! distill-tracer: decides what belongs in a minimal image.
//!
//! * [`trace`] runs a command under ptrace, on the host or inside a root in distill's sandbox,
//!   following every process and thread, and records every path the file system calls name
//!   ([`traced_syscalls`]), with the system call, the thread id and whether the path existed.
//!   A seccomp-bpf filter (`SECCOMP_RET_TRACE`) stops the tracee only at those calls; paths are
//!   captured at entry, results at exit.
//! * [`elf_closure`] finds the interpreter and needed libraries of ELF files inside a root, the
//!   way glibc's loader does (RPATH/RUNPATH with `$ORIGIN`, `/etc/ld.so.cache`, defaults).
//! * [`minimal_set`] turns the probes' accesses, keep/exclude globs and the ELF closure into the
//!   minimal file set with a [`Reason`] for every path; [`copy_minimal`] materialises it.
//! * [`compare_runs`] is the proof step: a probe must behave the same in the minimal image.

mod elf;
mod engine;
mod mem;
mod prune;
mod sandboxed;
mod seccomp;
mod syscalls;

use std::path::PathBuf;

pub use elf::{elf_closure, parse_ld_cache};
pub use engine::{trace, trace_spec, Access, TraceCommand, TraceResult};
pub use prune::{copy_minimal, minimal_set, MinimalSet, Reason};
pub use sandboxed::default_spec;
pub use seccomp::ChildSetup;
pub use syscalls::traced_syscalls;

/// Everything that can go wrong tracing, resolving ELF dependencies or pruning.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Nothing to run.
    #[error("trace: the command is empty; pass the program and its arguments")]
    EmptyCommand,
    /// An argument, environment entry or path contains a NUL byte.
    #[error("trace: {0:?} contains a NUL byte; remove it")]
    NulByte(String),
    /// The program could not be executed.
    #[error("trace: cannot execute {program}: {source}; check that it exists (inside the root) and is executable")]
    Exec {
        /// argv[0]
        program: String,
        /// The errno of execve.
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A system call of the tracer itself failed.
    #[error("trace: {op}: {source}")]
    Os {
        /// What was attempted.
        op: String,
        /// The error.
        source: std::io::Error,
    },
    /// The sandbox could not start the command.
    #[error("trace: sandbox: {0}")]
    Sandbox(#[from] distill_sandbox::SandboxError),
    /// A kept file looks like ELF but cannot be parsed.
    #[error("{path}: invalid ELF file: {reason}; remove it from the image or exclude it")]
    Elf {
        /// The file (host path).
        path: PathBuf,
        /// goblin's message.
        reason: String,
    },
    /// The root's ld.so.cache cannot be parsed.
    #[error("{path}: invalid ld.so.cache: {reason}; regenerate it with `ldconfig -r ROOT`")]
    LdCache {
        /// The cache file (host path).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A keep/exclude glob is invalid.
    #[error("trace.{field}: invalid glob `{glob}`: {reason}")]
    Glob {
        /// `keep` or `exclude`.
        field: &'static str,
        /// The glob.
        glob: String,
        /// What is wrong.
        reason: String,
    },
    /// [`copy_minimal`] needs an empty destination.
    #[error("copy_minimal: destination {0} is not empty; choose a new directory")]
    DestNotEmpty(PathBuf),
    /// The proof failed: a probe behaved differently in the minimal image.
    #[error("probe `{probe}` behaves differently in the minimal image: {detail}; add a [[trace.probe]] that exercises the missing path or a keep rule")]
    ProofMismatch {
        /// The probe's name.
        probe: String,
        /// The first difference.
        detail: String,
    },
}

/// What a probe run produced, for [`compare_runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The exit code (128 + signal number if killed).
    pub exit_code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
}

impl ProbeOutcome {
    /// The outcome of a traced run.
    pub fn of(r: &TraceResult) -> ProbeOutcome {
        use std::os::unix::process::ExitStatusExt;
        ProbeOutcome {
            exit_code: r
                .exit
                .code()
                .unwrap_or_else(|| 128 + r.exit.signal().unwrap_or(0)),
            stdout: r.stdout.clone(),
        }
    }
}

/// The proof step: `Ok` if the probe's run in the minimal image has the same exit code and
/// stdout as its run in the full image, else [`TraceError::ProofMismatch`] naming the probe and
/// the first differing line.
pub fn compare_runs(
    probe: &str,
    full: &ProbeOutcome,
    minimal: &ProbeOutcome,
) -> Result<(), TraceError> {
    if full.exit_code != minimal.exit_code {
        return Err(TraceError::ProofMismatch {
            probe: probe.to_string(),
            detail: format!(
                "exit code {} in the full image, {} in the minimal image",
                full.exit_code, minimal.exit_code
            ),
        });
    }
    let a: Vec<&[u8]> = full.stdout.split(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = minimal.stdout.split(|&b| b == b'\n').collect();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            let show = |l: Option<&&[u8]>| match l {
                Some(l) => format!("{:?}", String::from_utf8_lossy(l)),
                None => "end of output".to_string(),
            };
            return Err(TraceError::ProofMismatch {
                probe: probe.to_string(),
                detail: format!(
                    "stdout line {} is {} in the full image, {} in the minimal image",
                    i + 1,
                    show(x),
                    show(y)
                ),
            });
        }
    }
    Ok(())
}
