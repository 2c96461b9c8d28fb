//! Deterministic layer tars from a directory tree or from a chosen set of its paths.

use crate::digest::{Digest, HashWriter};
use crate::error::{io_err, Error, Result};
use crate::tarfmt::{EntryHeader, Kind, TarWriter};
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// gzip level used for `+gzip` layers (flate2's default backend, miniz_oxide).
pub const GZIP_LEVEL: u32 = 6;
/// zstd level used for `+zstd` layers (single-threaded: no worker threads).
pub const ZSTD_LEVEL: i32 = 3;
/// Annotation put on every layer descriptor naming the compression settings, so a
/// rebuild (`distill verify`) can reproduce them.
pub const COMPRESSION_ANNOTATION: &str = "dev.distill.layer.compression";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip at [`GZIP_LEVEL`], header mtime 0, no file name, OS byte 255 ("unknown").
    #[default]
    Gzip,
    /// zstd at [`ZSTD_LEVEL`], single-threaded, no checksum, no content size.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The compression a layer media type names, if it is one we know.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// A short description of the exact settings, e.g. `gzip-6`.
    pub fn settings(self) -> String {
        match self {
            Compression::None => "none".to_string(),
            Compression::Gzip => format!("gzip-{GZIP_LEVEL}"),
            Compression::Zstd => format!("zstd-{ZSTD_LEVEL}"),
        }
    }
}

/// Who owns the entries of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Every entry gets this uid and gid (the default is 0:0).
    Fixed {
        /// Owner user id.
        uid: u32,
        /// Owner group id.
        gid: u32,
    },
    /// Take uid and gid from the files on disk.
    FromDisk,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership::Fixed { uid: 0, gid: 0 }
    }
}

/// What goes into a layer.
#[derive(Clone, Debug)]
pub enum LayerSource {
    /// Everything under this directory (the directory itself is the layer's root, not an entry).
    Dir(PathBuf),
    /// Only these paths of `root` (relative, or absolute meaning "inside root"), plus every
    /// parent directory of each. A listed directory is included as an entry, not its contents.
    Paths {
        /// The tree the paths are taken from.
        root: PathBuf,
        /// The paths to keep.
        paths: BTreeSet<PathBuf>,
    },
    /// Host directories placed at paths of the layer (a container's writable directories
    /// for `commit`). Each `(path, dir)` puts the content of `dir` at `path` and an opaque
    /// whiteout (`path/.wh..wh..opq`) in it, so the layer defines that directory completely
    /// (what lower layers had there and is gone now stays gone). The parent directories of
    /// each `path` are entries too, with the metadata they have in `parents_from` (the
    /// image's unpacked root). A `path` below another one replaces that part of the outer
    /// directory's content. Sockets and fifos are left out: they are plumbing of the
    /// processes that made them, not data.
    Mapped {
        /// Where the parents' metadata comes from.
        parents_from: PathBuf,
        /// (path in the layer, host directory) pairs.
        dirs: Vec<(PathBuf, PathBuf)>,
    },
}

/// Name of the opaque whiteout entry (OCI image spec, "Opaque Whiteout").
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The name prefix OCI layers reserve for whiteouts; a source file named so is refused
/// ([`Error::WhiteoutName`]), since unpacking would take it for a deletion.
pub const WHITEOUT_PREFIX: &str = ".wh.";

impl LayerSource {
    /// Checks that the source can be written as a layer, as [`write_layer`] would (every
    /// path readable, no name reserved for whiteouts, ...), without writing anything: for a
    /// caller that must know before it does something costly.
    pub fn check(&self) -> Result<()> {
        collect(self).map(drop)
    }
}

/// Settings for [`write_layer`].
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// Modification time written for every entry (`SOURCE_DATE_EPOCH`), seconds since 1970.
    pub epoch: u64,
    /// Owner of the entries.
    pub owner: Ownership,
    /// Compression of the blob.
    pub compression: Compression,
    /// The history line for this layer (e.g. `distill: package hello 1.0`).
    pub created_by: String,
}

/// A finished layer blob on disk and what the image documents need to know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// Where the (compressed) blob was written.
    pub path: PathBuf,
    /// Its compression.
    pub compression: Compression,
    /// sha256 of the blob as stored.
    pub digest: Digest,
    /// Size in bytes of the blob as stored.
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The history line (from [`LayerOptions::created_by`]).
    pub created_by: String,
}

