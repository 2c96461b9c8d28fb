//! ELF closure, ld.so.cache parsing, pruning (symlink chains, keep/exclude), copy_minimal and
//! the proof step, on real files in copied roots.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_tracer::{
    compare_runs, copy_minimal, elf_closure, minimal_set, parse_ld_cache, trace, Access,
    ProbeOutcome, Reason, TraceCommand,
};

/// Copy a host file to the same path inside `root`, recreating symlinked directories and
/// symlinks on the way as they are on the host.
fn copy_into(root: &Path, host_path: &Path) {
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = host_path.components().skip(1).collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let dst = root.join(cur.strip_prefix("/").unwrap());
        let md = std::fs::symlink_metadata(&cur).unwrap();
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(&cur).unwrap();
            if std::fs::symlink_metadata(&dst).is_err() {
                symlink(&t, &dst).unwrap();
            }
            let target = if t.is_absolute() {
                t
            } else {
                cur.parent().unwrap().join(t)
            };
            let mut rest = target;
            for c in &comps[i + 1..] {
                rest.push(c);
            }
            return copy_into(root, &rest);
        } else if md.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else {
            // Programs and their interpreter among them: copied without an fd open for writing here.
            distill_sandbox::copy_executable(&cur, &dst).unwrap();
        }
    }
}

/// ldd's view of an executable: the paths it resolves (interpreter included).
fn ldd(exe: &str) -> BTreeSet<PathBuf> {
    let out = Command::new("ldd").arg(exe).output().unwrap();
    let mut s = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        let p = if let Some((_, r)) = line.split_once("=> ") {
            r.split(' ').next().unwrap()
        } else {
            line.split(' ').next().unwrap()
        };
        if p.starts_with('/') {
            s.insert(PathBuf::from(p));
        }
    }
    s
}

fn root_with(exe: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    copy_into(&root, Path::new(exe));
    for p in ldd(exe) {
        copy_into(&root, &p);
    }
    copy_into(&root, Path::new("/etc/ld.so.cache"));
    (tmp, root)
}

#[test]
fn ld_cache_matches_ldconfig() {
    let bytes = std::fs::read("/etc/ld.so.cache").unwrap();
    let ours: BTreeSet<(String, String)> = parse_ld_cache(&bytes).unwrap().into_iter().collect();
    let out = Command::new("ldconfig").arg("-p").output().unwrap();
    let theirs: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(' ')?;
            let (_, path) = rest.split_once("=> ")?;
            Some((name.to_string(), path.to_string()))
        })
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
    assert!(parse_ld_cache(b"not a cache").is_err());
}

#[test]
fn elf_closure_of_ls_matches_ldd_in_a_copied_root() {
    let exe = "/usr/bin/ls";
    let (_tmp, root) = root_with(exe);
    let got: BTreeSet<PathBuf> = elf_closure(&root, &[PathBuf::from(exe)])
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(got, ldd(exe));
    let m = elf_closure(&root, &[PathBuf::from(exe)]).unwrap();
    let interp = ldd(exe)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("ld-linux"))
        .unwrap();
    assert_eq!(
        m[&interp],
        Reason::Interpreter {
            of: PathBuf::from(exe)
        }
    );
}

