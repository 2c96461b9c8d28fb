//! The Docker-default seccomp allow-list ([`SeccompFilter::docker_default`]): real programs
//! (busybox scripts, dynamically linked host binaries, threaded Python) run under it, and the
//! dangerous system calls answer EPERM (`clone3`: ENOSYS). Its program, interpreted, answers
//! like the documented rules and like the previous program for every system call number and
//! the argument values that matter; so does the tracer's filter ([`SeccompFilter::trace`]).
//! Runs as root.

mod common;

use common::bpf::{self, Data};
use common::seccomp_v1::docker_program_v1;
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

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7;
/// Ours, i386, aarch64, arm, none.
const ARCHS: [u32; 5] = [AUDIT_ARCH_NATIVE, 0x4000_0003, 0xC000_00B7, 0x4000_0028, 0];

/// Every number 0..=1023, the same as x32 numbers, and the edges of the 32-bit range.
fn numbers() -> Vec<u32> {
    let mut v: Vec<u32> = (0..=1023).collect();
    v.extend((0..=1023).map(|n| 0x4000_0000 + n));
    v.extend([0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, u32::MAX]);
    v
}

/// Values of argument 0 that the argument checks tell apart: clone's flags with and without
/// each namespace flag, the personalities Docker allows and their neighbours, socket
/// families around AF_VSOCK; with and without bits in the upper 32 bits (the kernel reads
/// all three as 32-bit values).
fn arg0_values() -> Vec<u64> {
    let ns = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ];
    let thread = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    let mut lo: Vec<u32> = vec![0, libc::SIGCHLD as u32, thread as u32, u32::MAX];
    for f in ns {
        lo.extend([f as u32, (f | libc::SIGCHLD) as u32, (f | thread) as u32]);
    }
    for p in [0x0u32, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff, 0x4_0000, 6] {
        lo.extend([p, p.wrapping_add(1), p.wrapping_sub(1)]);
    }
    lo.extend([
        libc::AF_UNIX as u32,
        libc::AF_INET as u32,
        libc::AF_INET6 as u32,
    ]);
    lo.extend([39, 40, 41]);
    lo.sort_unstable();
    lo.dedup();
    let mut v: Vec<u64> = lo.iter().map(|&l| u64::from(l)).collect();
    v.extend(lo.iter().map(|&l| 0xffff_ffff_0000_0000 | u64::from(l)));
    v.extend(lo.iter().map(|&l| 0x1_0000_0000 | u64::from(l)));
    v
}

fn data(arch: u32, nr: u32, arg0: u64) -> Data {
    Data {
        nr,
        arch,
        ip: 0x7f12_3456_789a,
        args: [
            arg0,
            0xffff_ffff_ffff_ffff,
            1,
            0x4000_0000,
            0x28,
            0x7e02_0000,
        ],
    }
}

