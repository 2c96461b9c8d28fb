//! Deterministic writing: layers, documents, archives.

mod common;
use common::*;
use distill_oci::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tree A built in one order, in-process.
fn tree_a(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    write(&root.join("usr/bin/hello"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("etc/passwd"), b"root:x:0:0::/:/bin/sh\n", 0o644);
    write(&root.join("a-c"), b"dash", 0o600);
    fs::create_dir_all(root.join("a")).unwrap();
    write(&root.join("a/b"), b"ab", 0o4755);
    symlink("usr/bin", root.join("bin")).unwrap();
    fs::hard_link(root.join("usr/bin/hello"), root.join("usr/bin/hello2")).unwrap();
}

/// The same tree built in another order, by a shell with another umask, then with other
/// owners and mtimes.
fn tree_b(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let script = r#"set -e; umask 077; cd "$1"
ln -s usr/bin bin
mkdir a; printf ab > a/b; chmod 4755 a/b
printf dash > a-c; chmod 600 a-c
mkdir -p etc usr/bin; printf 'root:x:0:0::/:/bin/sh\n' > etc/passwd; chmod 644 etc/passwd
printf '#!/bin/sh\necho hi\n' > usr/bin/hello; chmod 755 usr/bin/hello; ln usr/bin/hello usr/bin/hello2
chmod 755 a etc usr usr/bin
chown -hR 1234:5678 . ; chmod 4755 a/b; touch -h -d '2001-02-03 04:05:06' bin a a/b a-c etc etc/passwd usr usr/bin usr/bin/hello"#;
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
}

fn layer(src: LayerSource, c: Compression, out: &Path) -> LayerBlob {
    let opts = LayerOptions {
        epoch: 1_700_000_000,
        compression: c,
        created_by: "test".into(),
        ..Default::default()
    };
    write_layer(&src, &opts, out).unwrap()
}

#[test]
fn layers_are_byte_identical_across_build_orders_owners_mtimes_umask() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    tree_a(&a);
    tree_b(&b);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let la = layer(LayerSource::Dir(a.clone()), c, &t.path().join("la"));
        let lb = layer(LayerSource::Dir(b.clone()), c, &t.path().join("lb"));
        assert!(
            fs::read(&la.path).unwrap() == fs::read(&lb.path).unwrap(),
            "compression {c:?}: {:?} vs {:?}",
            tar_tv_any(&la.path),
            tar_tv_any(&lb.path)
        );
        assert_eq!(la.digest, lb.digest);
        assert_eq!(la.diff_id, lb.diff_id);
        assert_eq!(la.size, fs::metadata(&la.path).unwrap().len());
        assert_eq!(la.digest, Digest::of_file(&la.path).unwrap().0);
        if c == Compression::None {
            assert_eq!(la.digest, la.diff_id);
        } else {
            assert_ne!(la.digest, la.diff_id);
        }
        // Whole archives too.
        let (oa, ob) = (t.path().join("a.tar"), t.path().join("b.tar"));
        let da = write_oci_archive(&oa, &spec(vec![la])).unwrap();
        let db = write_oci_archive(&ob, &spec(vec![lb])).unwrap();
        assert_eq!(da, db);
        assert!(fs::read(&oa).unwrap() == fs::read(&ob).unwrap());
    }
}

fn tar_tv_any(path: &Path) -> String {
    let out = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tar_tv(path: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn layer_entries_sorted_with_fixed_metadata_hardlinks_and_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    tree_a(&a);
    let l = layer(
        LayerSource::Dir(a.clone()),
        Compression::None,
        &t.path().join("l.tar"),
    );
    let lines = tar_tv(&l.path);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a/",
            "a-c",
            "a/b",
            "bin",
            "etc/",
            "etc/passwd",
            "usr/",
            "usr/bin/",
            "usr/bin/hello",
            "usr/bin/hello2"
        ]
    );
    for l in &lines {
        assert!(l.contains(" 0/0 "), "owner not 0/0: {l}");
        assert!(l.contains("2023-11-14 22:13"), "mtime not the epoch: {l}");
    }
    assert!(
        lines[2].starts_with("-rwsr-xr-x"),
        "setuid kept: {}",
        lines[2]
    );
    assert!(lines[1].starts_with("-rw-------"), "{}", lines[1]);
    assert!(
        lines[3].starts_with('l') && lines[3].ends_with("bin -> usr/bin"),
        "{}",
        lines[3]
    );
    assert!(
        lines[9].starts_with('h') && lines[9].ends_with("usr/bin/hello2 link to usr/bin/hello"),
        "{}",
        lines[9]
    );
    // No uname/gname, no GNU headers: the raw header has empty names and the ustar magic.
    let raw = fs::read(&l.path).unwrap();
    assert_eq!(&raw[257..265], b"ustar\x0000");
    assert!(raw[265..329].iter().all(|&b| b == 0));
}

