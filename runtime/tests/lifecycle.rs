//! Real containers: run, output, exit codes, stop, kill, rm, exec, ps, reconciliation.

mod common;

use std::time::{Duration, Instant};

use distill_runtime::{RuntimeError, StateError, Status};

#[test]
fn foreground_streams_output_and_exit_code() {
    let env = common::env();
    let cfg = env.cfg("fg", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let (code, out, err) = env.run(&cfg);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    let s = env.rt.inspect(&cfg.name).unwrap();
    assert_eq!(s.status, Status::Exited);
    assert_eq!(s.exit_code, Some(3));
    assert!(s.finished_ms.is_some());
    // Same name again is refused while the exited container exists.
    let e = env
        .rt
        .run_foreground(&cfg, distill_runtime::Output::Inherit, &[])
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::State(StateError::NameInUse(_))),
        "{e}"
    );
    env.rt.rm(&cfg.name, false).unwrap();
    assert!(env.rt.list().unwrap().is_empty());

    // A signal gives 128+N; --rm removes the state.
    let mut cfg = env.cfg("sig", &["sleep", "1000"]);
    cfg.auto_remove = true;
    let code = std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(st) = env.rt.inspect(&cfg.name) {
                    if st.status == Status::Running {
                        env.rt.kill(&cfg.name, libc::SIGKILL).unwrap();
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        env.run(&cfg).0
    });
    assert_eq!(code, 137);
    assert!(!env.rt.state.dir(&cfg.name).exists());
}

#[test]
fn start_failure_is_reported() {
    let env = common::env();
    let cfg = env.cfg("nf", &["/no/such/binary"]);
    let e = env.rt.run_detached(&cfg).unwrap_err().to_string();
    assert!(e.contains("/no/such/binary"), "{e}");
    let s = env.rt.inspect(&cfg.name).unwrap();
    assert_eq!(s.status, Status::Exited);
    assert!(s.error.unwrap().contains("exec"));
}

