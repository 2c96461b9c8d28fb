//! End-to-end tests of `distill build`: signed manifest -> store paths, hermetic builds, and
//! every refusal the issue names, each leaving nothing half-written in the store.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use distill_tests::{busybox_preamble, sha256_hex, World};

fn paths_by_name(
    report: &serde_json::Value,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
        .collect()
}

/// A package built by the busybox shell with a custom step list.
fn busybox_package(steps: &[&str]) -> String {
    let steps: Vec<String> = steps.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{}\n[package.probe]\ninputs = [\"busybox\"]\nshell = [\"$busybox/bin/busybox\", \"sh\", \"-e\", \"-c\"]\nbuild = [{}]\n",
        busybox_preamble(),
        steps.join(", ")
    )
}

#[test]
fn hello_example_builds_end_to_end() {
    let w = World::new();
    let m = w.example("hello");
    let (run, report) = w.build_json(&m);
    run.ok();
    let report = report.expect("json report");
    let fpr = std::fs::read_to_string(w.keys.join("cert.asc")).unwrap();
    assert!(!fpr.is_empty());
    assert_eq!(report["signer"].as_str().unwrap().len(), 40, "{report}");
    let by = paths_by_name(&report);
    let hello = Path::new(by["hello"]["path"].as_str().unwrap());
    let busybox = Path::new(by["busybox"]["path"].as_str().unwrap());
    assert!(hello.starts_with(w.root.join("store")));
    // Real bytes: the script, the greeting produced by the build env, the symlink, busybox.
    assert_eq!(
        std::fs::read(hello.join("bin/hello")).unwrap(),
        std::fs::read(distill_tests::workspace().join("examples/hello/hello.sh")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(hello.join("share/hello/greeting.txt")).unwrap(),
        "Hello from distill\n"
    );
    assert_eq!(
        std::fs::read_link(hello.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let bb = std::fs::metadata(busybox.join("bin/busybox")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(bb.permissions().mode() & 0o7777, 0o755);
    assert!(bb.len() > 500_000);
    // Normalized: mtime is SOURCE_DATE_EPOCH (0).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::symlink_metadata(hello.join("bin/hello"))
            .unwrap()
            .mtime(),
        0
    );
    // The signer is recorded with what was built.
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.root.join("meta").join(format!(
            "{}.json",
            by["hello"]["store_name"].as_str().unwrap()
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(info["signer"], report["signer"]);

    // A second build does no work.
    let (run, again) = w.build_json(&m);
    run.ok();
    let again = again.unwrap();
    for p in again["paths"].as_array().unwrap() {
        assert_eq!(p["built"], false, "{p}");
    }
    assert_eq!(paths_by_name(&again)["hello"]["path"], by["hello"]["path"]);

    // The store verifies and lists the paths.
    w.distill(&["store", "verify"]).ok();
    let ls = w.distill(&["store", "ls"]);
    ls.ok();
    assert!(ls
        .stdout
        .contains(by["hello"]["store_name"].as_str().unwrap()));
}

#[test]
fn builds_are_hermetic() {
    let w = World::new();
    let text = busybox_package(&[
        "env | sort > $out/env",
        "hostname > $out/hostname",
        "umask > $out/umask",
        "echo $$ > $out/pid",
        "ls / | sort > $out/root",
        "pwd > $out/pwd",
        "ip -o link 2>/dev/null | cut -d: -f2 | tr -d ' ' > $out/links || true",
        "touch $out/ok",
    ]);
    let m = w.manifest("hermetic", &text, &[]);
    let (run, report) = w.build_json(&m);
    run.ok();
    let report = report.unwrap();
    let out = std::path::PathBuf::from(paths_by_name(&report)["probe"]["path"].as_str().unwrap());
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("hostname").trim(), "distill");
    assert_eq!(read("umask").trim(), "0022");
    assert_eq!(
        read("pid").trim(),
        "1",
        "the build shell is pid 1 of its own pid namespace"
    );
    assert_eq!(read("pwd").trim(), "/build");
    let root: Vec<String> = read("root").lines().map(String::from).collect();
    assert_eq!(
        root,
        ["build", "dev", "homeless", "proc", "store", "tmp"],
        "only declared things are visible"
    );
    let env = read("env");
    for want in [
        "HOME=/homeless",
        "LC_ALL=C",
        "TZ=UTC",
        "SOURCE_DATE_EPOCH=0",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from:\n{env}"
        );
    }
    assert!(
        !env.contains("DISTILL_ROOT"),
        "nothing is inherited from the caller:\n{env}"
    );
    assert_eq!(
        read("links").trim(),
        "lo",
        "only loopback in the build's network namespace"
    );
}

#[test]
fn a_build_cannot_reach_the_network() {
    let w = World::new();
    // Something listening on the host's loopback: reachable from the host, not from the sandbox.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = busybox_package(&[
        &format!("echo hi | nc -w 2 127.0.0.1 {port}"),
        "touch $out/ok",
    ]);
    let m = w.manifest("net", &text, &[]);
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    assert!(
        run.stderr.contains("package probe: build step 1"),
        "{}",
        run.stderr
    );
    // It failed because nothing answers inside the sandbox, not because nc is missing.
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(!w.store_entries().iter().any(|e| e.ends_with("-probe-0")));
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's loopback"
    );
}

