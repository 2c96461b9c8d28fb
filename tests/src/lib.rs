//! Shared helpers for distill's end-to-end tests: they drive the real `distill` binary, each
//! test in its own temporary directory with its own root, keys and manifests, so tests run in
//! parallel without sharing state.

pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The busybox-static package the tests' manifests use, pinned when the test process first
/// asks (`distill pin deb busybox-static`, the machine's apt): (version, sha256). A pin
/// written into the repository would stop being served the day Debian moves on.
pub fn busybox_pin() -> (String, String) {
    static PIN: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PIN.get_or_init(|| {
        let out = Command::new(distill_bin())
            .args(["--json", "pin", "deb", "busybox-static"])
            .output()
            .expect("run distill pin deb");
        let run = Run::from(out);
        run.ok();
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("pin --json");
        (
            v[0]["version"].as_str().expect("version").to_string(),
            v[0]["sha256"].as_str().expect("sha256").to_string(),
        )
    })
    .clone()
}

/// The `sha256` pinned for `[source.<source>]` in the manifest at `manifest`.
pub fn pinned_sha256(manifest: &Path, source: &str) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["source"][source]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no sha256 for {source} in {}", manifest.display()))
        .to_string()
}

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

    /// Copy an example into the world, bring its Debian pins up to what the machine's apt
    /// serves (`distill pin deb --update`: a pin Debian no longer serves is replaced, the
    /// others are kept) and sign it; returns the manifest path.
    pub fn example(&self, name: &str) -> PathBuf {
        let src = workspace().join("examples").join(name);
        let dst = self.path(name);
        copy_dir(&src, &dst);
        let _ = std::fs::remove_file(dst.join("manifest.toml.asc"));
        let m = dst.join("manifest.toml");
        self.distill(&["pin", "deb", "--update", m.to_str().unwrap()])
            .ok();
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

/// A manifest preamble with the busybox deb ([`busybox_pin`]) unpacked as package `busybox`.
pub fn busybox_preamble() -> String {
    let (version, sha256) = busybox_pin();
    format!(
        r#"version = 1

[source.busybox-deb]
deb = "busybox-static"
deb_version = "{version}"
arch = "amd64"
sha256 = "{sha256}"

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

/// A container test's world: its own `--root` (with the hello image loaded), `--state` and
/// cgroup parent (`DISTILL_CGROUP_PARENT`, one that did not exist before). Dropping it
/// removes its containers, stops its log daemon and removes the cgroup parent with anything
/// left below it.
pub struct Lab {
    /// Owns the temporary directory.
    pub dir: tempfile::TempDir,
    /// `--root`.
    pub root: PathBuf,
    /// `--state`.
    pub state: PathBuf,
    /// The cgroup parent of this lab's containers.
    pub cgroup_parent: String,
}

/// A cgroup parent for one test, unique in this test process and checked not to exist yet.
pub fn fresh_cgroup_parent(tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let parent = format!("distill-{tag}-{}-{n}", std::process::id());
    let h = distill_runtime::Hierarchy::detect().expect("a cgroup hierarchy");
    for d in h.parent_dirs(&parent) {
        assert!(
            !d.exists(),
            "{} exists before the test made it",
            d.display()
        );
    }
    parent
}

/// A cgroup of one test's own that the processes it starts go into, so that it can tell
/// what they left running without looking at any other process of the machine. Dropping it
/// kills whatever is still there and removes the cgroup and its parent.
pub struct OwnCgroup {
    parent: String,
    cg: distill_runtime::cgroup::Cgroup,
}

impl OwnCgroup {
    /// A new, empty cgroup (memory and pids on v1).
    pub fn new() -> OwnCgroup {
        let parent = fresh_cgroup_parent("own");
        let h = distill_runtime::Hierarchy::detect().expect("a cgroup hierarchy");
        let cg = h
            .cgroup(&parent, "procs")
            .needed(&distill_runtime::Limits::default())
            .expect("a cgroup without limits");
        let own = OwnCgroup { parent, cg };
        own.cg.create().expect("create the test's cgroup");
        own
    }

    /// Starts `cmd` inside this cgroup: the child moves itself in before it execs, so every
    /// process it makes is born there.
    pub fn spawn(&self, cmd: &mut Command) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let files: Vec<std::fs::File> = self
            .cg
            .paths()
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .expect("open cgroup.procs")
            })
            .collect();
        // SAFETY: only write(2) on descriptors opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                use std::io::Write;
                for mut f in &files {
                    f.write_all(b"0")?;
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn in the test's cgroup")
    }

    /// The processes in the cgroup now.
    pub fn procs(&self) -> Vec<i32> {
        self.cg.procs().expect("read the test's cgroup")
    }
}

impl Default for OwnCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        remove_cgroup_parent(&self.parent);
    }
}

/// Removes cgroup parent `parent` and every cgroup below it (killing what runs there).
pub fn remove_cgroup_parent(parent: &str) {
    let h = distill_runtime::Hierarchy::detect().expect("a cgroup hierarchy");
    let r = h.remove_parent(parent, true);
    if !std::thread::panicking() {
        r.expect("remove the test's cgroup parent");
    }
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
        Lab {
            dir,
            root,
            state,
            cgroup_parent: fresh_cgroup_parent("lab"),
        }
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
            .env("DISTILL_CGROUP_PARENT", &self.cgroup_parent)
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
        remove_cgroup_parent(&self.cgroup_parent);
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

/// A loop device of one test's own over a file holding `secret` (padded with zeros to 1 MiB),
/// for attacks on host block devices: the test never touches the machine's own devices.
/// Detached when dropped, whichever way the test ends.
pub struct LoopDevice {
    /// The device node, e.g. `/dev/loop3`.
    pub dev: PathBuf,
    /// The file behind it.
    pub file: PathBuf,
    /// Its major and minor numbers.
    pub major: u64,
    /// (see `major`)
    pub minor: u64,
    content: Vec<u8>,
}

impl LoopDevice {
    /// Writes `file` and attaches it (`losetup -f --show`).
    pub fn new(file: &Path, secret: &[u8]) -> LoopDevice {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut content = secret.to_vec();
        content.resize(1 << 20, 0);
        std::fs::write(file, &content).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("run losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup -f --show {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // The guard exists before anything else can fail.
        let mut l = LoopDevice {
            dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            file: file.to_path_buf(),
            major: 0,
            minor: 0,
            content,
        };
        let m = std::fs::metadata(&l.dev).unwrap();
        assert!(m.file_type().is_block_device(), "{}", l.dev.display());
        l.major = nix::sys::stat::major(m.rdev());
        l.minor = nix::sys::stat::minor(m.rdev());
        l
    }

    /// Panics (with `context`) unless the device and its file still hold what `new` wrote.
    pub fn assert_untouched(&self, context: &str) {
        use std::io::Read;
        let mut head = vec![0u8; 64];
        std::fs::File::open(&self.dev)
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        assert!(
            head == self.content[..64],
            "{} was written: {:?}\n{context}",
            self.dev.display(),
            String::from_utf8_lossy(&head)
        );
        assert!(
            std::fs::read(&self.file).unwrap() == self.content,
            "the file behind {} was written\n{context}",
            self.dev.display()
        );
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let ok = Command::new("losetup")
            .arg("-d")
            .arg(&self.dev)
            .status()
            .is_ok_and(|s| s.success());
        if !ok && !std::thread::panicking() {
            panic!(
                "could not detach {} (over {})",
                self.dev.display(),
                self.file.display()
            );
        }
    }
}
