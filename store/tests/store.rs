//! Integration tests of the store: real directories, real locks, real child processes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use distill_store::{
    derivation_digest, hash_tree, AddError, CacheError, Store, StoreError, StoreName,
};
use serde_json::json;
use sha2::{Digest, Sha256};

const CHILD_ENV: &str = "DISTILL_STORE_TEST_CHILD";

fn name(label: &str, version: &str) -> StoreName {
    StoreName::new(&derivation_digest(label.as_bytes()), label, version).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Adds a path whose build writes `files` (name, contents).
fn add_files(
    store: &Store,
    n: &StoreName,
    refs: &[StoreName],
    files: &[(&str, &str)],
) -> distill_store::PathInfo {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    store
        .add(n, &json!({"name": n.name}), refs, None, 0, |out| {
            for (f, c) in &files {
                let p = out.join(f);
                fs::create_dir_all(p.parent().unwrap())?;
                fs::write(p, c)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .unwrap()
}

#[test]
fn open_creates_layout() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root).unwrap();
    for d in ["store", "meta", "cache/sha256", "records", "locks", "tmp"] {
        assert!(root.join(d).is_dir(), "{d}");
    }
    // Opening again is fine.
    Store::open(&root).unwrap();
    assert_eq!(store.root(), root);
}

#[test]
fn add_builds_normalizes_and_records_info() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let dep = name("dep", "1.0");
    add_files(&store, &dep, &[], &[("lib/x", "x")]);
    let n = name("hello-src", "1_2.3_4+b1");
    let runs = AtomicUsize::new(0);
    let deriv = json!({"build": ["make"], "inputs": [dep.to_string()]});
    let info = store
        .add(
            &n,
            &deriv,
            &[dep.clone(), dep.clone()],
            Some("ABCD1234"),
            1_000_000,
            |out| {
                runs.fetch_add(1, Ordering::SeqCst);
                assert_eq!(fs::read_dir(out)?.count(), 0, "out dir starts empty");
                fs::create_dir(out.join("bin"))?;
                fs::write(out.join("bin/hello"), "#!/bin/sh\necho hi\n")?;
                fs::set_permissions(out.join("bin/hello"), fs::Permissions::from_mode(0o4775))?;
                fs::write(out.join("README"), "hello")?;
                std::os::unix::fs::symlink("bin/hello", out.join("run"))?;
                Ok::<(), std::io::Error>(())
            },
        )
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let p = store.path(&n);
    assert_eq!(p, t.path().join("store").join(n.to_string()));
    assert_eq!(info.output_hash, hash_tree(&p).unwrap());
    assert_eq!(info.size, 18 + 5 + 9);
    assert_eq!(info.files, 3);
    assert_eq!(info.references, vec![dep.to_string()]);
    assert_eq!(info.signer.as_deref(), Some("ABCD1234"));
    assert_eq!(info.derivation, deriv);
    let m = fs::metadata(p.join("bin/hello")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!(m.mtime(), 1_000_000);
    assert_eq!(
        fs::metadata(p.join("README")).unwrap().mode() & 0o7777,
        0o644
    );
    assert_eq!(fs::metadata(&p).unwrap().mtime(), 1_000_000);

    // The meta file holds the same info.
    let meta: distill_store::PathInfo =
        serde_json::from_slice(&fs::read(store.meta_path(&n)).unwrap()).unwrap();
    assert_eq!(meta, info);
    assert_eq!(store.info(&n).unwrap(), Some(info.clone()));

    // Fast path: already valid, the build is not run.
    let again = store
        .add(
            &n,
            &deriv,
            &[],
            None,
            0,
            |_| -> Result<(), std::io::Error> { panic!("build must not run for a valid path") },
        )
        .unwrap();
    assert_eq!(again, info);

    // list is sorted by name and holds both.
    let list = store.list().unwrap();
    let mut names: Vec<String> = list.iter().map(|i| i.name.to_string()).collect();
    let sorted = {
        let mut s = names.clone();
        s.sort();
        s
    };
    assert_eq!(names, sorted);
    names.sort();
    let mut want = vec![dep.to_string(), n.to_string()];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(entries(&t.path().join("tmp")), Vec::<String>::new());
    assert!(store.info(&name("absent", "1")).unwrap().is_none());
}

#[test]
fn failed_builds_leave_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let n = name("broken", "1");

    // The build fails after writing read-only content.
    let err = store
        .add(&n, &json!({}), &[], None, 0, |out| {
            fs::create_dir(out.join("ro"))?;
            fs::write(out.join("ro/f"), "data")?;
            fs::set_permissions(out.join("ro"), fs::Permissions::from_mode(0o500))?;
            Err(std::io::Error::other("compiler exploded"))
        })
        .unwrap_err();
    assert!(matches!(err, AddError::Build { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("compiler exploded") && msg.contains(&n.to_string()),
        "{msg}"
    );

    // The build leaves a fifo: normalization refuses it, naming the path.
    let err = store
        .add(&n, &json!({}), &[], None, 0, |out| {
            let status = Command::new("mkfifo").arg(out.join("pipe")).status()?;
            assert!(status.success());
            Ok::<(), std::io::Error>(())
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AddError::Store(StoreError::Tree { .. })),
        "{msg}"
    );
    assert!(msg.contains("pipe") && msg.contains("fifo"), "{msg}");

    // The build replaces its output directory with a file.
    let err = store
        .add(&n, &json!({}), &[], None, 0, |out| {
            fs::remove_dir(out)?;
            fs::write(out, "not a dir")
        })
        .unwrap_err();
    assert!(
        matches!(err, AddError::Store(StoreError::OutputNotDir { .. })),
        "{err}"
    );

    // A reference that is not in the store.
    let err = store
        .add(&n, &json!({}), &[name("ghost", "1")], None, 0, |_| {
            Ok::<(), std::io::Error>(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");

    assert!(store.info(&n).unwrap().is_none());
    assert_eq!(entries(&t.path().join("store")), Vec::<String>::new());
    assert_eq!(entries(&t.path().join("meta")), Vec::<String>::new());
    assert_eq!(entries(&t.path().join("tmp")), Vec::<String>::new());
    assert!(store.verify().unwrap().is_ok());

    // The path can still be built afterwards.
    add_files(&store, &n, &[], &[("ok", "ok")]);
    assert!(store.info(&n).unwrap().is_some());
}

#[test]
fn concurrent_threads_build_once() {
    let t = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(t.path()).unwrap());
    let n = name("shared", "1");
    let runs = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (store, n, runs) = (store.clone(), n.clone(), runs.clone());
            std::thread::spawn(move || {
                store
                    .add(&n, &json!({}), &[], None, 0, |out| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        fs::write(out.join("f"), "content")
                    })
                    .unwrap()
            })
        })
        .collect();
    let infos: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(infos.iter().all(|i| i == &infos[0]));
    assert_eq!(entries(&t.path().join("store")), vec![n.to_string()]);
}

/// Spawns this test binary running the ignored `child_process` helper with `args`.
fn spawn_child(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, args.join("\u{1f}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Not a test: the body of child processes spawned by the tests below.
#[test]
#[ignore = "helper run as a child process by other tests"]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = spec.split('\u{1f}').collect();
    let store = Store::open(Path::new(args[1])).unwrap();
    let n = name("contended", "1");
    match args[0] {
        // add-slow <root> <log> <result>: build slowly, log each build run.
        "add-slow" => {
            let info = store
                .add(&n, &json!({}), &[], None, 0, |out| {
                    let mut log = fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(args[2])?;
                    writeln!(log, "built by {}", std::process::id())?;
                    std::thread::sleep(Duration::from_millis(700));
                    fs::write(out.join("f"), "content")
                })
                .unwrap();
            fs::write(args[3], &info.output_hash).unwrap();
        }
        // add-hang <root> <marker>: start building, announce, then hang until killed.
        "add-hang" => {
            store
                .add(&n, &json!({}), &[], None, 0, |out| {
                    fs::create_dir(out.join("half"))?;
                    fs::write(out.join("half/written"), "partial")?;
                    fs::set_permissions(out.join("half"), fs::Permissions::from_mode(0o555))?;
                    fs::write(args[2], "started")?;
                    loop {
                        std::thread::sleep(Duration::from_secs(60));
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), std::io::Error>(())
                })
                .unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn concurrent_processes_build_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root).unwrap();
    let log = t.path().join("builds.log");
    let results: Vec<PathBuf> = (0..3)
        .map(|i| t.path().join(format!("result{i}")))
        .collect();
    let children: Vec<_> = results
        .iter()
        .map(|r| {
            spawn_child(&[
                "add-slow",
                root.to_str().unwrap(),
                log.to_str().unwrap(),
                r.to_str().unwrap(),
            ])
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let log = fs::read_to_string(&log).unwrap();
    assert_eq!(log.lines().count(), 1, "built more than once: {log}");
    let hashes: Vec<String> = results
        .iter()
        .map(|r| fs::read_to_string(r).unwrap())
        .collect();
    let info = store.info(&name("contended", "1")).unwrap().unwrap();
    assert!(hashes.iter().all(|h| h == &info.output_hash));
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn killed_build_leaves_no_path_and_gc_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let store = Store::open(&root).unwrap();
    let marker = t.path().join("started");
    let mut child = spawn_child(&["add-hang", root.to_str().unwrap(), marker.to_str().unwrap()]);
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "child never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let n = name("contended", "1");
    assert!(store.info(&n).unwrap().is_none());
    assert_eq!(entries(&root.join("store")), Vec::<String>::new());
    assert_eq!(entries(&root.join("meta")), Vec::<String>::new());
    assert_eq!(
        entries(&root.join("tmp")).len(),
        1,
        "the dead build's temp dir is left"
    );
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.stale_temp, 1);

    // The dead process's locks are gone: the same path can be added now.
    add_files(&store, &n, &[], &[("f", "content")]);

    // gc removes the stale temp dir (with its read-only subdirectory) and keeps the root.
    let gc = store.gc(std::slice::from_ref(&n)).unwrap();
    assert_eq!(gc.removed_temp, 1);
    assert!(gc.removed.is_empty());
    assert_eq!(entries(&root.join("tmp")), Vec::<String>::new());
    assert!(store.info(&n).unwrap().is_some());
}

#[test]
fn temp_dirs_in_use_survive_gc() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let tmp = store.temp_dir("build-x").unwrap();
    fs::write(tmp.path().join("f"), "x").unwrap();
    let gc = store.gc(&[]).unwrap();
    assert_eq!(gc.removed_temp, 0);
    assert!(tmp.path().join("f").exists());
    let p = tmp.path().to_path_buf();
    drop(tmp);
    assert!(!p.exists());
    // Labels are made safe: the directory stays directly under tmp/.
    let odd = store.temp_dir("../esc/ape").unwrap();
    assert_eq!(odd.path().parent().unwrap(), t.path().join("tmp"));
    assert!(odd.path().is_dir());
}

#[test]
fn cache_insert_checks_sha256() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let data = vec![7u8; 1_000_000];
    let sha = hex::encode(Sha256::digest(&data));
    assert!(!store.cache_has(&sha));

    let wrong = hex::encode(Sha256::digest(b"something else"));
    let err = store
        .cache_insert(&wrong, &data[..], "https://example.invalid/x.tar")
        .unwrap_err();
    match &err {
        CacheError::Mismatch {
            origin,
            expected,
            actual,
        } => {
            assert_eq!(origin, "https://example.invalid/x.tar");
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha);
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong) && msg.contains(&sha) && msg.contains("x.tar"),
        "{msg}"
    );
    assert_eq!(
        entries(&t.path().join("cache/sha256")),
        Vec::<String>::new()
    );
    assert_eq!(entries(&t.path().join("tmp")), Vec::<String>::new());
    assert!(!store.cache_has(&wrong));

    let err = store.cache_insert("abc", &data[..], "file x").unwrap_err();
    assert!(matches!(err, CacheError::BadDigest { .. }), "{err}");

    let upper = format!("sha256:{}", sha.to_uppercase());
    let p = store.cache_insert(&upper, &data[..], "file x").unwrap();
    assert_eq!(p, store.cache_path(&sha));
    assert_eq!(fs::read(&p).unwrap(), data);
    assert!(store.cache_has(&sha));
    assert!(store.cache_has(&upper));
    // Inserting again does not read the reader.
    struct Fails;
    impl std::io::Read for Fails {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("must not be read"))
        }
    }
    assert_eq!(store.cache_insert(&sha, Fails, "again").unwrap(), p);
    // A failing reader on a new digest is a read error naming the origin.
    let err = store
        .cache_insert(&wrong, Fails, "deb busybox")
        .unwrap_err();
    assert!(err.to_string().contains("deb busybox"), "{err}");
    assert_eq!(entries(&t.path().join("tmp")), Vec::<String>::new());
}

