//! End-to-end tests of the container commands (issue 5) through the real `distill` binary:
//! `run` (foreground and `-d`), `exec`, `ps`, `inspect`, `wait`, `stop`, `kill`, `rm`,
//! `update`, cgroup limits felt by real processes, volumes, and the errors of bad input.
//! Each test has its own `--root` (with the hello example image loaded) and `--state`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distill_tests::{hello_archive, Lab};

/// Polls `f` until it is true or `secs` pass.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status(lab: &Lab, name: &str) -> String {
    lab.inspect(name)["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn foreground_run_streams_output_and_returns_the_exit_code() {
    let lab = Lab::new();
    // The image's own entrypoint and cmd.
    let r = lab.distill(&["run", "--rm", "hello"]);
    r.ok();
    assert_eq!(r.stdout, "Hello from distill, world!\n");
    // CMD replaces the image's cmd, after the entrypoint.
    let r = lab.distill(&["run", "--rm", "hello", "distill"]);
    r.ok();
    assert_eq!(r.stdout, "Hello from distill, distill!\n");
    // stdout and stderr stay apart; the exit code is the container's.
    let r = lab.sh(&["--rm"], "echo to-out; echo to-err >&2; exit 3");
    r.expect_code(3);
    assert_eq!(r.stdout, "to-out\n");
    assert!(r.stderr.contains("to-err"), "stderr: {}", r.stderr);
    // -e, -w, --user, --hostname reach the process.
    let r = lab.sh(
        &[
            "--rm",
            "-e",
            "GREET=hi there",
            "-w",
            "/share",
            "--user",
            "1000:1000",
            "--hostname",
            "box",
        ],
        "echo \"$GREET|$(pwd)|$(/bin/busybox id -u):$(/bin/busybox id -g)|$(/bin/busybox hostname)\"",
    );
    r.ok();
    assert_eq!(r.stdout, "hi there|/share|1000:1000|box\n");
    // --rm leaves nothing behind.
    let ps = lab.distill(&["ps", "-a", "--format", "json"]);
    ps.ok();
    assert_eq!(ps.stdout.trim(), "[]", "{}", ps.stdout);
}

#[test]
fn an_rm_container_frees_its_name_at_exit_and_its_files_soon_after() {
    let lab = Lab::new();
    // 2000 files in its /tmp (a directory of the container's state dir): deleted after
    // `run` has returned, but the name is free as soon as it has.
    let fill = "cd /tmp && /bin/busybox seq 2000 | while read i; do echo $i > f$i; done; exit 4";
    let r = lab.sh(&["--rm", "--name", "again"], fill);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let r = lab.sh(&["--rm", "--name", "again"], "ls /tmp | /bin/busybox wc -l");
    r.ok();
    assert_eq!(r.stdout.trim(), "0", "a new container sees a fresh /tmp");
    let leftovers = |lab: &Lab| -> Vec<String> {
        let mut v = Vec::new();
        for dir in [lab.state.clone(), lab.state.join(".trash")] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with('.') {
                        v.push(format!("{}/{n}", dir.display()));
                    }
                }
            }
        }
        v
    };
    eventually(10, "the removed containers' files to be deleted", || {
        leftovers(&lab).is_empty()
    });
    let ps = lab.distill(&["ps", "-a", "--format", "json"]);
    ps.ok();
    assert_eq!(ps.stdout.trim(), "[]", "{}", ps.stdout);
}

#[test]
fn run_takes_an_archive_path_and_loads_it_first() {
    let lab = Lab::empty();
    let archive = hello_archive();
    let r = lab.distill(&["run", "--rm", archive.to_str().unwrap()]);
    r.ok();
    assert_eq!(r.stdout, "Hello from distill, world!\n");
    let images = lab.distill(&["images"]);
    images.ok();
    assert!(images.stdout.contains("hello"), "{}", images.stdout);
}