#[test]
fn symlinks_are_stored_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    write(&outside.join("secret"), b"TOPSECRETDATA", 0o644);
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    symlink(&outside, root.join("link")).unwrap();
    symlink(outside.join("secret"), root.join("flink")).unwrap();
    let l = layer(
        LayerSource::Dir(root),
        Compression::None,
        &t.path().join("l.tar"),
    );
    let lines = tar_tv(&l.path);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with('l')), "{lines:?}");
    let raw = fs::read(&l.path).unwrap();
    assert!(
        !raw.windows(13).any(|w| w == b"TOPSECRETDATA"),
        "symlink was followed"
    );
}

#[test]
fn long_paths_and_link_targets_use_pax_and_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let long_dir = format!("{}/{}", "d".repeat(90), "e".repeat(90));
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    write(&root.join(&long_file), b"long", 0o644);
    let long_target = format!("../{}", "t".repeat(150));
    symlink(&long_target, root.join("s")).unwrap();
    fs::hard_link(root.join(&long_file), root.join("zz-hard")).unwrap();
    let l = layer(
        LayerSource::Dir(root),
        Compression::Gzip,
        &t.path().join("l.tgz"),
    );
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(&l.path)
        .output()
        .unwrap();
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.lines().any(|x| x == long_file), "{listed}");
    // Load it back and check names and targets survive.
    let img = t.path().join("img.tar");
    write_oci_archive(&img, &spec(vec![l])).unwrap();
    let dest = t.path().join("dest");
    let loaded = load_archive(&img, &dest).unwrap();
    assert_eq!(fs::read(loaded.rootfs.join(&long_file)).unwrap(), b"long");
    assert_eq!(
        fs::read_link(loaded.rootfs.join("s")).unwrap(),
        PathBuf::from(&long_target)
    );
    let m1 = fs::metadata(loaded.rootfs.join(&long_file)).unwrap();
    let m2 = fs::metadata(loaded.rootfs.join("zz-hard")).unwrap();
    assert_eq!(m1.ino(), m2.ino(), "hard link restored as a link");
}

