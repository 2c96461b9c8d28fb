//! `distill`: build deterministic, minimal, verifiable container images from a signed manifest,
//! and run them. One binary, docker-style subcommands. Exit codes: 0 success, 1 failure,
//! 2 refused input (bad usage, a manifest or signature that is refused).
//!
//! The command line is clap's derive; it is on the path of every `run`, so [`parse`] builds
//! only the arguments of the subcommand invoked (`defer`) and never frees what it built.
//!
//! For the same reason the binary has its own C `main` (`no_main`) instead of std's: std's
//! runtime set-up finds the main thread's stack by reading `/proc/self/maps` and installs a
//! stack-overflow handler on an alternate stack, ~55 us of every command (a static binary
//! that only exits: 0.51 ms with std's `main`, 0.46 ms without). `main` below does what of it
//! distill relies on: standard descriptors open, SIGPIPE ignored, a panic exits 101. A stack
//! overflow is then a plain SIGSEGV, without std's message.

#![cfg_attr(not(test), no_main)]

mod checkpoint_cmd;
mod container_cmd;
mod image_cmd;
mod logs_cmd;
mod private_dirs;
mod store_cmd;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use distill_builder::{BuildOptions, Progress};

/// Exit code for refused input.
const EXIT_REFUSED: u8 = 2;

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Deterministic, minimal, verifiable container images"
)]
struct Cli {
    /// Directory holding the store, the fetch cache and image records.
    #[arg(
        long,
        global = true,
        env = "DISTILL_ROOT",
        default_value = "/var/lib/distill"
    )]
    root: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Directory holding container state and the log daemon's sockets.
    #[arg(
        long,
        global = true,
        env = "DISTILL_STATE",
        default_value = "/run/distill"
    )]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. `defer`: only their names and abouts (these doc comments) go into the command