#[test]
fn sigterm_is_forwarded_while_the_output_pipe_is_full() {
    let lab = Lab::new();
    // The container writes more than a pipe holds and nobody reads it yet: distill is blocked
    // writing to its stdout when the signal comes.
    let mut child = lab
        .command(&[
            "run",
            "--rm",
            "--name",
            "flood",
            "--entrypoint",
            "/bin/sh",
            "hello",
            "-c",
            "trap 'echo got-TERM >&2; exit 7' TERM; while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(10, "the container to run", || {
        let r = lab.distill(&["inspect", "flood"]);
        r.code == 0 && r.stdout.contains("\"running\"")
    });
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let errs = std::thread::spawn(move || {
        let mut e = String::new();
        stderr.read_to_string(&mut e).map(|_| e)
    });
    // Not forwarded, the flood would go on for ever: give up (and clean up) after 20 s.
    let end = Instant::now() + Duration::from_secs(20);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = lab.distill(&["rm", "-f", "flood"]);
            panic!("SIGTERM was not forwarded while distill was blocked writing output");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drain.join().unwrap().unwrap();
    let err = errs.join().unwrap().unwrap();
    assert_eq!(st.code(), Some(7), "{err}");
    assert!(err.contains("got-TERM"), "{err}");
}

#[test]
fn a_signal_gives_128_plus_n_and_sigterm_is_forwarded() {
    let lab = Lab::new();
    // Killed from outside with SIGKILL: 137.
    let child = lab
        .command(&[
            "run",
            "--name",
            "fg",
            "--entrypoint",
            "/bin/sh",
            "hello",
            "-c",
            "while true; do /bin/busybox sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(10, "fg running", || {
        lab.distill(&["inspect", "fg"]).code == 0 && status(&lab, "fg") == "running"
    });
    lab.distill(&["kill", "fg"]).ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let s = lab.inspect("fg");
    assert_eq!(s["exit_code"], 137);
    assert_eq!(s["signal"], 9);

    // SIGTERM to `distill run` reaches the container (whose trap exits 7).
    let mut child = lab
        .command(&[
            "run",
            "--rm",
            "--name",
            "trap",
            "--entrypoint",
            "/bin/sh",
            "hello",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do /bin/busybox sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(code, Some(7));
}

#[test]
fn detached_container_lifecycle_ps_inspect_stop_rm() {
    let lab = Lab::new();
    let r = lab.sh(
        &["-d", "--name", "web", "--stop-timeout", "1"],
        "while true; do /bin/busybox sleep 0.1; done",
    );
    r.ok();
    assert_eq!(r.stdout, "web\n");
    let ps = lab.distill(&["ps"]);
    ps.ok();
    let row = ps
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("ps lists web: {}", ps.stdout));
    assert!(row.contains("running") && row.contains("hello"), "{row}");
    let list: serde_json::Value =
        serde_json::from_str(&lab.distill(&["ps", "--format", "json"]).stdout).unwrap();
    assert_eq!(list[0]["name"], "web");
    let s = lab.inspect("web");
    assert_eq!(s["status"], "running");
    let pid = s["pid"].as_i64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The shell is pid 1 in its namespace: it ignores SIGTERM, so stop needs SIGKILL after
    // the 1 s grace period.
    let t = Instant::now();
    lab.distill(&["stop", "web"]).ok();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "stop took {took:?}");
    let s = lab.inspect("web");
    assert_eq!(s["status"], "exited");
    assert_eq!(s["exit_code"], 137);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Exited containers are listed by ps -a only.
    assert!(!lab.distill(&["ps"]).stdout.contains("web "));
    assert!(lab.distill(&["ps", "-a"]).stdout.contains("exited (137"));
    lab.distill(&["wait", "web"]).ok();
    assert_eq!(lab.distill(&["wait", "web"]).stdout, "137\n");
    lab.distill(&["rm", "web"]).ok();
    let gone = lab.distill(&["inspect", "web"]);
    gone.expect_code(2);
    assert!(gone.stderr.contains("no such container"), "{}", gone.stderr);

    // rm refuses a running container without -f; rm -f kills it.
    lab.sh(
        &["-d", "--name", "busy"],
        "while true; do /bin/busybox sleep 0.1; done",
    )
    .ok();
    let r = lab.distill(&["rm", "busy"]);
    r.expect_code(2);
    assert!(r.stderr.contains("is running"), "{}", r.stderr);
    lab.distill(&["rm", "-f", "busy"]).ok();
    assert_eq!(
        lab.distill(&["ps", "-a", "--format", "json"]).stdout.trim(),
        "[]"
    );

    // A name is unique; a generated name is printed.
    lab.sh(&["-d", "--name", "dup"], "/bin/busybox sleep 5")
        .ok();
    let r = lab.sh(&["-d", "--name", "dup"], "true");
    r.expect_code(2);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    let r = lab.sh(&["-d"], "true");
    r.ok();
    assert!(r.stdout.trim().starts_with("hello-"), "{}", r.stdout);
}

