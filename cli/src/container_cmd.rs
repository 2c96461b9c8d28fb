//! `distill run | exec | ps | inspect | wait | stop | kill | rm | update | commit`: containers, run by
//! the daemonless runtime (`distill-runtime`) with detached output handed to the log daemon.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use distill_oci::Images;
use distill_runtime::{
    cgroup::parse_size, parse_signal, Attach, CgroupError, ContainerConfig, DeviceRate, ExecConfig,
    Limits, Network, Output, Runtime, RuntimeError, State, StateError, Status, Volume,
};

use crate::{refused, Failure};

// Resource limits shared by `run` and `update` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Memory limit: bytes, or a number with k, m or g (powers of 1024).
    #[arg(long)]
    memory: Option<String>,
    /// CPUs, fractional (e.g. 0.5): a CFS quota over a 100 ms period.
    #[arg(long)]
    cpus: Option<f64>,
    /// Relative CPU weight, Docker's shares scale (2..=262144).
    #[arg(long)]
    cpu_shares: Option<u64>,
    /// Most tasks (processes and threads) the container may have.
    #[arg(long)]
    pids_limit: Option<u64>,
    /// Block IO weight (10..=1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// Read bytes/s limit of a device: `DEVICE:RATE` (DEVICE a path or MAJOR:MINOR); may repeat.
    #[arg(long)]
    device_read_bps: Vec<String>,
    /// Write bytes/s limit of a device: `DEVICE:RATE`; may repeat.
    #[arg(long)]
    device_write_bps: Vec<String>,
    /// Read IO/s limit of a device: `DEVICE:N`; may repeat.
    #[arg(long)]
    device_read_iops: Vec<String>,
    /// Write IO/s limit of a device: `DEVICE:N`; may repeat.
    #[arg(long)]
    device_write_iops: Vec<String>,
}

impl LimitArgs {
    fn limits(&self) -> Result<Limits, Failure> {
        let memory = match &self.memory {
            None => None,
            Some(m) => Some(parse_size(m).ok_or_else(|| {
                refused(anyhow::anyhow!(
                    "--memory {m:?} is not a size: give bytes or a number with k, m or g (e.g. 64m)"
                ))
            })?),
        };
        let rates = |field: &'static str, list: &[String]| -> Result<Vec<DeviceRate>, Failure> {
            list.iter()
                .map(|s| DeviceRate::parse(field, s).map_err(refused))
                .collect()
        };
        Ok(Limits {
            memory,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            pids: self.pids_limit,
            blkio_weight: self.blkio_weight,
            device_read_bps: rates("--device-read-bps", &self.device_read_bps)?,
            device_write_bps: rates("--device-write-bps", &self.device_write_bps)?,
            device_read_iops: rates("--device-read-iops", &self.device_read_iops)?,
            device_write_iops: rates("--device-write-iops", &self.device_write_iops)?,
        })
    }
}