/// tree up front; a subcommand's arguments are added when it is parsed or its help is shown (see
/// [`parse`]). So the `Args` struct of a variant has no doc comment and no `#[command]`
/// attribute: applied when the subcommand is built, they would replace the variant's about
/// (tests.rs checks that building a subcommand changes nothing its parent shows).
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// OpenPGP keys for signing manifests.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a manifest: writes a detached armored signature `<manifest>.asc`.
    Sign {
        /// The manifest to sign.
        manifest: PathBuf,
        /// The secret key (from `distill key generate`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a manifest's signature, fetch its sources and build its packages into the store.
    Build(BuildArgs),
    /// Rebuild a signed manifest from scratch in a fresh root and compare the image bit for bit.
    Verify {
        /// The manifest.
        manifest: PathBuf,
        /// The image to compare with (default: the one this root last built for the manifest).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Trusted keyring(s), as for build.
        #[arg(long)]
        keyring: Vec<PathBuf>,
        /// Show every build step's output on stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Load an image archive (OCI layout tar or docker-archive): every blob is checked, the
    /// layers are unpacked safely into a plain directory under the root.
    Load {
        /// The archive.
        archive: PathBuf,
    },
    /// List loaded images.
    Images,
    /// Remove loaded images.
    Rmi {
        /// Image names or digests.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Maintain loaded images.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Run a command under the tracer and print every path it touched: the path, the syscall,
    /// the thread id, and whether it existed.
    Trace {
        /// Run inside this directory as the root, in the build sandbox.
        #[arg(long = "in")]
        in_root: Option<PathBuf>,
        /// Working directory (inside the root with --in).
        #[arg(long, short = 'w')]
        workdir: Option<PathBuf>,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Say why a path is in a built image: traced by which probe and syscall, ELF dependency
    /// of what, symlink of what, or which keep rule.
    Why {
        /// The image name (as in the manifest's [image] name).
        image: String,
        /// An absolute path inside the image.
        path: PathBuf,
    },
    /// Inspect and maintain the store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Write pinned source entries for the manifest.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Run a command in a new container (daemonless; -d to detach).
    Run(Box<container_cmd::RunArgs>),
    /// Run a command in a running container (all its namespaces and its cgroup).
    Exec(container_cmd::ExecArgs),
    /// List containers (running ones; -a for all).
    Ps {
        /// Show exited containers too.
        #[arg(short = 'a', long)]
        all: bool,
        /// `json` or `table`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a container's committed state as JSON.
    Inspect {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop containers: the stop signal, a grace period, then SIGKILL.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// The signal (name or number).
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running ones first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Change the resource limits of a running container.
    Update(container_cmd::UpdateArgs),
    /// Dump a running container's processes to disk with CRIU (and stop it, unless
    /// --leave-running); --export writes one archive to restore on another machine.
    Checkpoint(checkpoint_cmd::CheckpointArgs),
    /// Bring a checkpointed container back (same pids, limits, volumes, logs), or import
    /// and restore an archive written by `checkpoint --export`.
    Restore(checkpoint_cmd::RestoreArgs),
    /// Make a new image of a container's image plus its writable directories (/tmp, /run,
    /// --rw paths) as one deterministic layer; a running container is frozen meanwhile.
    Commit(container_cmd::CommitArgs),
    /// Run the log daemon (in the foreground; `run -d` starts it on first use).
    Logd(logs_cmd::LogdArgs),
    /// Show a container's output (or, with --all, every container's lines and events).
    Logs(logs_cmd::LogsArgs),
}

#[derive(Subcommand)]
#[command(defer = true)]
enum KeyCommand {
    /// Generate a signing key: `secret.asc` (keep it private) and `cert.asc` (share it).
    Generate {
        /// Directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The key's user id.
        #[arg(long, default_value = "distill signing key")]
        user_id: String,
    },
}

#[derive(Subcommand)]
#[command(defer = true)]
enum PinCommand {
    /// Pin Debian packages by name: version and sha256 from apt's signed index; or, with
    /// --update, re-pin a manifest's stale pins in place.
    Deb {
        /// Package names.
        #[arg(required_unless_present = "update")]
        names: Vec<String>,
        /// Also pin the dependency closure (Depends and Pre-Depends).
        #[arg(long)]
        with_deps: bool,
        /// Rewrite this manifest's pins that apt no longer serves to apt's candidates, in
        /// place (comments and everything else kept); the manifest must then be re-signed.
        #[arg(long, value_name = "MANIFEST", conflicts_with_all = ["names", "with_deps"])]
        update: Option<PathBuf>,
    },
    /// List a manifest's Debian pins that apt no longer serves (exit 1 if any).
    Check {
        /// The manifest.
        manifest: PathBuf,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// The manifest (its signature is read from `<manifest>.asc`).
    manifest: PathBuf,
    /// A trusted keyring (armored certificates); may repeat. Fallbacks: `DISTILL_KEYRING`,
    /// then `/etc/distill/keyring.asc`.
    #[arg(long)]
    keyring: Vec<PathBuf>,
    /// Show every build step's output on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Write the image into this directory (`<name>.oci.tar` and `<name>.spdx.json`); the
    /// image manifest digest is the last line of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Archive format(s) to write with --out: `oci` (default) or `docker-archive` (also
    /// writes `<name>.docker.tar` for `docker load`).
    #[arg(long, value_enum, default_value = "oci", requires = "out")]
    format: FormatArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Oci,
    DockerArchive,
}

/// An error with the exit code it should give.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

fn refused(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EXIT_REFUSED,
        error: error.into(),
    }
}

/// The process entry point (see the crate documentation for why it is not std's).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    open_standard_fds();
    // SAFETY: setting a signal's disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // (The panic hook has printed the message; 101 is std's exit code for a panic.)
    let code = std::panic::catch_unwind(distill_main).unwrap_or(101);
    // Flushes standard output, as returning from std's `main` would.
    std::process::exit(i32::from(code))
}

/// Makes sure descriptors 0, 1 and 2 are open (on /dev/null if not), as std's runtime does, so
/// that no file distill opens becomes its standard input or output by accident.
#[cfg(not(test))]
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll on three valid pollfd entries; open of a constant path.
    unsafe {
        while libc::poll(fds.as_mut_ptr(), 3, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return;
            }
        }
        for p in fds {
            if p.revents & libc::POLLNVAL != 0
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) < 0
            {
                libc::abort();
            }
        }
    }
}

/// What `distill` does: parse, run, report. Returns the exit code.
#[cfg_attr(test, allow(dead_code))]
fn distill_main() -> u8 {
    let mut cli = parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if logs_through_dependencies(&cli.command) {
        init_logging();
    }
    // Everything below works with absolute paths (sandbox mounts, records); a relative
    // --root means relative to where distill was started.
    if let Ok(abs) = std::path::absolute(&cli.root) {
        cli.root = abs;
    }
    if let Ok(abs) = std::path::absolute(&cli.state) {
        cli.state = abs;
    }
    match run(cli) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("distill: {}", error_line(&f.error));
            f.code
        }
    }
}

