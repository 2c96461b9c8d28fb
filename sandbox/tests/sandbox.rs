//! Real-namespace tests (run as root): each builds a busybox root in a fresh tmpfs.

mod common;

use common::*;
use distill_sandbox::{
    cap, run, spawn, spawn_in, ExitStatus, Mount, Namespaces, Proc, Resource, Root, SandboxError,
    Signal, Spec, Stdio, DOCKER_DEFAULT_CAPS,
};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn process_is_pid_1_of_new_pid_namespace() {
    if !have_busybox() {
        return;
    }
    let (st, out, err) = sh("echo $$; ls /proc | grep -c '^[0-9]'", |s| {
        s.proc = Proc::Mount;
    });
    assert!(st.success(), "{st} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "output: {out}");
    // Only our shell and the pipeline's processes are visible.
    let procs: usize = lines.last().unwrap().trim().parse().unwrap();
    assert!(procs <= 4, "too many processes visible: {out}");
}

#[test]
fn hostname_is_set_in_new_uts_namespace() {
    if !have_busybox() {
        return;
    }
    let (st, out, err) = sh("hostname", |s| s.hostname = Some("distill-test".into()));
    assert!(st.success(), "{err}");
    assert_eq!(out.trim(), "distill-test");
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(host.to_str().unwrap(), "distill-test");
}

#[test]
fn network_has_only_loopback_and_it_is_up() {
    if !have_busybox() {
        return;
    }
    let script = "ip -o link; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo PING-OK; \
                  nc -w 1 192.0.2.1 80 </dev/null; echo nc=$?";
    let (st, out, err) = sh(script, |s| {
        s.loopback = true;
        s.dev = true;
    });
    assert!(st.success(), "{st} {err}");
    let links: Vec<&str> = out.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "expected only lo: {out}");
    assert!(
        links[0].contains(": lo:") && links[0].contains("UP"),
        "{out}"
    );
    assert!(out.contains("PING-OK"), "loopback ping failed: {out} {err}");
    assert!(
        out.contains("nc=1"),
        "connect to an outside address must fail: {out} {err}"
    );
    assert!(err.contains("unreachable"), "{err}");

    // Without `loopback`, lo stays down.
    let (_, out, _) = sh("ip -o link", |_| {});
    assert!(out.contains(": lo:") && !out.contains(",UP"), "{out}");
}

