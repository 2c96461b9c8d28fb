//! `run` and `exec` with `-i` and `-t`, driven from a real terminal (a pty of the test's
//! own whose slave is the controlling terminal of an `sh` playing the admin's shell).

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use distill_tests::pty::Terminal;
use distill_tests::Lab;

const T: Duration = Duration::from_secs(60);

/// Starts `box`, a detached container that sleeps, and waits until `exec` works in it.
fn start_box(lab: &Lab) {
    lab.distill(&[
        "run",
        "-d",
        "--name",
        "box",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "sleep",
        "600",
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.distill(&["exec", "box", "/bin/busybox", "true"]).code != 0 {
        assert!(Instant::now() < deadline, "box never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In a shell running in the container on its own terminal (`cmd`, typed into the admin's
/// shell): `tty` names a terminal of the container's devpts, `stty size` is the caller's
/// window size and follows a resize, typed input reaches it; after `exit` the caller's
/// terminal is back in cooked mode and the admin's shell goes on.
fn interactive_shell_session(term: &Terminal, cmd: &str) {
    let start = term.transcript().len();
    term.type_str(&format!("{cmd}; echo EXIT=$?\n"));
    let at = term.wait_for("EXIT=$?", start, T);
    // busybox sh's prompt: the container's shell reads its terminal.
    let at = term.wait_for("# ", at, T);
    term.type_str("tty; stty size; echo IN$((2+3))\n");
    let at = term.wait_for("IN5", at, T);
    let shown = term.transcript()[start..at].to_string();
    assert!(shown.contains("/dev/pts/0"), "tty: {shown}");
    assert!(shown.contains("30 100"), "stty size: {shown}");
    assert!(
        !term.is_cooked(),
        "the caller's terminal is not raw meanwhile: {shown}"
    );
    term.resize(40, 120);
    // (SIGWINCH reaches the relay asynchronously: ask until it shows.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut from = at;
    loop {
        term.type_str("stty size; echo S$((1+1))\n");
        let end = term.wait_for("S2", from, T);
        if term.transcript()[from..end].contains("40 120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the window size did not follow: {}",
            term.transcript()
        );
        std::thread::sleep(Duration::from_millis(100));
        from = end;
    }
    term.type_str("exit 3\n");
    let at = term.wait_for("EXIT=3", at, T);
    assert!(term.is_cooked(), "raw mode was not restored");
    term.type_str("echo END$((6*7))\n");
    term.wait_for("END42", at, T);
}

#[test]
fn exec_it_gives_the_process_a_terminal_of_its_own() {
    let lab = Lab::new();
    start_box(&lab);
    let term = Terminal::lab_shell(&lab, 30, 100);
    interactive_shell_session(&term, "\"$D\" exec -it box /bin/sh");
    term.type_str("exit\n");
    term.finish(T);
    lab.distill(&["rm", "-f", "box"]).ok();
}

#[test]
fn run_it_gives_the_container_a_terminal_of_its_own() {
    let lab = Lab::new();
    let term = Terminal::lab_shell(&lab, 30, 100);
    interactive_shell_session(&term, "\"$D\" run --rm -it --entrypoint /bin/sh hello");
    term.type_str("exit\n");
    term.finish(T);
}

/// `exec -i` from a terminal: typed lines reach the process through a pipe, the terminal's
/// end of file (^D) ends its input, and it is not a terminal.
#[test]
fn exec_i_from_a_terminal_passes_typed_input() {
    let lab = Lab::new();
    start_box(&lab);
    let term = Terminal::lab_shell(&lab, 24, 80);
    term.type_str("\"$D\" exec -i box /bin/sh -c 'tty; cat; echo CAT-DONE'; echo EXIT=$?\n");
    let at = term.wait_for("EXIT=$?", 0, T);
    term.wait_for("not a tty", at, T);
    term.type_str("typed line\n");
    term.type_str("\x04");
    let end = term.wait_for("EXIT=0", at, T);
    let shown = term.transcript()[at..end].to_string();
    assert!(shown.contains("CAT-DONE"), "{shown}");
    // Echoed by the terminal once, printed back by cat once.
    assert_eq!(shown.matches("typed line").count(), 2, "{shown}");
    term.type_str("exit\n");
    term.finish(T);
    lab.distill(&["rm", "-f", "box"]).ok();
}

/// `-t` without a terminal on the caller's side still gives the process one (as docker does).
#[test]
fn exec_t_without_a_terminal_still_allocates_one() {
    let lab = Lab::new();
    start_box(&lab);
    let r = lab.distill(&["exec", "-t", "box", "/bin/busybox", "tty"]);
    r.ok();
    assert!(r.stdout.starts_with("/dev/pts/"), "{}", r.stdout);
    // Without -t: no terminal, and stdin is /dev/null.
    let r = lab.distill(&["exec", "box", "/bin/sh", "-c", "tty; wc -c"]);
    assert!(r.stdout.contains("not a tty"), "{}", r.stdout);
    assert!(r.stdout.contains("\n0\n"), "{}", r.stdout);
    lab.distill(&["rm", "-f", "box"]).ok();
}

/// `echo hi | distill run -i ... cat` passes stdin; without -i the container reads
/// /dev/null; `-d` with `-i` or `-t` is refused.
#[test]
fn run_i_passes_stdin() {
    let lab = Lab::new();
    let run = |args: &[&str]| {
        let mut c = lab.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        distill_tests::Run::from(child.wait_with_output().unwrap())
    };
    let r = run(&[
        "run",
        "--rm",
        "-i",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "cat",
    ]);
    r.ok();
    assert_eq!(r.stdout, "hi\n");
    let r = run(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        "hello",
        "cat",
    ]);
    r.ok();
    assert_eq!(r.stdout, "");
    let r = run(&["exec", "-i", "nosuch", "cat"]);
    assert_ne!(r.code, 0);
    for flags in [["-d", "-i"], ["-d", "-t"]] {
        let r = lab.distill(&["run", flags[0], flags[1], "hello"]);
        r.expect_code(2);
        assert!(
            r.stderr.contains("-d cannot be used with -i or -t"),
            "{}",
            r.stderr
        );
    }
}

/// The caller's terminal is put back when `distill exec -it` is killed by a signal (SIGTERM)
/// while it is raw.
#[test]
fn raw_mode_is_restored_when_the_caller_is_killed() {
    let lab = Lab::new();
    start_box(&lab);
    let term = Terminal::lab_shell(&lab, 24, 80);
    let pid_file = lab.path("exec.pid");
    // In the foreground (a background job would be stopped by SIGTTOU as it sets the
    // terminal), with its pid written by the shell it replaces; a background job of the
    // shell reads the terminal's settings meanwhile and kills it.
    term.type_str(&format!(
        "PF={}; (sleep 2; stty -a </dev/tty | grep -o -- -icanon; kill $(cat $PF)) & sh -c 'echo $$ > $0; exec \"$D\" exec -it box /bin/busybox sleep 30' $PF; echo KILLED=$?\n",
        pid_file.display()
    ));
    let at = term.wait_for("KILLED=$?", 0, T);
    let end = term.wait_for("KILLED=143", at, T);
    let shown = term.transcript()[at..end].to_string();
    assert!(
        shown.contains("-icanon"),
        "the terminal was never raw: {shown}"
    );
    assert!(term.is_cooked(), "raw mode survived SIGTERM: {shown}");
    term.type_str("exit\n");
    term.finish(T);
    lab.distill(&["rm", "-f", "box"]).ok();
}