impl LayerBlob {
    /// The media type of this layer.
    pub fn media_type(&self) -> &'static str {
        self.compression.media_type()
    }
}

struct Item {
    rel: Vec<u8>,
    abs: PathBuf,
    meta: Metadata,
    /// An opaque whiteout marker (an empty file; `abs`/`meta` are its directory's).
    opaque: bool,
}

/// What [`walk`] leaves out.
#[derive(Default)]
struct Skip {
    /// Layer paths whose whole subtree is left out.
    subtrees: BTreeSet<Vec<u8>>,
    /// Leave out sockets and fifos.
    plumbing: bool,
}

fn rel_components(p: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s.as_bytes().to_vec()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Invalid {
                    field: format!("layer path {}", p.display()),
                    reason: "contains '..'; give paths relative to the layer root without '..'"
                        .into(),
                })
            }
        }
    }
    Ok(out)
}

fn lstat(p: &Path) -> Result<Metadata> {
    fs::symlink_metadata(p).map_err(io_err(p, "lstat"))
}

fn walk(rel: &mut Vec<u8>, dir: &Path, out: &mut Vec<Item>, skip: &Skip) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(io_err(dir, "read directory"))?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(io_err(dir, "read directory"))?;
        names.push(e.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let abs = dir.join(&name);
        let meta = lstat(&abs)?;
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let ft = meta.file_type();
        if skip.subtrees.contains(rel.as_slice())
            || (skip.plumbing && (ft.is_socket() || ft.is_fifo()))
        {
            rel.truncate(len);
            continue;
        }
        let is_dir = meta.is_dir();
        out.push(Item {
            rel: rel.clone(),
            abs: abs.clone(),
            meta,
            opaque: false,
        });
        if is_dir {
            walk(rel, &abs, out, skip)?;
        }
        rel.truncate(len);
    }
    Ok(())
}

fn collect(source: &LayerSource) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    match source {
        LayerSource::Dir(root) => {
            let m = fs::metadata(root).map_err(io_err(root, "stat"))?;
            if !m.is_dir() {
                return Err(Error::Source {
                    path: root.clone(),
                    reason: "is not a directory; give the layer's root directory".into(),
                });
            }
            walk(&mut Vec::new(), root, &mut items, &Skip::default())?;
        }
        LayerSource::Mapped { parents_from, dirs } => {
            collect_mapped(parents_from, dirs, &mut items)?;
        }
        LayerSource::Paths { root, paths } => {
            let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
            for p in paths {
                let comps = rel_components(p)?;
                let mut rel = Vec::new();
                let mut abs = root.clone();
                for (i, c) in comps.iter().enumerate() {
                    if i > 0 {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(c);
                    abs.push(OsStr::from_bytes(c));
                    let last = i + 1 == comps.len();
                    if seen.contains(&rel) {
                        continue;
                    }
                    let meta = lstat(&abs)?;
                    if !last && !meta.is_dir() {
                        return Err(Error::Source {
                            path: abs.clone(),
                            reason: format!(
                                "is not a directory but the kept path {} goes through it; list the path with symlinks resolved",
                                p.display()
                            ),
                        });
                    }
                    seen.insert(rel.clone());
                    items.push(Item {
                        rel: rel.clone(),
                        abs: abs.clone(),
                        meta,
                        opaque: false,
                    });
                }
            }
        }
    }
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    if let Some(it) = items.iter().find(|it| {
        let name = it.rel.rsplit(|b| *b == b'/').next().unwrap_or_default();
        !it.opaque && name.starts_with(WHITEOUT_PREFIX.as_bytes())
    }) {
        return Err(Error::WhiteoutName(
            Path::new("/").join(OsStr::from_bytes(&it.rel)),
        ));
    }
    Ok(items)
}