#[test]
fn readonly_bind_cannot_be_written_and_rw_bind_can() {
    if !have_busybox() {
        return;
    }
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data"), "hello").unwrap();
    let (st, out, err) = sh(
        "cat /ro/data; touch /ro/new && echo RO-WRITABLE; touch /rw/new && echo RW-OK",
        |s| {
            s.mounts.push(Mount::Bind {
                src: ro.path().into(),
                dst: "/ro".into(),
                readonly: true,
                recursive: false,
            });
            s.mounts.push(Mount::Bind {
                src: rw.path().into(),
                dst: "/rw".into(),
                readonly: false,
                recursive: false,
            });
        },
    );
    assert!(st.success(), "{err}");
    assert!(out.starts_with("hello"), "{out}");
    assert!(!out.contains("RO-WRITABLE"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(out.contains("RW-OK"), "{out}");
    assert!(!ro.path().join("new").exists());
    assert!(rw.path().join("new").exists());
}

#[test]
fn host_files_outside_the_root_are_invisible() {
    if !have_busybox() {
        return;
    }
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("secret"), "x").unwrap();
    let script = format!(
        "ls -a /; test -e {} && echo SEEN; test -e /etc/passwd && echo ETC; test -e /work && echo WORK; exit 0",
        secret.path().join("secret").display()
    );
    let (st, out, err) = sh(&script, |_| {});
    assert!(st.success(), "{err}");
    assert!(
        !out.contains("SEEN") && !out.contains("ETC") && !out.contains("WORK"),
        "{out}"
    );
    let entries: Vec<&str> = out.lines().collect();
    assert_eq!(entries, vec![".", "..", "bin"], "{out}");
    // Nothing leaked into the host's mount table.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("/bin/busybox"), "mount leaked to the host");
}

#[test]
fn masked_proc_paths_are_empty_or_readonly() {
    if !have_busybox() {
        return;
    }
    // A path missing on this kernel (kcore in some VMs) still prints 0.
    let script = "cat /proc/kcore 2>/dev/null | wc -c; cat /proc/keys | wc -c; \
                  cat /proc/timer_list | wc -c; \
                  ls /proc/acpi 2>/dev/null | wc -l; \
                  echo x > /proc/sys/kernel/hostname && echo SYS-WRITABLE; \
                  grep -c . /proc/self/status";
    let (st, out, err) = sh(script, |s| {
        s.proc = Proc::Masked;
        s.dev = true;
    });
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..4], &["0", "0", "0", "0"], "{out}");
    assert!(!out.contains("SYS-WRITABLE"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    let status_lines: usize = lines[4].parse().unwrap();
    assert!(status_lines > 10, "/proc itself must still work: {out}");
}

#[test]
fn umask_and_env_are_exactly_as_given() {
    if !have_busybox() {
        return;
    }
    let mut spec = busybox_spec(&["env"]);
    spec.env = vec![
        ("PATH".into(), "/bin".into()),
        ("A".into(), "1".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    let (st, out, _) = capture(spec);
    assert!(st.success());
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, vec!["A=1", "LANG=C.UTF-8", "PATH=/bin"]);

    let (st, out, _) = sh("umask; touch /tmp/f; stat -c %a /tmp/f", |s| {
        s.umask = 0o027;
        s.mounts.push(Mount::Tmpfs {
            dst: "/tmp".into(),
            size: Some(1 << 20),
            mode: 0o1777,
        });
    });
    assert!(st.success());
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["0027", "640"]);
}

#[test]
fn exec_failure_is_a_clear_error() {
    if !have_busybox() {
        return;
    }
    let spec = busybox_spec(&["/bin/nonexistent", "x"]);
    match spawn(&spec) {
        Err(SandboxError::Exec { program, source }) => {
            assert_eq!(program, "/bin/nonexistent");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    let spec = busybox_spec(&["nosuchtool"]);
    let e = spawn(&spec).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("exec nosuchtool (searched PATH=/bin): No such file"),
        "{e}"
    );
}

#[test]
fn setup_failures_name_the_step_and_paths() {
    if !have_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let mut spec = busybox_spec(&["true"]);
    spec.mounts.push(Mount::Bind {
        src: missing.clone(),
        dst: "/store/abc".into(),
        readonly: true,
        recursive: false,
    });
    let e = spawn(&spec).unwrap_err().to_string();
    assert!(
        e.contains(&format!("bind mount {} at /store/abc", missing.display())),
        "{e}"
    );
    assert!(e.contains("No such file or directory"), "{e}");

    let mut spec = busybox_spec(&["true"]);
    spec.cwd = "/build".into();
    let e = spawn(&spec).unwrap_err().to_string();
    assert_eq!(e, "chdir /build: No such file or directory (os error 2)");

    let mut spec = busybox_spec(&["true"]);
    spec.mounts.push(Mount::Dir {
        dst: "/a/../b".into(),
        mode: 0o755,
    });
    let e = spawn(&spec).unwrap_err();
    assert!(matches!(e, SandboxError::Invalid { .. }), "{e}");
    let idx = spec.mounts.len() - 1;
    assert!(e.to_string().contains(&format!("mounts[{idx}].dst")), "{e}");

    let mut spec = busybox_spec(&["true"]);
    spec.namespaces.uts = false;
    spec.hostname = Some("x".into());
    assert!(spawn(&spec)
        .unwrap_err()
        .to_string()
        .contains("field hostname"));
}

#[test]
fn die_with_parent_kills_the_child_when_the_spawning_thread_exits() {
    if !have_busybox() {
        return;
    }
    let mut child = std::thread::spawn(|| {
        let mut spec = busybox_spec(&["sleep", "100"]);
        spec.die_with_parent = true;
        spawn(&spec).unwrap()
    })
    .join()
    .unwrap();
    let start = Instant::now();
    let st = child.wait().unwrap();
    assert_eq!(st, ExitStatus::Signaled(libc::SIGKILL));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn wait_for_parent_blocks_until_release() {
    if !have_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = busybox_spec(&["sh", "-c", "cat /shared/marker > /shared/seen"]);
    spec.wait_for_parent = true;
    spec.mounts.push(Mount::Bind {
        src: dir.path().into(),
        dst: "/shared".into(),
        readonly: false,
        recursive: false,
    });
    let mut child = spawn(&spec).unwrap();
    assert!(child.is_waiting());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "child ran before release"
    );
    assert!(!dir.path().join("seen").exists());
    // What the parent does before release is visible to the program.
    std::fs::write(dir.path().join("marker"), "from-parent").unwrap();
    child.release().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        "from-parent"
    );

    // An exec failure after release is reported by release().
    let mut spec = busybox_spec(&["/nope"]);
    spec.wait_for_parent = true;
    let mut child = spawn(&spec).unwrap();
    let e = child.release().unwrap_err();
    assert!(matches!(e, SandboxError::Exec { .. }), "{e}");

    // Dropping an unreleased child makes it exit without running the program.
    let mut spec = busybox_spec(&["sleep", "100"]);
    spec.wait_for_parent = true;
    let mut child = spawn(&spec).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(1));
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("{key} missing in {status}"))
}

#[test]
fn capabilities_are_dropped_and_no_new_privs_set() {
    if !have_busybox() {
        return;
    }
    let (st, out, err) = sh("cat /proc/self/status", |s| {
        s.proc = Proc::Mount;
        s.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
        s.no_new_privs = true;
    });
    assert!(st.success(), "{err}");
    let want: u64 = DOCKER_DEFAULT_CAPS.iter().map(|c| 1u64 << c).sum();
    for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let got = u64::from_str_radix(&status_field(&out, key), 16).unwrap();
        assert_eq!(got, want, "{key} {got:x} != {want:x}");
    }
    assert_eq!(status_field(&out, "CapAmb:"), "0000000000000000");
    // Nothing inheritable: a program's `+i` file capabilities get nothing (CVE-2022-24769).
    assert_eq!(status_field(&out, "CapInh:"), "0000000000000000");
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1");

    // Non-root user with one capability kept: bounding set holds only it, effective is empty
    // after exec (no ambient caps), ids are as given.
    let (st, out, err) = sh("id; cat /proc/self/status", |s| {
        s.proc = Proc::Mount;
        s.uid = 1000;
        s.gid = 1000;
        s.groups = vec![1000, 20];
        s.capabilities = Some(vec![cap::NET_BIND_SERVICE]);
    });
    assert!(st.success(), "{err}");
    assert!(
        out.starts_with("uid=1000 gid=1000 groups=20,1000")
            || out.starts_with("uid=1000 gid=1000 groups=1000,20"),
        "{out}"
    );
    assert_eq!(status_field(&out, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&out, "CapInh:"), "0000000000000000");
    assert_eq!(
        u64::from_str_radix(&status_field(&out, "CapBnd:"), 16).unwrap(),
        1 << cap::NET_BIND_SERVICE
    );
    assert_eq!(status_field(&out, "NoNewPrivs:"), "0");
}

