//! The distill manifest: the TOML schema (`version = 1`), its validation (every error is one
//! line naming the manifest file, `line:column` and the field path), the canonical JSON form,
//! OpenPGP keys / detached signatures / verification against a keyring ([`sign`]), and pinning
//! Debian packages with the machine's apt ([`pin`]).
//!
//! The user documentation of every field is `docs/manifest.md`.

mod atomic;
mod error;
mod openssl_init;
mod parse;
pub mod pin;
mod pin_update;
mod schema;
pub mod sign;

pub use error::{Location, ManifestError};
pub use parse::{input_env_name, is_sha256_hex};
pub use schema::{
    Compression, Image, LoadedManifest, Manifest, Owner, Package, Probe, Source, SourceKind, Trace,
    DEFAULT_ARCH, DEFAULT_PACKAGE_VERSION, DEFAULT_SHELL, MANIFEST_VERSION, RESERVED_BUILD_ENV,
};
