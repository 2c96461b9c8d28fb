//! A minimal, deterministic tar writer: ustar headers built field by field, PAX records
//! (`path`, `linkpath`, `size`, `uid`, `gid`) only when a value does not fit.

use std::io::{self, Read, Write};

/// The metadata of one tar entry as it will be written.
#[derive(Clone, Debug)]
pub(crate) struct EntryHeader<'a> {
    /// Path inside the archive, without leading `/` or `./`; directories without trailing `/`.
    pub path: &'a [u8],
    pub kind: Kind<'a>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind<'a> {
    File { size: u64 },
    Dir,
    Symlink { target: &'a [u8] },
    HardLink { target: &'a [u8] },
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

const BLOCK: usize = 512;

/// Writes tar entries to `W`. Call [`TarWriter::finish`] to write the end-of-archive marker.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

fn octal_fits(v: u64, width: usize) -> bool {
    // width includes the trailing NUL
    let digits = width - 1;
    digits >= 22 || v < (1u64 << (3 * digits))
}

fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n", where len counts the whole record including its own digits.
    let base = 1 + key.len() + 1 + value.len() + 1;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn raw_header(
        &mut self,
        h: &EntryHeader<'_>,
        name: &[u8],
        link: &[u8],
        size: u64,
    ) -> io::Result<()> {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
        put_octal(
            &mut b[108..116],
            if octal_fits(h.uid, 8) { h.uid } else { 0 },
        );
        put_octal(
            &mut b[116..124],
            if octal_fits(h.gid, 8) { h.gid } else { 0 },
        );
        put_octal(
            &mut b[124..136],
            if octal_fits(size, 12) { size } else { 0 },
        );
        put_octal(
            &mut b[136..148],
            if octal_fits(h.mtime, 12) { h.mtime } else { 0 },
        );
        b[156] = match h.kind {
            Kind::File { .. } => b'0',
            Kind::HardLink { .. } => b'1',
            Kind::Symlink { .. } => b'2',
            Kind::Char { .. } => b'3',
            Kind::Block { .. } => b'4',
            Kind::Dir => b'5',
        };
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        // uname/gname stay empty.
        match h.kind {
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                put_octal(&mut b[329..337], u64::from(major));
                put_octal(&mut b[337..345], u64::from(minor));
            }
            _ => {}
        }
        self.finish_header(b)
    }

    fn finish_header(&mut self, mut b: [u8; BLOCK]) -> io::Result<()> {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        let s = format!("{sum:06o}");
        b[148..154].copy_from_slice(s.as_bytes());
        b[154] = 0;
        b[155] = b' ';
        self.out.write_all(&b)
    }

    /// Writes the header(s) of an entry (a PAX header first when needed). For files the
    /// caller must then write exactly `size` bytes of content and call [`Self::pad`].
    pub(crate) fn header(&mut self, h: &EntryHeader<'_>) -> io::Result<()> {
        let mut name = h.path.to_vec();
        if matches!(h.kind, Kind::Dir) {
            name.push(b'/');
        }
        let (link, size): (&[u8], u64) = match h.kind {
            Kind::File { size } => (b"", size),
            Kind::Symlink { target } | Kind::HardLink { target } => (target, 0),
            _ => (b"", 0),
        };
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax_record(&mut pax, "path", &name);
        }
        if link.len() > 100 {
            pax_record(&mut pax, "linkpath", link);
        }
        if !octal_fits(size, 12) {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
        }
        if !octal_fits(h.uid, 8) {
            pax_record(&mut pax, "uid", h.uid.to_string().as_bytes());
        }
        if !octal_fits(h.gid, 8) {
            pax_record(&mut pax, "gid", h.gid.to_string().as_bytes());
        }
        if !octal_fits(h.mtime, 12) {
            pax_record(&mut pax, "mtime", h.mtime.to_string().as_bytes());
        }
        if !pax.is_empty() {
            let ph = EntryHeader {
                path: b"",
                kind: Kind::File {
                    size: pax.len() as u64,
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: h.mtime.min(0o77777777777),
            };
            let mut b = [0u8; BLOCK];
            let pname = b"PaxHeader";
            b[..pname.len()].copy_from_slice(pname);
            put_octal(&mut b[100..108], u64::from(ph.mode));
            put_octal(&mut b[108..116], 0);
            put_octal(&mut b[116..124], 0);
            put_octal(&mut b[124..136], pax.len() as u64);
            put_octal(&mut b[136..148], ph.mtime);
            b[156] = b'x';
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
            self.finish_header(b)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let short_name = &name[..name.len().min(100)];
        let short_link = &link[..link.len().min(100)];
        self.raw_header(h, short_name, short_link, size)
    }

    /// Writes the zero padding after `size` bytes of content.
    pub(crate) fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes a regular file whose content comes from `content`, which must yield exactly `size` bytes.
    pub(crate) fn file(
        &mut self,
        h: &EntryHeader<'_>,
        content: &mut dyn Read,
        buf: &mut [u8],
    ) -> io::Result<()> {
        let size = match h.kind {
            Kind::File { size } => size,
            _ => return Err(io::Error::other("file() called for a non-file entry")),
        };
        self.header(h)?;
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = content.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while being archived ({left} of {size} bytes missing)"),
                ));
            }
            self.out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if content.read(&mut probe)? != 0 {
            return Err(io::Error::other(format!(
                "file grew while being archived (more than {size} bytes)"
            )));
        }
        self.pad(size)
    }

    /// Writes a regular file from memory.
    pub(crate) fn bytes(
        &mut self,
        path: &[u8],
        data: &[u8],
        mode: u32,
        mtime: u64,
    ) -> io::Result<()> {
        self.header(&EntryHeader {
            path,
            kind: Kind::File {
                size: data.len() as u64,
            },
            mode,
            uid: 0,
            gid: 0,
            mtime,
        })?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [
            ("path", "a".repeat(5)),
            ("path", "b".repeat(93)),
            ("linkpath", "c".repeat(990)),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k, v.as_bytes());
            let s = String::from_utf8(out.clone()).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "{s:?}");
        }
    }

    #[test]
    fn values_too_big_for_ustar_go_to_pax_and_read_back() {
        let mut tw = TarWriter::new(Vec::new());
        let big_uid = 0o7777777u64 + 5;
        let name = "n".repeat(150);
        let h = EntryHeader {
            path: name.as_bytes(),
            kind: Kind::File { size: 3 },
            mode: 0o640,
            uid: big_uid,
            gid: 9,
            mtime: 1 << 40,
        };
        tw.file(&h, &mut &b"abc"[..], &mut [0u8; 16]).unwrap();
        let bytes = tw.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), name.as_bytes());
        assert_eq!(e.header().uid().unwrap(), big_uid);
        assert_eq!(e.header().gid().unwrap(), 9);
        assert_eq!(e.header().mode().unwrap(), 0o640);
        let mut content = String::new();
        std::io::Read::read_to_string(&mut e, &mut content).unwrap();
        assert_eq!(content, "abc");
        let pax: Vec<(String, String)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value().unwrap().to_string())
            })
            .collect();
        assert_eq!(pax[0], ("path".to_string(), name.clone()));
        assert!(pax.contains(&("uid".to_string(), big_uid.to_string())));
        assert!(pax.contains(&("mtime".to_string(), (1u64 << 40).to_string())));
        assert!(entries.next().is_none());
    }

    #[test]
    fn short_file_is_an_error_not_a_corrupt_archive() {
        let mut tw = TarWriter::new(Vec::new());
        let h = EntryHeader {
            path: b"f",
            kind: Kind::File { size: 10 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let err = tw.file(&h, &mut &b"abc"[..], &mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        let h = EntryHeader {
            path: b"g",
            kind: Kind::File { size: 2 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let err = tw.file(&h, &mut &b"abc"[..], &mut [0u8; 4]).unwrap_err();
        assert!(err.to_string().contains("grew"), "{err}");
    }
}
