//! The three figures of issue 6, measured on the real daemon binary with real pipes, fd
//! passing and writer processes:
//!
//! 1. ingest: 8 writer processes write 100-byte lines as fast as they can; lines/s into the
//!    ring, and a check that no line was lost while the ring was not full;
//! 2. memory: 1 GiB of lines through a 16 MiB ring; the daemon's peak RSS (VmHWM);
//! 3. follow latency: a line written to a container pipe until a follower has it (median).
//!
//! Run: `cargo bench -p distill-memlogd --bench figures` (`-- --quick` for a short run).

use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distill_memlogd::{query, send_fd, stats, Mode, Request};

const BIN: &str = env!("CARGO_BIN_EXE_distill-logd");
const LINE: usize = 100;

/// Writer mode: `figures --writer ID COUNT` writes COUNT 100-byte lines to stdout.
fn writer(id: usize, count: usize) {
    let out = std::io::stdout().lock();
    let mut w = BufWriter::with_capacity(64 * 1024, out);
    let mut line = [b'.'; LINE];
    line[LINE - 1] = b'\n';
    for i in 0..count {
        let head = format!("w{id} {i:010} ");
        line[..head.len()].copy_from_slice(head.as_bytes());
        if w.write_all(&line).is_err() {
            return;
        }
    }
    let _ = w.flush();
}

struct Logd(Child);

impl Logd {
    fn start(state: &Path, args: &[&str]) -> Logd {
        let c = Command::new(BIN)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .spawn()
            .expect("spawn distill-logd");
        while stats(state).is_err() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Logd(c)
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Logd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_writers(state: &Path, writers: usize, per_writer: usize) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    (0..writers)
        .map(|id| {
            let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
            send_fd(state, &format!("w{id}.stdout"), r.as_fd()).unwrap();
            drop(r);
            Command::new(&exe)
                .args(["--writer", &id.to_string(), &per_writer.to_string()])
                .stdout(Stdio::from(w))
                .spawn()
                .unwrap()
        })
        .collect()
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ingest(per_writer: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let total = 8 * per_writer;
    let lines = (total + 1).to_string();
    let bytes = ((total + 1) * (LINE + distill_memlogd::LINE_OVERHEAD)).to_string();
    let _d = Logd::start(state, &["--lines", &lines, "--bytes", &bytes]);
    let t0 = Instant::now();
    let mut kids = spawn_writers(state, 8, per_writer);
    loop {
        let s = stats(state).unwrap();
        if s.lines_total as usize >= total {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let secs = t0.elapsed().as_secs_f64();
    for k in &mut kids {
        k.wait().unwrap();
    }
    // Every line of every writer, in order, none lost.
    let s = stats(state).unwrap();
    let mut next = [0usize; 8];
    let mut count = 0usize;
    for e in query(state, &Request::new(Mode::Dump)).unwrap() {
        let e = e.unwrap();
        let id: usize = e.source[1..e.source.find('.').unwrap()].parse().unwrap();
        let n: usize = e.msg.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(
            n, next[id],
            "writer {id}: line {n} out of order or a line lost"
        );
        assert_eq!(e.msg.len(), LINE - 1);
        next[id] += 1;
        count += 1;
    }
    assert_eq!(count, total);
    assert_eq!(s.evicted_total, 0);
    println!(
        "ingest: {total} lines of {LINE} bytes from 8 writer processes in {secs:.3} s = {:.0} lines/s ({:.0} MB/s); lost: 0 (checked every line in order)",
        total as f64 / secs,
        (total * LINE) as f64 / secs / 1e6
    );
}

fn memory(total_bytes: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let d = Logd::start(
        state,
        &[
            "--lines",
            "100000000",
            "--bytes",
            &(16usize << 20).to_string(),
        ],
    );
    let total = total_bytes / LINE;
    let per = total / 4;
    let t0 = Instant::now();
    let mut kids = spawn_writers(state, 4, per);
    let mut peak_rss = 0;
    loop {
        peak_rss = peak_rss.max(status_kib(d.pid(), "VmRSS:"));
        let s = stats(state).unwrap();
        if s.lines_total as usize >= 4 * per {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for k in &mut kids {
        k.wait().unwrap();
    }
    let s = stats(state).unwrap();
    let hwm = status_kib(d.pid(), "VmHWM:");
    println!(
        "memory: {:.2} GiB ({} lines) through a 16 MiB ring in {:.1} s: ring holds {} lines / {} accounted bytes; daemon peak RSS (VmHWM) {:.1} MiB, highest sampled VmRSS {:.1} MiB; limit 32 MiB: {}",
        (4 * per * LINE) as f64 / (1u64 << 30) as f64,
        4 * per,
        t0.elapsed().as_secs_f64(),
        s.ring_lines,
        s.ring_bytes,
        hwm as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        if hwm < 32 * 1024 { "ok" } else { "EXCEEDED" }
    );
}

fn latency(rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();
    let _d = Logd::start(state, &[]);
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    send_fd(state, "lat.stdout", r.as_fd()).unwrap();
    drop(r);
    let mut w = std::fs::File::from(w);
    let mut follow = query(state, &Request::new(Mode::Follow)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        writeln!(w, "ping {i}").unwrap();
        let e = follow.next().unwrap().unwrap();
        samples.push(t.elapsed());
        assert_eq!(e.msg, format!("ping {i}"));
        std::thread::sleep(Duration::from_millis(1));
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "follow latency over {rounds} lines: median {:?}, p90 {:?}, p99 {:?}, max {:?} (target: median under 5 ms)",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--writer" {
        writer(args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if quick {
        ingest(20_000);
        memory(64 << 20);
        latency(200);
    } else {
        ingest(250_000);
        memory(1 << 30);
        latency(2000);
    }
}
