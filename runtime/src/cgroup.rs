//! Per-container cgroups on cgroup v1, pure v2 and hybrid hosts.
//!
//! The hierarchy is detected at run time from `/proc/self/mountinfo`. When any v1 controller
//! that distill uses (memory, cpu, pids, blkio) is mounted, controllers are driven through v1
//! (one directory per controller: `<mount>/<parent>/<name>`); otherwise the v2 hierarchy is
//! used (`<mount>/<parent>/<name>`, with the controllers enabled in `cgroup.subtree_control`
//! of every level above it). A hybrid host (v1 controllers plus an empty v2 mount) is driven
//! through v1. The parent is the container's `cgroup_parent` ([`DEFAULT_PARENT`] unless
//! chosen), made on demand each time a container's directory is, so that another process
//! removing an empty parent at the same moment (another state root's clean-up) costs a
//! retry, never a failure.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The cgroup parent of containers that do not choose one (`--cgroup-parent`).
pub const DEFAULT_PARENT: &str = "distill";

/// How often creating a directory is tried again when its parent vanished meanwhile.
const CREATE_TRIES: usize = 100;

/// Checks a cgroup parent: a relative path of one or more components made of
/// `[A-Za-z0-9_.-]`, none of them starting with `.` (the runtime's own retired directories
/// do), at most 8 deep. Anything else could name a cgroup outside the hierarchy root or
/// collide with the runtime's bookkeeping.
pub fn validate_parent(parent: &str) -> Result<()> {
    let bad = |why: &str| invalid("--cgroup-parent", format!("{parent:?} {why}"));
    if parent.is_empty() {
        return Err(bad("is empty"));
    }
    let parts: Vec<&str> = parent.split('/').collect();
    if parts.len() > 8 {
        return Err(bad("has more than 8 levels"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(bad("must be a relative path without empty components (no leading, trailing or double '/')"));
        }
        if part.starts_with('.') {
            return Err(bad("has a component starting with '.'"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad("may only hold [A-Za-z0-9_.-] and '/'"));
        }
    }
    Ok(())
}

/// v1 controllers a container joins (those that are mounted).
const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices",
];

/// v1 controllers every container joins, limits or not (see [`Cgroup::needed`]).
const ALWAYS_V1: &[&str] = &["memory", "pids", "devices"];

/// v2 controllers enabled for containers (those the root offers).
const V2_CONTROLLERS: &[&str] = &["memory", "cpu", "pids", "io"];

/// Default CFS period (microseconds) used for `--cpus`.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Smallest memory limit accepted (same floor as Docker).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Errors from cgroup detection, validation and file writes.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found.
    #[error("no cgroup hierarchy found in /proc/self/mountinfo: mount cgroup v1 controllers or cgroup2 under /sys/fs/cgroup")]
    NoHierarchy,
    /// Reading or parsing mountinfo failed.
    #[error("cannot read {path}: {source}")]
    Mountinfo {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A limit value is invalid.
    #[error("invalid limit {field}: {reason}")]
    Invalid {
        /// The option, e.g. `--cpus`.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The host does not offer the file needed for a limit.
    #[error("limit {field} is not supported on this host: {path} does not exist (controller not mounted or kernel lacks it)")]
    Unsupported {
        /// The option.
        field: &'static str,
        /// The missing file.
        path: PathBuf,
    },
    /// A cgroup file or directory operation failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// What was done (create, write, read, remove).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An update failed and the previous limits were restored.
    #[error("update refused by the kernel, previous limits restored: writing {value:?} to {path}: {source}")]
    UpdateFailed {
        /// The file whose write failed.
        path: PathBuf,
        /// The value that was refused.
        value: String,
        /// The cause.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, CgroupError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only v1 controller hierarchies.
    V1,
    /// v1 controllers plus a (controller-less) v2 mount; driven through v1.
    Hybrid,
    /// Only the unified v2 hierarchy.
    V2,
}

/// The detected cgroup mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// The layout.
    pub mode: Mode,
    /// v1 controller name -> mount point (co-mounted controllers share a mount point).
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, if any.
    pub v2: Option<PathBuf>,
}

impl Hierarchy {
    /// Detects the hierarchy from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Mountinfo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Parses mountinfo text (see proc(5)) into a hierarchy.
    pub fn from_mountinfo(text: &str) -> Result<Self> {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let rfields: Vec<&str> = right.split(' ').collect();
            if fields.len() < 5 || rfields.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(unescape(fields[4]));
            match rfields[0] {
                "cgroup2" => {
                    v2.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for opt in rfields[2].split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.entry(opt.to_string()).or_insert(mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let uses_v1 = ["memory", "cpu", "pids", "blkio"]
            .iter()
            .any(|c| v1.contains_key(*c));
        let mode = match (uses_v1, v2.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::V1,
            (false, true) => Mode::V2,
            (false, false) => return Err(CgroupError::NoHierarchy),
        };
        if mode == Mode::V2 {
            v1.clear();
        }
        Ok(Hierarchy { mode, v1, v2 })
    }

    /// A pure v2 hierarchy rooted at `root` (used for fake cgroupfs trees in tests).
    pub fn v2_at(root: impl Into<PathBuf>) -> Self {
        Hierarchy {
            mode: Mode::V2,
            v1: BTreeMap::new(),
            v2: Some(root.into()),
        }
    }

    /// True when controllers are driven through v1 files.
    pub fn is_v1(&self) -> bool {
        self.mode != Mode::V2
    }

    /// The cgroup `<parent>/<name>` (not created). `parent` is a checked cgroup parent
    /// ([`validate_parent`]).
    pub fn cgroup(&self, parent: &str, name: &str) -> Cgroup {
        let mut dirs = BTreeMap::new();
        if self.is_v1() {
            for (ctrl, mount) in &self.v1 {
                dirs.insert(ctrl.clone(), mount.join(parent).join(name));
            }
        } else if let Some(root) = &self.v2 {
            dirs.insert(String::new(), root.join(parent).join(name));
        }
        Cgroup {
            v1: self.is_v1(),
            v2_root: if self.is_v1() { None } else { self.v2.clone() },
            dirs,
        }
    }

    /// The directories of cgroup parent `parent` in this hierarchy (one per v1 mount, or
    /// the v2 one).
    pub fn parent_dirs(&self, parent: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = if self.is_v1() {
            self.v1.values().map(|m| m.join(parent)).collect()
        } else {
            self.v2.iter().map(|r| r.join(parent)).collect()
        };
        v.sort();
        v.dedup();
        v
    }

    /// Removes cgroup parent `parent` (every level of it) where it is empty, including the
    /// directories retired containers left there; a level still holding a container's
    /// cgroup is left. With `with_containers`, every cgroup below the parent is removed
    /// first, its processes killed. For whoever chose the parent (a test, a CI job) to clean
    /// up after itself; the runtime never removes a parent on its own.
    pub fn remove_parent(&self, parent: &str, with_containers: bool) -> Result<()> {
        validate_parent(parent)?;
        let depth = parent.split('/').count();
        for dir in self.parent_dirs(parent) {
            if with_containers {
                let mut below = Vec::new();
                subdirs_deepest_first(&dir, &mut below);
                remove_dirs(&below)?;
            }
            let mut level = dir.as_path();
            for _ in 0..depth {
                remove_orphans(level);
                match fs::remove_dir(level) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    // Not empty (EBUSY on cgroupfs): a container, or another parent, is there.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                        break
                    }
                    Err(e) => return Err(io_err("remove", level)(e)),
                }
                match level.parent() {
                    Some(p) => level = p,
                    None => break,
                }
            }
        }
        Ok(())
    }
}

/// Every directory below `dir`, children before their parents.
fn subdirs_deepest_first(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            subdirs_deepest_first(&e.path(), out);
            out.push(e.path());
        }
    }
}

/// Undoes the octal escapes mountinfo uses for spaces and the like.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A block-device rate limit: `MAJOR:MINOR` and a value (bytes/s or IO/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRate {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// The rate.
    pub rate: u64,
}