#[test]
fn elf_closure_uses_runpath_origin_and_the_roots_ld_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = d.join("root");
    // libviacache.so: found only through ld.so.cache built by ldconfig for /opt/weird.
    std::fs::create_dir_all(root.join("opt/weird")).unwrap();
    std::fs::create_dir_all(root.join("app/lib")).unwrap();
    std::fs::create_dir_all(root.join("app/bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let so = common::gcc_text(
        "int viacache(void){return 1;}",
        d,
        "libviacache.so",
        &["-shared", "-fPIC", "-Wl,-soname,libviacache.so"],
    );
    std::fs::copy(&so, root.join("opt/weird/libviacache.so")).unwrap();
    let so2 = common::gcc_text(
        "int viaorigin(void){return 2;}",
        d,
        "liborigin.so",
        &["-shared", "-fPIC", "-Wl,-soname,liborigin.so"],
    );
    std::fs::copy(&so2, root.join("app/lib/liborigin.so")).unwrap();
    std::fs::write(
        d.join("main.c"),
        "int viacache(void); int viaorigin(void); int main(void){return viacache()+viaorigin()-3;}",
    )
    .unwrap();
    let st = Command::new("gcc")
        .current_dir(d)
        .args([
            "-o",
            "app",
            "main.c",
            "-L",
            root.join("opt/weird").to_str().unwrap(),
            "-L",
            root.join("app/lib").to_str().unwrap(),
            "-lviacache",
            "-lorigin",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    distill_sandbox::copy_executable(&d.join("app"), &root.join("app/bin/app")).unwrap();
    for p in ldd("/usr/bin/true") {
        copy_into(&root, &p);
    }
    std::fs::write(root.join("etc/ld.so.conf"), "/opt/weird\n").unwrap();
    let st = Command::new("ldconfig")
        .arg("-r")
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "ldconfig -r failed");
    let m = elf_closure(&root, &[PathBuf::from("/app/bin/app")]).unwrap();
    // The path as the loader spells it ($ORIGIN/../lib); minimal_set resolves it physically.
    assert_eq!(
        m[Path::new("/app/bin/../lib/liborigin.so")],
        Reason::ElfDependency {
            of: "/app/bin/app".into()
        }
    );
    assert_eq!(
        m[Path::new("/opt/weird/libviacache.so")],
        Reason::ElfDependency {
            of: "/app/bin/app".into()
        }
    );
    assert!(m.keys().any(|k| k.ends_with("libc.so.6")));
    // Without the cache the library is not found in any default directory.
    std::fs::remove_file(root.join("etc/ld.so.cache")).unwrap();
    let m = elf_closure(&root, &[PathBuf::from("/app/bin/app")]).unwrap();
    assert!(!m.contains_key(Path::new("/opt/weird/libviacache.so")));
}

fn acc(path: &str, existed: bool) -> (String, Access) {
    (
        "p1".to_string(),
        Access {
            path: PathBuf::from(path),
            syscall: "openat",
            pid: 1,
            existed,
        },
    )
}

#[test]
fn pruning_keeps_symlink_chains_parents_keep_and_exclude() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mk = |p: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"data").unwrap();
    };
    mk("usr/share/real/file.txt");
    mk("usr/share/real/other.txt");
    mk("etc/ssl/certs/a.pem");
    mk("etc/ssl/certs/sub/b.pem");
    mk("etc/ssl/private/key");
    mk("etc/unrelated");
    mk("var/cache/big");
    symlink("usr/share", root.join("share")).unwrap(); // symlinked directory
    symlink("/share/real", root.join("usr/alias")).unwrap(); // absolute, through another link
    symlink("alias/file.txt", root.join("usr/link1")).unwrap(); // chain: link1 -> alias/...
    std::fs::create_dir_all(root.join("opt")).unwrap();
    symlink("../usr/link1", root.join("opt/entry")).unwrap();

    let accesses = vec![
        acc("/opt/entry", true),
        acc("/etc/missing/conf", false),
        acc("/var/cache/big", true),
    ];
    let keep = vec!["/etc/ssl/certs/**".to_string()];
    let exclude = vec!["/var/cache/**".to_string()];
    let set = minimal_set(&root, &accesses, &keep, &exclude).unwrap();
    let keys: BTreeSet<String> = set.paths.keys().map(|p| p.display().to_string()).collect();
    let want: BTreeSet<String> = [
        "/opt",
        "/opt/entry",
        "/usr",
        "/usr/link1",
        "/usr/alias",
        "/share",
        "/usr/share",
        "/usr/share/real",
        "/usr/share/real/file.txt",
        "/etc",
        "/etc/ssl",
        "/etc/ssl/certs",
        "/etc/ssl/certs/a.pem",
        "/etc/ssl/certs/sub",
        "/etc/ssl/certs/sub/b.pem",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        keys,
        want,
        "extra: {:?} missing: {:?}",
        keys.difference(&want).collect::<Vec<_>>(),
        want.difference(&keys).collect::<Vec<_>>()
    );
    assert!(set
        .why(Path::new("/usr/share/real/file.txt"))
        .unwrap()
        .contains(&Reason::Traced {
            probe: "p1".into(),
            syscall: "openat".into()
        }));
    assert!(set
        .why(Path::new("/usr/link1"))
        .unwrap()
        .contains(&Reason::Symlink {
            of: "/opt/entry".into()
        }));
    assert!(set
        .why(Path::new("/share"))
        .unwrap()
        .contains(&Reason::Symlink {
            of: "/opt/entry".into()
        }));
    assert!(set
        .why(Path::new("/usr/share/real"))
        .unwrap()
        .contains(&Reason::SymlinkTarget {
            of: "/usr/alias".into()
        }));
    assert!(set
        .why(Path::new("/etc/ssl/certs/a.pem"))
        .unwrap()
        .contains(&Reason::Keep {
            rule: "/etc/ssl/certs/**".into()
        }));
    assert_eq!(set.why(Path::new("/etc/unrelated")), None);
    // The lookup of /etc/missing/conf keeps /etc so it fails the same way; nothing below.
    assert!(set.why(Path::new("/etc")).is_some());

    // Materialise and check the chain still resolves in the copy.
    let dest = tmp.path().join("min");
    copy_minimal(&root, &set, &dest).unwrap();
    assert_eq!(
        std::fs::read(dest.join("opt/entry"))
            .err()
            .map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "absolute link resolves on the host, not in the copy"
    );
    assert_eq!(
        std::fs::read_link(dest.join("usr/alias")).unwrap(),
        Path::new("/share/real")
    );
    assert_eq!(
        std::fs::read(dest.join("usr/share/real/file.txt")).unwrap(),
        b"data"
    );
    assert!(!dest.join("usr/share/real/other.txt").exists());
    assert!(!dest.join("var/cache/big").exists());
    assert!(matches!(
        copy_minimal(&root, &set, &dest),
        Err(distill_tracer::TraceError::DestNotEmpty(_))
    ));
    assert!(minimal_set(&root, &accesses, &["/etc/[".to_string()], &[]).is_err());
}

