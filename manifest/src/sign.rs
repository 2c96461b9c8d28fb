//! OpenPGP keys, detached signatures and their verification (sequoia-openpgp).
//!
//! A signed file `F` has its armored detached signature next to it at `F.asc`. Verification
//! takes one or more keyring files (each holding one or more armored certificates) and refuses,
//! each with its own one-line error naming the file: no keyring, an unreadable or empty keyring,
//! a missing `.asc`, a malformed signature, a signer not in the keyring, a revoked key, an
//! expired key, and a signature that does not match the content.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::cert::CertParser;
use openpgp::packet::Signature;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer as StreamSigner};
use openpgp::serialize::SerializeInto;
use openpgp::types::{ReasonForRevocation, RevocationStatus};
use openpgp::{KeyHandle, Packet, PacketPile};
use thiserror::Error;

/// Errors from generating keys and signing.
#[derive(Debug, Error)]
pub enum SignError {
    /// Refusing to overwrite key material.
    #[error("{}: already exists; refusing to overwrite key material (choose another directory or remove it)", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The secret key file could not be parsed or used.
    #[error("{}: {reason}", path.display())]
    BadSecretKey {
        /// The secret key file.
        path: PathBuf,
        /// Why, on one line.
        reason: String,
    },
    /// An OpenPGP operation failed.
    #[error("{}: {action} failed: {reason}", path.display())]
    OpenPgp {
        /// The file being worked on.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error, on one line.
        reason: String,
    },
}

/// Why a signature was refused. `Display` is one line naming the signed file (or keyring).
#[derive(Debug, Error)]
pub enum VerifyError {
    /// No keyring was given.
    #[error("{}: no keyring given to verify the signature against; pass a keyring file holding the signer's certificate", file.display())]
    NoKeyring {
        /// The signed file.
        file: PathBuf,
    },
    /// A keyring could not be read or parsed.
    #[error("{}: keyring unreadable: {reason}; cannot verify {}", keyring.display(), file.display())]
    KeyringUnreadable {
        /// The signed file.
        file: PathBuf,
        /// The keyring file.
        keyring: PathBuf,
        /// Why, on one line.
        reason: String,
    },
    /// A keyring holds no certificate.
    #[error("{}: keyring is empty; it must hold at least one armored OpenPGP certificate to verify {}", keyring.display(), file.display())]
    KeyringEmpty {
        /// The signed file.
        file: PathBuf,
        /// The keyring file.
        keyring: PathBuf,
    },
    /// The signed file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `<file>.asc` does not exist.
    #[error("{}: not signed: signature file {} is missing; sign the file and keep the .asc next to it", file.display(), signature.display())]
    MissingSignature {
        /// The signed file.
        file: PathBuf,
        /// The expected signature file.
        signature: PathBuf,
    },
    /// The `.asc` is not a usable OpenPGP signature.
    #[error("{}: malformed signature: {reason}", signature.display())]
    MalformedSignature {
        /// The signature file.
        signature: PathBuf,
        /// Why, on one line.
        reason: String,
    },
    /// No certificate in the keyrings holds the key that made the signature.
    #[error("{}: signed by {issuer}, which is not in the keyring; add the signer's certificate to the keyring if you trust it", file.display())]
    UnknownSigner {
        /// The signed file.
        file: PathBuf,
        /// The issuer fingerprint (or key id) named by the signature, hex.
        issuer: String,
    },
    /// The signature does not match the file's bytes.
    #[error("{}: signature by {fingerprint} does not verify: the file was changed after it was signed (or the .asc belongs to another file)", file.display())]
    BadSignature {
        /// The signed file.
        file: PathBuf,
        /// The signer's certificate fingerprint.
        fingerprint: String,
    },
    /// The signer's certificate or signing key has expired.
    #[error("{}: signer {fingerprint} has expired ({detail}); ask the signer for a renewed certificate", file.display())]
    KeyExpired {
        /// The signed file.
        file: PathBuf,
        /// The signer's certificate fingerprint.
        fingerprint: String,
        /// Since when, on one line.
        detail: String,
    },
    /// The signer's certificate or signing key has been revoked.
    #[error("{}: signer {fingerprint} is revoked{reason}; do not trust this signature", file.display())]
    KeyRevoked {
        /// The signed file.
        file: PathBuf,
        /// The signer's certificate fingerprint.
        fingerprint: String,
        /// `: <reason>` from the revocation, or empty.
        reason: String,
    },
    /// The key exists but could not have made this signature (not valid or not signing-capable
    /// when it was made, or refused by policy).
    #[error("{}: signer {fingerprint} cannot vouch for this signature: {reason}", file.display())]
    KeyUnusable {
        /// The signed file.
        file: PathBuf,
        /// The signer's certificate fingerprint.
        fingerprint: String,
        /// Why, on one line.
        reason: String,
    },
}

