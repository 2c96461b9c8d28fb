//! Links the `distill` binary as a position-dependent executable (`-no-pie`).
//!
//! A position-independent `distill` spends most of its start-up relocating itself: 48 K
//! relative relocations that write to 218 pages of `.data.rel.ro` (pointer tables, three
//! quarters of them the statically linked C code's), each a copy-on-write page fault, in every
//! `run`, `exec` and `ps`. Measured with `perf stat -r 100 distill ps`:
//! 1.99 ms of CPU and 445 page faults as PIE, 1.69 ms / 435 with packed (RELR) relocations,
//! 1.13 ms / 221 position-dependent. The price is that the executable's own code is not
//! randomised by ASLR (shared libraries, heap, stack and mmaps still are; RELRO, BIND_NOW and
//! a non-executable stack are kept); docs/design.md, "Start-up cost", weighs it.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
