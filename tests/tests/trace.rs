//! End-to-end tests of the tracer and minimal images (issue 4): `distill trace`, pruning by
//! probes, the proof that the pruned image behaves the same, keep rules, and `distill why`.

use std::path::Path;

use distill_tests::{busybox_preamble, World};

fn build_image(w: &World, manifest: &Path) -> (distill_tests::Run, Option<serde_json::Value>) {
    let out = manifest.parent().unwrap().join("out");
    let run = w.distill(&[
        "build",
        manifest.to_str().unwrap(),
        "--keyring",
        w.cert().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let json = serde_json::from_str(&run.stdout).ok();
    (run, json)
}

/// An image of busybox plus an `app` package built by `steps`, with the given trace section.
fn app_manifest(steps: &[&str], entry: &[&str], trace: &str) -> String {
    let q = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}\n[package.app]\ninputs = [\"busybox\"]\nshell = [\"$busybox/bin/busybox\", \"sh\", \"-e\", \"-c\"]\nbuild = [{}]\n\n[image]\nname = \"app\"\npackages = [\"busybox\", \"app\"]\nentrypoint = [{}]\n\n{trace}\n",
        busybox_preamble(),
        q(steps),
        q(entry)
    )
}

#[test]
fn trace_prints_every_path_with_syscall_pid_and_existence() {
    let w = World::new();
    let run = w.distill(&[
        "trace",
        "--",
        "/bin/cat",
        "/etc/hostname",
        "/nonexistent-distill",
    ]);
    assert_eq!(run.code, 1, "cat fails on the missing file: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let find = |p: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{p}\t")))
            .copied()
    };
    let hostname = find("/etc/hostname").expect("/etc/hostname traced");
    let f: Vec<&str> = hostname.split('\t').collect();
    assert_eq!(f[1], "openat");
    assert!(f[2].parse::<i32>().unwrap() > 0);
    assert_eq!(f[3], "exists");
    assert!(find("/nonexistent-distill").unwrap().ends_with("\tmissing"));
    assert!(find("/bin/cat").unwrap().contains("\texecve\t"));

    let run = w.distill(&["trace", "--json", "--", "/bin/true"]);
    run.ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["exit_code"], 0);
    assert!(v["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["path"] == "/bin/true" && a["syscall"] == "execve"));
}

#[test]
fn the_hello_image_keeps_only_what_its_probe_touches() {
    let w = World::new();
    let m = w.example("hello");
    let (run, report) = build_image(&w, &m);
    run.ok();
    let image = &report.unwrap()["image"];
    let pruned = &image["pruned"];
    let kept: Vec<&str> = pruned["set"]["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for p in [
        "/bin/busybox",
        "/bin/hello",
        "/bin/sh",
        "/share/hello/greeting.txt",
    ] {
        assert!(kept.contains(&p), "{p} missing from {kept:?}");
    }
    assert!(
        !kept.iter().any(|p| p.starts_with("/usr/share/doc")),
        "docs are not touched: {kept:?}"
    );
    assert!(
        pruned["minimal"]["files"].as_u64().unwrap() < pruned["full"]["files"].as_u64().unwrap()
    );

    let run = w.distill(&["why", "hello", "/share/hello/greeting.txt"]);
    run.ok();
    assert!(
        run.stdout.contains("traced by probe `greet`"),
        "{}",
        run.stdout
    );
    let run = w.distill(&["why", "hello", "/bin"]);
    run.ok();
    assert!(run.stdout.contains("parent directory of"), "{}", run.stdout);
    let run = w.distill(&["why", "hello", "/usr/share/doc/busybox-static/copyright"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("is not in image hello"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_probe_that_globs_a_directory_fails_the_proof_unless_kept() {
    // A shell glob reads directory entries with getdents, which names no path (busybox `ls`
    // would stat each entry, and so keep it): the minimal image lists fewer entries, and the
    // proof must catch it, naming the probe and the first differing line.
    let w = World::new();
    let steps = [
        "mkdir -p $out/data",
        "echo a > $out/data/a",
        "echo b > $out/data/b",
    ];
    let probe = "[[trace.probe]]\nname = \"list\"\nargs = [\"/bin/busybox\", \"sh\", \"-c\", \"cat /data/a; echo /data/*\"]\n";
    let m = w.manifest("ls", &app_manifest(&steps, &["/bin/busybox"], probe), &[]);
    let (run, _) = build_image(&w, &m);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("probe `list` behaves differently in the minimal image"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("stdout line"), "{}", run.stderr);

    let kept = format!("[trace]\nkeep = [\"/data/**\"]\n\n{probe}");
    let m = w.manifest(
        "ls-kept",
        &app_manifest(&steps, &["/bin/busybox"], &kept),
        &[],
    );
    let (run, report) = build_image(&w, &m);
    run.ok();
    let paths = report.unwrap()["image"]["pruned"]["set"]["paths"].clone();
    assert!(paths.get("/data/b").is_some(), "{paths}");
}

#[test]
fn a_file_read_only_on_an_unexercised_path_needs_a_keep_rule() {
    // The program reads /etc/app.conf only when MODE=full; the probe does not set it.
    let w = World::new();
    let steps = [
        "mkdir -p $out/etc $out/bin",
        "echo setting=1 > $out/etc/app.conf",
        "printf '#!/bin/busybox sh\\nif [ \"$MODE\" = full ]; then /bin/busybox cat /etc/app.conf; fi\\necho done\\n' > $out/bin/app",
        "chmod 0755 $out/bin/app",
    ];
    let probe = "[[trace.probe]]\nname = \"quick\"\nargs = [\"/bin/app\"]\n";
    let m = w.manifest("nokeep", &app_manifest(&steps, &["/bin/app"], probe), &[]);
    let (run, _) = build_image(&w, &m);
    run.ok();
    let run = w.distill(&["why", "app", "/etc/app.conf"]);
    run.expect_code(1);

    let kept = format!("[trace]\nkeep = [\"/etc/app.conf\"]\n\n{probe}");
    let m = w.manifest("keep", &app_manifest(&steps, &["/bin/app"], &kept), &[]);
    let (run, _) = build_image(&w, &m);
    run.ok();
    let run = w.distill(&["why", "app", "/etc/app.conf"]);
    run.ok();
    assert!(
        run.stdout.contains("keep rule `/etc/app.conf`"),
        "{}",
        run.stdout
    );
}

#[test]
fn busybox_httpd_is_pruned_and_still_serves_the_page() {
    let w = World::new();
    let m = w.example("busybox-httpd");
    let (run, report) = build_image(&w, &m);
    run.ok();
    let pruned = &report.unwrap()["image"]["pruned"];
    assert!(pruned["set"]["paths"].get("/www/index.html").is_some());
    let run = w.distill(&["why", "busybox-httpd", "/www/index.html"]);
    run.ok();
    assert!(
        run.stdout.contains("traced by probe `serve`"),
        "{}",
        run.stdout
    );
}

#[test]
fn python_app_is_pruned_and_still_prints_its_result() {
    let w = World::new();
    let m = w.example("python-app");
    let (run, report) = build_image(&w, &m);
    run.ok();
    let pruned = &report.unwrap()["image"]["pruned"];
    let full = pruned["full"]["bytes"].as_u64().unwrap();
    let minimal = pruned["minimal"]["bytes"].as_u64().unwrap();
    eprintln!(
        "python-app: full closure {full} bytes, minimal {minimal} bytes ({:.1}x)",
        full as f64 / minimal as f64
    );
    assert!(
        minimal * 3 < full,
        "the minimal image is much smaller: {minimal} of {full}"
    );
    for p in [
        "/usr/bin/python3.11",
        "/usr/lib/python3.11/json/__init__.py",
        "/usr/lib/python3.11/email/message.py",
        "/usr/lib/python3.11/http/client.py",
        "/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(pruned["set"]["paths"].get(p).is_some(), "{p} is kept");
    }
    let run = w.distill(&["why", "python-app", "/lib/x86_64-linux-gnu/libc.so.6"]);
    run.ok();
    assert!(
        run.stdout.contains("traced by probe `run`") || run.stdout.contains("ELF dependency"),
        "{}",
        run.stdout
    );
}

#[test]
fn tracing_a_missing_program_in_a_root_is_an_error() {
    let w = World::new();
    let root = w.path("emptyroot");
    std::fs::create_dir_all(&root).unwrap();
    let run = w.distill(&[
        "trace",
        "--in",
        root.to_str().unwrap(),
        "--",
        "/nonexistent",
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("/nonexistent"), "{}", run.stderr);
}
