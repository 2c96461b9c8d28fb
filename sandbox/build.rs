//! Builds the exec shim (`dmz/dmz.c`, see `src/dmz.rs`) with the system's C compiler: a
//! freestanding static program of a few hundred bytes of code, embedded in the sandbox.
//! (C, not Rust: a `no_std` Rust executable would need a second cargo build with its own
//! target settings from here; the shim is fifty lines.)

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=dmz/dmz.c");
    println!("cargo:rerun-if-env-changed=CC");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" {
        // The shim's system calls are x86_64's; elsewhere the sandbox execs directly.
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("dmz");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-static",
            "-nostdlib",
            "-fno-pie",
            "-no-pie",
            "-Os",
            "-fno-asynchronous-unwind-tables",
            "-fno-stack-protector",
            "-Wl,--build-id=none",
            "-Wl,-z,noexecstack",
            "-s",
            "-o",
        ])
        .arg(&out)
        .arg("dmz/dmz.c")
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler {cc:?} for sandbox/dmz/dmz.c: {e}; install gcc")
        });
    assert!(status.success(), "{cc} failed to build sandbox/dmz/dmz.c");
}
