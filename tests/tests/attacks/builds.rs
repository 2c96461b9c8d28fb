//! Attacks from inside a build step and a trace probe: the step (or probe) is hostile code
//! running as root in distill's sandbox. Each test compiles `attack.c` on the host
//! (`cc -static`), hands it to a build step as a `file` source (or puts it in the root of
//! `distill trace --in`), checks that the attack ran and how the kernel answered, that the host
//! was not touched, and that the process ran in a user namespace of its own (uid 0 mapped to
//! unprivileged host ids) with a limited capability set, seccomp and no_new_privs.

use std::path::{Path, PathBuf};
use std::process::Command;

use distill_tests::{busybox_preamble, sha256_hex, Run, World};

const ATTACK_C: &str = include_str!("attack.c");

/// Capabilities a build step or probe must not hold: each of them breaks out of or reaches
/// around a container (CAP_DAC_READ_SEARCH is shocker's, CAP_SYS_ADMIN mounts, ...).
const FORBIDDEN_CAPS: &[(u32, &str)] = &[
    (2, "CAP_DAC_READ_SEARCH"),
    (12, "CAP_NET_ADMIN"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (22, "CAP_SYS_BOOT"),
    (25, "CAP_SYS_TIME"),
    (33, "CAP_MAC_ADMIN"),
    (39, "CAP_BPF"),
];

/// `attack.c` compiled statically into the world; its path.
fn compile_attack(w: &World) -> PathBuf {
    let src = w.path("attack.c");
    std::fs::write(&src, ATTACK_C).unwrap();
    let bin = w.path("attack-src/attack");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run cc (build-essential)");
    assert!(
        out.status.success(),
        "cc -static attack.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// A signed manifest whose package `attacks` runs `script` with the busybox shell, the
/// attack program at `/tmp/attack`.
fn attack_manifest(w: &World, bin: &Path, script: &str) -> PathBuf {
    let bytes = std::fs::read(bin).unwrap();
    let text = format!(
        "{}\n[source.attack]\nfile = \"attack\"\nsha256 = \"{}\"\n\n[package.attacks]\nversion = \"1\"\ninputs = [\"busybox\", \"attack\"]\nshell = [\"$busybox/bin/busybox\", \"sh\", \"-c\"]\nbuild = [{:?}]\n",
        busybox_preamble(),
        sha256_hex(&bytes),
        format!(
            "cp $attack/attack /tmp/attack && chmod 0755 /tmp/attack && /tmp/attack status; {script}; touch $out/done"
        )
    );
    w.manifest("attacks", &text, &[("attack", &bytes)])
}

/// Builds `manifest` with `--verbose` and returns the step's output lines (`attacks> ...`)
/// joined, with the whole run for messages.
fn build_step_output(w: &World, manifest: &Path) -> (String, String) {
    let r = w.distill(&[
        "build",
        manifest.to_str().unwrap(),
        "--keyring",
        w.cert().to_str().unwrap(),
        "--verbose",
    ]);
    let out: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("attacks> "))
        .collect();
    let all = format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    );
    (out.join("\n") + "\n", all)
}

/// The value of `key:` in the attack's status output, as whitespace-separated fields.
fn field<'a>(out: &'a str, key: &str, all: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the attack's output:\n{all}"))
        .split_whitespace()
        .collect()
}

