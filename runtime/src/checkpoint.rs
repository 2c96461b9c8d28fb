//! Checkpoint and restore of running containers with CRIU (`distill checkpoint` /
//! `distill restore`), and migration through one self-contained archive (`--export` /
//! `restore --import`).
//!
//! CRIU is driven through its command line (`criu dump` / `criu restore`), found on `PATH`
//! (or in `/usr/local/sbin`, `/usr/sbin`) or given with `--criu`, and must be at least
//! [`MIN_CRIU`]. What the container needs from it:
//!
//! * **Process tree**: the container's init is PID 1 of its pid namespace and leads its own
//!   session there (the sandbox's `new_session`), so `criu dump -t <init>` takes the whole
//!   tree with its namespaces (mount, pid, uts, ipc, cgroup, and net for `--network none`).
//! * **Mounts**: every bind mount of a host path ([`crate::container::host_binds`]: the /dev
//!   nodes, masked /proc files, volumes, and any bind the container's spec gains later) is
//!   declared external at dump (`--external mnt[TARGET]:COOKIE`, only those actually mounted
//!   in the container) and mapped to its host source at restore (`mnt[COOKIE]:SOURCE`).
//!   The writable directories (/tmp, /run, `--rw`) are such binds of directories under the
//!   state directory; tmpfs contents (`--tmpfs`, /dev/shm) are saved by CRIU itself. The root
//!   is the image directory, given as `--root`; CRIU runs in a private mount namespace where
//!   that directory is a read-only bind onto itself, so the restored root is read-only
//!   again. CRIU creates no mount points: restore creates the missing ones in the image
//!   directory first ([`distill_sandbox::Spec::create_mount_points`]).
//! * **stdio**: the init's stdout/stderr are pipes to the log daemon, its stdin the host's
//!   /dev/null. At dump the pipes are recorded by inode and /dev/null declared as an external
//!   file; at restore the monitor hands CRIU new pipes (whose read ends went to memlogd under
//!   the same names, so `distill logs` goes on) and /dev/null with `--inherit-fd`.
//! * **cgroups**: only the container's own controllers are dumped
//!   (`--cgroup-dump-controller`); at restore the monitor creates the container's cgroup with
//!   its limits and CRIU puts the tasks there (`--manage-cgroups soft`, `--cgroup-root
//!   CTRL:/distill/<name>-<tag>`), which also sets up the cgroup namespace so the container
//!   sees that cgroup as `/` again. Other controllers stay where the monitor is, like `run`.
//! * **Parent**: `restore` forks a monitor like `run` does; it becomes a child subreaper and
//!   runs `criu restore --restore-detached`, so the restored init is re-parented to it when
//!   CRIU exits, and then supervises it with the same code as after `run`.
//!
//! A checkpoint directory holds CRIU's images plus `distill.json` ([`CheckpointMeta`]). An
//! export archive is a plain tar written by distill-oci's layer writer: first
//! `.distill-export.json` (format version, the checkpoint metadata with the container's
//! configuration and image digest, size and sha256 of every file), then `checkpoint/...` and
//! the container's writable directory `rw/...` when it has one. Import checks the format and
//! that the image is loaded before writing anything, unpacks with distill-oci's safe
//! unpacker, requires the unpacked regular files to be exactly the listed ones with their
//! sums and the writable directories to be real directories, and removes everything again
//! on any failure. Importing an archive means trusting it: its configuration (volumes,
//! seccomp) is applied as written and CRIU restores the credentials in its images.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::{self, validate_name, State, Status};
use crate::{container, ContainerConfig, Launch, Result, Runtime, RuntimeError};

/// The oldest CRIU distill drives (Debian 12's 3.17 fails on current kernels).
pub const MIN_CRIU: (u32, u32) = (4, 0);
/// Version of the checkpoint metadata and of the export archive layout.
pub const FORMAT: u32 = 1;
/// The metadata file inside a checkpoint directory.
pub const META_FILE: &str = "distill.json";
/// The first entry of an export archive.
pub const EXPORT_MANIFEST: &str = ".distill-export.json";
/// The default checkpoint directory inside a container's state directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The container's writable directories inside its state directory (exported when present).
pub use crate::container::RW_DIR;
const DUMP_LOG: &str = "criu-dump.log";
const RESTORE_LOG: &str = "criu-restore.log";
const PIDFILE: &str = "criu-restore.pid";
/// The largest export manifest accepted.
const MAX_MANIFEST: u64 = 64 << 20;

/// A CRIU binary that is new enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criu {
    /// Its path.
    pub path: PathBuf,
    /// Its version (major, minor, patch).
    pub version: (u32, u32, u32),
}

fn criu_err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Criu(msg.into())
}

