//! Tracing overhead: `python3 -c 'import json, email, http.client'` under distill's tracer vs
//! under `strace -f -e trace=%file -o /dev/null`. Median wall time of 10 runs each; prints the
//! ratio (tracer / strace; at most 1.0 is the target).

use std::process::Command;
use std::time::{Duration, Instant};

use distill_tracer::{trace, TraceCommand};

const RUNS: usize = 10;
const CODE: &str = "import json, email, http.client";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("python3 is needed for this benchmark");
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is missing: run scripts/install-deps (apt-get install strace)"
    );
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    // Warm the page cache.
    Command::new(python).args(["-c", CODE]).status().unwrap();

    let mut ours = Vec::new();
    let mut accesses = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = trace(TraceCommand {
            argv: vec![python.into(), "-c".into(), CODE.into()],
            env: env.clone(),
            cwd: "/".into(),
            stdin: None,
            root: None,
        })
        .expect("trace python3");
        ours.push(t.elapsed());
        assert!(r.exit.success(), "{}", String::from_utf8_lossy(&r.stderr));
        accesses = r.accesses.len();
    }
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let st = Command::new("strace")
            .args([
                "-f",
                "-e",
                "trace=%file",
                "-o",
                "/dev/null",
                python,
                "-c",
                CODE,
            ])
            .current_dir("/")
            .status()
            .unwrap();
        theirs.push(t.elapsed());
        assert!(st.success());
    }
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        Command::new(python)
            .args(["-c", CODE])
            .current_dir("/")
            .status()
            .unwrap();
        plain.push(t.elapsed());
    }
    let (o, s, p) = (median(ours), median(theirs), median(plain));
    println!(
        "untraced python3:           median {:>8.1} ms",
        p.as_secs_f64() * 1e3
    );
    println!(
        "distill tracer ({accesses} accesses): median {:>8.1} ms",
        o.as_secs_f64() * 1e3
    );
    println!(
        "strace -f -e trace=%file:   median {:>8.1} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "ratio tracer/strace: {:.2}",
        o.as_secs_f64() / s.as_secs_f64()
    );
}