impl DeviceRate {
    /// Parses `DEV:RATE` where DEV is a block device path (`/dev/vda`) or `MAJOR:MINOR`
    /// and RATE is a number with an optional k/m/g suffix (powers of 1024).
    pub fn parse(field: &'static str, s: &str) -> Result<Self> {
        let (dev, rate) = s
            .rsplit_once(':')
            .ok_or_else(|| invalid(field, format!("{s:?} is not DEVICE:RATE")))?;
        let rate = parse_size(rate).ok_or_else(|| {
            invalid(
                field,
                format!("rate {rate:?} is not a number (suffix k, m or g allowed)"),
            )
        })?;
        let (major, minor) = if dev.starts_with('/') {
            let meta =
                fs::metadata(dev).map_err(|e| invalid(field, format!("device {dev}: {e}")))?;
            if !meta.file_type().is_block_device() {
                return Err(invalid(field, format!("{dev} is not a block device")));
            }
            let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
            (libc::major(rdev) as u64, libc::minor(rdev) as u64)
        } else {
            let (ma, mi) = dev.split_once(':').ok_or_else(|| {
                invalid(
                    field,
                    format!("device {dev:?} is neither a path nor MAJOR:MINOR"),
                )
            })?;
            let ma = ma
                .parse()
                .map_err(|_| invalid(field, format!("device major {ma:?} is not a number")))?;
            let mi = mi
                .parse()
                .map_err(|_| invalid(field, format!("device minor {mi:?} is not a number")))?;
            (ma, mi)
        };
        Ok(DeviceRate { major, minor, rate })
    }

    fn dev(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Parses `123`, `10k`, `5m`, `1g` (powers of 1024, optional trailing `b`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Resource limits of a container. `None`/empty means "not set" (on `update`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPUs (fractional), turned into a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight in Docker's shares scale (2..=262144; v2 maps it to cpu.weight).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
    /// Block IO weight (10..=1000).
    pub blkio_weight: Option<u16>,
    /// Read bytes/s per device.
    pub device_read_bps: Vec<DeviceRate>,
    /// Write bytes/s per device.
    pub device_write_bps: Vec<DeviceRate>,
    /// Read IO/s per device.
    pub device_read_iops: Vec<DeviceRate>,
    /// Write IO/s per device.
    pub device_write_iops: Vec<DeviceRate>,
}

/// Number of CPUs online.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Limits {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks every value and says which one is wrong and why.
    pub fn validate(&self) -> Result<()> {
        if let Some(m) = self.memory {
            if m < MIN_MEMORY {
                return Err(invalid(
                    "--memory",
                    format!("{m} bytes is below the minimum of {MIN_MEMORY} (6 MiB)"),
                ));
            }
        }
        if let Some(c) = self.cpus {
            let online = online_cpus();
            if !(c.is_finite() && c > 0.0) {
                return Err(invalid("--cpus", format!("{c} must be greater than 0")));
            }
            if c > online as f64 {
                return Err(invalid(
                    "--cpus",
                    format!("{c} is more than the {online} CPUs online"),
                ));
            }
            if (c * CFS_PERIOD_US as f64) < 1000.0 {
                return Err(invalid(
                    "--cpus",
                    format!("{c} is below the minimum of 0.01"),
                ));
            }
        }
        if let Some(s) = self.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return Err(invalid(
                    "--cpu-shares",
                    format!("{s} is outside 2..=262144"),
                ));
            }
        }
        if let Some(p) = self.pids {
            if p == 0 {
                return Err(invalid("--pids-limit", "must be at least 1"));
            }
        }
        if let Some(w) = self.blkio_weight {
            if !(10..=1000).contains(&w) {
                return Err(invalid(
                    "--blkio-weight",
                    format!("{w} is outside 10..=1000"),
                ));
            }
        }
        for (field, list) in self.device_lists() {
            for d in list {
                if d.rate == 0 {
                    return Err(invalid(
                        field,
                        format!("rate for {} must be greater than 0", d.dev()),
                    ));
                }
                if list.iter().filter(|o| o.dev() == d.dev()).count() > 1 {
                    return Err(invalid(field, format!("device {} is given twice", d.dev())));
                }
            }
        }
        Ok(())
    }