#[test]
fn a_failing_step_names_its_exit_code_and_last_lines() {
    let w = World::new();
    let text = busybox_package(&["echo first line; echo 'the last words' >&2; exit 7"]);
    let m = w.manifest("fails", &text, &[]);
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    assert!(
        run.stderr.contains("exit code 7") || run.stderr.contains("exit status 7"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("the last words"), "{}", run.stderr);
    assert!(!w.store_entries().iter().any(|e| e.ends_with("-probe-0")));
    // Nothing half-written: no meta for the failed path either, and the store verifies.
    w.distill(&["store", "verify"]).ok();
}

#[test]
fn signature_refusals_write_nothing() {
    let w = World::new();
    let text = busybox_package(&["touch $out/ok"]);
    let m = w.manifest("sig", &text, &[]);
    let asc = m.with_extension("toml.asc");

    // One byte of the manifest changed.
    let original = std::fs::read(&m).unwrap();
    let mut changed = original.clone();
    changed.push(b'\n');
    std::fs::write(&m, &changed).unwrap();
    let (run, _) = w.build_json(&m);
    run.expect_code(2);
    assert!(run.stderr.contains("manifest.toml"), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one-line error: {}",
        run.stderr
    );
    std::fs::write(&m, &original).unwrap();

    // A key that is not in the keyring.
    let other = World::new();
    other.sign(&m);
    let (run, _) = w.build_json(&m);
    run.expect_code(2);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one-line error: {}",
        run.stderr
    );

    // No signature at all.
    std::fs::remove_file(&asc).unwrap();
    let (run, _) = w.build_json(&m);
    run.expect_code(2);
    assert!(run.stderr.contains(".asc"), "{}", run.stderr);

    // No keyring.
    w.sign(&m);
    let run = w.distill(&["build", m.to_str().unwrap()]);
    run.expect_code(2);
    assert!(run.stderr.contains("keyring"), "{}", run.stderr);

    assert!(
        w.store_entries().is_empty(),
        "refusals wrote {:?}",
        w.store_entries()
    );
}

fn refused(w: &World, name: &str, text: &str, files: &[(&str, &[u8])]) -> String {
    let m = w.manifest(name, text, files);
    let (run, _) = w.build_json(&m);
    assert_ne!(run.code, 0, "{name} was accepted");
    assert!(
        w.store_entries().is_empty(),
        "{name} wrote {:?}",
        w.store_entries()
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "{name}: one-line error: {}",
        run.stderr
    );
    run.stderr
}

#[test]
fn bad_manifests_are_refused_with_their_place() {
    let w = World::new();
    let e = refused(
        &w,
        "syntax",
        "version = 1\n[package.a]\nbuild = [\"x\"\n",
        &[],
    );
    assert!(e.contains("manifest.toml:3:"), "line and column: {e}");

    let e = refused(
        &w,
        "unknown-field",
        "version = 1\n[package.a]\nbuidl = [\"x\"]\n",
        &[],
    );
    assert!(e.contains("buidl") && e.contains("manifest.toml:3"), "{e}");

    let e = refused(
        &w,
        "unknown-input",
        "version = 1\n[package.a]\ninputs = [\"nope\"]\nbuild = [\"x\"]\n",
        &[],
    );
    assert!(e.contains("package.a.inputs") && e.contains("nope"), "{e}");

    let e = refused(
        &w,
        "cycle",
        "version = 1\n[package.a]\ninputs = [\"b\"]\nbuild = [\"x\"]\n[package.b]\ninputs = [\"a\"]\nbuild = [\"x\"]\n",
        &[],
    );
    assert!(e.contains("cycle") && e.contains("a -> b -> a"), "{e}");
}