/// (c): the process ran as root of a user namespace of its own, mapped to unprivileged host
/// ids, with none of [`FORBIDDEN_CAPS`], under seccomp with no_new_privs.
fn assert_contained(out: &str, all: &str) {
    assert!(
        out.contains("STATUS START") && out.contains("STATUS END"),
        "{all}"
    );
    for key in ["uid_map:", "gid_map:"] {
        let map = field(out, key, all);
        assert_ne!(
            map,
            ["0", "0", "4294967295"],
            "{key} is the initial user namespace's: the process is host root\n{all}"
        );
        assert_eq!(map.len(), 3, "{key} has one line of 3 fields\n{all}");
        assert_eq!(map[0], "0", "{key}: root inside\n{all}");
        let host: u64 = map[1].parse().unwrap();
        let count: u64 = map[2].parse().unwrap();
        // Unprivileged host ids: host root (and the system's own ids) are not mapped.
        assert!(host >= 65536, "{key}: mapped to host id {host}\n{all}");
        assert!(
            (1..=65536).contains(&count) && host + count <= 1 << 32,
            "{key}: {count} ids mapped\n{all}"
        );
    }
    assert_eq!(field(out, "Uid:", all), ["0", "0", "0", "0"], "{all}");
    for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let v = u64::from_str_radix(field(out, key, all)[0], 16).unwrap();
        for (bit, name) in FORBIDDEN_CAPS {
            assert_eq!(v & (1 << bit), 0, "{key} holds {name}\n{all}");
        }
    }
    assert_eq!(field(out, "NoNewPrivs:", all), ["1"], "{all}");
    assert_eq!(field(out, "Seccomp:", all), ["2"], "{all}");
}

/// The mount point of the file system holding `path` and `path` relative to it.
fn on_its_filesystem(path: &Path) -> (PathBuf, String) {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "TARGET", "-T"])
        .arg(path)
        .output()
        .expect("run findmnt");
    let mnt = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let rel = path
        .strip_prefix(&mnt)
        .unwrap_or_else(|_| panic!("{} is not below {}", path.display(), mnt.display()));
    (mnt, rel.to_string_lossy().into_owned())
}

/// A root-only host file the attacker wants to read (0600, root's).
struct Secret {
    path: PathBuf,
    bytes: String,
}

impl Secret {
    fn new(w: &World) -> Secret {
        use std::os::unix::fs::PermissionsExt;
        let path = w.path("host-secret");
        let bytes = format!("the host's secret {}\n", std::process::id());
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Secret { path, bytes }
    }
}

/// A host file the attacker wants to create; removed again if it was.
struct Created(PathBuf);

impl Drop for Created {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The handle of the root directory of `mnt`'s file system (ext4: type 1, inode 2), made on
/// the host by the attack program itself: what shocker guesses.
fn root_handle(bin: &Path, mnt: &Path) -> (String, String) {
    let out = Command::new(bin).arg("handle").arg(mnt).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    let mut f = s.split_whitespace();
    (f.next().unwrap().to_string(), f.next().unwrap().to_string())
}

/// Checks a shocker run: it ran, the host file was neither read nor created, and
/// open_by_handle_at was refused with EPERM.
fn assert_shocker_refused(out: &str, all: &str, secret: &Secret, created: &Created) {
    assert!(
        out.contains("SHOCKER START") && out.contains("SHOCKER END"),
        "the attack did not run:\n{all}"
    );
    assert!(
        out.contains("open mount dir: ok"),
        "the attack could not open its mount directory:\n{all}"
    );
    assert!(
        !out.contains(secret.bytes.trim()) && !out.contains("READ:"),
        "the step read the root-only host file {}:\n{all}",
        secret.path.display()
    );
    assert!(
        !created.0.exists() && !out.contains("create host file: ok"),
        "the step created the host file {}:\n{all}",
        created.0.display()
    );
    assert!(
        out.contains("open_by_handle_at: errno=EPERM"),
        "open_by_handle_at was not refused with EPERM:\n{all}"
    );
}

/// shocker (2014): `open_by_handle_at` with the build output as mount fd and the handle of
/// the file system's root directory opens the host's root; from there a root-only file is
/// read and a file created.
#[test]
fn a_build_step_cannot_open_host_files_by_handle() {
    let w = World::new();
    let bin = compile_attack(&w);
    let secret = Secret::new(&w);
    let created = Created(w.path("shocker-was-here"));
    let (mnt, secret_rel) = on_its_filesystem(&secret.path);
    let (_, created_rel) = on_its_filesystem(&created.0);
    let (ty, hex) = root_handle(&bin, &mnt);
    let m = attack_manifest(
        &w,
        &bin,
        &format!("/tmp/attack shocker $out {ty} {hex} {secret_rel} {created_rel}"),
    );
    let (out, all) = build_step_output(&w, &m);
    assert_shocker_refused(&out, &all, &secret, &created);
    assert_contained(&out, &all);
}

/// `mknod $out/l0 b MAJOR MINOR` of a block device of the host (a loop device over a file
/// with a secret), then read it and write to it.
#[test]
fn a_build_step_cannot_make_and_use_a_host_block_device() {
    let w = World::new();
    let bin = compile_attack(&w);
    let lo = distill_tests::LoopDevice::new(&w.path("loop-backing"), b"the loop device's secret\n");
    let (major, minor) = (lo.major, lo.minor);
    let m = attack_manifest(
        &w,
        &bin,
        &format!("/tmp/attack mknod $out/l0 {major} {minor}"),
    );
    let (out, all) = build_step_output(&w, &m);
    assert!(
        out.contains("MKNOD START") && out.contains("MKNOD END"),
        "the attack did not run:\n{all}"
    );
    assert!(
        !out.contains("READ:") && !out.contains("loop device's secret"),
        "the step read {}:\n{all}",
        lo.dev.display()
    );
    lo.assert_untouched(&all);
    assert!(
        out.contains("mknod: errno=EPERM"),
        "mknod was not refused with EPERM:\n{all}"
    );
    assert_contained(&out, &all);
}

/// Restores a sysctl's value if a test changed it.
struct Sysctl {
    path: &'static str,
    value: String,
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if std::fs::read_to_string(self.path).ok().as_deref() != Some(&self.value) {
            let _ = std::fs::write(self.path, &self.value);
        }
    }
}