#[test]
fn filtered_layer_keeps_listed_paths_and_their_parents_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    write(&root.join("usr/share/doc/x"), b"doc", 0o644);
    let paths: BTreeSet<PathBuf> = ["/usr/bin/hello", "etc/passwd", "bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let l = layer(
        LayerSource::Paths {
            root: root.clone(),
            paths,
        },
        Compression::None,
        &t.path().join("l.tar"),
    );
    let lines = tar_tv(&l.path);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bin",
            "etc/",
            "etc/passwd",
            "usr/",
            "usr/bin/",
            "usr/bin/hello"
        ]
    );

    // A listed directory is an entry, not its contents.
    let paths: BTreeSet<PathBuf> = [PathBuf::from("usr/share")].into();
    let l = layer(
        LayerSource::Paths {
            root: root.clone(),
            paths,
        },
        Compression::None,
        &t.path().join("l2.tar"),
    );
    let lines = tar_tv(&l.path);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(names, ["usr/", "usr/share/"]);
    // The output may not live inside the tree it archives.
    let err = write_layer(
        &LayerSource::Dir(root.clone()),
        &LayerOptions::default(),
        &root.join("l.tar"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("inside the layer's source"),
        "{err}"
    );

    // A kept path through a symlink is refused with a clear error.
    let paths: BTreeSet<PathBuf> = [PathBuf::from("bin/hello")].into();
    let err = write_layer(
        &LayerSource::Paths {
            root: root.clone(),
            paths,
        },
        &LayerOptions::default(),
        &t.path().join("x"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("root/bin") && msg.contains("symlinks resolved"),
        "{msg}"
    );
    let paths: BTreeSet<PathBuf> = [PathBuf::from("usr/../etc")].into();
    assert!(write_layer(
        &LayerSource::Paths { root, paths },
        &LayerOptions::default(),
        &t.path().join("y")
    )
    .is_err());
}

#[test]
fn fifo_and_socket_are_refused_devices_keep_numbers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    assert!(Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap()
        .success());
    let err = write_layer(
        &LayerSource::Dir(root.clone()),
        &LayerOptions::default(),
        &t.path().join("l"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fifo"), "{err}");
    fs::remove_file(root.join("fifo")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let err = write_layer(
        &LayerSource::Dir(root.clone()),
        &LayerOptions::default(),
        &t.path().join("l"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("socket"), "{err}");
    fs::remove_file(root.join("sock")).unwrap();
    // The tests run as root (see README), so mknod works.
    let made = Command::new("mknod")
        .arg(root.join("null"))
        .args(["c", "1", "3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(made, "mknod c 1 3 failed: run the tests as root");
    {
        let l = layer(
            LayerSource::Dir(root),
            Compression::None,
            &t.path().join("d.tar"),
        );
        let lines = tar_tv(&l.path);
        assert!(
            lines[0].starts_with('c') && lines[0].contains("1,3"),
            "{lines:?}"
        );
    }
}

#[test]
fn owner_option_and_compressed_outputs_are_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    for c in [Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            epoch: 5,
            owner: Ownership::Fixed {
                uid: 1000,
                gid: 100,
            },
            compression: c,
            created_by: String::new(),
        };
        let x = write_layer(&LayerSource::Dir(root.clone()), &opts, &t.path().join("x")).unwrap();
        let y = write_layer(&LayerSource::Dir(root.clone()), &opts, &t.path().join("y")).unwrap();
        assert_eq!(fs::read(&x.path).unwrap(), fs::read(&y.path).unwrap());
        let decompress = if c == Compression::Gzip {
            "--gzip"
        } else {
            "--zstd"
        };
        let out = Command::new("tar")
            .args([decompress, "--numeric-owner", "-tvf"])
            .arg(&x.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar could not list the {c:?} layer (zstd needs `apt-get install zstd`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).unwrap();
        assert!(!s.is_empty(), "tar listed no entry of the {c:?} layer");
        assert!(s.lines().all(|l| l.contains(" 1000/100 ")), "{s}");
        if c == Compression::Gzip {
            let raw = fs::read(&x.path).unwrap();
            assert_eq!(&raw[..4], &[0x1f, 0x8b, 8, 0], "gzip: no FNAME flag");
            assert_eq!(&raw[4..8], &[0, 0, 0, 0], "gzip header mtime 0");
            assert_eq!(raw[9], 255, "gzip OS byte fixed");
        }
    }
}

#[test]
fn canonical_json_sorts_keys_and_has_no_whitespace() {
    let mut m = std::collections::HashMap::new();
    m.insert(
        "zeta",
        serde_json::json!({"b": 1, "a": [3, {"y": null, "x": "s p"}]}),
    );
    m.insert("alpha", serde_json::json!(true));
    let out = canonical_json(&m).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"alpha":true,"zeta":{"a":[3,{"x":"s p","y":null}],"b":1}}"#
    );
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
}

#[test]
fn documents_are_canonical_and_complete() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    let l = layer(
        LayerSource::Dir(root),
        Compression::Gzip,
        &t.path().join("l"),
    );
    let mut s = spec(vec![l.clone()]);
    s.epoch = 1_700_000_000;
    s.config.env = vec!["Z=1".into(), "A=2".into()];
    s.config.exposed_ports = vec!["8080/tcp".into(), "443/tcp".into()];
    s.config.labels = [
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "1".to_string()),
    ]
    .into();
    s.config.working_dir = Some("/w".into());
    s.config.user = Some("1000:1000".into());
    s.config.stop_signal = Some("SIGINT".into());
    s.annotations = [("dev.distill.signer".to_string(), "ABCD".to_string())].into();
    let d = image_documents(&s).unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&d.config).unwrap();
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["A=2", "Z=1"]));
    assert_eq!(
        cfg["config"]["ExposedPorts"],
        serde_json::json!({"443/tcp": {}, "8080/tcp": {}})
    );
    assert_eq!(cfg["rootfs"]["diff_ids"][0], l.diff_id.as_str());
    assert_eq!(cfg["history"][0]["created_by"], "test");
    assert_eq!(cfg["history"][0]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        canonical_json(&cfg).unwrap(),
        d.config,
        "config is canonical"
    );
    let man: serde_json::Value = serde_json::from_slice(&d.manifest).unwrap();
    assert_eq!(
        man["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(man["layers"][0]["digest"], l.digest.as_str());
    assert_eq!(man["config"]["digest"], d.config_digest.as_str());
    assert_eq!(man["annotations"]["dev.distill.signer"], "ABCD");
    assert_eq!(canonical_json(&man).unwrap(), d.manifest);
    let idx: serde_json::Value = serde_json::from_slice(&d.index).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], d.manifest_digest.as_str());
    assert_eq!(
        idx["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
        "test:1"
    );
    assert_eq!(Digest::of_bytes(&d.manifest), d.manifest_digest);
}