/// Warnings by default, more with `DISTILL_LOG` (an `EnvFilter` directive). distill itself
/// reports through its errors and progress output; what this shows comes from dependencies
/// that log (ureq, rustls, goblin, globset), through tracing-subscriber's `log` bridge.
fn init_logging() {
    match tracing_subscriber::EnvFilter::try_from_env("DISTILL_LOG") {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Err(_) => tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Whether `command` runs code of a dependency that logs (fetching, TLS, ELF parsing, keep
/// globs). The container commands do not, and setting the subscriber up is ~60 us of every
/// `run`, `exec` and `ps`: they skip it.
fn logs_through_dependencies(command: &Command) -> bool {
    !matches!(
        command,
        Command::Run(_)
            | Command::Exec(_)
            | Command::Ps { .. }
            | Command::Inspect { .. }
            | Command::Wait { .. }
            | Command::Stop { .. }
            | Command::Kill { .. }
            | Command::Rm { .. }
            | Command::Update(_)
            | Command::Logs(_)
            | Command::Logd(_)
    )
}

/// Parses the command line as `Cli::parse` does (a usage error is exited from by the caller with
/// `clap::Error::exit`: exit code 2, help and version exit 0), but cheaper, because every `run`
/// pays for it: thanks to `defer` on the subcommand enums, clap builds the arguments of the
/// invoked subcommand only, not those of all of them; and the command tree is not freed.
fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|mut matches| {
            Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
        });
    // Not dropped: the process ends soon after parsing and the OS takes its memory back at
    // once, while freeing the tree (every subcommand with its copy of the global arguments)
    // would cost 80-100 K instructions, 5% of a `distill ps`.
    std::mem::forget(command);
    parsed
}

fn run(cli: Cli) -> Result<(), Failure> {
    private_dirs::check(&cli)?;
    match cli.command {
        Command::Key(KeyCommand::Generate { out, user_id }) => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let fpr = distill_manifest::sign::generate_key(&user_id, &out).map_err(refused)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "fingerprint": fpr,
                        "secret": out.join("secret.asc"),
                        "cert": out.join("cert.asc"),
                    })
                );
            } else {
                eprintln!(
                    "wrote {} (keep it private) and {}",
                    out.join("secret.asc").display(),
                    out.join("cert.asc").display()
                );
                println!("{fpr}");
            }
            Ok(())
        }
        Command::Sign { manifest, key } => {
            let sig = distill_manifest::sign::sign_file(&manifest, &key).map_err(refused)?;
            if cli.json {
                println!("{}", serde_json::json!({ "signature": sig }));
            } else {
                println!("{}", sig.display());
            }
            Ok(())
        }
        Command::Build(args) => build(&cli.root, cli.json, args),
        Command::Verify {
            manifest,
            image,
            keyring,
            verbose,
        } => verify(
            &cli.root,
            cli.json,
            &manifest,
            image.as_deref(),
            keyring,
            verbose,
        ),
        Command::Store(cmd) => store_cmd::run(&cli.root, cli.json, cmd),
        Command::Why { image, path } => why(&cli.root, cli.json, &image, &path),
        Command::Trace {
            in_root,
            workdir,
            command,
        } => trace(cli.json, in_root, workdir, command),
        Command::Load { archive } => image_cmd::load(&cli.root, cli.json, &archive),
        Command::Images => image_cmd::list(&cli.root, cli.json),
        Command::Rmi { images } => image_cmd::remove(&cli.root, &images),
        Command::Image(cmd) => image_cmd::run(&cli.root, cli.json, cmd),
        Command::Run(args) => container_cmd::run(&cli.root, &cli.state, cli.json, *args),
        Command::Exec(args) => container_cmd::exec(&cli.state, args),
        Command::Ps { all, format } => {
            container_cmd::ps(&cli.state, cli.json, all, format.as_deref())
        }
        Command::Inspect { names } => container_cmd::inspect(&cli.state, &names),
        Command::Wait { names } => container_cmd::wait(&cli.state, &names),
        Command::Stop { time, names } => container_cmd::stop(&cli.state, time, &names),
        Command::Kill { signal, names } => container_cmd::kill(&cli.state, &signal, &names),
        Command::Rm { force, names } => container_cmd::rm(&cli.state, force, &names),
        Command::Update(args) => container_cmd::update(&cli.state, cli.json, args),
        Command::Checkpoint(args) => checkpoint_cmd::checkpoint(&cli.state, cli.json, args),
        Command::Restore(args) => checkpoint_cmd::restore(&cli.root, &cli.state, args),
        Command::Commit(args) => container_cmd::commit(&cli.root, &cli.state, cli.json, args),
        Command::Logd(args) => logs_cmd::logd(&cli.state, args),
        Command::Logs(args) => logs_cmd::logs(&cli.state, cli.json, args),
        Command::Pin(PinCommand::Check { manifest }) => pin_check(cli.json, &manifest),
        Command::Pin(PinCommand::Deb {
            update: Some(manifest),
            ..
        }) => pin_update(cli.json, &manifest),
        Command::Pin(PinCommand::Deb {
            names,
            with_deps,
            update: None,
        }) => {
            let pins = distill_manifest::pin::pin_debs(&names, with_deps).map_err(refused)?;
            if cli.json {
                let list: Vec<serde_json::Value> = pins
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "source": p.source_name,
                            "package": p.package,
                            "version": p.version,
                            "arch": p.arch,
                            "sha256": p.sha256,
                            "filename": p.filename,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", distill_manifest::pin::render_sources(&pins));
            }
            Ok(())
        }
    }
}

