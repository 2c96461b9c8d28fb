//! The Docker-default seccomp allow-list ([`SeccompFilter::docker_default`]): real programs
//! (busybox scripts, dynamically linked host binaries, threaded Python) run under it, and the
//! dangerous system calls answer EPERM (`clone3`: ENOSYS). Runs as root.

mod common;

use common::{capture, have_busybox, sh};
use distill_sandbox::seccomp::allowed_syscalls;
use distill_sandbox::{Mount, Proc, SeccompFilter, Spec, DOCKER_DEFAULT_CAPS};
use std::path::Path;

/// One probe: a raw system call with its arguments and the result expected under the filter
/// (`Ok(())`: it must not fail with EPERM/ENOSYS from the filter; `Err(errno)`: exactly that).
struct Probe {
    nr: libc::c_long,
    args: [libc::c_long; 6],
    want: Result<(), i32>,
}

fn probe(nr: libc::c_long, args: &[libc::c_long], want: Result<(), i32>) -> Probe {
    let mut a = [0; 6];
    a[..args.len()].copy_from_slice(args);
    Probe { nr, args: a, want }
}

/// Installs the filter in a forked child and runs the probes there. The child only makes raw
/// system calls (no allocation) and exits with 100 + the index of the first failing probe.
fn run_probes(probes: &[Probe]) {
    let filter = SeccompFilter::docker_default();
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }
        if filter.install().is_err() {
            unsafe { libc::_exit(99) };
        }
        for (i, p) in probes.iter().enumerate() {
            let a = p.args;
            let r = unsafe { libc::syscall(p.nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
            let errno = if r < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            } else {
                0
            };
            if r == 0 && (p.nr == libc::SYS_clone || p.nr == libc::SYS_fork) {
                // A clone child: done.
                unsafe { libc::_exit(0) };
            }
            let ok = match p.want {
                Err(e) => r == -1 && errno == e,
                Ok(()) => r >= 0 || (errno != libc::EPERM && errno != libc::ENOSYS),
            };
            if !ok {
                unsafe { libc::_exit(100 + i as i32) };
            }
            if r > 0 && (p.nr == libc::SYS_clone || p.nr == libc::SYS_fork) {
                let mut st = 0;
                unsafe { libc::waitpid(r as i32, &mut st, libc::__WALL) };
            }
        }
        unsafe { libc::_exit(0) };
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFEXITED(st), "probe child died: status {st:#x}");
    let code = libc::WEXITSTATUS(st);
    assert_ne!(code, 99, "installing the filter failed");
    if code >= 100 {
        let p = &probes[(code - 100) as usize];
        panic!(
            "probe {}: syscall {} {:?}: expected {:?}",
            code - 100,
            p.nr,
            p.args,
            p.want
        );
    }
    assert_eq!(code, 0);
}

