//! The C fixture touches files through every traced system call from the main thread, a
//! forked child (which re-execs) and a thread; the recorded set must be exactly the expected
//! one, on the host and inside a root, and agree with strace.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_tracer::{trace, Access, TraceCommand};

const FILES: &[&str] = &[
    "a_open",
    "sub/b_openat",
    "e_open_creat_existing",
    "f_stat",
    "sub/h_newfstatat",
    "i_statx",
    "sub/k_faccessat",
    "l_faccessat2",
    "o_truncate",
    "r_unlink",
    "sub/s_unlinkat",
    "t_old",
    "sub/u_old",
    "v_old",
    "w_src",
    "sub/x_src",
    "ca_chmod",
    "sub/cb_fchmodat",
    "cc_chown",
    "sub/cd_fchownat",
    "ce_utimensat",
    "cf_getxattr",
    "ch_inotify",
    "sub/after_fchdir",
    "sub/from_child",
    "sub/after_exec",
    "from_thread",
];

fn make_work(w: &Path) {
    std::fs::create_dir_all(w.join("sub/q_mkdirat_existing")).unwrap();
    for f in FILES {
        std::fs::write(w.join(f), b"x").unwrap();
    }
    symlink("a_open", w.join("m_link")).unwrap();
}

/// (path, syscall, existed) the fixture must produce with work dir `w` and binary `exe`.
fn expected(w: &str, exe: &str) -> BTreeSet<(PathBuf, String, bool)> {
    let s = format!("{w}/sub");
    let e = |dir: &str, name: &str, sc: &str, ex: bool| {
        let p = if name.is_empty() {
            PathBuf::from(dir)
        } else {
            Path::new(dir).join(name)
        };
        (p, sc.to_string(), ex)
    };
    let v = vec![
        e(exe, "", "execve", true),
        // static glibc startup (main process and the re-exec'd child)
        e("/proc/self/exe", "", "readlink", true),
        e(w, "", "chdir", true),
        e(&s, "", "openat", true),
        e(w, "a_open", "open", true),
        e(&s, "b_openat", "openat", true),
        e(w, "c_openat2_missing", "openat2", false),
        e(w, "d_creat_new", "creat", false),
        e(w, "e_open_creat_existing", "open", true),
        e(w, "f_stat", "stat", true),
        e(w, "g_lstat_missing", "lstat", false),
        e(&s, "h_newfstatat", "newfstatat", true),
        e(w, "i_statx", "statx", true),
        e(w, "j_access_missing", "access", false),
        e(&s, "k_faccessat", "faccessat", true),
        e(w, "l_faccessat2", "faccessat2", true),
        e(w, "m_link", "readlink", true),
        e(&s, "n_link_missing", "readlinkat", false),
        e(w, "o_truncate", "truncate", true),
        e(w, "p_mkdir_new", "mkdir", false),
        e(&s, "q_mkdirat_existing", "mkdirat", true),
        e(w, "r_unlink", "unlink", true),
        e(&s, "s_unlinkat", "unlinkat", true),
        e(w, "t_old", "rename", true),
        e(w, "t_new", "rename", false),
        e(&s, "u_old", "renameat", true),
        e(w, "u_new", "renameat", false),
        e(w, "v_old", "renameat2", true),
        e(&s, "v_new", "renameat2", false),
        e(w, "w_src", "link", true),
        e(w, "w_dst", "link", false),
        e(&s, "x_src", "linkat", true),
        e(&s, "x_dst", "linkat", false),
        e(w, "y_symlink", "symlink", false),
        e(&s, "z_symlinkat", "symlinkat", false),
        e(w, "ca_chmod", "chmod", true),
        e(&s, "cb_fchmodat", "fchmodat", true),
        e(w, "cc_chown", "chown", true),
        e(&s, "cd_fchownat", "fchownat", true),
        e(w, "ce_utimensat", "utimensat", true),
        e("/", "", "statfs", true),
        e(w, "cf_getxattr", "getxattr", true),
        e(w, "cg_lgetxattr_missing", "lgetxattr", false),
        e(w, "ch_inotify", "inotify_add_watch", true),
        e(w, "ci_uselib_missing", "uselib", false),
        e(w, "cj_fifo", "mknod", false),
        e(&s, "ck_fifo", "mknodat", false),
        e("/nonexistent/cl_exe", "", "execve", false),
        e(&s, "cm_exe_missing", "execveat", false),
        e(&s, "", "fchdir", true),
        e(&s, "after_fchdir", "open", true),
        e(&s, "..", "chdir", true),
        // forked child
        e(&s, "", "chdir", true),
        e(&s, "from_child", "openat", true),
        e("/proc/self/exe", "", "execve", true),
        e(&s, "after_exec", "access", true),
        // thread
        e(w, "from_thread", "openat", true),
    ];
    v.into_iter().collect()
}