impl Criu {
    /// `explicit` (from `--criu`), or the first `criu` on `PATH`, in `/usr/local/sbin`,
    /// `/usr/sbin` or `/sbin` that is at least [`MIN_CRIU`]. The error says what is missing.
    pub fn find(explicit: Option<&Path>) -> Result<Criu> {
        let (min_a, min_b) = MIN_CRIU;
        if let Some(p) = explicit {
            if !p.is_file() {
                return Err(criu_err(format!(
                    "--criu {}: no such file; give the path of a criu {min_a}.{min_b} (or newer) binary",
                    p.display()
                )));
            }
            let v = version_of(p).map_err(|e| criu_err(format!("--criu {}: {e}", p.display())))?;
            if (v.0, v.1) < MIN_CRIU {
                return Err(too_old(p, v));
            }
            return Ok(Criu {
                path: p.to_path_buf(),
                version: v,
            });
        }
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            dirs.push(d.into());
        }
        let mut seen = HashSet::new();
        let mut old = None;
        for d in dirs {
            let c = d.join("criu");
            if !c.is_file() || !seen.insert(c.clone()) {
                continue;
            }
            match version_of(&c) {
                Ok(v) if (v.0, v.1) >= MIN_CRIU => {
                    return Ok(Criu {
                        path: c,
                        version: v,
                    })
                }
                Ok(v) => {
                    old.get_or_insert((c, v));
                }
                Err(_) => {}
            }
        }
        match old {
            Some((p, v)) => Err(too_old(&p, v)),
            None => Err(criu_err(format!(
                "criu not found on PATH or in /usr/local/sbin: checkpoint/restore needs criu {min_a}.{min_b} or newer; install it with scripts/install-criu (Debian 12's own criu 3.17 fails on current kernels) or pass --criu PATH"
            ))),
        }
    }

    /// `major.minor.patch`.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// True when the kernel tracks memory changes (soft-dirty bits), which `pre-dump` needs.
    pub fn can_track_memory(&self) -> bool {
        Command::new(&self.path)
            .args(["check", "--feature", "mem_dirty_track"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

fn too_old(p: &Path, (a, b, c): (u32, u32, u32)) -> RuntimeError {
    let (min_a, min_b) = MIN_CRIU;
    criu_err(format!(
        "criu {a}.{b}.{c} at {} is too old: checkpoint/restore needs criu {min_a}.{min_b} or newer (Debian 12's 3.17 fails on current kernels); install one with scripts/install-criu or pass --criu PATH",
        p.display()
    ))
}

/// The version `criu --version` prints (`Version: 4.1.1`).
fn version_of(p: &Path) -> std::result::Result<(u32, u32, u32), String> {
    let out = Command::new(p)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| {
        format!(
            "`--version` printed no \"Version: X.Y\" line ({:?})",
            text.trim()
        )
    })
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?
        .trim();
    let mut it = v.split('.').map(|n| {
        n.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    let a = it.next()?.ok()?;
    let b = it.next()?.ok()?;
    let c = it.next().and_then(|r| r.ok()).unwrap_or(0);
    Some((a, b, c))
}

/// A host bind mount of the container, as named in CRIU's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalMount {
    /// The key CRIU records (`mnt[TARGET]:COOKIE` at dump, `mnt[COOKIE]:SOURCE` at restore).
    pub cookie: String,
    /// The mount point inside the container.
    pub target: PathBuf,
}

/// What an outside descriptor of a checkpointed container was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdioRole {
    /// The host's /dev/null (its stdin).
    Null,
    /// The pipe its stdout went to.
    Stdout,
    /// The pipe its stderr went to.
    Stderr,
}

/// An outside descriptor and the resource CRIU names it by (`pipe:[INODE]`,
/// `file[MNT:INODE]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inherited {
    /// What it was.
    pub role: StdioRole,
    /// CRIU's name of it.
    pub key: String,
}

/// What distill records next to CRIU's images (`distill.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT`].
    pub format: u32,
    /// The container's name when it was checkpointed.
    pub name: String,
    /// Its configuration (limits as updated).
    pub config: ContainerConfig,
    /// `sha256:...` of the image whose directory is its root.
    pub image_digest: Option<String>,
    /// The CRIU that dumped it.
    pub criu_version: String,
    /// When, ms since the epoch.
    pub created_ms: u64,
    /// The descriptors that lead outside the container (log pipes, the host's /dev/null),
    /// handed back with `--inherit-fd` at restore.
    pub inherit: Vec<Inherited>,
    /// The host bind mounts declared external.
    pub mounts: Vec<ExternalMount>,
    /// True when dumped on a cgroup v1 (or hybrid) host.
    pub cgroup_v1: bool,
    /// The v1 controllers dumped (the container's own cgroup directories).
    pub cgroup_controllers: Vec<String>,
    /// Dumped with `--tcp-established`.
    pub tcp_established: bool,
    /// Dumped with `--file-locks`.
    pub file_locks: bool,
    /// Dumped after a pre-dump (the images refer to `pre/` through CRIU's `parent` link).
    pub pre_dump: bool,
}

/// The first entry of an export archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExportManifest {
    format: u32,
    checkpoint: CheckpointMeta,
    /// Every regular file of the archive (path inside it) with its size and sha256.
    files: BTreeMap<String, FileSum>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileSum {
    size: u64,
    sha256: String,
}

/// Options of [`Runtime::checkpoint`].
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Keep the container running after the dump.
    pub leave_running: bool,
    /// Dump established TCP connections (CRIU `--tcp-established`).
    pub tcp_established: bool,
    /// Dump file locks (CRIU `--file-locks`).
    pub file_locks: bool,
    /// Pre-dump memory first, then dump only what changed (needs soft-dirty tracking).
    pub pre_dump: bool,
    /// Where to write the images (default `<state>/<name>/checkpoint`).
    pub image_path: Option<PathBuf>,
    /// Also write one self-contained archive here (images go to the default directory).
    pub export: Option<PathBuf>,
    /// The CRIU binary (default: found on PATH, see [`Criu::find`]).
    pub criu: Option<PathBuf>,
}

/// What a checkpoint produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The images directory.
    pub images: PathBuf,
    /// Bytes in it.
    pub images_bytes: u64,
    /// How long `criu dump` took.
    pub dump_time: Duration,
    /// The export archive and its size, with `export`.
    pub export: Option<(PathBuf, u64)>,
}

/// Options of [`Runtime::restore`] and [`Runtime::import`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The images directory (default: the container's last checkpoint).
    pub image_path: Option<PathBuf>,
    /// The CRIU binary (default: found on PATH).
    pub criu: Option<PathBuf>,
    /// For an import: the cgroup parent of the restored container (default
    /// [`crate::cgroup::DEFAULT_PARENT`]). The archive's own is never used: where a
    /// container lands in this host's cgroup tree is the importer's choice.
    pub cgroup_parent: Option<String>,
    /// For an import: the host directory of each volume the archive's container had, by its
    /// target. An archive's own volume sources are never used: they name host paths of the
    /// machine it came from, or whatever its author wrote there (`/etc`).
    pub volumes: Vec<crate::Volume>,
}

/// Everything the restoring monitor needs, prepared (and checked) before it forks.
#[derive(Debug)]
pub(crate) struct RestorePlan {
    /// The state to put back if the restore fails.
    pub(crate) prev: State,
    criu: PathBuf,
    rootfs: CString,
    /// Arguments after `criu restore`, except `--inherit-fd`.
    args: Vec<OsString>,
    /// The descriptors to hand to CRIU (from the container's new stdio).
    inherit: Vec<Inherited>,
    log: PathBuf,
    pidfile: PathBuf,
}