#[test]
fn oci_archive_layout_is_deterministic_tar_with_extra_blob() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    let l = layer(
        LayerSource::Dir(root),
        Compression::Zstd,
        &t.path().join("l"),
    );
    let sbom = b"{\"sbom\":true}".to_vec();
    let sbom_digest = Digest::of_bytes(&sbom);
    let mut s = spec(vec![l.clone()]);
    s.extra_blobs.push(ExtraBlob {
        data: BlobData::Bytes(sbom.clone()),
    });
    s.annotations
        .insert("dev.distill.sbom".into(), sbom_digest.to_string());
    let out = t.path().join("img.tar");
    let digest = write_oci_archive(&out, &s).unwrap();
    let lines = tar_tv(&out);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&format!("blobs/sha256/{}", sbom_digest.hex()).as_str()));
    assert!(names.contains(&format!("blobs/sha256/{}", digest.hex()).as_str()));
    assert!(names.contains(&format!("blobs/sha256/{}", l.digest.hex()).as_str()));
    assert_eq!(*names.last().unwrap(), "oci-layout");
    for l in &lines {
        assert!(l.contains(" 0/0 ") && l.contains("1970-01-01 00:00"), "{l}");
        assert!(
            l.starts_with("-rw-r--r--") || l.starts_with("drwxr-xr-x"),
            "{l}"
        );
    }
    // No temp files left next to the output.
    assert_eq!(listing(t.path()), ["img.tar", "l", "root"]);
    // Rewriting gives the same bytes.
    let out2 = t.path().join("img2.tar");
    assert_eq!(write_oci_archive(&out2, &s).unwrap(), digest);
    assert!(fs::read(&out).unwrap() == fs::read(&out2).unwrap());
    // A blob that changed after it was written is caught.
    let mut bytes = fs::read(&l.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&l.path, bytes).unwrap();
    let err = write_oci_archive(&t.path().join("img3.tar"), &s).unwrap_err();
    assert!(err.to_string().contains("changed"), "{err}");
    assert!(!t.path().join("img3.tar").exists());
}

