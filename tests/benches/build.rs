//! Figures for `distill build` (issues 2 and 3): the wall time of a build of an unchanged
//! manifest, with and without its image already written. Target: at most 100 ms each.
//! Run with `scripts/bench` (or `cargo build --release --bins && cargo bench -p distill-tests`).

use std::time::{Duration, Instant};

use distill_tests::World;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(w: &World, args: &[&str], n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = w.command(args).output().expect("run distill");
        times.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    median(times)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let w = World::new();
    let m = w.example("hello");
    let m = m.to_str().unwrap();
    let cert = w.cert();
    let cert = cert.to_str().unwrap();
    let out = w.path("out");
    let out = out.to_str().unwrap();
    let first = Instant::now();
    w.distill(&["build", m, "--keyring", cert, "--out", out])
        .ok();
    let first = first.elapsed();

    let packages = time_runs(&w, &["build", m, "--keyring", cert], 21);
    let image = time_runs(&w, &["build", m, "--keyring", cert, "--out", out], 21);
    let target = Duration::from_millis(100);
    println!("distill build, examples/hello (first build, fetch included: {first:.2?})");
    for (what, t) in [
        ("unchanged manifest, packages only", packages),
        ("unchanged manifest, image present", image),
    ] {
        println!(
            "  {what:<36} median {:>7.2} ms   target <= 100 ms   ratio {:.2}  {}",
            t.as_secs_f64() * 1000.0,
            t.as_secs_f64() / target.as_secs_f64(),
            if t <= target { "ok" } else { "OVER" }
        );
    }
}