#[test]
fn exec_joins_the_running_container() {
    let lab = Lab::new();
    lab.sh(
        &[
            "-d",
            "--name",
            "ex",
            "-e",
            "FROM_RUN=yes",
            "--hostname",
            "exhost",
        ],
        "echo marker > /tmp/m; while true; do /bin/busybox sleep 0.1; done",
    )
    .ok();
    eventually(5, "marker file", || {
        lab.distill(&["exec", "ex", "/bin/sh", "-c", "test -f /tmp/m"])
            .code
            == 0
    });
    let r = lab.distill(&[
        "exec",
        "-e",
        "FROM_EXEC=1",
        "ex",
        "/bin/sh",
        "-c",
        "echo \"$(cat /tmp/m) $FROM_RUN $FROM_EXEC $(/bin/busybox hostname) $(cat /proc/1/cmdline | /bin/busybox tr '\\0' ' ')\"; exit 4",
    ]);
    r.expect_code(4);
    assert_eq!(
        r.stdout.trim_end(),
        "marker yes 1 exhost /bin/sh -c echo marker > /tmp/m; while true; do /bin/busybox sleep 0.1; done"
    );
    let r = lab.distill(&["exec", "ex", "/no/such/program"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("/no/such/program"), "{}", r.stderr);
    lab.distill(&["rm", "-f", "ex"]).ok();
    let r = lab.distill(&["exec", "ex", "/bin/sh"]);
    r.expect_code(2);
    assert!(r.stderr.contains("no such container"), "{}", r.stderr);
}

#[test]
fn detached_rm_removes_the_container_when_it_exits() {
    let lab = Lab::new();
    lab.sh(&["-d", "--rm", "--name", "brief"], "/bin/busybox sleep 0.3")
        .ok();
    eventually(10, "brief removed", || {
        lab.distill(&["inspect", "brief"]).code == 2
    });
    assert!(!lab.state.join("brief").exists());
}

#[test]
fn a_memory_limit_oom_kills_and_ps_and_inspect_say_so() {
    let lab = Lab::new();
    let r = lab.distill(&[
        "run",
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
    ]);
    r.expect_code(137);
    let s = lab.inspect("hog");
    assert_eq!(s["oom_killed"], true, "{s}");
    assert_eq!(s["config"]["limits"]["memory"], 8 << 20);
    let ps = lab.distill(&["ps", "-a"]);
    let row = ps.stdout.lines().find(|l| l.starts_with("hog ")).unwrap();
    assert!(row.contains("oom-killed"), "{row}");
    // Within the limit the same command succeeds.
    lab.distill(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1M",
        "count=4",
    ])
    .ok();
}

