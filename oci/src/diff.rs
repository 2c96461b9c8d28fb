//! `diff_archives`: the first difference between two image archives.

use crate::digest::Digest;
use crate::error::{io_err, Error, Result};
use crate::load::{sniff, Decoded};
use crate::outer::{LayerRef, Outer, Parsed};
use serde_json::Value;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Where a difference was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffLocation {
    /// The outer archive itself (its file list or tar headers).
    Archive,
    /// A JSON document: `index.json`, `manifest` or `config`.
    Document(String),
    /// A layer, by index (0 = bottom) and blob digest on each side.
    Layer {
        /// Index in the manifest.
        index: usize,
        /// Digest in the first archive.
        a: Digest,
        /// Digest in the second archive.
        b: Digest,
    },
}

/// What differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffKind {
    /// The path exists only in the second archive.
    MissingInA,
    /// The path exists only in the first archive.
    MissingInB,
    /// File type (regular, directory, symlink, ...).
    Type,
    /// Permission bits.
    Mode,
    /// uid or gid.
    Owner,
    /// File size.
    Size,
    /// File content (same size).
    Content,
    /// Symlink or hard link target.
    LinkTarget,
    /// Modification time.
    Mtime,
    /// A JSON field (the path names it, e.g. `config.Env[1]`).
    Field,
    /// Number of layers.
    LayerCount,
    /// Same contents, different bytes (compression or tar header encoding).
    Encoding,
}

impl DiffKind {
    fn describe(self) -> &'static str {
        match self {
            DiffKind::MissingInA => "missing in the first archive",
            DiffKind::MissingInB => "missing in the second archive",
            DiffKind::Type => "file type differs",
            DiffKind::Mode => "mode differs",
            DiffKind::Owner => "owner differs",
            DiffKind::Size => "size differs",
            DiffKind::Content => "content differs",
            DiffKind::LinkTarget => "link target differs",
            DiffKind::Mtime => "mtime differs",
            DiffKind::Field => "field differs",
            DiffKind::LayerCount => "number of layers differs",
            DiffKind::Encoding => "same content, different encoding",
        }
    }
}

/// The first difference between two archives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Which document or layer.
    pub location: DiffLocation,
    /// The path inside the layer, the JSON field, or the archive member concerned.
    pub path: Option<String>,
    /// What differs.
    pub kind: DiffKind,
    /// The two values, when they are short enough to show.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            DiffLocation::Archive => write!(f, "archive")?,
            DiffLocation::Document(d) => write!(f, "{d}")?,
            DiffLocation::Layer { index, a, b } => write!(f, "layer {index} ({a} vs {b})")?,
        }
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.kind.describe())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let fa = File::open(a).map_err(io_err(a, "open"))?;
    let fb = File::open(b).map_err(io_err(b, "open"))?;
    if fa.metadata().map_err(io_err(a, "stat"))?.len()
        != fb.metadata().map_err(io_err(b, "stat"))?.len()
    {
        return Ok(false);
    }
    same_stream(fa, fb).map_err(io_err(a, "read"))
}

fn same_stream(mut a: impl Read, mut b: impl Read) -> io::Result<bool> {
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = read_full(&mut a, &mut ba)?;
        let nb = read_full(&mut b, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// The first differing field between two JSON values, as (field path, detail).
fn json_diff(a: &Value, b: &Value, path: &str) -> Option<(String, String)> {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = json_diff(x, y, &p) {
                            return Some(d);
                        }
                    }
                    (Some(x), None) => return Some((p, format!("{} vs absent", short(x)))),
                    (None, Some(y)) => return Some((p, format!("absent vs {}", short(y)))),
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(xa), Value::Array(xb)) => {
            for i in 0..xa.len().max(xb.len()) {
                let p = format!("{path}[{i}]");
                match (xa.get(i), xb.get(i)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = json_diff(x, y, &p) {
                            return Some(d);
                        }
                    }
                    (Some(x), None) => return Some((p, format!("{} vs absent", short(x)))),
                    (None, Some(y)) => return Some((p, format!("absent vs {}", short(y)))),
                    (None, None) => {}
                }
            }
            None
        }
        _ if a == b => None,
        _ => Some((path.to_string(), format!("{} vs {}", short(a), short(b)))),
    }
}

