//! Integration tests: the real `distill-logd` binary, real sockets, real pipes and processes,
//! one temporary state directory per test.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use distill_memlogd::{
    daemon_pid, ensure_running, query, send_event, send_fd, stats, Entry, Error, Mode, Request,
};

const BIN: &str = env!("CARGO_BIN_EXE_distill-logd");

struct Logd {
    child: Child,
}

impl Logd {
    fn start(state: &Path, args: &[&str]) -> Logd {
        let child = Command::new(BIN)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .spawn()
            .expect("spawn distill-logd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats(state).is_err() {
            assert!(Instant::now() < deadline, "logd did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Logd { child }
    }

    fn signal(&mut self, sig: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.child.wait().unwrap()
    }
}

impl Drop for Logd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

/// Starts `sh -c script` with its stdout on a pipe whose read end was passed to logd first.
fn container(state: &Path, source: &str, script: &str) -> Child {
    let (r, w) = pipe();
    send_fd(state, source, r.as_fd()).unwrap();
    drop(r);
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::from(w))
        .spawn()
        .unwrap()
}

/// A pipe whose read end was passed to logd; the test writes the bytes itself.
fn raw_source(state: &Path, source: &str) -> fs::File {
    let (r, w) = pipe();
    send_fd(state, source, r.as_fd()).unwrap();
    drop(r);
    fs::File::from(w)
}

fn wait_lines(state: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(state).unwrap();
        if s.lines_total >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} lines arrived",
            s.lines_total
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_fds_closed(state: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(state).unwrap().open_fds > 0 {
        assert!(Instant::now() < deadline, "fds were not closed at EOF");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn dump(state: &Path, source: Option<&str>) -> Vec<Entry> {
    let mut r = Request::new(Mode::Dump);
    r.source = source.map(str::to_string);
    query(state, &r).unwrap().map(|e| e.unwrap()).collect()
}

fn msgs(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.msg.as_str()).collect()
}

#[test]
fn lines_from_several_containers_interleave_without_tearing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let pad = "x".repeat(300);
    let mut kids = Vec::new();
    for c in 0..4 {
        for stream in ["stdout", "stderr"] {
            let script = format!("seq -f 'c{c}-{stream}-%g-{pad}-end' 1 3000");
            kids.push(container(state, &format!("c{c}.{stream}"), &script));
        }
    }
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    wait_lines(state, 8 * 3000);
    wait_fds_closed(state);
    let all = dump(state, None);
    assert_eq!(all.len(), 8 * 3000);
    // Arrival times never go backwards in the one stream.
    assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
    for c in 0..4 {
        for stream in ["stdout", "stderr"] {
            let src = format!("c{c}.{stream}");
            let mine: Vec<&Entry> = all.iter().filter(|e| e.source == src).collect();
            assert_eq!(mine.len(), 3000, "{src}");
            for (i, e) in mine.iter().enumerate() {
                assert_eq!(e.msg, format!("c{c}-{stream}-{}-{pad}-end", i + 1));
                assert!(!e.cut);
            }
        }
        // The filter "cN" selects both streams of that container and nothing else.
        let f = dump(state, Some(&format!("c{c}")));
        assert_eq!(f.len(), 6000);
        assert!(f.iter().all(|e| e.source.starts_with(&format!("c{c}."))));
    }
}

#[test]
fn last_line_before_exit_is_captured_and_precedes_the_exit_event() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    send_event(state, "web.event", "started").unwrap();
    let mut k = container(state, "web.stdout", "echo first; echo 'last words'; exit 3");
    let code = k.wait().unwrap().code().unwrap();
    // Sent right after the exit, with no wait: the daemon reads the pipe first.
    send_event(state, "web.event", &format!("exited code={code}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = dump(state, Some("web"));
        if got.len() >= 4 {
            assert_eq!(
                msgs(&got),
                ["started", "first", "last words", "exited code=3"]
            );
            assert_eq!(got[3].source, "web.event");
            break;
        }
        assert!(Instant::now() < deadline, "got only {:?}", msgs(&got));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_line_without_trailing_newline_at_eof_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let mut k = container(state, "a.stdout", "printf 'one\\ntwo without newline'");
    assert!(k.wait().unwrap().success());
    wait_lines(state, 2);
    wait_fds_closed(state);
    assert_eq!(msgs(&dump(state, None)), ["one", "two without newline"]);
}

#[test]
fn binary_and_invalid_utf8_are_escaped_not_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let mut w = raw_source(state, "bin.stdout");
    w.write_all(b"\x00\x01\xff\xfe ok \x1b[31mred\\ \xc3\xa9 \xe2\x82\r\n")
        .unwrap();
    drop(w);
    wait_lines(state, 1);
    let got = dump(state, None);
    assert_eq!(
        got[0].msg,
        "\\x00\\x01\\xff\\xfe ok \\x1b[31mred\\\\ é \\xe2\\x82\\x0d"
    );
    assert_eq!(
        distill_memlogd::escape::unescape(&got[0].msg),
        b"\x00\x01\xff\xfe ok \x1b[31mred\\ \xc3\xa9 \xe2\x82\r"
    );
}

#[test]
fn ring_evicts_oldest_first_by_lines_and_by_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let d = Logd::start(state, &["--lines", "10"]);
    let mut k = container(state, "a.stdout", "seq 1 25");
    k.wait().unwrap();
    wait_lines(state, 25);
    let got = dump(state, None);
    let want: Vec<String> = (16..=25).map(|i| i.to_string()).collect();
    assert_eq!(msgs(&got), want);
    assert_eq!(stats(state).unwrap().evicted_total, 15);
    drop(d);

