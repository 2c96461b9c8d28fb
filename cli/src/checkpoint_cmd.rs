//! `distill checkpoint` and `distill restore`: CRIU dumps of running containers, restored
//! in place or, through `--export` / `--import`, under another state root or machine.

use std::path::{Path, PathBuf};

use clap::Args;
use distill_oci::Images;
use distill_runtime::{CheckpointOptions, RestoreOptions, RuntimeError};

use crate::container_cmd::{fail, runtime};
use crate::{refused, Failure};

// The arguments of `distill checkpoint` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// The running container.
    name: String,
    /// Keep the container running after the dump (default: stop it, status `checkpointed`).
    #[arg(long)]
    leave_running: bool,
    /// Also dump established TCP connections (the client must not be in the container).
    #[arg(long)]
    tcp_established: bool,
    /// Also dump file locks.
    #[arg(long)]
    file_locks: bool,
    /// Pre-dump memory, then dump only what changed (needs soft-dirty memory tracking).
    #[arg(long)]
    pre_dump: bool,
    /// Write the images here (default `<state>/<name>/checkpoint`).
    #[arg(long, value_name = "DIR", conflicts_with = "export")]
    image_path: Option<PathBuf>,
    /// Also write one self-contained archive (images, configuration, image digest, the
    /// container's writable files) for `restore --import` elsewhere.
    #[arg(long, value_name = "FILE.tar")]
    export: Option<PathBuf>,
    /// The criu binary (default: found on PATH or in /usr/local/sbin; 4.0 or newer).
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
}

// The arguments of `distill restore` (not a doc comment: see `Command` in main.rs).
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The checkpointed container (not with --import).
    #[arg(required_unless_present = "import", conflicts_with = "import")]
    name: Option<String>,
    /// Restore from this images directory (default: the container's last checkpoint).
    #[arg(long, value_name = "DIR", conflicts_with = "import")]
    image_path: Option<PathBuf>,
    /// Import an archive written by `checkpoint --export` and restore it.
    #[arg(long, value_name = "FILE.tar")]
    import: Option<PathBuf>,
    /// The name of the imported container (default: its name in the archive).
    #[arg(
        long = "name",
        id = "new_name",
        value_name = "NEW",
        requires = "import"
    )]
    new_name: Option<String>,
    /// With --import: the cgroup the restored container's cgroup is made in (as `run
    /// --cgroup-parent`; never the one recorded in the archive).
    #[arg(
        long,
        env = "DISTILL_CGROUP_PARENT",
        default_value = distill_runtime::cgroup::DEFAULT_PARENT,
        value_name = "PARENT"
    )]
    cgroup_parent: String,
    /// With --import: the host directory for each volume of the archived container
    /// (`HOST:TARGET[:ro]`, one per volume; the archive's own host paths are never used).
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "HOST:TARGET[:ro]",
        requires = "import"
    )]
    volume: Vec<String>,
    /// The criu binary (default: found on PATH or in /usr/local/sbin; 4.0 or newer).
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
}

/// Bad input (exit 2) or a failure (exit 1).
fn failure(e: RuntimeError) -> Failure {
    match e {
        RuntimeError::Criu(_) | RuntimeError::Archive { .. } => refused(e),
        e => fail(e),
    }
}

/// `distill checkpoint NAME ...`.
pub fn checkpoint(state: &Path, json: bool, a: CheckpointArgs) -> Result<(), Failure> {
    let rt = runtime(state)?;
    let opts = CheckpointOptions {
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        file_locks: a.file_locks,
        pre_dump: a.pre_dump,
        image_path: a.image_path,
        export: a.export,
        criu: a.criu,
    };
    let r = rt.checkpoint(&a.name, &opts).map_err(failure)?;
    if json {
        let v = serde_json::json!({
            "name": a.name,
            "images": r.images,
            "images_bytes": r.images_bytes,
            "dump_ms": r.dump_time.as_secs_f64() * 1000.0,
            "export": r.export.as_ref().map(|(p, _)| p),
            "export_bytes": r.export.as_ref().map(|(_, n)| n),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", a.name);
    }
    Ok(())
}

/// `distill restore NAME` / `distill restore --import FILE.tar [--name NEW]`.
pub fn restore(root: &Path, state: &Path, a: RestoreArgs) -> Result<(), Failure> {
    let rt = runtime(state)?;
    let s = match &a.import {
        Some(file) => {
            let images = Images::new(root);
            let resolve = |digest: &str| -> Result<PathBuf, String> {
                let rec = images.resolve(digest).map_err(|e| e.to_string())?;
                if rec.digest != digest {
                    return Err(format!("the image found is {}", rec.digest));
                }
                Ok(images.rootfs(&rec))
            };
            let opts = RestoreOptions {
                image_path: None,
                criu: a.criu,
                cgroup_parent: Some(a.cgroup_parent),
                volumes: a
                    .volume
                    .iter()
                    .map(|v| distill_runtime::Volume::parse(v))
                    .collect::<Result<_, _>>()
                    .map_err(refused)?,
            };
            rt.import(file, a.new_name.as_deref(), &resolve, &opts)
                .map_err(failure)?
        }
        None => {
            let name = a.name.ok_or_else(|| {
                refused(anyhow::anyhow!("restore: give NAME or --import FILE.tar"))
            })?;
            let opts = RestoreOptions {
                image_path: a.image_path,
                criu: a.criu,
                cgroup_parent: None,
                volumes: Vec::new(),
            };
            rt.restore(&name, &opts).map_err(failure)?
        }
    };
    println!("{}", s.name);
    Ok(())
}
