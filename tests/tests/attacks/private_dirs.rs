//! The root (`--root`) holds every loaded and committed image unpacked, set-id bits and
//! all, and the state root (`--state`) every container's writable files: a local user who
//! can reach them runs a container's setuid-root program on the host as root (the class of
//! CVE-2021-41091). Both are private to root (0700), and one that others could write to is
//! refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_tests::{Lab, Run};

use super::USER;

/// Runs `path -u` as the unprivileged [`USER`] (no supplementary groups): what it printed,
/// or why it could not be run.
fn run_as_user(path: &Path) -> Result<String, std::io::Error> {
    let out = Command::new(path)
        .arg("-u")
        .uid(USER)
        .gid(USER)
        .current_dir("/")
        .env_clear()
        .output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The lab's temp dir opened to everyone (as `/var/lib` and `/run` are), so that only the
/// modes distill gives its own directories stand between a local user and their contents.
fn open_lab(lab: &Lab) {
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_local_user_cannot_run_a_setuid_program_of_an_image() {
    let lab = Lab::new();
    open_lab(&lab);
    // A container makes a setuid-root copy of a program that prints its effective uid
    // (the host's coreutils `id`: busybox drops set-id privileges for `id`), and is
    // committed into an image.
    lab.distill(&[
        "run",
        "--name",
        "mk",
        "--rw",
        "/data",
        "-v",
        "/usr/bin:/hostbin:ro",
        "--entrypoint",
        "",
        "hello",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox cp /hostbin/id /data/rootme && /bin/busybox chmod 4755 /data/rootme",
    ])
    .ok();
    let digest = lab.distill(&["commit", "mk", "rootme:1"]);
    digest.ok();

    // As root: the file is there, setuid root, in the image's unpacked root and in the
    // container's writable directory.
    let in_images: Vec<PathBuf> = std::fs::read_dir(lab.root.join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("rootfs/data/rootme"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(in_images.len(), 1, "{in_images:?}");
    let in_state = lab.state.join("mk/rw/data/rootme");
    for p in in_images.iter().chain([&in_state]) {
        let m = std::fs::metadata(p).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid()),
            (0o4755, 0),
            "{} is not setuid root",
            p.display()
        );
    }
    // The attack works where nothing is in the way: root runs it as itself (0), and the same
    // file copied to a directory the user can reach gives the user uid 0 (so a refusal below
    // is the directories' doing, not the file's).
    let reachable = lab.path("reachable");
    std::fs::create_dir(&reachable).unwrap();
    std::fs::set_permissions(&reachable, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = reachable.join("rootme");
    std::fs::copy(&in_images[0], &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(run_as_user(&copy).unwrap().trim(), "0");
    std::fs::remove_file(&copy).unwrap();

    // As the local user: listing the root to find the file, and running it where it is.
    let listed = Command::new("ls")
        .arg(lab.root.join("images"))
        .uid(USER)
        .gid(USER)
        .output()
        .unwrap();
    let mut failures = Vec::new();
    if listed.status.success() {
        failures.push(format!(
            "user {USER} listed {}: {}",
            lab.root.join("images").display(),
            String::from_utf8_lossy(&listed.stdout).trim()
        ));
    }
    for p in in_images.iter().chain([&in_state]) {
        match run_as_user(p) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => failures.push(format!("{}: unexpected error {e}", p.display())),
            Ok(out) => failures.push(format!(
                "user {USER} ran {} and it printed {:?}{}",
                p.display(),
                out.trim(),
                if out.trim() == "0" { " (root!)" } else { "" }
            )),
        }
    }
    lab.distill(&["rm", "mk"]).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for d in [&lab.root, &lab.state] {
        let m = std::fs::metadata(d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700, "{}", d.display());
    }
}

fn assert_refused(r: &Run, path: &Path, what: &str) {
    let shown = format!("{}{}", r.stdout, r.stderr);
    assert_ne!(r.code, 0, "{what} was accepted:\n{shown}");
    assert!(
        r.stderr.contains(&path.display().to_string()) && r.stderr.contains("chmod 700"),
        "{what}: the error does not name {} and say what to do:\n{shown}",
        path.display()
    );
}

/// A root or state directory that others can write to (where they could have planted
/// anything) or that another user owns is refused, naming it and what to do; one that
/// only others can read (a 0755 root made by an older distill) is made private.
#[test]
fn a_root_or_state_others_can_write_is_refused() {
    let lab = Lab::empty();
    open_lab(&lab);
    let mkdir = |p: &Path, mode: u32, uid: u32| {
        std::fs::create_dir_all(p).unwrap();
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mkdir(&lab.root, 0o777, 0);
    assert_refused(
        &lab.distill(&["images"]),
        &lab.root,
        "a world-writable --root",
    );
    mkdir(&lab.root, 0o770, 0);
    assert_refused(
        &lab.distill(&["load", distill_tests::hello_archive().to_str().unwrap()]),
        &lab.root,
        "a group-writable --root",
    );
    assert!(!lab.root.join("images").exists(), "load wrote into it");
    mkdir(&lab.root, 0o700, USER);
    assert_refused(
        &lab.distill(&["images"]),
        &lab.root,
        "a --root owned by another user",
    );

    mkdir(&lab.root, 0o700, 0);
    mkdir(&lab.state, 0o1777, 0);
    assert_refused(
        &lab.distill(&["ps", "-a"]),
        &lab.state,
        "a world-writable --state",
    );
    assert_refused(
        &lab.distill(&["run", "--rm", "hello"]),
        &lab.state,
        "a world-writable --state for run",
    );

    // A 0755 root and state of the caller's, as an older distill made them: tightened.
    mkdir(&lab.root, 0o755, 0);
    mkdir(&lab.state, 0o755, 0);
    lab.distill(&["images"]).ok();
    lab.distill(&["ps", "-a"]).ok();
    for d in [&lab.root, &lab.state] {
        let m = std::fs::metadata(d).unwrap();
        assert_eq!(
            m.mode() & 0o7777,
            0o700,
            "{} was not made private",
            d.display()
        );
    }
}
