//! Shared helpers: a busybox root assembled in a tmpfs, and output capture; a BPF
//! interpreter ([`bpf`]) and the previous seccomp program ([`seccomp_v1`]) for the filter tests.
#![allow(dead_code)]

pub mod bpf;
pub mod seccomp_v1;

use distill_sandbox::{spawn, ExitStatus, Mount, Spec, Stdio};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const BUSYBOX: &str = "/usr/bin/busybox";

pub const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "ls", "touch", "id", "env", "hostname", "ip", "ping", "nc", "sleep",
    "test", "grep", "wc", "readlink", "true", "false", "mkdir", "stat", "cut", "sort", "tr",
];

pub fn have_busybox() -> bool {
    // A missing tool fails the test: scripts/install-deps installs it.
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: run scripts/install-deps (apt-get install busybox-static)"
    );
    true
}

/// Mounts that make a busybox userland at /bin inside a Root::Tmpfs.
pub fn busybox_mounts() -> Vec<Mount> {
    let mut m = vec![Mount::Bind {
        src: BUSYBOX.into(),
        dst: "/bin/busybox".into(),
        readonly: true,
        recursive: false,
    }];
    for a in APPLETS {
        m.push(Mount::Symlink {
            target: "busybox".into(),
            dst: PathBuf::from("/bin").join(a),
        });
    }
    m
}

/// A spec running `argv` in a busybox tmpfs root with PATH=/bin.
pub fn busybox_spec(argv: &[&str]) -> Spec {
    Spec {
        env: vec![("PATH".into(), "/bin".into())],
        mounts: busybox_mounts(),
        ..Spec::new(argv.iter().copied())
    }
}

/// Run `spec` with stdout and stderr captured (stdout, then stderr).
pub fn capture(mut spec: Spec) -> (ExitStatus, String, String) {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    spec.stdout = Stdio::Fd(out_w);
    spec.stderr = Stdio::Fd(err_w);
    let mut child = spawn(&spec).unwrap_or_else(|e| panic!("spawn failed: {e}"));
    // Close our copies of the write ends so reads see EOF.
    spec.stdout = Stdio::Inherit;
    spec.stderr = Stdio::Inherit;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::from(err_r).read_to_string(&mut s).unwrap();
        s
    });
    let mut out = String::new();
    std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
    let err = err_thread.join().unwrap();
    let status = child.wait().expect("wait");
    (status, out, err)
}

/// Run a shell script in the busybox root, customizing the spec with `f`.
pub fn sh(script: &str, f: impl FnOnce(&mut Spec)) -> (ExitStatus, String, String) {
    let mut spec = busybox_spec(&["sh", "-c", script]);
    f(&mut spec);
    capture(spec)
}