fn collect_mapped(
    parents_from: &Path,
    dirs: &[(PathBuf, PathBuf)],
    items: &mut Vec<Item>,
) -> Result<()> {
    let mut mapped: Vec<(Vec<u8>, usize, &Path)> = Vec::new();
    for (path, dir) in dirs {
        let comps = rel_components(path)?;
        if comps.is_empty() {
            return Err(Error::Invalid {
                field: format!("layer path {}", path.display()),
                reason: "is the root; map directories below it".into(),
            });
        }
        mapped.push((comps.join(&b'/'), comps.len(), dir.as_path()));
    }
    // Outer directories first; a path mapped twice keeps its first directory.
    mapped.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    mapped.dedup_by(|b, a| a.0 == b.0);
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    for (i, (rel, _, dir)) in mapped.iter().enumerate() {
        // Parents, from the image root, unless an outer mapped directory holds them.
        let mut prefix: Vec<u8> = Vec::new();
        let mut abs = parents_from.to_path_buf();
        let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(part);
            abs.push(OsStr::from_bytes(part));
            if seen.contains(&prefix) || under_mapped(&prefix, &mapped[..i]) {
                continue;
            }
            let meta = lstat(&abs)?;
            if !meta.is_dir() {
                return Err(Error::Source {
                    path: abs.clone(),
                    reason: format!(
                        "is not a directory but the mapped path {} goes through it",
                        String::from_utf8_lossy(rel)
                    ),
                });
            }
            seen.insert(prefix.clone());
            items.push(Item {
                rel: prefix.clone(),
                abs: abs.clone(),
                meta,
                opaque: false,
            });
        }
        // Never followed: a mapped directory that is a symlink could lead anywhere.
        let meta = lstat(dir)?;
        if !meta.is_dir() {
            return Err(Error::Source {
                path: dir.to_path_buf(),
                reason: "is not a directory (or is a symlink); map directories".into(),
            });
        }
        // Its own entry replaces whatever an outer directory's walk found there.
        items.retain(|it| it.rel != *rel);
        let mut marker = rel.clone();
        marker.push(b'/');
        marker.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
        items.push(Item {
            rel: marker,
            abs: dir.to_path_buf(),
            meta: meta.clone(),
            opaque: true,
        });
        items.push(Item {
            rel: rel.clone(),
            abs: dir.to_path_buf(),
            meta,
            opaque: false,
        });
        seen.insert(rel.clone());
        let skip = Skip {
            subtrees: mapped[i + 1..]
                .iter()
                .filter(|(r, _, _)| r.starts_with(rel) && r.get(rel.len()) == Some(&b'/'))
                .map(|(r, _, _)| r.clone())
                .collect(),
            plumbing: true,
        };
        let start = items.len();
        walk(&mut rel.clone(), dir, items, &skip)?;
        for it in &items[start..] {
            seen.insert(it.rel.clone());
        }
    }
    Ok(())
}

/// True when `rel` is one of `mapped`'s paths or below one.
fn under_mapped(rel: &[u8], mapped: &[(Vec<u8>, usize, &Path)]) -> bool {
    mapped.iter().any(|(m, _, _)| {
        rel == m.as_slice() || (rel.starts_with(m) && rel.get(m.len()) == Some(&b'/'))
    })
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<HashWriter<BufWriter<File>>>),
    Zstd(zstd::stream::write::Encoder<'static, HashWriter<BufWriter<File>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

fn open_sink(f: File, out: &Path, c: Compression) -> Result<Sink> {
    let w = BufWriter::with_capacity(1 << 20, f);
    Ok(match c {
        Compression::None => Sink::Plain(w),
        Compression::Gzip => Sink::Gzip(
            flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(HashWriter::new(w), flate2::Compression::new(GZIP_LEVEL)),
        ),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(HashWriter::new(w), ZSTD_LEVEL)
                .map_err(io_err(out, "start zstd"))?;
            e.include_checksum(false)
                .map_err(io_err(out, "configure zstd"))?;
            e.include_contentsize(false)
                .map_err(io_err(out, "configure zstd"))?;
            Sink::Zstd(e)
        }
    })
}

