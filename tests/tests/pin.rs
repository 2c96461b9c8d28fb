//! `distill pin check` and `distill pin deb --update` against the machine's apt: a pin Debian
//! no longer serves is found, named and replaced in place by apt's candidate, and nothing else
//! in the manifest changes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_tests::{workspace, Run, World};

/// A version of busybox-static no Debian archive serves, and a sha256 no file has.
const GONE_VERSION: &str = "1:1.0-0";
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const OLD_POOL: &str = "# pool/main/b/busybox/busybox-static_1.0-0_amd64.deb";

fn apt_cache(args: &[&str]) -> String {
    let out = Command::new("apt-cache")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run apt-cache");
    assert!(out.status.success(), "apt-cache {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// apt's candidate for busybox-static: (version, sha256, Filename).
fn busybox_candidate() -> (String, String, String) {
    let policy = apt_cache(&["policy", "busybox-static"]);
    let version = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|c| c.trim().to_string())
        .expect("apt has a candidate for busybox-static");
    let show = apt_cache(&["show", &format!("busybox-static={version}")]);
    let record = show
        .split("\n\n")
        .find(|r| r.lines().any(|l| l.starts_with("SHA256:")))
        .expect("a record with a SHA256 from a repository");
    let field = |name: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {record}"))
    };
    (version, field("SHA256:"), field("Filename:"))
}