/// A pin error with its exit code: 2 for a manifest that cannot be read or is refused, 1 for
/// apt failing or having nothing to re-pin with.
fn pin_failure(e: distill_manifest::pin::PinError) -> Failure {
    if e.is_refused_input() {
        refused(e)
    } else {
        e.into()
    }
}

/// `distill pin check M`: the stale pins, one line each (or a JSON list); exit 1 if any.
fn pin_check(json: bool, manifest: &Path) -> Result<(), Failure> {
    let check = distill_manifest::pin::check_manifest(manifest).map_err(pin_failure)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&check.stale)?);
    } else if check.stale.is_empty() {
        println!("all {} pins are served", check.pins);
    } else {
        for s in &check.stale {
            println!("{s}");
        }
    }
    if check.stale.is_empty() {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "{} of {} pins in {} are stale; re-pin them with `distill pin deb --update {}`",
        check.stale.len(),
        check.pins,
        manifest.display(),
        manifest.display()
    )
    .into())
}

/// `distill pin deb --update M`: re-pins the stale pins in place and says what changed.
fn pin_update(json: bool, manifest: &Path) -> Result<(), Failure> {
    let update = distill_manifest::pin::update_manifest(manifest).map_err(pin_failure)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&update.changes)?);
    } else if update.changes.is_empty() {
        println!("all {} pins are served; nothing changed", update.pins);
    } else {
        for c in &update.changes {
            println!("{c}");
        }
    }
    if !update.changes.is_empty() {
        let mut sig = manifest.as_os_str().to_owned();
        sig.push(".asc");
        let sig = PathBuf::from(sig);
        let signature = if sig.exists() {
            format!("its signature {} no longer matches", sig.display())
        } else {
            "it is not signed".to_string()
        };
        eprintln!(
            "updated {} of {} pins in {}; {signature}; re-sign it: distill sign {} --key SECRET_KEY (the image digest changes with the pins)",
            update.changes.len(),
            update.pins,
            manifest.display(),
            manifest.display()
        );
    }
    Ok(())
}

