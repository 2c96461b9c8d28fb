//! A container's root may `mknod` (Docker's default capabilities include CAP_MKNOD), so a
//! node of any host device can be made wherever it can write. What stops it using one: the
//! device controller (cgroup v1 `devices`, a BPF_CGROUP_DEVICE program on v2), which allows
//! only the devices the container's /dev holds, and `nodev` on every writable mount other
//! than /dev (/tmp, /run, `--rw`, `--tmpfs`). The kernel checks `nodev` first (EACCES,
//! "Permission denied"), the device controller next (EPERM, "Operation not permitted"), so a
//! node made in /dev (a tmpfs that has to allow device nodes) is stopped by the controller
//! alone, and one made anywhere else by `nodev` (and by the controller behind it).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use distill_tests::Lab;

/// The attack in one place `dir` of the container: make a node `c_or_b MAJ MIN` there, open
/// it for reading (printing what it holds) and for writing (writing `pwned`). Every step
/// reports on stdout, the shell's errors included (`2>&1`): `sh: can't open PATH: ERROR`.
fn attempt(dir: &str, name: &str, kind: &str, major: u64, minor: u64, write: bool) -> String {
    let n = format!("{dir}/{name}");
    let mut s = format!(
        "if $b mknod {n} {kind} {major} {minor} 2>&1; then echo 'MKNOD {n} ok'; else echo 'MKNOD {n} failed'; fi\n\
         if ( exec 3<{n} && echo 'OPEN {n} ok' && $b head -c 64 <&3 | $b tr -c 'A-Za-z0-9-' '.' && echo ) 2>&1; then :; else echo 'OPEN {n} failed'; fi\n"
    );
    if write {
        s.push_str(&format!(
            "if ( exec 4<>{n} && echo 'WRITE-OPEN {n} ok' && echo pwned >&4 ) 2>&1; then :; else echo 'WRITE-OPEN {n} failed'; fi\n"
        ));
    }
    s
}

#[test]
fn a_container_cannot_use_a_host_block_device_it_makes_a_node_for() {
    let lab = Lab::new();
    let secret = format!("LOOP-SECRET-{}-0451", std::process::id());
    let lo = distill_tests::LoopDevice::new(&lab.path("disk.img"), secret.as_bytes());

    let mut script = String::from("b=/bin/busybox\n");
    // /dev: a tmpfs where nodes must work, so only the device controller is in the way.
    // /tmp (a writable directory of the container), --tmpfs and --rw: nodev as well.
    for dir in ["/dev", "/tmp", "/scratch", "/data"] {
        script.push_str(&attempt(dir, "l0", "b", lo.major, lo.minor, true));
    }
    let kvm = Path::new("/dev/kvm");
    let kvm_rdev = std::fs::metadata(kvm).ok().map(|m| m.rdev());
    if let Some(rdev) = kvm_rdev {
        script.push_str(&attempt(
            "/dev",
            "kvm",
            "c",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev),
            false,
        ));
    }
    // What a container is given keeps working.
    script.push_str("echo null-ok >/dev/null && echo 'DEVNULL ok'\n");
    script.push_str("$b head -c 4 /dev/urandom >/dev/null && echo 'URANDOM ok'\n");
    script.push_str("echo done\n");

    let r = lab.distill(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch",
        "--rw",
        "/data",
        "--entrypoint",
        "",
        "hello",
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]);
    let out = format!("{}{}", r.stdout, r.stderr);
    let dev = lo.dev.clone();
    assert!(
        out.lines().any(|l| l == "done"),
        "the script did not finish:\n{out}"
    );

    // The attack ran: every node was made (CAP_MKNOD, and `m` is allowed for any device, as
    // in Docker) and every open was tried.
    for dir in ["/dev", "/tmp", "/scratch", "/data"] {
        let n = format!("{dir}/l0");
        assert!(out.contains(&format!("MKNOD {n} ok")), "mknod {n}:\n{out}");
    }
    assert!(
        !out.contains(&secret),
        "the container read the host's block device {}:\n{out}",
        dev.display()
    );
    lo.assert_untouched(&format!(
        "the container wrote to the host's block device {}:\n{out}",
        dev.display()
    ));
    // /dev: the device controller (EPERM).
    for what in ["OPEN", "WRITE-OPEN"] {
        assert!(
            out.contains(&format!("{what} /dev/l0 failed")),
            "{what} /dev/l0:\n{out}"
        );
    }
    assert!(
        out.contains("/dev/l0: Operation not permitted"),
        "the device controller did not refuse /dev/l0:\n{out}"
    );
    // Elsewhere: nodev (EACCES), which the kernel checks before the controller.
    for dir in ["/tmp", "/scratch", "/data"] {
        let n = format!("{dir}/l0");
        for what in ["OPEN", "WRITE-OPEN"] {
            assert!(
                out.contains(&format!("{what} {n} failed")),
                "{what} {n}:\n{out}"
            );
        }
        assert!(
            out.contains(&format!("{n}: Permission denied")),
            "{n} is not on a nodev mount:\n{out}"
        );
    }
    if kvm_rdev.is_some() {
        assert!(out.contains("MKNOD /dev/kvm ok"), "{out}");
        assert!(
            out.contains("OPEN /dev/kvm failed")
                && out.contains("/dev/kvm: Operation not permitted"),
            "the container opened /dev/kvm:\n{out}"
        );
    }
    assert!(
        out.contains("DEVNULL ok") && out.contains("URANDOM ok"),
        "{out}"
    );
    r.ok();
}