/// A build step writes a host sysctl (`fs.lease-break-time`, not namespaced).
#[test]
fn a_build_step_cannot_change_a_host_sysctl() {
    let w = World::new();
    let bin = compile_attack(&w);
    let path = "/proc/sys/fs/lease-break-time";
    let saved = Sysctl {
        path,
        value: std::fs::read_to_string(path).unwrap(),
    };
    let want = if saved.value.trim() == "4242" {
        "4343"
    } else {
        "4242"
    };
    let m = attack_manifest(&w, &bin, &format!("/tmp/attack sysctl {path} {want}"));
    let (out, all) = build_step_output(&w, &m);
    assert!(
        out.contains("SYSCTL START") && out.contains("SYSCTL END"),
        "the attack did not run:\n{all}"
    );
    let now = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        now, saved.value,
        "the build step changed the host's {path}\n{all}"
    );
    assert!(!out.contains("write sysctl: ok"), "{all}");
    assert!(
        ["EACCES", "EROFS", "EPERM"]
            .iter()
            .any(|e| out.contains(&format!("open sysctl: errno={e}"))),
        "opening the sysctl for writing was not refused with EACCES, EROFS or EPERM:\n{all}"
    );
    assert_contained(&out, &all);
}

/// The same shocker as a traced command: `distill trace --in DIR -- /attack shocker / ...`,
/// the mount fd being the probe's root (a directory of the host's file system).
#[test]
fn a_trace_probe_cannot_open_host_files_by_handle() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let bin = compile_attack(&w);
    let root = w.path("probe-root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(&bin, root.join("attack")).unwrap();
    std::fs::set_permissions(root.join("attack"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = Secret::new(&w);
    let created = Created(w.path("shocker-was-here"));
    let (mnt, secret_rel) = on_its_filesystem(&secret.path);
    let (_, created_rel) = on_its_filesystem(&created.0);
    let (ty, hex) = root_handle(&bin, &mnt);
    let trace = |args: &[&str]| -> (String, String) {
        let mut a = vec!["--json", "trace", "--in", root.to_str().unwrap(), "--"];
        a.extend_from_slice(args);
        let r: Run = w.distill(&a);
        let all = format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            r.code, r.stdout, r.stderr
        );
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("trace --json: {e}\n{all}"));
        (v["stdout"].as_str().unwrap_or("").to_string(), all)
    };
    let (out, all) = trace(&[
        "/attack",
        "shocker",
        "/",
        &ty,
        &hex,
        &secret_rel,
        &created_rel,
    ]);
    assert_shocker_refused(&out, &all, &secret, &created);
    let (out, all) = trace(&["/attack", "status"]);
    assert_contained(&out, &all);
}