#[test]
fn records_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let a = name("a", "1");
    let b = name("b", "1");
    let p = store
        .write_record(
            "image",
            "hello:latest",
            &json!({"digest": "sha256:00"}),
            &[b.clone(), a.clone(), b.clone()],
        )
        .unwrap();
    assert_eq!(p, t.path().join("records/image/hello:latest.json"));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    let mut sorted = vec![a.to_string(), b.to_string()];
    sorted.sort();
    assert_eq!(v["roots"], json!(sorted));
    assert_eq!(v["record"]["digest"], "sha256:00");
    store.write_record("build", "x", &json!(1), &[]).unwrap();
    let recs = store.records().unwrap();
    assert_eq!(
        recs.iter()
            .map(|r| (r.kind.as_str(), r.name.as_str()))
            .collect::<Vec<_>>(),
        vec![("build", "x"), ("image", "hello:latest")]
    );
    let roots: Vec<String> = recs[1].roots.iter().map(|r| r.to_string()).collect();
    assert_eq!(roots, sorted);
    // Replacing keeps one file.
    store
        .write_record("build", "x", &json!(2), std::slice::from_ref(&a))
        .unwrap();
    assert_eq!(
        store.record("build", "x").unwrap().unwrap().record,
        json!(2)
    );
    assert_eq!(entries(&t.path().join("records/build")), vec!["x.json"]);
    assert!(store.remove_record("build", "x").unwrap());
    assert!(!store.remove_record("build", "x").unwrap());
    assert!(store.record("build", "x").unwrap().is_none());
    for (k, n) in [
        ("", "x"),
        ("a/b", "x"),
        ("k", "../x"),
        (".k", "x"),
        ("k", ".x"),
    ] {
        let e = store.write_record(k, n, &json!(null), &[]).unwrap_err();
        assert!(
            matches!(e, StoreError::BadRecordName { .. }),
            "{k}/{n}: {e}"
        );
    }
    // A damaged record is an error naming the file.
    fs::write(t.path().join("records/image/bad.json"), "{").unwrap();
    let e = store.records().unwrap_err().to_string();
    assert!(e.contains("bad.json"), "{e}");
}

