//! SHA-256 digests and hashing readers/writers.

use crate::error::{io_err, Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A content digest, always `sha256:` followed by 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is an error naming `field`.
    pub fn parse(s: &str, field: &str) -> Result<Digest> {
        let ok = s
            .strip_prefix("sha256:")
            .map(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .unwrap_or(false);
        if ok {
            Ok(Digest(s.to_string()))
        } else {
            Err(Error::Invalid {
                field: field.to_string(),
                reason: format!("{s:?} is not a digest; expected sha256:<64 lowercase hex digits>"),
            })
        }
    }

    /// Builds a digest from a finished SHA-256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hash)))
    }

    /// The digest of a byte string.
    pub fn of_bytes(data: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(data).into())
    }

    /// The digest and size of a file, streamed.
    pub fn of_file(path: &Path) -> Result<(Digest, u64)> {
        let f = File::open(path).map_err(io_err(path, "open"))?;
        let mut r = HashReader::new(f);
        io::copy(&mut r, &mut io::sink()).map_err(io_err(path, "read"))?;
        Ok(r.finish())
    }

    /// The full string, `sha256:...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Digest> {
        Digest::parse(&s, "digest")
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashWriter<W> {
    pub(crate) inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub(crate) fn finish(self) -> (Digest, u64, W) {
        (
            Digest::from_sha256(self.hasher.finalize().into()),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through it (in the calling thread).
pub(crate) struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub(crate) fn finish(self) -> (Digest, u64) {
        let (d, n, _) = self.into_parts();
        (d, n)
    }
    pub(crate) fn into_parts(self) -> (Digest, u64, R) {
        (
            Digest::from_sha256(self.hasher.finalize().into()),
            self.count,
            self.inner,
        )
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

/// A reader that reads its source in 1 MiB chunks and hashes them on a second thread,
/// so hashing overlaps with whatever the consumer does (decompression, writing files).
/// Every byte is read from the source once.
pub(crate) struct PipelinedHashReader<R> {
    inner: R,
    current: Option<Arc<Vec<u8>>>,
    pos: usize,
    to_hasher: Option<SyncSender<Arc<Vec<u8>>>>,
    returned: Receiver<Arc<Vec<u8>>>,
    hasher: Option<JoinHandle<(Digest, u64)>>,
    eof: bool,
}

impl<R: Read> PipelinedHashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        let (tx, rx) = sync_channel::<Arc<Vec<u8>>>(IN_FLIGHT);
        let (ret_tx, ret_rx) = sync_channel::<Arc<Vec<u8>>>(IN_FLIGHT + 2);
        let hasher = std::thread::spawn(move || {
            let mut h = Sha256::new();
            let mut n = 0u64;
            for chunk in rx {
                h.update(&chunk[..]);
                n += chunk.len() as u64;
                let _ = ret_tx.try_send(chunk);
            }
            (Digest::from_sha256(h.finalize().into()), n)
        });
        PipelinedHashReader {
            inner,
            current: None,
            pos: 0,
            to_hasher: Some(tx),
            returned: ret_rx,
            hasher: Some(hasher),
            eof: false,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        self.current = None;
        let mut buf = loop {
            match self.returned.try_recv() {
                Ok(arc) => {
                    if let Ok(v) = Arc::try_unwrap(arc) {
                        break v;
                    }
                }
                Err(_) => break Vec::with_capacity(CHUNK),
            }
        };
        buf.clear();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        if filled > 0 {
            let arc = Arc::new(buf);
            if let Some(tx) = &self.to_hasher {
                tx.send(arc.clone())
                    .map_err(|_| io::Error::other("hash thread stopped"))?;
            }
            self.current = Some(arc);
            self.pos = 0;
        }
        Ok(())
    }

    /// The first bytes not yet consumed (at least one chunk's worth unless the source is shorter).
    pub(crate) fn peek(&mut self) -> io::Result<&[u8]> {
        let empty = self
            .current
            .as_ref()
            .map(|c| self.pos >= c.len())
            .unwrap_or(true);
        if empty && !self.eof {
            self.refill()?;
        }
        Ok(match &self.current {
            Some(c) => &c[self.pos..],
            None => &[],
        })
    }

    /// Reads the source to its end (hashing everything) and returns digest and byte count.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        while !self.eof {
            self.refill()?;
        }
        self.current = None;
        drop(self.to_hasher.take());
        match self.hasher.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("hash thread panicked")),
            None => Err(io::Error::other("hash thread already finished")),
        }
    }
}

impl<R: Read> Read for PipelinedHashReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &self.current {
                if self.pos < cur.len() {
                    let n = out.len().min(cur.len() - self.pos);
                    out[..n].copy_from_slice(&cur[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if self.eof {
                self.current = None;
                return Ok(0);
            }
            self.refill()?;
        }
    }
}

impl<R> Drop for PipelinedHashReader<R> {
    fn drop(&mut self) {
        drop(self.to_hasher.take());
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}
