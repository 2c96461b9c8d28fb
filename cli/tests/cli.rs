//! The binary's own surface: help, version and usage errors (exit code 2).

use std::process::Command;

fn distill(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .output()
        .expect("run distill")
}

#[test]
fn help_lists_the_subcommands() {
    let out = distill(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["build", "sign", "key", "store", "pin"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = distill(&["build"]);
    assert_eq!(out.status.code(), Some(2));
    let out = distill(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("nope.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["build", m.to_str().unwrap(), "--keyring", "/dev/null"])
        .env("DISTILL_ROOT", dir.path().join("root"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.toml"), "{err}");
    assert!(
        !dir.path().join("root").exists(),
        "a refused build wrote its root"
    );
}
