//! The Docker-default program as `SeccompFilter::docker_default` built it before the search
//! over ranges (distill up to commit c358728): the same arch, x32 and argument checks, then a
//! binary search over the ~290 individual allowed numbers (leaves of up to 8 `JEQ`s).
//! Frozen here as the reference that `tests/seccomp.rs` compares the current program with and
//! that `benches/seccomp.rs` measures against; the library no longer contains it.

use distill_sandbox::seccomp::allowed_syscalls;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const NS_FLAGS: u32 = 0x7E02_0000;
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const LEAF: usize = 8;

fn search(p: &mut Vec<libc::sock_filter>, nrs: &[u32]) {
    if nrs.len() <= LEAF {
        let n = nrs.len();
        for (i, &nr) in nrs.iter().enumerate() {
            p.push(jump(BPF_JEQ_K, nr, (n - i) as u8, 0));
        }
        p.push(stmt(BPF_RET_K, RET_EPERM));
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        return;
    }
    let mid = nrs.len() / 2;
    let (lo, hi) = nrs.split_at(mid);
    p.push(jump(BPF_JGE_K, hi[0], 0, 1));
    let ja = p.len();
    p.push(stmt(BPF_JA, 0));
    search(p, lo);
    p[ja].k = (p.len() - ja - 1) as u32;
    search(p, hi);
}

/// The x86_64 program of the old `docker_default`.
pub fn docker_program_v1() -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, 4),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, 0),
        jump(BPF_JGE_K, 0x4000_0000, 0, 1),
        stmt(BPF_RET_K, RET_EPERM),
        jump(BPF_JEQ_K, 435, 0, 1), // clone3
        stmt(BPF_RET_K, RET_ENOSYS),
        jump(BPF_JEQ_K, 56, 0, 4), // clone
        stmt(BPF_LD_W_ABS, 16),
        jump(BPF_JSET_K, NS_FLAGS, 0, 1),
        stmt(BPF_RET_K, RET_EPERM),
        stmt(BPF_RET_K, RET_ALLOW),
        jump(BPF_JEQ_K, 41, 0, 4), // socket
        stmt(BPF_LD_W_ABS, 16),
        jump(BPF_JEQ_K, 40, 0, 1), // AF_VSOCK
        stmt(BPF_RET_K, RET_EPERM),
        stmt(BPF_RET_K, RET_ALLOW),
    ];
    let n = PERSONALITIES.len();
    p.push(jump(BPF_JEQ_K, 135, 0, (n + 3) as u8)); // personality
    p.push(stmt(BPF_LD_W_ABS, 16));
    for (i, &v) in PERSONALITIES.iter().enumerate() {
        p.push(jump(BPF_JEQ_K, v, (n - i) as u8, 0));
    }
    p.push(stmt(BPF_RET_K, RET_EPERM));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    let nrs: Vec<u32> = allowed_syscalls()
        .iter()
        .map(|&(_, nr)| nr as u32)
        .collect();
    search(&mut p, &nrs);
    p
}
