//! Store path names: `<digest>-<name>-<version>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Length in hex characters of the derivation digest that starts every store name.
pub const DIGEST_LEN: usize = 32;

/// Longest allowed store name in bytes, so that `<name>.json` and `<name>.lock` stay
/// within the 255-byte file name limit.
pub const MAX_NAME_LEN: usize = 240;

/// The name of a store path: `<digest>-<name>-<version>`.
///
/// `digest` is the first 32 lowercase hex characters of the sha256 of the derivation's
/// canonical JSON (see [`derivation_digest`]). The name may contain `-`, the version may
/// not, so a store name splits at its last `-`:
///
/// * `name` is non-empty, uses only `A-Z a-z 0-9 + . _ -` and does not start with `.` or `-`
///   (`hello-src`, `gcc-12` and `python3.11` are fine);
/// * `version` is non-empty and uses only `A-Z a-z 0-9 + . _ ~` (no `-`, `:` or `/`); map
///   other characters to `_` first, e.g. Debian's `1:1.35.0-4+b1` becomes `1_1.35.0_4+b1`.
///
/// [`StoreName::new`] enforces these rules so that `Display` and `FromStr` round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreName {
    /// 32 lowercase hex characters: the derivation digest.
    pub digest: String,
    /// The package or source name.
    pub name: String,
    /// The version; contains no `-`.
    pub version: String,
}

/// Why a store name (or one of its parts) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store name `{input}`: {reason}")]
pub struct NameError {
    /// The rejected text.
    pub input: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> NameError {
    NameError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl StoreName {
    /// Builds a store name from its parts, checking every rule listed on [`StoreName`].
    pub fn new(digest: &str, name: &str, version: &str) -> Result<StoreName, NameError> {
        let full = format!("{digest}-{name}-{version}");
        check_digest(&full, digest)?;
        check_name(&full, name)?;
        check_version(&full, version)?;
        if full.len() > MAX_NAME_LEN {
            return Err(err(
                &full,
                format!("longer than {MAX_NAME_LEN} bytes; shorten the name or version"),
            ));
        }
        Ok(StoreName {
            digest: digest.to_string(),
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

fn check_digest(full: &str, digest: &str) -> Result<(), NameError> {
    if digest.len() != DIGEST_LEN
        || !digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(err(
            full,
            format!(
                "digest `{digest}` must be {DIGEST_LEN} lowercase hex characters (see derivation_digest)"
            ),
        ));
    }
    Ok(())
}

fn check_name(full: &str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(err(full, "the name part is empty"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(err(
            full,
            format!("name `{name}` must not start with `.` or `-`"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-')))
    {
        return Err(err(
            full,
            format!("name `{name}` contains `{c}`; use only A-Z a-z 0-9 + . _ -"),
        ));
    }
    Ok(())
}

fn check_version(full: &str, version: &str) -> Result<(), NameError> {
    if version.is_empty() {
        return Err(err(
            full,
            "the version part is empty; use e.g. `0` if there is none",
        ));
    }
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '~')))
    {
        return Err(err(
            full,
            format!("version `{version}` contains `{c}`; use only A-Z a-z 0-9 + . _ ~ (map others to `_`)"),
        ));
    }
    Ok(())
}

/// Orders like the displayed strings (the order of `store/` listings).
impl Ord for StoreName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for StoreName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.digest, self.name, self.version)
    }
}

impl FromStr for StoreName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<StoreName, NameError> {
        if s.len() < DIGEST_LEN + 1 || !s.is_char_boundary(DIGEST_LEN) {
            return Err(err(
                s,
                format!("expected `<{DIGEST_LEN} hex digest>-<name>-<version>`"),
            ));
        }
        let (digest, rest) = s.split_at(DIGEST_LEN);
        let Some(rest) = rest.strip_prefix('-') else {
            return Err(err(
                s,
                format!("expected `-` after the {DIGEST_LEN}-character digest"),
            ));
        };
        let Some(i) = rest.rfind('-') else {
            return Err(err(
                s,
                "no version found: expected `<name>-<version>` after the digest",
            ));
        };
        StoreName::new(digest, &rest[..i], &rest[i + 1..])
    }
}

impl Serialize for StoreName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StoreName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StoreName, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The derivation digest: the first 32 hex characters of the sha256 of `canonical_bytes`
/// (the derivation's canonical JSON, produced by the builder).
pub fn derivation_digest(canonical_bytes: &[u8]) -> String {
    let full = hex::encode(Sha256::digest(canonical_bytes));
    full[..DIGEST_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trips_with_dashes_in_name_and_version() {
        let n = StoreName::new(D, "hello-src-2", "1_1.35.0_4+deb12u1~b1").unwrap();
        let s = n.to_string();
        assert_eq!(s, format!("{D}-hello-src-2-1_1.35.0_4+deb12u1~b1"));
        let src: StoreName = format!("{D}-gcc-12-src").parse().unwrap();
        assert_eq!((src.name.as_str(), src.version.as_str()), ("gcc-12", "src"));
        assert_eq!(s.parse::<StoreName>().unwrap(), n);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<StoreName>(&json).unwrap(), n);
        // Ordering follows the displayed string, even where `+` sorts before `-`.
        let a = StoreName::new(D, "foo+x", "1").unwrap();
        let b = StoreName::new(D, "foo", "1").unwrap();
        assert!(a < b && a.to_string() < b.to_string());
    }

    #[test]
    fn rejects_bad_parts() {
        assert!(StoreName::new("0123", "a", "1").is_err());
        assert!(StoreName::new(&D.to_uppercase(), "a", "1").is_err());
        assert!(StoreName::new(D, "-x", "1").is_err());
        assert!(StoreName::new(D, "a", "1-2").is_err());
        assert!(StoreName::new(D, "a", "1:2").is_err());
        assert!(StoreName::new(D, "a/b", "1").is_err());
        assert!(StoreName::new(D, ".hidden", "1").is_err());
        assert!(StoreName::new(D, "a", "").is_err());
        assert!(StoreName::new(D, "a", "1/2").is_err());
        assert!(StoreName::new(D, &"x".repeat(300), "1").is_err());
        assert!(format!("{D}-hello").parse::<StoreName>().is_err());
        assert!("short".parse::<StoreName>().is_err());
        assert!(format!("{D}xhello-1").parse::<StoreName>().is_err());
        let e = StoreName::new(D, "gcc", "12-1").unwrap_err();
        assert!(e.to_string().contains("12-1"), "{e}");
    }

    #[test]
    fn digest_is_prefix_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(
            derivation_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223"
        );
        assert!(StoreName::new(&derivation_digest(b"x"), "n", "0").is_ok());
    }
}