    fn device_lists(&self) -> [(&'static str, &Vec<DeviceRate>); 4] {
        [
            ("--device-read-bps", &self.device_read_bps),
            ("--device-write-bps", &self.device_write_bps),
            ("--device-read-iops", &self.device_read_iops),
            ("--device-write-iops", &self.device_write_iops),
        ]
    }

    /// `self` with every field of `new` that is set laid over it.
    pub fn merged(&self, new: &Limits) -> Limits {
        let mut out = self.clone();
        out.memory = new.memory.or(out.memory);
        out.cpus = new.cpus.or(out.cpus);
        out.cpu_shares = new.cpu_shares.or(out.cpu_shares);
        out.pids = new.pids.or(out.pids);
        out.blkio_weight = new.blkio_weight.or(out.blkio_weight);
        fn merge(old: &mut Vec<DeviceRate>, new: &[DeviceRate]) {
            for n in new {
                old.retain(|o| o.dev() != n.dev());
                old.push(*n);
            }
        }
        merge(&mut out.device_read_bps, &new.device_read_bps);
        merge(&mut out.device_write_bps, &new.device_write_bps);
        merge(&mut out.device_read_iops, &new.device_read_iops);
        merge(&mut out.device_write_iops, &new.device_write_iops);
        out
    }
}

/// Docker/runc's mapping of cpu.shares (2..262144) onto cgroup v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// One planned write into a cgroup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    /// The option that caused it.
    pub field: &'static str,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The value written.
    pub value: String,
}

/// A container's cgroup: one directory per v1 controller, or one v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    v1: bool,
    v2_root: Option<PathBuf>,
    /// controller -> directory (v2: the single directory under key "").
    dirs: BTreeMap<String, PathBuf>,
}