// The arguments of `distill run` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background: print the container's name and return once its command runs.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep stdin open: the container reads this command's stdin (otherwise /dev/null).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal of its own (a pseudo-terminal in its /dev/pts) as stdin,
    /// stdout, stderr and controlling terminal, relayed to this command's (raw mode with -i).
    #[arg(short = 't', long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// The container's name (default: the image's name plus a random suffix).
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable: `KEY=VALUE`, or `KEY` to pass this process's value.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// `UID[:GID]` to run as (numeric).
    #[arg(long)]
    user: Option<String>,
    /// The container's hostname (default: its name).
    #[arg(long)]
    hostname: Option<String>,
    /// Bind mount `HOST:CONTAINER[:ro]`; may repeat.
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs at this path in the container (not kept by `commit`); may repeat.
    #[arg(long)]
    tmpfs: Vec<std::path::PathBuf>,
    /// Make this directory writable: a copy of the image's content there, kept in the
    /// container's state directory until `rm` and captured by `commit`; may repeat.
    #[arg(long = "rw", value_name = "PATH")]
    rw: Vec<std::path::PathBuf>,
    /// No writable /tmp and /run (the image root is always read-only; --rw paths stay).
    #[arg(long)]
    read_only: bool,
    /// `none` (own network namespace with loopback) or `host`.
    #[arg(long, default_value = "none")]
    network: String,
    #[command(flatten)]
    limits: LimitArgs,
    /// Signal `stop` sends first (default: the image's, else SIGTERM).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// With -d: return only once this http:// URL answers 2xx.
    #[arg(long)]
    ready_http: Option<String>,
    /// Seconds to wait for --ready-http.
    #[arg(long, default_value_t = 30)]
    ready_timeout: u64,
    /// `seccomp=unconfined` turns the default seccomp filter off.
    #[arg(long)]
    security_opt: Vec<String>,
    /// Replace the image's entrypoint (`""` clears it, so CMD is the whole command).
    #[arg(long)]
    entrypoint: Option<String>,
    /// The cgroup the container's cgroup is made in, relative to each hierarchy's root
    /// (e.g. `ci/job-42`); recorded with the container.
    #[arg(long, env = "DISTILL_CGROUP_PARENT", default_value = distill_runtime::cgroup::DEFAULT_PARENT)]
    cgroup_parent: String,
    /// A loaded image's name or digest, or an `.oci.tar` archive (loaded first).
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

// The arguments of `distill exec` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open: the process reads this command's stdin (otherwise /dev/null).
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the process a terminal of its own (a pseudo-terminal in the container's
    /// /dev/pts) as stdin, stdout, stderr and controlling terminal, relayed to this
    /// command's (raw mode with -i).
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable `KEY=VALUE`; may repeat.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory (default: the container's).
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// `UID[:GID]` (default: the container's).
    #[arg(long)]
    user: Option<String>,
    /// The running container.
    name: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

// The arguments of `distill update` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The running container.
    name: String,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Maps a runtime error to a failure: bad input (exit 2) or an operational failure (exit 1).
pub fn fail(e: RuntimeError) -> Failure {
    let bad_input = matches!(
        &e,
        RuntimeError::Config(_)
            | RuntimeError::NotRunning(_)
            | RuntimeError::Running(_)
            | RuntimeError::State(
                StateError::BadName(_) | StateError::NameInUse(_) | StateError::NotFound(_)
            )
            | RuntimeError::Cgroup(CgroupError::Invalid { .. })
            | RuntimeError::Image(distill_oci::Error::Invalid { .. })
    );
    if bad_input {
        refused(e)
    } else {
        e.into()
    }
}

/// The runtime of state root `state`, sending detached output to the log daemon
/// `distill --state STATE logd` (started on first use).
pub fn runtime(state: &Path) -> Result<Runtime, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find this program's path (/proc/self/exe): {e}"))?;
    let rt = Runtime::new(state).map_err(fail)?;
    Ok(rt.with_logd(vec![
        exe.into_os_string(),
        OsString::from("--state"),
        state.as_os_str().to_owned(),
        OsString::from("logd"),
    ]))
}

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let ok = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) } == 4;
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        b = t.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A default container name from an image reference: `hello:latest` -> `hello-1a2b3c4d`.
fn default_name(image: &str) -> String {
    let base = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .trim_end_matches(".oci.tar")
        .split([':', '@'])
        .next()
        .unwrap_or("");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let clean = clean.trim_start_matches(['-', '.']);
    if clean.is_empty() {
        format!("c-{}", random_suffix())
    } else {
        format!("{clean}-{}", random_suffix())
    }
}

fn merge_env(base: &mut Vec<String>, extra: &[String]) -> Result<(), Failure> {
    for e in extra {
        let kv = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => {
                    return Err(refused(anyhow::anyhow!(
                    "-e {e:?}: give KEY=VALUE, or the name of a variable set in this environment"
                )))
                }
            }
        };
        let key = kv.split('=').next().unwrap_or("");
        if key.is_empty() {
            return Err(refused(anyhow::anyhow!(
                "-e {e:?}: the variable name is empty"
            )));
        }
        base.retain(|o| o.split('=').next() != Some(key));
        base.push(kv);
    }
    Ok(())
}