fn recorded(acc: &[Access]) -> BTreeSet<(PathBuf, String, bool)> {
    acc.iter()
        .map(|a| (a.path.clone(), a.syscall.to_string(), a.existed))
        .collect()
}

fn build_fixture(dir: &Path) -> PathBuf {
    common::gcc(
        "fileops.c",
        &dir.join("fileops"),
        &["-static", "-O1", "-pthread"],
    )
}

fn pid_of(acc: &[Access], name: &str) -> i32 {
    acc.iter()
        .find(|a| a.path.file_name().map(|f| f == name).unwrap_or(false))
        .unwrap_or_else(|| panic!("no access to {name}"))
        .pid
}

fn check_pids(acc: &[Access]) {
    let main = pid_of(acc, "a_open");
    let child = pid_of(acc, "from_child");
    let thread = pid_of(acc, "from_thread");
    assert_ne!(main, child, "the forked child has its own pid");
    assert_ne!(main, thread, "the thread has its own tid");
    assert_eq!(pid_of(acc, "after_exec"), child, "exec keeps the pid");
}

fn diff(
    got: &BTreeSet<(PathBuf, String, bool)>,
    want: &BTreeSet<(PathBuf, String, bool)>,
) -> String {
    format!(
        "unexpected: {:#?}\nmissing: {:#?}",
        got.difference(want).collect::<Vec<_>>(),
        want.difference(got).collect::<Vec<_>>()
    )
}

#[test]
fn fixture_on_host_records_exact_set() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let exe = build_fixture(&base);
    let w = base.join("w");
    make_work(&w);
    let r = trace(TraceCommand {
        argv: vec![exe.clone().into(), w.clone().into()],
        env: vec![],
        cwd: base.clone(),
        stdin: None,
        root: None,
    })
    .unwrap();
    assert!(
        r.exit.success(),
        "fixture failed: {:?} {}",
        r.exit,
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(r.stdout, b"done\n");
    let got = recorded(&r.accesses);
    let want = expected(w.to_str().unwrap(), exe.to_str().unwrap());
    assert_eq!(got, want, "{}", diff(&got, &want));
    check_pids(&r.accesses);
}

/// Parse strace's `-ff` output into (syscall, last path component) pairs for the path
/// arguments our table says each call has.
fn strace_pairs(prefix: &Path) -> BTreeSet<(String, String)> {
    let dir = prefix.parent().unwrap();
    let stem = prefix.file_name().unwrap().to_str().unwrap().to_string();
    let mut out = BTreeSet::new();
    for ent in std::fs::read_dir(dir).unwrap() {
        let ent = ent.unwrap();
        let name = ent.file_name().into_string().unwrap();
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        for line in std::fs::read_to_string(ent.path()).unwrap().lines() {
            let Some(open) = line.find('(') else { continue };
            let sc = &line[..open];
            if !sc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let args = split_args(&line[open + 1..]);
            for (idx, is_fd) in distill_tracer_path_args(sc) {
                if is_fd {
                    continue;
                }
                let Some(a) = args.get(idx) else { continue };
                if !a.starts_with('"') {
                    continue;
                }
                let s = a.trim_end_matches("...").trim_matches('"');
                if s.is_empty() {
                    continue;
                }
                let last = Path::new(s)
                    .components()
                    .next_back()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap();
                out.insert((sc.to_string(), last));
            }
        }
    }
    out
}

