//! Keys, signing and every verification refusal, on real files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use distill_manifest::sign::{
    generate_key, generate_key_with, revoked_certificate, sign_file, sign_file_at, signature_path,
    verify_file, KeyOptions, SignError, VerifyError,
};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    manifest: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let manifest = root.join("manifest.toml");
    fs::write(
        &manifest,
        "version = 1\n[source.a]\nfile = \"a\"\nsha256 = \"00\"\n",
    )
    .unwrap();
    Fixture {
        _dir: dir,
        root,
        manifest,
    }
}

fn key(root: &Path, name: &str) -> (PathBuf, String) {
    let dir = root.join(name);
    let fpr = generate_key(&format!("{name} <{name}@example.org>"), &dir).unwrap();
    (dir, fpr)
}

fn one_line(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    s
}

#[test]
fn generate_writes_private_secret_and_public_cert() {
    let f = fixture();
    let (dir, fpr) = key(&f.root, "alice");
    assert_eq!(fpr.len(), 40, "v4 fingerprint hex: {fpr}");
    assert!(fpr.chars().all(|c| c.is_ascii_hexdigit()));
    let secret = fs::read_to_string(dir.join("secret.asc")).unwrap();
    let cert = fs::read_to_string(dir.join("cert.asc")).unwrap();
    assert!(
        secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"),
        "{secret}"
    );
    assert!(
        cert.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{cert}"
    );
    let mode = fs::metadata(dir.join("secret.asc"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Refuses to overwrite, and leaves the existing files alone.
    let err = generate_key("someone else", &dir).unwrap_err();
    assert!(matches!(err, SignError::Exists { .. }), "{err}");
    assert!(one_line(&err).contains("secret.asc: already exists"));
    assert_eq!(fs::read_to_string(dir.join("secret.asc")).unwrap(), secret);
}

#[test]
fn good_signature_verifies_to_the_signer() {
    let f = fixture();
    let (dir, fpr) = key(&f.root, "alice");
    let sig = sign_file(&f.manifest, &dir.join("secret.asc")).unwrap();
    assert_eq!(sig, f.root.join("manifest.toml.asc"));
    assert_eq!(sig, signature_path(&f.manifest));
    assert!(fs::read_to_string(&sig)
        .unwrap()
        .starts_with("-----BEGIN PGP SIGNATURE-----"));
    // No temporary files left behind.
    let leftovers: Vec<_> = fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let signer = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap();
    assert_eq!(signer.fingerprint, fpr);
    assert_eq!(signer.user_id.as_deref(), Some("alice <alice@example.org>"));

    // A keyring with several certificates (in two files) also works.
    let (bob, _) = key(&f.root, "bob");
    let ring = f.root.join("ring.asc");
    let both = fs::read_to_string(bob.join("cert.asc")).unwrap()
        + &fs::read_to_string(dir.join("cert.asc")).unwrap();
    fs::write(&ring, both).unwrap();
    assert_eq!(
        verify_file(&f.manifest, std::slice::from_ref(&ring))
            .unwrap()
            .fingerprint,
        fpr
    );
    assert_eq!(
        verify_file(&f.manifest, &[bob.join("cert.asc"), dir.join("cert.asc")])
            .unwrap()
            .fingerprint,
        fpr
    );

    // Re-signing replaces the signature atomically.
    sign_file(&f.manifest, &bob.join("secret.asc")).unwrap();
    let err = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownSigner { .. }), "{err}");
}

#[test]
fn one_changed_byte_is_refused() {
    let f = fixture();
    let (dir, fpr) = key(&f.root, "alice");
    sign_file(&f.manifest, &dir.join("secret.asc")).unwrap();
    let mut bytes = fs::read(&f.manifest).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&f.manifest, &bytes).unwrap();
    let err = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap_err();
    match &err {
        VerifyError::BadSignature { fingerprint, file } => {
            assert_eq!(fingerprint, &fpr);
            assert_eq!(file, &f.manifest);
        }
        other => panic!("expected BadSignature, got {other}"),
    }
    let msg = one_line(&err);
    assert!(msg.starts_with(&f.manifest.display().to_string()), "{msg}");
    assert!(msg.contains("does not verify"), "{msg}");
}

#[test]
fn unknown_signer_is_refused_with_issuer() {
    let f = fixture();
    let (alice, _) = key(&f.root, "alice");
    let (mallory, _) = key(&f.root, "mallory");
    sign_file(&f.manifest, &mallory.join("secret.asc")).unwrap();
    let err = verify_file(&f.manifest, &[alice.join("cert.asc")]).unwrap_err();
    let VerifyError::UnknownSigner { issuer, .. } = &err else {
        panic!("expected UnknownSigner, got {err}")
    };
    // The issuer is mallory's signing subkey, which belongs to mallory's certificate.
    let mallory_cert = fs::read_to_string(mallory.join("cert.asc")).unwrap();
    assert!(issuer.len() == 40 || issuer.len() == 16, "{issuer}");
    assert!(!mallory_cert.is_empty());
    let msg = one_line(&err);
    assert!(
        msg.contains(issuer.as_str()) && msg.contains("not in the keyring"),
        "{msg}"
    );
}

