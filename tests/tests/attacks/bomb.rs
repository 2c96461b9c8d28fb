//! A decompression bomb: a gzip layer whose first tar entry is refused and whose rest
//! inflates to 4 GiB of zeros from 4 MiB. `load` must stop at the refusal: only hash the rest
//! of the blob (to tell a corrupt blob from a hostile one), never inflate it.

use std::io::Write;
use std::path::Path;

use distill_oci::{Compression, Digest, ImageSpec, LayerBlob};
use distill_tests::Lab;

/// One tar header: a regular file named `name` of `size` bytes.
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |f: &mut [u8], v: u64| {
        let w = f.len() - 1;
        f[..w].copy_from_slice(format!("{v:0w$o}").as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An OCI archive whose one layer is the bomb; the blob's digest and size are right.
fn bomb_archive(dir: &Path) -> std::path::PathBuf {
    const CHUNK: usize = 64 << 20;
    const CHUNKS: u64 = 64;
    // Members of a multi-member gzip stream: the header of a refused entry ('..'), then
    // 64 members of 64 MiB of zeros each, its "content".
    let mut blob = gzip(&tar_header("a/../../escape", CHUNK as u64 * CHUNKS));
    let zeros = gzip(&vec![0u8; CHUNK]);
    for _ in 0..CHUNKS {
        blob.extend_from_slice(&zeros);
    }
    let path = dir.join("bomb.tar.gz");
    std::fs::write(&path, &blob).unwrap();
    let digest = Digest::of_bytes(&blob);
    let layer = LayerBlob {
        path,
        compression: Compression::Gzip,
        size: blob.len() as u64,
        // Never reached: the refusal comes first.
        diff_id: digest.clone(),
        digest,
        created_by: "bomb".into(),
    };
    let out = dir.join("bomb.oci.tar");
    distill_oci::write_oci_archive(
        &out,
        &ImageSpec {
            name: "bomb:1".into(),
            layers: vec![layer],
            ..Default::default()
        },
    )
    .unwrap();
    out
}

/// User plus system CPU seconds of a finished child, from wait4(2).
#[allow(clippy::zombie_processes)] // reaped by wait4, which std does not offer
fn run_measuring_cpu(cmd: &mut std::process::Command) -> (i32, f64) {
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and ru are valid out-pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as i32);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        libc::WEXITSTATUS(status),
        secs(ru.ru_utime) + secs(ru.ru_stime),
    )
}

#[test]
fn load_stops_at_the_first_refused_entry_of_a_decompression_bomb() {
    let lab = Lab::empty();
    let archive = bomb_archive(lab.dir.path());
    assert!(std::fs::metadata(&archive).unwrap().len() < 16 << 20);
    // The refusal itself, with its message.
    let r = lab.distill(&["load", archive.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("a/../../escape") && r.stderr.contains("'..'"),
        "{}",
        r.stderr
    );
    // Inflating 4 GiB costs seconds of CPU; hashing the 4 MiB blob and stopping, a few
    // milliseconds beyond the process's own start.
    let (code, cpu) = run_measuring_cpu(&mut lab.command(&["load", archive.to_str().unwrap()]));
    assert_ne!(code, 0);
    assert!(
        cpu < 1.0,
        "load spent {cpu:.2} s of CPU: it inflated the bomb"
    );
    let images = lab.distill(&["images", "--json"]);
    assert_eq!(images.stdout.trim(), "[]", "{}", images.stdout);
}