    // By bytes: each "NNNN" line costs 4 + 64 bytes; 5 fit in 5 * 68 = 340.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &["--line-max", "100", "--bytes", "345"]);
    let mut k = container(state, "a.stdout", "seq 1001 1020");
    k.wait().unwrap();
    wait_lines(state, 20);
    let got = dump(state, None);
    let want: Vec<String> = (1016..=1020).map(|i| i.to_string()).collect();
    assert_eq!(msgs(&got), want);
    assert_eq!(stats(state).unwrap().ring_bytes, 5 * 68);
}

#[test]
fn long_lines_are_cut_and_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &["--line-max", "10"]);
    let mut w = raw_source(state, "a.stdout");
    w.write_all(b"0123456789abcdefghijKLMNO\nshort\n").unwrap();
    drop(w);
    wait_lines(state, 4);
    let got = dump(state, None);
    assert_eq!(msgs(&got), ["0123456789", "abcdefghij", "KLMNO", "short"]);
    let cut: Vec<bool> = got.iter().map(|e| e.cut).collect();
    assert_eq!(cut, [true, true, false, false]);
}

#[test]
fn tail_since_and_dump_then_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let mut a = raw_source(state, "a.stdout");
    let mut b = raw_source(state, "ab.stdout");
    for i in 0..10 {
        writeln!(a, "a{i}").unwrap();
        writeln!(b, "ab{i}").unwrap();
    }
    wait_lines(state, 20);
    let mut r = Request::new(Mode::DumpFollow);
    r.source = Some("a".into());
    r.tail = Some(3);
    let mut it = query(state, &r).unwrap();
    let first: Vec<String> = (0..3).map(|_| it.next().unwrap().unwrap().msg).collect();
    assert_eq!(first, ["a7", "a8", "a9"]);
    let mid = SystemTime::now();
    writeln!(b, "ab-later").unwrap();
    writeln!(a, "a-later").unwrap();
    let next = it.next().unwrap().unwrap();
    assert_eq!(next.msg, "a-later");
    assert_eq!(next.source, "a.stdout");
    wait_lines(state, 22);

    let mut r = Request::new(Mode::Dump);
    r.since = Some(mid);
    let got: Vec<Entry> = query(state, &r).unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(msgs(&got), ["ab-later", "a-later"]);

    // A pure follow sees only what comes after it.
    let mut f = query(state, &Request::new(Mode::Follow)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    writeln!(b, "ab-new").unwrap();
    assert_eq!(f.next().unwrap().unwrap().msg, "ab-new");
}

#[test]
fn rotation_through_the_daemon_keeps_exactly_n_files() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let logs = tmp.path().join("logs");
    let logs_s = logs.to_str().unwrap();
    let _d = Logd::start(
        &state,
        &[
            "--persist",
            logs_s,
            "--max-size",
            "2000",
            "--max-files",
            "4",
        ],
    );
    let mut k = container(&state, "svc.stdout", "seq 1 2000");
    let mut e = container(&state, "svc.stderr", "seq 1 5");
    k.wait().unwrap();
    e.wait().unwrap();
    wait_lines(&state, 2005);
    let mut names: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "svc.stderr.log",
            "svc.stdout.log",
            "svc.stdout.log.1",
            "svc.stdout.log.2",
            "svc.stdout.log.3"
        ]
    );
    for n in &names {
        assert!(fs::metadata(logs.join(n)).unwrap().len() <= 2000, "{n}");
    }
    let cur = fs::read_to_string(logs.join("svc.stdout.log")).unwrap();
    assert!(cur.trim_end().ends_with("\"msg\":\"2000\"}"), "{cur}");
}

