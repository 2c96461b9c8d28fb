//! End-to-end tests of container logs (issue 6) through the real `distill` binary: `run -d`
//! hands the container's pipes to memlogd (started on first use, once), `logs` reads them
//! back from the first byte to the last line, `logs --all -f` streams lines and lifecycle
//! events together, and without a daemon the logs go to files in the state directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use distill_tests::Lab;

fn wait_exit(lab: &Lab, name: &str) {
    let r = lab.distill(&["wait", name]);
    r.ok();
}

/// Reads `child`'s stdout lines on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects lines until one satisfies `done` (or panics after `secs`).
fn until(rx: &mpsc::Receiver<String>, secs: u64, done: impl Fn(&str) -> bool) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let stop = done(&l);
                got.push(l);
                if stop {
                    return got;
                }
            }
            Err(_) => panic!("timed out; got so far: {got:#?}"),
        }
    }
}

#[test]
fn logs_of_a_detached_container_from_the_first_byte_to_the_last_line() {
    let lab = Lab::new();
    lab.sh(
        &["-d", "--name", "job"],
        "echo first; echo oops >&2; /bin/busybox sleep 0.2; echo middle; printf 'last without newline'",
    )
    .ok();
    wait_exit(&lab, "job");
    let r = lab.distill(&["logs", "job"]);
    r.ok();
    assert_eq!(r.stdout, "first\nmiddle\nlast without newline\n");
    assert_eq!(r.stderr, "oops\n");
    // --tail counts lines of the container, not events.
    let r = lab.distill(&["logs", "--tail", "1", "job"]);
    r.ok();
    assert_eq!(r.stdout, "last without newline\n");
    // --timestamps: RFC 3339 with nanoseconds, in arrival order.
    let r = lab.distill(&["logs", "--timestamps", "job"]);
    r.ok();
    let stamps: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(stamps.len(), 3);
    for s in &stamps {
        assert!(
            s.len() == 30 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "{s}"
        );
    }
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    // --since after everything: nothing; --since a while ago: everything.
    let r = lab.distill(&["logs", "--since", "2999-01-01T00:00:00Z", "job"]);
    r.ok();
    assert_eq!(r.stdout, "");
    let r = lab.distill(&["logs", "--since", "1h", "job"]);
    assert_eq!(r.stdout.lines().count(), 3);
    let r = lab.distill(&["logs", "--since", "yesterday-ish", "job"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    // A duration reaching before the epoch is refused, not a panic.
    let r = lab.distill(&["logs", "--since", "500000000000y", "job"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--since"), "{}", r.stderr);
    // The logs outlive the container.
    lab.distill(&["rm", "job"]).ok();
    let r = lab.distill(&["logs", "job"]);
    r.ok();
    assert_eq!(r.stdout.lines().count(), 3);
    // A container that writes as it starts and exits at once loses nothing.
    lab.sh(&["-d", "--rm", "--name", "quick"], "echo a; echo b; echo c")
        .ok();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lab.distill(&["logs", "quick"]);
        if r.stdout == "a\nb\nc\n" {
            break;
        }
        assert!(Instant::now() < end, "logs of quick: {:?}", r.stdout);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_foreground_container_streams_to_the_terminal_and_to_the_log() {
    let lab = Lab::new();
    let r = lab.sh(
        &["--name", "fg"],
        "echo to-terminal; echo err-line >&2; printf 'no newline'; exit 3",
    );
    r.expect_code(3);
    assert_eq!(r.stdout, "to-terminal\nno newline");
    assert_eq!(r.stderr, "err-line\n");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lab.distill(&["logs", "fg"]);
        if l.stdout == "to-terminal\nno newline\n" && l.stderr == "err-line\n" {
            break;
        }
        assert!(
            Instant::now() < end,
            "logs of fg: {:?} {:?}",
            l.stdout,
            l.stderr
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_follow_ends_when_the_container_exits() {
    let lab = Lab::new();
    lab.sh(
        &["-d", "--name", "slow"],
        "echo one; /bin/busybox sleep 0.5; echo two; /bin/busybox sleep 0.5; echo three",
    )
    .ok();
    let t = Instant::now();
    let r = lab.distill(&["logs", "-f", "slow"]);
    r.ok();
    assert_eq!(r.stdout, "one\ntwo\nthree\n");
    assert!(t.elapsed() < Duration::from_secs(10));
    let r = lab.distill(&["logs", "-f", "--tail", "1", "slow"]);
    r.ok();
    assert_eq!(r.stdout, "three\n");
}

#[test]
fn logs_all_follow_streams_lines_and_lifecycle_events() {
    let lab = Lab::new();
    // Started before any container: it starts the daemon itself.
    let mut follower = lab
        .command(&["logs", "--all", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut follower);
    lab.sh(&["-d", "--name", "ev"], "echo hello-from-ev; exit 3")
        .ok();
    let got = until(&rx, 20, |l| l.starts_with("ev.event exited"));
    let ev: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("ev."))
        .collect();
    let pos = |want: &str| {
        ev.iter()
            .position(|l| *l == want)
            .unwrap_or_else(|| panic!("{want:?} not in {ev:#?}"))
    };
    let created = pos("ev.event created");
    let started = pos("ev.event started");
    let line = pos("ev.stdout hello-from-ev");
    let exited = pos("ev.event exited code=3");
    assert!(created < started && created < line && line < exited && started < exited);
    // An OOM kill is an event too, before the exit.
    lab.distill(&[
        "run",
        "-d",
        "--name",
        "hog",
        "--memory",
        "8m",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1M",
        "count=64",
    ])
    .ok();
    let got = until(&rx, 20, |l| l.starts_with("hog.event exited"));
    let hog: Vec<&str> = got
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("hog.event"))
        .collect();
    assert_eq!(
        hog,
        [
            "hog.event created",
            "hog.event started",
            "hog.event oom-killed",
            "hog.event exited signal=KILL"
        ]
    );
    // A foreground run's events reach the daemon too (its lines go to the terminal and the log).
    lab.sh(&["--rm", "--name", "fg"], "echo terminal").ok();
    let got = until(&rx, 20, |l| l.starts_with("fg.event exited"));
    assert!(got.iter().any(|l| l == "fg.event started"), "{got:#?}");
    let _ = follower.kill();
    let _ = follower.wait();
    // Without -f: a dump with timestamps.
    let r = lab.distill(&["logs", "--all", "--timestamps"]);
    r.ok();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.ends_with(" ev.stdout hello-from-ev") && l.contains('T')),
        "{}",
        r.stdout
    );
}

#[test]
fn lines_of_two_containers_interleave_without_tearing() {
    let lab = Lab::new();
    let n = 3000;
    let script = |tag: &str| {
        format!(
            "p=$(printf '%0200d' 0); i=0; while [ $i -lt {n} ]; do echo \"{tag} $i $p\"; i=$((i+1)); done"
        )
    };
    let start = |name: &str, tag: &str| {
        lab.command(&[
            "run",
            "-d",
            "--name",
            name,
            "--entrypoint",
            "/bin/sh",
            "hello",
            "-c",
            &script(tag),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (start("a", "A"), start("b", "B"));
    let (ra, rb) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(ra.status.success() && rb.status.success(), "{ra:?} {rb:?}");
    wait_exit(&lab, "a");
    wait_exit(&lab, "b");
    let pad = "0".repeat(200);
    for tag in ["A", "B"] {
        let name = tag.to_lowercase();
        let r = lab.distill(&["logs", &name]);
        r.ok();
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), n, "{name}: {} lines", lines.len());
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(
                *l,
                format!("{tag} {i} {pad}"),
                "{name} line {i} torn or out of order"
            );
        }
    }
    // In the merged stream every line is whole and belongs to its source.
    let r = lab.distill(&["logs", "--all"]);
    r.ok();
    let mut seen = [0usize; 2];
    for l in r.stdout.lines() {
        let (src, msg) = l.split_once(' ').unwrap();
        let tag = match src {
            "a.stdout" => "A",
            "b.stdout" => "B",
            _ => continue,
        };
        let k = usize::from(tag == "B");
        assert_eq!(msg, format!("{tag} {} {pad}", seen[k]), "torn line {l:?}");
        seen[k] += 1;
    }
    assert_eq!(seen, [n, n]);
}

#[test]
fn two_concurrent_runs_start_exactly_one_daemon() {
    let lab = Lab::new();
    assert!(lab.logd_pids().is_empty());
    let spawn = |name: &str| {
        lab.command(&[
            "run",
            "-d",
            "--name",
            name,
            "--entrypoint",
            "/bin/sh",
            "hello",
            "-c",
            &format!("echo I am {name}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (c1, c2) = (spawn("one"), spawn("two"));
    let (o1, o2) = (
        c1.wait_with_output().unwrap(),
        c2.wait_with_output().unwrap(),
    );
    assert!(o1.status.success() && o2.status.success(), "{o1:?} {o2:?}");
    assert!(
        !String::from_utf8_lossy(&o1.stderr).contains("warning"),
        "{o1:?}"
    );
    let pids = lab.logd_pids();
    assert_eq!(pids.len(), 1, "one daemon: {pids:?}");
    // And only one was ever started: every start leaves a line in the daemon's log, so a
    // second daemon that exited at once would show here.
    let starts = |lab: &Lab| {
        std::fs::read_to_string(lab.state.join(".logd/logd.err"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("starting the log daemon"))
            .count()
    };
    assert_eq!(starts(&lab), 1);
    wait_exit(&lab, "one");
    wait_exit(&lab, "two");
    assert_eq!(lab.distill(&["logs", "one"]).stdout, "I am one\n");
    assert_eq!(lab.distill(&["logs", "two"]).stdout, "I am two\n");
    // Later runs reuse it.
    lab.sh(&["-d", "--name", "three"], "echo x").ok();
    assert_eq!(lab.logd_pids(), pids);
    assert_eq!(starts(&lab), 1);
    // No log file was written in the state dirs: the daemon has the lines.
    assert!(!lab.state.join("one").join("stdout.log").exists());
}

#[test]
fn without_a_daemon_logs_go_to_files_and_logs_reads_them() {
    let lab = Lab::new();
    // Private, as distill makes a state root (so no notice about its mode is printed).
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&lab.state)
        .unwrap();
    // The daemon's directory cannot be created: logd cannot start.
    std::fs::write(lab.state.join(".logd"), "not a directory").unwrap();
    let r = lab.sh(
        &["-d", "--name", "f"],
        "echo to-file; echo err-to-file >&2; /bin/busybox sleep 0.3; echo last",
    );
    r.ok();
    let warnings: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains("warning: log daemon unavailable")
            && warnings[0].contains("stdout.log"),
        "{}",
        r.stderr
    );
    let r = lab.distill(&["logs", "-f", "f"]);
    r.ok();
    assert_eq!(r.stdout, "to-file\nlast\n");
    assert_eq!(r.stderr, "err-to-file\n");
    assert_eq!(
        std::fs::read_to_string(lab.state.join("f").join("stdout.log")).unwrap(),
        "to-file\nlast\n"
    );
    let r = lab.distill(&["logs", "--tail", "1", "f"]);
    assert_eq!(r.stdout, "last\n");
    assert!(lab.logd_pids().is_empty());
}
