//! What the runtime benchmarks share: a state root on a tmpfs, as `/run/distill` is on most
//! hosts (this machine's `/run` is on disk, where every state write would pay an fsync).

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// `<dir>/state` with a tmpfs mounted on it (when the mount is permitted), unmounted on drop.
pub struct TmpfsState {
    pub path: PathBuf,
    c_path: CString,
    mounted: bool,
}

impl TmpfsState {
    pub fn new(dir: &Path) -> TmpfsState {
        let path = dir.join("state");
        std::fs::create_dir_all(&path).unwrap();
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mounts a tmpfs on our own temp directory.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c_path.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        } == 0;
        TmpfsState {
            path,
            c_path,
            mounted,
        }
    }

    /// "tmpfs" or "disk", for the report.
    pub fn kind(&self) -> &'static str {
        if self.mounted {
            "tmpfs"
        } else {
            "disk"
        }
    }
}

impl Drop for TmpfsState {
    fn drop(&mut self) {
        if self.mounted {
            // SAFETY: unmounts the tmpfs mounted by `new`.
            unsafe { libc::umount2(self.c_path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
