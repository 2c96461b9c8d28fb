//! The in-memory ring: lines bounded by count and by bytes, and the reader cursors that walk
//! it (dump and follow share one code path).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

use crate::wire::source_matches;

/// Bytes accounted per line on top of its message: the ring slot and the allocator's header,
/// so that `--bytes` bounds the memory the ring really uses.
pub const LINE_OVERHEAD: usize = 64;

pub(crate) struct SourceStat {
    pub name: Arc<str>,
    /// Lines of this source ever appended.
    pub appended: u64,
    /// Lines of this source ever evicted (always the oldest ones of the source).
    pub evicted: u64,
}

pub(crate) struct Line {
    pub time: u64,
    pub src: u32,
    pub cut: bool,
    pub msg: Box<[u8]>,
}

/// The ring. Line `i` of `lines` has sequence number `first_seq + i`.
pub(crate) struct Ring {
    lines: VecDeque<Line>,
    first_seq: u64,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    sources: Vec<SourceStat>,
    by_name: HashMap<Arc<str>, u32>,
    pub lines_total: u64,
    pub bytes_total: u64,
    pub evicted_total: u64,
}

/// What the daemon's threads share.
pub(crate) struct Shared {
    pub ring: Mutex<Ring>,
    pub cond: Condvar,
    pub shutdown: AtomicBool,
}

impl Ring {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Ring {
            lines: VecDeque::new(),
            first_seq: 0,
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            sources: Vec::new(),
            by_name: HashMap::new(),
            lines_total: 0,
            bytes_total: 0,
            evicted_total: 0,
        }
    }

    /// The id of source `name`, registering it on first use.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = self.sources.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.sources.push(SourceStat {
            name: name.clone(),
            appended: 0,
            evicted: 0,
        });
        self.by_name.insert(name, id);
        id
    }

    pub fn source_name(&self, id: u32) -> &Arc<str> {
        &self.sources[id as usize].name
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.lines.len() as u64
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn get(&self, seq: u64) -> Option<&Line> {
        seq.checked_sub(self.first_seq)
            .and_then(|i| self.lines.get(i as usize))
    }

    /// Appends one line, evicting the oldest lines while either bound is exceeded.
    pub fn push(&mut self, time: u64, src: u32, cut: bool, msg: Box<[u8]>) {
        let cost = msg.len() + LINE_OVERHEAD;
        self.bytes_total += msg.len() as u64;
        self.lines_total += 1;
        self.sources[src as usize].appended += 1;
        self.lines.push_back(Line {
            time,
            src,
            cut,
            msg,
        });
        self.bytes += cost;
        while self.lines.len() > self.max_lines
            || (self.bytes > self.max_bytes && self.lines.len() > 1)
        {
            self.evict_one();
        }
    }

    fn evict_one(&mut self) {
        if let Some(old) = self.lines.pop_front() {
            self.bytes -= old.msg.len() + LINE_OVERHEAD;
            self.sources[old.src as usize].evicted += 1;
            self.first_seq += 1;
            self.evicted_total += 1;
        }
    }
}

/// One line copied out of the ring for a reader (so the lock is not held while writing).
pub(crate) struct Out {
    pub time: u64,
    pub source: Arc<str>,
    pub cut: bool,
    pub msg: Vec<u8>,
    /// Non-zero for a dropped-lines marker.
    pub dropped: u64,
}

/// A reader's position in the ring, with what it needs to count exactly how many lines that
/// match its filter were evicted before it could read them.
pub(crate) struct Cursor {
    next: u64,
    end: Option<u64>,
    filter: Option<String>,
    since: u64,
    /// For each matching source seen: how many of its lines have a sequence number below `next`.
    below: HashMap<u32, u64>,
}

impl Cursor {
    /// Positions a reader. `end_at_now` makes it a dump (stops at the lines present now);
    /// `from_now` makes it a pure follow (starts after the lines present now).
    pub fn new(
        ring: &Ring,
        filter: Option<String>,
        tail: Option<usize>,
        since: u64,
        from_now: bool,
        end_at_now: bool,
    ) -> Self {
        let now = ring.next_seq();
        let matches = |l: &Line| {
            filter
                .as_deref()
                .is_none_or(|f| source_matches(f, ring.source_name(l.src)))
        };
        let start = if from_now {
            now
        } else if tail.is_none() && since == 0 {
            ring.first_seq()
        } else {
            let mut start = now;
            let mut count = 0usize;
            let mut seq = now;
            while seq > ring.first_seq() {
                seq -= 1;
                let l = ring.get(seq).expect("seq inside the ring");
                if l.time < since {
                    break;
                }
                if matches(l) {
                    if tail.is_some_and(|t| count >= t) {
                        break;
                    }
                    count += 1;
                    start = seq;
                }
            }
            start
        };
        // Lines of each matching source below `start` = appended - those at or above `start`.
        let mut at_or_above: HashMap<u32, u64> = HashMap::new();
        for seq in start..now {
            let l = ring.get(seq).expect("seq inside the ring");
            *at_or_above.entry(l.src).or_default() += 1;
        }
        let mut below = HashMap::new();
        for (id, s) in ring.sources.iter().enumerate() {
            let id = id as u32;
            if filter.as_deref().is_none_or(|f| source_matches(f, &s.name)) {
                below.insert(id, s.appended - at_or_above.get(&id).copied().unwrap_or(0));
            }
        }
        Cursor {
            next: start,
            end: if end_at_now { Some(now) } else { None },
            filter,
            since,
            below,
        }
    }