#[test]
fn rlimits_stdio_null_and_dev() {
    if !have_busybox() {
        return;
    }
    let (st, out, err) = sh(
        "ulimit -n; ls /dev | sort | tr '\\n' ' '; echo; readlink /dev/ptmx; echo hi > /dev/null && echo NULL-OK; cat </dev/stdin | wc -c",
        |s| {
            s.dev = true;
            s.proc = Proc::Mount;
            s.rlimits = vec![(Resource::RLIMIT_NOFILE, 64, 128)];
            s.stdin = Stdio::Null;
        },
    );
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "64");
    for n in [
        "full", "mqueue", "null", "pts", "ptmx", "random", "shm", "stderr", "stdin", "stdout",
        "tty", "urandom", "zero", "fd",
    ] {
        assert!(
            lines[1].split(' ').any(|e| e == n),
            "/dev lacks {n}: {}",
            lines[1]
        );
    }
    assert_eq!(lines[2], "pts/ptmx");
    assert_eq!(lines[3], "NULL-OK");
    assert_eq!(lines[4].trim(), "0");
}

#[test]
fn root_dir_readonly_and_symlinks_cannot_escape() {
    if !have_busybox() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("bin")).unwrap();
    distill_sandbox::copy_executable(BUSYBOX.as_ref(), &root.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", root.path().join("bin/touch")).unwrap();
    std::os::unix::fs::symlink("busybox", root.path().join("bin/ls")).unwrap();
    // A hostile image: /evil points at a host directory by absolute path. Inside the root
    // that path must mean <root>/<victim path>, which the image also contains.
    std::os::unix::fs::symlink(victim.path(), root.path().join("evil")).unwrap();
    let inner_dir = root.path().join(victim.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inner_dir).unwrap();
    // A dangling absolute symlink is refused rather than followed to the host.
    std::os::unix::fs::symlink(victim.path().join("nothere"), root.path().join("dangling"))
        .unwrap();
    let mut spec = Spec::new([
        "sh",
        "-c",
        "touch /x && echo ROOT-WRITABLE; touch /scratch/y && echo TMP-OK; ls /evil",
    ]);
    spec.env = vec![("PATH".into(), "/bin".into())];
    spec.root = Root::Dir(root.path().into());
    spec.readonly_root = true;
    spec.mounts = vec![
        Mount::Tmpfs {
            dst: "/scratch".into(),
            size: None,
            mode: 0o755,
        },
        Mount::Tmpfs {
            dst: "/evil/inside".into(),
            size: None,
            mode: 0o755,
        },
    ];
    let mut bad = Spec::new(["true"]);
    bad.root = Root::Dir(root.path().into());
    bad.mounts = vec![Mount::Dir {
        dst: "/dangling/sub".into(),
        mode: 0o755,
    }];
    let e = spawn(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with("create directory /dangling/sub: create mount point"),
        "{e}"
    );
    assert!(!victim.path().join("nothere").exists());

    let (st, out, err) = capture(spec);
    assert!(st.success(), "{st} {out} {err}");
    assert!(!out.contains("ROOT-WRITABLE"), "{out}");
    assert!(out.contains("TMP-OK"), "{out}");
    assert!(out.contains("inside"), "{out}");
    // The mount point was created inside the root (at <root>/<victim path>), not on the host.
    assert!(
        !victim.path().join("inside").exists(),
        "symlink escaped the root"
    );
    let inner = root
        .path()
        .join(victim.path().strip_prefix("/").unwrap())
        .join("inside");
    assert!(inner.is_dir(), "{}", inner.display());
}

#[test]
fn spawn_in_joins_a_running_sandbox() {
    if !have_busybox() {
        return;
    }
    let mut spec = busybox_spec(&["sleep", "100"]);
    spec.hostname = Some("outer".into());
    spec.proc = Proc::Mount;
    spec.mounts.push(Mount::Tmpfs {
        dst: "/only-inside".into(),
        size: None,
        mode: 0o755,
    });
    let mut container = spawn(&spec).unwrap();

    let mut exec = Spec::new([
        "sh",
        "-c",
        "hostname; echo $$; ls -d /only-inside; ls /proc | grep -c '^[0-9]'",
    ]);
    exec.env = vec![("PATH".into(), "/bin".into())];
    exec.cwd = "/only-inside".into();
    exec.no_new_privs = true;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    exec.stdout = Stdio::Fd(out_w);
    let mut joined = spawn_in(
        container.pid(),
        &Namespaces {
            cgroup: false,
            ..Namespaces::all()
        },
        &exec,
    )
    .unwrap();
    exec.stdout = Stdio::Inherit;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(out_r), &mut out).unwrap();
    assert!(joined.wait().unwrap().success(), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "outer");
    let pid: i32 = lines[1].parse().unwrap();
    assert!(
        pid > 1,
        "joined process must be in the container's pid ns but not init: {out}"
    );
    assert_eq!(lines[2], "/only-inside");
    assert!(lines[3].trim().parse::<u32>().unwrap() <= 5, "{out}");

    container.kill(Signal::SIGKILL).unwrap();
    assert_eq!(
        container.wait().unwrap(),
        ExitStatus::Signaled(libc::SIGKILL)
    );
    // The container is gone: joining fails with a clear error.
    let e = spawn_in(container.pid(), &Namespaces::all(), &exec).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("/proc/{}/", container.pid())),
        "{e}"
    );
}