#[test]
fn isolation_inside_the_container() {
    let env = common::env();
    let vol_rw = env.dir.path().join("rw");
    let vol_ro = env.dir.path().join("ro");
    std::fs::create_dir_all(&vol_rw).unwrap();
    std::fs::create_dir_all(&vol_ro).unwrap();
    std::fs::write(vol_ro.join("f"), "host data").unwrap();
    let mut cfg = env.cfg(
        "iso",
        &[
            "sh",
            "-c",
            r#"
            echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
            echo "host=$(hostname)"
            mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED
            unshare -m true 2>/dev/null && echo UNSHARED
            touch /rootwrite 2>/dev/null && echo ROOTWRITE
            echo data > /ro/x 2>/dev/null && echo ROWRITE
            cat /ro/f; echo
            echo hi > /rw/new && echo rw-ok
            echo tmp > /tmp/t && echo tmp-ok
            echo "kcore=$(cat /proc/kcore | wc -c)"
            echo "keys=$(cat /proc/keys | wc -c)"
            echo sys > /proc/sys/kernel/hostname 2>/dev/null && echo PROCSYS
            grep CapEff /proc/self/status
            grep NoNewPrivs /proc/self/status
            grep Seccomp: /proc/self/status
            echo "lo=$(cat /sys/class/net/lo/flags)"
            echo x > /proc/self/exe 2>/dev/null && echo EXEWRITE
            echo x > /sys/kernel/x 2>/dev/null && echo SYSWRITE
            ls /sys/firmware | wc -l
            "#,
        ],
    );
    cfg.volumes = vec![
        distill_runtime::Volume::parse(&format!("{}:/rw", vol_rw.display())).unwrap(),
        distill_runtime::Volume::parse(&format!("{}:/ro:ro", vol_ro.display())).unwrap(),
    ];
    cfg.hostname = "box".into();
    let (code, out, err) = env.run(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    for bad in [
        "MOUNTED",
        "UNSHARED",
        "ROOTWRITE",
        "ROWRITE",
        "PROCSYS",
        "EXEWRITE",
        "SYSWRITE",
    ] {
        assert!(!out.contains(bad), "{bad} in {out}");
    }
    // sh (pid 1), the $( ) subshell, ls and wc: never the host's processes.
    let procs: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "{out}");
    assert!(std::fs::read_dir("/proc").unwrap().count() > procs + 10);
    assert!(out.contains("host=box\n"), "{out}");
    assert!(out.contains("host data"), "{out}");
    assert!(out.contains("rw-ok") && out.contains("tmp-ok"), "{out}");
    assert!(
        out.contains("kcore=0\n") && out.contains("keys=0\n"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let capeff = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(capeff & (1 << 21), 0, "CAP_SYS_ADMIN present: {capeff:#x}");
    assert_eq!(capeff & (1 << 19), 0, "CAP_SYS_PTRACE present: {capeff:#x}");
    assert_ne!(capeff & (1 << 0), 0, "CAP_CHOWN missing: {capeff:#x}");
    let lo = out.lines().find_map(|l| l.strip_prefix("lo=")).unwrap();
    assert_eq!(
        u32::from_str_radix(lo.trim_start_matches("0x"), 16).unwrap() & 1,
        1,
        "lo down"
    );
    assert_eq!(std::fs::read_to_string(vol_rw.join("new")).unwrap(), "hi\n");
    assert!(!vol_ro.join("x").exists());
    assert!(!env.rootfs.join("rootwrite").exists());
}

#[test]
fn detached_stop_kill_rm_and_logs() {
    let env = common::env();
    // A well-behaved init: exits 0 on SIGTERM.
    let cfg = env.cfg(
        "stop",
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.05; done",
        ],
    );
    let s = env.rt.run_detached(&cfg).unwrap();
    assert_eq!(s.status, Status::Running);
    assert!(s.pid_alive() && s.monitor_alive());
    let e = env.rt.rm(&cfg.name, false).unwrap_err();
    assert!(matches!(e, RuntimeError::Running(_)), "{e}");
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let s = env
        .rt
        .stop(&cfg.name, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(
        (s.status, s.exit_code, s.signal),
        (Status::Exited, Some(0), None)
    );
    let log = std::fs::read_to_string(env.rt.state.dir(&cfg.name).join("stdout.log")).unwrap();
    assert_eq!(log, "started\nbye\n");
    env.rt.rm(&cfg.name, false).unwrap();
    assert!(!env.rt.state.dir(&cfg.name).exists());

    // An init without a TERM handler ignores SIGTERM (pid 1): stop escalates to SIGKILL.
    let cfg = env.cfg("stopkill", &["sleep", "1000"]);
    env.rt.run_detached(&cfg).unwrap();
    let t0 = Instant::now();
    let s = env
        .rt
        .stop(&cfg.name, Some(Duration::from_millis(300)))
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!((s.exit_code, s.signal), (Some(137), Some(9)));

    // kill -s and wait.
    let cfg = env.cfg(
        "kill",
        &[
            "sh",
            "-c",
            "trap 'exit 7' USR1; while true; do sleep 0.05; done",
        ],
    );
    env.rt.run_detached(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    env.rt.kill(&cfg.name, libc::SIGUSR1).unwrap();
    let s = env.rt.wait(&cfg.name).unwrap();
    assert_eq!(s.exit_code, Some(7));
    assert!(matches!(
        env.rt.kill(&cfg.name, 9),
        Err(RuntimeError::NotRunning(_))
    ));

    // rm -f of a running container.
    let cfg = env.cfg("rmf", &["sleep", "1000"]);
    let s = env.rt.run_detached(&cfg).unwrap();
    let pid = s.pid.unwrap();
    env.rt.rm(&cfg.name, true).unwrap();
    assert!(distill_runtime::state::proc_start_time(pid).is_none());
    assert!(env.rt.cgroup(&cfg).paths().iter().all(|p| !p.exists()));
    let names: Vec<String> = env.rt.list().unwrap().into_iter().map(|s| s.name).collect();
    assert!(!names.contains(&cfg.name), "{names:?}");
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let env = common::env();
    let mut cfg = env.cfg("exec", &["sleep", "1000"]);
    cfg.env = vec!["FOO=bar".into()];
    cfg.hostname = "exechost".into();
    env.rt.run_detached(&cfg).unwrap();
    let (code, out, _) = env.exec(&cfg.name, &["sh", "-c", "hostname; echo $FOO; cat /proc/1/cmdline; echo; cat /proc/self/cgroup; ls -d /proc/[0-9]* | wc -l; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; exit 5"]);
    assert_eq!(code, 5, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exechost");
    assert_eq!(lines[1], "bar");
    let init_argv: Vec<&str> = lines[2].split('\0').filter(|a| !a.is_empty()).collect();
    assert_eq!(init_argv, ["sleep", "1000"]);
    // In the container's cgroup namespace, its cgroup is the root.
    for l in out
        .lines()
        .filter(|l| l.contains(":/") && !l.starts_with("Cap"))
    {
        assert!(l.ends_with(":/"), "not in the container cgroup: {l}\n{out}");
    }
    // Only init, sh and its children are visible.
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"),
        "{out}"
    );
    let e = env
        .rt
        .exec(
            &cfg.name,
            &distill_runtime::ExecConfig {
                argv: vec!["/nope".into()],
                ..Default::default()
            },
            distill_runtime::Output::Inherit,
        )
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::ExecFailed { .. }) && e.to_string().contains("/nope"),
        "{e}"
    );
    env.rt.rm(&cfg.name, true).unwrap();
    let e = env
        .rt
        .exec(
            &cfg.name,
            &distill_runtime::ExecConfig {
                argv: vec!["true".into()],
                ..Default::default()
            },
            distill_runtime::Output::Inherit,
        )
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::State(StateError::NotFound(_))),
        "{e}"
    );
}

