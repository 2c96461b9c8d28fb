//! The root and state directories a command uses are checked private to the caller before
//! anything is read or written there (`distill_oci::check_private_dir`: they hold images
//! and containers' files with set-id bits, CVE-2021-41091's class). A missing root is left
//! to be made (0700) by what writes into it, so a refused build still writes nothing; a
//! missing state root is made here (0700), as every container command makes it anyway.
//! Commands that use neither (`key`, `sign`, `pin`, `trace`) touch neither.

use crate::{Cli, Command, Failure};

/// Checks (creating if missing) `--root` and `--state` as `cli`'s command needs them.
pub(crate) fn check(cli: &Cli) -> Result<(), Failure> {
    let c = &cli.command;
    let root = matches!(
        c,
        Command::Build(_)
            | Command::Verify { .. }
            | Command::Load { .. }
            | Command::Images
            | Command::Rmi { .. }
            | Command::Image(_)
            | Command::Why { .. }
            | Command::Store(_)
            | Command::Run(_)
            | Command::Restore(_)
            | Command::Commit(_)
    );
    let state = matches!(
        c,
        Command::Run(_)
            | Command::Exec(_)
            | Command::Ps { .. }
            | Command::Inspect { .. }
            | Command::Wait { .. }
            | Command::Stop { .. }
            | Command::Kill { .. }
            | Command::Rm { .. }
            | Command::Update(_)
            | Command::Checkpoint(_)
            | Command::Restore(_)
            | Command::Commit(_)
            | Command::Logd(_)
            | Command::Logs(_)
    );
    for (wanted, path, what) in [(root, &cli.root, "--root"), (state, &cli.state, "--state")] {
        if !wanted {
            continue;
        }
        let tightened = if what == "--state" {
            distill_oci::ensure_private_dir(path, what)?
        } else {
            distill_oci::check_private_dir(path, what)?
        };
        if let Some(old) = tightened {
            eprintln!(
                "distill: made {what} {} private to its owner (mode {old:04o} -> 0700): it may hold image files with set-id bits",
                path.display()
            );
        }
    }
    Ok(())
}
