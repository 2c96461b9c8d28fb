//! Shared helpers for distill's end-to-end tests: they drive the real `distill` binary, each
//! test in its own temporary directory with its own root, keys and manifests, so tests run in
//! parallel without sharing state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The pinned busybox-static package the examples use.
pub const BUSYBOX_DEB_VERSION: &str = "1:1.35.0-4+deb12u1+b1";
/// Its sha256, from apt's index.
pub const BUSYBOX_DEB_SHA256: &str =
    "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";

/// The workspace's top directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `distill` binary built by this `cargo test` run.
pub fn distill_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DISTILL_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/distill
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("distill");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p distill-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// One test's world: a temp dir holding the root, the keys and the manifests.
pub struct World {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
    /// The `--root` of this test.
    pub root: PathBuf,
    /// `keys/secret.asc` and `keys/cert.asc`.
    pub keys: PathBuf,
}

/// The result of one `distill` invocation.
pub struct Run {
    /// Exit code (-1 for a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panic with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panic unless it succeeded.
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }
}

impl World {
    /// A new world with a fresh signing key.
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("distill-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        let keys = dir.path().join("keys");
        let w = World { dir, root, keys };
        w.distill(&["key", "generate", "--out", w.keys.to_str().unwrap()])
            .ok();
        w
    }

    /// A path inside the world's temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Run `distill` with this world's root.
    pub fn distill(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run distill").into()
    }

    /// A `distill` command with this world's root, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(distill_bin());
        c.args(args)
            .env("DISTILL_ROOT", &self.root)
            .env_remove("DISTILL_KEYRING")
            .env("NO_COLOR", "1");
        c
    }

    /// The trusted cert of this world's key.
    pub fn cert(&self) -> PathBuf {
        self.keys.join("cert.asc")
    }

    /// Write `text` as `<name>/manifest.toml` (plus extra files), sign it, return its path.
    pub fn manifest(&self, name: &str, text: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, bytes) in files {
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let m = dir.join("manifest.toml");
        std::fs::write(&m, text).unwrap();
        self.sign(&m);
        m
    }

    /// Sign a manifest with this world's key.
    pub fn sign(&self, manifest: &Path) {
        self.distill(&[
            "sign",
            manifest.to_str().unwrap(),
            "--key",
            self.keys.join("secret.asc").to_str().unwrap(),
        ])
        .ok();
    }

    /// Copy an example into the world and sign it; returns the manifest path.
    pub fn example(&self, name: &str) -> PathBuf {
        let src = workspace().join("examples").join(name);
        let dst = self.path(name);
        copy_dir(&src, &dst);
        let _ = std::fs::remove_file(dst.join("manifest.toml.asc"));
        let m = dst.join("manifest.toml");
        self.sign(&m);
        m
    }

    /// `distill build MANIFEST --keyring cert --json`, parsed.
    pub fn build_json(&self, manifest: &Path) -> (Run, Option<serde_json::Value>) {
        let run = self.distill(&[
            "build",
            manifest.to_str().unwrap(),
            "--keyring",
            self.cert().to_str().unwrap(),
            "--json",
        ]);
        let json = serde_json::from_str(&run.stdout).ok();
        (run, json)
    }

    /// Names of the entries under `<root>/store` (none if it does not exist).
    pub fn store_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("store"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Copy a directory tree (files and directories only).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// The sha256 of some bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::process::Stdio;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A manifest preamble with the pinned busybox deb unpacked as package `busybox`.
pub fn busybox_preamble() -> String {
    format!(
        r#"version = 1

[source.busybox-deb]
deb = "busybox-static"
deb_version = "{BUSYBOX_DEB_VERSION}"
arch = "amd64"
sha256 = "{BUSYBOX_DEB_SHA256}"

[package.busybox]
version = "1.35.0"
unpack = ["busybox-deb"]
"#
    )
}

/// The hello example built once per test process (`distill build --out`); its archive.
/// The building world is kept for the whole process.
pub fn hello_archive() -> PathBuf {
    static ARCHIVE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let w = Box::leak(Box::new(World::new()));
            let m = w.example("hello");
            let out = w.path("out");
            w.distill(&[
                "build",
                m.to_str().unwrap(),
                "--keyring",
                w.cert().to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .ok();
            let archive = out.join("hello.oci.tar");
            assert!(
                archive.is_file(),
                "build --out wrote no {}",
                archive.display()
            );
            archive
        })
        .clone()
}

/// A container test's world: its own `--root` (with the hello image loaded) and `--state`.
/// Dropping it removes its containers and stops its log daemon.
pub struct Lab {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
    /// `--root`.
    pub root: PathBuf,
    /// `--state`.
    pub state: PathBuf,
}

impl Lab {
    /// A lab with the hello image loaded as `hello`.
    pub fn new() -> Lab {
        let lab = Lab::empty();
        lab.distill(&["load", hello_archive().to_str().unwrap()])
            .ok();
        lab
    }

    /// A lab with no image loaded.
    pub fn empty() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("distill-lab-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        Lab { dir, root, state }
    }

    /// A path inside the lab's temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `distill` command with this lab's root and state, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(distill_bin());
        c.args(args)
            .env("DISTILL_ROOT", &self.root)
            .env("DISTILL_STATE", &self.state)
            .env("NO_COLOR", "1");
        c
    }

    /// Run `distill` in this lab.
    pub fn distill(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run distill").into()
    }

    /// `distill run [flags] --entrypoint /bin/sh hello -c SCRIPT`.
    pub fn sh(&self, flags: &[&str], script: &str) -> Run {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--entrypoint", "/bin/sh", "hello", "-c", script]);
        self.distill(&args)
    }

    /// `distill inspect NAME`, parsed.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let r = self.distill(&["inspect", name]);
        r.ok();
        serde_json::from_str(&r.stdout).expect("inspect prints JSON")
    }

    /// Pids of the `distill logd` processes serving this lab's state dir.
    pub fn logd_pids(&self) -> Vec<i32> {
        logd_pids_of(&self.state)
    }

    /// Removes every container of state root `state` (this lab's or another one the test
    /// used) and stops its log daemon.
    pub fn clean_state(&self, state: &Path) {
        let with_state = |args: &[&str]| {
            let mut c = self.command(args);
            c.env("DISTILL_STATE", state);
            c
        };
        if let Ok(out) = with_state(&["ps", "-a", "--format", "json"]).output() {
            if let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&out.stdout) {
                for c in list {
                    if let Some(n) = c["name"].as_str() {
                        let _ = with_state(&["rm", "-f", n]).output();
                    }
                }
            }
        }
        for pid in logd_pids_of(state) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.clean_state(&self.state);
    }
}

/// Pids of the `distill logd` processes serving state root `state`.
pub fn logd_pids_of(state: &Path) -> Vec<i32> {
    let want = [
        "--state".to_string(),
        state.to_string_lossy().into_owned(),
        "logd".to_string(),
    ];
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.windows(3).any(|w| w == want) {
            pids.push(pid);
        }
    }
    pids
}