impl Cgroup {
    /// Directories of this cgroup (one per v1 controller, or one on v2).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs.values().cloned().collect();
        v.dedup();
        v
    }

    /// The v1 controllers this cgroup has directories for (none on v2).
    pub fn controllers(&self) -> Vec<String> {
        if self.v1 {
            self.dirs.keys().cloned().collect()
        } else {
            Vec::new()
        }
    }

    fn dir(&self, ctrl: &str) -> Option<&PathBuf> {
        if self.v1 {
            self.dirs.get(ctrl)
        } else {
            self.dirs.get("")
        }
    }

    /// Creates the directories (and every level of the parent above them), enabling the v2
    /// controllers at each level on the way down. A parent removed by someone else between
    /// two steps (an empty parent being cleaned up) is made again: see [`create_dir_in`].
    pub fn create(&self) -> Result<()> {
        let enable = match (self.v1, &self.v2_root) {
            (false, Some(root)) => {
                let offered =
                    fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let wanted: Vec<&str> = V2_CONTROLLERS
                    .iter()
                    .copied()
                    .filter(|c| offered.split_whitespace().any(|o| o == *c))
                    .collect();
                Some((root.as_path(), wanted))
            }
            _ => None,
        };
        for d in self.paths() {
            create_dir_in(&d, enable.as_ref().map(|(r, w)| (*r, w.as_slice())))?;
        }
        Ok(())
    }

    /// The writes that put `limits` in place, in order.
    pub fn plan(&self, limits: &Limits) -> Result<Vec<FileWrite>> {
        let mut w = Vec::new();
        let mut push = |field: &'static str, ctrl: &str, file: &str, value: String| -> Result<()> {
            let dir = self.dir(ctrl).ok_or_else(|| CgroupError::Unsupported {
                field,
                path: PathBuf::from(format!("<{ctrl} controller>/{file}")),
            })?;
            w.push(FileWrite {
                field,
                path: dir.join(file),
                value,
            });
            Ok(())
        };
        let v1 = self.v1;
        if let Some(p) = limits.pids {
            push("--pids-limit", "pids", "pids.max", p.to_string())?;
        }
        if let Some(c) = limits.cpus {
            let quota = (c * CFS_PERIOD_US as f64).round() as u64;
            if v1 {
                push(
                    "--cpus",
                    "cpu",
                    "cpu.cfs_period_us",
                    CFS_PERIOD_US.to_string(),
                )?;
                push("--cpus", "cpu", "cpu.cfs_quota_us", quota.to_string())?;
            } else {
                push(
                    "--cpus",
                    "cpu",
                    "cpu.max",
                    format!("{quota} {CFS_PERIOD_US}"),
                )?;
            }
        }
        if let Some(s) = limits.cpu_shares {
            if v1 {
                push("--cpu-shares", "cpu", "cpu.shares", s.to_string())?;
            } else {
                push(
                    "--cpu-shares",
                    "cpu",
                    "cpu.weight",
                    shares_to_weight(s).to_string(),
                )?;
            }
        }
        if let Some(m) = limits.memory {
            if v1 {
                push("--memory", "memory", "memory.limit_in_bytes", m.to_string())?;
            } else {
                push("--memory", "memory", "memory.max", m.to_string())?;
            }
        }
        if let Some(bw) = limits.blkio_weight {
            let (ctrl, plain, bfq, val_plain, val_bfq) = if v1 {
                (
                    "blkio",
                    "blkio.weight",
                    "blkio.bfq.weight",
                    bw.to_string(),
                    bw.to_string(),
                )
            } else {
                (
                    "io",
                    "io.weight",
                    "io.bfq.weight",
                    format!("default {bw}"),
                    format!("default {bw}"),
                )
            };
            let dir = self.dir(ctrl).ok_or_else(|| CgroupError::Unsupported {
                field: "--blkio-weight",
                path: PathBuf::from(format!("<{ctrl} controller>/{plain}")),
            })?;
            if dir.join(plain).exists() || !dir.exists() {
                push("--blkio-weight", ctrl, plain, val_plain)?;
            } else if dir.join(bfq).exists() {
                push("--blkio-weight", ctrl, bfq, val_bfq)?;
            } else {
                return Err(CgroupError::Unsupported {
                    field: "--blkio-weight",
                    path: dir.join(plain),
                });
            }
        }
        if v1 {
            for (field, file, list) in [
                (
                    "--device-read-bps",
                    "blkio.throttle.read_bps_device",
                    &limits.device_read_bps,
                ),
                (
                    "--device-write-bps",
                    "blkio.throttle.write_bps_device",
                    &limits.device_write_bps,
                ),
                (
                    "--device-read-iops",
                    "blkio.throttle.read_iops_device",
                    &limits.device_read_iops,
                ),
                (
                    "--device-write-iops",
                    "blkio.throttle.write_iops_device",
                    &limits.device_write_iops,
                ),
            ] {
                for d in list {
                    push(field, "blkio", file, format!("{} {}", d.dev(), d.rate))?;
                }
            }
        } else {
            let mut per_dev: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
            for (field, key, list) in [
                ("--device-read-bps", "rbps", &limits.device_read_bps),
                ("--device-write-bps", "wbps", &limits.device_write_bps),
                ("--device-read-iops", "riops", &limits.device_read_iops),
                ("--device-write-iops", "wiops", &limits.device_write_iops),
            ] {
                for d in list {
                    let e = per_dev.entry(d.dev()).or_insert((field, Vec::new()));
                    e.1.push(format!("{key}={}", d.rate));
                }
            }
            for (dev, (field, kv)) in per_dev {
                push(field, "io", "io.max", format!("{dev} {}", kv.join(" ")))?;
            }
        }
        Ok(w)
    }

    /// A new container's cgroup, before its init runs: creates the directories
    /// ([`Cgroup::create`]), restricts the devices ([`Cgroup::restrict_devices`]) and writes
    /// `limits` ([`Cgroup::apply`]).
    pub fn make(&self, limits: &Limits) -> Result<()> {
        self.create()?;
        self.restrict_devices()?;
        self.apply(limits)
    }

    /// Lets this cgroup's processes use only the devices of
    /// [`crate::cgroup_devices::ALLOWED`]: v1 writes `devices.deny` and `devices.allow` of the
    /// `devices` directory (a v1 host without the devices controller is refused: its
    /// containers could open every host device), v2 attaches a device program to the
    /// directory. Before any process of the container is in it.
    pub fn restrict_devices(&self) -> Result<()> {
        const FIELD: &str = "device access control";
        if self.v1 {
            let dir = self
                .dirs
                .get("devices")
                .ok_or_else(|| CgroupError::Unsupported {
                    field: FIELD,
                    path: PathBuf::from("<devices controller>/devices.deny"),
                })?;
            restrict_v1_devices(dir)
        } else {
            let dir = self.dir("").ok_or_else(|| CgroupError::Unsupported {
                field: FIELD,
                path: PathBuf::from("<cgroup2>"),
            })?;
            crate::cgroup_devices::attach_program(dir).map_err(|source| CgroupError::Io {
                op: "attach a BPF_CGROUP_DEVICE program to",
                path: dir.clone(),
                source,
            })
        }
    }

    /// Writes `limits` (used before the container execs). Stops at the first failure.
    pub fn apply(&self, limits: &Limits) -> Result<()> {
        limits.validate()?;
        for w in self.plan(limits)? {
            write_file(&w)?;
        }
        Ok(())
    }

    /// Changes the limits set in `new` live. Old values are read first; if any write
    /// fails, every file already written gets its old value back and the error says which
    /// write the kernel refused.
    pub fn update(&self, new: &Limits) -> Result<()> {
        new.validate()?;
        let plan = self.plan(new)?;
        let mut undo: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for w in &plan {
            if !w.path.exists() {
                return Err(CgroupError::Unsupported {
                    field: w.field,
                    path: w.path.clone(),
                });
            }
        }
        let mut restores = Vec::with_capacity(plan.len());
        for w in &plan {
            let old = fs::read_to_string(&w.path).map_err(io_err("read", &w.path))?;
            restores.push(restore_values(&w.path, &old, &w.value));
        }
        for (w, restore) in plan.iter().zip(restores) {
            if let Err(source) = fs::write(&w.path, &w.value) {
                for (p, vals) in undo.iter().rev() {
                    for v in vals {
                        let _ = fs::write(p, v);
                    }
                }
                return Err(CgroupError::UpdateFailed {
                    path: w.path.clone(),
                    value: w.value.clone(),
                    source,
                });
            }
            undo.push((w.path.clone(), restore));
        }
        Ok(())
    }

    /// v1: the `tasks` file of each of this cgroup's directories, opened for writing, for a
    /// process that moves itself in (`distill_sandbox::Spec::join_cgroups`) right after it is
    /// cloned, so that it is in its cgroup before it runs anything.
    ///
    /// Why not move it from outside: moving another process (`cgroup.procs`) write-locks
    /// `cgroup_threadgroup_rwsem`, and the first writer after a quiet period waits for a full
    /// RCU grace period (10-40 ms measured on a HZ=250 6.18 kernel). A thread writing `0` to
    /// `tasks` moves only itself, which recent kernels do without that lock: microseconds
    /// (an older kernel takes the lock: slower, still correct).
    pub fn tasks_files(&self) -> Result<Vec<std::os::fd::OwnedFd>> {
        self.paths()
            .into_iter()
            .map(|d| {
                let f = d.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(io_err("open", &f))
            })
            .collect()
    }

    /// Moves process `pid` into every directory of this cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for d in self.paths() {
            let f = d.join("cgroup.procs");
            fs::write(&f, pid.to_string()).map_err(io_err("write", &f))?;
        }
        Ok(())
    }

    /// The part of this cgroup a container with `limits` needs. v1: the `memory` (OOM
    /// detection, accounting), `pids` (the process list) and `devices`
    /// ([`Cgroup::restrict_devices`]) controllers always, plus those
    /// `limits` write to; creating, joining and removing a v1 directory costs, so a container
    /// without limits skips cpu/cpuacct/blkio/freezer ([`Cgroup::grow_to`] adds them when an
    /// update needs them). v2: the whole (single-directory) cgroup.
    pub fn needed(&self, limits: &Limits) -> Result<Cgroup> {
        if !self.v1 {
            return Ok(self.clone());
        }
        let plan = self.plan(limits)?;
        let dirs: BTreeMap<String, PathBuf> = self
            .dirs
            .iter()
            .filter(|(c, d)| {
                ALWAYS_V1.contains(&c.as_str()) || plan.iter().any(|w| w.path.starts_with(d))
            })
            .map(|(c, d)| (c.clone(), d.clone()))
            .collect();
        if dirs.is_empty() {
            return Ok(self.clone());
        }
        Ok(Cgroup {
            v1: true,
            v2_root: None,
            dirs,
        })
    }

    /// The directories of this cgroup that exist.
    pub fn existing(&self) -> Cgroup {
        Cgroup {
            v1: self.v1,
            v2_root: self.v2_root.clone(),
            dirs: self
                .dirs
                .iter()
                .filter(|(_, d)| d.is_dir())
                .map(|(c, d)| (c.clone(), d.clone()))
                .collect(),
        }
    }

    /// Creates the directories of `want` that do not exist yet and moves every process of
    /// this (existing) cgroup into them, repeating until no process is left behind (one
    /// forked during the move is caught by the next pass).
    pub fn grow_to(&self, want: &Cgroup) -> Result<()> {
        let have = self.paths();
        let missing: Vec<PathBuf> = want
            .paths()
            .into_iter()
            .filter(|d| !have.contains(d))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for d in &missing {
            // (v1 only: a v2 cgroup is one directory, which exists if the container does.)
            create_dir_in(d, None)?;
            // A container started before it joined the devices controller: restricted
            // before anything moves in.
            if want.dirs.get("devices") == Some(d) {
                restrict_v1_devices(d)?;
            }
        }
        for _ in 0..100 {
            let procs = self.procs()?;
            let mut moved = false;
            for d in &missing {
                let f = d.join("cgroup.procs");
                let there = fs::read_to_string(&f).map_err(io_err("read", &f))?;
                for pid in &procs {
                    if there.lines().any(|l| l.trim() == pid.to_string()) {
                        continue;
                    }
                    match fs::write(&f, pid.to_string()) {
                        Ok(()) => moved = true,
                        // Exited in the meantime.
                        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                        Err(e) => return Err(io_err("write", &f)(e)),
                    }
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Freezes every process of this (full) cgroup and waits until the kernel reports it
    /// frozen: v1 writes `FROZEN` to `freezer.state` (joining the container to the freezer
    /// controller first when it started without it, see [`Cgroup::needed`]), v2 writes `1`
    /// to `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`. Gives up after
    /// `timeout`, thawing again. Pair it with [`Cgroup::thaw`].
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        let (file, value) = self.freezer_file()?;
        if self.v1 {
            let have = self.existing();
            if !have.dirs.contains_key("freezer") {
                let mut want = have.clone();
                if let Some(d) = self.dirs.get("freezer") {
                    want.dirs.insert("freezer".into(), d.clone());
                }
                have.grow_to(&want)?;
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            // v1: a write while FREEZING retries tasks that were busy (as runc does).
            fs::write(&file, value.0).map_err(io_err("write", &file))?;
            if self.is_frozen()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.thaw();
                return Err(CgroupError::Io {
                    op: "freeze",
                    path: file,
                    source: io::Error::new(
                        ErrorKind::TimedOut,
                        format!("processes still not frozen after {timeout:?}; thawed again"),
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws the processes of this cgroup (v1 `THAWED`, v2 `cgroup.freeze` 0). A cgroup
    /// that was never joined to the freezer is not frozen: nothing to do.
    pub fn thaw(&self) -> Result<()> {
        let (file, value) = self.freezer_file()?;
        if !file.exists() {
            return Ok(());
        }
        fs::write(&file, value.1).map_err(io_err("write", &file))
    }

    /// True when the kernel reports this cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        if self.v1 {
            Ok(self.read("freezer", "freezer.state")? == "FROZEN")
        } else {
            let ev = self.read("", "cgroup.events")?;
            Ok(ev.lines().any(|l| l.trim() == "frozen 1"))
        }
    }

    /// The file that freezes the cgroup and its (freeze, thaw) values.
    fn freezer_file(&self) -> Result<(PathBuf, (&'static str, &'static str))> {
        let missing = |file: &str| CgroupError::Unsupported {
            field: "commit (freezing a running container)",
            path: PathBuf::from(file),
        };
        if self.v1 {
            let d = self
                .dirs
                .get("freezer")
                .ok_or_else(|| missing("<freezer controller>/freezer.state"))?;
            Ok((d.join("freezer.state"), ("FROZEN", "THAWED")))
        } else {
            let d = self
                .dirs
                .get("")
                .ok_or_else(|| missing("<cgroup2>/cgroup.freeze"))?;
            Ok((d.join("cgroup.freeze"), ("1", "0")))
        }
    }

    /// The pids in the cgroup (from the memory/pids directory on v1).
    pub fn procs(&self) -> Result<Vec<i32>> {
        let dir = self
            .dir("pids")
            .or_else(|| self.dir("memory"))
            .or_else(|| self.dirs.values().next())
            .cloned()
            .unwrap_or_default();
        let f = dir.join("cgroup.procs");
        let text = fs::read_to_string(&f).map_err(io_err("read", &f))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Reads one file of a controller (e.g. `("pids", "pids.max")`).
    pub fn read(&self, ctrl: &str, file: &str) -> Result<String> {
        let dir = self.dir(ctrl).ok_or_else(|| CgroupError::Unsupported {
            field: "read",
            path: PathBuf::from(format!("<{ctrl} controller>/{file}")),
        })?;
        let f = dir.join(file);
        fs::read_to_string(&f)
            .map(|s| s.trim().to_string())
            .map_err(io_err("read", &f))
    }

    /// True when the kernel OOM-killed a process of this cgroup
    /// (v1: `oom_kill` in memory.oom_control; v2: `oom_kill` in memory.events).
    pub fn oom_killed(&self) -> bool {
        let (file, key) = if self.v1 {
            ("memory.oom_control", "oom_kill")
        } else {
            ("memory.events", "oom_kill")
        };
        let Ok(text) = self.read("memory", file) else {
            return false;
        };
        text.lines().any(|l| {
            let mut it = l.split_whitespace();
            it.next() == Some(key) && it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0
        })
    }

    /// Kills what is left in the cgroup and removes its directories (waits up to 2 s for
    /// the kernel to let go of exiting tasks). Missing directories are fine.
    pub fn remove(&self) -> Result<()> {
        remove_dirs(&self.paths())
    }

    /// Frees the cgroup's name at once and leaves its directories to [`Retired::remove`]:
    /// on v1 each is renamed to a hidden sibling (`.<leaf>.gone.<pid>`), a few microseconds,
    /// where removing a memory cgroup takes tens. A container that exits then reports its
    /// exit without waiting for the removal, and a new container of the same name never
    /// meets the old directories. v2 cannot rename a cgroup, and a rename that fails is
    /// replaced by removing the directory right away, as [`Cgroup::remove`] does.
    pub fn retire(&self) -> Retired {
        let mut left = Vec::new();
        for d in self.paths() {
            let gone = match (self.v1, d.parent(), d.file_name()) {
                (true, Some(parent), Some(leaf)) => {
                    let mut name = std::ffi::OsString::from(".");
                    name.push(leaf);
                    name.push(format!(".gone.{}", std::process::id()));
                    let to = parent.join(name);
                    match fs::rename(&d, &to) {
                        Ok(()) => Some(to),
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            match gone {
                Some(to) => left.push(to),
                None => {
                    let _ = remove_dirs(std::slice::from_ref(&d));
                }
            }
        }
        Retired { dirs: left }
    }
}

/// Directories of a cgroup taken out of the way by [`Cgroup::retire`], still to remove.
#[must_use = "remove it, or the renamed directories stay"]
pub struct Retired {
    dirs: Vec<PathBuf>,
}

impl Retired {
    /// Removes the directories (as [`Cgroup::remove`] does), and any retired beside them by
    /// a monitor that died before it removed its own.
    pub fn remove(self) -> Result<()> {
        let r = remove_dirs(&self.dirs);
        let parents: std::collections::BTreeSet<&Path> =
            self.dirs.iter().filter_map(|d| d.parent()).collect();
        for p in parents {
            remove_orphans(p);
        }
        r
    }
}

/// Creates cgroup directory `dir` and any missing level above it. With `v2 = (root,
/// controllers)`, the controllers are enabled in `cgroup.subtree_control` of `root` and of
/// every level between it and `dir`, before the level below is made (a child can only
/// enable what its parent delegates). A level that vanishes between two steps (rmdir of an
/// empty parent by another process) makes it start over; once `dir` exists its parents
/// cannot be removed.
fn create_dir_in(dir: &Path, v2: Option<(&Path, &[&str])>) -> Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        let raced = |e: &io::Error| e.kind() == ErrorKind::NotFound && tries < CREATE_TRIES;
        let Some(parent) = dir.parent() else {
            return Err(io_err("create", dir)(io::Error::from(
                ErrorKind::InvalidInput,
            )));
        };
        if let Some((root, wanted)) = v2 {
            // root, then each level down to `parent`, each made and then delegating.
            let rel = parent.strip_prefix(root).unwrap_or(Path::new(""));
            let mut level = root.to_path_buf();
            let mut failed = None;
            for comp in std::iter::once(None).chain(rel.components().map(Some)) {
                if let Some(c) = comp {
                    level.push(c);
                    match fs::create_dir(&level) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            failed = Some(("create", level.clone(), e));
                            break;
                        }
                    }
                }
                if let Err(e) = enable_controllers(&level, wanted) {
                    failed = Some(("write", level.join("cgroup.subtree_control"), e));
                    break;
                }
            }
            match failed {
                Some((_, _, e)) if raced(&e) => continue,
                Some((op, path, e)) => return Err(io_err(op, &path)(e)),
                None => {}
            }
        } else {
            match fs::create_dir_all(parent) {
                Ok(()) => {}
                // (create_dir_all reports EEXIST when a level it found existing is gone by
                // the time it checks that it is a directory.)
                Err(e)
                    if raced(&e)
                        || (e.kind() == ErrorKind::AlreadyExists && tries < CREATE_TRIES) =>
                {
                    continue
                }
                Err(e) => return Err(io_err("create", parent)(e)),
            }
        }
        match fs::create_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if raced(&e) => continue,
            Err(e) => return Err(io_err("create", dir)(e)),
        }
    }
}

/// v1: denies every device in the `devices` directory `dir`, then allows those of
/// [`crate::cgroup_devices::ALLOWED`], one rule per write (as the kernel takes them).
fn restrict_v1_devices(dir: &Path) -> Result<()> {
    use std::io::Write;
    let deny = dir.join("devices.deny");
    fs::write(&deny, crate::cgroup_devices::V1_DENY_ALL).map_err(io_err("write", &deny))?;
    let allow = dir.join("devices.allow");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&allow)
        .map_err(io_err("open", &allow))?;
    for line in crate::cgroup_devices::v1_allow_lines() {
        f.write_all(line.as_bytes()).map_err(|e| {
            io_err("write", &allow)(io::Error::new(e.kind(), format!("{line:?}: {e}")))
        })?;
    }
    Ok(())
}

/// Enables `wanted` v2 controllers in `dir`'s `cgroup.subtree_control` (those not yet on).
fn enable_controllers(dir: &Path, wanted: &[&str]) -> io::Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let f = dir.join("cgroup.subtree_control");
    let cur = fs::read_to_string(&f)?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !cur.split_whitespace().any(|c| c == **w))
        .map(|w| format!("+{w}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&f, missing.join(" "))
}

/// Removes the `.<leaf>.gone.<pid>` directories in `parent` whose process is gone (best
/// effort: one still in use, or already taken by another monitor, is left).
fn remove_orphans(parent: &Path) {
    let Ok(rd) = fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.rsplit_once(".gone."))
            .and_then(|(_, pid)| pid.parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// Kills what is left in each of `dirs` and removes it (waits up to 2 s in all for the kernel
/// to let go of exiting tasks). Missing directories are fine.
fn remove_dirs(dirs: &[PathBuf]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    for d in dirs {
        loop {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    let kill = d.join("cgroup.kill");
                    if kill.exists() {
                        let _ = fs::write(&kill, "1");
                    } else if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
                        for pid in t.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io_err("remove", d)(e)),
            }
        }
    }
    Ok(())
}

/// What to write back into `path` to undo writing `new` over `old`.
fn restore_values(path: &Path, old: &str, new: &str) -> Vec<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let dev = new.split_whitespace().next().unwrap_or("");
    if name.starts_with("blkio.throttle.") {
        // v1 lists "MAJ:MIN RATE" lines; a device absent before had no limit (0 removes it).
        let prev = old
            .lines()
            .find(|l| l.split_whitespace().next() == Some(dev))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0");
        return vec![format!("{dev} {prev}")];
    }
    if name == "io.max" {
        let prev = old
            .lines()
            .find(|l| l.split_whitespace().next() == Some(dev))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| format!("{dev} rbps=max wbps=max riops=max wiops=max"));
        return vec![prev];
    }
    if name == "io.weight" || name == "io.bfq.weight" {
        // "default N" plus per-device lines; restoring the default line is enough.
        let prev = old
            .lines()
            .find(|l| l.starts_with("default"))
            .unwrap_or("default 100")
            .to_string();
        return vec![prev];
    }
    vec![old.trim().to_string()]
}

fn write_file(w: &FileWrite) -> Result<()> {
    fs::write(&w.path, &w.value).map_err(|source| {
        if source.kind() == ErrorKind::NotFound {
            CgroupError::Unsupported {
                field: w.field,
                path: w.path.clone(),
            }
        } else {
            CgroupError::Io {
                op: "write",
                path: w.path.clone(),
                source,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_are_checked() {
        for ok in ["distill", "ci/job-1", "a.b_c-d"] {
            validate_parent(ok).unwrap();
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/..",
            ".hidden",
            "sp ace",
            "a/b/c/d/e/f/g/h/i",
        ] {
            let e = validate_parent(bad).unwrap_err().to_string();
            assert!(e.contains("--cgroup-parent"), "{bad}: {e}");
        }
    }

    #[test]
    fn detects_hybrid_and_v2() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                      32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_mountinfo(hybrid).unwrap();
        assert_eq!(h.mode, Mode::Hybrid);
        assert_eq!(h.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(h.v1["cpuacct"], h.v1["cpu"]);
        let v2 = "32 25 0:28 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_mountinfo(v2).unwrap();
        assert_eq!(h.mode, Mode::V2);
        assert_eq!(h.v2, Some(PathBuf::from("/sys/fs/cgroup")));
        assert!(matches!(
            Hierarchy::from_mountinfo("1 2 3:4 / / rw - ext4 /dev/vda rw\n"),
            Err(CgroupError::NoHierarchy)
        ));
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn validation_names_the_option() {
        let bad = [
            Limits {
                cpus: Some(0.0),
                ..Default::default()
            },
            Limits {
                cpus: Some(online_cpus() as f64 + 1.0),
                ..Default::default()
            },
            Limits {
                blkio_weight: Some(5),
                ..Default::default()
            },
            Limits {
                memory: Some(1024),
                ..Default::default()
            },
            Limits {
                cpu_shares: Some(1),
                ..Default::default()
            },
            Limits {
                pids: Some(0),
                ..Default::default()
            },
        ];
        let fields = [
            "--cpus",
            "--cpus",
            "--blkio-weight",
            "--memory",
            "--cpu-shares",
            "--pids-limit",
        ];
        for (l, f) in bad.iter().zip(fields) {
            let e = l.validate().unwrap_err().to_string();
            assert!(e.contains(f), "{e}");
        }
        assert!(DeviceRate::parse("--device-read-bps", "/etc/passwd:1m")
            .unwrap_err()
            .to_string()
            .contains("not a block device"));
        let d = DeviceRate::parse("--device-read-bps", "8:0:2m").unwrap();
        assert_eq!((d.major, d.minor, d.rate), (8, 0, 2 << 20));
        assert!(DeviceRate::parse("--device-read-bps", "8:0:fast").is_err());
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    /// A fake v2 cgroupfs tree: real files with the kernel's formats.
    fn fake_v2(dir: &Path) -> Hierarchy {
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy::v2_at(dir);
        let cg = h.cgroup(DEFAULT_PARENT, "web");
        fs::create_dir_all(&cg.paths()[0]).unwrap();
        fs::write(dir.join(DEFAULT_PARENT).join("cgroup.subtree_control"), "").unwrap();
        let d = &cg.paths()[0];
        for (f, v) in [
            ("memory.max", "max\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("pids.max", "max\n"),
            ("io.weight", "default 100\n"),
            ("io.max", ""),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cgroup.procs", ""),
        ] {
            fs::write(d.join(f), v).unwrap();
        }
        h
    }

    #[test]
    fn v2_file_formats() {
        let t = tempfile::tempdir().unwrap();
        let h = fake_v2(t.path());
        let cg = h.cgroup(DEFAULT_PARENT, "web");
        cg.create().unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +cpu +pids +io"
        );
        let limits = Limits {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            cpu_shares: Some(512),
            pids: Some(20),
            blkio_weight: Some(300),
            device_read_bps: vec![DeviceRate {
                major: 254,
                minor: 0,
                rate: 1 << 20,
            }],
            device_write_iops: vec![DeviceRate {
                major: 254,
                minor: 0,
                rate: 100,
            }],
            ..Default::default()
        };
        cg.apply(&limits).unwrap();
        assert_eq!(cg.read("memory", "memory.max").unwrap(), "67108864");
        assert_eq!(cg.read("cpu", "cpu.max").unwrap(), "50000 100000");
        assert_eq!(
            cg.read("cpu", "cpu.weight").unwrap(),
            shares_to_weight(512).to_string()
        );
        assert_eq!(cg.read("pids", "pids.max").unwrap(), "20");
        assert_eq!(cg.read("io", "io.weight").unwrap(), "default 300");
        assert_eq!(
            cg.read("io", "io.max").unwrap(),
            "254:0 rbps=1048576 wiops=100"
        );
        assert!(cg.oom_killed());
        cg.add_pid(1234).unwrap();
        assert_eq!(cg.read("pids", "cgroup.procs").unwrap(), "1234");
    }

    #[test]
    fn v2_update_restores_on_failure() {
        let t = tempfile::tempdir().unwrap();
        let h = fake_v2(t.path());
        let cg = h.cgroup(DEFAULT_PARENT, "web");
        cg.apply(&Limits {
            pids: Some(20),
            memory: Some(64 << 20),
            ..Default::default()
        })
        .unwrap();
        // Make the memory write fail after pids.max was written: a readable file that even
        // root cannot write, like a kernel refusing a value.
        let mem = cg.paths()[0].join("memory.max");
        fs::remove_file(&mem).unwrap();
        std::os::unix::fs::symlink("/proc/version", &mem).unwrap();
        let e = cg
            .update(&Limits {
                pids: Some(5),
                memory: Some(32 << 20),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(e, CgroupError::UpdateFailed { .. }), "{e}");
        assert!(e.to_string().contains("memory.max"), "{e}");
        assert_eq!(cg.read("pids", "pids.max").unwrap(), "20");
        // A successful update changes only what was given.
        fs::remove_file(&mem).unwrap();
        fs::write(&mem, "67108864\n").unwrap();
        cg.update(&Limits {
            pids: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cg.read("pids", "pids.max").unwrap(), "7");
        assert_eq!(cg.read("memory", "memory.max").unwrap(), "67108864");
    }

    #[test]
    fn restore_values_for_lists() {
        let p = Path::new("/x/blkio.throttle.read_bps_device");
        assert_eq!(
            restore_values(p, "254:0 100\n", "254:0 5"),
            vec!["254:0 100"]
        );
        assert_eq!(restore_values(p, "", "254:0 5"), vec!["254:0 0"]);
        let p = Path::new("/x/io.max");
        assert_eq!(
            restore_values(p, "", "8:0 rbps=1"),
            vec!["8:0 rbps=max wbps=max riops=max wiops=max"]
        );
    }
}