#[test]
fn a_pids_limit_makes_fork_fail_and_update_lowers_it_at_once() {
    let lab = Lab::new();
    let spawn8 = "for i in 1 2 3 4 5 6 7 8; do /bin/busybox sleep 1 & done; wait";
    let r = lab.sh(&["--rm", "--pids-limit", "4"], spawn8);
    assert!(
        r.stderr.contains("can't fork") || r.stderr.contains("Resource temporarily unavailable"),
        "fork should fail under --pids-limit 4: {} {}",
        r.code,
        r.stderr
    );
    // Without the limit it works.
    lab.sh(&["--rm", "--pids-limit", "64"], spawn8).ok();

    lab.sh(
        &[
            "-d",
            "--name",
            "upd",
            "--pids-limit",
            "64",
            "--memory",
            "64m",
        ],
        "while true; do /bin/busybox sleep 0.1; done",
    )
    .ok();
    lab.distill(&["exec", "upd", "/bin/sh", "-c", spawn8]).ok();
    lab.distill(&["update", "upd", "--pids-limit", "3"]).ok();
    let s = lab.inspect("upd");
    assert_eq!(s["config"]["limits"]["pids"], 3);
    assert_eq!(
        s["config"]["limits"]["memory"],
        64 << 20,
        "other limits stay"
    );
    let files: Vec<String> = s["cgroup_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let pids_max = files
        .iter()
        .map(|d| std::path::Path::new(d).join("pids.max"))
        .find(|p| p.exists())
        .expect("a pids.max among the container's cgroups");
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "3");
    let r = lab.distill(&["exec", "upd", "/bin/sh", "-c", spawn8]);
    assert!(
        r.code != 0 || r.stderr.contains("can't fork"),
        "fork should fail after update: {} {}",
        r.code,
        r.stderr
    );
    // An invalid update is refused with the reason and changes nothing.
    let r = lab.distill(&["update", "upd", "--memory", "1k"]);
    r.expect_code(2);
    assert!(r.stderr.contains("--memory"), "{}", r.stderr);
    assert_eq!(lab.inspect("upd")["config"]["limits"]["memory"], 64 << 20);
    let r = lab.distill(&["update", "upd"]);
    r.expect_code(2);
    assert!(r.stderr.contains("at least one limit"), "{}", r.stderr);
}

#[test]
fn volumes_bind_host_directories_and_ro_ones_refuse_writes() {
    let lab = Lab::new();
    let ro = lab.path("ro");
    let rw = lab.path("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("in.txt"), "from host\n").unwrap();
    let r = lab.sh(
        &[
            "--rm",
            "-v",
            &format!("{}:/data:ro", ro.display()),
            "-v",
            &format!("{}:/out", rw.display()),
        ],
        "cat /data/in.txt; echo written > /out/new.txt; if echo x > /data/evil.txt; then echo WROTE; exit 1; fi",
    );
    r.ok();
    assert_eq!(r.stdout, "from host\n");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert!(!ro.join("evil.txt").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("new.txt")).unwrap(),
        "written\n"
    );
    // The image root itself is read-only; --read-only also drops the writable /tmp.
    let r = lab.sh(
        &["--rm"],
        "echo x > /tmp/ok && echo tmp-ok; echo x > /bin/evil",
    );
    assert_ne!(r.code, 0);
    assert_eq!(r.stdout, "tmp-ok\n");
    let r = lab.sh(&["--rm", "--read-only"], "echo x > /tmp/no");
    assert_ne!(r.code, 0);
}

#[test]
fn writable_dirs_live_in_the_state_dir_until_rm() {
    let lab = Lab::new();
    // /tmp and --rw paths are writable and outlive the container's processes; the root
    // elsewhere still refuses writes; --read-only drops /tmp and /run but keeps --rw paths.
    let r = lab.sh(
        &["--name", "keep", "--rw", "/var/lib/app", "--user", "1000"],
        "echo kept > /tmp/t; echo data > /var/lib/app/d; ls -ld /tmp /var/lib/app | /bin/busybox cut -c1-10; \
         if echo x > /bin/evil; then echo WROTE; fi",
    );
    r.ok();
    assert_eq!(r.stdout, "drwxrwxrwt\ndrwxr-xr-x\n");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    let rw = lab.state.join("keep").join("rw");
    assert_eq!(std::fs::read_to_string(rw.join("tmp/t")).unwrap(), "kept\n");
    let app = rw.join("var%2Flib%2Fapp");
    assert_eq!(std::fs::read_to_string(app.join("d")).unwrap(), "data\n");
    // A --rw path missing from the image belongs to the container's user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&app).unwrap().uid(), 1000);
    assert_eq!(std::fs::metadata(app.join("d")).unwrap().uid(), 1000);
    assert!(rw.join("run").is_dir());
    lab.distill(&["rm", "keep"]).ok();
    assert!(!lab.state.join("keep").exists());

    let r = lab.sh(
        &["--rm", "--read-only", "--rw", "/var/lib/app"],
        "echo y > /var/lib/app/ok && echo app-ok; echo x > /tmp/no",
    );
    assert_ne!(r.code, 0);
    assert_eq!(r.stdout, "app-ok\n");
    // --rm leaves nothing behind.
    let r = lab.sh(&["--rm", "--name", "gone"], "echo x > /tmp/x");
    r.ok();
    assert!(!lab.state.join("gone").exists());
    let r = lab.sh(&["--rm", "--rw", "relative/dir"], "true");
    r.expect_code(2);
    assert!(r.stderr.contains("relative/dir"), "{}", r.stderr);
}