/// Refuses an output inside the tree it is made from.
fn check_output(source: &LayerSource, out: &Path) -> Result<()> {
    if let LayerSource::Dir(root) = source {
        let (o, r) = (std::path::absolute(out), std::path::absolute(root));
        if let (Ok(o), Ok(r)) = (o, r) {
            if o.starts_with(&r) {
                return Err(Error::Invalid {
                    field: format!("layer output {}", out.display()),
                    reason: format!(
                        "is inside the layer's source {}; write it elsewhere",
                        root.display()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Writes a deterministic layer from `source` to the file `out` and returns its digests.
///
/// Entries are sorted by the byte order of their path (so parents precede children), have
/// mtime `opts.epoch`, owner from `opts.owner`, empty user/group names, mode `& 0o7777`.
/// Symlinks are stored, never followed. Files with several links inside the layer are
/// stored once (the first path in sort order) and the later paths as hard links to it.
/// Char/block devices keep only their device numbers; fifos and sockets are refused
/// (left out for [`LayerSource::Mapped`]).
pub fn write_layer(source: &LayerSource, opts: &LayerOptions, out: &Path) -> Result<LayerBlob> {
    check_output(source, out)?;
    // Everything is checked before the file exists: a refused layer writes nothing.
    let items = collect(source)?;
    let f = File::create(out).map_err(io_err(out, "create"))?;
    write_items(&items, opts, f, out)
}

/// [`write_layer`] into `file`, a new empty file open for writing whose path is `out` (for
/// a file made beside its final place, e.g. by [`crate::temp_file_beside`]: nothing is
/// opened by path, so nothing planted at a name is followed).
pub fn write_layer_to(
    source: &LayerSource,
    opts: &LayerOptions,
    file: File,
    out: &Path,
) -> Result<LayerBlob> {
    check_output(source, out)?;
    write_items(&collect(source)?, opts, file, out)
}

fn write_items(items: &[Item], opts: &LayerOptions, file: File, out: &Path) -> Result<LayerBlob> {
    let sink = open_sink(file, out, opts.compression)?;
    let mut tar = TarWriter::new(HashWriter::new(sink));
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let werr = |e: io::Error| Error::Io {
        path: out.to_path_buf(),
        op: "write layer",
        source: e,
    };
    for it in items {
        let m = &it.meta;
        if it.opaque {
            let h = EntryHeader {
                path: &it.rel,
                kind: Kind::File { size: 0 },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: opts.epoch,
            };
            tar.header(&h).map_err(werr)?;
            continue;
        }
        let (uid, gid) = match opts.owner {
            Ownership::Fixed { uid, gid } => (u64::from(uid), u64::from(gid)),
            Ownership::FromDisk => (u64::from(m.uid()), u64::from(m.gid())),
        };
        let ft = m.file_type();
        let mode = m.mode() & 0o7777;
        let mut h = EntryHeader {
            path: &it.rel,
            kind: Kind::Dir,
            mode,
            uid,
            gid,
            mtime: opts.epoch,
        };
        let target;
        if ft.is_dir() {
            tar.header(&h).map_err(werr)?;
        } else if ft.is_symlink() {
            target = fs::read_link(&it.abs).map_err(io_err(&it.abs, "read link"))?;
            h.kind = Kind::Symlink {
                target: target.as_os_str().as_bytes(),
            };
            h.mode = 0o777;
            tar.header(&h).map_err(werr)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                if let Some(first) = links.get(&key) {
                    let lh = EntryHeader {
                        kind: Kind::HardLink { target: first },
                        ..h
                    };
                    tar.header(&lh).map_err(werr)?;
                    continue;
                }
                links.insert(key, it.rel.clone());
            }
            let mut f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&it.abs)
                .map_err(io_err(&it.abs, "open"))?;
            h.kind = Kind::File { size: m.len() };
            tar.file(&h, &mut f, &mut buf)
                .map_err(io_err(&it.abs, "archive"))?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = m.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            h.kind = if ft.is_char_device() {
                Kind::Char { major, minor }
            } else {
                Kind::Block { major, minor }
            };
            tar.header(&h).map_err(werr)?;
        } else {
            let what = if ft.is_fifo() { "a fifo" } else { "a socket" };
            return Err(Error::Source {
                path: it.abs.clone(),
                reason: format!("is {what}; layers cannot hold fifos or sockets; remove it from the tree or the kept paths"),
            });
        }
    }
    let hw = tar.finish().map_err(werr)?;
    let (diff_id, _tar_size, sink) = hw.finish();
    let (digest, size, mut file) = match sink {
        Sink::Plain(w) => {
            let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
            let size = f.metadata().map_err(werr)?.len();
            (diff_id.clone(), size, f)
        }
        Sink::Gzip(g) => {
            let hw = g.finish().map_err(werr)?;
            let (d, n, w) = hw.finish();
            (d, n, w.into_inner().map_err(|e| werr(e.into_error()))?)
        }
        Sink::Zstd(z) => {
            let hw = z.finish().map_err(werr)?;
            let (d, n, w) = hw.finish();
            (d, n, w.into_inner().map_err(|e| werr(e.into_error()))?)
        }
    };
    file.flush().map_err(werr)?;
    Ok(LayerBlob {
        path: out.to_path_buf(),
        compression: opts.compression,
        digest,
        size,
        diff_id,
        created_by: opts.created_by.clone(),
    })
}
