//! Real cgroup limits on this host: files, OOM kill, pids limit, live update and rollback.

mod common;

use std::time::Duration;

use distill_runtime::cgroup::CgroupError;
use distill_runtime::{Limits, RuntimeError, Status};

#[test]
fn limits_are_written_before_exec() {
    let env = common::env();
    let mut cfg = env.cfg("files", &["sleep", "1000"]);
    cfg.limits = Limits {
        memory: Some(64 << 20),
        cpus: Some(0.5),
        cpu_shares: Some(512),
        pids: Some(33),
        ..Default::default()
    };
    let s = env.rt.run_detached(&cfg).unwrap();
    let cg = env.rt.cgroup(&cfg);
    let v1 = env.rt.cgroups.is_v1();
    if v1 {
        assert_eq!(
            cg.read("memory", "memory.limit_in_bytes").unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(cg.read("cpu", "cpu.cfs_quota_us").unwrap(), "50000");
        assert_eq!(cg.read("cpu", "cpu.cfs_period_us").unwrap(), "100000");
        assert_eq!(cg.read("cpu", "cpu.shares").unwrap(), "512");
    } else {
        assert_eq!(
            cg.read("memory", "memory.max").unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(cg.read("cpu", "cpu.max").unwrap(), "50000 100000");
    }
    assert_eq!(cg.read("pids", "pids.max").unwrap(), "33");
    assert_eq!(cg.procs().unwrap(), vec![s.pid.unwrap()]);
    // The limits are in place from the first instruction: the init is in the cgroup.
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", s.pid.unwrap())).unwrap();
    assert!(
        text.contains(&format!("/{}/{}", cfg.cgroup_parent, cfg.name)),
        "{text}"
    );
    env.rt.rm(&cfg.name, true).unwrap();
    assert!(cg.paths().iter().all(|p| !p.exists()));
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let env = common::env();
    let mut cfg = env.cfg(
        "oom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    cfg.limits.memory = Some(16 << 20);
    let (code, _, err) = env.run(&cfg);
    assert_eq!(code, 137, "{err}");
    let s = env.rt.inspect(&cfg.name).unwrap();
    assert!(s.oom_killed, "{s:?}");
    assert_eq!(s.signal, Some(9));
    let listed = env.rt.list().unwrap();
    assert!(listed.iter().any(|c| c.name == cfg.name && c.oom_killed));
    // Without the limit the same command succeeds.
    let cfg = env.cfg(
        "nooom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    let (code, _, err) = env.run(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!env.rt.inspect(&cfg.name).unwrap().oom_killed);
}

#[test]
fn pids_limit_makes_fork_fail() {
    let env = common::env();
    let mut cfg = env.cfg(
        "pids",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait; echo done",
        ],
    );
    cfg.limits.pids = Some(4);
    let (_, out, err) = env.run(&cfg);
    assert!(err.contains("fork"), "stdout {out:?} stderr {err:?}");
}

#[test]
fn update_is_felt_at_once_and_rolls_back() {
    let env = common::env();
    let mut cfg = env.cfg(
        "upd",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/fill/fill bs=1M count=30 2>/dev/null; echo ready; sleep 1000",
        ],
    );
    // tmpfs pages cannot be reclaimed without swap (/tmp is a directory on disk).
    cfg.tmpfs = vec!["/fill".into()];
    cfg.limits = Limits {
        pids: Some(50),
        memory: Some(128 << 20),
        ..Default::default()
    };
    env.rt.run_detached(&cfg).unwrap();
    let log = env.rt.state.dir(&cfg.name).join("stdout.log");
    for _ in 0..500 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cg = env.rt.cgroup(&cfg);
    // Forking works under the original limit.
    let (code, _, err) = env.exec(&cfg.name, &["sh", "-c", "sleep 0 & wait"]);
    assert_eq!(code, 0, "{err}");
    // Lower pids.max to what there will be during the exec (the container's tasks + the exec'd
    // sh; the sandbox clones it straight into the container, no helper process): the exec'd
    // shell cannot fork any more.
    let current: u64 = cg.read("pids", "pids.current").unwrap().parse().unwrap();
    let max = current + 1;
    env.rt
        .update(
            &cfg.name,
            &Limits {
                pids: Some(max),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(cg.read("pids", "pids.max").unwrap(), max.to_string());
    let (code, _, err) = env.exec(&cfg.name, &["sh", "-c", "sleep 0 & wait"]);
    assert!(
        code != 0 || err.contains("fork"),
        "fork succeeded: {code} {err}"
    );
    assert!(err.contains("fork"), "{err}");
    env.rt
        .update(
            &cfg.name,
            &Limits {
                pids: Some(50),
                ..Default::default()
            },
        )
        .unwrap();
    let (code, _, err) = env.exec(&cfg.name, &["sh", "-c", "sleep 0 & wait"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.rt.inspect(&cfg.name).unwrap().config.limits.pids,
        Some(50)
    );

    // Invalid values are refused with the reason and change nothing.
    let e = env
        .rt
        .update(
            &cfg.name,
            &Limits {
                cpus: Some(0.0),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("--cpus"), "{e}");
    let e = env.rt.update(&cfg.name, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("no limit"), "{e}");

    // The kernel refuses a memory limit below current usage (30 MB of tmpfs pages and no swap
    // to push them to); the
    // pids.max written before it in the same update is restored.
    if env.rt.cgroups.is_v1() {
        let e = env
            .rt
            .update(
                &cfg.name,
                &Limits {
                    pids: Some(10),
                    memory: Some(8 << 20),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(
            matches!(e, RuntimeError::Cgroup(CgroupError::UpdateFailed { .. })),
            "{e}"
        );
        assert_eq!(cg.read("pids", "pids.max").unwrap(), "50");
        assert_eq!(
            cg.read("memory", "memory.limit_in_bytes").unwrap(),
            (128u64 << 20).to_string()
        );
        let s = env.rt.inspect(&cfg.name).unwrap();
        assert_eq!(s.config.limits.memory, Some(128 << 20));
        assert_eq!(s.status, Status::Running);
    }
    env.rt.rm(&cfg.name, true).unwrap();
    // Updating a stopped container is refused.
    let cfg2 = env.cfg("upd2", &["true"]);
    env.run(&cfg2);
    let e = env
        .rt
        .update(
            &cfg2.name,
            &Limits {
                pids: Some(5),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::NotRunning(_)), "{e}");
}

#[test]
fn unsupported_blkio_weight_is_refused_clearly() {
    let env = common::env();
    let mut cfg = env.cfg("blkio", &["true"]);
    cfg.limits.blkio_weight = Some(500);
    let cg = env.rt.cgroup(&cfg);
    match env
        .rt
        .run_foreground(&cfg, distill_runtime::Output::Inherit, &[])
    {
        // Kernel has a weight file (CFQ/BFQ): applied.
        Ok(code) => assert_eq!(code, 0),
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("--blkio-weight") && m.contains("not supported"),
                "{m}"
            );
        }
    }
    assert!(cg.paths().iter().all(|p| !p.exists()));
    // Device throttles on a real block device are written in MAJOR:MINOR form.
    let dev = ["/dev/vda", "/dev/sda", "/dev/nvme0n1"]
        .into_iter()
        .find(|d| std::path::Path::new(d).exists());
    if let (Some(dev), true) = (dev, env.rt.cgroups.is_v1()) {
        let mut cfg = env.cfg("bps", &["sleep", "1000"]);
        cfg.limits.device_read_bps =
            vec![
                distill_runtime::DeviceRate::parse("--device-read-bps", &format!("{dev}:1m"))
                    .unwrap(),
            ];
        env.rt.run_detached(&cfg).unwrap();
        let v = env
            .rt
            .cgroup(&cfg)
            .read("blkio", "blkio.throttle.read_bps_device")
            .unwrap();
        assert!(v.ends_with(" 1048576"), "{v}");
        env.rt
            .update(
                &cfg.name,
                &Limits {
                    device_read_bps: vec![distill_runtime::DeviceRate::parse(
                        "--device-read-bps",
                        &format!("{dev}:2m"),
                    )
                    .unwrap()],
                    ..Default::default()
                },
            )
            .unwrap();
        let v = env
            .rt
            .cgroup(&cfg)
            .read("blkio", "blkio.throttle.read_bps_device")
            .unwrap();
        assert!(v.ends_with(" 2097152"), "{v}");
        env.rt.rm(&cfg.name, true).unwrap();
    }
}

/// The v2 code path for real on this host's unified hierarchy (which has no controllers
/// here, so only placement is exercised; the limit file formats are unit-tested against a
/// fake tree in `cgroup.rs`).
#[test]
fn v2_placement_on_the_unified_hierarchy() {
    let Some(h2) = v2_hierarchy() else {
        return; // no cgroup2 mount on this host
    };
    let mut own = common::OwnedParent::new(h2);
    let name = "v2place";
    let cg = own.cgroup(name);
    cg.create().unwrap();
    let pid = own.sleeper_in(&cg);
    assert_eq!(cg.procs().unwrap(), vec![pid]);
    let procs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        procs
            .lines()
            .any(|l| l == format!("0::/{}/{name}", own.parent)),
        "{procs}"
    );
    assert!(!cg.oom_killed());
    // remove() kills what is left (cgroup.kill on v2) and removes the directory.
    cg.remove().unwrap();
    assert!(!own.wait_sleeper(pid).success());
    assert!(cg.paths().iter().all(|p| !p.exists()));
}

#[test]
fn a_cgroup_in_use_is_refused_and_left_alone() {
    let mut env = common::env();
    let cfg = env.cfg("busy", &["true"]);
    let cg = env.rt.cgroup(&cfg);
    let needed = cg.needed(&Limits::default()).unwrap();
    needed.create().unwrap();
    let pid = env.cgroups.sleeper_in(&needed);
    let e = env
        .rt
        .run_foreground(&cfg, distill_runtime::Output::Inherit, &[])
        .unwrap_err();
    assert!(
        matches!(e, RuntimeError::StartFailed { .. }) && e.to_string().contains("in use"),
        "{e}"
    );
    // Nothing of it was touched, and no container is left behind.
    assert_eq!(cg.procs().unwrap(), vec![pid]);
    assert!(env.rt.list().unwrap().is_empty());
    env.cgroups.kill_sleepers();
    std::thread::sleep(Duration::from_millis(50));
    needed.remove().unwrap();
}

#[test]
fn a_retired_cgroup_frees_its_name_at_once_and_goes_on_remove() {
    let own = common::OwnedParent::new(distill_runtime::Hierarchy::detect().unwrap());
    let h = &own.h;
    let cg = own.cgroup("retire");
    let needed = cg.needed(&Limits::default()).unwrap();
    needed.create().unwrap();
    let paths = needed.paths();
    assert!(!paths.is_empty() && paths.iter().all(|p| p.exists()));
    let retired = cg.retire();
    // The name is free: nothing at the old paths, and a new cgroup of that name can be made
    // while the old directories still wait for their removal.
    assert!(paths.iter().all(|p| !p.exists()), "{paths:?}");
    needed.create().unwrap();
    assert!(paths.iter().all(|p| p.exists()));
    let hidden = |p: &std::path::Path| -> Vec<std::path::PathBuf> {
        let parent = p.parent().unwrap();
        let prefix = format!(".{}.gone.", p.file_name().unwrap().to_str().unwrap());
        std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    if h.is_v1() {
        assert!(
            paths.iter().all(|p| hidden(p).len() == 1),
            "renamed aside on v1"
        );
    }
    // One left by a monitor that died before removing it: its pid is gone.
    let mut t = std::process::Command::new("true").spawn().unwrap();
    let dead = t.id();
    t.wait().unwrap();
    let orphans: Vec<std::path::PathBuf> = paths
        .iter()
        .map(|p| {
            let leaf = p.file_name().unwrap().to_str().unwrap();
            p.with_file_name(format!(".{leaf}.gone.{dead}"))
        })
        .collect();
    for o in &orphans {
        std::fs::create_dir(o).unwrap();
    }
    retired.remove().unwrap();
    assert!(paths.iter().all(|p| hidden(p).is_empty()), "removed");
    assert!(orphans.iter().all(|o| !o.exists()), "orphans removed");
    // The new cgroup is untouched by the old one's removal.
    assert!(paths.iter().all(|p| p.exists()));
    cg.remove().unwrap();
    assert!(paths.iter().all(|p| !p.exists()));
}

/// v2 cannot rename a cgroup: retiring one removes it in place.
#[test]
fn a_retired_v2_cgroup_is_removed_in_place() {
    let Some(h2) = v2_hierarchy() else {
        return; // no cgroup2 mount on this host
    };
    let own = common::OwnedParent::new(h2);
    let cg = own.cgroup("v2retire");
    cg.create().unwrap();
    assert!(cg.paths().iter().all(|p| p.exists()));
    let retired = cg.retire();
    assert!(cg.paths().iter().all(|p| !p.exists()));
    retired.remove().unwrap();
}

/// This host's cgroup v2 hierarchy as a pure-v2 host would have it, if it has one.
fn v2_hierarchy() -> Option<distill_runtime::Hierarchy> {
    let h = distill_runtime::Hierarchy::detect().unwrap();
    Some(distill_runtime::Hierarchy::v2_at(h.v2?))
}

/// On a v1 host: a cgroup without limits has only memory and pids; an update that needs
/// cpu creates that directory (and the parent there, which no container had made yet)
/// and moves the running process into it.
#[test]
fn v1_needed_controllers_grow() {
    let mut own = common::OwnedParent::new(distill_runtime::Hierarchy::detect().unwrap());
    let h = own.h.clone();
    if !h.is_v1()
        || !["memory", "pids", "cpu"]
            .iter()
            .all(|c| h.v1.contains_key(*c))
    {
        eprintln!("skipped: needs cgroup v1 memory, pids and cpu");
        return;
    }
    let full = own.cgroup("grow");
    let bare = full.needed(&Limits::default()).unwrap();
    let mut always = vec!["memory", "pids"];
    if h.v1.contains_key("devices") {
        always.insert(0, "devices");
    }
    assert_eq!(bare.controllers(), always);
    bare.create().unwrap();
    assert!(!h.v1["cpu"].join(&own.parent).exists());
    let pid = own.sleeper_in(&bare);
    let cpu = Limits {
        cpu_shares: Some(512),
        ..Default::default()
    };
    let want = full.needed(&cpu).unwrap();
    assert!(want.controllers().iter().any(|c| c == "cpu"));
    full.existing().grow_to(&want).unwrap();
    let procs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let cpu_line = procs
        .lines()
        .find(|l| l.split(':').nth(1).unwrap().split(',').any(|c| c == "cpu"))
        .unwrap();
    assert!(
        cpu_line.ends_with(&format!("/{}/grow", own.parent)),
        "{procs}"
    );
    full.update(&cpu).unwrap();
    assert_eq!(full.read("cpu", "cpu.shares").unwrap(), "512");
    full.remove().unwrap();
    assert!(full.paths().iter().all(|p| !p.exists()));
}

/// A container cgroup without the freezer (v1: no limits) is frozen by joining it to the
/// freezer first (making the parent there); thaw undoes it and the process is left where
/// it was otherwise.
#[test]
fn freeze_and_thaw_a_running_cgroup() {
    let mut own = common::OwnedParent::new(distill_runtime::Hierarchy::detect().unwrap());
    let full = own.cgroup("freeze");
    let bare = full.needed(&Limits::default()).unwrap();
    bare.create().unwrap();
    let pid = own.sleeper_in(&bare);
    full.freeze(Duration::from_secs(5)).unwrap();
    assert!(full.is_frozen().unwrap());
    assert_eq!(full.existing().procs().unwrap(), vec![pid]);
    full.thaw().unwrap();
    assert!(!full.is_frozen().unwrap());
}

/// Containers' cgroups are created in a parent while another thread keeps removing that
/// parent whenever it is empty (what a clean-up of that parent elsewhere does): every
/// creation succeeds, the parent being made again each time it is needed. The remover
/// pauses a varying few microseconds between attempts, as any other process would: one
/// spinning on `rmdir` wins the cgroup mutex between any two steps of the creator.
#[test]
fn creating_races_removing_an_empty_parent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let own = common::OwnedParent::new(distill_runtime::Hierarchy::detect().unwrap());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let remover = {
        let (h, parent, stop) = (own.h.clone(), own.parent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut removed = 0u32;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for d in h.parent_dirs(&parent) {
                    if std::fs::remove_dir(&d).is_ok() {
                        removed += 1;
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_micros(20 + (i * 37) % 150));
            }
            removed
        })
    };
    let mut failed = None;
    for i in 0..300 {
        let cg = own
            .cgroup(&format!("c{i}"))
            .needed(&Limits::default())
            .unwrap();
        if let Err(e) = cg.create() {
            failed = Some(format!("create {i}: {e}"));
            break;
        }
        assert!(cg.paths().iter().all(|p| p.is_dir()));
        cg.remove().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let removed = remover.join().unwrap();
    assert_eq!(failed, None);
    // The race really happened: the parent was taken away under the creations.
    assert!(removed > 10, "the parent was removed only {removed} times");
}

/// A loop device of the test's own over a file holding `secret`; detached when dropped,
/// whichever way the test ends.
struct Loop {
    dev: std::path::PathBuf,
}

impl Loop {
    fn new(file: &std::path::Path, secret: &[u8]) -> Loop {
        let mut bytes = secret.to_vec();
        bytes.resize(64 * 1024, 0);
        std::fs::write(file, &bytes).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .expect("run losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop {
            dev: String::from_utf8(out.stdout).unwrap().trim().into(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let ok = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.dev)
            .status()
            .is_ok_and(|s| s.success());
        if !ok && !std::thread::panicking() {
            panic!("could not detach {}", self.dev.display());
        }
    }
}

/// Runs `script` in `sh`, moved into `cg` (every directory of it) before it execs if given.
fn sh_in(cg: Option<&distill_runtime::cgroup::Cgroup>, script: &str) -> String {
    use std::os::unix::process::CommandExt;
    let files: Vec<std::fs::File> = cg
        .map(|cg| cg.paths())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("cgroup.procs"))
                .unwrap()
        })
        .collect();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", script]);
    // SAFETY: only write(2) on descriptors opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            use std::io::Write;
            for mut f in &files {
                f.write_all(b"0")?;
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A process of `cg` (restricted with `restrict_devices`) cannot open the test's loop
/// device (EPERM) for reading or writing, and can use /dev/null and /dev/urandom; the same
/// read outside the cgroup gets the secret, so the refusal is the cgroup's.
fn assert_devices_restricted(cg: &distill_runtime::cgroup::Cgroup, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("CGROUP-DEV-SECRET-{}", std::process::id());
    let lo = Loop::new(&dir.path().join("disk.img"), secret.as_bytes());
    let dev = lo.dev.display().to_string();
    let read = format!("head -c 64 {dev} | tr -d '\\0'; echo");
    assert!(
        sh_in(None, &read).contains(&secret),
        "the attack reads {dev} outside"
    );
    let script = format!(
        "echo x >/dev/null && echo NULL-OK; head -c 4 /dev/urandom >/dev/null && echo URANDOM-OK; \
         {read}; echo pwned | dd of={dev} conv=notrunc 2>&1; true"
    );
    let all = sh_in(Some(cg), &script);
    drop(lo);
    let image = std::fs::read(dir.path().join("disk.img")).unwrap();
    assert!(
        all.contains("NULL-OK") && all.contains("URANDOM-OK"),
        "{what}: {all}"
    );
    assert!(
        !all.contains(&secret),
        "{what}: read the loop device: {all}"
    );
    assert!(
        image.starts_with(secret.as_bytes()),
        "{what}: wrote to {dev}"
    );
    assert_eq!(
        all.matches("Operation not permitted").count(),
        2,
        "{what}: reading and writing {dev} must both fail with EPERM: {all}"
    );
}

/// cgroup v2's device control for real: this host's unified hierarchy (no controllers on a
/// hybrid host; device programs attach to any cgroup2 directory) with the container's
/// BPF_CGROUP_DEVICE program attached.
#[test]
fn v2_device_program_denies_what_a_container_is_not_given() {
    let Some(h2) = v2_hierarchy() else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return;
    };
    let own = common::OwnedParent::new(h2);
    let cg = own.cgroup("v2dev");
    cg.create().unwrap();
    cg.restrict_devices().unwrap();
    assert_devices_restricted(&cg, "v2");
    cg.remove().unwrap();
}

/// The same through the v1 devices controller, as a new container's cgroup is made.
#[test]
fn v1_devices_controller_denies_what_a_container_is_not_given() {
    let own = common::OwnedParent::new(distill_runtime::Hierarchy::detect().unwrap());
    if !own.h.is_v1() || !own.h.v1.contains_key("devices") {
        eprintln!("skipped: needs the cgroup v1 devices controller");
        return;
    }
    let cg = own.cgroup("v1dev").needed(&Limits::default()).unwrap();
    cg.make(&Limits::default()).unwrap();
    let list = cg.read("devices", "devices.list").unwrap();
    assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("a ")), "{list}");
    assert_devices_restricted(&cg, "v1");
    cg.remove().unwrap();
}