/// examples/busybox-httpd's manifest with busybox-static pinned to [`GONE_VERSION`] (sha256
/// zeros, a `# pool/...` comment above `deb = `), and `extra` appended; written into the
/// world, returned with its text.
fn stale_manifest(w: &World, extra: &str) -> (PathBuf, String) {
    let example =
        std::fs::read_to_string(workspace().join("examples/busybox-httpd/manifest.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_table = false;
    for line in example.lines() {
        if line.starts_with('[') {
            in_table = line == "[source.busybox-deb]";
        }
        if in_table && line.starts_with("deb = ") {
            out.push(OLD_POOL.to_string());
        }
        if in_table && line.starts_with("deb_version = ") {
            out.push(format!("deb_version = \"{GONE_VERSION}\""));
        } else if in_table && line.starts_with("sha256 = ") {
            out.push(format!("sha256 = \"{ZEROS}\""));
        } else {
            out.push(line.to_string());
        }
    }
    let text = format!("{}\n{extra}", out.join("\n"));
    assert!(text.contains(&format!("deb_version = \"{GONE_VERSION}\"")));
    assert!(text.contains(ZEROS));
    let dir = w.path("m");
    std::fs::create_dir_all(&dir).unwrap();
    let m = dir.join("manifest.toml");
    std::fs::write(&m, &text).unwrap();
    (m, text)
}

fn all_output(r: &Run) -> String {
    format!("{}{}", r.stdout, r.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn check_finds_a_pin_apt_no_longer_serves_and_update_replaces_it_in_place() {
    let w = World::new();
    let (m, before) = stale_manifest(&w, "");
    w.sign(&m);
    std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (version, sha256, filename) = busybox_candidate();

    // check: exit 1, naming the source key, the package, the pinned version, apt's candidate.
    let check = w.distill(&["pin", "check", s(&m)]);
    check.expect_code(1);
    let out = all_output(&check);
    for part in [
        "busybox-deb",
        "busybox-static",
        GONE_VERSION,
        "no longer served",
        version.as_str(),
        "distill pin deb --update",
    ] {
        assert!(out.contains(part), "{part:?} missing from:\n{out}");
    }
    let json = w.distill(&["--json", "pin", "check", s(&m)]);
    json.expect_code(1);
    let list: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let list = list.as_array().expect("a JSON list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["source"], "busybox-deb");
    assert_eq!(list[0]["package"], "busybox-static");
    assert_eq!(list[0]["version"], GONE_VERSION);
    assert_eq!(list[0]["apt_serves"]["version"], version.as_str());
    assert_eq!(list[0]["apt_serves"]["sha256"], sha256.as_str());
    assert_eq!(std::fs::read_to_string(&m).unwrap(), before, "check wrote");

    // update: exit 0, naming the change and that the signature no longer matches.
    let update = w.distill(&["pin", "deb", "--update", s(&m)]);
    update.ok();
    assert!(
        update
            .stdout
            .contains(&format!("busybox-static {GONE_VERSION} -> {version}")),
        "{}",
        update.stdout
    );
    assert!(update.stderr.contains("re-sign"), "{}", update.stderr);
    assert!(
        update
            .stderr
            .contains("manifest.toml.asc no longer matches"),
        "{}",
        update.stderr
    );

    // The file has apt's candidate and its sha256; every other line is as it was.
    let after = std::fs::read_to_string(&m).unwrap();
    let old_lines: Vec<&str> = before.lines().collect();
    let new_lines: Vec<&str> = after.lines().collect();
    assert_eq!(old_lines.len(), new_lines.len(), "{after}");
    let mut changed = Vec::new();
    for (old, new) in old_lines.iter().zip(&new_lines) {
        if old != new {
            changed.push((*old, *new));
        }
    }
    let old_version_line = format!("deb_version = \"{GONE_VERSION}\"");
    let new_version_line = format!("deb_version = \"{version}\"");
    let old_sha_line = format!("sha256 = \"{ZEROS}\"");
    let new_sha_line = format!("sha256 = \"{sha256}\"");
    let new_pool = format!("# {filename}");
    assert_eq!(
        changed,
        [
            (OLD_POOL, new_pool.as_str()),
            (old_version_line.as_str(), new_version_line.as_str()),
            (old_sha_line.as_str(), new_sha_line.as_str()),
        ],
        "{after}"
    );
    assert!(after.ends_with('\n') == before.ends_with('\n'));
    assert!(after.starts_with("# distill example: busybox httpd"));
    assert_eq!(
        std::fs::metadata(&m).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert_eq!(distill_tests::pinned_sha256(&m, "busybox-deb"), sha256);
    // No temporary file left beside it.
    let mut names: Vec<String> = std::fs::read_dir(m.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["manifest.toml", "manifest.toml.asc"]);

    // Now every pin is served; a second update changes nothing.
    let check = w.distill(&["pin", "check", s(&m)]);
    check.ok();
    assert!(
        check.stdout.contains("all 1 pins are served"),
        "{}",
        check.stdout
    );
    let again = w.distill(&["pin", "deb", "--update", s(&m)]);
    again.ok();
    assert!(
        again
            .stdout
            .contains("all 1 pins are served; nothing changed"),
        "{}",
        again.stdout
    );
    assert_eq!(std::fs::read_to_string(&m).unwrap(), after);
}

#[test]
fn check_of_a_missing_manifest_is_refused_naming_it() {
    let w = World::new();
    let missing = w.path("no/such/manifest.toml");
    for args in [
        vec!["pin", "check", s(&missing)],
        vec!["pin", "deb", "--update", s(&missing)],
    ] {
        let r = w.distill(&args);
        r.expect_code(2);
        assert!(r.stderr.contains(s(&missing)), "{}", r.stderr);
    }
}

#[test]
fn update_with_a_package_apt_does_not_know_fails_naming_it_and_writes_nothing() {
    let w = World::new();
    let extra = format!(
        "[source.ghost]\ndeb = \"no-such-package-xyz\"\ndeb_version = \"1.0-1\"\nsha256 = \"{ZEROS}\"\n"
    );
    let (m, before) = stale_manifest(&w, &extra);

    let check = w.distill(&["pin", "check", s(&m)]);
    check.expect_code(1);
    let out = all_output(&check);
    for part in [
        "source.ghost",
        "no-such-package-xyz",
        "nothing",
        "busybox-deb",
    ] {
        assert!(out.contains(part), "{part:?} missing from:\n{out}");
    }

    // busybox-deb could be re-pinned, but the update is all or nothing.
    let update = w.distill(&["pin", "deb", "--update", s(&m)]);
    update.expect_code(1);
    for part in ["source.ghost", "no-such-package-xyz", s(&m)] {
        assert!(
            update.stderr.contains(part),
            "{part:?} missing from:\n{}",
            update.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&m).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(m.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left");
}

#[test]
fn update_takes_no_package_names_and_no_with_deps() {
    let w = World::new();
    let (m, before) = stale_manifest(&w, "");
    for args in [
        vec!["pin", "deb", "--update", s(&m), "busybox-static"],
        vec!["pin", "deb", "--update", s(&m), "--with-deps"],
    ] {
        let r = w.distill(&args);
        r.expect_code(2);
        assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
    }
    assert_eq!(std::fs::read_to_string(&m).unwrap(), before);
}