    fn matches(&self, ring: &Ring, src: u32) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| source_matches(f, ring.source_name(src)))
    }

    /// True when a dump has sent everything it is meant to.
    pub fn done(&self) -> bool {
        self.end.is_some_and(|e| self.next >= e)
    }

    /// Copies up to `max_lines` / about `max_bytes` of matching lines into `out`, preceded by a
    /// dropped-lines marker if lines were evicted before this reader got them.
    pub fn fill(&mut self, ring: &Ring, out: &mut Vec<Out>, max_lines: usize, max_bytes: usize) {
        if self.next < ring.first_seq() {
            let mut dropped = 0;
            for (id, s) in ring.sources.iter().enumerate() {
                let id = id as u32;
                if !self.matches(ring, id) {
                    continue;
                }
                let below = self.below.entry(id).or_insert(0);
                if s.evicted > *below {
                    dropped += s.evicted - *below;
                    *below = s.evicted;
                }
            }
            self.next = ring.first_seq();
            if dropped > 0 {
                out.push(Out {
                    time: crate::wire::nanos_of(std::time::SystemTime::now()),
                    source: Arc::from("logd"),
                    cut: false,
                    msg: format!("{dropped} lines dropped: this reader was too slow").into_bytes(),
                    dropped,
                });
            }
        }
        let stop = match self.end {
            Some(e) => e.min(ring.next_seq()),
            None => ring.next_seq(),
        };
        let mut bytes = 0;
        while self.next < stop && out.len() < max_lines && bytes < max_bytes {
            let l = ring.get(self.next).expect("seq inside the ring");
            self.next += 1;
            if !self.matches(ring, l.src) {
                continue;
            }
            *self.below.entry(l.src).or_insert(0) += 1;
            if l.time < self.since {
                continue;
            }
            bytes += l.msg.len();
            out.push(Out {
                time: l.time,
                source: ring.source_name(l.src).clone(),
                cut: l.cut,
                msg: l.msg.to_vec(),
                dropped: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| String::from_utf8_lossy(&o.msg).into_owned())
            .collect()
    }

    #[test]
    fn evicts_oldest_first_by_lines_and_by_bytes() {
        let mut r = Ring::new(3, 1 << 20);
        let s = r.intern("a.stdout");
        for i in 0..5 {
            r.push(i, s, false, format!("{i}").into_bytes().into());
        }
        let mut c = Cursor::new(&r, None, None, 0, false, true);
        let mut out = Vec::new();
        c.fill(&r, &mut out, 100, 1 << 20);
        assert_eq!(msgs(&out), ["2", "3", "4"]);

        let mut r = Ring::new(1000, 3 * (LINE_OVERHEAD + 10));
        let s = r.intern("b.stdout");
        for i in 0..6 {
            r.push(i, s, false, format!("line-{i:04}").into_bytes().into());
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), 3 * (LINE_OVERHEAD + 9));
        let mut c = Cursor::new(&r, None, None, 0, false, true);
        let mut out = Vec::new();
        c.fill(&r, &mut out, 100, 1 << 20);
        assert_eq!(msgs(&out), ["line-0003", "line-0004", "line-0005"]);
    }

    #[test]
    fn tail_and_filter_and_dropped_counts_only_matching_lines() {
        let mut r = Ring::new(4, 1 << 20);
        let a = r.intern("a.stdout");
        let b = r.intern("b.stdout");
        let ab = r.intern("ab.stdout");
        r.push(1, a, false, b"a1".to_vec().into());
        r.push(2, b, false, b"b1".to_vec().into());
        r.push(3, ab, false, b"ab1".to_vec().into());
        r.push(4, a, false, b"a2".to_vec().into());
        let mut c = Cursor::new(&r, Some("a".into()), Some(1), 0, false, false);
        let mut out = Vec::new();
        c.fill(&r, &mut out, 100, 1 << 20);
        assert_eq!(msgs(&out), ["a2"]);
        // A follower of "a" that falls behind: 3 lines of a are evicted unread, plus b's.
        let mut f = Cursor::new(&r, Some("a".into()), None, 0, true, false);
        for i in 0..3 {
            r.push(10 + i, a, false, b"lost".to_vec().into());
            r.push(20 + i, b, false, b"other".to_vec().into());
        }
        for i in 0..4 {
            r.push(30 + i, b, false, b"other".to_vec().into());
        }
        r.push(40, a, false, b"kept".to_vec().into());
        let mut out = Vec::new();
        f.fill(&r, &mut out, 100, 1 << 20);
        assert_eq!(out[0].dropped, 3, "{:?}", msgs(&out));
        assert_eq!(msgs(&out[1..]), ["kept"]);
    }
}
