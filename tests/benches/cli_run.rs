//! The container figures of issue 5 as a user pays for them: the real `distill` binary
//! (`target/release/distill`, built by `scripts/bench`) against bubblewrap on the same image
//! root, interleaved so that both see the same machine load. `runtime/benches/figures.rs`
//! measures the runtime library itself (and runc); the difference between the two is the
//! command's own cost: process start, argument parsing, image lookup and the log daemon.
//!
//! Run with `scripts/bench tests` (or `cargo build --release --bins && cargo bench -p
//! distill-tests --bench cli_run`). Needs root and bubblewrap (scripts/install-deps).

use std::path::PathBuf;
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

fn time(mut c: Command) -> Duration {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let st = c.status().expect("spawn");
    let d = t.elapsed();
    assert!(st.success(), "{c:?} failed: {st}");
    d
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
    // Warm up: the first run starts the log daemon; page caches fill.
    for _ in 0..5 {
        time(run());
        time(bwrap());
    }
    let (mut dv, mut bv) = (Vec::new(), Vec::new());
    for _ in 0..N {
        dv.push(time(run()));
        bv.push(time(bwrap()));
    }
    let (d, b) = (median(dv), median(bv));
    println!("distill run --rm (CLI)  {}   median of {N}", ms(d));
    println!("bwrap --unshare-all     {}   same root, same run", ms(b));
    println!(
        "                        distill/bwrap = {:.2} (target <= 1.00)",
        d.as_secs_f64() / b.as_secs_f64()
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
    let ev: Vec<Duration> = (0..N)
        .map(|_| time(lab.command(&["exec", "bench", "/bin/busybox", "true"])))
        .collect();
    let pv: Vec<Duration> = (0..N).map(|_| time(lab.command(&["ps"]))).collect();
    println!("distill exec (CLI)      {}", ms(median(ev)));
    println!("distill ps (CLI)        {}   1 container", ms(median(pv)));
    lab.distill(&["rm", "-f", "bench"]).ok();
}
