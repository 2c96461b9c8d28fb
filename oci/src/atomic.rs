//! Files and directories made beside their final place and renamed into it. The one way the
//! crates above (builder, runtime) and this one create a temporary entry next to a path they
//! were given: the directory may be another user's (`build --out`, `checkpoint --export`),
//! so a name that can be predicted is a name that can be planted (a symlink to a host file
//! that root would write through). Every entry here is created under a random name with
//! `O_CREAT|O_EXCL` (or `mkdir`), neither of which follows a symlink.

use std::fs::Permissions;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn parent_and_prefix<'a>(target: &'a Path, what: &str) -> io::Result<(&'a Path, String)> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", target.display()),
        )
    })?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, format!(".{}.{what}.", name.to_string_lossy())))
}

/// A new, empty file in `target`'s directory to build `target` in, named
/// `.<name>.<what>.<random>`, with mode exactly `mode`. It is removed when dropped, unless
/// [`persist`]ed. Write it through its descriptor (never reopen it by path: the directory may
/// be someone else's).
pub fn temp_file_beside(
    target: &Path,
    what: &str,
    mode: u32,
) -> io::Result<tempfile::NamedTempFile> {
    let (dir, prefix) = parent_and_prefix(target, what)?;
    // Created 0600 (owner only), then given `mode` through its descriptor.
    let tmp = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    Ok(tmp)
}

/// fsyncs `tmp` (made by [`temp_file_beside`]) and renames it to `target`: readers see the
/// old file or the new one, never a part of it.
pub fn persist(tmp: tempfile::NamedTempFile, target: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(target).map(drop).map_err(|e| e.error)
}

/// Writes `bytes` to `target` atomically ([`temp_file_beside`] with `mode`, [`persist`]).
pub fn write_file_atomic(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = temp_file_beside(target, "tmp", mode)?;
    tmp.write_all(bytes)?;
    persist(tmp, target)
}

/// A new, empty directory in `target`'s directory to build `target` in, named
/// `.<name>.<what>.<random>`, mode `0777 & !umask` like `mkdir`. It is removed with its
/// content when dropped, unless kept ([`tempfile::TempDir::keep`]).
pub fn temp_dir_beside(target: &Path, what: &str) -> io::Result<tempfile::TempDir> {
    let (dir, prefix) = parent_and_prefix(target, what)?;
    tempfile::Builder::new().prefix(&prefix).tempdir_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_target_gets_its_mode_and_no_temporary_entry_is_left() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("out.json");
        write_file_atomic(&target, b"new", 0o640).unwrap();
        let m = std::fs::symlink_metadata(&target).unwrap();
        assert!(m.is_file());
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out.json"]);
        let d = temp_dir_beside(&target, "load").unwrap();
        let n = d.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(n.starts_with(".out.json.load."), "{n}");
        assert!(temp_file_beside(Path::new("/"), "tmp", 0o600).is_err());
    }
}
