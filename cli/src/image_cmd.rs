//! `distill load | images | rmi | image prune`: images loaded on this machine.

use std::path::Path;

use clap::Subcommand;
use distill_oci::Images;
use distill_store::Store;

use crate::Failure;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// Remove images loaded longer ago than a duration, then store paths no record references.
    Prune {
        /// Age, e.g. `7d`, `12h`, `30m`, `0s` (everything).
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
    },
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `distill load FILE`.
pub fn load(root: &Path, json: bool, archive: &Path) -> Result<(), Failure> {
    let images = Images::new(root);
    let (rec, fresh) = images.load(archive).map_err(|e| Failure {
        code: 1,
        error: anyhow::anyhow!("load {}: {e}", archive.display()),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        eprintln!(
            "{} {} ({})",
            if fresh { "loaded" } else { "already loaded" },
            rec.name.as_deref().unwrap_or("<none>"),
            human(rec.size)
        );
        println!("{}", rec.digest);
    }
    Ok(())
}

/// `distill images`.
pub fn list(root: &Path, json: bool) -> Result<(), Failure> {
    let all = Images::new(root).list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<30} {:<20} {:>10}  CREATED", "NAME", "DIGEST", "SIZE");
    for r in all {
        println!(
            "{:<30} {:<20} {:>10}  {}",
            r.name.as_deref().unwrap_or("<none>"),
            &r.digest[..r.digest.len().min(19)],
            human(r.size),
            r.created.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `distill rmi REF...`.
pub fn remove(root: &Path, refs: &[String]) -> Result<(), Failure> {
    let images = Images::new(root);
    for r in refs {
        let rec = images.remove(r).map_err(crate::refused)?;
        println!("removed {}", rec.digest);
    }
    Ok(())
}

/// `distill image prune --older-than D`.
pub fn run(root: &Path, json: bool, cmd: ImageCommand) -> Result<(), Failure> {
    match cmd {
        ImageCommand::Prune { older_than } => {
            let removed = Images::new(root).prune_older_than(older_than)?;
            let gc = if root.join("store").exists() {
                Some(Store::open(root)?.gc(&[])?)
            } else {
                None
            };
            if json {
                let paths: Vec<String> = gc.map(|g| g.removed).unwrap_or_default();
                println!(
                    "{}",
                    serde_json::json!({ "images": removed, "store_paths": paths })
                );
            } else {
                for r in &removed {
                    println!(
                        "removed image {} {}",
                        r.name.as_deref().unwrap_or("<none>"),
                        r.digest
                    );
                }
                if let Some(g) = gc {
                    for p in &g.removed {
                        println!("removed {p}");
                    }
                }
            }
            Ok(())
        }
    }
}