/// Who signed a verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signer's certificate (primary key) fingerprint, uppercase hex.
    pub fingerprint: String,
    /// The certificate's primary user id, if it has a valid one.
    pub user_id: Option<String>,
}

/// Options for [`generate_key_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyOptions {
    /// Creation time of the key (default: now).
    pub creation_time: Option<SystemTime>,
    /// How long after creation the key expires (default: never).
    pub validity: Option<Duration>,
}

fn one_line(s: impl std::fmt::Display) -> String {
    crate::error::one_line(&format!("{s:#}"))
}

/// `<path>.asc`: where the detached signature of `path` lives.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".asc");
    PathBuf::from(s)
}

/// Generates a new signing key for `user_id` (no expiry) and writes `secret.asc` (mode 0600)
/// and `cert.asc` into `out_dir` (created if missing). Returns the fingerprint (uppercase hex).
/// Refuses to overwrite either file.
pub fn generate_key(user_id: &str, out_dir: &Path) -> Result<String, SignError> {
    generate_key_with(user_id, out_dir, &KeyOptions::default())
}

/// [`generate_key`] with an explicit creation time and validity period.
pub fn generate_key_with(
    user_id: &str,
    out_dir: &Path,
    options: &KeyOptions,
) -> Result<String, SignError> {
    let secret_path = out_dir.join("secret.asc");
    let cert_path = out_dir.join("cert.asc");
    for p in [&secret_path, &cert_path] {
        if p.symlink_metadata().is_ok() {
            return Err(SignError::Exists { path: p.clone() });
        }
    }
    fs::create_dir_all(out_dir).map_err(|source| SignError::Io {
        path: out_dir.to_path_buf(),
        action: "cannot create key directory",
        source,
    })?;
    let pgp = |action: &'static str| {
        let path = out_dir.to_path_buf();
        move |e: anyhow::Error| SignError::OpenPgp {
            path,
            action,
            reason: one_line(e),
        }
    };
    let mut builder = CertBuilder::new()
        .add_userid(user_id)
        .add_signing_subkey()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_validity_period(options.validity);
    if let Some(t) = options.creation_time {
        builder = builder.set_creation_time(t);
    }
    let (cert, _revocation) = builder.generate().map_err(pgp("key generation"))?;
    let secret = cert
        .as_tsk()
        .armored()
        .to_vec()
        .map_err(pgp("serializing the secret key"))?;
    let public = cert
        .armored()
        .to_vec()
        .map_err(pgp("serializing the certificate"))?;
    write_new(&secret_path, &secret, 0o600)?;
    if let Err(e) = write_new(&cert_path, &public, 0o644) {
        // Keep the pair consistent: no secret key without its certificate.
        let _ = fs::remove_file(&secret_path);
        return Err(e);
    }
    Ok(cert.fingerprint().to_hex())
}

