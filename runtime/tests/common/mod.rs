//! Shared helpers: a busybox root file system in a temp dir and unique names.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use distill_runtime::{ContainerConfig, Runtime};

pub const APPLETS: &[&str] = &[
    "sh",
    "true",
    "false",
    "sleep",
    "cat",
    "echo",
    "ls",
    "id",
    "hostname",
    "mount",
    "touch",
    "grep",
    "head",
    "dd",
    "tr",
    "wc",
    "kill",
    "ps",
    "tail",
    "sha256sum",
    "stat",
    "umount",
    "unshare",
    "httpd",
];

/// A fresh busybox root under `dir`.
pub fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .expect("apt-get install busybox-static");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    root
}

/// A name unique to this test process.
pub fn name(tag: &str) -> String {
    format!("rt-{tag}-{}", std::process::id())
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
    pub rootfs: PathBuf,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state")).unwrap();
    let rootfs = busybox_root(dir.path());
    Env { dir, rt, rootfs }
}

impl Env {
    pub fn cfg(&self, tag: &str, argv: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: name(tag),
            rootfs: self.rootfs.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Runs in the foreground and captures output.
    pub fn run(&self, cfg: &ContainerConfig) -> (i32, String, String) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let code = self
            .rt
            .run_foreground(
                cfg,
                distill_runtime::Output::Stream {
                    stdout: &mut o,
                    stderr: &mut e,
                },
                &[],
            )
            .unwrap();
        (
            code,
            String::from_utf8_lossy(&o).into(),
            String::from_utf8_lossy(&e).into(),
        )
    }

    pub fn exec(&self, name: &str, argv: &[&str]) -> (i32, String, String) {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let ex = distill_runtime::ExecConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let code = self
            .rt
            .exec(
                name,
                &ex,
                distill_runtime::Output::Stream {
                    stdout: &mut o,
                    stderr: &mut e,
                },
            )
            .unwrap();
        (
            code,
            String::from_utf8_lossy(&o).into(),
            String::from_utf8_lossy(&e).into(),
        )
    }
}

impl Drop for Env {
    /// Leaves nothing running when a test fails half-way.
    fn drop(&mut self) {
        if let Ok(all) = self.rt.list() {
            for s in all {
                let _ = self.rt.rm(&s.name, true);
            }
        }
    }
}