fn read_meta(images: &Path) -> std::result::Result<CheckpointMeta, String> {
    let p = images.join(META_FILE);
    let data = fs::read(&p).map_err(|e| {
        format!(
            "{}: {e}; {} is not a distill checkpoint directory",
            p.display(),
            images.display()
        )
    })?;
    let meta: CheckpointMeta = serde_json::from_slice(&data)
        .map_err(|e| format!("{}: corrupt checkpoint metadata: {e}", p.display()))?;
    if meta.format != FORMAT {
        return Err(format!(
            "{}: checkpoint format {} (this distill reads format {FORMAT})",
            p.display(),
            meta.format
        ));
    }
    if !images.join("inventory.img").is_file() {
        return Err(format!(
            "{}: no CRIU images (inventory.img is missing)",
            images.display()
        ));
    }
    Ok(meta)
}

/// Inodes of the pipes and regular files among `fds` (0 for anything else): where a
/// container's stdout and stderr go (log daemon pipes, or log files without one).
pub(crate) fn stdio_inodes(fds: &[OwnedFd]) -> Vec<u64> {
    fds.iter()
        .map(|fd| {
            // SAFETY: fstat into a zeroed stat of a descriptor we own.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            let ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
            let kind = st.st_mode & libc::S_IFMT;
            if ok && (kind == libc::S_IFIFO || kind == libc::S_IFREG) {
                st.st_ino
            } else {
                0
            }
        })
        .collect()
}

/// The descriptors of the container's processes that lead outside it and that `restore`
/// must hand back: its stdout and stderr (pipes to the log daemon or log files, recorded by
/// the monitor as [`State::stdio_inodes`], wherever they are now) and the host's /dev/null
/// (opened outside its mount namespace).
/// Returns them with the external files to declare at dump. Another host file is refused.
fn outside_fds(s: &State, procs: &[i32], init: i32) -> Result<(Vec<Inherited>, Vec<String>)> {
    let failed = |reason: String| RuntimeError::CheckpointFailed {
        name: s.name.clone(),
        reason,
    };
    let own: HashSet<u64> = fs::read_to_string(format!("/proc/{init}/mountinfo"))
        .map_err(|e| failed(format!("read its mounts: {e}")))?
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let mut inherit: Vec<Inherited> = Vec::new();
    let mut external = Vec::new();
    for pid in procs {
        let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(link) = fs::read_link(e.path()) else {
                continue;
            };
            let text = link.to_string_lossy().into_owned();
            let fd = e.file_name().to_string_lossy().into_owned();
            let role_key = if let Some(ino) = text
                .strip_prefix("pipe:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok())
            {
                // CRIU matches an inherited pipe by the name /proc shows for it.
                match s.stdio_inodes.iter().position(|p| *p == ino) {
                    Some(0) => (StdioRole::Stdout, text),
                    Some(_) => (StdioRole::Stderr, text),
                    None => continue,
                }
            } else if text.starts_with('/') {
                let info =
                    fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
                let Some(mnt) = info
                    .lines()
                    .find_map(|l| l.strip_prefix("mnt_id:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                else {
                    continue;
                };
                if own.contains(&mnt) {
                    continue;
                }
                let meta = fs::metadata(e.path())
                    .map_err(|e| failed(format!("stat fd {fd} of process {pid}: {e}")))?;
                let null = meta.file_type().is_char_device()
                    && libc::major(meta.rdev()) == 1
                    && libc::minor(meta.rdev()) == 3;
                let log = meta
                    .is_file()
                    .then(|| s.stdio_inodes.iter().position(|i| *i == meta.ino()))
                    .flatten();
                let role = match (null, log) {
                    (true, _) => StdioRole::Null,
                    (false, Some(0)) => StdioRole::Stdout,
                    (false, Some(_)) => StdioRole::Stderr,
                    (false, None) => {
                        return Err(failed(format!(
                            "process {pid} holds {text} of the host open (fd {fd}); only its log pipes or files and /dev/null may lead outside the container"
                        )))
                    }
                };
                let key = format!("file[{mnt:x}:{:x}]", meta.ino());
                if !external.contains(&key) {
                    external.push(key.clone());
                }
                (role, key)
            } else {
                continue;
            };
            let (role, key) = role_key;
            if !inherit.iter().any(|i| i.key == key) {
                inherit.push(Inherited { role, key });
            }
        }
    }
    Ok((inherit, external))
}

/// Mount points of process `pid`'s mount namespace, as it sees them.
fn mount_points(pid: i32) -> io::Result<HashSet<PathBuf>> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(crate::cgroup::unescape(m)))
        .collect())
}

/// Where CRIU's own stderr goes (usage errors come before it opens its log).
fn stderr_file(log: &Path) -> Stdio {
    let mut p = log.as_os_str().to_owned();
    p.push(".stderr");
    File::create(PathBuf::from(p)).map_or(Stdio::null(), Stdio::from)
}

/// The last `Error` lines of a CRIU log (and of its stderr), and where the log is.
fn log_errors(log: &Path) -> String {
    let mut p = log.as_os_str().to_owned();
    p.push(".stderr");
    let mut text = fs::read_to_string(PathBuf::from(p)).unwrap_or_default();
    text.push_str(&fs::read_to_string(log).unwrap_or_default());
    let errs: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .collect();
    let tail = errs[errs.len().saturating_sub(3)..]
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" | ");
    if tail.is_empty() {
        format!("see {}", log.display())
    } else {
        format!("{tail} (full log: {})", log.display())
    }
}

/// Refuses an existing `images` directory that is not a distill checkpoint (holding
/// [`META_FILE`]) or empty: a checkpoint replaces it.
fn check_image_dir(images: &Path) -> std::result::Result<(), String> {
    match fs::symlink_metadata(images) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", images.display())),
        Ok(m) if !m.is_dir() => Err(format!(
            "{} exists and is not a directory; give a new or empty directory",
            images.display()
        )),
        Ok(_) => {
            let empty = fs::read_dir(images)
                .map_err(|e| format!("{}: {e}", images.display()))?
                .next()
                .is_none();
            if empty || images.join(META_FILE).is_file() {
                Ok(())
            } else {
                Err(format!(
                    "{} is neither empty nor a distill checkpoint (no {META_FILE}); a checkpoint replaces its directory, so give a new or empty one",
                    images.display()
                ))
            }
        }
    }
}