/// Creates `path` (which must not exist) with `mode`, writes `data` and syncs it.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), SignError> {
    let io_err = |action: &'static str| {
        let path = path.to_path_buf();
        move |source: io::Error| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                SignError::Exists { path }
            } else {
                SignError::Io {
                    path,
                    action,
                    source,
                }
            }
        }
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("cannot create"))?;
    f.write_all(data).map_err(io_err("cannot write"))?;
    f.sync_all().map_err(io_err("cannot sync"))?;
    Ok(())
}

/// Writes the signature `data` to `path` atomically, mode 0644
/// ([`crate::atomic::write_atomic`]).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SignError> {
    use std::os::unix::fs::PermissionsExt;
    crate::atomic::write_atomic(path, data, fs::Permissions::from_mode(0o644), None).map_err(
        |source| SignError::Io {
            path: path.to_path_buf(),
            action: "cannot write the signature",
            source,
        },
    )
}

/// Reads the one certificate with secret key material from `secret_key`.
fn read_secret_cert(secret_key: &Path) -> Result<Cert, SignError> {
    let bytes = fs::read(secret_key).map_err(|source| SignError::Io {
        path: secret_key.to_path_buf(),
        action: "cannot read secret key",
        source,
    })?;
    let bad = |reason: String| SignError::BadSecretKey {
        path: secret_key.to_path_buf(),
        reason,
    };
    let certs: Vec<Cert> = CertParser::from_bytes(&bytes)
        .map_err(|e| bad(format!("not an OpenPGP key: {}", one_line(e))))?
        .collect::<openpgp::Result<_>>()
        .map_err(|e| bad(format!("not an OpenPGP key: {}", one_line(e))))?;
    let mut secret: Vec<Cert> = certs.into_iter().filter(|c| c.is_tsk()).collect();
    match secret.len() {
        0 => Err(bad(
            "holds no secret key (is it a public certificate?)".into()
        )),
        1 => Ok(secret.remove(0)),
        n => Err(bad(format!(
            "holds {n} secret keys; give a file with exactly one"
        ))),
    }
}

/// Signs `path` with the signing key in `secret_key` and writes the armored detached
/// signature atomically to `<path>.asc`. Returns the signature's path.
pub fn sign_file(path: &Path, secret_key: &Path) -> Result<PathBuf, SignError> {
    sign_file_at(path, secret_key, None)
}

/// [`sign_file`] with an explicit signature creation time (`None`: now). The signing key
/// must be valid, unrevoked and signing-capable at that time.
pub fn sign_file_at(
    path: &Path,
    secret_key: &Path,
    time: Option<SystemTime>,
) -> Result<PathBuf, SignError> {
    let data = fs::read(path).map_err(|source| SignError::Io {
        path: path.to_path_buf(),
        action: "cannot read the file to sign",
        source,
    })?;
    let cert = read_secret_cert(secret_key)?;
    let policy = StandardPolicy::new();
    let bad = |reason: String| SignError::BadSecretKey {
        path: secret_key.to_path_buf(),
        reason,
    };
    let key = cert
        .keys()
        .with_policy(&policy, time)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .next()
        .ok_or_else(|| {
            bad("has no usable signing key (expired, revoked, or not signing-capable)".into())
        })?;
    if !key.key().has_unencrypted_secret() {
        return Err(bad(
            "the signing key is password-protected; distill needs an unencrypted key".into(),
        ));
    }
    let keypair = key
        .key()
        .clone()
        .into_keypair()
        .map_err(|e| bad(format!("cannot use the signing key: {}", one_line(e))))?;
    let pgp = |e: anyhow::Error| SignError::OpenPgp {
        path: path.to_path_buf(),
        action: "signing",
        reason: one_line(e),
    };
    let mut sink = Vec::new();
    {
        let message = Message::new(&mut sink);
        let message = Armorer::new(message)
            .kind(armor::Kind::Signature)
            .build()
            .map_err(pgp)?;
        let mut signer = StreamSigner::new(message, keypair).map_err(pgp)?.detached();
        if let Some(t) = time {
            signer = signer.creation_time(t);
        }
        let mut w = signer.build().map_err(pgp)?;
        w.write_all(&data).map_err(|e| pgp(e.into()))?;
        w.finalize().map_err(pgp)?;
    }
    let sig_path = signature_path(path);
    write_atomic(&sig_path, &sink)?;
    Ok(sig_path)
}