const READER: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    const char *p = argc > 1 ? "/data/extra" : "/data/main";
    char buf[64];
    int fd = open(p, O_RDONLY);
    if (fd < 0) { printf("missing %s\n", p); return 3; }
    int n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("%s", buf);
    return 0;
}
"#;

/// A probe exercising only /data/main; /data/extra is read only with an argument. Without a
/// keep rule the minimal image breaks the second command (and the proof says so); with the
/// keep rule it passes. Runs in the real sandbox, dynamically linked, so the ELF closure
/// must be right too.
#[test]
fn probe_missing_a_path_fails_the_proof_unless_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let exe = common::gcc_text(READER, d, "reader", &["-O1"]);
    let root = d.join("root");
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    distill_sandbox::copy_executable(&exe, &root.join("bin/reader")).unwrap();
    for p in ldd(exe.to_str().unwrap()) {
        copy_into(&root, &p);
    }
    copy_into(&root, Path::new("/etc/ld.so.cache"));
    std::fs::write(root.join("data/main"), "main-data\n").unwrap();
    std::fs::write(root.join("data/extra"), "extra-data\n").unwrap();

    let run = |root: &Path, args: &[&str]| {
        let mut argv = vec!["/bin/reader".into()];
        argv.extend(args.iter().map(|a| a.into()));
        trace(TraceCommand {
            argv,
            cwd: "/".into(),
            root: Some(root.to_path_buf()),
            ..Default::default()
        })
        .unwrap()
    };
    let probe = run(&root, &[]);
    assert!(
        probe.exit.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(probe.stdout, b"main-data\n");
    let accesses: Vec<(String, Access)> = probe
        .accesses
        .iter()
        .map(|a| ("main".to_string(), a.clone()))
        .collect();
    // The loader's own opens were traced; the interpreter comes from the ELF closure.
    assert!(accesses
        .iter()
        .any(|(_, a)| a.path.ends_with("libc.so.6") && a.existed));

    let full_extra = ProbeOutcome::of(&run(&root, &["x"]));
    assert_eq!(full_extra.stdout, b"extra-data\n");

    // Without a keep rule: the main probe still passes, the other command breaks.
    let set = minimal_set(&root, &accesses, &[], &[]).unwrap();
    assert!(set.why(Path::new("/data/extra")).is_none());
    let min = d.join("min1");
    copy_minimal(&root, &set, &min).unwrap();
    compare_runs(
        "main",
        &ProbeOutcome::of(&probe),
        &ProbeOutcome::of(&run(&min, &[])),
    )
    .unwrap();
    let err =
        compare_runs("extra", &full_extra, &ProbeOutcome::of(&run(&min, &["x"]))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("probe `extra`")
            && msg.contains("exit code 0 in the full image, 3 in the minimal image"),
        "{msg}"
    );

    // With the keep rule both pass.
    let set = minimal_set(&root, &accesses, &["/data/extra".to_string()], &[]).unwrap();
    assert_eq!(
        set.why(Path::new("/data/extra")).unwrap(),
        &[Reason::Keep {
            rule: "/data/extra".into()
        }]
    );
    let min = d.join("min2");
    copy_minimal(&root, &set, &min).unwrap();
    compare_runs(
        "main",
        &ProbeOutcome::of(&probe),
        &ProbeOutcome::of(&run(&min, &[])),
    )
    .unwrap();
    compare_runs("extra", &full_extra, &ProbeOutcome::of(&run(&min, &["x"]))).unwrap();
}

#[test]
fn proof_names_the_first_differing_line() {
    let a = ProbeOutcome {
        exit_code: 0,
        stdout: b"one\ntwo\nthree\n".to_vec(),
    };
    let b = ProbeOutcome {
        exit_code: 0,
        stdout: b"one\nTWO\nthree\n".to_vec(),
    };
    let e = compare_runs("p", &a, &b).unwrap_err().to_string();
    assert!(
        e.contains("stdout line 2 is \"two\" in the full image, \"TWO\" in the minimal image"),
        "{e}"
    );
    compare_runs("p", &a, &a.clone()).unwrap();
}

#[test]
fn shebang_interpreter_is_recorded_and_stdin_is_fed() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("s.sh");
    std::fs::write(&script, "#!/bin/sh\nread x; echo got-$x\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = trace(TraceCommand {
        argv: vec![script.clone().into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: tmp.path().into(),
        stdin: Some(b"hello\n".to_vec()),
        root: None,
    })
    .unwrap();
    assert!(r.exit.success());
    assert_eq!(r.stdout, b"got-hello\n");
    assert!(r
        .accesses
        .iter()
        .any(|a| a.path == script && a.syscall == "execve" && a.existed));
    assert!(r
        .accesses
        .iter()
        .any(|a| a.path == Path::new("/bin/sh") && a.syscall == "execve" && a.existed));
    let e = trace(TraceCommand {
        argv: vec!["/nonexistent/prog".into()],
        cwd: "/".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/prog"), "{e}");
}
