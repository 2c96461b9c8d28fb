//! Benchmark: `load_archive` of a ~100 MB single-layer uncompressed image against
//! `tar -xf` of the same layer tar, and SHA-256 throughput. Prints times and ratios.
//! Run with `cargo bench -p distill-oci --bench load`.

use distill_oci::{
    load_archive, write_layer, write_oci_archive, Compression, Digest, ImageSpec, LayerOptions,
    LayerSource,
};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn cpu(who: i32) -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid rusage to fill.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn make_tree(root: &Path) -> u64 {
    // 8 directories x 100 files of 64 KiB .. 192 KiB, plus 2000 small files: ~100 MB.
    let mut total = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for d in 0..8 {
        let dir = root.join(format!("dir{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = 64 * 1024 + ((d * 100 + f) % 3) * 64 * 1024;
            let mut data = vec![0u8; len];
            for chunk in data.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let b = seed.to_le_bytes();
                chunk.copy_from_slice(&b[..chunk.len()]);
            }
            fs::write(dir.join(format!("f{f:03}")), &data).unwrap();
            total += len as u64;
        }
    }
    let small = root.join("small");
    fs::create_dir_all(&small).unwrap();
    for i in 0..2000 {
        fs::write(small.join(format!("s{i:04}")), vec![(i % 251) as u8; 4096]).unwrap();
        total += 4096;
    }
    total
}

fn main() {
    let base = std::env::var_os("DISTILL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let t = tempfile::tempdir_in(base).unwrap();
    let src = t.path().join("src");
    let bytes = make_tree(&src);
    println!("tree: {:.1} MB in 2800 files", bytes as f64 / 1e6);

    let start = Instant::now();
    let layer = write_layer(
        &LayerSource::Dir(src.clone()),
        &LayerOptions {
            compression: Compression::None,
            ..Default::default()
        },
        &t.path().join("layer.tar"),
    )
    .unwrap();
    println!("write_layer (uncompressed): {:?}", start.elapsed());
    let img = t.path().join("img.tar");
    let spec = ImageSpec {
        name: "bench:1".into(),
        layers: vec![layer.clone()],
        ..Default::default()
    };
    write_oci_archive(&img, &spec).unwrap();

    // SHA-256 throughput in memory.
    let buf = vec![0x5au8; 256 << 20];
    let start = Instant::now();
    let d = Digest::of_bytes(&buf);
    let el = start.elapsed();
    println!(
        "sha256: {:.2} GB/s ({})",
        buf.len() as f64 / el.as_secs_f64() / 1e9,
        &d.as_str()[..15]
    );
    drop(buf);

    let runs = 5;
    let mut tar_times = Vec::new();
    let mut load_times = Vec::new();
    let (mut tar_cpu, mut load_cpu) = (Duration::ZERO, Duration::ZERO);
    for i in 0..runs {
        let c0 = cpu(libc::RUSAGE_CHILDREN);
        let x = t.path().join(format!("tarx{i}"));
        fs::create_dir(&x).unwrap();
        let start = Instant::now();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&layer.path)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        tar_times.push(start.elapsed());
        tar_cpu += cpu(libc::RUSAGE_CHILDREN) - c0;
        assert!(st.success());
        fs::remove_dir_all(&x).unwrap();

        let dest = t.path().join(format!("load{i}"));
        let c0 = cpu(libc::RUSAGE_SELF);
        let start = Instant::now();
        let loaded = load_archive(&img, &dest).unwrap();
        load_times.push(start.elapsed());
        load_cpu += cpu(libc::RUSAGE_SELF) - c0;
        assert_eq!(loaded.unpacked_bytes, bytes);
        fs::remove_dir_all(&dest).unwrap();
    }
    let (tt, lt) = (median(tar_times), median(load_times));
    println!(
        "cpu per run (user+sys): tar -xf {:?}, load_archive {:?} (includes hashing on a second thread)",
        tar_cpu / runs,
        load_cpu / runs
    );
    println!("tar -xf (median of {runs}): {tt:?}");
    println!("load_archive (median of {runs}): {lt:?}");
    println!(
        "ratio load_archive / tar -xf: {:.2} (target <= 1.5)",
        lt.as_secs_f64() / tt.as_secs_f64()
    );
}
