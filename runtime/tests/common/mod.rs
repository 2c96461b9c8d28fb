//! Shared helpers: a busybox root file system in a temp dir and unique names.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use distill_runtime::cgroup::Cgroup;
use distill_runtime::{ContainerConfig, Hierarchy, Runtime};

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

/// A cgroup parent owned by one test: it did not exist before (checked), and dropping this
/// kills the processes the test started with [`OwnedParent::sleeper_in`] and removes every
/// cgroup below the parent and the parent itself, whichever way the test ends. No test uses
/// the shared `distill` parent.
pub struct OwnedParent {
    pub h: Hierarchy,
    pub parent: String,
    children: Vec<std::process::Child>,
}

impl OwnedParent {
    pub fn new(h: Hierarchy) -> OwnedParent {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parent = format!("distill-test-{}-{n}", std::process::id());
        for d in h.parent_dirs(&parent) {
            assert!(
                !d.exists(),
                "{} exists before the test made it",
                d.display()
            );
        }
        OwnedParent {
            h,
            parent,
            children: Vec::new(),
        }
    }

    /// The cgroup `name` in this parent (not created).
    pub fn cgroup(&self, name: &str) -> Cgroup {
        self.h.cgroup(&self.parent, name)
    }

    /// A `sleep` moved into `cg`, killed when this is dropped; its pid.
    pub fn sleeper_in(&mut self, cg: &Cgroup) -> i32 {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        cg.add_pid(pid).unwrap();
        pid
    }

    /// Waits for sleeper `pid` to exit (something else must kill it).
    pub fn wait_sleeper(&mut self, pid: i32) -> std::process::ExitStatus {
        let i = self
            .children
            .iter()
            .position(|c| c.id() as i32 == pid)
            .expect("a sleeper of this parent");
        self.children.remove(i).wait().unwrap()
    }

    /// Kills and reaps the sleepers started so far.
    pub fn kill_sleepers(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for OwnedParent {
    fn drop(&mut self) {
        self.kill_sleepers();
        let r = self.h.remove_parent(&self.parent, true);
        if !std::thread::panicking() {
            r.unwrap();
            for d in self.h.parent_dirs(&self.parent) {
                assert!(!d.exists(), "{} left behind", d.display());
            }
        }
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
    pub rootfs: PathBuf,
    /// The cgroup parent of this test's containers (removed after the containers).
    pub cgroups: OwnedParent,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state")).unwrap();
    let rootfs = busybox_root(dir.path());
    let cgroups = OwnedParent::new(rt.cgroups.clone());
    Env {
        dir,
        rt,
        rootfs,
        cgroups,
    }
}

impl Env {
    pub fn cfg(&self, tag: &str, argv: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: name(tag),
            rootfs: self.rootfs.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cgroup_parent: self.cgroups.parent.clone(),
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
