//! Pinning real Debian packages with the machine's apt (needs `apt-get update` to have run and
//! the apt sources to be reachable for the download check).

use std::path::Path;
use std::process::Command;

use distill_manifest::pin::{pin_debs, render_sources, PinError};
use distill_manifest::{Manifest, SourceKind};
use sha2::{Digest, Sha256};

fn apt_candidate(name: &str) -> String {
    let out = Command::new("apt-cache")
        .args(["policy", name])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|c| c.trim().to_string())
        .expect("apt knows the package")
}

#[test]
fn pins_busybox_static_and_matches_the_downloaded_deb() {
    let pins = pin_debs(&["busybox-static".to_string()], false).unwrap();
    assert_eq!(pins.len(), 1);
    let p = &pins[0];
    assert_eq!(p.package, "busybox-static");
    assert_eq!(p.source_name, "busybox-static");
    assert_eq!(p.version, apt_candidate("busybox-static"));
    assert_eq!(p.arch, "amd64");
    assert!(
        p.filename.starts_with("pool/") && p.filename.ends_with(".deb"),
        "{}",
        p.filename
    );

    // Download that exact version with apt and hash it.
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("apt-get")
        .args(["download", "-q", &format!("{}={}", p.package, p.version)])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "apt-get download failed");
    let debs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let bytes = std::fs::read(&debs[0]).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), p.sha256);

    // The rendered entry is a valid manifest source that says the same thing.
    let text = format!(
        "version = 1\n{}\n[package.bb]\nunpack = [\"busybox-static\"]\n",
        render_sources(&pins)
    );
    let m = Manifest::parse_str(&text, Path::new("pinned.toml")).unwrap();
    let src = &m.sources["busybox-static"];
    assert_eq!(src.sha256, p.sha256);
    assert_eq!(
        src.kind,
        SourceKind::Deb {
            name: p.package.clone(),
            version: p.version.clone(),
            arch: p.arch.clone()
        }
    );
}

#[test]
fn closure_follows_depends_and_first_alternatives() {
    // adduser -> passwd -> libpam0g -> (debconf | debconf-2.0): the first alternative wins,
    // so cdebconf (a provider of debconf-2.0) must not be pulled in.
    let pins = pin_debs(&["adduser".to_string()], true).unwrap();
    let names: Vec<&str> = pins.iter().map(|p| p.package.as_str()).collect();
    for expected in [
        "adduser",
        "passwd",
        "libc6",
        "libpam0g",
        "debconf",
        "libgcc-s1",
        "gcc-12-base",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"cdebconf"),
        "second alternative pulled in: {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "sorted by name, no duplicates");
    for p in &pins {
        assert_eq!(p.version, apt_candidate(&p.package));
        assert_eq!(p.sha256.len(), 64);
    }
    // Deterministic.
    assert_eq!(pin_debs(&["adduser".to_string()], true).unwrap(), pins);

    // Names with '.' (libbz2-1.0 style) render as quoted keys and parse back.
    let text = format!("version = 1\n{}", render_sources(&pins));
    let m = Manifest::parse_str(&text, Path::new("pinned.toml")).unwrap();
    assert_eq!(m.sources.len(), pins.len());
}

#[test]
fn virtual_dependencies_resolve_to_a_provider() {
    // python3-six depends on the virtual `python3:any`, provided by python3.
    let pins = pin_debs(&["python3-six".to_string()], true).unwrap();
    assert!(pins.iter().any(|p| p.package == "python3"), "{pins:?}");
}

#[test]
fn unknown_package_is_a_clear_error() {
    let err = pin_debs(&["no-such-package-distill".to_string()], false).unwrap_err();
    assert!(matches!(err, PinError::UnknownPackage { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("apt does not know package \"no-such-package-distill\"")
            && !msg.contains('\n'),
        "{msg}"
    );

    let err = pin_debs(&["-o".to_string()], false).unwrap_err();
    assert!(matches!(err, PinError::BadName { .. }), "{err}");

    // A purely virtual package has no candidate; the error names its providers.
    let err = pin_debs(&["debconf-2.0".to_string()], false).unwrap_err();
    let msg = err.to_string();
    assert!(
        // The package's own name contains "debconf": check the providers hint itself.
        matches!(err, PinError::NoCandidate { .. })
            && msg.contains("name one of its providers: ")
            && msg.contains("cdebconf"),
        "{msg}"
    );
}
