//! A manifest named by a path relative to the working directory loads with an absolute
//! `dir`. This test changes the process's working directory, so it is alone in its own test
//! binary (each file under tests/ is its own process): no other test can observe the change.

use std::fs;
use std::path::Path;

use distill_manifest::Manifest;

const SHA: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";

#[test]
fn relative_manifest_path_gets_absolute_dir() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("project");
    fs::create_dir(&sub).unwrap();
    fs::write(
        sub.join("manifest.toml"),
        format!("version = 1\n[source.a]\nfile = \"a.txt\"\nsha256 = \"{SHA}\"\n[package.p]\ninputs = [\"a\"]\nbuild = [\"true\"]\n"),
    )
    .unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let rel = Path::new("project/./manifest.toml");
    assert!(rel.is_relative());
    let loaded = Manifest::load(rel).unwrap();
    assert!(loaded.dir.is_absolute(), "{}", loaded.dir.display());
    assert_eq!(
        fs::canonicalize(&loaded.dir).unwrap(),
        fs::canonicalize(&sub).unwrap()
    );
    // Files named by the manifest resolve against that absolute directory, not the cwd.
    assert_eq!(
        loaded.resolve_file(Path::new("a.txt")),
        loaded.dir.join("a.txt")
    );
    assert!(loaded.resolve_file(Path::new("a.txt")).is_absolute());
}
