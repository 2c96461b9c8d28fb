//! The devices a container may use, and the two forms the kernel takes that list in.
//!
//! A container's root holds CAP_MKNOD (Docker's default capabilities), so it can make a node
//! for any device, and the node's permissions are its own to choose: what stops it opening
//! the host's disks or `/dev/kvm` through one is the device controller, which checks every
//! open of a device node against the opener's cgroup. Every container gets runc's and
//! Docker's default: `mknod` of any node (`c *:* m`, `b *:* m`: harmless without the right to
//! open it), and read/write/mknod only for the devices its /dev holds
//! (`distill_sandbox::Spec::dev`: null, zero, full, random, urandom, tty bound from the host,
//! and a devpts instance of its own: `pts/*` and `ptmx`). runc's list also has the tun device
//! (`c 10:200`); a container's /dev has no `net/tun`, so it is left out; so is
//! `/dev/console` (`c 5:1`), which runc does not allow either (a terminal is a `pts` node).
//!
//! * cgroup v1: the `devices` controller: `a` written to `devices.deny` (deny everything,
//!   forget inherited exceptions), then one [`DeviceRule::v1_line`] per rule written to
//!   `devices.allow` ([`V1_DENY_ALL`], [`v1_allow_lines`]).
//! * cgroup v2 has no device files: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, attached to the
//!   container's cgroup directory (`BPF_CGROUP_DEVICE`, `BPF_F_ALLOW_MULTI`: programs of the
//!   levels above run too, and all must allow), decides each access; [`program`] assembles
//!   it by hand (as runc's `devicefilter` does: no compiler, no ELF), [`attach_program`] loads
//!   and attaches it. The program calls no helper, so no GPL-compatible license is needed;
//!   it is declared under the crate's own. The attachment holds the program: the descriptor
//!   is closed at once, and the program goes with the cgroup.
//!
//! Where the kernel checks: `may_open` refuses a node on a `nodev` mount (EACCES) before the
//! device controller is asked (EPERM), so nodes made on /tmp, /run, `--rw` and `--tmpfs`
//! (all `nodev`) are stopped twice, and one made in /dev (a tmpfs that must allow nodes) by
//! the controller.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    /// A character device (`c`).
    Char,
    /// A block device (`b`).
    Block,
}

/// One allow rule: the devices it covers (`None` = any major or minor) and the access it
/// allows, a subset of `"rwm"` (read, write, mknod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Character or block.
    pub kind: DevKind,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// What is allowed: `r`, `w` and/or `m`.
    pub access: &'static str,
}

const fn rule(
    kind: DevKind,
    major: Option<u32>,
    minor: Option<u32>,
    access: &'static str,
) -> DeviceRule {
    DeviceRule {
        kind,
        major,
        minor,
        access,
    }
}

const fn chr(major: u32, minor: u32) -> DeviceRule {
    rule(DevKind::Char, Some(major), Some(minor), "rwm")
}

/// What every container may use; everything else is denied.
pub const ALLOWED: &[DeviceRule] = &[
    rule(DevKind::Char, None, None, "m"),
    rule(DevKind::Block, None, None, "m"),
    chr(1, 3),                                   // null
    chr(1, 5),                                   // zero
    chr(1, 7),                                   // full
    chr(1, 8),                                   // random
    chr(1, 9),                                   // urandom
    chr(5, 0),                                   // tty
    chr(5, 2),                                   // ptmx (the devpts instance's pts/ptmx)
    rule(DevKind::Char, Some(136), None, "rwm"), // pts/*
];

/// What cgroup v1 `devices.deny` is given first: every device, every access.
pub const V1_DENY_ALL: &str = "a";

impl DeviceRule {
    /// The rule as cgroup v1 `devices.allow` takes it, e.g. `c 1:3 rwm`, `c 136:* rwm`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        let t = match self.kind {
            DevKind::Char => 'c',
            DevKind::Block => 'b',
        };
        format!("{t} {}:{} {}", n(self.major), n(self.minor), self.access)
    }

    /// The access bits of `bpf_cgroup_dev_ctx.access_type` (upper 16 bits) it allows.
    fn bpf_access(&self) -> i32 {
        self.access.bytes().fold(0, |a, c| {
            a | match c {
                b'm' => BPF_DEVCG_ACC_MKNOD,
                b'r' => BPF_DEVCG_ACC_READ,
                b'w' => BPF_DEVCG_ACC_WRITE,
                _ => 0,
            }
        })
    }
}