/// Puts the directory `new` at `dst`: an old `dst` is moved aside, `new` renamed in, then
/// the old one removed; if the rename fails, the old one is put back and `new` stays.
fn replace_dir(new: &Path, dst: &Path) -> std::result::Result<(), String> {
    let aside = |e: io::Error| {
        format!(
            "the images are in {} but the old {} could not be moved aside: {e}",
            new.display(),
            dst.display()
        )
    };
    // The old directory goes aside onto a new empty directory with a random name (a
    // directory may be renamed over an empty one), never onto a name that could be planted.
    let old = match fs::symlink_metadata(dst) {
        Ok(_) => {
            let old = distill_oci::temp_dir_beside(dst, "old").map_err(aside)?;
            fs::rename(dst, old.path()).map_err(aside)?;
            Some(old)
        }
        Err(_) => None,
    };
    if let Err(e) = fs::rename(new, dst) {
        if let Some(old) = old {
            // Kept whether or not it goes back: the old images are never lost here.
            let _ = fs::rename(old.keep(), dst);
        }
        return Err(format!(
            "the images are in {} but could not be renamed to {}: {e}",
            new.display(),
            dst.display()
        ));
    }
    // Dropping `old` removes the old images.
    drop(old);
    Ok(())
}

/// Every path under `dir/rel` (relative to `dir`), not following symlinks, with the sums
/// of its regular files. Sockets and fifos are left out: they are plumbing of the processes
/// that made them (CRIU re-creates what the processes hold), not data, and no layer holds
/// them.
fn walk(
    dir: &Path,
    rel: &Path,
    paths: &mut BTreeSet<PathBuf>,
    files: &mut BTreeMap<String, FileSum>,
) -> io::Result<()> {
    let full = dir.join(rel);
    let meta = fs::symlink_metadata(&full)?;
    if meta.file_type().is_socket() || meta.file_type().is_fifo() {
        return Ok(());
    }
    paths.insert(rel.to_path_buf());
    if meta.is_file() {
        let (d, size) =
            distill_oci::Digest::of_file(&full).map_err(|e| io::Error::other(e.to_string()))?;
        files.insert(
            rel.to_string_lossy().into_owned(),
            FileSum {
                size,
                sha256: d.to_string(),
            },
        );
    } else if meta.is_dir() {
        for e in fs::read_dir(&full)? {
            walk(dir, &rel.join(e?.file_name()), paths, files)?;
        }
    }
    Ok(())
}

