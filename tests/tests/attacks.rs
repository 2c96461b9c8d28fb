//! Attacks on distill, performed for real through the `distill` binary. Each test mounts one
//! attack, checks that the attack actually ran (so it cannot pass because nothing happened)
//! and that the host was not touched. docs/design.md ("Threat model") lists them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distill_tests::{Lab, Run, World};

#[path = "attacks/bomb.rs"]
mod bomb;
#[path = "attacks/builds.rs"]
mod builds;
#[path = "attacks/devices.rs"]
mod devices;
#[path = "attacks/exe.rs"]
mod exe;
#[path = "attacks/manifests.rs"]
mod manifests;
#[path = "attacks/names.rs"]
mod names;
#[path = "attacks/private_dirs.rs"]
mod private_dirs;
#[path = "attacks/terminal.rs"]
mod terminal;

/// The unprivileged local user of these attacks.
const USER: u32 = 1000;

/// How many pids ahead of the kernel's last one the symlinks are planted for.
const PID_WINDOW: u32 = 3000;

/// The `count` pids the kernel hands out next in this pid namespace (unless one is in use):
/// those after `/proc/sys/kernel/ns_last_pid`, wrapping at `pid_max` to 300 as the kernel
/// does.
fn next_pids(count: u32) -> Vec<u32> {
    let read = |p: &str| -> u32 {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("read {p}: {e}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("parse {p}: {e}"))
    };
    let last = read("/proc/sys/kernel/ns_last_pid");
    let max = read("/proc/sys/kernel/pid_max");
    (1..=count)
        .map(|k| {
            let p = last + k;
            if p >= max {
                300 + (p - max)
            } else {
                p
            }
        })
        .collect()
}

/// A file of the host that the attacker wants root to overwrite: root's, mode 0644, in a
/// directory the attacker cannot write.
struct Canary {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Canary {
    fn new(path: PathBuf) -> Canary {
        let bytes = b"the host's own file: nobody may write here\n".to_vec();
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Canary { path, bytes }
    }

    fn assert_untouched(&self) {
        let m = std::fs::symlink_metadata(&self.path).unwrap();
        assert!(m.is_file(), "{} is no longer a file", self.path.display());
        let now = std::fs::read(&self.path).unwrap();
        assert!(
            now == self.bytes,
            "the canary {} was overwritten through a planted symlink: {} bytes now, beginning {:?}",
            self.path.display(),
            now.len(),
            String::from_utf8_lossy(&now[..now.len().min(40)])
        );
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o644));
    }
}

/// A directory of the attacker's own (owned by [`USER`], as a user's home would be).
fn attacker_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(USER), Some(USER)).unwrap();
    path.to_path_buf()
}

/// Symlinks the attacker planted in `dir`, all pointing at the canary, owned by [`USER`].
struct Planted {
    links: Vec<PathBuf>,
}

impl Planted {
    /// Plants, for each pid of `pids`, a symlink at every name of `names(pid)` in `dir`.
    fn new(dir: &Path, pids: &[u32], target: &Path, names: &dyn Fn(u32) -> Vec<String>) -> Self {
        let mut links = Vec::new();
        for &pid in pids {
            for n in names(pid) {
                let l = dir.join(n);
                std::os::unix::fs::symlink(target, &l)
                    .unwrap_or_else(|e| panic!("plant {}: {e}", l.display()));
                std::os::unix::fs::lchown(&l, Some(USER), Some(USER)).unwrap();
                links.push(l);
            }
        }
        Planted { links }
    }

    /// Every planted name is still a symlink to `target`: nothing replaced or removed one.
    fn assert_intact(&self, target: &Path) {
        for l in &self.links {
            assert_eq!(
                std::fs::read_link(l).ok().as_deref(),
                Some(target),
                "{} was replaced",
                l.display()
            );
        }
    }

