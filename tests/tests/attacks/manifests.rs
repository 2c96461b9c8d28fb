//! A signed manifest's `file` sources name files its signer put beside it; a path or a
//! symlink that leads elsewhere must not make root read a host file into the cache (or print
//! its sha256 on a wrong pin).

use distill_tests::{sha256_hex, World};

/// A root-only host file outside the manifest's directory: what the attacker wants.
fn secret(w: &World) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = w.path("host-secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shadow");
    let bytes = b"root:$6$not-for-the-cache$:19000:0:99999:7:::\n";
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, sha256_hex(bytes))
}

fn manifest_text(file: &str) -> String {
    let wrong = "0".repeat(64);
    format!(
        "version = 1\n[source.data]\nfile = {file:?}\nsha256 = \"{wrong}\"\n[package.p]\nunpack = []\ninputs = [\"data\"]\nbuild = [\"true\"]\n"
    )
}

/// Nothing of the secret reached the fetch cache or the output.
fn assert_not_leaked(w: &World, out: &str, secret_sha: &str) {
    assert!(
        !out.contains(secret_sha),
        "the secret's sha256 leaked:\n{out}"
    );
    let cache = w.root.join("cache/sha256");
    let cached: Vec<String> = std::fs::read_dir(&cache)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !cached.iter().any(|n| n.contains(secret_sha)),
        "the secret was copied into the cache: {cached:?}"
    );
    assert!(w.store_entries().is_empty(), "{:?}", w.store_entries());
}

#[test]
fn a_file_source_climbing_out_with_dotdot_is_refused() {
    let w = World::new();
    let (path, sha) = secret(&w);
    // From <tmp>/m/manifest.toml up to <tmp>, then down to the secret.
    let rel = format!(
        "../host-secrets/{}",
        path.file_name().unwrap().to_str().unwrap()
    );
    let m = w.manifest("m", &manifest_text(&rel), &[]);
    assert!(
        m.parent().unwrap().join(&rel).is_file(),
        "the path reaches the secret"
    );
    let (run, _) = w.build_json(&m);
    let out = format!("{}{}", run.stdout, run.stderr);
    run.expect_code(2);
    assert!(
        out.contains("source.data.file") && out.contains(".."),
        "the error names the field and why:\n{out}"
    );
    assert_not_leaked(&w, &out, &sha);
}

#[test]
fn a_file_source_through_a_symlink_out_of_the_manifest_dir_is_refused() {
    let w = World::new();
    let (path, sha) = secret(&w);
    let m = w.manifest("m", &manifest_text("data.txt"), &[]);
    // The signature covers the manifest, not what lies beside it: the attacker plants it.
    std::os::unix::fs::symlink(&path, m.parent().unwrap().join("data.txt")).unwrap();
    assert_eq!(
        std::fs::read(m.parent().unwrap().join("data.txt")).unwrap(),
        std::fs::read(&path).unwrap(),
        "the symlink leads to the secret"
    );
    let (run, _) = w.build_json(&m);
    let out = format!("{}{}", run.stdout, run.stderr);
    run.expect_code(1);
    assert!(
        out.contains("data") && out.contains("outside the manifest's directory"),
        "the error names the source and why:\n{out}"
    );
    assert_not_leaked(&w, &out, &sha);
    // A symlink that stays beneath the directory is followed as before.
    let dir = m.parent().unwrap();
    std::fs::remove_file(dir.join("data.txt")).unwrap();
    std::fs::create_dir(dir.join("real")).unwrap();
    std::fs::write(dir.join("real/data.txt"), b"beside the manifest\n").unwrap();
    std::os::unix::fs::symlink("real/data.txt", dir.join("data.txt")).unwrap();
    let (run, _) = w.build_json(&m);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&sha256_hex(b"beside the manifest\n")),
        "a wrong pin of a file beneath names its digest:\n{}",
        run.stderr
    );
}