#[test]
fn run_returns_exit_codes_and_signals() {
    if !have_busybox() {
        return;
    }
    let mut spec = busybox_spec(&["sh", "-c", "exit 7"]);
    spec.stdout = Stdio::Null;
    assert_eq!(run(&spec).unwrap(), ExitStatus::Exited(7));
    let spec = busybox_spec(&["sh", "-c", "kill -TERM $$; sleep 1"]);
    // PID 1 ignores signals it has no handler for; without a pid namespace the shell dies.
    let mut spec2 = spec;
    spec2.namespaces.pid = false;
    assert_eq!(run(&spec2).unwrap(), ExitStatus::Signaled(libc::SIGTERM));
}

#[test]
fn concurrent_spawns_from_a_busy_multithreaded_parent() {
    if !have_busybox() {
        return;
    }
    // One thread keeps the allocator busy while four others spawn: the child must never
    // allocate or take a lock that another thread held at clone time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let churn = std::thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
            std::hint::black_box(v);
        }
    });
    let workers: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mut spec = busybox_spec(&["sh", "-c", "exit $0", &i.to_string()]);
                    spec.uid = 1000;
                    spec.capabilities = Some(vec![]);
                    spec.dev = true;
                    spec.proc = Proc::Masked;
                    assert_eq!(run(&spec).unwrap(), ExitStatus::Exited(i));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}

#[test]
fn preserve_fds_are_passed_at_3_and_others_closed() {
    if !have_busybox() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), "first").unwrap();
    std::fs::write(dir.path().join("b"), "second").unwrap();
    let a = std::fs::File::open(dir.path().join("a")).unwrap();
    let b = std::fs::File::open(dir.path().join("b")).unwrap();
    // A descriptor the caller leaks without CLOEXEC must not reach the program.
    let leaked = nix::fcntl::open(
        &dir.path().join("a"),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let (st, out, err) = sh(
        "cat <&3; echo; cat <&4; echo; ls /proc/self/fd | sort -n | tr '\\n' ' '",
        |s| {
            s.proc = Proc::Mount;
            s.preserve_fds = vec![a.into(), b.into()];
        },
    );
    drop(leaked);
    assert!(st.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "first");
    assert_eq!(lines[1], "second");
    // 0-2, 3-4, and the fd ls itself uses to read the directory.
    let fds: Vec<i32> = lines[2]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert!(fds.len() <= 6 && fds[..5] == [0, 1, 2, 3, 4], "{out}");
}

#[test]
fn pre_exec_can_stop_for_a_tracer_and_errors_are_reported() {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    if !have_busybox() {
        return;
    }
    // The tracer's pattern: PTRACE_TRACEME + SIGSTOP in the child; spawn returns before it.
    let mut spec = busybox_spec(&["sh", "-c", "exit 3"]);
    spec.pre_exec = Some(Box::new(|| {
        ptrace::traceme().map_err(std::io::Error::from)?;
        nix::sys::signal::raise(Signal::SIGSTOP).map_err(std::io::Error::from)
    }));
    let mut child = spawn(&spec).unwrap();
    let pid = child.pid();
    assert_eq!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Stopped(pid, Signal::SIGSTOP)
    );
    ptrace::setoptions(pid, ptrace::Options::PTRACE_O_TRACEEXEC).unwrap();
    ptrace::cont(pid, None).unwrap();
    // Next stop: the exec event.
    match waitpid(pid, Some(WaitPidFlag::empty())).unwrap() {
        WaitStatus::PtraceEvent(p, Signal::SIGTRAP, e) => {
            assert_eq!(p, pid);
            assert_eq!(e, ptrace::Event::PTRACE_EVENT_EXEC as i32);
        }
        other => panic!("expected the exec event, got {other:?}"),
    }
    child.exec_result().unwrap();
    ptrace::detach(pid, None).unwrap();
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(3));

    // A failing hook surfaces as a setup error from wait().
    let mut spec = busybox_spec(&["true"]);
    spec.pre_exec = Some(Box::new(|| {
        Err(std::io::Error::from_raw_os_error(libc::EPERM))
    }));
    let mut child = spawn(&spec).unwrap();
    let e = child.wait().unwrap_err().to_string();
    assert_eq!(e, "pre_exec hook: Operation not permitted (os error 1)");

    // So does an exec failure after the hook, through exec_result().
    let mut spec = busybox_spec(&["/missing"]);
    spec.pre_exec = Some(Box::new(|| Ok(())));
    let mut child = spawn(&spec).unwrap();
    assert!(matches!(
        child.exec_result(),
        Err(SandboxError::Exec { .. })
    ));
    assert_eq!(child.wait().unwrap(), ExitStatus::Exited(127));
}