#[test]
fn dangerous_syscalls_are_refused() {
    let eperm = Err(libc::EPERM);
    let ns = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ];
    let mut probes = vec![
        probe(libc::SYS_unshare, &[libc::CLONE_NEWNS as _], eperm),
        probe(libc::SYS_unshare, &[libc::CLONE_FILES as _], eperm),
        probe(libc::SYS_setns, &[0, 0], eperm),
        probe(
            libc::SYS_mount,
            &[
                c"none".as_ptr() as _,
                c"/tmp".as_ptr() as _,
                c"tmpfs".as_ptr() as _,
                0,
                0,
            ],
            eperm,
        ),
        probe(libc::SYS_umount2, &[c"/tmp".as_ptr() as _, 0], eperm),
        probe(libc::SYS_pivot_root, &[0, 0], eperm),
        probe(libc::SYS_fsopen, &[c"tmpfs".as_ptr() as _, 0], eperm),
        probe(libc::SYS_open_tree, &[-100, c"/".as_ptr() as _, 0], eperm),
        probe(libc::SYS_keyctl, &[0, 0, 0, 0, 0], eperm),
        probe(
            libc::SYS_add_key,
            &[c"user".as_ptr() as _, c"k".as_ptr() as _, 0, 0, -2],
            eperm,
        ),
        probe(libc::SYS_request_key, &[0, 0, 0, 0], eperm),
        probe(libc::SYS_ptrace, &[libc::PTRACE_TRACEME as _], eperm),
        probe(libc::SYS_process_vm_readv, &[1, 0, 0, 0, 0, 0], eperm),
        probe(libc::SYS_kexec_load, &[0, 0, 0, 0], eperm),
        probe(libc::SYS_kexec_file_load, &[0, 0, 0, 0, 0], eperm),
        probe(libc::SYS_init_module, &[0, 0, 0], eperm),
        probe(libc::SYS_finit_module, &[0, 0, 0], eperm),
        probe(libc::SYS_delete_module, &[c"x".as_ptr() as _, 0], eperm),
        probe(libc::SYS_bpf, &[0, 0, 0], eperm),
        probe(libc::SYS_perf_event_open, &[0, 0, -1, -1, 0], eperm),
        probe(libc::SYS_userfaultfd, &[0], eperm),
        probe(libc::SYS_io_uring_setup, &[1, 0], eperm),
        probe(libc::SYS_reboot, &[0, 0, 0, 0], eperm),
        probe(libc::SYS_swapon, &[0, 0], eperm),
        probe(libc::SYS_acct, &[0], eperm),
        probe(libc::SYS_settimeofday, &[0, 0], eperm),
        probe(libc::SYS_clock_settime, &[0, 0], eperm),
        probe(libc::SYS_sethostname, &[c"x".as_ptr() as _, 1], eperm),
        probe(libc::SYS_open_by_handle_at, &[0, 0, 0], eperm),
        probe(libc::SYS_syslog, &[3, 0, 0], eperm),
        probe(libc::SYS_iopl, &[0], eperm),
        probe(libc::SYS_quotactl, &[0, 0, 0, 0], eperm),
        probe(libc::SYS_set_mempolicy, &[0, 0, 0], eperm),
        probe(libc::SYS_kcmp, &[0, 0, 0, 0, 0], eperm),
        probe(libc::SYS_fanotify_init, &[0, 0], eperm),
        // personality: only Docker's values.
        probe(libc::SYS_personality, &[0x0004_0000], eperm), // ADDR_NO_RANDOMIZE
        probe(libc::SYS_personality, &[6], eperm),           // PER_BSD
        // socket: AF_VSOCK refused.
        probe(libc::SYS_socket, &[40, libc::SOCK_STREAM as _, 0], eperm),
        // An unknown system call number and an x32 one.
        probe(1000, &[], eperm),
        probe(0x4000_0000 + libc::SYS_getpid, &[], eperm),
        // clone3 answers ENOSYS so that libcs fall back to clone.
        probe(libc::SYS_clone3, &[0, 0], Err(libc::ENOSYS)),
    ];
    for flag in ns {
        probes.push(probe(
            libc::SYS_clone,
            &[(flag | libc::SIGCHLD) as _, 0, 0, 0, 0],
            eperm,
        ));
    }
    run_probes(&probes);
}

#[test]
fn ordinary_syscalls_are_allowed() {
    let ok = Ok(());
    let probes = vec![
        probe(libc::SYS_getpid, &[], ok),
        probe(libc::SYS_personality, &[0xffff_ffff], ok),
        probe(libc::SYS_personality, &[0], ok),
        probe(
            libc::SYS_socket,
            &[libc::AF_UNIX as _, libc::SOCK_STREAM as _, 0],
            ok,
        ),
        probe(
            libc::SYS_socket,
            &[libc::AF_INET as _, libc::SOCK_DGRAM as _, 0],
            ok,
        ),
        // fork-like clone without namespace flags.
        probe(libc::SYS_clone, &[libc::SIGCHLD as _, 0, 0, 0, 0], ok),
        probe(libc::SYS_fork, &[], ok),
        probe(libc::SYS_uname, &[0], ok),
        probe(libc::SYS_getrandom, &[0, 0, 0], ok),
        probe(libc::SYS_arch_prctl, &[0x1003, 0], ok), // ARCH_GET_FS, bad pointer -> EFAULT
        probe(libc::SYS_chroot, &[c"/".as_ptr() as _], ok),
    ];
    run_probes(&probes);
}

#[test]
#[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
fn allow_list_is_sorted_and_excludes_dangerous_calls() {
    let list = allowed_syscalls();
    assert!(list.len() > 250, "only {} allowed", list.len());
    assert!(list.windows(2).all(|w| w[0].1 < w[1].1));
    for (name, _) in &list {
        assert!(
            ![
                "mount",
                "unshare",
                "setns",
                "keyctl",
                "add_key",
                "ptrace",
                "bpf",
                "clone",
                "clone3",
                "kexec_load",
                "init_module",
                "perf_event_open",
                "userfaultfd",
            ]
            .contains(name),
            "{name} must not be allowed unconditionally"
        );
    }
    assert!(list
        .iter()
        .any(|(n, nr)| *n == "read" && *nr == libc::SYS_read as i64));
    assert!(SeccompFilter::docker_default().instructions().len() < 4096);
}

