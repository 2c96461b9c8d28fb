//! Running a package's build steps hermetically in the sandbox.
//!
//! The sandbox root is an empty tmpfs holding only: every declared input, read-only, at
//! `/store/<store-name>`; the output, writable, at `/store/<own store-name>` (`$out`); a
//! writable `/build` (the working directory); a tmpfs `/tmp`; a minimal `/dev` and `/proc`.
//! A package with `root = "pkg"` also gets that package's top-level entries, read-only, at `/`.
//! New mount, pid, net (loopback only), uts and ipc namespaces; hostname `distill`; umask 022;
//! a fixed environment and nothing inherited.
//!
//! The step is root only inside a user namespace of its own ([`build_ids`]): uid and gid 0
//! there are host ids 2000000000 and up, so it has no privilege over anything of the host
//! (host root's files, the store's included, are "other" to it: readable, not writable), and
//! its namespace is created after the mounts, so it cannot mount, remount or set the hostname
//! either. Docker's default capabilities (of that namespace), `no_new_privs`, Docker's
//! default seccomp filter, and every mount `nosuid` and `nodev` (except the host's
//! `/dev/{null,zero,full,random,urandom,tty}` and the sandbox's own devpts) complete it.
//! `$out` and `/build` are handed to the build ids before the first step
//! ([`give_to_build_user`]); the store normalizes the output's owners back to 0:0.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use distill_sandbox::{IdMap, Mount, Namespaces, Proc, Root, SeccompFilter, Spec, Stdio};

use crate::plan::SANDBOX_STORE;

/// How many lines of a failed step's output the error shows.
pub const TAIL_LINES: usize = 20;

/// The ids of the user namespace every build step runs in: [`IdMap::BUILD`] (see there why
/// these), unless distill runs in a user namespace without them ([`IdMap::build`]).
pub fn build_ids() -> IdMap {
    static IDS: std::sync::OnceLock<IdMap> = std::sync::OnceLock::new();
    *IDS.get_or_init(IdMap::build)
}

/// Makes `dir` and everything below it (symlinks themselves, not followed) owned by the
/// build's root ([`build_ids`]), so that a step may write there: `$out` (with what was
/// unpacked into it) and `/build`.
pub fn give_to_build_user(dir: &Path) -> std::io::Result<()> {
    let (uid, gid) = (build_ids().host_uid, build_ids().host_gid);
    let fail = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("chown {}: {e}", p.display()))
    };
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(|e| fail(dir, e))?;
    if !std::fs::symlink_metadata(dir)
        .map_err(|e| fail(dir, e))?
        .is_dir()
    {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).map_err(|e| fail(dir, e))? {
        give_to_build_user(&e.map_err(|e| fail(dir, e))?.path())?;
    }
    Ok(())
}

/// One input as the sandbox sees it.
pub struct SandboxInput {
    /// Manifest name (exported as an env var, see [`distill_manifest::input_env_name`]).
    pub name: String,
    /// Store name (`<digest>-<name>-<version>`).
    pub store_name: String,
    /// Path on the host.
    pub host_path: PathBuf,
}

/// Everything needed to run one package's steps.
pub struct StepContext<'a> {
    /// Package name, for messages.
    pub package: &'a str,
    /// Declared inputs.
    pub inputs: &'a [SandboxInput],
    /// A package whose top-level entries become the sandbox's `/`.
    pub root: Option<&'a SandboxInput>,
    /// The package's own store name (where `$out` points inside).
    pub out_store_name: &'a str,
    /// The host directory that receives the output.
    pub out_host: &'a Path,
    /// The host directory mounted at `/build`.
    pub build_host: &'a Path,
    /// Extra environment from the manifest.
    pub env: &'a [(String, String)],
    /// The shell prefix (`sh -e -c`), `$name` references not yet expanded.
    pub shell: &'a [String],
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: i64,
}

/// A step that did not succeed.
#[derive(Debug)]
pub struct StepFailure {
    /// What happened (exit code, signal, or sandbox error).
    pub what: String,
    /// The last lines of its output.
    pub tail: Vec<String>,
}

fn sandbox_path(store_name: &str) -> PathBuf {
    Path::new(SANDBOX_STORE).join(store_name)
}

