//! The wire formats: ingest datagrams, query requests, and JSON-line replies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest accepted source name in bytes (it is also a file name under `--persist`).
pub const SOURCE_MAX: usize = 200;
/// Longest accepted event text in bytes.
pub const EVENT_MAX: usize = 16 * 1024;
/// Longest accepted query request line in bytes.
pub const REQUEST_MAX: usize = 64 * 1024;

/// Datagram tag: the datagram carries one fd in `SCM_RIGHTS`; the payload after the tag is
/// the source name.
pub(crate) const TAG_FD: u8 = b'F';
/// Datagram tag: a lifecycle event; payload after the tag is `<source>\n<text>`.
pub(crate) const TAG_EVENT: u8 = b'E';

/// Checks that `source` can be used as a source name: 1..=200 bytes, not `.` or `..`, not
/// starting with `.`, and without `/`, NUL, newline or other control characters.
pub fn validate_source(source: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::InvalidSource {
        source_name: source.escape_debug().to_string(),
        why: why.to_string(),
    };
    if source.is_empty() {
        return Err(bad("it is empty"));
    }
    if source.len() > SOURCE_MAX {
        return Err(bad("it is longer than 200 bytes"));
    }
    if source.starts_with('.') {
        return Err(bad("it starts with '.'"));
    }
    if source.contains('/') {
        return Err(bad("it contains '/'"));
    }
    if source.chars().any(|c| c.is_control()) {
        return Err(bad("it contains a control character"));
    }
    Ok(())
}

/// True when `source` is selected by `filter`: equal to it, or starting with `filter.`
/// (so `web` selects `web`, `web.stdout`, `web.stderr` and `web.event`, but not `web2.stdout`).
pub fn source_matches(filter: &str, source: &str) -> bool {
    source == filter
        || (source.len() > filter.len()
            && source.starts_with(filter)
            && source.as_bytes()[filter.len()] == b'.')
}

/// The container part of a source name: everything before the last `.`, or all of it.
pub(crate) fn container_of(source: &str) -> &str {
    match source.rfind('.') {
        Some(i) if i > 0 => &source[..i],
        _ => source,
    }
}

/// Formats a time as RFC 3339 UTC with nanoseconds, e.g. `2024-05-01T12:00:00.123456789Z`.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`, fractional seconds optional, `Z` or no
/// zone meaning UTC).
pub fn parse_time(s: &str) -> Result<SystemTime, Error> {
    humantime::parse_rfc3339_weak(s).map_err(|e| Error::BadTime {
        value: s.to_string(),
        why: e.to_string(),
    })
}

pub(crate) fn nanos_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

pub(crate) fn time_of(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// What a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Send the lines in the ring (after `since`/`tail`/`source` filtering), then close.
    Dump,
    /// Send only lines that arrive after the request; never closes by itself.
    Follow,
    /// `Dump`, then go on with `Follow` without a gap or a duplicate.
    DumpFollow,
}

/// One query request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to send.
    pub mode: Mode,
    /// Only lines whose source equals this or starts with this followed by `.`.
    pub source: Option<String>,
    /// Only the last N matching lines of the ring (ignored by `Follow`).
    pub tail: Option<usize>,
    /// Only lines that arrived at or after this time.
    pub since: Option<SystemTime>,
}

impl Request {
    /// A request of `mode` with no filters.
    pub fn new(mode: Mode) -> Self {
        Request {
            mode,
            source: None,
            tail: None,
            since: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireRequest {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl WireRequest {
    pub fn from_request(r: &Request) -> Self {
        let mode = match r.mode {
            Mode::Dump => "dump",
            Mode::Follow => "follow",
            Mode::DumpFollow => "dump-follow",
        };
        WireRequest {
            mode: mode.to_string(),
            source: r.source.clone(),
            tail: r.tail,
            since: r.since.map(format_time),
        }
    }
}

/// One log line (or lifecycle event, or dropped-lines marker) as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When the daemon received the line.
    pub time: SystemTime,
    /// `<container>.stdout`, `<container>.stderr`, `<container>.event`, or `logd` for markers.
    pub source: String,
    /// The line without its newline, escaped (see [`crate::escape`]).
    pub msg: String,
    /// True when the line was longer than `line_max` and continues in the next entry of the
    /// same source.
    pub cut: bool,
    /// Non-zero only on a marker: this many lines matching the request were evicted before
    /// this (too slow) reader could be sent them.
    pub dropped: u64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireEntry {
    pub time: String,
    pub source: String,
    pub msg: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub cut: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Appends one reply/persist line (`{"time":..,"source":..,"msg":..}` + `\n`) for raw bytes.
pub(crate) fn encode_line(
    out: &mut Vec<u8>,
    time_nanos: u64,
    source: &str,
    raw: &[u8],
    cut: bool,
    dropped: u64,
) {
    let w = WireEntry {
        time: format_time(time_of(time_nanos)),
        source: source.to_string(),
        msg: crate::escape::escape(raw),
        cut,
        dropped,
        error: None,
    };
    // Serializing a struct of strings and integers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &w);
    out.push(b'\n');
}

pub(crate) fn encode_error(msg: &str) -> Vec<u8> {
    let w = WireEntry {
        time: format_time(SystemTime::now()),
        source: "logd".to_string(),
        msg: String::new(),
        cut: false,
        dropped: 0,
        error: Some(msg.to_string()),
    };
    let mut v = serde_json::to_vec(&w).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Decodes one reply line into an [`Entry`]; an `error` reply becomes [`Error::Daemon`].
pub(crate) fn decode_entry(line: &str) -> Result<Entry, Error> {
    let w: WireEntry = serde_json::from_str(line).map_err(|e| Error::Protocol {
        what: format!("bad reply line {:?}: {e}", truncate(line)),
    })?;
    if let Some(e) = w.error {
        return Err(Error::Daemon { msg: e });
    }
    Ok(Entry {
        time: parse_time(&w.time)?,
        source: w.source,
        msg: w.msg,
        cut: w.cut,
        dropped: w.dropped,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Counters reported by the `stats` request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Lines (and events) appended to the ring since the daemon started.
    pub lines_total: u64,
    /// Message bytes appended since the daemon started.
    pub bytes_total: u64,
    /// Lines evicted from the ring since the daemon started.
    pub evicted_total: u64,
    /// Lines now in the ring.
    pub ring_lines: u64,
    /// Accounted bytes now in the ring (message bytes + a fixed per-line overhead).
    pub ring_bytes: u64,
    /// File descriptors being read now.
    pub open_fds: u64,
    /// Malformed datagrams ignored since start.
    pub bad_datagrams: u64,
    /// Persist write errors since start.
    pub persist_errors: u64,
}
