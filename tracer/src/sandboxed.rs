//! Root mode: start the traced command in distill's sandbox.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use distill_sandbox::{IdMap, Mount, Proc, Root, SeccompFilter, Spec, Stdio};

use crate::engine::{ChildFds, TraceCommand};
use crate::seccomp::ChildSetup;
use crate::TraceError;

/// The sandbox spec [`crate::trace`] uses for a command with a root: the root read-only,
/// new mount/pid/net/uts/ipc namespaces with loopback up (a probe may start a server and talk
/// to it), `/dev`, `/proc`, a tmpfs `/tmp`. Contained like a build step: root only of a user
/// namespace of its own mapped to the unprivileged host ids [`IdMap::build`] (so the root's
/// files are "other" to it unless they belong to those ids), Docker's default capabilities of
/// that namespace, `no_new_privs`, Docker's default seccomp filter (under the tracer's own,
/// installed right before exec) and `nosuid`/`nodev` mounts. The tracer, host root, traces it
/// from outside its namespace. The builder can start from this and pass its own to
/// [`crate::trace_spec`].
pub fn default_spec(cmd: &TraceCommand, root: &Path) -> Spec {
    Spec {
        env: cmd.env.clone(),
        cwd: if cmd.cwd.as_os_str().is_empty() {
            PathBuf::from("/")
        } else {
            cmd.cwd.clone()
        },
        root: Root::Dir(root.to_path_buf()),
        readonly_root: true,
        mounts: vec![Mount::Tmpfs {
            dst: PathBuf::from("/tmp"),
            size: None,
            mode: 0o1777,
        }],
        dev: true,
        proc: Proc::Mount,
        loopback: true,
        user_namespace: Some(IdMap::build()),
        capabilities: Some(distill_sandbox::DOCKER_DEFAULT_CAPS.to_vec()),
        no_new_privs: true,
        seccomp: Some(SeccompFilter::docker_default()),
        ..Spec::new(cmd.argv.clone())
    }
}

/// A sandboxed child released to exec on a helper thread.
pub(crate) struct Released {
    pub pid: i32,
    release: JoinHandle<Result<(), distill_sandbox::SandboxError>>,
}

impl Released {
    pub(crate) fn finish(self) -> Result<(), TraceError> {
        match self.release.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TraceError::Sandbox(e)),
            Err(_) => Err(TraceError::Os {
                op: "sandbox release thread".into(),
                source: std::io::Error::other("panicked"),
            }),
        }
    }
}

/// Spawn `spec` waiting for release, attach, then release it from a helper thread. With a
/// `pre_exec` hook, `release` returns when the child is about to run the hook; the thread then
/// waits for the exec itself (which needs the tracer loop running), so that a program that
/// cannot be executed inside the root is reported as an error, not as exit code 127.
pub(crate) fn spawn(
    mut spec: Spec,
    setup: &ChildSetup,
    fds: ChildFds,
) -> Result<Released, TraceError> {
    spec.stdin = Stdio::Fd(fds.stdin);
    spec.stdout = Stdio::Fd(fds.stdout);
    spec.stderr = Stdio::Fd(fds.stderr);
    spec.pre_exec = Some(setup.hook());
    spec.wait_for_parent = true;
    let child = distill_sandbox::spawn(&spec).map_err(TraceError::Sandbox)?;
    // Our copies of the pipe ends must close, or the readers never see EOF.
    drop(spec);
    let pid = child.pid().as_raw();
    if let Err(e) = crate::engine::seize(pid) {
        drop(child); // an unreleased child exits without running its program
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        return Err(TraceError::Os {
            op: format!("ptrace(PTRACE_SEIZE) sandboxed pid {pid}"),
            source: e,
        });
    }
    let release = std::thread::Builder::new()
        .name("distill-tracer-release".into())
        .spawn(move || {
            let mut child = child;
            child.release()?;
            child.exec_result()
        })
        .map_err(|e| TraceError::Os {
            op: "spawn the sandbox release thread".into(),
            source: e,
        })?;
    Ok(Released { pid, release })
}
