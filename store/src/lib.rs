//! distill-store: the content-addressed store of distill.
//!
//! A store root holds:
//!
//! ```text
//! <root>/store/<digest>-<name>-<version>/       output trees, immutable once renamed in
//! <root>/meta/<digest>-<name>-<version>.json    path info (derivation, output hash, size, signer)
//! <root>/cache/sha256/<hex>                     fetched sources, by content hash
//! <root>/records/<kind>/<name>.json             build and image records: the gc roots
//! <root>/locks/<digest>-<name>-<version>.lock   per-path flock (and locks/gc.lock)
//! <root>/tmp/                                   build directories; a crash leaves only these
//! ```
//!
//! A path is *valid* when its directory exists under `store/`; its meta file is written and
//! fsynced before the directory is renamed in, so a valid path always has its info.
//!
//! This crate provides store names ([`StoreName`], [`derivation_digest`]), the canonical tree
//! hash ([`hash_tree`]) and output normalization ([`normalize_tree`]), atomic and
//! concurrency-safe [`Store::add`], the fetch cache ([`Store::cache_insert`]), records (gc
//! roots, [`Store::write_record`]), [`Store::verify`] and [`Store::gc`].
//!
//! Locking: `add`, `write_record`, `verify` and [`Store::gc_guard`] hold `locks/gc.lock`
//! shared; `gc` holds it exclusively. Temp entries under `tmp/` are flocked by whoever uses
//! them, so `gc` removes only those left by dead processes.

mod cache;
mod error;
mod fsutil;
mod maint;
mod name;
mod records;
mod store;
mod tree;

pub use cache::parse_sha256;
pub use error::{AddError, CacheError, StoreError};
pub use maint::{GcReport, HashMismatch, VerifyReport};
pub use name::{derivation_digest, NameError, StoreName, DIGEST_LEN, MAX_NAME_LEN};
pub use records::Record;
pub use store::{GcGuard, PathInfo, Store, TempDir};
pub use tree::{
    hash_tree, hash_tree_with_size, normalize_tree, remove_tree, TreeSummary, TREE_MAGIC,
};
