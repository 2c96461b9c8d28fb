//! CVE-2019-5736: a container program that is a script whose interpreter is
//! `#!/proc/self/exe` makes the kernel execute whatever binary the process executing it
//! was. Without a defence that is distill's own binary, run as the container's process
//! where the container can hold it through `/proc/<pid>/exe` and write it once it exits.
//! Each test attacks a disposable copy of the binary (the one it runs) and checks the copy's
//! sha256 afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use distill_tests::{sha256_hex, Lab, Run};

/// A copy of the `distill` binary the test runs and attacks.
struct Victim {
    path: PathBuf,
    sha256: String,
}

impl Victim {
    fn new(lab: &Lab) -> Victim {
        let dir = lab.path("victim-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("distill");
        std::fs::copy(distill_tests::distill_bin(), &path).unwrap();
        let sha256 = sha256_hex(&std::fs::read(&path).unwrap());
        Victim { path, sha256 }
    }

    /// `distill ARGS` run from the copy, with the lab's root, state and cgroup parent.
    fn run(&self, lab: &Lab, args: &[&str]) -> Run {
        Command::new(&self.path)
            .args(args)
            .env("DISTILL_ROOT", &lab.root)
            .env("DISTILL_STATE", &lab.state)
            .env("DISTILL_CGROUP_PARENT", &lab.cgroup_parent)
            .env("NO_COLOR", "1")
            .output()
            .expect("run the victim copy")
            .into()
    }

    fn assert_untouched(&self) {
        let now = sha256_hex(&std::fs::read(&self.path).unwrap());
        assert_eq!(now, self.sha256, "the runtime binary was overwritten");
    }
}

/// What a run of `#!/proc/self/exe` printed when the runtime's binary ran as the
/// container's program (its command-line parser's complaints).
fn ran_the_runtime(r: &Run) -> bool {
    let all = format!("{}{}", r.stdout, r.stderr);
    all.contains("Usage:") || all.contains("unrecognized subcommand")
}

#[test]
fn exec_of_a_proc_self_exe_script_never_runs_the_runtime_in_the_container() {
    let lab = Lab::new();
    let victim = Victim::new(&lab);
    let x = lab.path("x");
    let out = lab.path("out");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks/exe_overwrite.c");
    let cc = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(x.join("exe_overwrite"))
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let (xv, ov) = (
        format!("{}:/x:ro", x.display()),
        format!("{}:/out", out.display()),
    );
    // The container, its monitor and the log daemon run from the installed binary; only the
    // `exec` comes from the copy, so nothing else keeps the copy busy (ETXTBSY) once it exits.
    lab.distill(&[
        "run",
        "-d",
        "--name",
        "w",
        "-v",
        &xv,
        "-v",
        &ov,
        "--entrypoint",
        "/x/exe_overwrite",
        "hello",
        "watch",
        "/out",
    ])
    .ok();
    let report = || std::fs::read_to_string(out.join("report")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !report().contains("ready") {
        assert!(
            Instant::now() < deadline,
            "the watcher never started: {}",
            report()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The admin runs the container's script (the classic `docker exec` of a binary the
    // container replaced), a few times, while the watcher lies in wait.
    let finished = || {
        let r = report();
        r.contains("WROTE") || r.contains("write refused") || r.contains("nothing caught")
    };
    let mut runs = Vec::new();
    for _ in 0..10 {
        runs.push(victim.run(&lab, &["exec", "w", "/tmp/evil"]));
        if report().lines().count() > 1 {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rep = report();
    let overwritten = sha256_hex(&std::fs::read(&victim.path).unwrap()) != victim.sha256;
    // The attack ran: the script was executed, and what interpreted it refused at once.
    for r in &runs {
        assert!(
            !ran_the_runtime(r),
            "the runtime's binary ran inside the container as the script's interpreter:\n{}{}\nwatcher: {rep}\nthe binary overwritten: {overwritten}",
            r.stdout,
            r.stderr
        );
        // 127: the shim refused to be an interpreter; 137: the watcher caught it first
        // (and killed it).
        assert!(
            r.code == 127 || r.code == 137,
            "exit {}: {}{}\nwatcher: {rep}",
            r.code,
            r.stdout,
            r.stderr
        );
    }
    victim.assert_untouched();
    if let Some(line) = rep.lines().find(|l| l.starts_with("caught")) {
        // What it could hold is the sealed shim, never a host file.
        assert!(line.contains("memfd:distill-exec-shim"), "{rep}");
        assert!(rep.contains("write refused"), "{rep}");
    }
}

#[test]
fn run_of_a_proc_self_exe_entrypoint_never_runs_the_runtime_in_the_container() {
    let lab = Lab::new();
    let victim = Victim::new(&lab);
    let x = lab.path("x");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::write(x.join("evil"), "#!/proc/self/exe\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(x.join("evil"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let xv = format!("{}:/x:ro", x.display());
    let r = victim.run(
        &lab,
        &["run", "--rm", "-v", &xv, "--entrypoint", "/x/evil", "hello"],
    );
    assert!(
        !ran_the_runtime(&r),
        "the runtime's binary ran as the container's init:\n{}{}",
        r.stdout,
        r.stderr
    );
    // The image's program was started and its interpreter (the shim) refused.
    assert_eq!(r.code, 127, "{}{}", r.stdout, r.stderr);
    victim.assert_untouched();
}