/// The verdict of Docker's default profile as the module documentation describes it,
/// computed from `allowed_syscalls` without BPF.
#[cfg(target_arch = "x86_64")]
fn documented_verdict(d: &Data, allowed: &[u32]) -> u32 {
    let arg0 = d.args[0] as u32;
    let ns = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u32;
    let allow_if = |ok: bool| if ok { RET_ALLOW } else { RET_EPERM };
    let nr = i64::from(d.nr);
    if d.arch != AUDIT_ARCH_NATIVE {
        RET_KILL_PROCESS
    } else if d.nr >= 0x4000_0000 {
        RET_EPERM // x32
    } else if nr == libc::SYS_clone3 {
        RET_ENOSYS
    } else if nr == libc::SYS_clone {
        allow_if(arg0 & ns == 0)
    } else if nr == libc::SYS_socket {
        allow_if(arg0 != libc::AF_VSOCK as u32)
    } else if nr == libc::SYS_personality {
        allow_if([0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff].contains(&arg0))
    } else {
        allow_if(allowed.contains(&d.nr))
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn program_answers_like_the_documented_rules_and_the_previous_program() {
    let new = SeccompFilter::docker_default();
    let new = new.instructions();
    let old = docker_program_v1();
    bpf::validate(new);
    bpf::validate(&old);
    let allowed: Vec<u32> = allowed_syscalls().iter().map(|&(_, n)| n as u32).collect();
    let args = arg0_values();
    let mut n = 0usize;
    for arch in ARCHS {
        for nr in numbers() {
            for &arg0 in &args {
                let d = data(arch, nr, arg0);
                let want = documented_verdict(&d, &allowed);
                assert_eq!(bpf::run(new, &d).0, want, "new program, {d:x?}");
                assert_eq!(bpf::run(&old, &d).0, want, "previous program, {d:x?}");
                n += 1;
            }
        }
    }
    // Instructions run per call, over the numbers up to the highest allowed one.
    let top = *allowed.last().unwrap();
    let mean = |p: &[libc::sock_filter]| {
        let total: usize = (0..=top)
            .map(|nr| bpf::run(p, &data(AUDIT_ARCH_NATIVE, nr, 0)).1)
            .sum();
        total as f64 / f64::from(top + 1)
    };
    println!(
        "{n} inputs agree; {} -> {} instructions; {:.1} -> {:.1} run per call (numbers 0..={top})",
        old.len(),
        new.len(),
        mean(&old),
        mean(new)
    );
    // The search over ranges: two comparisons per run of allowed numbers.
    assert!(new.len() < 100, "{} instructions", new.len());
}

/// Builds a list of `n` numbers below `limit`, clustered like system call tables are
/// (xorshift, deterministic).
fn scattered(n: usize, limit: u32, mut seed: u64) -> Vec<u32> {
    let mut v = Vec::with_capacity(n);
    let mut at = 0u32;
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Mostly the next number, sometimes a jump.
        at = if seed.is_multiple_of(4) {
            (seed >> 8) as u32 % limit
        } else {
            (at + 1) % limit
        };
        v.push(at);
    }
    v
}

#[test]
fn trace_filter_traces_exactly_the_listed_numbers() {
    let lists: Vec<Vec<u32>> = vec![
        vec![],
        vec![0],
        vec![u32::MAX],
        vec![0, 1, 2, u32::MAX - 1, u32::MAX],
        // The file system calls of the tracer's table on x86_64, in its order.
        vec![
            257, 437, 59, 322, 262, 332, 269, 439, 267, 80, 81, 76, 258, 263, 316, 265, 266, 268,
            260, 280, 137, 191, 192, 188, 189, 194, 195, 197, 198, 254, 259, 161, 2, 85, 4, 6, 21,
            89, 83, 84, 87, 82, 264, 86, 88, 90, 92, 94, 132, 235, 261, 134, 133,
        ],
        // More boundaries than one block of 8-bit jumps holds.
        (0..300).map(|i| 3 * i).collect(),
        scattered(1000, 5000, 0x9e37_79b9_7f4a_7c15),
        scattered(3000, 100_000, 0x2545_f491_4f6c_dd1d),
    ];
    for nrs in &lists {
        let f = SeccompFilter::trace(nrs).unwrap();
        let p = f.instructions();
        bpf::validate(p);
        let set: std::collections::HashSet<u32> = nrs.iter().copied().collect();
        // Every number 0..=1023 and around the x32 base, and each listed number with its two
        // neighbours: every boundary of the search from both sides.
        let mut probe = numbers();
        for &nr in nrs {
            probe.extend([nr.wrapping_sub(1), nr, nr.wrapping_add(1)]);
        }
        for &arch in &ARCHS {
            if arch != AUDIT_ARCH_NATIVE {
                // Foreign architectures: only the arch check runs.
                probe.truncate(64);
            }
            for &nr in &probe {
                let d = data(arch, nr, 0);
                let want = if arch == AUDIT_ARCH_NATIVE && set.contains(&nr) {
                    RET_TRACE
                } else {
                    RET_ALLOW
                };
                assert_eq!(bpf::run(p, &d).0, want, "{} numbers, {d:x?}", nrs.len());
            }
        }
    }
}

#[test]
fn kernel_accepts_a_trace_filter_split_into_blocks() {
    // 400 unused numbers from 1000 on, every other one: 800 comparisons, 4 blocks.
    let nrs: Vec<u32> = (0..400).map(|i| 1000 + 2 * i).collect();
    let filter = SeccompFilter::trace(&nrs).unwrap();
    assert!(filter.instructions().iter().any(|i| i.code == 0x05));
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let code = match filter.install() {
            Err(_) => 1,
            // Untraced, a traced number answers ENOSYS; the others run.
            Ok(()) => {
                let traced = unsafe { libc::syscall(1002) } == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
                let pid_ok = unsafe { libc::syscall(libc::SYS_getpid) } > 0;
                if traced && pid_ok {
                    0
                } else {
                    2
                }
            }
        };
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFEXITED(st), "status {st:#x}");
    assert_eq!(
        libc::WEXITSTATUS(st),
        0,
        "1: install failed, 2: wrong answers"
    );
}