#[test]
fn ready_http_returns_once_the_service_answers() {
    let lab = Lab::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hello/greeting.txt");
    let r = lab.distill(&[
        "run",
        "-d",
        "--name",
        "httpd",
        "--network",
        "host",
        "--ready-http",
        &url,
        "--ready-timeout",
        "10",
        "--entrypoint",
        "/bin/sh",
        "hello",
        "-c",
        &format!(
            "/bin/busybox sleep 0.3; exec /bin/busybox httpd -f -p 127.0.0.1:{port} -h /share"
        ),
    ]);
    r.ok();
    // It answers now, without waiting.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Write;
    write!(s, "GET /hello/greeting.txt HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
    assert!(reply.contains("Hello from distill"));
    // A container that exits first is reported.
    let r = lab.distill(&[
        "run",
        "-d",
        "--name",
        "dies",
        "--ready-http",
        "http://127.0.0.1:1/",
        "--entrypoint",
        "/bin/sh",
        "hello",
        "-c",
        "exit 1",
    ]);
    r.expect_code(1);
    assert!(r.stderr.contains("not ready"), "{}", r.stderr);
}

#[test]
fn bad_input_gives_a_clear_error() {
    let lab = Lab::new();
    let cases: &[(&[&str], &str)] = &[
        (&["inspect", "nope"], "no such container \"nope\""),
        (&["stop", "nope"], "no such container"),
        (&["kill", "nope"], "no such container"),
        (&["rm", "nope"], "no such container"),
        (&["logs", "nope"], "no such container"),
        (&["exec", "nope", "/bin/true"], "no such container"),
        (
            &["update", "nope", "--pids-limit", "5"],
            "no such container",
        ),
        (&["run", "--rm", "nosuchimage"], "no image \"nosuchimage\""),
        (
            &["run", "--rm", "/tmp/does-not-exist.oci.tar"],
            "does not exist",
        ),
        (
            &["run", "--rm", "--memory", "lots", "hello"],
            "--memory \"lots\"",
        ),
        (&["run", "--rm", "--memory", "1k", "hello"], "--memory"),
        (&["run", "--rm", "--cpus", "0", "hello"], "--cpus"),
        (
            &["run", "--ready-http", "http://127.0.0.1:1/", "hello"],
            "--ready-http needs -d",
        ),
        (
            &["run", "--rm", "--network", "bridge", "hello"],
            "--network",
        ),
        (
            &["run", "--rm", "--stop-signal", "SIGNOPE", "hello"],
            "SIGNOPE",
        ),
        (&["run", "--rm", "-v", "relative:/x", "hello"], "absolute"),
        (
            &["run", "--rm", "-v", "/no/such/dir:/x", "hello"],
            "does not exist",
        ),
        (
            &["run", "--rm", "--name", "bad/name", "hello"],
            "invalid container name",
        ),
        (
            &["run", "--rm", "--security-opt", "apparmor=x", "hello"],
            "seccomp=unconfined",
        ),
        (&["kill", "-s", "NOPE", "x"], "unknown signal"),
        (&["ps", "--format", "yaml"], "--format"),
    ];
    for (args, want) in cases {
        let r = lab.distill(args);
        assert_eq!(
            r.code, 2,
            "{args:?} should be refused: {} {}",
            r.code, r.stderr
        );
        assert!(
            r.stderr.contains(want),
            "{args:?}: stderr should say {want:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    }
    // seccomp=unconfined is accepted.
    lab.sh(&["--rm", "--security-opt", "seccomp=unconfined"], "true")
        .ok();
}
