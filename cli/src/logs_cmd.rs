//! `distill logd` (the log daemon) and `distill logs` (its client): container output and
//! lifecycle events from memlogd, or from the fallback files in a container's state directory
//! when the daemon has nothing for it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use distill_memlogd::{escape, format_time, parse_time, query, Entry, Mode, Request};
use distill_runtime::{cgroup::parse_size, logd_dir, StateError, StateRoot, Status};

use crate::{refused, Failure};

// The arguments of `distill logd` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct LogdArgs {
    /// Most lines kept in memory.
    #[arg(long, default_value_t = distill_memlogd::DEFAULT_LINES)]
    lines: usize,
    /// Most bytes kept in memory (each line costs its length plus 64): bytes or k/m/g.
    #[arg(long)]
    bytes: Option<String>,
    /// Longest line kept whole; longer ones are cut into marked pieces (bytes or k/m/g).
    #[arg(long)]
    line_max: Option<String>,
    /// Also write every source to DIR/<source>.log, rotated.
    #[arg(long)]
    persist: Option<PathBuf>,
    /// Rotate a persisted file at this size (bytes or k/m/g; default 1m).
    #[arg(long, requires = "persist")]
    max_size: Option<String>,
    /// Files kept per source, the current one included (default 10).
    #[arg(long, requires = "persist")]
    max_files: Option<usize>,
}

fn size(flag: &str, v: &Option<String>) -> Result<Option<u64>, Failure> {
    match v {
        None => Ok(None),
        Some(s) => parse_size(s).map(Some).ok_or_else(|| {
            refused(anyhow::anyhow!(
                "{flag} {s:?} is not a size: give bytes or a number with k, m or g"
            ))
        }),
    }
}

/// `distill logd`: runs the log daemon of state root `state` (in `<state>/.logd`) in the
/// foreground until SIGTERM/SIGINT. The runtime starts it detached on first use.
pub fn logd(state: &Path, a: LogdArgs) -> Result<(), Failure> {
    let mut cfg = distill_memlogd::Config::new(logd_dir(state));
    cfg.lines = a.lines;
    if let Some(b) = size("--bytes", &a.bytes)? {
        cfg.bytes = b as usize;
    }
    if let Some(m) = size("--line-max", &a.line_max)? {
        cfg.line_max = m as usize;
    }
    if let Some(dir) = a.persist {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let mut p = distill_memlogd::PersistConfig::new(dir);
        if let Some(s) = size("--max-size", &a.max_size)? {
            p.max_size = s;
        }
        if let Some(n) = a.max_files {
            p.max_files = n;
        }
        cfg.persist = Some(p);
    }
    cfg.validate().map_err(refused)?;
    distill_memlogd::run_daemon(cfg)?;
    Ok(())
}

// The arguments of `distill logs` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Keep following new lines (for a container: until it exits).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
    /// Only lines since TIME: RFC 3339 (2024-05-01T12:00:00Z) or a duration ago (10m).
    #[arg(long)]
    since: Option<String>,
    /// Prefix each line with the time it arrived (RFC 3339, nanoseconds).
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Every container's lines and lifecycle events in one stream.
    #[arg(long, conflicts_with = "name")]
    all: bool,
    /// The container.
    #[arg(required_unless_present = "all")]
    name: Option<String>,
}

fn parse_since(s: &str) -> Result<SystemTime, Failure> {
    if let Ok(t) = parse_time(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(d) => SystemTime::now().checked_sub(d).ok_or_else(|| {
            refused(anyhow::anyhow!(
                "--since {s:?}: that is before any time this machine can represent; give a shorter duration"
            ))
        }),
        Err(_) => Err(refused(anyhow::anyhow!(
            "--since {s:?}: give an RFC 3339 time (2024-05-01T12:00:00Z) or a duration such as 10m"
        ))),
    }
}