/// The `devices.allow` lines of [`ALLOWED`], in order.
pub fn v1_allow_lines() -> Vec<String> {
    ALLOWED.iter().map(DeviceRule::v1_line).collect()
}

// include/uapi/linux/bpf.h
const BPF_DEVCG_ACC_MKNOD: i32 = 1;
const BPF_DEVCG_ACC_READ: i32 = 2;
const BPF_DEVCG_ACC_WRITE: i32 = 4;
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst register (low nibble) and src register (high nibble).
    pub regs: u8,
    /// Jump offset or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes: class | op | source.
const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

/// The BPF_PROG_TYPE_CGROUP_DEVICE program allowing `rules` and denying everything else.
///
/// Its context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
/// `access_type` being the device type in the low 16 bits and the access in the high 16; it
/// returns 1 to allow, 0 to deny. Registers: r2 type, r3 access, r4 major, r5 minor; each
/// rule is a block of checks that jump to the next block on a mismatch and end in
/// `r0 = 1; exit`; after the last, `r0 = 0; exit`. Every rule checks the type at least, so
/// every instruction is reachable (the verifier refuses a program with unreachable code).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Each check: (instructions before its jump, the jump's register and immediate).
        let mut checks: Vec<(Vec<Insn>, u8, i32)> = Vec::new();
        let kind = match r.kind {
            DevKind::Char => BPF_DEVCG_DEV_CHAR,
            DevKind::Block => BPF_DEVCG_DEV_BLOCK,
        };
        checks.push((Vec::new(), 2, kind));
        let all = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
        let access = r.bpf_access();
        if access != all {
            // Any access bit the rule does not allow: not this rule.
            checks.push((
                vec![
                    insn(ALU32_MOV_X, 1, 3, 0, 0),
                    insn(ALU32_AND_K, 1, 0, 0, !access & all),
                ],
                1,
                0,
            ));
        }
        if let Some(m) = r.major {
            checks.push((Vec::new(), 4, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((Vec::new(), 5, m as i32));
        }
        let len: usize = checks
            .iter()
            .map(|(pre, _, _)| pre.len() + 1)
            .sum::<usize>()
            + 2;
        let mut at = 0;
        for (pre, reg, imm) in checks {
            at += pre.len();
            p.extend(pre);
            at += 1;
            p.push(insn(JMP_JNE_K, reg, 0, (len - at) as i16, imm));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH, up to `replace_bpf_fd`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised `union bpf_attr` prefix of its size; the
    // pointers it holds point at buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads `insns` as a BPF_PROG_TYPE_CGROUP_DEVICE program. A refusal by the verifier comes
/// back with its log.
pub fn load_program(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..15].copy_from_slice(b"distill_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr);
            if let Ok(fd) = again {
                // SAFETY: as above.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}; verifier log: {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Loads the program of [`ALLOWED`] and attaches it to the cgroup v2 directory `dir`
/// (`BPF_F_ALLOW_MULTI`).
pub fn attach_program(dir: &Path) -> io::Result<()> {
    let prog = load_program(&program(ALLOWED))?;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the descriptor is owned at once.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nothing else.
    let cgroup = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let l = v1_allow_lines();
        assert_eq!(l[0], "c *:* m");
        assert_eq!(l[1], "b *:* m");
        assert!(l.contains(&"c 1:3 rwm".to_string()));
        assert!(l.contains(&"c 136:* rwm".to_string()));
        assert!(!l.iter().any(|l| l.starts_with("b ") && !l.ends_with(" m")));
    }

    #[test]
    fn program_shape() {
        let p = program(&[chr(1, 3), rule(DevKind::Block, None, None, "m")]);
        // Prelude 6; null: type, major, minor + 2; block mknod: type, (mov, and) + jne + 2; 2.
        assert_eq!(p.len(), 6 + 5 + 6 + 2);
        // null's jumps land on the next rule's first instruction (index 11).
        for (i, ins) in p[6..9].iter().enumerate() {
            let at = 6 + i;
            assert_eq!(ins.code, JMP_JNE_K);
            assert_eq!(at as i64 + 1 + ins.off as i64, 11);
        }
        assert_eq!(p[6].imm, BPF_DEVCG_DEV_CHAR);
        assert_eq!((p[7].imm, p[8].imm), (1, 3));
        // The access check: r1 = r3 & ~m; any other bit set means another rule.
        assert_eq!(p[12].code, ALU32_MOV_X);
        assert_eq!(p[13].imm, BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE);
        assert_eq!((p[14].imm, p[14].off), (0, 2));
        assert_eq!(p[p.len() - 2].imm, 0);
    }
}
