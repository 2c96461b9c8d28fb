//! `distill-logd`: runs the log daemon standalone (the same as `distill logd`), for tests,
//! benchmarks and hosts without the full CLI.
//!
//! Usage: `distill-logd --state-dir DIR [--lines N] [--bytes N] [--line-max N]
//! [--persist DIR [--max-size BYTES] [--max-files N]]`

use std::path::PathBuf;
use std::process::ExitCode;

use distill_memlogd::{run_daemon, Config, PersistConfig};

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let mut state_dir: Option<PathBuf> = None;
    let mut cfg = Config::new("");
    let mut persist: Option<PersistConfig> = None;
    let (mut max_size, mut max_files) = (None, None);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag} takes a number, not {v:?}"))
        }
        match a.as_str() {
            "--state-dir" => state_dir = Some(val()?.into()),
            "--lines" => cfg.lines = num(&a, val()?)?,
            "--bytes" => cfg.bytes = num(&a, val()?)?,
            "--line-max" => cfg.line_max = num(&a, val()?)?,
            "--persist" => persist = Some(PersistConfig::new(val()?)),
            "--max-size" => max_size = Some(num(&a, val()?)?),
            "--max-files" => max_files = Some(num(&a, val()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    cfg.state_dir = state_dir.ok_or("--state-dir DIR is required")?;
    if let Some(mut p) = persist {
        if let Some(s) = max_size {
            p.max_size = s;
        }
        if let Some(n) = max_files {
            p.max_files = n;
        }
        cfg.persist = Some(p);
    } else if max_size.is_some() || max_files.is_some() {
        return Err("--max-size and --max-files need --persist DIR".into());
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("distill-logd: {e}");
            return ExitCode::from(2);
        }
    };
    match run_daemon(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("distill-logd: {e}");
            ExitCode::FAILURE
        }
    }
}
