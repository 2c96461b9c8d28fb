//! ELF closure: the program interpreter and the needed libraries of ELF objects, found the way
//! glibc's dynamic loader finds them, inside a root.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::engine::clean;
use crate::prune::{lookup_in_root, Reason};
use crate::TraceError;

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn cstr_at(b: &[u8], off: usize) -> Option<String> {
    let s = b.get(off..)?;
    let end = s.iter().position(|&c| c == 0)?;
    String::from_utf8(s[..end].to_vec()).ok()
}

/// Parse an `/etc/ld.so.cache` (the `glibc-ld.so.cache1.1` format, alone or after an old
/// `ld.so-1.7.0` table) into its `(library name, path)` entries, in file order.
pub fn parse_ld_cache(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let base = if bytes.starts_with(NEW_MAGIC) {
        0
    } else if bytes.starts_with(OLD_MAGIC) {
        let nlibs = u32_at(bytes, 12).ok_or("truncated old header")? as usize;
        let after = 16 + nlibs * 12;
        let aligned = (after + 7) & !7;
        if bytes.get(aligned..aligned + NEW_MAGIC.len()) == Some(NEW_MAGIC) {
            aligned
        } else {
            bytes
                .windows(NEW_MAGIC.len())
                .position(|w| w == NEW_MAGIC)
                .ok_or("only the old ld.so-1.7.0 format is present")?
        }
    } else {
        return Err("unknown magic (expected glibc-ld.so.cache1.1)".into());
    };
    let nlibs = u32_at(bytes, base + 20).ok_or("truncated header")? as usize;
    // The count comes from the image: check it against the file before trusting it.
    let table_end = nlibs
        .checked_mul(24)
        .and_then(|n| n.checked_add(base + 48))
        .ok_or("entry count overflows")?;
    if table_end > bytes.len() {
        return Err("truncated entry table".into());
    }
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let e = base + 48 + i * 24;
        let key = u32_at(bytes, e + 4).ok_or("truncated entry table")? as usize;
        let value = u32_at(bytes, e + 8).ok_or("truncated entry table")? as usize;
        let k = cstr_at(bytes, base + key).ok_or("entry name outside the file")?;
        let v = cstr_at(bytes, base + value).ok_or("entry path outside the file")?;
        out.push((k, v));
    }
    Ok(out)
}

struct Obj {
    /// `DT_SONAME`, if any.
    soname: Option<String>,
    /// The path as found (may contain symlinks).
    path: PathBuf,
    /// Directory `$ORIGIN` expands to.
    origin: PathBuf,
    is_64: bool,
    machine: u16,
    interp: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn header(path: &Path) -> Option<(bool, u16)> {
    let mut b = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut b).ok()?;
    if &b[..4] != b"\x7fELF" {
        return None;
    }
    let machine = if b[5] == 2 {
        u16::from_be_bytes([b[18], b[19]])
    } else {
        u16::from_le_bytes([b[18], b[19]])
    };
    Some((b[4] == 2, machine))
}

fn multiarch(machine: u16) -> Option<&'static str> {
    match machine {
        62 => Some("x86_64-linux-gnu"),
        183 => Some("aarch64-linux-gnu"),
        3 => Some("i386-linux-gnu"),
        40 => Some("arm-linux-gnueabihf"),
        243 => Some("riscv64-linux-gnu"),
        _ => None,
    }
}

fn platform(machine: u16) -> &'static str {
    match machine {
        62 => "x86_64",
        183 => "aarch64",
        3 => "i686",
        _ => "",
    }
}

struct Closure<'a> {
    root: &'a Path,
    cache: Option<Vec<(String, String)>>,
}

impl Closure<'_> {
    fn host(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Load an ELF object at the in-root path `path`; `None` if it is missing or not ELF.
    fn load(&self, path: &Path, exe_origin: bool) -> Result<Option<Obj>, TraceError> {
        let Some(real) = lookup_in_root(self.root, path, true) else {
            return Ok(None);
        };
        let h = self.host(&real);
        if header(&h).is_none() {
            return Ok(None);
        }
        let bytes = std::fs::read(&h).map_err(|e| TraceError::Io {
            path: h.clone(),
            op: "read the ELF file",
            source: e,
        })?;
        let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| TraceError::Elf {
            path: h.clone(),
            reason: e.to_string(),
        })?;
        let split = |v: &[&str]| -> Vec<String> {
            v.iter()
                .flat_map(|s| s.split(':'))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let origin_of = if exe_origin || elf.interpreter.is_some() {
            &real
        } else {
            path
        };
        Ok(Some(Obj {
            soname: elf.soname.map(str::to_string),
            path: path.to_path_buf(),
            origin: origin_of.parent().unwrap_or(Path::new("/")).to_path_buf(),
            is_64: elf.is_64,
            machine: elf.header.e_machine,
            interp: elf.interpreter.map(str::to_string),
            needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
            rpath: split(&elf.rpaths),
            runpath: split(&elf.runpaths),
        }))
    }

    fn expand(&self, dirs: &[String], obj: &Obj) -> Vec<PathBuf> {
        let lib = match multiarch(obj.machine) {
            Some(m) => format!("lib/{m}"),
            None => "lib".to_string(),
        };
        dirs.iter()
            .map(|d| {
                let o = obj.origin.to_string_lossy();
                let d = d
                    .replace("${ORIGIN}", &o)
                    .replace("$ORIGIN", &o)
                    .replace("${LIB}", &lib)
                    .replace("$LIB", &lib)
                    .replace("${PLATFORM}", platform(obj.machine))
                    .replace("$PLATFORM", platform(obj.machine));
                clean(&Path::new("/").join(d))
            })
            .collect()
    }

    /// The candidate if it exists in the root and is an ELF object of the requester's class
    /// and machine.
    fn compatible(&self, cand: &Path, obj: &Obj) -> bool {
        match lookup_in_root(self.root, cand, true) {
            Some(real) => header(&self.host(&real)) == Some((obj.is_64, obj.machine)),
            None => false,
        }
    }

    fn search(&self, name: &str, obj: &Obj, rpath_dirs: &[PathBuf]) -> Option<PathBuf> {
        if name.contains('/') {
            let p = clean(&Path::new("/").join(name));
            return self.compatible(&p, obj).then_some(p);
        }
        let runpath = self.expand(&obj.runpath, obj);
        for d in rpath_dirs.iter().chain(runpath.iter()) {
            let p = d.join(name);
            if self.compatible(&p, obj) {
                return Some(p);
            }
        }
        if let Some(cache) = &self.cache {
            for (k, v) in cache {
                if k == name {
                    let p = clean(Path::new(v));
                    if self.compatible(&p, obj) {
                        return Some(p);
                    }
                }
            }
        }
        let mut defaults: Vec<String> = Vec::new();
        if let Some(m) = multiarch(obj.machine) {
            defaults.push(format!("/lib/{m}"));
            defaults.push(format!("/usr/lib/{m}"));
        }
        defaults.extend(["/lib", "/usr/lib"].map(String::from));
        if obj.is_64 {
            defaults.extend(["/lib64", "/usr/lib64"].map(String::from));
        }
        for d in defaults {
            let p = Path::new(&d).join(name);
            if self.compatible(&p, obj) {
                return Some(p);
            }
        }
        None
    }
}

