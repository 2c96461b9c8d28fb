//! `distill store ls | verify | gc`.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use distill_store::{Store, StoreName};

use crate::Failure;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum StoreCommand {
    /// List the valid store paths.
    Ls,
    /// Re-hash every store path and name any that differ from their recorded digest.
    Verify,
    /// Remove store paths that no record (and no --keep) references.
    Gc {
        /// Extra store names to keep, with their closure.
        #[arg(long)]
        keep: Vec<String>,
    },
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn run(root: &Path, json: bool, cmd: StoreCommand) -> Result<(), Failure> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    match cmd {
        StoreCommand::Ls => {
            let paths = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&paths)?);
            } else {
                for p in paths {
                    println!("{}\t{}\t{}", p.name, human(p.size), p.output_hash);
                }
            }
            Ok(())
        }
        StoreCommand::Verify => {
            let report = store.verify()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            if report.is_ok() {
                if !json {
                    eprintln!("{} store paths verified", report.checked);
                }
                Ok(())
            } else {
                let messages = report.messages();
                if !json {
                    for m in &messages {
                        eprintln!("{m}");
                    }
                }
                Err(anyhow::anyhow!(
                    "{} problem(s) among {} store paths; rebuild or `distill store gc` the paths named",
                    messages.len(),
                    report.checked
                )
                .into())
            }
        }
        StoreCommand::Gc { keep } => {
            let mut roots = Vec::new();
            for k in &keep {
                let name: StoreName = k
                    .parse()
                    .map_err(|e| crate::refused(anyhow::anyhow!("--keep {k}: {e}")))?;
                roots.push(name);
            }
            let report = store.gc(&roots)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for r in &report.removed {
                    println!("removed {r}");
                }
                eprintln!(
                    "{} paths removed, {} freed",
                    report.removed.len(),
                    human(report.bytes)
                );
            }
            Ok(())
        }
    }
}
