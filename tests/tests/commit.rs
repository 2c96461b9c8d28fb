//! End-to-end tests of `distill commit` (issue 7) through the real binary: the same steps
//! committed twice give the same image digest, the committed image runs with what the
//! container wrote (owners, symlinks, deletions), a running container is frozen only for
//! the commit and keeps running, and bad input is refused with nothing written.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use distill_tests::Lab;

fn digest_of(lab: &Lab, name: &str) -> String {
    let r = lab.distill(&["--json", "images"]);
    r.ok();
    let all: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no image {name} in {}", r.stdout))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn commit(lab: &Lab, args: &[&str]) -> String {
    let mut a = vec!["commit"];
    a.extend_from_slice(args);
    let r = lab.distill(&a);
    r.ok();
    r.stdout.trim().to_string()
}

/// Entries of the images directory (image digests, `.lock`, leftovers).
fn image_dir_entries(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(lab.root.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn same_steps_committed_twice_give_the_same_image() {
    let lab = Lab::new();
    // A base whose /tmp has content, so that the next containers see it seeded and one of
    // them deletes a seeded file.
    lab.sh(
        &["--name", "seed"],
        "echo seeded > /tmp/keep; echo old > /tmp/gone",
    )
    .ok();
    let base = commit(&lab, &["seed", "base:1"]);
    assert!(base.starts_with("sha256:"), "{base}");

    let steps = "test \"$(cat /tmp/keep)\" = seeded || exit 9; rm /tmp/gone; \
                 echo hi > /tmp/new; ln -s new /tmp/link; mkdir /tmp/d; \
                 echo svc > /var/lib/app/data; chown -R 1000:1000 /var/lib/app; \
                 echo run > /run/pidfile";
    for n in ["one", "two"] {
        let r = lab.distill(&[
            "run",
            "--name",
            n,
            "--rw",
            "/var/lib/app",
            "--entrypoint",
            "/bin/sh",
            "base:1",
            "-c",
            steps,
        ]);
        r.ok();
        // Different wall-clock times for the two commits' files.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let a = commit(&lab, &["one", "app:a", "--label", "role=test"]);
    let b = commit(&lab, &["two", "app:b", "--label", "role=test"]);
    assert_eq!(a, b, "the same steps gave two different images");
    assert_ne!(a, base);
    assert_eq!(digest_of(&lab, "app:b"), a);
    // Committing again is the same image; it is renamed (an image here has one name).
    assert_eq!(
        commit(&lab, &["one", "app:again", "--label", "role=test"]),
        a
    );
    assert_eq!(digest_of(&lab, "app:again"), a);
    // A different label is a different image.
    let c = commit(&lab, &["one", "app:c", "--label", "role=other"]);
    assert_ne!(c, a);
    let r = lab.distill(&["images"]);
    assert!(r.stdout.contains("app:again"), "{}", r.stdout);
    assert!(r.stdout.contains("app:c"), "{}", r.stdout);

    // The committed image runs with what the container left.
    let r = lab.distill(&[
        "run",
        "--rm",
        "--rw",
        "/var/lib/app",
        "--entrypoint",
        "/bin/sh",
        "app:again",
        "-c",
        "cat /tmp/keep /tmp/new /var/lib/app/data /run/pidfile; \
         test -e /tmp/gone && echo GONE-IS-BACK; \
         /bin/busybox readlink /tmp/link; test -d /tmp/d && echo dir; \
         /bin/busybox stat -c '%u:%g %a' /var/lib/app/data /tmp",
    ]);
    r.ok();
    assert_eq!(
        r.stdout,
        "seeded\nhi\nsvc\nrun\nnew\ndir\n1000:1000 644\n0:0 1777\n"
    );
    // Its config carries the base's entrypoint, the label, and one more layer.
    let img = lab
        .root
        .join("images")
        .join(a.trim_start_matches("sha256:"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["config"]["Labels"]["role"], "test");
    assert_eq!(cfg["config"]["Entrypoint"][0], "/bin/hello");
    let base_img = lab
        .root
        .join("images")
        .join(base.trim_start_matches("sha256:"));
    let base_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base_img.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        base_cfg["rootfs"]["diff_ids"].as_array().unwrap().len() + 1
    );
    let man: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        man["annotations"]["org.opencontainers.image.base.digest"],
        base.as_str()
    );
    // The manifest file is the image's identity.
    let bytes = std::fs::read(img.join("manifest.json")).unwrap();
    assert_eq!(format!("sha256:{}", distill_tests::sha256_hex(&bytes)), a);
}

/// The freezer state of the cgroup process `pid` is in, read the way the kernel shows it
/// to the host: v1 `freezer.state` (`FROZEN`), v2 `frozen 1` in `cgroup.events`. `None`
/// while the process is in no freezer cgroup.
fn frozen(pid: i64) -> Option<bool> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        ctrl.split(',')
            .any(|c| c == "freezer")
            .then(|| path.to_string())
    });
    if let Some(path) = v1 {
        let st =
            std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state")).ok()?;
        return Some(st.trim() == "FROZEN");
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let ev = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.events")).ok()?;
    Some(ev.lines().any(|l| l.trim() == "frozen 1"))
}