impl StepContext<'_> {
    /// The fixed environment of every step.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut path = Vec::new();
        for i in self.inputs {
            for sub in ["bin", "usr/bin", "sbin", "usr/sbin"] {
                if i.host_path.join(sub).is_dir() {
                    path.push(sandbox_path(&i.store_name).join(sub).display().to_string());
                }
            }
        }
        if self.root.is_some() {
            for p in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
                path.push(p.to_string());
            }
        }
        // Later entries win: the fixed variables, then the inputs' variables, then the
        // manifest's `env` (validation keeps it off the reserved names).
        let mut env: std::collections::BTreeMap<String, String> = [
            ("PATH".to_string(), path.join(":")),
            ("HOME".to_string(), "/homeless".to_string()),
            ("TMPDIR".to_string(), "/tmp".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
            ("LC_ALL".to_string(), "C".to_string()),
            ("SOURCE_DATE_EPOCH".to_string(), self.epoch.to_string()),
            (
                "out".to_string(),
                sandbox_path(self.out_store_name).display().to_string(),
            ),
        ]
        .into_iter()
        .collect();
        for i in self.inputs {
            if let Some(var) = distill_manifest::input_env_name(&i.name) {
                env.insert(var, sandbox_path(&i.store_name).display().to_string());
            }
        }
        for (k, v) in self.env {
            env.insert(k.clone(), v.clone());
        }
        env.into_iter().collect()
    }

    /// The shell prefix with `$name` at the start of an argument replaced by its value.
    pub fn expand_shell(&self, env: &[(String, String)]) -> Vec<String> {
        self.shell
            .iter()
            .map(|arg| {
                let Some(rest) = arg.strip_prefix('$') else {
                    return arg.clone();
                };
                let (var, tail) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                match env.iter().find(|(k, _)| k == var) {
                    Some((_, v)) => format!("{v}{tail}"),
                    None => arg.clone(),
                }
            })
            .collect()
    }

    fn mounts(&self) -> Vec<Mount> {
        let mut mounts = Vec::new();
        if let Some(root) = self.root {
            if let Ok(rd) = std::fs::read_dir(&root.host_path) {
                let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
                entries.sort_by_key(|e| e.file_name());
                for e in entries {
                    let dst = Path::new("/").join(e.file_name());
                    if dst == Path::new("/store")
                        || dst == Path::new("/build")
                        || dst == Path::new("/tmp")
                        || dst == Path::new("/dev")
                        || dst == Path::new("/proc")
                    {
                        continue;
                    }
                    let ft = match e.file_type() {
                        Ok(ft) => ft,
                        Err(_) => continue,
                    };
                    if ft.is_symlink() {
                        if let Ok(target) = std::fs::read_link(e.path()) {
                            mounts.push(Mount::Symlink { target, dst });
                        }
                    } else {
                        mounts.push(Mount::Bind {
                            src: e.path(),
                            dst,
                            readonly: true,
                            recursive: false,
                        });
                    }
                }
            }
        }
        for i in self.inputs {
            mounts.push(Mount::Bind {
                src: i.host_path.clone(),
                dst: sandbox_path(&i.store_name),
                readonly: true,
                recursive: false,
            });
        }
        mounts.push(Mount::Bind {
            src: self.out_host.to_path_buf(),
            dst: sandbox_path(self.out_store_name),
            readonly: false,
            recursive: false,
        });
        mounts.push(Mount::Bind {
            src: self.build_host.to_path_buf(),
            dst: PathBuf::from("/build"),
            readonly: false,
            recursive: false,
        });
        mounts.push(Mount::Tmpfs {
            dst: PathBuf::from("/tmp"),
            size: None,
            mode: 0o1777,
        });
        mounts.push(Mount::Dir {
            dst: PathBuf::from("/homeless"),
            mode: 0o555,
        });
        mounts
    }

    /// Run one step; `on_line` sees every output line as it comes.
    pub fn run(&self, step: &str, mut on_line: impl FnMut(&str)) -> Result<(), StepFailure> {
        let env = self.environment();
        let mut argv: Vec<OsString> = self
            .expand_shell(&env)
            .into_iter()
            .map(OsString::from)
            .collect();
        argv.push(step.into());
        let (read, write) = pipe().map_err(|e| StepFailure {
            what: format!("cannot create a pipe: {e}"),
            tail: Vec::new(),
        })?;
        let write2 = write.try_clone().map_err(|e| StepFailure {
            what: format!("cannot duplicate a pipe: {e}"),
            tail: Vec::new(),
        })?;
        let spec = Spec {
            argv,
            env: env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            cwd: PathBuf::from("/build"),
            root: Root::Tmpfs,
            readonly_root: false,
            mounts: self.mounts(),
            // mount, pid, net (loopback only), uts, ipc
            namespaces: Namespaces::all(),
            hostname: Some("distill".into()),
            loopback: true,
            dev: true,
            proc: Proc::Mount,
            sys: false,
            umask: 0o022,
            // Root of its own user namespace (ids of that namespace).
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            user_namespace: Some(build_ids()),
            no_new_privs: true,
            capabilities: Some(distill_sandbox::DOCKER_DEFAULT_CAPS.to_vec()),
            seccomp: Some(SeccompFilter::docker_default()),
            rlimits: Vec::new(),
            stdin: Stdio::Null,
            stdout: Stdio::Fd(write),
            stderr: Stdio::Fd(write2),
            die_with_parent: true,
            ..Spec::default()
        };
        let child = distill_sandbox::spawn(&spec);
        // The parent's copies of the write ends live in `spec`; drop them so EOF arrives.
        drop(spec);
        let mut child = child.map_err(|e| StepFailure {
            what: e.to_string(),
            tail: Vec::new(),
        })?;
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES + 1);
        let mut reader = BufReader::new(std::fs::File::from(read));
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches('\n');
                    on_line(line);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_string());
                }
            }
        }
        let status = child.wait().map_err(|e| StepFailure {
            what: e.to_string(),
            tail: tail.iter().cloned().collect(),
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(StepFailure {
                what: status.to_string(),
                tail: tail.into_iter().collect(),
            })
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_env_overrides_fixed_variables_it_may_set() {
        let dir = tempfile::tempdir().unwrap();
        let env = [("TMPDIR".to_string(), "/tmp/x".to_string())];
        let ctx = StepContext {
            package: "p",
            inputs: &[],
            root: None,
            out_store_name: "0123-p-0",
            out_host: dir.path(),
            build_host: dir.path(),
            env: &env,
            shell: &[],
            epoch: 0,
        };
        let got = ctx.environment();
        // "/tmp" sorts before "/tmp/x": a sort-and-dedup would have kept the fixed value.
        assert!(
            got.contains(&("TMPDIR".to_string(), "/tmp/x".to_string())),
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|(k, _)| k == "TMPDIR").count(), 1);
        let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "the environment is sorted");
    }
}