/// A cgroup (v1 `pids` or v2) this test may create and move processes into.
fn test_cgroup(tag: &str) -> (std::path::PathBuf, &'static str) {
    for (base, key) in [
        ("/sys/fs/cgroup/pids", ":pids:"),
        ("/sys/fs/cgroup/unified", "0::"),
        ("/sys/fs/cgroup", "0::"),
    ] {
        if std::path::Path::new(base).join("cgroup.procs").exists() {
            let dir = std::path::Path::new(base)
                .join(format!("distill-sandbox-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
            return (dir, key);
        }
    }
    panic!(
        "no writable cgroup hierarchy (v1 pids or v2) under /sys/fs/cgroup; run the tests as root"
    );
}

/// Spawn `cat /proc/self/cgroup` with a cgroup namespace, move it into a fresh cgroup while it
/// waits, and return the line of that hierarchy.
fn cgroup_line_seen_inside(late: bool) -> String {
    let (cg, key) = test_cgroup(if late { "late" } else { "early" });
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut spec = busybox_spec(&["cat", "/proc/self/cgroup"]);
    spec.proc = Proc::Mount;
    spec.namespaces.cgroup = true;
    spec.wait_for_parent = true;
    spec.return_early = true;
    spec.cgroup_ns_after_release = late;
    spec.stdout = Stdio::Fd(out_w);
    let mut child = spawn(&spec).unwrap();
    spec.stdout = Stdio::Inherit;
    std::fs::write(cg.join("cgroup.procs"), child.pid().to_string()).unwrap();
    child.release().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(out_r), &mut out).unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    let _ = std::fs::remove_dir(&cg);
    out.lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no {key} line in {out}"))
        .to_string()
}

#[test]
fn cgroup_namespace_after_release_shows_own_cgroup_as_root() {
    if !have_busybox() {
        return;
    }
    let (probe, _) = test_cgroup("probe");
    std::fs::remove_dir(probe).unwrap();
    let late = cgroup_line_seen_inside(true);
    assert!(late.ends_with(":/"), "{late}");
    // Control: a namespace made at clone sees the move as leaving its root.
    let early = cgroup_line_seen_inside(false);
    assert!(early.contains("distill-sandbox-early"), "{early}");

    // The option needs a cgroup namespace and wait_for_parent.
    let mut spec = busybox_spec(&["true"]);
    spec.cgroup_ns_after_release = true;
    let e = spawn(&spec).unwrap_err();
    assert!(e.to_string().contains("cgroup_ns_after_release"), "{e}");
}

/// A busybox spec running `script` with the host directory `out` at /out.
fn out_spec(script: &str, out: &Path) -> Spec {
    let mut spec = busybox_spec(&["sh", "-c", script]);
    spec.mounts.push(Mount::Bind {
        src: out.into(),
        dst: "/out".into(),
        readonly: false,
        recursive: false,
    });
    spec
}

/// A spec whose setup fails: a tmpfs to mount below a file of `root`.
fn failing_setup_spec(root: &Path) -> Spec {
    std::fs::write(root.join("file"), "x").unwrap();
    let mut spec = busybox_spec(&["true"]);
    spec.root = Root::Dir(root.into());
    spec.mounts.push(Mount::Tmpfs {
        dst: "/file/below".into(),
        size: None,
        mode: 0o755,
    });
    spec
}

fn assert_setup_failure(e: &SandboxError) {
    assert!(
        e.to_string()
            .starts_with("mount tmpfs at /file/below: create mount point"),
        "{e}"
    );
}

/// Releases `child` (a spawn of an [`out_spec`]), checks that it succeeded and returns what it
/// wrote to `out/name`.
fn release_and_read(mut child: distill_sandbox::Child, out: &Path, name: &str) -> String {
    child.release().unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(out.join(name)).unwrap()
}

#[test]
fn return_early_reports_setup_errors_from_release() {
    if !have_busybox() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut spec = failing_setup_spec(root.path());
    spec.wait_for_parent = true;
    spec.return_early = true;
    let mut child = spawn(&spec).expect("return_early: spawn returns before the mounts");
    assert_setup_failure(&child.release().unwrap_err());
    assert!(
        child.try_wait().unwrap().is_some(),
        "failed child was not reaped"
    );

    // Success path: the program runs after release.
    let dir = tempfile::tempdir().unwrap();
    let mut spec = out_spec("echo ran > /out/x", dir.path());
    spec.wait_for_parent = true;
    spec.return_early = true;
    let child = spawn(&spec).unwrap();
    assert!(child.is_waiting());
    assert_eq!(release_and_read(child, dir.path(), "x"), "ran\n");

    // Without wait_for_parent there is nothing to release: `release` waits for the exec, or
    // says what prevented it (a setup step, or the exec itself).
    let mut spec = out_spec("echo alone > /out/y", dir.path());
    spec.return_early = true;
    let child = spawn(&spec).unwrap();
    assert!(!child.is_waiting());
    assert_eq!(release_and_read(child, dir.path(), "y"), "alone\n");
    let mut spec = failing_setup_spec(root.path());
    spec.return_early = true;
    assert_setup_failure(&spawn(&spec).unwrap().release().unwrap_err());
    let mut spec = busybox_spec(&["/no/such/program"]);
    spec.return_early = true;
    let e = spawn(&spec).unwrap().release().unwrap_err();
    assert!(e.to_string().contains("/no/such/program"), "{e}");
}

#[test]
fn seccomp_filter_refuses_namespaces_and_mounts() {
    if !have_busybox() {
        return;
    }
    let script = "grep Seccomp: /proc/self/status; \
                  unshare -m true 2>/dev/null && echo UNSHARED; \
                  mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; echo done";
    let (st, out, err) = sh(script, |s| {
        s.proc = Proc::Mount;
        s.mounts.push(Mount::Symlink {
            target: "busybox".into(),
            dst: "/bin/unshare".into(),
        });
        s.mounts.push(Mount::Symlink {
            target: "busybox".into(),
            dst: "/bin/mount".into(),
        });
        s.mounts.push(Mount::Dir {
            dst: "/tmp".into(),
            mode: 0o1777,
        });
        s.no_new_privs = true;
        s.seccomp = Some(distill_sandbox::SeccompFilter::docker_default());
    });
    assert!(st.success(), "{st} {err}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        !out.contains("UNSHARED") && !out.contains("MOUNTED"),
        "{out}"
    );
    assert!(out.contains("done"), "{out}");

    // Without no_new_privs and without CAP_SYS_ADMIN the kernel refuses: a clear error.
    let mut spec = busybox_spec(&["true"]);
    spec.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
    spec.seccomp = Some(distill_sandbox::SeccompFilter::docker_default());
    let e = run(&spec).unwrap_err().to_string();
    assert!(e.contains("seccomp") && e.contains("no_new_privs"), "{e}");
}

/// CVE-2019-5736: while a joined process is still a copy of the caller's binary (here: held in
/// its `pre_exec` hook, after it dropped to the container's capabilities), processes of the
/// container cannot open it through /proc/<pid>/exe.
#[test]
fn spawn_in_child_is_not_dumpable() {
    if !have_busybox() {
        return;
    }
    let shared = tempfile::tempdir().unwrap();
    let script = "while [ ! -e /shared/go ]; do sleep 0.05; done; \
                  for p in /proc/[0-9]*; do \
                    t=$(readlink $p/exe 2>/dev/null); \
                    case \"$t\" in /bin/busybox|'') ;; *) echo SAW $p $t; cat $p/exe >/dev/null 2>&1 && echo OPENED $p $t;; esac; \
                    echo seen $p; \
                  done > /shared/out; touch /shared/done; sleep 100";
    let mut spec = busybox_spec(&["sh", "-c", script]);
    spec.proc = Proc::Mount;
    spec.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
    spec.mounts.push(Mount::Bind {
        src: shared.path().into(),
        dst: "/shared".into(),
        readonly: false,
        recursive: false,
    });
    spec.dev = true;
    let mut container = spawn(&spec).unwrap();
    let mut exec = busybox_spec(&["true"]);
    exec.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
    // Hold the joined process, already at the container's capabilities, until the scan ends.
    exec.pre_exec = Some(Box::new(|| {
        while unsafe { libc::access(c"/shared/done".as_ptr(), libc::F_OK) } != 0 {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
        }
        Ok(())
    }));
    let mut joined = spawn_in(container.pid(), &Namespaces::all(), &exec).unwrap();
    std::fs::write(shared.path().join("go"), "").unwrap();
    joined.exec_result().unwrap();
    let st = joined.wait().unwrap();
    assert!(st.success(), "{st}");
    container.kill(Signal::SIGKILL).unwrap();
    container.wait().unwrap();
    let out = std::fs::read_to_string(shared.path().join("out")).unwrap();
    assert!(
        out.lines().filter(|l| l.starts_with("seen")).count() >= 2,
        "{out}"
    );
    assert!(!out.contains("OPENED") && !out.contains("SAW"), "{out}");
}

/// reprotest's domain_host variation runs builds inside `unshare -r`, where setgroups is
/// refused: a spawn as the current ids must still work. The test re-runs itself that way.
#[test]
fn spawn_works_inside_unshare_r() {
    if !have_busybox() {
        return;
    }
    if std::env::var_os("DISTILL_SANDBOX_INNER").is_some() {
        let (st, out, err) = sh(
            "id -u; id -g; hostname; echo ok > /tmp/x && cat /tmp/x",
            |s| {
                s.hostname = Some("inner".into());
                s.proc = Proc::Mount;
                s.dev = true;
                s.mounts.push(Mount::Tmpfs {
                    dst: "/tmp".into(),
                    size: None,
                    mode: 0o1777,
                });
                s.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
                s.no_new_privs = true;
            },
        );
        assert!(st.success(), "{st} {err}");
        assert_eq!(out, "0\n0\ninner\nok\n");
        println!("INNER-OK");
        return;
    }
    assert!(
        std::process::Command::new("unshare")
            .arg("--help")
            .output()
            .is_ok(),
        "unshare is missing: run scripts/install-deps (apt-get install util-linux)"
    );
    let out = std::process::Command::new("unshare")
        .arg("-r")
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spawn_works_inside_unshare_r",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DISTILL_SANDBOX_INNER", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("INNER-OK"), "{text}");
}