/// Checks an unpacked export in `tmp` against its manifest's `files`: the regular files
/// found there (walked without following symlinks, so nothing outside `tmp` is read) must
/// be exactly the listed ones, each with its size and sha256; the writable directories
/// (`rw` and each directory in it) must be real directories, not symlinks, since `restore`
/// bind-mounts them read-write.
fn check_unpacked(tmp: &Path, want: &BTreeMap<String, FileSum>) -> std::result::Result<(), String> {
    let rw = tmp.join(RW_DIR);
    if let Ok(m) = fs::symlink_metadata(&rw) {
        if !m.is_dir() {
            return Err(format!(
                "{RW_DIR} is not a directory; the archive is corrupt or hostile"
            ));
        }
        for e in fs::read_dir(&rw).map_err(|e| format!("read {}: {e}", rw.display()))? {
            let e = e.map_err(|e| format!("read {}: {e}", rw.display()))?;
            if !fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "{RW_DIR}/{} is not a directory (a writable directory must be one, never a symlink); the archive is corrupt or hostile",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    let mut paths = BTreeSet::new();
    let mut found = BTreeMap::new();
    for top in [CHECKPOINT_DIR, RW_DIR] {
        if fs::symlink_metadata(tmp.join(top)).is_ok() {
            walk(tmp, Path::new(top), &mut paths, &mut found)
                .map_err(|e| format!("read {}: {e}", tmp.join(top).display()))?;
        }
    }
    if let Some(p) = want.keys().find(|p| !found.contains_key(*p)) {
        return Err(format!(
            "{p:?} is listed in {EXPORT_MANIFEST} but is not a regular file of the archive; the archive is truncated, corrupt or hostile"
        ));
    }
    if let Some(p) = found.keys().find(|p| !want.contains_key(*p)) {
        return Err(format!(
            "{p} is not listed in {EXPORT_MANIFEST}; the archive is corrupt"
        ));
    }
    for (p, sum) in &found {
        if want.get(p) != Some(sum) {
            return Err(format!(
                "{p} does not match its recorded size and sha256; the archive is corrupt"
            ));
        }
    }
    Ok(())
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Runtime {
    /// Dumps the running container's process tree with CRIU into its checkpoint directory
    /// (`<state>/<name>/checkpoint`, or `image_path`). Without `leave_running` the container
    /// is stopped and recorded `checkpointed`. On failure nothing is written and the
    /// container is as it was (CRIU resumes the tasks when a dump fails).
    pub fn checkpoint(&self, name: &str, opts: &CheckpointOptions) -> Result<CheckpointReport> {
        let criu = Criu::find(opts.criu.as_deref())?;
        if opts.image_path.is_some() && opts.export.is_some() {
            return Err(RuntimeError::Config(
                "--image-path and --export exclude each other: an export is built from the default checkpoint directory".into(),
            ));
        }
        if opts.leave_running && opts.export.is_some() {
            return Err(RuntimeError::Config(
                "--leave-running and --export exclude each other: a container that goes on running changes its writable directories, so the exported copy would not match its images".into(),
            ));
        }
        if opts.pre_dump && !criu.can_track_memory() {
            return Err(criu_err(
                "--pre-dump needs memory change tracking (soft-dirty bits), which this kernel lacks (`criu check --feature mem_dirty_track` fails): checkpoint without --pre-dump",
            ));
        }
        let failed = |reason: String| RuntimeError::CheckpointFailed {
            name: name.into(),
            reason,
        };
        let lock = self.state.lock(name)?;
        let s = self.state.inspect(name)?;
        if s.status != Status::Running {
            return Err(RuntimeError::NotRunning(name.into()));
        }
        let pid = s.pid.ok_or_else(|| RuntimeError::NotRunning(name.into()))?;
        let _pidfd = crate::running_pidfd(&s)?;
        let images = match &opts.image_path {
            Some(p) => std::path::absolute(p)
                .map_err(|e| RuntimeError::Config(format!("--image-path {}: {e}", p.display())))?,
            None => self.state.dir(name).join(CHECKPOINT_DIR),
        };
        check_image_dir(&images).map_err(|e| RuntimeError::Config(format!("--image-path {e}")))?;
        let digest = distill_oci::Images::holding(&s.config.rootfs).map(|(_, rec)| rec.digest);
        if opts.export.is_some() && digest.is_none() {
            return Err(failed(format!(
                "its root {} is not a loaded image's directory, so an export could not name the image",
                s.config.rootfs.display()
            )));
        }
        let container_dir = std::path::absolute(self.state.dir(name))
            .map_err(|e| failed(format!("resolve its state directory: {e}")))?;
        if opts.export.is_some() {
            // A name reserved for whiteouts would vanish from the archive (the export's
            // layer writer refuses it, but only after the dump has stopped the container):
            // refused now, named by its container path as `commit` names it. Other problems
            // are the export's to report.
            let dirs = container::writable_dirs(&container_dir, &s.config)
                .into_iter()
                .filter(|(host, _)| host.is_dir())
                .map(|(host, inside)| (inside, host))
                .collect();
            let check = distill_oci::LayerSource::Mapped {
                parents_from: s.config.rootfs.clone(),
                dirs,
            }
            .check();
            if let Err(e @ distill_oci::Error::WhiteoutName(_)) = check {
                return Err(crate::commit::reserved_name(name, e));
            }
        }
        let procs = self
            .cgroup(&s.config)
            .existing()
            .procs()
            .map_err(|e| failed(format!("list its processes: {e}")))?;
        let (inherit, external_files) = outside_fds(&s, &procs, pid)?;
        let mounted = mount_points(pid).map_err(|e| failed(format!("read its mounts: {e}")))?;
        let mut mounts = Vec::new();
        for (i, b) in container::host_binds(&s.config, &container_dir)?
            .into_iter()
            .enumerate()
        {
            if !mounted.contains(&b.target) {
                continue;
            }
            let t = b.target.to_string_lossy();
            if t.contains(']') || t.contains(':') {
                return Err(failed(format!(
                    "mount point {t:?} contains ']' or ':', which CRIU cannot name"
                )));
            }
            mounts.push(ExternalMount {
                cookie: format!("m{i}"),
                target: b.target,
            });
        }
        let controllers = if self.cgroups.is_v1() {
            self.cgroup(&s.config).existing().controllers()
        } else {
            Vec::new()
        };
        let meta = CheckpointMeta {
            format: FORMAT,
            name: name.into(),
            config: s.config.clone(),
            image_digest: digest,
            criu_version: criu.version_string(),
            created_ms: state::now_ms(),
            inherit,
            mounts,
            cgroup_v1: self.cgroups.is_v1(),
            cgroup_controllers: controllers,
            tcp_established: opts.tcp_established,
            file_locks: opts.file_locks,
            pre_dump: opts.pre_dump,
        };
        // Built next to its final place and renamed: a failure leaves no half checkpoint.
        if let Some(parent) = images.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| failed(format!("create {}: {e}", parent.display())))?;
        }
        let tmp_dir = distill_oci::temp_dir_beside(&images, "tmp").map_err(|e| {
            failed(format!(
                "create a directory beside {}: {e}",
                images.display()
            ))
        })?;
        // Removed by the clean-up on failure, renamed to `images` on success.
        let tmp = tmp_dir.keep();
        let cleanup = |e: RuntimeError| {
            let _ = fs::remove_dir_all(&tmp);
            e
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| cleanup(failed(e.to_string())))?;
        fs::write(tmp.join(META_FILE), json).map_err(|e| {
            cleanup(failed(format!(
                "write {}: {e}",
                tmp.join(META_FILE).display()
            )))
        })?;
        let log = self.state.dir(name).join(DUMP_LOG);
        let mut common: Vec<OsString> = vec!["-t".into(), pid.to_string().into()];
        common.extend(["-o".into(), log.clone().into_os_string(), "-v2".into()]);
        for m in &meta.mounts {
            common.push("--external".into());
            common.push(format!("mnt[{}]:{}", m.target.display(), m.cookie).into());
        }
        for f in &external_files {
            common.extend(["--external".into(), f.into()]);
        }
        for c in &meta.cgroup_controllers {
            common.extend(["--cgroup-dump-controller".into(), c.into()]);
        }
        if opts.tcp_established {
            common.push("--tcp-established".into());
        }
        if opts.file_locks {
            common.push("--file-locks".into());
        }
        let run = |verb: &str, dir: &Path, extra: &[&str]| -> Result<()> {
            let out = Command::new(&criu.path)
                .arg(verb)
                .arg("-D")
                .arg(dir)
                .args(&common)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr_file(&log))
                .status()
                .map_err(|e| failed(format!("run {}: {e}", criu.path.display())))?;
            if !out.success() {
                return Err(failed(format!("criu {verb}: {}", log_errors(&log))));
            }
            Ok(())
        };
        let t0 = Instant::now();
        let mut extra = Vec::new();
        if opts.pre_dump {
            let pre = tmp.join("pre");
            fs::create_dir(&pre).map_err(|e| cleanup(failed(e.to_string())))?;
            run("pre-dump", &pre, &["--track-mem"]).map_err(cleanup)?;
            extra.extend(["--track-mem", "--prev-images-dir", "pre"]);
        }
        if opts.leave_running {
            extra.push("--leave-running");
        }
        run("dump", &tmp, &extra).map_err(cleanup)?;
        let dump_time = t0.elapsed();
        // From here on the tasks are gone (unless --leave-running): record the checkpoint
        // whatever else fails.
        let placed = replace_dir(&tmp, &images);
        let mut next = self.state.read_raw(name)?;
        if placed.is_ok() {
            next.checkpoint = Some(images.clone());
        }
        if !opts.leave_running {
            // The monitor stays recorded until it has seen the init go (it clears itself
            // then): a monitor acts on the state only while it is the one named there.
            next.status = Status::Checkpointed;
            next.pid = None;
            next.pid_start = None;
            next.finished_ms = Some(state::now_ms());
        }
        self.state.write(&next, &lock)?;
        if let Err(e) = placed {
            return Err(failed(e));
        }
        let export = opts
            .export
            .as_ref()
            .map(|out| self.export_locked(&next, out).map(|n| (out.clone(), n)));
        drop(lock);
        if !opts.leave_running {
            // Let the old monitor remove the cgroup and step aside before a restore can
            // begin (like `stop`).
            self.wait_monitor(&s, Duration::from_secs(10));
        }
        let export = export.transpose().map_err(|e| RuntimeError::ExportFailed {
            name: name.into(),
            reason: e.to_string(),
        })?;
        // The monitor says `checkpointed` when it sees the init go; a --leave-running dump
        // is said here.
        if let (Some(l), true) = (&self.logd, opts.leave_running) {
            l.event(name, "checkpointed (left running)");
        }
        Ok(CheckpointReport {
            images_bytes: dir_bytes(&images),
            images,
            dump_time,
            export,
        })
    }

    /// Writes the export archive of `s`'s checkpoint to `out` (atomically).
    fn export_locked(&self, s: &State, out: &Path) -> Result<u64> {
        let fail = |reason: String| RuntimeError::Archive {
            path: out.to_path_buf(),
            reason,
        };
        let dir = self.state.dir(&s.name);
        let images = dir.join(CHECKPOINT_DIR);
        let meta = read_meta(&images).map_err(&fail)?;
        let mut paths = BTreeSet::new();
        let mut files = BTreeMap::new();
        for rel in [CHECKPOINT_DIR, RW_DIR] {
            if rel == RW_DIR && !dir.join(rel).exists() {
                continue;
            }
            walk(&dir, Path::new(rel), &mut paths, &mut files)
                .map_err(|e| fail(format!("read {}: {e}", dir.join(rel).display())))?;
        }
        let manifest = ExportManifest {
            format: FORMAT,
            checkpoint: meta,
            files,
        };
        let mpath = dir.join(EXPORT_MANIFEST);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| fail(e.to_string()))?;
        fs::write(&mpath, json).map_err(|e| fail(format!("write {}: {e}", mpath.display())))?;
        paths.insert(PathBuf::from(EXPORT_MANIFEST));
        // Written through the descriptor of a new file with a random name beside `out`
        // (removed on failure when dropped), then renamed.
        let placed = distill_oci::temp_file_beside(out, "tmp", 0o644)
            .map_err(|e| fail(format!("create a file beside it: {e}")))
            .and_then(|tmp| {
                let f = tmp.as_file().try_clone().map_err(|e| fail(e.to_string()))?;
                distill_oci::write_layer_to(
                    &distill_oci::LayerSource::Paths {
                        root: dir.clone(),
                        paths,
                    },
                    &distill_oci::LayerOptions {
                        epoch: 0,
                        owner: distill_oci::Ownership::FromDisk,
                        compression: distill_oci::Compression::None,
                        created_by: String::new(),
                    },
                    f,
                    tmp.path(),
                )
                .map_err(|e| fail(e.to_string()))?;
                let len = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
                distill_oci::persist(tmp, out)
                    .map_err(|e| fail(format!("rename into place: {e}")))?;
                Ok(len)
            });
        let _ = fs::remove_file(&mpath);
        placed
    }

    /// Brings a checkpointed container back from its checkpoint (or `image_path`): a new
    /// monitor runs `criu restore` and then supervises the restored init like after `run`.
    /// Its output goes on in the same log. On failure the container stays as it was.
    pub fn restore(&self, name: &str, opts: &RestoreOptions) -> Result<State> {
        let criu = Criu::find(opts.criu.as_deref())?;
        let failed = |reason: String| RuntimeError::RestoreFailed {
            name: name.into(),
            reason,
        };
        let lock = self.state.lock(name)?;
        let s = self.state.inspect(name)?;
        match s.status {
            Status::Running => return Err(RuntimeError::Running(name.into())),
            Status::Created => {
                return Err(failed("it is being started or restored right now".into()))
            }
            Status::Exited | Status::Checkpointed => {}
        }
        let images = match (&opts.image_path, &s.checkpoint) {
            (Some(p), _) => std::path::absolute(p)
                .map_err(|e| RuntimeError::Config(format!("--image-path {}: {e}", p.display())))?,
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(failed(format!(
                    "it has no checkpoint: take one with `distill checkpoint {name}` or give --image-path DIR"
                )))
            }
        };
        let meta = read_meta(&images).map_err(&failed)?;
        let plan = self.restore_plan(&s, &images, &meta, &criu)?;
        let mut next = s.clone();
        next.status = Status::Created;
        next.pid = None;
        next.pid_start = None;
        next.exit_code = None;
        next.signal = None;
        next.exit_unknown = false;
        next.oom_killed = false;
        next.error = None;
        next.finished_ms = None;
        next.checkpoint = Some(images);
        let next = next.claimed_by_this_process();
        self.state.write(&next, &lock)?;
        drop(lock);
        let launch = Launch::Restore(Box::new(plan));
        let sink = match self.log_sink(name, None) {
            Ok(x) => x,
            Err(e) => {
                self.abort_launch(&s.config, &launch);
                return Err(e);
            }
        };
        let events = match (&self.logd, sink.logd) {
            (Some(l), true) => Some(l),
            _ => None,
        };
        match self.launch(&s.config, launch, sink.stdout, sink.stderr, events, true) {
            Ok(_) => Ok(self.state.inspect(name)?),
            Err(RuntimeError::StartFailed { reason, .. }) => Err(failed(reason)),
            Err(e) => Err(e),
        }
    }

    fn restore_plan(
        &self,
        s: &State,
        images: &Path,
        meta: &CheckpointMeta,
        criu: &Criu,
    ) -> Result<RestorePlan> {
        let name = &s.name;
        let failed = |reason: String| RuntimeError::RestoreFailed {
            name: name.clone(),
            reason,
        };
        if meta.cgroup_v1 != self.cgroups.is_v1() {
            return Err(failed(format!(
                "the checkpoint was taken on a cgroup {} host and this one uses cgroup {}",
                if meta.cgroup_v1 { "v1" } else { "v2" },
                if self.cgroups.is_v1() { "v1" } else { "v2" }
            )));
        }
        let container_dir = std::path::absolute(self.state.dir(name))
            .map_err(|e| failed(format!("resolve its state directory: {e}")))?;
        let binds = container::host_binds(&s.config, &container_dir)?;
        container::create_mount_points(&s.config, &container_dir)?;
        let rootfs = fs::canonicalize(&s.config.rootfs).map_err(|e| {
            failed(format!(
                "image directory {}: {e}; load the image again",
                s.config.rootfs.display()
            ))
        })?;
        let state_dir = self.state.dir(name);
        let log = state_dir.join(RESTORE_LOG);
        let pidfile = state_dir.join(PIDFILE);
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            images.as_os_str().to_owned(),
            "--root".into(),
            rootfs.as_os_str().to_owned(),
            "--restore-detached".into(),
            "--pidfile".into(),
            pidfile.as_os_str().to_owned(),
            "-o".into(),
            log.as_os_str().to_owned(),
            "-v2".into(),
            "--manage-cgroups=soft".into(),
        ];
        for m in &meta.mounts {
            let b = binds.iter().find(|b| b.target == m.target).ok_or_else(|| {
                failed(format!(
                    "the checkpoint has a host bind mount at {} that the container's configuration does not have",
                    m.target.display()
                ))
            })?;
            args.push("--external".into());
            let mut a = OsString::from(format!("mnt[{}]:", m.cookie));
            a.push(&b.source);
            args.push(a);
        }
        let cg = format!("/{}/{}", s.config.cgroup_parent, self.cgroup_name(name));
        if self.cgroups.is_v1() {
            for c in &meta.cgroup_controllers {
                args.extend(["--cgroup-root".into(), format!("{c}:{cg}").into()]);
            }
        } else {
            args.extend(["--cgroup-root".into(), cg.into()]);
        }
        if meta.tcp_established {
            args.push("--tcp-established".into());
        }
        if meta.file_locks {
            args.push("--file-locks".into());
        }
        Ok(RestorePlan {
            prev: s.clone(),
            criu: criu.path.clone(),
            rootfs: CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| {
                failed(format!("image directory {} contains NUL", rootfs.display()))
            })?,
            args,
            inherit: meta.inherit.clone(),
            log,
            pidfile,
        })
    }

    /// Imports an export archive as container `new_name` (default: its old name) and
    /// restores it. `image_root` maps the image digest recorded in the archive to the
    /// unpacked root of that image on this machine (or says why it cannot). A corrupt,
    /// truncated or foreign archive, or a missing image, leaves nothing behind.
    pub fn import(
        &self,
        archive: &Path,
        new_name: Option<&str>,
        image_root: &dyn Fn(&str) -> std::result::Result<PathBuf, String>,
        opts: &RestoreOptions,
    ) -> Result<State> {
        Criu::find(opts.criu.as_deref())?;
        let bad = |reason: String| RuntimeError::Archive {
            path: archive.to_path_buf(),
            reason,
        };
        let f = File::open(archive).map_err(|e| bad(format!("open: {e}")))?;
        let mut ar = tar::Archive::new(BufReader::new(f));
        let mut entries = ar.entries().map_err(|e| bad(format!("not a tar: {e}")))?;
        let mut first = match entries.next() {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(bad(format!("not a tar: {e}"))),
            None => return Err(bad("is empty".into())),
        };
        let first_name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
        if first_name != EXPORT_MANIFEST {
            return Err(bad(format!(
                "is not a distill checkpoint export (its first entry is {first_name:?}, not {EXPORT_MANIFEST})"
            )));
        }
        if first.size() > MAX_MANIFEST {
            return Err(bad(format!(
                "{EXPORT_MANIFEST} is larger than {MAX_MANIFEST} bytes"
            )));
        }
        let mut json = Vec::new();
        (&mut first)
            .take(MAX_MANIFEST)
            .read_to_end(&mut json)
            .map_err(|e| {
                bad(format!(
                    "read {EXPORT_MANIFEST}: {e}; the archive is truncated or corrupt"
                ))
            })?;
        let value: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| bad(format!("{EXPORT_MANIFEST} is corrupt: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_u64());
        if format != Some(u64::from(FORMAT)) {
            return Err(bad(format!(
                "checkpoint archive format {} (this distill reads format {FORMAT})",
                format.map_or("missing".to_string(), |f| f.to_string())
            )));
        }
        let manifest: ExportManifest = serde_json::from_value(value)
            .map_err(|e| bad(format!("{EXPORT_MANIFEST} is corrupt: {e}")))?;
        let meta = &manifest.checkpoint;
        let digest = meta
            .image_digest
            .clone()
            .ok_or_else(|| bad("names no image digest".into()))?;
        let rootfs = image_root(&digest).map_err(|e| {
            bad(format!(
                "its image {digest} ({}) is not loaded here ({e}): `distill load` that image's archive first",
                meta.config.image
            ))
        })?;
        let name = new_name.unwrap_or(&meta.name).to_string();
        validate_name(&name)?;
        let mut cfg = meta.config.clone();
        cfg.name = name.clone();
        cfg.rootfs = rootfs;
        cfg.cgroup_parent = opts
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| crate::cgroup::DEFAULT_PARENT.to_string());
        crate::cgroup::validate_parent(&cfg.cgroup_parent)?;
        cfg.volumes = map_volumes(&cfg.volumes, &opts.volumes).map_err(&bad)?;
        let lock = self
            .state
            .create(&State::new(cfg).claimed_by_this_process())?;
        let dir = self.state.dir(&name);
        let unpacked = (|| -> Result<()> {
            let tmp = dir.join(".import");
            fs::create_dir(&tmp).map_err(|e| bad(format!("create {}: {e}", tmp.display())))?;
            let mut un = distill_oci::TreeUnpacker::new(&tmp, archive);
            for e in entries {
                let mut e =
                    e.map_err(|e| bad(format!("{e}; the archive is truncated or corrupt")))?;
                let p = e.path_bytes().into_owned();
                let top = p.split(|b| *b == b'/').next().unwrap_or_default();
                if top != CHECKPOINT_DIR.as_bytes() && top != RW_DIR.as_bytes() {
                    return Err(bad(format!(
                        "unexpected entry {:?} (only {CHECKPOINT_DIR}/ and {RW_DIR}/ belong in it)",
                        String::from_utf8_lossy(&p)
                    )));
                }
                // CRIU's images are regular files in directories; CRIU writes some of them at
                // restore (stats-restore), so a symlink there would be written through.
                let kind = e.header().entry_type();
                if top == CHECKPOINT_DIR.as_bytes()
                    && !matches!(kind, tar::EntryType::Regular | tar::EntryType::Directory)
                {
                    return Err(bad(format!(
                        "entry {:?} is a {kind:?}; a checkpoint holds only regular files and directories",
                        String::from_utf8_lossy(&p)
                    )));
                }
                un.entry(&mut e)
                    .map_err(|e| bad(format!("{e}; the archive is truncated or corrupt")))?;
            }
            un.finish().map_err(|e| bad(e.to_string()))?;
            check_unpacked(&tmp, &manifest.files).map_err(&bad)?;
            let images = tmp.join(CHECKPOINT_DIR);
            read_meta(&images).map_err(&bad)?;
            fs::rename(&images, dir.join(CHECKPOINT_DIR))
                .map_err(|e| bad(format!("move images into place: {e}")))?;
            if tmp.join(RW_DIR).exists() {
                fs::rename(tmp.join(RW_DIR), dir.join(RW_DIR))
                    .map_err(|e| bad(format!("move {RW_DIR} into place: {e}")))?;
            }
            let _ = fs::remove_dir_all(&tmp);
            let mut s = self.state.read_raw(&name)?;
            s.status = Status::Checkpointed;
            s.monitor_pid = None;
            s.monitor_start = None;
            s.checkpoint = Some(dir.join(CHECKPOINT_DIR));
            self.state.write(&s, &lock)?;
            Ok(())
        })();
        if let Err(e) = unpacked {
            let _ = self.state.remove(&name, &lock);
            return Err(e);
        }
        drop(lock);
        self.restore(&name, &RestoreOptions { image_path: None, ..opts.clone() })
            .map_err(|e| RuntimeError::RestoreFailed {
                name: name.clone(),
                reason: format!(
                    "{e}; it was imported as checkpointed container {name}: retry with `distill restore {name}` or remove it with `distill rm {name}`"
                ),
            })
    }
}