fn entry_json(e: &Entry) -> String {
    let mut v = serde_json::json!({
        "time": format_time(e.time),
        "source": e.source,
        "msg": e.msg,
    });
    if e.cut {
        v["cut"] = serde_json::Value::Bool(true);
    }
    if e.dropped > 0 {
        v["dropped"] = serde_json::Value::from(e.dropped);
    }
    v.to_string()
}

/// `distill logs`.
pub fn logs(state: &Path, json: bool, a: LogsArgs) -> Result<(), Failure> {
    let since = a.since.as_deref().map(parse_since).transpose()?;
    match a.name.clone() {
        None => all(state, json, &a, since),
        Some(name) => one(state, json, &a, since, &name),
    }
}

/// `logs --all [-f]`: every source, events included, in arrival order.
fn all(state: &Path, json: bool, a: &LogsArgs, since: Option<SystemTime>) -> Result<(), Failure> {
    let rt = crate::container_cmd::runtime(state)?;
    if let Some(l) = &rt.logd {
        l.ensure_running()?;
    }
    let dir = logd_dir(state);
    let mut req = Request::new(if a.follow {
        Mode::DumpFollow
    } else {
        Mode::Dump
    });
    req.tail = a.tail;
    req.since = since;
    let mut out = std::io::stdout().lock();
    for e in query(&dir, &req)? {
        let e = e?;
        let line = if json {
            entry_json(&e)
        } else if a.timestamps {
            format!("{} {} {}", format_time(e.time), e.source, e.msg)
        } else {
            format!("{} {}", e.source, e.msg)
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break; // the reader went away
        }
    }
    Ok(())
}

/// Which stream of container `name` a source is, if it is one of its own.
fn stream_of(name: &str, source: &str) -> Option<&'static str> {
    let rest = source.strip_prefix(name)?.strip_prefix('.')?;
    match rest {
        "stdout" => Some("stdout"),
        "stderr" => Some("stderr"),
        "event" => Some("event"),
        _ => None,
    }
}

struct Printer {
    json: bool,
    timestamps: bool,
    /// Whether the last piece written to each stream was cut (so it continues).
    open: [bool; 2],
}

impl Printer {
    fn print(&mut self, stream: &str, e: &Entry) -> std::io::Result<()> {
        let i = usize::from(stream == "stderr");
        let mut buf = Vec::new();
        if self.json {
            buf.extend_from_slice(entry_json(e).as_bytes());
            buf.push(b'\n');
        } else {
            if self.timestamps && !self.open[i] {
                buf.extend_from_slice(format_time(e.time).as_bytes());
                buf.push(b' ');
            }
            buf.extend_from_slice(&escape::unescape(&e.msg));
            if !e.cut {
                buf.push(b'\n');
            }
            self.open[i] = e.cut;
        }
        if i == 0 || self.json {
            let mut o = std::io::stdout().lock();
            o.write_all(&buf)?;
            o.flush()
        } else {
            std::io::stderr().lock().write_all(&buf)
        }
    }
}