/// The inode of a namespace link (`/proc/<pid>/ns/<kind>`).
fn ns_inode(path: &str) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[test]
fn premade_namespaces_are_joined_with_lo_up() {
    if !have_busybox() {
        return;
    }
    let premade = distill_sandbox::premake_namespaces(true, true)
        .unwrap()
        .wait()
        .unwrap();
    // What the child will join, seen through the thread-independent descriptors.
    let fds = premade.fds();
    let want: Vec<u64> = fds
        .iter()
        .map(|fd| ns_inode(&format!("/proc/self/fd/{fd}")))
        .collect();
    assert_ne!(
        want[0],
        ns_inode("/proc/self/ns/net"),
        "a new net namespace"
    );
    assert_ne!(
        want[1],
        ns_inode("/proc/self/ns/ipc"),
        "a new ipc namespace"
    );
    let (st, out, err) = sh(
        "stat -L -c %i /proc/self/ns/net /proc/self/ns/ipc; ip -o link; \
         ping -c 1 -W 1 127.0.0.1 >/dev/null && echo PING-OK",
        |s| {
            s.loopback = true;
            s.dev = true;
            s.proc = Proc::Mount;
            s.premade = Some(premade);
        },
    );
    assert!(st.success(), "{st} {err}");
    let inodes: Vec<u64> = out.lines().take(2).map(|l| l.parse().unwrap()).collect();
    assert_eq!(inodes, want, "{out}");
    assert!(out.contains(": lo:") && out.contains("UP"), "{out}");
    assert!(out.contains("PING-OK"), "{out} {err}");

    // Premade namespaces the spec does not ask for are refused, not silently joined.
    let mut spec = busybox_spec(&["true"]);
    spec.namespaces.net = false;
    spec.premade = Some(
        distill_sandbox::premake_namespaces(false, false)
            .unwrap()
            .wait()
            .unwrap(),
    );
    let e = spawn(&spec).unwrap_err();
    assert!(e.to_string().contains("premade"), "{e}");
}