/// Runs `criu restore` in the monitor (which becomes a child subreaper, so the restored
/// init is re-parented to it when CRIU exits) with `stdio` as the init's fds 0-2; returns
/// the init's pid. CRIU runs in a private mount namespace where the image directory is a
/// read-only bind onto itself, so the container's restored root is read-only. Right after
/// a dump the old session can still be busy for a moment ("Can't fork ... File exists");
/// the restore is then retried for up to 5 s.
pub(crate) fn restore_tree(
    plan: &RestorePlan,
    stdio: [OwnedFd; 3],
) -> std::result::Result<i32, String> {
    // SAFETY: plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(format!(
            "become a child subreaper: {}",
            io::Error::last_os_error()
        ));
    }
    // One inherited descriptor per resource, at fds >= 100, not close-on-exec.
    let mut inherit: Vec<(OwnedFd, String)> = Vec::new();
    for i in &plan.inherit {
        let fd = match i.role {
            StdioRole::Null => &stdio[0],
            StdioRole::Stdout => &stdio[1],
            StdioRole::Stderr => &stdio[2],
        };
        let key = &i.key;
        // SAFETY: duplicates a descriptor we own; the result is owned below.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 100) };
        if n < 0 {
            return Err(format!("dup stdio: {}", io::Error::last_os_error()));
        }
        inherit.push((
            unsafe { std::os::fd::FromRawFd::from_raw_fd(n) },
            key.clone(),
        ));
    }
    drop(stdio);
    let deadline = Instant::now() + Duration::from_secs(5);
    let root = plan.rootfs.clone();
    loop {
        let _ = fs::remove_file(&plan.pidfile);
        let mut cmd = Command::new(&plan.criu);
        cmd.arg("restore").args(&plan.args);
        for (fd, key) in &inherit {
            cmd.arg("--inherit-fd")
                .arg(format!("fd[{}]:{key}", fd.as_raw_fd()));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file(&plan.log));
        let root = root.clone();
        // SAFETY: only system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let chk = |r: libc::c_int| {
                    if r < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                };
                chk(libc::unshare(libc::CLONE_NEWNS))?;
                chk(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                chk(libc::mount(
                    root.as_ptr(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                chk(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ))
            });
        }
        let st = cmd
            .status()
            .map_err(|e| format!("run {}: {e}", plan.criu.display()))?;
        if st.success() {
            break;
        }
        let log = fs::read_to_string(&plan.log).unwrap_or_default();
        if log.contains("File exists") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        return Err(format!("criu restore: {}", log_errors(&plan.log)));
    }
    drop(inherit);
    let text = fs::read_to_string(&plan.pidfile)
        .map_err(|e| format!("read {}: {e}", plan.pidfile.display()))?;
    let _ = fs::remove_file(&plan.pidfile);
    text.trim()
        .parse::<RawFd>()
        .map_err(|_| format!("{}: bad pid {text:?}", plan.pidfile.display()))
}

