//! Helpers shared by the integration tests: building C fixtures with gcc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compile `src` (a file under tests/fixtures) into `out` with extra gcc flags.
pub fn gcc(src: &str, out: &Path, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(src);
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .status()
        .expect("run gcc (install gcc)");
    assert!(st.success(), "gcc failed for {}", src.display());
    out.to_path_buf()
}

/// Compile C source text.
pub fn gcc_text(text: &str, dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, text).unwrap();
    let out = dir.join(name);
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run gcc (install gcc)");
    assert!(st.success(), "gcc failed for {}", src.display());
    out
}