#[test]
fn a_sha256_mismatch_names_both_digests() {
    let w = World::new();
    let wrong = "0".repeat(64);
    let text = format!(
        "version = 1\n[source.data]\nfile = \"data.txt\"\nsha256 = \"{wrong}\"\n[package.p]\nunpack = []\ninputs = [\"data\"]\nbuild = [\"true\"]\n"
    );
    let m = w.manifest("mismatch", &text, &[("data.txt", b"some data\n")]);
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    let actual = sha256_hex(b"some data\n");
    assert!(
        run.stderr.contains(&wrong) && run.stderr.contains(&actual),
        "{}",
        run.stderr
    );
    assert!(w.store_entries().is_empty(), "{:?}", w.store_entries());
    let cache: Vec<_> = std::fs::read_dir(w.root.join("cache/sha256"))
        .unwrap()
        .collect();
    assert!(
        cache.is_empty(),
        "a mismatching download stays out of the cache"
    );
}

#[test]
fn an_unknown_deb_and_a_failing_url_are_clear_errors() {
    let w = World::new();
    let text = format!(
        "version = 1\n[source.x]\ndeb = \"distill-no-such-package\"\ndeb_version = \"1.0\"\nsha256 = \"{}\"\n[package.p]\nunpack = [\"x\"]\n",
        "1".repeat(64)
    );
    let m = w.manifest("nodeb", &text, &[]);
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    assert!(
        run.stderr.contains("source x") && run.stderr.contains("distill-no-such-package"),
        "{}",
        run.stderr
    );

    // A port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = format!(
        "version = 1\n[source.y]\nurl = \"http://127.0.0.1:{port}/file.tar.gz\"\nsha256 = \"{}\"\n[package.p]\nunpack = [\"y\"]\n",
        "2".repeat(64)
    );
    let m = w.manifest("badurl", &text, &[]);
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    assert!(
        run.stderr.contains("source y") && run.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
    assert!(w.store_entries().is_empty());
}

#[test]
fn url_sources_are_fetched_and_unpacked() {
    let w = World::new();
    // A tiny HTTP server on loopback serving one gzip'd tarball.
    let tarball = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_path("share/data.txt").unwrap();
        h.set_cksum();
        b.append(&h, &b"hello\n"[..]).unwrap();
        let t = b.into_inner().unwrap();
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&t).unwrap();
        e.finish().unwrap()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = tarball.clone();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            use std::io::Write;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    let text = format!(
        "version = 1\n[source.t]\nurl = \"http://127.0.0.1:{port}/t.tar.gz\"\nsha256 = \"{}\"\n[package.p]\nunpack = [\"t\"]\n",
        sha256_hex(&tarball)
    );
    let m = w.manifest("url", &text, &[]);
    let (run, report) = w.build_json(&m);
    run.ok();
    let p = paths_by_name(&report.unwrap())["p"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&p).join("share/data.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn concurrent_builds_build_each_path_once() {
    let w = World::new();
    let text = busybox_package(&["sleep 1", "echo built > $out/x"]);
    let m = w.manifest("concurrent", &text, &[]);
    let args = [
        "build",
        m.to_str().unwrap(),
        "--keyring",
        w.cert().to_str().unwrap().to_string().leak(),
        "--json",
    ];
    let a = w
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = w
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ra: distill_tests::Run = a.wait_with_output().unwrap().into();
    let rb: distill_tests::Run = b.wait_with_output().unwrap().into();
    ra.ok();
    rb.ok();
    let ja: serde_json::Value = serde_json::from_str(&ra.stdout).unwrap();
    let jb: serde_json::Value = serde_json::from_str(&rb.stdout).unwrap();
    let (pa, pb) = (paths_by_name(&ja), paths_by_name(&jb));
    for name in ["busybox-deb", "busybox", "probe"] {
        assert_eq!(pa[name]["path"], pb[name]["path"]);
        let built = [
            pa[name]["built"].as_bool().unwrap(),
            pb[name]["built"].as_bool().unwrap(),
        ];
        assert_eq!(
            built.iter().filter(|b| **b).count(),
            1,
            "{name} built {built:?}"
        );
    }
    w.distill(&["store", "verify"]).ok();
}