/// Makes a revocation of the certificate in `secret_key` (reason: key compromised, with
/// `message`) and returns the armored public certificate with the revocation merged in, ready
/// to replace the old certificate in keyrings.
pub fn revoked_certificate(secret_key: &Path, message: &str) -> Result<String, SignError> {
    let cert = read_secret_cert(secret_key)?;
    let bad = |reason: String| SignError::BadSecretKey {
        path: secret_key.to_path_buf(),
        reason,
    };
    let mut keypair = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .and_then(|k| k.into_keypair())
        .map_err(|e| bad(format!("cannot use the primary key: {}", one_line(e))))?;
    let pgp = |e: anyhow::Error| SignError::OpenPgp {
        path: secret_key.to_path_buf(),
        action: "revocation",
        reason: one_line(e),
    };
    let rev = cert
        .revoke(
            &mut keypair,
            ReasonForRevocation::KeyCompromised,
            message.as_bytes(),
        )
        .map_err(pgp)?;
    let (revoked, _) = cert.insert_packets(rev).map_err(pgp)?;
    let armored = revoked.armored().to_vec().map_err(pgp)?;
    String::from_utf8(armored).map_err(|e| pgp(e.into()))
}

/// Reads every certificate from the keyring files.
fn read_keyrings(file: &Path, keyrings: &[PathBuf]) -> Result<Vec<Cert>, VerifyError> {
    if keyrings.is_empty() {
        return Err(VerifyError::NoKeyring {
            file: file.to_path_buf(),
        });
    }
    let mut certs = Vec::new();
    for k in keyrings {
        let unreadable = |reason: String| VerifyError::KeyringUnreadable {
            file: file.to_path_buf(),
            keyring: k.clone(),
            reason,
        };
        let bytes = fs::read(k).map_err(|e| unreadable(e.to_string()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(VerifyError::KeyringEmpty {
                file: file.to_path_buf(),
                keyring: k.clone(),
            });
        }
        let parser = CertParser::from_bytes(&bytes).map_err(|e| unreadable(one_line(e)))?;
        let before = certs.len();
        for c in parser {
            certs.push(
                c.map_err(|e| unreadable(format!("not an OpenPGP certificate: {}", one_line(e))))?,
            );
        }
        if certs.len() == before {
            return Err(VerifyError::KeyringEmpty {
                file: file.to_path_buf(),
                keyring: k.clone(),
            });
        }
    }
    Ok(certs)
}

/// Collects verification outcomes for the candidate signers.
struct Helper {
    certs: Vec<Cert>,
    good: Vec<String>,
    errors: Vec<(Option<String>, VerifyErrorKind)>,
}

enum VerifyErrorKind {
    Bad,
    Unusable(String),
    Malformed(String),
}

impl VerificationHelper for Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.certs.clone())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                for r in results {
                    match r {
                        Ok(good) => self.good.push(good.ka.cert().fingerprint().to_hex()),
                        Err(VerificationError::BadSignature { ka, .. }) => self
                            .errors
                            .push((Some(ka.cert().fingerprint().to_hex()), VerifyErrorKind::Bad)),
                        Err(VerificationError::BadKey { ka, error, .. }) => self.errors.push((
                            Some(ka.cert().fingerprint().to_hex()),
                            VerifyErrorKind::Unusable(one_line(error)),
                        )),
                        Err(VerificationError::UnboundKey { cert, error, .. }) => {
                            self.errors.push((
                                Some(cert.fingerprint().to_hex()),
                                VerifyErrorKind::Unusable(one_line(error)),
                            ))
                        }
                        Err(VerificationError::MalformedSignature { error, .. }) => self
                            .errors
                            .push((None, VerifyErrorKind::Malformed(one_line(error)))),
                        Err(VerificationError::UnknownSignature { .. }) => self.errors.push((
                            None,
                            VerifyErrorKind::Malformed("unknown signature packet version".into()),
                        )),
                        // Signatures whose signer was filtered out before (unknown, revoked,
                        // expired) already have their error recorded.
                        Err(_) => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks, for one signature, that its signer is in the keyrings and is neither revoked nor
/// expired now. Returns the signer's certificate.
fn precheck<'c>(
    file: &Path,
    sig: &Signature,
    certs: &'c [Cert],
    policy: &StandardPolicy,
) -> Result<&'c Cert, VerifyError> {
    let issuers = sig.get_issuers();
    let found = certs.iter().find(|c| {
        c.keys()
            .any(|k| issuers.iter().any(|i| i.aliases(k.key().key_handle())))
    });
    let cert = found.ok_or_else(|| VerifyError::UnknownSigner {
        file: file.to_path_buf(),
        issuer: issuers
            .first()
            .map(|h| h.to_hex())
            .unwrap_or_else(|| "an unnamed key (no issuer in the signature)".into()),
    })?;
    let fingerprint = cert.fingerprint().to_hex();
    let revoked = |status: RevocationStatus| -> Option<String> {
        match status {
            RevocationStatus::Revoked(sigs) => Some(
                sigs.first()
                    .and_then(|s| s.reason_for_revocation())
                    .map(|(code, msg)| {
                        let msg = String::from_utf8_lossy(msg);
                        if msg.is_empty() {
                            format!(": {code}")
                        } else {
                            format!(": {code}: {}", one_line(msg))
                        }
                    })
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    };
    if let Some(reason) = revoked(cert.revocation_status(policy, None)) {
        return Err(VerifyError::KeyRevoked {
            file: file.to_path_buf(),
            fingerprint,
            reason,
        });
    }
    let expired = |detail: String| VerifyError::KeyExpired {
        file: file.to_path_buf(),
        fingerprint: fingerprint.clone(),
        detail,
    };
    let since = |t: Option<SystemTime>| match t {
        Some(t) => format!("since {}", humantime_utc(t)),
        None => "no longer valid".to_string(),
    };
    match cert.with_policy(policy, None) {
        Ok(vc) => {
            for k in vc
                .keys()
                .filter(|k| issuers.iter().any(|i| i.aliases(k.key().key_handle())))
            {
                if let Some(reason) = revoked(k.revocation_status()) {
                    return Err(VerifyError::KeyRevoked {
                        file: file.to_path_buf(),
                        fingerprint,
                        reason,
                    });
                }
            }
            if vc.alive().is_err() {
                return Err(expired(format!(
                    "certificate {}",
                    since(vc.primary_key().key_expiration_time())
                )));
            }
            for k in vc
                .keys()
                .filter(|k| issuers.iter().any(|i| i.aliases(k.key().key_handle())))
            {
                if k.alive().is_err() {
                    return Err(expired(format!(
                        "signing key {} {}",
                        k.key().fingerprint().to_hex(),
                        since(k.key_expiration_time())
                    )));
                }
            }
        }
        Err(e) => {
            return Err(VerifyError::KeyUnusable {
                file: file.to_path_buf(),
                fingerprint,
                reason: format!("certificate is not valid now: {}", one_line(e)),
            })
        }
    }
    Ok(cert)
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn humantime_utc(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Verifies the detached signature `<path>.asc` of `path` against the certificates in
/// `keyrings`. Succeeds when at least one signature in the `.asc` was made by a key in the
/// keyrings that is neither revoked nor expired now, and matches the file's bytes.
pub fn verify_file(path: &Path, keyrings: &[PathBuf]) -> Result<Signer, VerifyError> {
    let data = fs::read(path).map_err(|source| VerifyError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    verify_bytes(path, &data, keyrings)
}

/// Like [`verify_file`], for bytes the caller already read from `path`: a caller that goes on
/// to parse them checks the signature of exactly what it parses (reading the file twice would
/// let it change in between).
pub fn verify_bytes(path: &Path, data: &[u8], keyrings: &[PathBuf]) -> Result<Signer, VerifyError> {
    let certs = read_keyrings(path, keyrings)?;
    let sig_path = signature_path(path);
    let sig_bytes = match fs::read(&sig_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::MissingSignature {
                file: path.to_path_buf(),
                signature: sig_path,
            })
        }
        Err(source) => {
            return Err(VerifyError::Read {
                file: sig_path,
                source,
            })
        }
    };
    let malformed = |reason: String| VerifyError::MalformedSignature {
        signature: sig_path.clone(),
        reason,
    };
    let pile = PacketPile::from_bytes(&sig_bytes).map_err(|e| malformed(one_line(e)))?;
    let sigs: Vec<&Signature> = pile
        .descendants()
        .filter_map(|p| match p {
            Packet::Signature(s) => Some(s),
            _ => None,
        })
        .collect();
    if sigs.is_empty() {
        return Err(malformed("it holds no signature packet".into()));
    }

    let policy = StandardPolicy::new();
    let mut first_error = None;
    let mut candidates: Vec<Cert> = Vec::new();
    for sig in &sigs {
        match precheck(path, sig, &certs, &policy) {
            Ok(c) => {
                if !candidates
                    .iter()
                    .any(|x| x.fingerprint() == c.fingerprint())
                {
                    candidates.push(c.clone());
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if candidates.is_empty() {
        return Err(first_error.unwrap_or_else(|| malformed("no usable signature".into())));
    }

    let helper = Helper {
        certs: candidates.clone(),
        good: Vec::new(),
        errors: Vec::new(),
    };
    let mut verifier = DetachedVerifierBuilder::from_bytes(&sig_bytes)
        .and_then(|b| b.with_policy(&policy, None, helper))
        .map_err(|e| malformed(one_line(e)))?;
    let run = verifier.verify_bytes(data);
    let helper = verifier.into_helper();
    if let Some(fpr) = helper.good.first() {
        let cert = candidates
            .iter()
            .find(|c| &c.fingerprint().to_hex() == fpr)
            .unwrap_or(&candidates[0]);
        let user_id = cert.with_policy(&policy, None).ok().and_then(|vc| {
            vc.primary_userid()
                .ok()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        });
        return Ok(Signer {
            fingerprint: fpr.clone(),
            user_id,
        });
    }
    let default_fpr = candidates[0].fingerprint().to_hex();
    if let Some((fpr, kind)) = helper.errors.into_iter().next() {
        let fingerprint = fpr.unwrap_or(default_fpr);
        return Err(match kind {
            VerifyErrorKind::Bad => VerifyError::BadSignature {
                file: path.to_path_buf(),
                fingerprint,
            },
            VerifyErrorKind::Unusable(reason) => VerifyError::KeyUnusable {
                file: path.to_path_buf(),
                fingerprint,
                reason,
            },
            VerifyErrorKind::Malformed(reason) => malformed(reason),
        });
    }
    if let Err(e) = run {
        return Err(malformed(one_line(e)));
    }
    Err(first_error.unwrap_or(VerifyError::BadSignature {
        file: path.to_path_buf(),
        fingerprint: default_fpr,
    }))
}

#[cfg(test)]
mod tests {
    use super::humantime_utc;
    use std::time::{Duration, SystemTime};

    #[test]
    fn utc_formatting() {
        assert_eq!(
            humantime_utc(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29
        assert_eq!(humantime_utc(t), "2000-02-29T01:01:01Z");
    }
}