/// Resolves IMAGE: a loaded name or digest, or an archive path that is loaded first.
fn resolve_image(
    root: &Path,
    image: &str,
) -> Result<(distill_oci::ImageRecord, std::path::PathBuf), Failure> {
    let images = Images::new(root);
    let path = Path::new(image);
    let rec = if image.ends_with(".tar") || (image.contains('/') && path.is_file()) {
        if !path.is_file() {
            return Err(refused(anyhow::anyhow!(
                "image archive {image} does not exist"
            )));
        }
        images
            .load(path)
            .map_err(|e| anyhow::anyhow!("load {image}: {e}"))?
            .0
    } else {
        images.resolve(image).map_err(refused)?
    };
    let rootfs = images.rootfs(&rec);
    Ok((rec, rootfs))
}

/// `distill run`.
pub fn run(root: &Path, state: &Path, json: bool, a: RunArgs) -> Result<(), Failure> {
    if a.ready_http.is_some() && !a.detach {
        return Err(refused(anyhow::anyhow!(
            "--ready-http needs -d: only a detached run can return once the service answers"
        )));
    }
    if a.detach && (a.tty || a.interactive) {
        return Err(refused(anyhow::anyhow!(
            "-d cannot be used with -i or -t: a detached container's output goes to the log daemon through pipes and it has no stdin; run it in the foreground (`run -it`) or use `exec -it` into a detached one"
        )));
    }
    let network: Network = a.network.parse().map_err(fail)?;
    // The container's network namespace is made on another CPU while the arguments are
    // checked, the image looked up and the container set up (a network namespace is the
    // costliest part of a start).
    let premade = distill_runtime::premake(network);
    let mut seccomp = true;
    for o in &a.security_opt {
        match o.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp = false,
            _ => {
                return Err(refused(anyhow::anyhow!(
                    "--security-opt {o:?} is not supported; the only one is seccomp=unconfined"
                )))
            }
        }
    }
    let limits = a.limits.limits()?;
    limits.validate().map_err(|e| fail(e.into()))?;
    let volumes = a
        .volume
        .iter()
        .map(|v| Volume::parse(v).map_err(fail))
        .collect::<Result<Vec<_>, _>>()?;
    for v in &volumes {
        if !v.source.exists() {
            return Err(refused(anyhow::anyhow!(
                "-v: host path {} does not exist; create it first",
                v.source.display()
            )));
        }
    }
    let rt = runtime(state)?;
    rt.use_premade(premade);
    let (rec, rootfs) = resolve_image(root, &a.image)?;
    let image_cfg = Images::new(root)
        .config(&rec)
        .map_err(|e| anyhow::anyhow!("image {}: {e}", a.image))?;
    let entrypoint: Vec<String> = match &a.entrypoint {
        None => image_cfg.entrypoint.clone(),
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
    };
    let rest = if a.cmd.is_empty() && a.entrypoint.is_none() {
        image_cfg.cmd.clone()
    } else {
        a.cmd.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(rest).collect();
    if argv.is_empty() {
        return Err(refused(anyhow::anyhow!(
            "image {} has no entrypoint or cmd: give a command after the image",
            a.image
        )));
    }
    let mut env = image_cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    merge_env(&mut env, &a.env)?;
    let stop_signal = match a
        .stop_signal
        .as_deref()
        .or(image_cfg.stop_signal.as_deref())
    {
        Some(s) => parse_signal(s).map_err(fail)?,
        None => libc::SIGTERM,
    };
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| default_name(rec.name.as_deref().unwrap_or(&a.image)));
    // Empty: the runtime names the host after the container.
    let hostname = a.hostname.clone().unwrap_or_default();
    let cfg = ContainerConfig {
        name: name.clone(),
        image: rec.name.clone().unwrap_or_else(|| rec.digest.clone()),
        rootfs,
        argv,
        env,
        cwd: a
            .workdir
            .clone()
            .or(image_cfg.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into()),
        user: a
            .user
            .clone()
            .or(image_cfg.user.clone().filter(|u| !u.is_empty())),
        hostname,
        volumes,
        tmpfs: a.tmpfs.clone(),
        rw: a.rw.clone(),
        read_only: a.read_only,
        network,
        limits,
        stop_signal,
        stop_timeout: a.stop_timeout,
        auto_remove: a.rm,
        seccomp,
        cgroup_parent: a.cgroup_parent.clone(),
    };
    if a.detach {
        let s = rt.run_detached(&cfg).map_err(fail)?;
        if let Some(url) = &a.ready_http {
            rt.wait_ready_http(&name, url, Duration::from_secs(a.ready_timeout))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{e}; the container is left as it is: see `distill logs {name}`, remove it with `distill rm -f {name}`"
                    )
                })?;
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            println!("{name}");
        }
        return Ok(());
    }
    // Ctrl-C, a closed terminal, `kill` of this process: passed on to the container.
    let forward = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    // This process exits with the container's code right away: init reaps the monitor.
    let mut rt = rt;
    rt.reap_monitor = false;
    let attach = Attach {
        stdin: a.interactive,
        tty: a.tty,
    };
    let code = rt
        .run_foreground_attached(&cfg, Output::Inherit, &forward, attach)
        .map_err(fail)?;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// `distill exec`.