#[test]
fn a_killed_build_leaves_no_partial_path() {
    let w = World::new();
    // Make busybox available first so the kill lands in the slow step.
    let text = busybox_package(&["echo partial > $out/partial", "sleep 30", "touch $out/ok"]);
    let m = w.manifest("killed", &text, &[]);
    // The build and everything it starts are in a cgroup of this test's own.
    let own = distill_tests::OwnCgroup::new();
    let mut child = own.spawn(
        w.command(&[
            "build",
            m.to_str().unwrap(),
            "--keyring",
            w.cert().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null()),
    );
    // Wait until the slow step runs (the busybox package is in place), then SIGKILL.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if w.store_entries()
            .iter()
            .any(|e| e.ends_with("-busybox-1.35.0"))
        {
            std::thread::sleep(Duration::from_millis(800));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build never got to the slow step"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The build has processes besides itself (its sandbox) for the kill to leave behind.
    assert!(own.procs().len() >= 2, "{:?}", own.procs());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !w.store_entries().iter().any(|e| e.ends_with("-probe-0")),
        "{:?}",
        w.store_entries()
    );
    w.distill(&["store", "verify"]).ok();
    // And the sandbox died with it: nothing the build started is left in its cgroup.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !own.procs().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        own.procs(),
        Vec::<i32>::new(),
        "left running after the kill"
    );
}

#[test]
fn store_verify_names_a_tampered_path_and_gc_removes_garbage() {
    let w = World::new();
    let m = w.manifest("v1", &busybox_package(&["echo one > $out/x"]), &[]);
    let (run, r1) = w.build_json(&m);
    run.ok();
    let r1 = r1.unwrap();
    let probe1 = paths_by_name(&r1)["probe"].clone();

    // Same record name (same directory), new content: the old probe path becomes garbage.
    std::fs::write(&m, busybox_package(&["echo two > $out/x"])).unwrap();
    w.sign(&m);
    let (run, r2) = w.build_json(&m);
    run.ok();
    let probe2 = paths_by_name(&r2.unwrap())["probe"].clone();
    assert_ne!(probe1["path"], probe2["path"]);

    // Tamper with the live path: verify names it.
    let x = Path::new(probe2["path"].as_str().unwrap()).join("x");
    std::fs::write(&x, "tampered\n").unwrap();
    let run = w.distill(&["store", "verify"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(probe2["store_name"].as_str().unwrap()),
        "{}",
        run.stderr
    );
    std::fs::write(&x, "two\n").unwrap();
    w.distill(&["store", "verify"]).ok();

    let run = w.distill(&["store", "gc"]);
    run.ok();
    assert!(
        run.stdout.contains(probe1["store_name"].as_str().unwrap()),
        "{}",
        run.stdout
    );
    assert!(!Path::new(probe1["path"].as_str().unwrap()).exists());
    assert!(Path::new(probe2["path"].as_str().unwrap()).exists());
    // The busybox paths are referenced by the live record and stay.
    assert!(w
        .store_entries()
        .iter()
        .any(|e| e.ends_with("-busybox-1.35.0")));
}

#[test]
fn pin_deb_writes_source_entries_apt_agrees_with() {
    let w = World::new();
    let run = w.distill(&["pin", "deb", "busybox-static"]);
    run.ok();
    assert!(
        run.stdout.contains("deb = \"busybox-static\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("sha256 = \""), "{}", run.stdout);
    let run = w.distill(&["pin", "deb", "distill-no-such-package"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("distill-no-such-package"),
        "{}",
        run.stderr
    );
}

#[test]
fn out_without_an_image_section_is_refused_before_any_work() {
    let w = World::new();
    let m = w.manifest("noimage", &busybox_package(&["touch $out/ok"]), &[]);
    let out = w.path("out");
    let run = w.distill(&[
        "build",
        m.to_str().unwrap(),
        "--keyring",
        w.cert().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("has no [image] section"),
        "{}",
        run.stderr
    );
    assert!(
        w.store_entries().is_empty(),
        "nothing is fetched or built: {:?}",
        w.store_entries()
    );
}

#[test]
fn an_error_names_its_cause_once() {
    let w = World::new();
    // A directory in the store that is not a store name.
    std::fs::create_dir_all(w.root.join("store/not-a-name")).unwrap();
    let run = w.distill(&["store", "ls"]);
    run.expect_code(1);
    assert!(run.stderr.contains("not-a-name"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("invalid store name").count(),
        1,
        "{}",
        run.stderr
    );
}