/// `logs NAME [-f]`: from logd, else from the fallback files.
fn one(
    state: &Path,
    json: bool,
    a: &LogsArgs,
    since: Option<SystemTime>,
    name: &str,
) -> Result<(), Failure> {
    distill_runtime::state::validate_name(name).map_err(|e| refused(anyhow::anyhow!("{e}")))?;
    let root = StateRoot::open(state).map_err(|e| anyhow::anyhow!("{e}"))?;
    let exists = match root.inspect(name) {
        Ok(_) => true,
        Err(StateError::NotFound(_)) => false,
        Err(e) => return Err(anyhow::anyhow!("{e}").into()),
    };
    let dir = logd_dir(state);
    let mut req = Request::new(Mode::Dump);
    req.source = Some(name.to_string());
    req.since = since;
    // Everything logd has for the name (the filter also matches names with `name.` prefix).
    let dump: Option<Vec<Entry>> = match query(&dir, &req) {
        Ok(entries) => Some(entries.collect::<Result<Vec<_>, _>>()?),
        Err(distill_memlogd::Error::NotRunning { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let has_own = dump
        .as_ref()
        .is_some_and(|d| d.iter().any(|e| stream_of(name, &e.source).is_some()));
    let cdir = root.dir(name);
    let files = [cdir.join("stdout.log"), cdir.join("stderr.log")];
    if !has_own {
        if files.iter().any(|f| f.exists()) {
            return from_files(&root, name, &files, a);
        }
        if !exists {
            return Err(refused(anyhow::anyhow!(
                "no such container {name:?} and no logs of it (see `distill ps -a`)"
            )));
        }
        if dump.is_none() || !a.follow {
            return Ok(()); // nothing logged (yet), e.g. logd could not be reached
        }
    }
    let mut p = Printer {
        json,
        timestamps: a.timestamps,
        open: [false; 2],
    };
    let dump = dump.unwrap_or_default();
    if !a.follow {
        let own: Vec<(&'static str, &Entry)> = dump
            .iter()
            .filter_map(|e| Some((stream_of(name, &e.source)?, e)))
            .filter(|(s, _)| *s != "event")
            .collect();
        let skip = a.tail.map_or(0, |n| own.len().saturating_sub(n));
        for (s, e) in &own[skip..] {
            if p.print(s, e).is_err() {
                break;
            }
        }
        return Ok(());
    }
    // Follow: dump-follow from the point that yields the last N lines of this container.
    let mut req = Request::new(Mode::DumpFollow);
    req.source = Some(name.to_string());
    req.since = since;
    if let Some(n) = a.tail {
        let mut lines = 0;
        let mut k = 0;
        for e in dump.iter().rev() {
            if lines == n {
                break;
            }
            k += 1;
            if matches!(stream_of(name, &e.source), Some("stdout" | "stderr")) {
                lines += 1;
            }
        }
        req.tail = Some(k);
    }
    for e in query(&dir, &req)? {
        let e = e?;
        if e.source == "logd" && e.dropped > 0 {
            eprintln!("distill: {}", e.msg);
            continue;
        }
        match stream_of(name, &e.source) {
            Some("event") => {
                let ended = e.msg.starts_with("exited") || e.msg.starts_with("failed");
                // An older container of the same name may have exited: end only if this one
                // is not running now.
                if ended && !still_running(&root, name) {
                    break;
                }
            }
            Some(s) if p.print(s, &e).is_err() => break,
            _ => {}
        }
    }
    Ok(())
}

/// True if container `name` is running, allowing its monitor a moment to record an exit
/// whose event has just arrived.
fn still_running(root: &StateRoot, name: &str) -> bool {
    for _ in 0..100 {
        match root.inspect(name) {
            Ok(s) if s.status == Status::Running => {}
            _ => return false,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Lines of the fallback files (no timestamps there); with `-f`, follows them until the
/// container is gone or exited.
fn from_files(
    root: &StateRoot,
    name: &str,
    files: &[PathBuf; 2],
    a: &LogsArgs,
) -> Result<(), Failure> {
    if a.timestamps || a.since.is_some() {
        eprintln!(
            "distill: warning: the logs of {name} are in files without arrival times; --timestamps and --since do not apply"
        );
    }
    let mut pos = [0u64; 2];
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(f).unwrap_or_default();
        pos[i] = data.len() as u64;
        let start = match a.tail {
            None => 0,
            Some(n) => tail_start(&data, n),
        };
        emit(i, &data[start..]);
    }
    if !a.follow {
        return Ok(());
    }
    loop {
        let running = matches!(root.inspect(name), Ok(s) if s.status != Status::Exited);
        for (i, f) in files.iter().enumerate() {
            if let Ok(mut file) = File::open(f) {
                if file.seek(SeekFrom::Start(pos[i])).is_ok() {
                    let mut buf = Vec::new();
                    if file.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                        pos[i] += buf.len() as u64;
                        emit(i, &buf);
                    }
                }
            }
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn emit(stream: usize, bytes: &[u8]) {
    if stream == 0 {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(bytes);
        let _ = o.flush();
    } else {
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

/// Where the last `n` lines of `data` start.
fn tail_start(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}