pub fn exec(state: &Path, a: ExecArgs) -> Result<(), Failure> {
    let rt = runtime(state)?;
    let mut env = Vec::new();
    merge_env(&mut env, &a.env)?;
    let ex = ExecConfig {
        argv: a.cmd,
        env,
        cwd: a.workdir,
        user: a.user,
    };
    let attach = Attach {
        stdin: a.interactive,
        tty: a.tty,
    };
    let code = rt
        .exec_attached(&a.name, &ex, Output::Inherit, attach)
        .map_err(fail)?;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// How `ps` shows a container's status: `running`, `exited (0)`, `exited (137, oom-killed)`.
pub fn status_text(s: &State) -> String {
    match s.status {
        Status::Running | Status::Created | Status::Checkpointed => s.status.to_string(),
        Status::Exited => {
            let mut parts = Vec::new();
            match (s.exit_unknown, s.exit_code) {
                (true, _) | (false, None) => parts.push("status unknown".to_string()),
                (false, Some(c)) => parts.push(c.to_string()),
            }
            if let Some(sig) = s.signal {
                parts.push(format!("signal {}", distill_runtime::signal_name(sig)));
            }
            if s.oom_killed {
                parts.push("oom-killed".into());
            }
            if let Some(e) = &s.error {
                parts.push(format!("failed: {e}"));
            }
            format!("exited ({})", parts.join(", "))
        }
    }
}

fn ago(ms: u64) -> String {
    let now = distill_runtime::state::now_ms();
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// `distill ps`.
pub fn ps(state: &Path, json: bool, all: bool, format: Option<&str>) -> Result<(), Failure> {
    let json = match format {
        None | Some("table") => json,
        Some("json") => true,
        Some(f) => {
            return Err(refused(anyhow::anyhow!(
                "--format {f:?}: use json or table"
            )))
        }
    };
    // Read-only: no runtime (no cgroup detection), no lock.
    let root = distill_runtime::StateRoot::open(state).map_err(|e| fail(e.into()))?;
    let list: Vec<State> = root
        .list()
        .map_err(|e| fail(e.into()))?
        .into_iter()
        .filter(|s| all || s.status != Status::Exited)
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<24} {:<20} {:<8} {:<12} {:<30} COMMAND",
        "NAME", "IMAGE", "PID", "CREATED", "STATUS"
    );
    for s in &list {
        let pid = match (s.status, s.pid) {
            (Status::Running, Some(p)) => p.to_string(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<20} {:<8} {:<12} {:<30} {}",
            s.name,
            if s.config.image.is_empty() {
                "-"
            } else {
                &s.config.image
            },
            pid,
            ago(s.created_ms),
            status_text(s),
            s.config.argv.join(" ")
        );
    }
    Ok(())
}