#[test]
fn join_cgroups_moves_the_child_in_before_it_runs() {
    if !have_busybox() {
        return;
    }
    let (cg, key) = test_cgroup("join");
    let tasks = if key == ":pids:" {
        "tasks"
    } else {
        "cgroup.procs"
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(cg.join(tasks))
        .unwrap();
    let again = f.try_clone().unwrap();
    let (st, out, err) = sh("cat /proc/self/cgroup", |s| {
        s.proc = Proc::Mount;
        s.join_cgroups = vec![f.into()];
    });
    assert!(st.success(), "{st} {err}");
    let line = out.lines().find(|l| l.contains(key)).unwrap_or_default();
    assert!(line.contains("distill-sandbox-join"), "{out}");
    // With a cgroup namespace made once it is in (no wait_for_parent needed), that cgroup
    // is its root; and the whole setup runs without waiting for the caller.
    let mut spec = busybox_spec(&["cat", "/proc/self/cgroup"]);
    spec.proc = Proc::Mount;
    spec.namespaces.cgroup = true;
    spec.cgroup_ns_after_release = true;
    spec.return_early = true;
    spec.join_cgroups = vec![again.into()];
    let out = released_output(spec);
    let _ = std::fs::remove_dir(&cg);
    let line = out.lines().find(|l| l.contains(key)).unwrap_or_default();
    assert!(line.ends_with(":/"), "{out}");
}

#[test]
fn return_early_child_gets_the_callers_cpu_set() {
    if !have_busybox() {
        return;
    }
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let mine = status_field(&own, "Cpus_allowed_list");
    let mut spec = busybox_spec(&["cat", "/proc/self/status"]);
    spec.proc = Proc::Mount;
    spec.wait_for_parent = true;
    spec.return_early = true;
    let out = released_output(spec);
    assert_eq!(status_field(&out, "Cpus_allowed_list"), mine, "{out}");
}

/// Spawns `spec` with its stdout on a pipe, releases it and returns what it wrote, once it
/// has exited successfully.
fn released_output(mut spec: Spec) -> String {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    spec.stdout = Stdio::Fd(out_w);
    let mut child = spawn(&spec).unwrap();
    drop(spec); // our copy of the pipe's write end
    child.release().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(out_r), &mut out).unwrap();
    assert!(child.wait().unwrap().success(), "{out}");
    out
}

#[test]
fn vfork_child_builds_its_world_and_leaves_the_caller_intact() {
    if !have_busybox() {
        return;
    }
    // The caller's signal mask after a vfork child that mounted, resolved and exec'd (all
    // signals are blocked around the clone) is as it was.
    let mask_before = current_sigmask();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = out_spec(
        "echo vforked > /out/v; ls /dev/null /proc/1/status",
        dir.path(),
    );
    spec.proc = Proc::Masked;
    spec.dev = true;
    spec.vfork = true;
    let child = spawn(&spec).unwrap();
    assert!(!child.is_waiting());
    assert_eq!(release_and_read(child, dir.path(), "v"), "vforked\n");
    assert_eq!(current_sigmask(), mask_before);
    // A setup failure comes back from spawn, the child reaped; so does a failed exec.
    let root = tempfile::tempdir().unwrap();
    let mut spec = failing_setup_spec(root.path());
    spec.vfork = true;
    assert_setup_failure(&spawn(&spec).unwrap_err());
    let mut spec = busybox_spec(&["/no/such/program"]);
    spec.vfork = true;
    let e = spawn(&spec).unwrap_err().to_string();
    assert!(e.contains("/no/such/program"), "{e}");
    // Refused where the caller would have to run while the child waits.
    for set in [
        |s: &mut Spec| s.wait_for_parent = true,
        |s: &mut Spec| s.return_early = true,
    ] {
        let mut spec = busybox_spec(&["true"]);
        spec.vfork = true;
        set(&mut spec);
        assert!(spawn(&spec).unwrap_err().to_string().contains("vfork"));
    }
}