#[test]
fn verify_reports_tampering_and_missing_meta() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let a = name("a", "1");
    let b = name("b", "1");
    let c = name("c", "1");
    let ia = add_files(&store, &a, &[], &[("f", "one")]);
    add_files(&store, &b, &[], &[("g", "two")]);
    add_files(&store, &c, &[], &[("h", "three")]);
    let r = store.verify().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.checked, 3);

    fs::write(store.path(&a).join("f"), "ONE").unwrap();
    fs::remove_file(store.meta_path(&b)).unwrap();
    fs::write(
        t.path()
            .join("meta")
            .join(format!("{}.json", name("gone", "1"))),
        "{}",
    )
    .unwrap();
    fs::create_dir(t.path().join("store/not-a-name")).unwrap();
    let r = store.verify().unwrap();
    assert!(!r.is_ok());
    assert_eq!(r.mismatches.len(), 1);
    assert_eq!(r.mismatches[0].name, a.to_string());
    assert_eq!(r.mismatches[0].expected, ia.output_hash);
    assert_eq!(r.mismatches[0].actual, hash_tree(&store.path(&a)).unwrap());
    assert_eq!(r.missing_meta, vec![b.to_string()]);
    assert_eq!(r.orphan_meta, vec![format!("{}.json", name("gone", "1"))]);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(r.problems[0].contains("not-a-name"));
    assert!(store.info(&b).unwrap_err().to_string().contains("meta"));
    let msgs = r.messages();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(msgs[0].contains(&a.to_string()) && msgs[0].contains(&ia.output_hash));
}

