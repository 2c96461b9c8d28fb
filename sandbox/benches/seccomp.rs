//! What installing the seccomp filter costs a container: fork, set no_new_privs, install the
//! filter, `_exit`, wait; the median of many runs of each variant, interleaved:
//!
//! - no filter (the baseline: fork + no_new_privs + `_exit` + wait);
//! - a one-instruction filter (`RET ALLOW`): what any filter costs;
//! - the previous Docker-default program (binary search over single numbers, frozen in
//!   `tests/common/seccomp_v1.rs`);
//! - the current [`SeccompFilter::docker_default`] (search over ranges);
//! - the tracer's filter over its ~55 file system calls.
//!
//! Each child also times the `prctl(PR_SET_SECCOMP)` call alone (`CLOCK_MONOTONIC` around it,
//! written to a shared page): the kernel's checks, its conversion to eBPF, the JIT and the
//! per-number emulation that builds its cache of constant verdicts. Also times building the
//! program (the runtime builds it for each container). Run as root (or anyone:
//! no_new_privs makes the install unprivileged): `cargo bench -p distill-sandbox --bench seccomp`.

#[path = "../tests/common/seccomp_v1.rs"]
mod seccomp_v1;

use distill_sandbox::SeccompFilter;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3000;

/// One forked child: no_new_privs, the filter if any (timed into `slot`), `_exit(0)`.
fn once(prog: Option<&[libc::sock_filter]>, slot: *mut u64) -> Duration {
    let fprog = prog.map(|p| libc::sock_fprog {
        len: p.len() as u16,
        filter: p.as_ptr() as *mut libc::sock_filter,
    });
    let t = Instant::now();
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(1);
            }
            if let Some(f) = &fprog {
                let mut a: libc::timespec = std::mem::zeroed();
                let mut b: libc::timespec = std::mem::zeroed();
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut a);
                let r = libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    f as *const libc::sock_fprog as libc::c_ulong,
                    0,
                    0,
                );
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut b);
                if r != 0 {
                    libc::_exit(2);
                }
                let ns = (b.tv_sec - a.tv_sec) * 1_000_000_000 + (b.tv_nsec - a.tv_nsec);
                *slot = ns as u64;
            }
            libc::_exit(0);
        }
    }
    let mut st = 0;
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    let d = t.elapsed();
    assert!(
        r == pid && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "child failed: status {st:#x} (1: no_new_privs, 2: filter refused)"
    );
    d
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Variant {
    name: &'static str,
    prog: Option<Vec<libc::sock_filter>>,
    total: Vec<f64>,
    install: Vec<f64>,
}

fn main() {
    let tracer_calls: Vec<u32> = vec![
        257, 437, 59, 322, 262, 332, 269, 439, 267, 80, 81, 76, 258, 263, 316, 265, 266, 268, 260,
        280, 137, 191, 192, 188, 189, 194, 195, 197, 198, 254, 259, 161, 2, 85, 4, 6, 21, 89, 83,
        84, 87, 82, 264, 86, 88, 90, 92, 94, 132, 235, 261, 134, 133,
    ];
    let mut variants = vec![
        Variant {
            name: "no filter (fork + no_new_privs + _exit + wait)",
            prog: None,
            total: Vec::new(),
            install: Vec::new(),
        },
        Variant {
            name: "one instruction (RET ALLOW): any filter's cost",
            prog: Some(vec![libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            }]),
            total: Vec::new(),
            install: Vec::new(),
        },
        Variant {
            name: "previous docker_default (single numbers)",
            prog: Some(seccomp_v1::docker_program_v1()),
            total: Vec::new(),
            install: Vec::new(),
        },
        Variant {
            name: "docker_default (ranges)",
            prog: Some(SeccompFilter::docker_default().instructions().to_vec()),
            total: Vec::new(),
            install: Vec::new(),
        },
        Variant {
            name: "tracer filter (ranges)",
            prog: Some(
                SeccompFilter::trace(&tracer_calls)
                    .expect("the tracer's calls fit")
                    .instructions()
                    .to_vec(),
            ),
            total: Vec::new(),
            install: Vec::new(),
        },
    ];
    // A page shared with the children for their timing of the install.
    let slot = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(slot != libc::MAP_FAILED, "mmap failed");
    let slot = slot.cast::<u64>();
    for round in 0..ROUNDS + 50 {
        for v in variants.iter_mut() {
            let d = once(v.prog.as_deref(), slot);
            // The first rounds warm up caches and the allocator.
            if round >= 50 {
                v.total.push(d.as_secs_f64() * 1e6);
                if v.prog.is_some() {
                    v.install.push(unsafe { slot.read_volatile() } as f64 / 1e3);
                }
            }
        }
    }
    println!("seccomp filter install, median of {ROUNDS} interleaved runs each (us)");
    println!(
        "{:<48} {:>6} {:>12} {:>12} {:>12}",
        "variant", "insns", "fork..wait", "over base", "prctl alone"
    );
    let base = median(variants[0].total.clone());
    let mut results = Vec::new();
    for v in &variants {
        let total = median(v.total.clone());
        let install = (!v.install.is_empty()).then(|| median(v.install.clone()));
        let insns = v.prog.as_ref().map_or(0, Vec::len);
        println!(
            "{:<48} {insns:>6} {total:>12.1} {:>12.1} {:>12}",
            v.name,
            total - base,
            install.map_or("-".into(), |i| format!("{i:.1}"))
        );
        results.push((total, install.unwrap_or(0.0)));
    }
    // The runtime builds the program for every container it starts.
    let build: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let f = SeccompFilter::docker_default();
            let d = t.elapsed();
            assert!(!f.instructions().is_empty());
            d.as_secs_f64() * 1e6
        })
        .collect();
    println!("building docker_default: {:.1} us", median(build));
    let (old, new) = (results[2], results[3]);
    println!(
        "previous/ranges: {:.2}x over the baseline, {:.2}x the prctl alone",
        (old.0 - base) / (new.0 - base),
        old.1 / new.1
    );
}
