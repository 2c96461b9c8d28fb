//! Startup latency: `run` of /bin/true in a busybox rootfs with mount+pid+net+uts+ipc
//! namespaces, median of 200, next to `bwrap --unshare-all` and `unshare -m` on the same
//! rootfs when those tools are installed. Run as root:
//! `cargo bench -p distill-sandbox --bench spawn`.

use distill_sandbox::{run, Mount, Namespaces, Root, Spec};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const N: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..10 {
        f();
    }
    median(
        (0..N)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn which(tool: &str) -> Option<String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| format!("{d}/{tool}"))
        .find(|p| Path::new(p).exists())
}

fn report(name: &str, d: Duration, base: Option<Duration>) {
    let ms = d.as_secs_f64() * 1e3;
    match base {
        Some(b) => println!(
            "{name:<48} {ms:>8.3} ms  ({:.2}x distill)",
            ms / (b.as_secs_f64() * 1e3)
        ),
        None => println!("{name:<48} {ms:>8.3} ms"),
    }
}

fn main() {
    let busybox = Path::new("/usr/bin/busybox");
    if !busybox.exists() {
        eprintln!("needs /usr/bin/busybox (apt-get install busybox-static)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path();
    std::fs::create_dir(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
    for d in ["proc", "dev", "tmp"] {
        std::fs::create_dir(rootfs.join(d)).unwrap();
    }
    println!("/bin/true in a busybox rootfs, median of {N} runs");

    let spec = Spec {
        root: Root::Dir(rootfs.into()),
        namespaces: Namespaces::all(),
        ..Spec::new(["/bin/true"])
    };
    let ours = time(|| assert!(run(&spec).unwrap().success()));
    report(
        "distill-sandbox run (Root::Dir, mnt+pid+net+uts+ipc)",
        ours,
        None,
    );

    let spec = Spec {
        root: Root::Tmpfs,
        mounts: vec![Mount::Bind {
            src: rootfs.join("bin/busybox"),
            dst: "/bin/true".into(),
            readonly: true,
            recursive: false,
        }],
        ..Spec::new(["/bin/true"])
    };
    let t = time(|| assert!(run(&spec).unwrap().success()));
    report(
        "distill-sandbox run (Root::Tmpfs + 1 ro bind)",
        t,
        Some(ours),
    );

    let spec = Spec {
        root: Root::Dir(rootfs.into()),
        dev: true,
        proc: distill_sandbox::Proc::Masked,
        loopback: true,
        hostname: Some("bench".into()),
        readonly_root: true,
        capabilities: Some(distill_sandbox::DOCKER_DEFAULT_CAPS.to_vec()),
        no_new_privs: true,
        ..Spec::new(["/bin/true"])
    };
    let t = time(|| assert!(run(&spec).unwrap().success()));
    report(
        "distill-sandbox run (container-like: dev, masked proc, lo, caps)",
        t,
        Some(ours),
    );

    let direct = time(|| {
        assert!(Command::new(rootfs.join("bin/true"))
            .status()
            .unwrap()
            .success());
    });
    report(
        "plain fork+exec, no isolation (std Command)",
        direct,
        Some(ours),
    );

    if let Some(bwrap) = which("bwrap") {
        let t = time(|| {
            let st = Command::new(&bwrap)
                .args(["--unshare-all", "--bind"])
                .arg(rootfs)
                .args(["/", "/bin/true"])
                .status()
                .unwrap();
            assert!(st.success());
        });
        report(
            "bwrap --unshare-all --bind rootfs / /bin/true",
            t,
            Some(ours),
        );
    } else {
        println!("bwrap not installed (apt-get install bubblewrap)");
    }
    if let Some(unshare) = which("unshare") {
        let t = time(|| {
            let st = Command::new(&unshare)
                .arg("-m")
                .arg(format!("--root={}", rootfs.display()))
                .arg("/bin/true")
                .status()
                .unwrap();
            assert!(st.success());
        });
        report("unshare -m --root=rootfs /bin/true", t, Some(ours));
    }
    if let Some(runc) = which("runc") {
        // An OCI bundle whose rootfs is the same busybox tree.
        let bundle = tempfile::tempdir().expect("tempdir");
        let ok = Command::new(&runc)
            .arg("spec")
            .current_dir(bundle.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let cfg_path = bundle.path().join("config.json");
            let mut cfg: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
            cfg["process"]["terminal"] = false.into();
            cfg["root"]["path"] = rootfs.to_str().unwrap().into();
            cfg["process"]["args"] = serde_json::json!(["/bin/true"]);
            std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
            let mut i = 0;
            let t = time(|| {
                i += 1;
                let st = Command::new(&runc)
                    .args(["run", "--bundle"])
                    .arg(bundle.path())
                    .arg(format!("distill-bench-{}-{i}", std::process::id()))
                    .status()
                    .unwrap();
                assert!(st.success());
            });
            report("runc run (default spec)", t, Some(ours));
        }
    }
}
