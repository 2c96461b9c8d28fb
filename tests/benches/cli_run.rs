//! The container figures of issue 5 as a user pays for them: the real `distill` binary
//! (`target/<host triple>/release/distill`, built by `scripts/bench`) against bubblewrap and runc on the
//! same image root, interleaved so that all see the same machine load. `runtime/benches/figures.rs`
//! measures the runtime library itself (and runc); the difference between the two is the
//! command's own cost: process start, argument parsing, image lookup and the log daemon.
//!
//! Run with `scripts/bench tests` (or `cargo build --release --bins && cargo bench -p
//! distill-tests --bench cli_run`). Needs root, bubblewrap and runc (scripts/install-deps).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distill_tests::Lab;

const N: usize = 100;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:7.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `c` once and returns its wall time. Each run starts after a short pause: what a
/// command leaves to finish after it exits (distill's clean-up after the exit is reported,
/// runc's and bubblewrap's namespaces torn down by the kernel) must not land in the
/// next tool's measurement.
fn time(mut c: Command) -> Duration {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::thread::sleep(Duration::from_millis(5));
    let t = Instant::now();
    let st = c.status().expect("spawn");
    let d = t.elapsed();
    assert!(st.success(), "{c:?} failed: {st}");
    d
}

/// A runc bundle on `rootfs` (read-only) running `args`: `runc spec`'s default, patched.
fn runc_bundle(dir: &Path, rootfs: &Path, args: &[&str]) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let st = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .expect("runc is missing: run scripts/install-deps");
    assert!(st.success(), "runc spec failed");
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = rootfs.to_str().unwrap().into();
    spec["root"]["readonly"] = true.into();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(args);
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    bundle
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn main() {
    // The state root on a tmpfs, as the default /run/distill is.
    let shm = tempfile::Builder::new()
        .prefix("distill-bench-")
        .tempdir_in("/dev/shm")
        .expect("tempdir in /dev/shm");
    let mut lab = Lab::new();
    lab.state = shm.path().join("state");
    let images = lab.root.join("images");
    let rootfs: PathBuf = std::fs::read_dir(&images)
        .expect("the hello image is loaded")
        .filter_map(|e| Some(e.ok()?.path().join("rootfs")))
        .find(|p| p.is_dir())
        .expect("an unpacked image root");
    let run = || {
        let mut c = lab.command(&[
            "run",
            "--rm",
            "--entrypoint",
            "/bin/busybox",
            "hello",
            "true",
        ]);
        c.env_remove("NO_COLOR");
        c
    };
    let bwrap = || {
        let mut c = Command::new("bwrap");
        c.arg("--unshare-all").arg("--ro-bind").arg(&rootfs).args([
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "/bin/busybox",
            "true",
        ]);
        c
    };
    let runc_root = shm.path().join("runc");
    let bundle = runc_bundle(shm.path(), &rootfs, &["/bin/busybox", "true"]);
    let runc = |args: &[&str]| {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&runc_root).args(args);
        c
    };
    // Warm up: the first run starts the log daemon; page caches fill.
    for i in 0..5 {
        time(run());
        time(bwrap());
        time(runc(&[
            "run",
            "-b",
            bundle.to_str().unwrap(),
            &format!("w{i}"),
        ]));
    }
    let (mut dv, mut bv, mut rv) = (Vec::new(), Vec::new(), Vec::new());
    // The order rotates, so that each tool follows each other one equally often (runc leaves
    // the most work to the kernel after it exits).
    for i in 0..N {
        for k in 0..3 {
            match (i + k) % 3 {
                0 => dv.push(time(run())),
                1 => bv.push(time(bwrap())),
                _ => rv.push(time(runc(&[
                    "run",
                    "-b",
                    bundle.to_str().unwrap(),
                    &format!("r{i}"),
                ]))),
            }
        }
    }
    let (d, b, r) = (median(dv), median(bv), median(rv));
    println!("run --rm /bin/true, median of {N}, interleaved, same root:");
    println!("  distill run --rm (CLI)  {}", ms(d));
    println!("  bwrap --unshare-all     {}", ms(b));
    println!("  runc run                {}", ms(r));
    println!(
        "  distill/bwrap = {:.2} (target <= 1.00), runc/distill = {:.1}x (target >= 4)",
        ratio(d, b),
        ratio(r, d)
    );

    // exec and ps through the CLI, against a running container.
    lab.distill(&[
        "run",
        "-d",
        "--name",
        "bench",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "sleep",
        "600",
    ])
    .ok();
    // The runc container: the same root, sleeping; `runc run -d` needs no terminal.
    let sleeper = runc_bundle(
        &shm.path().join("sleeper"),
        &rootfs,
        &["/bin/busybox", "sleep", "600"],
    );
    let st = runc(&["run", "-d", "-b", sleeper.to_str().unwrap(), "bench"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "runc run -d failed");
    let (mut ev, mut rev) = (Vec::new(), Vec::new());
    for _ in 0..N {
        ev.push(time(lab.command(&[
            "exec",
            "bench",
            "/bin/busybox",
            "true",
        ])));
        rev.push(time(runc(&["exec", "bench", "/bin/busybox", "true"])));
    }
    let _ = runc(&["delete", "-f", "bench"]).status();
    let pv: Vec<Duration> = (0..N).map(|_| time(lab.command(&["ps"]))).collect();
    let (e, re) = (median(ev), median(rev));
    println!("exec /bin/true, median of {N}, interleaved:");
    println!("  distill exec (CLI)      {}", ms(e));
    println!("  runc exec               {}", ms(re));
    println!("  runc/distill = {:.1}x (target >= 4)", ratio(re, e));
    println!("ps (CLI), 1 container     {}", ms(median(pv)));
    lab.distill(&["rm", "-f", "bench"]).ok();
}