#[test]
fn docker_archive_has_manifest_json_and_loads_to_same_digest() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    let l = layer(
        LayerSource::Dir(root),
        Compression::Gzip,
        &t.path().join("l"),
    );
    let s = spec(vec![l.clone()]);
    let out = t.path().join("docker.tar");
    let d = write_docker_archive(&out, &s).unwrap();
    assert_eq!(d, write_oci_archive(&t.path().join("oci.tar"), &s).unwrap());
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m[0]["RepoTags"][0], "test:1");
    assert_eq!(
        m[0]["Layers"][0],
        format!("blobs/sha256/{}", l.digest.hex())
    );
    assert!(x.join(m[0]["Config"].as_str().unwrap()).is_file());
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("repositories")).unwrap()).unwrap();
    assert_eq!(r["test"]["1"], l.digest.hex());
    // A legacy docker-archive (manifest.json only) loads too.
    fs::remove_file(x.join("index.json")).unwrap();
    fs::remove_file(x.join("oci-layout")).unwrap();
    let legacy = t.path().join("legacy.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&legacy)
        .arg("-C")
        .arg(&x)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let loaded = load_archive(&legacy, &t.path().join("dest")).unwrap();
    assert_eq!(loaded.format, ArchiveFormat::DockerArchive);
    assert_eq!(loaded.manifest_digest, None);
    assert_eq!(loaded.layers, vec![l.digest.clone()]);
    assert_eq!(loaded.ref_name.as_deref(), Some("test:1"));
    assert!(loaded.rootfs.join("usr/bin/hello").is_file());
    // The load keeps a manifest describing the layer blobs as read (one is made for a
    // docker-archive), for images derived from it.
    let man: serde_json::Value =
        serde_json::from_slice(&fs::read(t.path().join("dest/manifest.json")).unwrap()).unwrap();
    assert_eq!(man["layers"][0]["digest"], l.digest.as_str());
    assert_eq!(man["layers"][0]["size"], l.size);
    assert_eq!(man["config"]["digest"], loaded.config_digest.as_str());
    let info = inspect_archive(&out).unwrap();
    assert_eq!(
        (info.format, info.manifest_digest.clone(), info.layers),
        (ArchiveFormat::OciLayout, Some(d.clone()), 1)
    );
    assert_eq!(info.config.entrypoint, ["/bin/app"]);
    assert_eq!(
        inspect_archive(&legacy).unwrap().format,
        ArchiveFormat::DockerArchive
    );
    let loaded2 = load_archive(&out, &t.path().join("dest2")).unwrap();
    assert_eq!(loaded2.format, ArchiveFormat::OciLayout);
    let kept = fs::read(t.path().join("dest2/manifest.json")).unwrap();
    assert_eq!(Digest::of_bytes(&kept), d);
    assert_eq!(loaded2.manifest_digest, Some(d));
}

#[test]
fn skopeo_accepts_oci_archive() {
    let v = Command::new("skopeo")
        .arg("--version")
        .output()
        .expect("skopeo is missing: run scripts/install-deps (apt-get install skopeo)");
    assert!(v.status.success(), "skopeo --version failed: {v:?}");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree_a(&root);
    let l = layer(
        LayerSource::Dir(root),
        Compression::Gzip,
        &t.path().join("l"),
    );
    let out = t.path().join("img.tar");
    let d = write_oci_archive(&out, &spec(vec![l.clone()])).unwrap();
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", out.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"], d.as_str());
    assert_eq!(v["Layers"][0], l.digest.as_str());
    // docker-archive too.
    let dout = t.path().join("docker.tar");
    write_docker_archive(&dout, &spec(vec![l])).unwrap();
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", dout.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect docker-archive failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // umoci, when present, unpacks it as well.
    if Command::new("umoci")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let layout = t.path().join("layout");
        fs::create_dir(&layout).unwrap();
        assert!(Command::new("tar")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(&layout)
            .status()
            .unwrap()
            .success());
        let o = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:test:1", layout.display()))
            .arg(t.path().join("bundle"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "umoci unpack failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(t.path().join("bundle/rootfs/usr/bin/hello").is_file());
    }
}

