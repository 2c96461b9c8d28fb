//! A classic-BPF interpreter for seccomp programs, limited to the instructions the sandbox's
//! filters use (`LD W ABS`, `JA`, `JEQ`/`JGT`/`JGE`/`JSET` with a constant, `RET` a constant),
//! and the checks the kernel makes when a program is installed.

/// The `struct seccomp_data` a filter sees.
#[derive(Clone, Copy, Debug)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    /// The 32-bit word at byte `off` (the layout of `struct seccomp_data`, little endian).
    fn word(&self, off: u32) -> u32 {
        assert!(off.is_multiple_of(4) && off < 64, "load from offset {off}");
        match off {
            0 => self.nr,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            _ => {
                let a = self.args[(off as usize - 16) / 8];
                if off.is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
        }
    }
}

const LD_W_ABS: u16 = 0x20;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// What the kernel checks before it accepts a program (for these opcodes): 1 to 4096
/// instructions, known opcodes, every jump inside the program, loads inside
/// `seccomp_data`, a RET last.
pub fn validate(prog: &[libc::sock_filter]) {
    assert!(
        !prog.is_empty() && prog.len() <= 4096,
        "{} instructions",
        prog.len()
    );
    for (pc, i) in prog.iter().enumerate() {
        let fits = |off: u64| pc as u64 + 1 + off < prog.len() as u64;
        match i.code {
            LD_W_ABS => assert!(i.k % 4 == 0 && i.k < 64, "{pc}: load from {}", i.k),
            JA => assert!(fits(u64::from(i.k)), "{pc}: JA {} leaves the program", i.k),
            JEQ_K | JGT_K | JGE_K | JSET_K => assert!(
                fits(u64::from(i.jt)) && fits(u64::from(i.jf)),
                "{pc}: jump {}/{} leaves the program",
                i.jt,
                i.jf
            ),
            RET_K => {}
            c => panic!("{pc}: opcode {c:#x} is not one the sandbox emits"),
        }
    }
    assert_eq!(
        prog[prog.len() - 1].code,
        RET_K,
        "the last instruction is no RET"
    );
}

/// Runs `prog` on `d`: the returned action, and how many instructions ran.
pub fn run(prog: &[libc::sock_filter], d: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = prog[pc];
        steps += 1;
        let cond = |c: bool| if c { i.jt as usize } else { i.jf as usize };
        pc += 1 + match i.code {
            LD_W_ABS => {
                a = d.word(i.k);
                0
            }
            JA => i.k as usize,
            JEQ_K => cond(a == i.k),
            JGT_K => cond(a > i.k),
            JGE_K => cond(a >= i.k),
            JSET_K => cond(a & i.k != 0),
            RET_K => return (i.k, steps),
            c => panic!("opcode {c:#x} at {}", pc),
        };
    }
}
