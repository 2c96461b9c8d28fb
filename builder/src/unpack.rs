//! Unpacking a source into a package's output: a Debian package's data (`data.tar.*` inside
//! the `ar` archive) or a tarball (plain, gzip, xz or zstd, told apart by magic bytes).
//! Entries that would land outside the output (`..`, absolute paths, through a symlink) and
//! device nodes are refused with the entry named.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

/// Why a source could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The archive.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// The archive's format is not one distill unpacks.
    #[error("{file}: {reason}")]
    Format {
        /// The archive.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry is unsafe to unpack.
    #[error("{file}: entry {entry:?} refused: {reason}")]
    Unsafe {
        /// The archive.
        file: String,
        /// The entry path as stored.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Unpack `archive` (a `.deb` or a tarball) into `dest`, which must exist.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), UnpackError> {
    let file_name = archive.display().to_string();
    let io_err = |source| UnpackError::Io {
        file: file_name.clone(),
        source,
    };
    let mut f = File::open(archive).map_err(io_err)?;
    let mut magic = [0u8; 8];
    let n = read_full(&mut f, &mut magic).map_err(io_err)?;
    drop(f);
    if n == 8 && &magic == b"!<arch>\n" {
        unpack_deb(archive, dest, &file_name)
    } else {
        let f = File::open(archive).map_err(io_err)?;
        unpack_tar_stream(BufReader::with_capacity(1 << 20, f), dest, &file_name)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn unpack_deb(archive: &Path, dest: &Path, file_name: &str) -> Result<(), UnpackError> {
    let f = File::open(archive).map_err(|source| UnpackError::Io {
        file: file_name.into(),
        source,
    })?;
    let mut ar = ar::Archive::new(f);
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|source| UnpackError::Io {
            file: file_name.into(),
            source,
        })?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if id.starts_with("data.tar") {
            let label = format!("{file_name}:{id}");
            return unpack_tar_stream(BufReader::with_capacity(1 << 20, entry), dest, &label);
        }
    }
    Err(UnpackError::Format {
        file: file_name.into(),
        reason: "a Debian package without a data.tar member".into(),
    })
}

/// Unpack a possibly compressed tar stream into `dest`.
pub fn unpack_tar_stream(
    mut r: impl BufRead,
    dest: &Path,
    file_name: &str,
) -> Result<(), UnpackError> {
    let head = r
        .fill_buf()
        .map_err(|source| UnpackError::Io {
            file: file_name.into(),
            source,
        })?
        .to_vec();
    let reader: Box<dyn Read> = if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(r).map_err(|source| UnpackError::Io {
                file: file_name.into(),
                source,
            })?,
        )
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        return Err(UnpackError::Format {
            file: file_name.into(),
            reason: "bzip2 archives are not supported; use gzip, xz or zstd".into(),
        });
    } else {
        Box::new(r)
    };
    extract(reader, dest, file_name)
}

fn extract(r: impl Read, dest: &Path, file_name: &str) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    let entries = archive.entries().map_err(|source| UnpackError::Io {
        file: file_name.into(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Io {
            file: file_name.into(),
            source,
        })?;
        let path = entry
            .path()
            .map_err(|source| UnpackError::Io {
                file: file_name.into(),
                source,
            })?
            .into_owned();
        let shown = path.display().to_string();
        let unsafe_entry = |reason: &str| UnpackError::Unsafe {
            file: file_name.into(),
            entry: shown.clone(),
            reason: reason.into(),
        };
        for c in path.components() {
            match c {
                Component::ParentDir => return Err(unsafe_entry("it contains a `..` component")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry("it is an absolute path"))
                }
                _ => {}
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            return Err(unsafe_entry("device nodes are not allowed in packages"));
        }
        if kind.is_fifo() {
            return Err(unsafe_entry("fifos are not allowed in packages"));
        }
        if kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                if target
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
                {
                    return Err(unsafe_entry("its hard link target leaves the archive"));
                }
            }
        }
        // `unpack_in` refuses paths whose parent resolves outside `dest` (through symlinks).
        let unpacked = entry
            .unpack_in(dest)
            .map_err(|e| unsafe_entry(&e.to_string()))?;
        if !unpacked {
            return Err(unsafe_entry(
                "it would be written outside the output directory",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(path: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Write the raw name so that `..` and absolute paths reach the reader unchanged.
        {
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
        }
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn refuses_parent_components() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with("a/../../evil", tar::EntryType::Regular, None, b"x");
        let e = extract(&t[..], d.path(), "t.tar").unwrap_err();
        assert!(e.to_string().contains(".."), "{e}");
        assert!(!d.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn refuses_absolute_paths() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with("/tmp/evil-distill", tar::EntryType::Regular, None, b"x");
        let e = extract(&t[..], d.path(), "t.tar").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn refuses_devices() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with("dev/sda", tar::EntryType::Block, None, b"");
        let e = extract(&t[..], d.path(), "t.tar").unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
    }

    #[test]
    fn refuses_writing_through_a_symlink_out() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_path("link").unwrap();
        h.set_link_name(outside.path()).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_path("link/evil").unwrap();
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(extract(&t[..], d.path(), "t.tar").is_err());
        assert!(!outside.path().join("evil").exists());
    }

    #[test]
    fn unpacks_compressed_tarballs() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(5);
        h.set_mode(0o755);
        h.set_path("bin/tool").unwrap();
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        };
        let zs = zstd::encode_all(&t[..], 3).unwrap();
        for (i, bytes) in [t.clone(), gz, zs].into_iter().enumerate() {
            let out = d.path().join(i.to_string());
            std::fs::create_dir(&out).unwrap();
            unpack_tar_stream(&bytes[..], &out, "x").unwrap();
            assert_eq!(std::fs::read(out.join("bin/tool")).unwrap(), b"hello");
        }
    }
}