/// An error and its causes on one line. The crates' errors name their cause in their own
/// message (and also expose it as `source`), so a cause already in the line is not repeated.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// The keyrings to trust: `--keyring` flags, else `DISTILL_KEYRING` (colon-separated), else
/// `/etc/distill/keyring.asc`.
fn keyrings(flags: Vec<PathBuf>) -> Result<Vec<PathBuf>, Failure> {
    if !flags.is_empty() {
        return Ok(flags);
    }
    if let Some(v) = std::env::var_os("DISTILL_KEYRING") {
        let list: Vec<PathBuf> = std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !list.is_empty() {
            return Ok(list);
        }
    }
    let system = Path::new("/etc/distill/keyring.asc");
    if system.exists() {
        return Ok(vec![system.to_path_buf()]);
    }
    Err(refused(anyhow::anyhow!(
        "no trusted keyring: pass --keyring FILE (e.g. the cert.asc from `distill key generate`), set DISTILL_KEYRING, or install /etc/distill/keyring.asc"
    )))
}

fn build(root: &Path, json: bool, args: BuildArgs) -> Result<(), Failure> {
    let opts = BuildOptions {
        root: root.to_path_buf(),
        keyrings: keyrings(args.keyring)?,
        progress: if json {
            Progress::hidden()
        } else {
            Progress::auto()
        },
        verbose: args.verbose,
        // Recorded in the build record (verify's default reference): absolute, so it means the
        // same file from any working directory.
        out: args.out.map(std::path::absolute).transpose()?,
        format: match args.format {
            FormatArg::Oci => distill_builder::OutputFormat::Oci,
            FormatArg::DockerArchive => distill_builder::OutputFormat::DockerArchive,
        },
    };
    let report = distill_builder::build(&args.manifest, &opts).map_err(|e| Failure {
        code: e.exit_code() as u8,
        error: e.into(),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let built = report.paths.iter().filter(|p| p.built).count();
        eprintln!(
            "signed by {}; {} of {} store paths built",
            report.signer,
            built,
            report.paths.len()
        );
        for p in report.paths.iter().filter(|p| p.kind == "package") {
            println!("{}", p.path.display());
        }
        if let Some(image) = &report.image {
            if let Some(p) = &image.pruned {
                eprintln!(
                    "image {}: full package closure {} bytes in {} files, minimal {} bytes in {} files ({:.1}x smaller)",
                    image.name,
                    p.full.bytes,
                    p.full.files,
                    p.minimal.bytes,
                    p.minimal.files,
                    p.full.bytes as f64 / (p.minimal.bytes.max(1)) as f64
                );
            }
            eprintln!(
                "wrote {} and {}",
                image.archive.display(),
                image.sbom.display()
            );
            if let Some(d) = &image.docker_archive {
                eprintln!("wrote {}", d.display());
            }
            println!("{}", image.digest);
        }
    }
    Ok(())
}

fn verify(
    root: &Path,
    json: bool,
    manifest: &Path,
    image: Option<&Path>,
    keyring: Vec<PathBuf>,
    verbose: bool,
) -> Result<(), Failure> {
    let opts = BuildOptions {
        root: root.to_path_buf(),
        keyrings: keyrings(keyring)?,
        progress: if json {
            Progress::hidden()
        } else {
            Progress::auto()
        },
        verbose,
        out: None,
        format: distill_builder::OutputFormat::Oci,
    };
    let outcome = distill_builder::verify(manifest, image, &opts).map_err(|e| Failure {
        code: e.exit_code() as u8,
        error: e.into(),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    }
    if outcome.identical() {
        if !json {
            eprintln!("rebuilt {} identically", outcome.reference.display());
            println!("{}", outcome.actual);
        }
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "rebuild differs from {}: expected {}, got {}; first difference: {}",
            outcome.reference.display(),
            outcome.expected,
            outcome.actual,
            outcome.difference.as_deref().unwrap_or("unknown")
        )
        .into())
    }
}