#[test]
fn killed_monitor_is_reconciled() {
    let env = common::env();
    let cfg = env.cfg("orphan", &["sleep", "1000"]);
    let s = env.rt.run_detached(&cfg).unwrap();
    let (pid, mon) = (s.pid.unwrap(), s.monitor_pid.unwrap());
    unsafe { libc::kill(mon, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while distill_runtime::state::proc_start_time(mon).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still running and reported as such.
    assert_eq!(env.rt.inspect(&cfg.name).unwrap().status, Status::Running);
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while distill_runtime::state::proc_start_time(pid).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = env
        .rt
        .list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == cfg.name)
        .unwrap();
    assert_eq!(s.status, Status::Exited);
    assert!(s.exit_unknown);
    assert_eq!(s.exit_code, None);
    env.rt.rm(&cfg.name, false).unwrap();
}

/// The CVE-2019-5736 pattern: a container process keeps trying to open every visible
/// `/proc/<pid>/exe` (including the exec helper, a copy of the runtime binary, while it joins)
/// for writing. The runtime binary must stay intact and no open may succeed. The only other
/// executable it may see is the sealed exec shim, which no write reaches.
#[test]
fn container_cannot_overwrite_the_runtime_binary() {
    let env = common::env();
    let me = std::env::current_exe().unwrap();
    let before = std::fs::read(&me).unwrap();
    let cfg = env.cfg(
        "cve",
        &[
            "sh",
            "-c",
            "echo x > /proc/self/exe 2>/dev/null && echo HIT-self; \
             while true; do for p in /proc/[0-9]*/exe; do \
               { echo pwn > $p; } 2>/dev/null && echo HIT $p; \
               t=$(readlink $p 2>/dev/null); \
               case \"$t\" in /bin/busybox|''|'/memfd:distill-exec-shim (deleted)') ;; *) echo SAW $t; { exec 3<$p; } 2>/dev/null && echo OPENED $t; exec 3<&-;; esac; \
             done; done",
        ],
    );
    env.rt.run_detached(&cfg).unwrap();
    for _ in 0..30 {
        let (code, _, _) = env.exec(&cfg.name, &["true"]);
        assert_eq!(code, 0);
    }
    let log = std::fs::read_to_string(env.rt.state.dir(&cfg.name).join("stdout.log")).unwrap();
    env.rt.rm(&cfg.name, true).unwrap();
    let after = std::fs::read(&me).unwrap();
    assert!(before == after, "the runtime binary was modified");
    assert!(
        !log.contains("HIT") && !log.contains("OPENED") && !log.contains("SAW"),
        "{log}"
    );
}

/// `run -d --ready-http`: ready only once the URL answers 2xx (a 404 is not ready).
#[test]
fn ready_http_waits_for_a_2xx() {
    let env = common::env();
    let www = env.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "ok").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // The server only starts after a delay, so readiness has to be waited for.
    let script = format!("sleep 0.3; exec httpd -f -p {listen} -h /www");
    let mut cfg = env.cfg("http", &["sh", "-c", &script]);
    cfg.network = distill_runtime::Network::Host;
    cfg.volumes =
        vec![distill_runtime::Volume::parse(&format!("{}:/www:ro", www.display())).unwrap()];
    env.rt.run_detached(&cfg).unwrap();
    let t0 = Instant::now();
    env.rt
        .wait_ready_http(
            &cfg.name,
            &format!("http://{listen}/index.html"),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    let e = env
        .rt
        .wait_ready_http(
            &cfg.name,
            &format!("http://{listen}/missing"),
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    env.rt.rm(&cfg.name, true).unwrap();
    // A container that exits is reported at once, not after the timeout.
    let cfg = env.cfg("http-dies", &["false"]);
    env.rt.run_detached(&cfg).unwrap();
    let t0 = Instant::now();
    let e = env
        .rt
        .wait_ready_http(
            &cfg.name,
            &format!("http://{listen}/"),
            Duration::from_secs(10),
        )
        .unwrap_err();
    assert!(e.to_string().contains("exited"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
}