/// The ELF closure of `paths` (absolute paths inside `root`): every `PT_INTERP` interpreter and
/// every `DT_NEEDED` library, transitively, searched like glibc's loader: `DT_RPATH` of the
/// object and its loaders (unless the object has `DT_RUNPATH`), `DT_RUNPATH`, the root's
/// `/etc/ld.so.cache`, then the default directories. `$ORIGIN`, `$LIB` and `$PLATFORM` are
/// expanded; symlinks are followed inside the root; candidates of another ELF class or machine
/// are skipped. Each dependency appears with the first reason found, under the path the
/// loader would use. Missing libraries are left out (the probe re-run catches them). Files in
/// `paths` that are not ELF are ignored.
pub fn elf_closure(
    root: &Path,
    paths: &[PathBuf],
) -> Result<BTreeMap<PathBuf, Reason>, TraceError> {
    let cache_path = root.join("etc/ld.so.cache");
    let cache = match std::fs::read(&cache_path) {
        Ok(b) => Some(parse_ld_cache(&b).map_err(|reason| TraceError::LdCache {
            path: cache_path.clone(),
            reason,
        })?),
        Err(_) => None,
    };
    let c = Closure { root, cache };
    let mut out = BTreeMap::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    // Like glibc, a DT_NEEDED name already loaded (by file name or DT_SONAME) is not searched
    // again: libc's need of ld-linux-x86-64.so.2 is the interpreter already mapped.
    let mut names: HashSet<String> = HashSet::new();
    let register = |o: &Obj, names: &mut HashSet<String>| {
        if let Some(s) = &o.soname {
            names.insert(s.clone());
        }
        if let Some(f) = o.path.file_name() {
            names.insert(f.to_string_lossy().into_owned());
        }
    };
    let mut queue: VecDeque<(Obj, Vec<PathBuf>)> = VecDeque::new();
    for p in paths {
        let p = clean(p);
        if let Some(obj) = c.load(&p, true)? {
            if let Some(real) = lookup_in_root(root, &p, true) {
                seen.insert(real);
            }
            register(&obj, &mut names);
            queue.push_back((obj, Vec::new()));
        }
    }
    while let Some((obj, chain)) = queue.pop_front() {
        let mut child_chain = Vec::new();
        if obj.runpath.is_empty() {
            child_chain.extend(c.expand(&obj.rpath, &obj));
        }
        child_chain.extend(chain.iter().cloned());
        let rpath_dirs: &[PathBuf] = if obj.runpath.is_empty() {
            &child_chain
        } else {
            &[]
        };
        let mut wanted: Vec<(Option<PathBuf>, Reason)> = Vec::new();
        if let Some(interp) = &obj.interp {
            let ip = clean(&Path::new("/").join(interp));
            wanted.push((
                Some(ip),
                Reason::Interpreter {
                    of: obj.path.clone(),
                },
            ));
        }
        for n in &obj.needed {
            if names.contains(n) {
                continue;
            }
            let p = c.search(n, &obj, rpath_dirs);
            wanted.push((
                p,
                Reason::ElfDependency {
                    of: obj.path.clone(),
                },
            ));
        }
        for (p, reason) in wanted {
            let Some(p) = p else { continue };
            let Some(real) = lookup_in_root(root, &p, true) else {
                continue;
            };
            out.entry(p.clone()).or_insert(reason);
            if seen.insert(real) {
                if let Some(o) = c.load(&p, false)? {
                    register(&o, &mut names);
                    queue.push_back((o, child_chain.clone()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_entry_count_is_refused_not_allocated() {
        // A header claiming u32::MAX entries in a file that holds none.
        let mut bytes = NEW_MAGIC.to_vec();
        bytes.resize(48, 0);
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = parse_ld_cache(&bytes).unwrap_err();
        assert!(
            e.contains("truncated entry table") || e.contains("overflows"),
            "{e}"
        );
    }
}