/// This thread's blocked signals.
fn current_sigmask() -> Vec<i32> {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: reads the mask into a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set) };
    (1..64)
        .filter(|s| unsafe { libc::sigismember(&set, *s) } == 1)
        .collect()
}

/// Through the exec shim (CVE-2019-5736): the program runs with its argv and env, exec
/// failures are reported as without it (also for a PATH search), and a script whose
/// interpreter is `/proc/self/exe` gets the sealed shim, which exits 127, never this binary.
#[test]
fn the_exec_shim_runs_the_program_and_never_the_callers_binary() {
    if !have_busybox() {
        return;
    }
    let shim = distill_sandbox::ExecShim::new().unwrap();
    let (st, out, err) = sh("echo \"$0 $1 $X\"", |s| {
        s.exec_shim = Some(shim.fd());
        s.argv.push("zero".into());
        s.argv.push("one".into());
        s.env.push(("X".into(), "x-value".into()));
    });
    assert!(st.success(), "{err}");
    assert_eq!(out, "zero one x-value\n");
    let mut spec = busybox_spec(&["/bin/nonexistent", "x"]);
    spec.exec_shim = Some(shim.fd());
    match spawn(&spec) {
        Err(SandboxError::Exec { program, source }) => {
            assert_eq!(program, "/bin/nonexistent");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    let mut spec = busybox_spec(&["nosuchtool"]);
    spec.exec_shim = Some(shim.fd());
    let e = spawn(&spec).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("exec nosuchtool (searched PATH=/bin): No such file"),
        "{e}"
    );
    // The script, written into the sandbox's /tmp, then run by a second spawn's shim.
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut spec = busybox_spec(&["/x/evil"]);
    spec.mounts.push(Mount::Bind {
        src: dir.path().to_path_buf(),
        dst: "/x".into(),
        readonly: true,
        recursive: false,
    });
    spec.proc = distill_sandbox::Proc::Mount;
    spec.exec_shim = Some(shim.fd());
    let (st, out, err) = capture(spec);
    assert_eq!(st.code(), Some(127), "{out}{err}");
    assert_eq!(out, "");
}

/// `Spec::user_namespace`: root inside is the given host id, host root's files are "other",
/// the namespaces and mounts belong to the caller's user namespace (no mount, no hostname),
/// and what the process creates on the host belongs to the mapped id.
#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_id() {
    use std::os::unix::fs::MetadataExt;
    if !have_busybox() {
        return;
    }
    let ids = distill_sandbox::IdMap {
        host_uid: 2_000_000_000,
        host_gid: 2_000_000_001,
        count: 65536,
    };
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data"), "hello").unwrap();
    std::os::unix::fs::chown(rw.path(), Some(ids.host_uid), Some(ids.host_gid)).unwrap();
    let (st, out, err) = sh(
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c %u /ro/data; \
         grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
         mount -t tmpfs none /rw && echo MOUNTED; hostname evil && echo RENAMED; \
         mount -o remount,rw /ro && echo REMOUNTED; touch /rw/new; chown 1000:1000 /rw/new",
        |s| {
            s.proc = Proc::Mount;
            s.hostname = Some("inside".into());
            s.user_namespace = Some(ids);
            s.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
            s.no_new_privs = true;
            s.die_with_parent = true;
            s.mounts.push(Mount::Bind {
                src: ro.path().into(),
                dst: "/ro".into(),
                readonly: true,
                recursive: false,
            });
            s.mounts.push(Mount::Bind {
                src: rw.path().into(),
                dst: "/rw".into(),
                readonly: false,
                recursive: false,
            });
        },
    );
    assert!(st.success(), "{st}\n{out}\n{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "2000000000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "2000000001", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "root inside: {out}");
    assert_eq!(lines[3], ["0"], "{out}");
    assert_eq!(
        lines[4],
        ["65534"],
        "host root's file is the overflow id's: {out}"
    );
    assert_eq!(lines[6], ["NoNewPrivs:", "1"], "{out}");
    for no in ["MOUNTED", "RENAMED", "REMOUNTED"] {
        assert!(!out.contains(no), "{out}\n{err}");
    }
    assert!(
        err.contains("sethostname: Operation not permitted"),
        "{err}"
    );
    assert_eq!(
        err.matches("mount: ").count(),
        2,
        "both mounts refused: {err}"
    );
    assert!(!err.contains("No such file"), "{err}");
    let m = std::fs::metadata(rw.path().join("new")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (ids.host_uid + 1000, ids.host_gid + 1000),
        "{err}"
    );
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_str().unwrap(),
        "evil"
    );
}