    fn remove(self) {
        for l in &self.links {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// Plants the symlinks of `names` in `dir` for the next [`PID_WINDOW`] pids and starts
/// `cmd()` with its output captured. The child refuses to run (before it execs) unless its
/// pid is one of the planted ones; then everything is planted afresh, up to 10 times. So
/// the attack is in place when distill starts: every name of `names(its pid)` is a planted
/// symlink (checked). Returns the child and the planted links.
fn spawn_into_planted(
    dir: &Path,
    target: &Path,
    names: &dyn Fn(u32) -> Vec<String>,
    cmd: &dyn Fn() -> Command,
) -> (Child, Planted) {
    for _ in 0..10 {
        let pids = next_pids(PID_WINDOW);
        let planted = Planted::new(dir, &pids, target, names);
        let mut sorted = pids.clone();
        sorted.sort_unstable();
        let mut c = cmd();
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only getpid and a binary search (no allocation) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if sorted.binary_search(&std::process::id()).is_ok() {
                    Ok(())
                } else {
                    // EAGAIN: plant and spawn again.
                    Err(std::io::Error::from_raw_os_error(11))
                }
            });
        }
        match c.spawn() {
            Ok(child) => {
                let pid = child.id();
                assert!(
                    pids.contains(&pid),
                    "distill's pid {pid} is outside the planted window"
                );
                let mine: Vec<PathBuf> = names(pid).iter().map(|n| dir.join(n)).collect();
                assert!(!mine.is_empty());
                for l in &mine {
                    assert_eq!(
                        std::fs::read_link(l).ok().as_deref(),
                        Some(target),
                        "the planted {} is missing",
                        l.display()
                    );
                }
                return (child, planted);
            }
            Err(e) if e.raw_os_error() == Some(11) => planted.remove(),
            Err(e) => panic!("spawn distill: {e}"),
        }
    }
    panic!("distill never got a pid inside the planted window (the machine makes pids too fast)")
}

/// Root builds an image into a directory of a local user (`build --out DIR`). The user
/// planted symlinks to a host file at every temporary name the old scheme could use for the
/// next pids (`.hello.oci.tar.tmp-<pid>-<n>`); the build must neither write through them
/// nor leave a symlink as its archive.
#[test]
fn build_out_never_writes_through_a_planted_symlink() {
    let w = World::new();
    let m = w.example("hello");
    let canary = Canary::new(w.path("canary"));
    let out = attacker_dir(&w.path("home/out"));
    let names = |pid: u32| -> Vec<String> {
        (0..4)
            .map(|n| format!(".hello.oci.tar.tmp-{pid}-{n}"))
            .collect()
    };
    let cert = w.cert();
    let (child, planted) = spawn_into_planted(&out, &canary.path, &names, &|| {
        w.command(&[
            "build",
            m.to_str().unwrap(),
            "--keyring",
            cert.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    });
    let run = Run::from(child.wait_with_output().unwrap());
    canary.assert_untouched();
    run.ok();
    planted.assert_intact(&canary.path);
    let archive = out.join("hello.oci.tar");
    let meta = std::fs::symlink_metadata(&archive).unwrap();
    assert!(
        meta.is_file(),
        "{} is not a regular file: {:?}",
        archive.display(),
        meta.file_type()
    );
    assert_eq!(meta.uid(), 0);
    // The archive is the image: it holds the manifest whose digest the build printed.
    let digest = run.stdout.lines().last().unwrap_or("");
    assert!(digest.starts_with("sha256:"), "{}", run.stdout);
    let listed = Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains(&format!("blobs/sha256/{}", &digest["sha256:".len()..])),
        "{listing}"
    );
}

/// `checkpoint --export FILE` into a directory of a local user, who planted symlinks to a
/// host file at every name of the old scheme (`.<file>.tmp-<pid>`) for the next pids.
#[test]
fn checkpoint_export_never_writes_through_a_planted_symlink() {
    let lab = Lab::new();
    let canary = Canary::new(lab.path("canary"));
    let out = attacker_dir(&lab.path("home/out"));
    lab.sh(
        &["-d", "--name", "exp"],
        "while true; do /bin/busybox sleep 0.1; done",
    )
    .ok();
    let tar = out.join("exp.tar");
    let names = |pid: u32| vec![format!(".exp.tar.tmp-{pid}")];
    let (child, planted) = spawn_into_planted(&out, &canary.path, &names, &|| {
        lab.command(&["checkpoint", "exp", "--export", tar.to_str().unwrap()])
    });
    let run = Run::from(child.wait_with_output().unwrap());
    canary.assert_untouched();
    run.ok();
    planted.assert_intact(&canary.path);
    let meta = std::fs::symlink_metadata(&tar).unwrap();
    assert!(meta.is_file(), "{}: {:?}", tar.display(), meta.file_type());
    // It is the export: the manifest first.
    let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let first = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_str(), Some(".distill-export.json"));
}