/// Which argument indexes of `sc` are paths (mirrors the tracer's table, written out here
/// independently so a table mistake shows up as a difference).
fn distill_tracer_path_args(sc: &str) -> Vec<(usize, bool)> {
    match sc {
        "open" | "creat" | "execve" | "stat" | "lstat" | "access" | "readlink" | "chdir"
        | "truncate" | "mkdir" | "unlink" | "chmod" | "chown" | "statfs" | "getxattr"
        | "lgetxattr" | "uselib" | "mknod" => vec![(0, false)],
        "symlink" => vec![(1, false)],
        "rename" | "link" => vec![(0, false), (1, false)],
        "openat" | "openat2" | "execveat" | "newfstatat" | "statx" | "faccessat" | "faccessat2"
        | "readlinkat" | "mkdirat" | "unlinkat" | "fchmodat" | "fchownat" | "utimensat"
        | "mknodat" => vec![(1, false)],
        "symlinkat" => vec![(2, false)],
        "renameat" | "renameat2" | "linkat" => vec![(1, false), (3, false)],
        "inotify_add_watch" => vec![(1, false)],
        "fchdir" => vec![(0, true)],
        _ => vec![],
    }
}

fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for c in s.chars() {
        if in_str {
            cur.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c)
            }
            '{' | '[' | '(' => {
                depth += 1;
                cur.push(c)
            }
            '}' | ']' => {
                depth -= 1;
                cur.push(c)
            }
            ')' if depth == 0 => {
                out.push(cur.trim().to_string());
                return out;
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

#[test]
fn fixture_matches_strace() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is missing: run scripts/install-deps (apt-get install strace)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let exe = build_fixture(&base);
    // Two identical work dirs: the fixture renames and deletes files.
    let (w1, w2) = (base.join("w1"), base.join("w2"));
    make_work(&w1);
    make_work(&w2);
    let names: Vec<&str> = distill_tracer::traced_syscalls()
        .into_iter()
        .filter(|n| *n != "fchmodat2") // newer than Debian 12's strace
        .collect();
    let prefix = base.join("st");
    let st = Command::new("strace")
        .arg("-f")
        .arg("-ff")
        .arg("-qq")
        .arg("-s")
        .arg("4096")
        .arg("-e")
        .arg(format!("trace={}", names.join(",")))
        .arg("-o")
        .arg(&prefix)
        .arg(&exe)
        .arg(&w2)
        .env_clear()
        .status()
        .unwrap();
    assert!(st.success());
    let theirs = strace_pairs(&prefix);

    let r = trace(TraceCommand {
        argv: vec![exe.clone().into(), w1.clone().into()],
        cwd: base.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(r.exit.success());
    let ours: BTreeSet<(String, String)> = r
        .accesses
        .iter()
        .filter(|a| a.syscall != "fchdir") // strace shows only an fd number
        .map(|a| {
            let last = if a.path == Path::new("/") {
                "/".to_string()
            } else {
                a.path
                    .components()
                    .next_back()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned()
            };
            (a.syscall.to_string(), last)
        })
        .collect();
    // strace prints the fixture path and our work dir name differently only in the prefix.
    let norm = |s: BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        s.into_iter()
            .map(|(c, l)| {
                (
                    c,
                    if l == "w1" || l == "w2" {
                        "W".into()
                    } else {
                        l
                    },
                )
            })
            .collect()
    };
    let (ours, theirs) = (norm(ours), norm(theirs));
    assert_eq!(
        ours,
        theirs,
        "only ours: {:?}\nonly strace: {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
}

#[test]
fn fixture_in_root_records_exact_set_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let exe = build_fixture(&base);
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    distill_sandbox::copy_executable(&exe, &root.join("fileops")).unwrap();
    make_work(&root.join("w"));
    let r = trace(TraceCommand {
        argv: vec![OsString::from("/fileops"), OsString::from("/w")],
        env: vec![],
        cwd: PathBuf::from("/"),
        stdin: None,
        root: Some(root.clone()),
    })
    .unwrap();
    assert!(
        r.exit.success(),
        "fixture failed in root: {:?} {}",
        r.exit,
        String::from_utf8_lossy(&r.stderr)
    );
    let got = recorded(&r.accesses);
    let mut want = expected("/w", "/fileops");
    // In a root, the command runs under Docker's seccomp filter too, which answers the
    // obsolete `uselib` with EPERM before the tracer's filter could stop it: nothing is read.
    want.remove(&(
        PathBuf::from("/w/ci_uselib_missing"),
        "uselib".into(),
        false,
    ));
    assert_eq!(got, want, "{}", diff(&got, &want));
    check_pids(&r.accesses);
}