#[test]
fn a_running_container_is_committed_and_keeps_running() {
    let lab = Lab::new();
    // A few MB of noise make the layer slow enough to write that the freeze is seen.
    lab.sh(
        &["-d", "--name", "live"],
        "/bin/busybox head -c 4000000 /dev/urandom > /tmp/bulk; \
         i=0; while true; do i=$((i+1)); echo $i > /tmp/count; /bin/busybox sleep 0.02; done",
    )
    .ok();
    let count = lab.state.join("live/rw/tmp/count");
    let read = || {
        std::fs::read_to_string(&count)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let end = Instant::now() + Duration::from_secs(10);
    while read().unwrap_or(0) < 3 {
        assert!(Instant::now() < end, "the container never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = lab.inspect("live")["pid"].as_i64().unwrap();
    assert_ne!(frozen(pid), Some(true), "frozen before the commit");
    // While the commit runs, watch the container's freezer and read the counter file
    // whenever it is frozen on both sides of the read.
    let done = AtomicBool::new(false);
    let (d, seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen: Option<String> = None;
            while !done.load(Ordering::Relaxed) {
                if frozen(pid) == Some(true) {
                    let text = std::fs::read_to_string(&count).unwrap_or_default();
                    if frozen(pid) == Some(true) {
                        if let Some(before) = &seen {
                            assert_eq!(*before, text, "the counter moved while frozen");
                        }
                        seen = Some(text);
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            seen
        });
        // The watcher stops also when the commit fails (the scope would wait for it).
        let r = catch_unwind(AssertUnwindSafe(|| commit(&lab, &["live", "live:snap"])));
        done.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        (r.unwrap_or_else(|e| resume_unwind(e)), seen)
    });
    assert!(d.starts_with("sha256:"), "{d}");
    let seen = seen.expect("the container was never seen frozen while it was committed");
    assert_eq!(frozen(pid), Some(false), "still frozen after commit");
    // Thawed: it keeps counting and is still running.
    let after = read().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while read().unwrap_or(0) <= after + 2 {
        assert!(
            Instant::now() < end,
            "the container stopped counting after commit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lab.inspect("live")["status"], "running");
    // The image has the counter exactly as it was while frozen.
    let r = lab.distill(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        "live:snap",
        "-c",
        "cat /tmp/count",
    ]);
    r.ok();
    assert_eq!(r.stdout, seen);
    lab.distill(&["rm", "-f", "live"]).ok();
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let lab = Lab::new();
    lab.sh(&["--name", "c"], "echo x > /tmp/x").ok();
    let before = image_dir_entries(&lab);
    let cases: &[(&[&str], &str)] = &[
        (&["commit", "nope", "img"], "no such container \"nope\""),
        (&["commit", "c", "Bad Name"], "image name \"Bad Name\""),
        (&["commit", "c", "img@sha256:00"], "digest"),
        (&["commit", "c", "img:-x"], "tag"),
        (&["commit", "c", "img", "--label", "novalue"], "--label"),
        (&["commit", "../c", "img"], "invalid container name"),
    ];
    for (args, want) in cases {
        let r = lab.distill(args);
        r.expect_code(2);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!(image_dir_entries(&lab), before);
    // A container whose root is not a loaded image (the image was removed meanwhile).
    lab.distill(&["rmi", "hello"]).ok();
    let r = lab.distill(&["commit", "c", "img"]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("not started from an image"),
        "{}",
        r.stderr
    );
    let r = lab.distill(&["images"]);
    assert!(!r.stdout.contains("img"), "{}", r.stdout);
}

/// A writable file named `.wh.*` would be taken for a whiteout and vanish from the image:
/// `commit` refuses it, naming its container path, with nothing written; `checkpoint
/// --export` refuses it before the dump, so the container keeps running. Renamed, both work.
#[test]
fn a_whiteout_name_is_refused_by_commit_and_export() {
    let lab = Lab::new();
    lab.sh(
        &["-d", "--name", "wh", "--rw", "/data"],
        "mkdir /data/sub; echo x > /data/sub/.wh.x; while true; do /bin/busybox sleep 1; done",
    )
    .ok();
    let file = lab.state.join("wh/rw/data/sub/.wh.x");
    let end = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < end, "the container never wrote its file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = |args: &[&str]| {
        let r = lab.distill(args);
        r.expect_code(2);
        assert!(
            r.stderr.contains("/data/sub/.wh.x") && r.stderr.contains("rename it"),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert_eq!(lab.inspect("wh")["status"], "running");
    };
    let before = image_dir_entries(&lab);
    refused(&["commit", "wh", "img:wh"]);
    assert_eq!(image_dir_entries(&lab), before);
    let tar = lab.path("wh.tar");
    refused(&["checkpoint", "wh", "--export", tar.to_str().unwrap()]);
    assert!(!tar.exists());
    assert!(!lab.state.join("wh/checkpoint").exists());

    lab.distill(&[
        "exec",
        "wh",
        "/bin/busybox",
        "mv",
        "/data/sub/.wh.x",
        "/data/sub/wh.x",
    ])
    .ok();
    let d = commit(&lab, &["wh", "img:wh"]);
    assert!(d.starts_with("sha256:"), "{d}");
    lab.distill(&["checkpoint", "wh", "--export", tar.to_str().unwrap()])
        .ok();
    assert!(tar.exists());
}