#[test]
fn expired_key_is_refused() {
    let f = fixture();
    let day = Duration::from_secs(86_400);
    let created = SystemTime::now() - 10 * day;
    let dir = f.root.join("old");
    let fpr = generate_key_with(
        "old <old@example.org>",
        &dir,
        &KeyOptions {
            creation_time: Some(created),
            validity: Some(day),
        },
    )
    .unwrap();
    // Signed while the key was valid...
    sign_file_at(
        &f.manifest,
        &dir.join("secret.asc"),
        Some(created + Duration::from_secs(3600)),
    )
    .unwrap();
    // ...but the key has expired since.
    let err = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap_err();
    let VerifyError::KeyExpired { fingerprint, .. } = &err else {
        panic!("expected KeyExpired, got {err}")
    };
    assert_eq!(fingerprint, &fpr);
    let msg = one_line(&err);
    assert!(
        msg.starts_with(&f.manifest.display().to_string()) && msg.contains("has expired"),
        "{msg}"
    );
    // And an expired key cannot make new signatures.
    let err = sign_file(&f.manifest, &dir.join("secret.asc")).unwrap_err();
    assert!(one_line(&err).contains("no usable signing key"), "{err}");
}

#[test]
fn revoked_key_is_refused() {
    let f = fixture();
    let (dir, fpr) = key(&f.root, "alice");
    sign_file(&f.manifest, &dir.join("secret.asc")).unwrap();
    assert!(verify_file(&f.manifest, &[dir.join("cert.asc")]).is_ok());
    let revoked = revoked_certificate(&dir.join("secret.asc"), "laptop stolen").unwrap();
    let ring = f.root.join("revoked.asc");
    fs::write(&ring, revoked).unwrap();
    let err = verify_file(&f.manifest, &[ring]).unwrap_err();
    let VerifyError::KeyRevoked {
        fingerprint,
        reason,
        ..
    } = &err
    else {
        panic!("expected KeyRevoked, got {err}")
    };
    assert_eq!(fingerprint, &fpr);
    assert!(reason.contains("laptop stolen"), "{reason}");
    assert!(one_line(&err).contains("is revoked"));
}

#[test]
fn missing_signature_is_refused() {
    let f = fixture();
    let (dir, _) = key(&f.root, "alice");
    let err = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap_err();
    assert!(matches!(err, VerifyError::MissingSignature { .. }), "{err}");
    let msg = one_line(&err);
    assert!(
        msg.starts_with(&f.manifest.display().to_string())
            && msg.contains("manifest.toml.asc is missing"),
        "{msg}"
    );
}

#[test]
fn keyring_problems_are_refused() {
    let f = fixture();
    let (dir, _) = key(&f.root, "alice");
    sign_file(&f.manifest, &dir.join("secret.asc")).unwrap();

    let err = verify_file(&f.manifest, &[]).unwrap_err();
    assert!(matches!(err, VerifyError::NoKeyring { .. }), "{err}");
    assert!(one_line(&err).starts_with(&f.manifest.display().to_string()));

    let empty = f.root.join("empty.asc");
    fs::write(&empty, "\n").unwrap();
    let err = verify_file(&f.manifest, std::slice::from_ref(&empty)).unwrap_err();
    assert!(matches!(err, VerifyError::KeyringEmpty { .. }), "{err}");
    assert!(one_line(&err).starts_with(&empty.display().to_string()));

    let garbage = f.root.join("garbage.asc");
    fs::write(&garbage, "this is not a key\n").unwrap();
    let err = verify_file(&f.manifest, &[garbage]).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::KeyringUnreadable { .. } | VerifyError::KeyringEmpty { .. }
        ),
        "{err}"
    );

    let absent = f.root.join("absent.asc");
    let err = verify_file(&f.manifest, std::slice::from_ref(&absent)).unwrap_err();
    assert!(
        matches!(err, VerifyError::KeyringUnreadable { .. }),
        "{err}"
    );
    assert!(one_line(&err).starts_with(&absent.display().to_string()));
}

#[test]
fn malformed_signature_is_refused() {
    let f = fixture();
    let (dir, _) = key(&f.root, "alice");
    fs::write(
        signature_path(&f.manifest),
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
    )
    .unwrap();
    let err = verify_file(&f.manifest, &[dir.join("cert.asc")]).unwrap_err();
    assert!(
        matches!(err, VerifyError::MalformedSignature { .. }),
        "{err}"
    );
    one_line(&err);
}

#[test]
fn signing_with_a_public_certificate_is_refused() {
    let f = fixture();
    let (dir, _) = key(&f.root, "alice");
    let err = sign_file(&f.manifest, &dir.join("cert.asc")).unwrap_err();
    assert!(one_line(&err).contains("holds no secret key"), "{err}");
    assert!(!signature_path(&f.manifest).exists());
}