#[test]
fn busybox_scripts_run_under_the_filter() {
    if !have_busybox() {
        return;
    }
    let script = "set -e; grep Seccomp: /proc/self/status; \
                  echo hello > /tmp/f; echo world >> /tmp/f; \
                  n=$(cat /tmp/f | grep -c o | tr -d ' '); echo lines=$n; \
                  (cd /tmp && mkdir -p d/e && touch d/e/x && ls d/e) | sort; \
                  sleep 0.1 & wait $!; \
                  echo $(echo sub $(echo nested)); \
                  x=$(stat -c %s /tmp/f); echo size=$x; \
                  echo done";
    let (st, out, err) = sh(script, |s| {
        s.proc = Proc::Mount;
        s.mounts.push(Mount::Dir {
            dst: "/tmp".into(),
            mode: 0o1777,
        });
        s.dev = true;
        s.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
        s.no_new_privs = true;
        s.seccomp = Some(SeccompFilter::docker_default());
    });
    assert!(st.success(), "{st} {out} {err}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("lines=2"), "{out}");
    assert!(out.contains("\nx\n"), "{out}");
    assert!(out.contains("sub nested"), "{out}");
    assert!(out.contains("size=12"), "{out}");
    assert!(out.ends_with("done\n"), "{out} {err}");
}

/// A spec running a host program with the host's /usr (merged-usr layout) under the filter.
fn host_spec(argv: &[&str]) -> Spec {
    let mut s = Spec::new(argv.iter().copied());
    s.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    s.mounts.push(Mount::Bind {
        src: "/usr".into(),
        dst: "/usr".into(),
        readonly: true,
        recursive: true,
    });
    for (l, t) in [
        ("/bin", "usr/bin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
    ] {
        if Path::new(t).is_absolute() || Path::new("/").join(t).exists() {
            s.mounts.push(Mount::Symlink {
                target: t.into(),
                dst: l.into(),
            });
        }
    }
    s.mounts.push(Mount::Dir {
        dst: "/tmp".into(),
        mode: 0o1777,
    });
    s.proc = Proc::Mount;
    s.dev = true;
    s.loopback = true;
    s.capabilities = Some(DOCKER_DEFAULT_CAPS.to_vec());
    s.no_new_privs = true;
    s.seccomp = Some(SeccompFilter::docker_default());
    s
}

fn merged_usr() -> bool {
    // Debian 12 is merged-usr; the host-root spec below relies on it.
    let ok = ["/bin", "/lib", "/lib64"]
        .iter()
        .all(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()));
    assert!(
        ok,
        "the host is not merged-usr (/bin, /lib, /lib64 are not symlinks); this test needs Debian 12's layout"
    );
    ok
}

#[test]
fn dynamically_linked_host_programs_run_under_the_filter() {
    if !merged_usr() {
        return;
    }
    let (st, out, err) = capture(host_spec(&[
        "/usr/bin/ls",
        "-la",
        "/usr/bin/ls",
        "/proc/self/",
    ]));
    assert!(st.success(), "{st} {out} {err}");
    assert!(
        out.contains("/usr/bin/ls") && out.contains("status"),
        "{out}"
    );

    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "{python} is missing: run scripts/install-deps (apt-get install python3)"
    );
    let code = r#"
import json, socket, threading, subprocess, os, tempfile
results = []
def work(i):
    results.append(sum(range(i * 1000)))
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in ts: t.start()
for t in ts: t.join()
a, b = socket.socketpair()
a.sendall(json.dumps({"n": len(results)}).encode()); a.close()
msg = json.loads(b.recv(100).decode())
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()
c.sendall(b"ping"); got = s.recv(4)
with tempfile.NamedTemporaryFile("w+", dir="/tmp") as f:
    f.write("data"); f.flush(); f.seek(0); data = f.read()
out = subprocess.run(["/usr/bin/ls", "/"], capture_output=True, check=True).stdout.decode()
print("threads", msg["n"], got.decode(), data, "usr" in out.split())
"#;
    let (st, out, err) = capture(host_spec(&[python, "-c", code]));
    assert!(st.success(), "{st} {out} {err}");
    assert_eq!(out.trim(), "threads 8 ping data True", "{err}");
}