fn require_setcap() {
    let found = Command::new("sh")
        .args(["-c", "command -v setcap"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "setcap is not installed (libcap2-bin): run scripts/install-deps (tests/run does)"
    );
}

/// The value of `key` (e.g. `CapEff`) in /proc/PID/status output.
fn cap_field(status: &str, key: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

const CAP_DAC_OVERRIDE: u64 = 1 << 1;
const CAP_NET_RAW: u64 = 1 << 13;

/// Host files of the capability attack: `x/` (bound read-only at /x) holds busybox copies
/// with file capabilities and a root-only secret; `y/` (bound read-write at /y) holds a
/// root-owned file the container's user may not write.
struct CapHost {
    x: PathBuf,
    y: PathBuf,
    secret: Vec<u8>,
    target: Vec<u8>,
}

impl CapHost {
    fn new(lab: &Lab) -> CapHost {
        require_setcap();
        let x = lab.path("x");
        let y = lab.path("y");
        for d in [&x, &y] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The attacker's program: file capabilities inheritable and effective, none
        // permitted, so it gets them only from the process's inheritable set.
        // A control with the capability permitted (what a file capability is for), which
        // shows that the volume honours file capabilities at all.
        for (name, caps, shown) in [
            (
                "busybox",
                "cap_net_raw,cap_dac_override+ei",
                "cap_dac_override,cap_net_raw=ei",
            ),
            ("busybox-p", "cap_net_raw+ep", "cap_net_raw=ep"),
        ] {
            let p = x.join(name);
            std::fs::copy("/usr/bin/busybox", &p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = Command::new("setcap").arg(caps).arg(&p).status().unwrap();
            assert!(st.success(), "setcap {caps} {}", p.display());
            let got = Command::new("getcap").arg(&p).output().unwrap();
            let got = String::from_utf8_lossy(&got.stdout);
            assert!(got.trim_end().ends_with(shown), "getcap: {got}");
        }
        let secret = b"root's secret\n".to_vec();
        std::fs::write(x.join("secret"), &secret).unwrap();
        std::fs::set_permissions(x.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let target = b"root's file\n".to_vec();
        std::fs::write(y.join("target"), &target).unwrap();
        std::fs::set_permissions(y.join("target"), std::fs::Permissions::from_mode(0o644)).unwrap();
        CapHost {
            x,
            y,
            secret,
            target,
        }
    }

    fn volumes(&self) -> Vec<String> {
        vec![
            "-v".into(),
            format!("{}:/x:ro", self.x.display()),
            "-v".into(),
            format!("{}:/y", self.y.display()),
        ]
    }

    fn assert_untouched(&self) {
        assert_eq!(std::fs::read(self.y.join("target")).unwrap(), self.target);
        assert_eq!(std::fs::read(self.x.join("secret")).unwrap(), self.secret);
        for (f, mode) in [
            (self.y.join("target"), 0o644),
            (self.x.join("secret"), 0o600),
        ] {
            let m = std::fs::metadata(&f).unwrap();
            assert_eq!((m.uid(), m.mode() & 0o7777), (0, mode), "{}", f.display());
        }
    }
}

/// What the attacker's program does, as the container's user: show its capabilities, read
/// the root-only secret and overwrite the root-owned file, each with its outcome.
const ATTACK: &str = "echo uid=$(/x/busybox id -u); \
    /x/busybox grep Cap /proc/self/status; \
    /x/busybox cat /x/secret && echo READ; \
    echo pwned > /y/target && echo WROTE; \
    echo done";

/// Checks the output of [`ATTACK`]: the program ran as the container's user, without any
/// capability, and both accesses were refused with EACCES.
fn assert_attack_refused(r: &Run, what: &str) {
    let all = format!(
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
    // It ran to the end, as the container's user: the attack was performed.
    assert!(r.stdout.starts_with(&format!("uid={USER}\n")), "{all}");
    assert!(r.stdout.ends_with("done\n"), "{all}");
    // The kernel still allows both capabilities (bounding set), so only the empty
    // inheritable set keeps the file's `+ei` from granting them.
    let bnd = cap_field(&r.stdout, "CapBnd");
    assert_eq!(
        bnd & (CAP_NET_RAW | CAP_DAC_OVERRIDE),
        CAP_NET_RAW | CAP_DAC_OVERRIDE,
        "{all}"
    );
    for key in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(cap_field(&r.stdout, key), 0, "{key} is not empty: {all}");
    }
    assert!(!r.stdout.contains("READ"), "{all}");
    assert!(!r.stdout.contains("WROTE"), "{all}");
    assert!(!r.stdout.contains("root's secret"), "{all}");
    assert_eq!(
        r.stderr.matches("Permission denied").count(),
        2,
        "both accesses are refused with EACCES: {all}"
    );
}

/// The control: a file capability the file itself permits works from the volume (so the
/// volume honours file capabilities and the attack above is not stopped by the mount).
fn assert_permitted_file_caps_work(r: &Run, what: &str) {
    r.ok();
    let eff = cap_field(&r.stdout, "CapEff");
    assert_eq!(
        eff, CAP_NET_RAW,
        "{what}: a +ep file capability is not honoured in the volume, so the attack cannot be performed here:\n{}",
        r.stdout
    );
}

/// A program with file capabilities `+ei` run as a non-root user (`run --user 1000`) must
/// get no capability from the container's inheritable set (CVE-2022-24769's class): it
/// cannot read a root-only host file nor overwrite a root-owned one in a volume.
#[test]
fn inheritable_capabilities_never_reach_a_users_program_in_run() {
    let lab = Lab::new();
    let host = CapHost::new(&lab);
    let run_as_user = |program: &str, args: &[&str]| -> Run {
        let mut a: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--user".into(),
            USER.to_string(),
        ];
        a.extend(host.volumes());
        a.extend(["--entrypoint".into(), program.into(), "hello".into()]);
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        lab.distill(&a)
    };
    let control = run_as_user("/x/busybox-p", &["grep", "Cap", "/proc/self/status"]);
    assert_permitted_file_caps_work(&control, "run");
    let r = run_as_user("/x/busybox", &["sh", "-c", ATTACK]);
    assert_attack_refused(&r, "run");
    host.assert_untouched();
}

/// The same through `exec --user 1000` into a running container.
#[test]
fn inheritable_capabilities_never_reach_a_users_program_in_exec() {
    let lab = Lab::new();
    let host = CapHost::new(&lab);
    let mut a: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        "capbox".into(),
        "--user".into(),
        USER.to_string(),
    ];
    a.extend(host.volumes());
    a.extend(
        ["--entrypoint", "/bin/busybox", "hello", "sleep", "600"]
            .iter()
            .map(|s| s.to_string()),
    );
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    lab.distill(&a).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab
        .distill(&["exec", "capbox", "/bin/busybox", "true"])
        .code
        != 0
    {
        assert!(Instant::now() < deadline, "capbox never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let uid = USER.to_string();
    let control = lab.distill(&[
        "exec",
        "--user",
        &uid,
        "capbox",
        "/x/busybox-p",
        "grep",
        "Cap",
        "/proc/self/status",
    ]);
    assert_permitted_file_caps_work(&control, "exec");
    let r = lab.distill(&[
        "exec",
        "--user",
        &uid,
        "capbox",
        "/x/busybox",
        "sh",
        "-c",
        ATTACK,
    ]);
    assert_attack_refused(&r, "exec");
    host.assert_untouched();
    lab.distill(&["rm", "-f", "capbox"]).ok();
}