fn doc_diff(name: &str, a: &[u8], b: &[u8]) -> Option<Difference> {
    if a == b {
        return None;
    }
    let va: Value = serde_json::from_slice(a).unwrap_or(Value::Null);
    let vb: Value = serde_json::from_slice(b).unwrap_or(Value::Null);
    let (path, detail) = json_diff(&va, &vb, "").unwrap_or_default();
    Some(Difference {
        location: DiffLocation::Document(name.to_string()),
        path: if path.is_empty() { None } else { Some(path) },
        kind: if va == vb {
            DiffKind::Encoding
        } else {
            DiffKind::Field
        },
        detail,
    })
}

fn open_layer(outer: &Outer, l: &LayerRef) -> Result<Decoded<BufReader<io::Take<File>>>> {
    let (r, _) = outer.reader(&l.name)?;
    let mut br = BufReader::with_capacity(1 << 16, r);
    let c = match l.compression {
        Some(c) => c,
        None => sniff(br.fill_buf().map_err(io_err(&outer.path, "read"))?),
    };
    Decoded::new(br, c).map_err(io_err(&outer.path, "start decompression"))
}

fn norm_path(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    s.to_string()
}

fn type_name(t: tar::EntryType) -> &'static str {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "char device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "other",
    }
}

fn compare_layers(
    oa: &Outer,
    la: &LayerRef,
    ob: &Outer,
    lb: &LayerRef,
    loc: &DiffLocation,
) -> Result<Option<Difference>> {
    let mut da = open_layer(oa, la)?;
    let mut db = open_layer(ob, lb)?;
    let mut ta = tar::Archive::new(&mut da);
    let mut tb = tar::Archive::new(&mut db);
    let terr = |p: &Path| {
        let p = p.to_path_buf();
        move |e: io::Error| Error::Archive {
            archive: p,
            reason: format!("layer is not a valid tar: {e}"),
        }
    };
    let mut ia = ta.entries().map_err(terr(&oa.path))?;
    let mut ib = tb.entries().map_err(terr(&ob.path))?;
    let mk = |path: String, kind: DiffKind, detail: String| Difference {
        location: loc.clone(),
        path: Some(path),
        kind,
        detail,
    };
    loop {
        let ea = ia.next().transpose().map_err(terr(&oa.path))?;
        let eb = ib.next().transpose().map_err(terr(&ob.path))?;
        let (mut ea, mut eb) = match (ea, eb) {
            (None, None) => return Ok(None),
            (Some(x), None) => {
                return Ok(Some(mk(
                    norm_path(&x.path_bytes()),
                    DiffKind::MissingInB,
                    String::new(),
                )))
            }
            (None, Some(y)) => {
                return Ok(Some(mk(
                    norm_path(&y.path_bytes()),
                    DiffKind::MissingInA,
                    String::new(),
                )))
            }
            (Some(x), Some(y)) => (x, y),
        };
        let pa = norm_path(&ea.path_bytes());
        let pb = norm_path(&eb.path_bytes());
        if pa != pb {
            // Layers are sorted by path: the smaller one is absent from the other side.
            return Ok(Some(if pa.as_bytes() < pb.as_bytes() {
                mk(pa, DiffKind::MissingInB, String::new())
            } else {
                mk(pb, DiffKind::MissingInA, String::new())
            }));
        }
        let (ha, hb) = (ea.header().clone(), eb.header().clone());
        let (ta_, tb_) = (ha.entry_type(), hb.entry_type());
        if ta_ != tb_ {
            return Ok(Some(mk(
                pa,
                DiffKind::Type,
                format!("{} vs {}", type_name(ta_), type_name(tb_)),
            )));
        }
        let (lka, lkb) = (
            ea.link_name_bytes().map(|c| c.into_owned()),
            eb.link_name_bytes().map(|c| c.into_owned()),
        );
        if lka != lkb {
            let show = |l: &Option<Vec<u8>>| {
                l.as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            return Ok(Some(mk(
                pa,
                DiffKind::LinkTarget,
                format!("{:?} vs {:?}", show(&lka), show(&lkb)),
            )));
        }
        let (ma, mb) = (
            ha.mode().unwrap_or(0) & 0o7777,
            hb.mode().unwrap_or(0) & 0o7777,
        );
        if ma != mb {
            return Ok(Some(mk(
                pa,
                DiffKind::Mode,
                format!("{ma:04o} vs {mb:04o}"),
            )));
        }
        let (oa_, ob_) = (
            (ha.uid().unwrap_or(0), ha.gid().unwrap_or(0)),
            (hb.uid().unwrap_or(0), hb.gid().unwrap_or(0)),
        );
        if oa_ != ob_ {
            return Ok(Some(mk(
                pa,
                DiffKind::Owner,
                format!("{}:{} vs {}:{}", oa_.0, oa_.1, ob_.0, ob_.1),
            )));
        }
        if ea.size() != eb.size() {
            return Ok(Some(mk(
                pa,
                DiffKind::Size,
                format!("{} vs {} bytes", ea.size(), eb.size()),
            )));
        }
        if !same_stream(&mut ea, &mut eb).map_err(terr(&oa.path))? {
            return Ok(Some(mk(pa, DiffKind::Content, String::new())));
        }
        let (ta, tb) = (ha.mtime().unwrap_or(0), hb.mtime().unwrap_or(0));
        if ta != tb {
            return Ok(Some(mk(pa, DiffKind::Mtime, format!("{ta} vs {tb}"))));
        }
    }
}

/// Compares two image archives (OCI layout tar or docker-archive) and names the first
/// difference: a layer (by index) and the path in it and what differs (missing, type, mode,
/// owner, size, content, link target, mtime), else a differing config/manifest/index field,
/// else an archive member. Returns `None` when the archives are byte-identical.
///
/// Layers are compared entry by entry in order; for layers written by this crate (sorted
/// by path) a path missing on one side is reported as missing.
pub fn diff_archives(a: &Path, b: &Path) -> Result<Option<Difference>> {
    if same_bytes(a, b)? {
        return Ok(None);
    }
    let (oa, ob) = (Outer::open(a)?, Outer::open(b)?);
    let (pa, pb) = (Parsed::read(&oa)?, Parsed::read(&ob)?);
    for (i, (la, lb)) in pa.layers.iter().zip(&pb.layers).enumerate() {
        let da = la.digest.clone().unwrap_or_else(|| la.diff_id.clone());
        let db = lb.digest.clone().unwrap_or_else(|| lb.diff_id.clone());
        if da == db {
            continue;
        }
        let loc = DiffLocation::Layer {
            index: i,
            a: da,
            b: db,
        };
        if la.diff_id == lb.diff_id {
            let detail = format!(
                "same diff_id {}; compression or its settings differ",
                la.diff_id
            );
            return Ok(Some(Difference {
                location: loc,
                path: None,
                kind: DiffKind::Encoding,
                detail,
            }));
        }
        if let Some(d) = compare_layers(&oa, la, &ob, lb, &loc)? {
            return Ok(Some(d));
        }
        let detail =
            "same entries; tar headers differ in fields not compared (names, PAX records, order)"
                .to_string();
        return Ok(Some(Difference {
            location: loc,
            path: None,
            kind: DiffKind::Encoding,
            detail,
        }));
    }
    if pa.layers.len() != pb.layers.len() {
        return Ok(Some(Difference {
            location: DiffLocation::Document("manifest".into()),
            path: Some("layers".into()),
            kind: DiffKind::LayerCount,
            detail: format!("{} vs {}", pa.layers.len(), pb.layers.len()),
        }));
    }
    if let Some(d) = doc_diff("config", &pa.config_bytes, &pb.config_bytes) {
        return Ok(Some(d));
    }
    let empty = Vec::new();
    if let Some(d) = doc_diff(
        "manifest",
        pa.manifest.as_ref().unwrap_or(&empty),
        pb.manifest.as_ref().unwrap_or(&empty),
    ) {
        return Ok(Some(d));
    }
    if let Some(d) = doc_diff(
        "index.json",
        pa.index.as_ref().unwrap_or(&empty),
        pb.index.as_ref().unwrap_or(&empty),
    ) {
        return Ok(Some(d));
    }
    let mut names: Vec<&String> = oa.names().chain(ob.names()).collect();
    names.sort();
    names.dedup();
    for n in names {
        let (ra, rb) = (oa.reader(n).ok(), ob.reader(n).ok());
        let kind = match (ra, rb) {
            (Some(_), None) => DiffKind::MissingInB,
            (None, Some(_)) => DiffKind::MissingInA,
            (Some((x, _)), Some((y, _))) => {
                if same_stream(x, y).map_err(io_err(a, "read"))? {
                    continue;
                }
                DiffKind::Content
            }
            (None, None) => continue,
        };
        return Ok(Some(Difference {
            location: DiffLocation::Archive,
            path: Some(n.clone()),
            kind,
            detail: String::new(),
        }));
    }
    Ok(Some(Difference {
        location: DiffLocation::Archive,
        path: None,
        kind: DiffKind::Encoding,
        detail: "same files; outer tar headers differ".into(),
    }))
}