/// The volumes of an imported container: for each volume in the archive's configuration,
/// the importer's `-v HOST:TARGET` with that target (its host directory and read-only
/// flag). Every archive volume must be mapped and nothing else given: the restored processes
/// have exactly those mounts.
fn map_volumes(
    archived: &[crate::Volume],
    given: &[crate::Volume],
) -> std::result::Result<Vec<crate::Volume>, String> {
    let unmapped: Vec<String> = archived
        .iter()
        .filter(|a| !given.iter().any(|g| g.target == a.target))
        .map(|a| a.target.display().to_string())
        .collect();
    if !unmapped.is_empty() {
        return Err(format!(
            "its container mounts host directories at {}; an archive's host paths are not used: give the host directory for each with -v HOST:TARGET",
            unmapped.join(", ")
        ));
    }
    if let Some(extra) = given
        .iter()
        .find(|g| !archived.iter().any(|a| a.target == g.target))
    {
        return Err(format!(
            "-v ...:{} names no volume of the archived container (its volumes: {})",
            extra.target.display(),
            if archived.is_empty() {
                "none".to_string()
            } else {
                archived
                    .iter()
                    .map(|a| a.target.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    Ok(archived
        .iter()
        .filter_map(|a| given.iter().find(|g| g.target == a.target).cloned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_versions_parse() {
        assert_eq!(parse_version("Version: 4.1.1\n"), Some((4, 1, 1)));
        assert_eq!(parse_version("Version: 3.17\nGitID: x\n"), Some((3, 17, 0)));
        assert_eq!(parse_version("criu 4"), None);
    }

    #[test]
    fn a_missing_criu_is_named() {
        let e = Criu::find(Some(Path::new("/nonexistent/criu")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/criu") && e.contains("4.0"), "{e}");
    }

    #[test]
    fn an_old_criu_is_refused_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("criu");
        fs::write(&fake, "#!/bin/sh\necho 'Version: 3.17.1'\n").unwrap();
        fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let e = Criu::find(Some(&fake)).unwrap_err().to_string();
        assert!(e.contains("3.17.1") && e.contains("too old"), "{e}");
    }
}
