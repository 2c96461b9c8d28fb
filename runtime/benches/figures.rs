//! Figures: `run --rm /bin/true` vs bubblewrap vs runc, `exec /bin/true` vs `runc exec`,
//! `ps` with 200 containers, and `ps` while another process holds a container's lock.
//!
//! Each distill figure is measured the way a user pays for it: a fresh process (this binary
//! re-executed with `--run-once`/`--exec-once`/`--ps-once`, i.e. process start + library call)
//! so that it compares fairly with the `bwrap` and `runc` processes. Needs root, bubblewrap,
//! runc and busybox-static. The state root is on a tmpfs, as `/run/distill` is normally.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distill_runtime::{ContainerConfig, ExecConfig, Output, Runtime};

const N: usize = 100;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1000.0)
}

fn time_cmd(n: usize, mut mk: impl FnMut(usize) -> Command) -> Duration {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = mk(i);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let st = c.status().expect("spawn");
        v.push(t.elapsed());
        assert!(st.success(), "{c:?} failed: {st}");
    }
    median(v)
}

fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .expect("apt-get install busybox-static");
    for a in ["sh", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "dev", "sys", "tmp", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    root
}

fn cfg(name: &str, rootfs: &Path, argv: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        rootfs: rootfs.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn child_mode(args: &[String]) -> Option<i32> {
    match args.get(1).map(String::as_str) {
        Some("--run-once") => {
            let rt = Runtime::new(&args[2]).unwrap();
            let mut c = cfg(&args[4], Path::new(&args[3]), &["/bin/true"]);
            c.auto_remove = true;
            Some(rt.run_foreground(&c, Output::Inherit, &[]).unwrap())
        }
        Some("--exec-once") => {
            let rt = Runtime::new(&args[2]).unwrap();
            let ex = ExecConfig {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            };
            Some(rt.exec(&args[3], &ex, Output::Inherit).unwrap())
        }
        Some("--ps-once") => {
            let rt = Runtime::new(&args[2]).unwrap();
            let n = rt.list().unwrap().len();
            Some(if n == 0 { 1 } else { 0 })
        }
        _ => None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = child_mode(&args) {
        std::process::exit(code);
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_root(tmp.path());
    let tmpfs = common::TmpfsState::new(tmp.path());
    let state = tmpfs.path.clone();
    let rt = Runtime::new(&state).unwrap();
    let pid = std::process::id();

    println!(
        "distill-runtime figures (median of {N}; state root on {})",
        tmpfs.kind()
    );
    println!("{:-<64}", "");

    // run --rm /bin/true
    for i in 0..5 {
        Command::new(&me)
            .args([
                "--run-once",
                state.to_str().unwrap(),
                rootfs.to_str().unwrap(),
                &format!("warm{pid}-{i}"),
            ])
            .status()
            .unwrap();
    }
    // runc bundle on the same rootfs.
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let runc_root = tmp.path().join("runc-root");
    assert!(Command::new("runc")
        .args(["spec"])
        .current_dir(&bundle)
        .status()
        .unwrap()
        .success());
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["root"]["path"] = rootfs.to_str().unwrap().into();
    spec["root"]["readonly"] = true.into();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    // Interleaved so that all three see the same machine load.
    let (mut dv, mut lv, mut bv, mut rv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..N {
        dv.push(time_cmd(1, |_| {
            let mut c = Command::new(&me);
            c.args([
                "--run-once",
                state.to_str().unwrap(),
                rootfs.to_str().unwrap(),
                &format!("b{pid}-{i}"),
            ]);
            c
        }));
        let mut c = cfg(&format!("l{pid}-{i}"), &rootfs, &["/bin/true"]);
        c.auto_remove = true;
        let t = Instant::now();
        assert_eq!(rt.run_foreground(&c, Output::Inherit, &[]).unwrap(), 0);
        lv.push(t.elapsed());
        bv.push(time_cmd(1, |_| {
            let mut c = Command::new("bwrap");
            c.args([
                "--unshare-all",
                "--ro-bind",
                rootfs.to_str().unwrap(),
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "/bin/true",
            ]);
            c
        }));
        rv.push(time_cmd(1, |_| {
            let mut c = Command::new("runc");
            c.arg("--root").arg(&runc_root).args([
                "run",
                "-b",
                bundle.to_str().unwrap(),
                &format!("rb{pid}-{i}"),
            ]);
            c
        }));
    }
    let (distill_run, distill_lib, bwrap, runc) = (median(dv), median(lv), median(bv), median(rv));
    println!(
        "run --rm /bin/true   distill {}   (in-process library call {})",
        ms(distill_run),
        ms(distill_lib)
    );
    println!(
        "                     bwrap   {}   (--unshare-all, same rootfs)",
        ms(bwrap)
    );
    println!(
        "                     runc    {}   (runc run, same rootfs)",
        ms(runc)
    );
    println!(
        "                     distill/bwrap = {:.2}, runc/distill = {:.1}x",
        distill_run.as_secs_f64() / bwrap.as_secs_f64(),
        runc.as_secs_f64() / distill_run.as_secs_f64()
    );

    // exec /bin/true
    let name = format!("ex{pid}");
    rt.run_detached(&cfg(&name, &rootfs, &["sleep", "100000"]))
        .unwrap();
    spec["process"]["args"] = serde_json::json!(["/bin/sleep", "100000"]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let rid = format!("rx{pid}");
    let rst = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-d", "-b", bundle.to_str().unwrap(), &rid])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(rst.success());
    let (mut dv, mut rv) = (Vec::new(), Vec::new());
    for _ in 0..N {
        dv.push(time_cmd(1, |_| {
            let mut c = Command::new(&me);
            c.args(["--exec-once", state.to_str().unwrap(), &name]);
            c
        }));
        rv.push(time_cmd(1, |_| {
            let mut c = Command::new("runc");
            c.arg("--root")
                .arg(&runc_root)
                .args(["exec", &rid, "/bin/true"]);
            c
        }));
    }
    let (distill_exec, runc_exec) = (median(dv), median(rv));
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["delete", "-f", &rid])
        .status();
    println!(
        "exec /bin/true       distill {}   runc {}   runc/distill = {:.1}x",
        ms(distill_exec),
        ms(runc_exec),
        runc_exec.as_secs_f64() / distill_exec.as_secs_f64()
    );
    rt.rm(&name, true).unwrap();

    // ps with 200 containers.
    let names: Vec<String> = (0..200).map(|i| format!("ps{pid}-{i}")).collect();
    for n in &names {
        rt.run_detached(&cfg(n, &rootfs, &["sleep", "100000"]))
            .unwrap();
    }
    assert_eq!(rt.list().unwrap().len(), 200);
    let ps_proc = time_cmd(N, |_| {
        let mut c = Command::new(&me);
        c.args(["--ps-once", state.to_str().unwrap()]);
        c
    });
    let mut v = Vec::new();
    for _ in 0..N {
        let t = Instant::now();
        assert_eq!(rt.list().unwrap().len(), 200);
        v.push(t.elapsed());
    }
    let ps_lib = median(v);
    println!(
        "ps, 200 containers   {} (process)   {} (library call)",
        ms(ps_proc),
        ms(ps_lib)
    );

    // ps while another process holds a container's lock for 5 s.
    let lockfile = state.join(&names[7]).join("lock");
    let mut holder = Command::new("flock")
        .arg(&lockfile)
        .args(["sleep", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        rt.state.try_lock(&names[7]).unwrap().is_none(),
        "flock holder did not take the lock"
    );
    let mut worst = Duration::ZERO;
    let ps_locked = time_cmd(20, |_| {
        let mut c = Command::new(&me);
        c.args(["--ps-once", state.to_str().unwrap()]);
        c
    });
    for _ in 0..20 {
        let t = Instant::now();
        rt.list().unwrap();
        worst = worst.max(t.elapsed());
    }
    println!(
        "ps, lock held 5 s    {} (process, median of 20)   worst library call {}",
        ms(ps_locked),
        ms(worst)
    );
    holder.wait().unwrap();

    for n in &names {
        rt.rm(n, true).unwrap();
    }
    drop(tmpfs);
}
