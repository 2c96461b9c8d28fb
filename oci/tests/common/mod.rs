//! Helpers shared by the integration tests: tree builders and a raw tar writer for
//! crafting (possibly malicious) layers.
#![allow(dead_code)]

use distill_oci::{Compression, Digest, ImageConfig, ImageSpec, LayerBlob};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn write(p: &Path, data: &[u8], mode: u32) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A raw ustar entry for crafted layers.
pub struct Raw<'a> {
    pub name: &'a str,
    pub typ: u8,
    pub link: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        typ: b'0',
        link: "",
        data,
        mode: 0o644,
    }
}
pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        typ: b'5',
        link: "",
        data: b"",
        mode: 0o755,
    }
}
pub fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        typ: b'2',
        link: target,
        data: b"",
        mode: 0o777,
    }
}
pub fn hardlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        typ: b'1',
        link: target,
        data: b"",
        mode: 0o644,
    }
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    field[..w].copy_from_slice(s.as_bytes());
}

/// Builds a tar byte string from raw entries, with no validation at all.
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        octal(&mut h[100..108], e.mode as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], e.data.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = e.typ;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0, pad));
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Stores an uncompressed crafted layer as a blob file and describes it.
pub fn raw_layer(dir: &Path, name: &str, tar: &[u8]) -> LayerBlob {
    let path = dir.join(name);
    fs::write(&path, tar).unwrap();
    let d = Digest::of_bytes(tar);
    LayerBlob {
        path,
        compression: Compression::None,
        digest: d.clone(),
        size: tar.len() as u64,
        diff_id: d,
        created_by: format!("test {name}"),
    }
}

pub fn spec(layers: Vec<LayerBlob>) -> ImageSpec {
    ImageSpec {
        name: "test:1".into(),
        config: ImageConfig {
            entrypoint: vec!["/bin/app".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            ..Default::default()
        },
        layers,
        ..Default::default()
    }
}

/// Writes an OCI archive of crafted layers and returns its path.
pub fn raw_image(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    let blobs = layers
        .iter()
        .enumerate()
        .map(|(i, t)| raw_layer(dir, &format!("l{i}.tar"), t))
        .collect();
    let out = dir.join("image.tar");
    distill_oci::write_oci_archive(&out, &spec(blobs)).unwrap();
    out
}

/// Names of the entries of a directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