fn why(root: &Path, json: bool, image: &str, path: &Path) -> Result<(), Failure> {
    let name = image.split(':').next().unwrap_or(image);
    let store = distill_store::Store::open(root)?;
    let record = store.record("build", name)?.ok_or_else(|| {
        refused(anyhow::anyhow!(
            "no build of image {name:?} is recorded under {}; build it with --out first",
            root.display()
        ))
    })?;
    let report: distill_builder::BuildReport = serde_json::from_value(record.record)
        .map_err(|e| anyhow::anyhow!("the build record of {name:?} is unreadable: {e}"))?;
    let img = report.image.ok_or_else(|| {
        refused(anyhow::anyhow!(
            "the last build of {name:?} wrote no image; build it with --out"
        ))
    })?;
    let Some(pruned) = img.pruned else {
        println!("{}: {name} was not pruned (its manifest has no [[trace.probe]]): every file of its packages is in it", path.display());
        return Ok(());
    };
    match pruned.set.why(path) {
        Some(reasons) => {
            if json {
                println!("{}", serde_json::json!({ "path": path, "reasons": reasons }));
            } else {
                for r in reasons {
                    println!("{}: {r}", path.display());
                }
            }
            Ok(())
        }
        None => Err(anyhow::anyhow!(
            "{} is not in image {name}: no probe touched it, nothing kept depends on it and no keep rule matches",
            path.display()
        )
        .into()),
    }
}

fn trace(
    json: bool,
    in_root: Option<PathBuf>,
    workdir: Option<PathBuf>,
    command: Vec<std::ffi::OsString>,
) -> Result<(), Failure> {
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = match &in_root {
        // Inside a root, the host's environment means nothing: a fixed one.
        Some(_) => vec![
            ("PATH".into(), distill_builder::prune::DEFAULT_PATH.into()),
            ("HOME".into(), "/".into()),
            ("LC_ALL".into(), "C".into()),
        ],
        None => std::env::vars_os().collect(),
    };
    let cwd = match (&workdir, &in_root) {
        (Some(w), _) => w.clone(),
        (None, Some(_)) => PathBuf::from("/"),
        (None, None) => std::env::current_dir()?,
    };
    let root = match in_root {
        Some(r) => Some(std::path::absolute(&r)?),
        None => None,
    };
    let result = distill_tracer::trace(distill_tracer::TraceCommand {
        argv: command,
        env,
        cwd,
        stdin: None,
        root,
    })
    .map_err(refused)?;
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    err.write_all(&result.stderr)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "exit_code": distill_tracer::ProbeOutcome::of(&result).exit_code,
                "stdout": String::from_utf8_lossy(&result.stdout),
                "accesses": result.accesses,
            })
        )?;
    } else {
        // The command's own output goes to stderr, so stdout is only the path list.
        err.write_all(&result.stdout)?;
        for a in &result.accesses {
            writeln!(out, "{a}")?;
        }
    }
    let code = distill_tracer::ProbeOutcome::of(&result).exit_code;
    if code == 0 {
        Ok(())
    } else {
        Err(Failure {
            code: 1,
            error: anyhow::anyhow!("the traced command exited with {code}"),
        })
    }
}