#[test]
fn gc_keeps_closure_of_roots_and_removes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path()).unwrap();
    let base = name("base", "1");
    let lib = name("lib", "2.0");
    let app = name("app", "3");
    let tool = name("tool", "1");
    let junk = name("junk", "1");
    let junk_dep = name("junkdep", "1");
    add_files(&store, &base, &[], &[("b", "base")]);
    add_files(&store, &lib, std::slice::from_ref(&base), &[("l", "lib")]);
    add_files(&store, &app, std::slice::from_ref(&lib), &[("a", "app")]);
    add_files(&store, &tool, &[], &[("t", "tool")]);
    add_files(&store, &junk_dep, &[], &[("d/x", "12345")]);
    add_files(
        &store,
        &junk,
        std::slice::from_ref(&junk_dep),
        &[("j", "junk")],
    );
    // A read-only tree among the garbage.
    fs::set_permissions(
        store.path(&junk_dep).join("d"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    fs::set_permissions(store.path(&junk_dep), fs::Permissions::from_mode(0o555)).unwrap();
    // Garbage of other kinds: orphan meta, a stale meta temp file, a stale tmp dir.
    let orphan = format!("{}.json", name("orphan", "1"));
    fs::write(t.path().join("meta").join(&orphan), "{}").unwrap();
    fs::write(t.path().join("meta/.x.json.1.2"), "partial").unwrap();
    fs::create_dir(t.path().join("tmp/add-dead.1.1")).unwrap();

    store
        .write_record("image", "app", &json!({}), std::slice::from_ref(&app))
        .unwrap();
    let report = store.gc(std::slice::from_ref(&tool)).unwrap();
    let mut want = vec![junk.to_string(), junk_dep.to_string()];
    want.sort();
    assert_eq!(report.removed, want);
    assert_eq!(report.bytes, 5 + 4);
    assert_eq!(report.kept, 4);
    assert_eq!(report.removed_meta, vec![orphan]);
    assert_eq!(report.removed_temp, 1);
    for kept in [&base, &lib, &app, &tool] {
        assert!(store.info(kept).unwrap().is_some(), "{kept}");
    }
    for gone in [&junk, &junk_dep] {
        assert!(store.info(gone).unwrap().is_none(), "{gone}");
        assert!(!store.meta_path(gone).exists());
    }
    assert_eq!(entries(&t.path().join("tmp")), Vec::<String>::new());
    let mut meta = entries(&t.path().join("meta"));
    meta.sort();
    let mut want_meta: Vec<String> = [&app, &base, &lib, &tool]
        .iter()
        .map(|n| format!("{n}.json"))
        .collect();
    want_meta.sort();
    assert_eq!(meta, want_meta);
    assert!(store.verify().unwrap().is_ok());

    // Without the record and extra roots everything goes.
    store.remove_record("image", "app").unwrap();
    let report = store.gc(&[]).unwrap();
    assert_eq!(report.removed.len(), 4);
    assert_eq!(entries(&t.path().join("store")), Vec::<String>::new());
    assert_eq!(entries(&t.path().join("meta")), Vec::<String>::new());
    assert_eq!(entries(&t.path().join("locks")), vec!["gc.lock"]);
}

#[test]
fn gc_waits_for_running_add() {
    let t = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(t.path()).unwrap());
    let n = name("slow", "1");
    let started = Arc::new(AtomicUsize::new(0));
    let h = {
        let (store, n, started) = (store.clone(), n.clone(), started.clone());
        std::thread::spawn(move || {
            store
                .add(&n, &json!({}), &[], None, 0, |out| {
                    started.store(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(500));
                    fs::write(out.join("f"), "x")
                })
                .unwrap();
        })
    };
    while started.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // gc blocks until the add finishes; the fresh path is then kept as an extra root and the
    // running build's temp dir was never touched.
    let report = store.gc(std::slice::from_ref(&n)).unwrap();
    h.join().unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.removed_temp, 0);
    // Only a gc that waited for the add saw the path valid (and so kept it).
    assert_eq!(report.kept, 1, "gc did not wait for the running add");
    assert!(store.info(&n).unwrap().is_some());
}
