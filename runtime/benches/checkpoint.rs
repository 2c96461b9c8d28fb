//! Figures: `checkpoint` and `restore` of a container holding 256 MiB of written anonymous
//! memory (library calls, median of 3 round trips), and the size of its `--export` archive.
//! Needs root, criu 4 (scripts/install-criu) and a C compiler with a static libc (the
//! memory holder is compiled here). The state root is on a tmpfs, as `/run/distill` is.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use distill_runtime::{CheckpointOptions, ContainerConfig, RestoreOptions, Runtime};

const MIB: usize = 256;

const HOLDER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    size_t n = (size_t)MIB << 20;
    char *p = malloc(n);
    if (!p) return 1;
    for (size_t i = 0; i < n; i++) p[i] = (char)(i * 7);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"#;

/// A root with the holder at /hold, placed like a loaded image (`images/<hex>/rootfs`) so
/// that an export can name its image.
/// An image directory `<dir>/images/<hex>/` with its record, as `distill load` leaves one
/// (an export names the image its container runs), whose root holds the memory holder.
fn holder_root(dir: &Path) -> PathBuf {
    let hex = "b".repeat(64);
    let image = dir.join("images").join(&hex);
    let root = image.join("rootfs");
    for d in ["proc", "dev", "sys", "tmp", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let record = distill_oci::ImageRecord {
        name: Some("hold:latest".into()),
        digest: format!("sha256:{hex}"),
        config_digest: format!("sha256:{}", "c".repeat(64)),
        size: 0,
        created: None,
        loaded_at: 0,
        annotations: Default::default(),
    };
    std::fs::write(
        image.join("image.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let src = dir.join("hold.c");
    std::fs::write(&src, HOLDER).unwrap();
    let ok = Command::new("cc")
        .args(["-static", "-O2", &format!("-DMIB={MIB}"), "-o"])
        .arg(root.join("hold"))
        .arg(&src)
        .status()
        .expect("cc (apt-get install gcc libc6-dev)")
        .success();
    assert!(ok, "compiling the memory holder failed");
    root
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.1} ms", d.as_secs_f64() * 1000.0)
}

fn wait_ready(state: &Path, name: &str) {
    let log = state.join(name).join("stdout.log");
    let end = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(Instant::now() < end, "the holder never wrote its memory");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the container (and its 256 MiB) even when a step panics.
struct Cleanup<'a>(&'a Runtime, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.rm(&self.1, true);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = holder_root(tmp.path());
    let tmpfs = common::TmpfsState::new(tmp.path());
    let state = tmpfs.path.clone();
    let rt = Runtime::new(&state).unwrap();
    let name = format!("hold{}", std::process::id());
    let cfg = ContainerConfig {
        name: name.clone(),
        rootfs: rootfs.clone(),
        argv: vec!["/hold".into()],
        ..Default::default()
    };
    rt.run_detached(&cfg).unwrap();
    let cleanup = Cleanup(&rt, name.clone());
    wait_ready(&state, &name);
    let (mut dumps, mut restores) = (Vec::new(), Vec::new());
    let mut images = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = rt.checkpoint(&name, &CheckpointOptions::default()).unwrap();
        dumps.push(t.elapsed());
        images = r.images_bytes;
        let t = Instant::now();
        rt.restore(&name, &RestoreOptions::default()).unwrap();
        restores.push(t.elapsed());
    }
    let tar = tmp.path().join("hold.tar");
    let t = Instant::now();
    let r = rt
        .checkpoint(
            &name,
            &CheckpointOptions {
                export: Some(tar.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let with_export = t.elapsed();
    let tar_bytes = r.export.map(|(_, n)| n).unwrap_or(0);
    drop(cleanup);
    let on = tmpfs.kind();
    drop(tmpfs);
    println!(
        "distill-runtime checkpoint figures ({MIB} MiB of written anonymous memory, median of 3; state root on {})",
        on
    );
    println!("{:-<72}", "");
    println!(
        "checkpoint (criu dump, container stopped)  {}",
        ms(median(dumps))
    );
    println!(
        "restore (criu restore, running again)      {}",
        ms(median(restores))
    );
    println!(
        "checkpoint --export (dump + archive)       {}",
        ms(with_export)
    );
    println!(
        "checkpoint images                          {:8.1} MiB",
        images as f64 / 1048576.0
    );
    println!(
        "export archive                             {:8.1} MiB",
        tar_bytes as f64 / 1048576.0
    );
}
