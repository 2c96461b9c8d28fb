//! The rotating writer behind `--persist DIR`: `DIR/<source>.log`, rotated to
//! `<source>.log.1` .. `<source>.log.<N-1>` so that exactly `N` (`max_files`) files are kept.
//! Each record is one JSON line, the same as a query reply line, and is never split across
//! two files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::wire::WireEntry;
use crate::Error;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A size-rotated log file. Records are buffered until [`RotatingWriter::flush`].
pub struct RotatingWriter {
    dir: PathBuf,
    base: String,
    max_size: u64,
    max_files: usize,
    file: File,
    /// Size of the current file including what is still buffered.
    size: u64,
    buf: Vec<u8>,
}

impl RotatingWriter {
    /// Opens (appending) `dir/<name>.log`. `max_size` is the size at which the file is rotated
    /// (a single record larger than that still goes into a file of its own); `max_files` is
    /// how many files to keep, the current one included (at least 1).
    pub fn open(dir: &Path, name: &str, max_size: u64, max_files: usize) -> Result<Self, Error> {
        crate::wire::validate_source(name)?;
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let base = format!("{name}.log");
        let path = dir.join(&base);
        let mut file = open_append(&path)?;
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        // A daemon killed in the middle of a write can leave a torn last record: end it so
        // the next record starts on a line of its own.
        if size > 0 {
            let mut last = [0u8; 1];
            let mut r = File::open(&path).map_err(io_err("open", &path))?;
            r.seek(SeekFrom::Start(size - 1))
                .and_then(|_| r.read_exact(&mut last))
                .map_err(io_err("read", &path))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io_err("write", &path))?;
            }
        }
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        Ok(RotatingWriter {
            dir: dir.to_path_buf(),
            base,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file,
            size,
            buf: Vec::new(),
        })
    }

    /// The path of the current file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    fn numbered(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.{i}", self.base))
    }

    /// Appends one record (which should end in a newline), rotating first if it would take
    /// the current file past `max_size`.
    pub fn write_record(&mut self, rec: &[u8]) -> Result<(), Error> {
        if self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.flush()?;
            self.rotate()?;
        }
        self.buf.extend_from_slice(rec);
        self.size += rec.len() as u64;
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered records to the file (to the kernel; a crash of the daemon loses
    /// nothing flushed, a crash of the machine may).
    pub fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            let path = self.path();
            let r = self.file.write_all(&self.buf);
            self.buf.clear();
            r.map_err(io_err("write", &path))?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), Error> {
        let cur = self.path();
        let ignore_missing = |r: io::Result<()>, op: &'static str, p: &Path| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                op,
                path: p.to_path_buf(),
                source: e,
            }),
            _ => Ok(()),
        };
        // Files beyond the limit (left by a run with a larger --max-files) go too.
        let mut k = self.max_files;
        while self.numbered(k).exists() {
            let p = self.numbered(k);
            ignore_missing(fs::remove_file(&p), "remove", &p)?;
            k += 1;
        }
        if self.max_files > 1 {
            let last = self.numbered(self.max_files - 1);
            ignore_missing(fs::remove_file(&last), "remove", &last)?;
            for i in (1..self.max_files - 1).rev() {
                let from = self.numbered(i);
                ignore_missing(fs::rename(&from, self.numbered(i + 1)), "rename", &from)?;
            }
            fs::rename(&cur, self.numbered(1)).map_err(io_err("rename", &cur))?;
        } else {
            fs::remove_file(&cur).map_err(io_err("remove", &cur))?;
        }
        self.file = open_append(&cur)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open", path))
}

/// One record read back from a persist directory.
pub(crate) struct Persisted {
    pub time: u64,
    pub source: String,
    pub raw: Vec<u8>,
    pub cut: bool,
}

/// Reads every current `<source>.log` in `dir` (not the rotated ones), oldest first.
/// Unparsable lines (a record torn by a crash) are skipped.
pub(crate) fn read_persisted(dir: &Path) -> Result<Vec<Persisted>, Error> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Io {
                op: "read directory",
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut names: Vec<PathBuf> = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("read directory", dir))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") && p.is_file() {
            names.push(p);
        }
    }
    names.sort();
    for p in names {
        let f = File::open(&p).map_err(io_err("open", &p))?;
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(io_err("read", &p))?;
            let Ok(w) = serde_json::from_slice::<WireEntry>(&line) else {
                continue;
            };
            let Ok(t) = crate::wire::parse_time(&w.time) else {
                continue;
            };
            if crate::wire::validate_source(&w.source).is_err() {
                continue;
            }
            out.push(Persisted {
                time: crate::wire::nanos_of(t),
                source: w.source,
                raw: crate::escape::unescape(&w.msg),
                cut: w.cut,
            });
        }
    }
    out.sort_by_key(|p| p.time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotation_keeps_exactly_max_files_newest_content() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = RotatingWriter::open(tmp.path(), "web.stdout", 100, 3).unwrap();
        for i in 0..50 {
            w.write_record(format!("record {i:03} ............\n").as_bytes())
                .unwrap();
            w.flush().unwrap();
        }
        assert_eq!(
            files(tmp.path()),
            ["web.stdout.log", "web.stdout.log.1", "web.stdout.log.2"]
        );
        for f in files(tmp.path()) {
            let len = fs::metadata(tmp.path().join(&f)).unwrap().len();
            assert!(len <= 100, "{f} is {len} bytes");
        }
        let cur = fs::read_to_string(tmp.path().join("web.stdout.log")).unwrap();
        assert!(cur.ends_with("record 049 ............\n"), "{cur}");
        let oldest = fs::read_to_string(tmp.path().join("web.stdout.log.2")).unwrap();
        // 24 bytes a record, 4 a file: the 3 files hold records 40..=49 (the current one 48, 49).
        assert!(oldest.starts_with("record 040"), "{oldest}");

        // Reopening with fewer files trims the extra ones at the next rotation.
        drop(w);
        let mut w = RotatingWriter::open(tmp.path(), "web.stdout", 100, 2).unwrap();
        for i in 0..10 {
            w.write_record(format!("again {i:03} .............\n").as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
        assert_eq!(files(tmp.path()), ["web.stdout.log", "web.stdout.log.1"]);
    }

    #[test]
    fn single_file_is_truncated_and_torn_record_is_ended() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.log"), b"{\"torn").unwrap();
        let mut w = RotatingWriter::open(tmp.path(), "a", 30, 1).unwrap();
        w.write_record(b"0123456789\n").unwrap();
        w.flush().unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("a.log")).unwrap(),
            "{\"torn\n0123456789\n"
        );
        w.write_record(b"abcdefghijabcdefghij\n").unwrap();
        w.flush().unwrap();
        assert_eq!(files(tmp.path()), ["a.log"]);
        assert_eq!(
            fs::read_to_string(tmp.path().join("a.log")).unwrap(),
            "abcdefghijabcdefghij\n"
        );
    }
}