/// `Mapped` puts host directories at layer paths with an opaque whiteout each, takes parents
/// from the image root, lets a nested mapping replace that part of its parent's content,
/// keeps numeric owners with `FromDisk`, and leaves sockets and fifos out.
#[test]
fn mapped_directories_define_their_paths_completely() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    fs::create_dir_all(img.join("var/lib")).unwrap();
    fs::set_permissions(
        img.join("var"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let var = t.path().join("rw-var");
    fs::create_dir_all(var.join("lib/app")).unwrap();
    write(
        &var.join("lib/app/stale"),
        b"hidden by the nested mapping",
        0o644,
    );
    write(&var.join("log"), b"l", 0o640);
    std::os::unix::fs::chown(var.join("log"), Some(1000), Some(1001)).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(var.join("sock")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(var.join("fifo"))
        .status()
        .unwrap()
        .success());
    let app = t.path().join("rw-app");
    fs::create_dir_all(&app).unwrap();
    write(&app.join("data"), b"d", 0o600);
    let src = LayerSource::Mapped {
        parents_from: img.clone(),
        dirs: vec![
            (PathBuf::from("/var/lib/app"), app.clone()),
            (PathBuf::from("/var"), var.clone()),
        ],
    };
    let opts = LayerOptions {
        epoch: 5,
        owner: Ownership::FromDisk,
        compression: Compression::None,
        ..Default::default()
    };
    let out = t.path().join("layer.tar");
    write_layer(&src, &opts, &out).unwrap();
    let mut ar = tar::Archive::new(fs::File::open(&out).unwrap());
    let got: Vec<(String, u64, u64, u32)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
                h.mode().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "var/",
            "var/.wh..wh..opq",
            "var/lib/",
            "var/lib/app/",
            "var/lib/app/.wh..wh..opq",
            "var/lib/app/data",
            "var/log",
        ]
    );
    assert!(got.iter().all(|g| g.2 == 5));
    let log = got.iter().find(|g| g.0 == "var/log").unwrap();
    assert_eq!((log.1, log.3), (1000, 0o640));
    // A layer path that is only a parent (here none: /var is mapped) comes from the image.
    let src = LayerSource::Mapped {
        parents_from: img.clone(),
        dirs: vec![(PathBuf::from("/var/lib/app"), app.clone())],
    };
    write_layer(&src, &opts, &out).unwrap();
    let mut ar = tar::Archive::new(fs::File::open(&out).unwrap());
    let first = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path_bytes().as_ref(), b"var/");
    assert_eq!(first.header().mode().unwrap(), 0o750);
}

/// Why writing a layer of `src` to `out` is refused.
fn refusal(src: &LayerSource, out: &Path) -> String {
    write_layer(src, &LayerOptions::default(), out)
        .unwrap_err()
        .to_string()
}

/// A mapped directory that is a symlink is refused, never followed to what it points at.
#[test]
fn a_mapped_symlink_is_refused_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    fs::create_dir_all(&img).unwrap();
    let target = t.path().join("host-etc");
    fs::create_dir_all(&target).unwrap();
    write(&target.join("secret"), b"s", 0o600);
    let link = t.path().join("rw-tmp");
    symlink(&target, &link).unwrap();
    let src = LayerSource::Mapped {
        parents_from: img,
        dirs: vec![(PathBuf::from("/tmp"), link.clone())],
    };
    let out = t.path().join("layer.tar");
    let e = refusal(&src, &out);
    assert!(e.contains("rw-tmp") && e.contains("symlink"), "{e}");
}

/// A source name beginning with `.wh.` would be taken for a whiteout when the layer is
/// unpacked: it is refused (naming its path in the layer) before the blob is written, and
/// `LayerSource::check` says the same without writing.
#[test]
fn a_whiteout_name_in_the_source_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    fs::create_dir_all(img.join("var")).unwrap();
    let data = t.path().join("rw-data");
    fs::create_dir_all(data.join("sub")).unwrap();
    write(&data.join("sub/.wh.secret"), b"s", 0o600);
    let src = LayerSource::Mapped {
        parents_from: img,
        dirs: vec![(PathBuf::from("/var/data"), data.clone())],
    };
    let out = t.path().join("layer.tar");
    let e = refusal(&src, &out);
    assert!(
        e.starts_with("/var/data/sub/.wh.secret: ") && e.contains("rename it"),
        "{e}"
    );
    assert!(!out.exists(), "a refused layer was written");
    assert_eq!(src.check().unwrap_err().to_string(), e);
    // A plain tree too.
    let e = refusal(&LayerSource::Dir(data.clone()), &out);
    assert!(e.starts_with("/sub/.wh.secret: "), "{e}");
    fs::rename(data.join("sub/.wh.secret"), data.join("sub/wh.secret")).unwrap();
    src.check().unwrap();
    write_layer(&src, &LayerOptions::default(), &out).unwrap();
}