/// Parses the msgs of a persisted file.
fn persisted_msgs(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["msg"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killing_logd_mid_stream_and_restarting_loses_nothing_persisted() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let logs = tmp.path().join("logs");
    let logs_s = logs.to_str().unwrap();
    let args = ["--persist", logs_s, "--max-size", "100000000"];
    let mut d = Logd::start(&state, &args);
    let mut w = container(
        &state,
        "job.stdout",
        "i=0; while :; do echo \"line $i\" || exit 0; i=$((i+1)); done",
    );
    wait_lines(&state, 3000);
    let status = d.signal(libc::SIGKILL);
    assert!(!status.success());
    // The writer dies of SIGPIPE (or its echo fails) once nobody reads.
    let _ = w.wait();
    let before = persisted_msgs(&logs.join("job.stdout.log"));
    assert!(before.len() >= 3000);
    for (i, m) in before.iter().enumerate() {
        assert_eq!(m, &format!("line {i}"));
    }

    let _d2 = Logd::start(&state, &args);
    let after = persisted_msgs(&logs.join("job.stdout.log"));
    assert_eq!(after, before, "restart must not change persisted lines");
    // Persisted lines are back in the ring.
    let got = dump(&state, Some("job"));
    assert_eq!(
        got.iter().map(|e| e.msg.clone()).collect::<Vec<_>>(),
        before
    );
    // And new lines are appended after them.
    let mut k = container(&state, "job.stdout", "echo again");
    k.wait().unwrap();
    wait_lines(&state, before.len() as u64 + 1);
    let again = persisted_msgs(&logs.join("job.stdout.log"));
    assert_eq!(again.len(), before.len() + 1);
    assert_eq!(again.last().unwrap(), "again");
}

fn drain(it: &mut distill_memlogd::Entries, n: usize) -> (u64, u64) {
    let (mut got, mut dropped) = (0u64, 0u64);
    for e in it {
        let e = e.unwrap();
        if e.dropped > 0 {
            assert_eq!(e.source, "logd");
            dropped += e.dropped;
            continue;
        }
        got += 1;
        if e.msg.starts_with(&format!("{} ", n - 1)) {
            break;
        }
    }
    (got, dropped)
}

#[test]
fn a_slow_follower_is_told_what_it_missed_and_blocks_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &["--lines", "1000"]);
    const N: usize = 200_000;
    // Connected and never read while the lines flow.
    let slow = query(state, &Request::new(Mode::Follow)).unwrap();
    let mut fast = query(state, &Request::new(Mode::Follow)).unwrap();
    let fast_reader = std::thread::spawn(move || drain(&mut fast, N));
    // A client that connects and sends nothing.
    let _silent =
        std::os::unix::net::UnixStream::connect(distill_memlogd::query_socket_path(state)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let pad = "y".repeat(200);
    let mut k = container(
        state,
        "load.stdout",
        &format!("seq -f '%g {pad}' 0 {}", N - 1),
    );
    // Ingestion finishes although `slow` reads nothing.
    wait_lines(state, N as u64);
    k.wait().unwrap();

    let (got, dropped) = fast_reader.join().unwrap();
    assert_eq!(got + dropped, N as u64);
    let mut slow = slow;
    let (got, dropped) = drain(&mut slow, N);
    assert!(dropped > 0, "the slow follower should have missed lines");
    assert_eq!(got + dropped, N as u64);
}

#[test]
fn a_silent_client_does_not_block_others() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let _silent: Vec<_> = (0..5)
        .map(|_| {
            std::os::unix::net::UnixStream::connect(distill_memlogd::query_socket_path(state))
                .unwrap()
        })
        .collect();
    let mut w = raw_source(state, "a.stdout");
    writeln!(w, "hello").unwrap();
    wait_lines(state, 1);
    let t = Instant::now();
    assert_eq!(msgs(&dump(state, None)), ["hello"]);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn ensure_running_starts_exactly_one_daemon_under_a_race() {
    let tmp = tempfile::tempdir().unwrap();
    let state: PathBuf = tmp.path().to_path_buf();
    let spawns = Arc::new(AtomicUsize::new(0));
    let children = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (state, spawns, children) = (state.clone(), spawns.clone(), children.clone());
            std::thread::spawn(move || {
                ensure_running(&state, || {
                    spawns.fetch_add(1, Ordering::SeqCst);
                    let c = Command::new(BIN).arg("--state-dir").arg(&state).spawn()?;
                    children.lock().unwrap().push(c);
                    Ok(())
                })
                .unwrap()
            })
        })
        .collect();
    let started: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(spawns.load(Ordering::SeqCst), 1);
    assert_eq!(started.iter().filter(|s| **s).count(), 1);
    let mut children = std::mem::take(&mut *children.lock().unwrap());
    let pid = daemon_pid(&state).unwrap();
    assert_eq!(pid, children[0].id());

    // A second daemon on the same state dir refuses to run.
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));

    // SIGTERM stops it cleanly and removes its sockets.
    // SAFETY: our child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(children[0].wait().unwrap().success());
    assert!(!state.join("logd.sock").exists());
    assert!(!state.join("logdq.sock").exists());
    assert_eq!(daemon_pid(&state), None);
    match send_event(&state, "x.event", "nobody") {
        Err(Error::NotRunning { .. }) => {}
        other => panic!("expected NotRunning, got {other:?}"),
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let (r, _w) = pipe();
    for bad in ["", "../x", "a/b", ".hidden", "new\nline"] {
        assert!(matches!(
            send_fd(state, bad, r.as_fd()),
            Err(Error::InvalidSource { .. })
        ));
    }
    // A raw request in an unknown mode gets an error line, and the daemon keeps serving.
    let mut s =
        std::os::unix::net::UnixStream::connect(distill_memlogd::query_socket_path(state)).unwrap();
    s.write_all(b"{\"mode\":\"bogus\"}\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut s, &mut reply).unwrap();
    assert!(reply.contains("unknown mode"), "{reply}");
    assert!(stats(state).is_ok());
}