/// `distill inspect NAME...`: the committed (reconciled) state as JSON.
pub fn inspect(state: &Path, names: &[String]) -> Result<(), Failure> {
    let root = distill_runtime::StateRoot::open(state).map_err(|e| fail(e.into()))?;
    let mut all = Vec::new();
    for n in names {
        all.push(root.inspect(n).map_err(|e| fail(e.into()))?);
    }
    if all.len() == 1 {
        println!("{}", serde_json::to_string_pretty(&all[0])?);
    } else {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// `distill wait NAME...`: prints each exit code; fails if one is unknown.
pub fn wait(state: &Path, names: &[String]) -> Result<(), Failure> {
    let rt = runtime(state)?;
    let mut unknown = Vec::new();
    for n in names {
        let s = rt.wait(n).map_err(fail)?;
        match (s.exit_unknown, s.exit_code) {
            (false, Some(c)) => println!("{c}"),
            _ => {
                println!("unknown");
                unknown.push(n.clone());
            }
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "the exit status of {} is unknown (its monitor died)",
            unknown.join(", ")
        )
        .into())
    }
}

/// `distill stop [-t S] NAME...`.
pub fn stop(state: &Path, timeout: Option<u64>, names: &[String]) -> Result<(), Failure> {
    let rt = runtime(state)?;
    for n in names {
        rt.stop(n, timeout.map(Duration::from_secs)).map_err(fail)?;
        println!("{n}");
    }
    Ok(())
}

/// `distill kill [-s SIG] NAME...`.
pub fn kill(state: &Path, signal: &str, names: &[String]) -> Result<(), Failure> {
    let sig = parse_signal(signal).map_err(fail)?;
    let rt = runtime(state)?;
    for n in names {
        rt.kill(n, sig).map_err(fail)?;
        println!("{n}");
    }
    Ok(())
}

/// `distill rm [-f] NAME...`.
pub fn rm(state: &Path, force: bool, names: &[String]) -> Result<(), Failure> {
    let rt = runtime(state)?;
    for n in names {
        rt.rm(n, force).map_err(fail)?;
        println!("{n}");
    }
    Ok(())
}

// The arguments of `distill commit` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Add a label to the new image's config (`KEY=VALUE`; over the base's); may repeat.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// The container (running or exited).
    name: String,
    /// The new image's name, e.g. `myapp:seeded` (`:latest` when no tag is given).
    image: String,
}

/// `distill commit NAME IMAGE [--label K=V]...`: prints the new image's digest.
pub fn commit(root: &Path, state: &Path, json: bool, a: CommitArgs) -> Result<(), Failure> {
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(refused(anyhow::anyhow!(
                    "--label {l:?}: expected KEY=VALUE with a non-empty KEY"
                )))
            }
        }
    }
    let rt = Runtime::new(state).map_err(fail)?;
    let images = Images::new(root);
    let (rec, fresh) = rt
        .commit(&a.name, &images, &a.image, &labels)
        .map_err(|e| {
            let f = fail(e);
            Failure {
                code: f.code,
                error: anyhow::anyhow!("commit {}: {}", a.name, f.error),
            }
        })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        eprintln!(
            "{} {}",
            if fresh {
                "committed"
            } else {
                "already present:"
            },
            rec.name.as_deref().unwrap_or("<none>")
        );
        println!("{}", rec.digest);
    }
    Ok(())
}

/// `distill update NAME [limits]`: prints the limits now in force.
pub fn update(state: &Path, json: bool, a: UpdateArgs) -> Result<(), Failure> {
    let new = a.limits.limits()?;
    if new.is_empty() {
        return Err(refused(anyhow::anyhow!(
            "update {}: give at least one limit (--memory, --cpus, --cpu-shares, --pids-limit, --blkio-weight, --device-*)",
            a.name
        )));
    }
    let rt = runtime(state)?;
    let merged = rt.update(&a.name, &new).map_err(fail)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&merged)?);
    } else {
        println!("{}", a.name);
    }
    Ok(())
}
