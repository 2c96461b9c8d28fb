//! Safe loading: round trips, whiteouts, refusals, corruption.

mod common;
use common::*;
use distill_oci::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn layer_of(dir: &Path, name: &str, c: Compression) -> LayerBlob {
    let opts = LayerOptions {
        epoch: 1_000_000,
        compression: c,
        created_by: name.into(),
        ..Default::default()
    };
    write_layer(
        &LayerSource::Dir(dir.to_path_buf()),
        &opts,
        &dir.with_extension(name),
    )
    .unwrap()
}

/// Asserts that loading `image` fails, names `needle`, and leaves neither dest nor temp dirs.
fn refused(t: &Path, image: &Path, needles: &[&str]) -> Error {
    let dest = t.join("dest");
    let before = listing(t);
    let err = load_archive(image, &dest).unwrap_err();
    let msg = err.to_string();
    eprintln!("refused as expected: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
    assert!(!msg.contains('\n'), "one-line error: {msg:?}");
    assert!(!dest.exists(), "failed load left {}", dest.display());
    assert_eq!(listing(t), before, "failed load left temp files");
    err
}

#[test]
fn round_trip_keeps_modes_owners_links_and_config() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("usr/bin/tool"), &vec![7u8; 3 << 20], 0o755);
    write(&src.join("usr/bin/suid"), b"s", 0o4711);
    write(&src.join("etc/conf"), b"c", 0o600);
    fs::set_permissions(src.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("usr/bin", src.join("bin")).unwrap();
    fs::hard_link(src.join("usr/bin/tool"), src.join("usr/bin/tool2")).unwrap();
    let opts = LayerOptions {
        epoch: 1_000_000,
        owner: Ownership::Fixed {
            uid: 1000,
            gid: 1001,
        },
        compression: Compression::Zstd,
        created_by: "pkg".into(),
    };
    let l = write_layer(
        &LayerSource::Dir(src.clone()),
        &opts,
        &t.path().join("l.zst"),
    )
    .unwrap();
    let mut s = spec(vec![l.clone()]);
    s.annotations.insert("k".into(), "v".into());
    s.config.working_dir = Some("/w".into());
    let img = t.path().join("img.tar");
    let digest = write_oci_archive(&img, &s).unwrap();
    let dest = t.path().join("dest");
    let li = load_archive(&img, &dest).unwrap();
    assert_eq!(li.manifest_digest, Some(digest));
    assert_eq!(li.layers, vec![l.digest.clone()]);
    assert_eq!(li.diff_ids, vec![l.diff_id.clone()]);
    assert_eq!(li.config.entrypoint, ["/bin/app"]);
    assert_eq!(li.config.env, ["A=1", "PATH=/bin"]);
    assert_eq!(li.config.working_dir.as_deref(), Some("/w"));
    assert_eq!(li.annotations.get("k").map(String::as_str), Some("v"));
    assert_eq!(li.ref_name.as_deref(), Some("test:1"));
    assert_eq!(li.blob_bytes, l.size);
    assert_eq!(li.unpacked_bytes, (3 << 20) + 2);
    let r = &li.rootfs;
    assert_eq!(
        fs::read(r.join("usr/bin/tool")).unwrap(),
        vec![7u8; 3 << 20]
    );
    let m = |p: &str| fs::symlink_metadata(r.join(p)).unwrap();
    assert_eq!(m("usr/bin/suid").mode() & 0o7777, 0o4711);
    assert_eq!(m("etc/conf").mode() & 0o7777, 0o600);
    assert_eq!(m("etc").mode() & 0o7777, 0o750);
    assert_eq!(m("usr/bin/tool").ino(), m("usr/bin/tool2").ino());
    assert_eq!(fs::read_link(r.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(m("etc/conf").mtime(), 1_000_000);
    assert_eq!(m("etc").mtime(), 1_000_000);
    assert_eq!(m("bin").mtime(), 1_000_000);
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            (m("usr/bin/suid").uid(), m("usr/bin/suid").gid()),
            (1000, 1001)
        );
        assert_eq!(m("bin").uid(), 1000);
    }
    assert!(dest.join("config.json").is_file());
    // A second load into the same place is refused without touching it.
    let err = load_archive(&img, &dest).unwrap_err();
    assert!(matches!(err, Error::DestinationExists(_)), "{err}");
}

#[test]
fn whiteouts_delete_and_opaque_dirs_hide_lower_layers() {
    let t = tempfile::tempdir().unwrap();
    let l0 = raw_tar(&[
        dir("etc/"),
        file("etc/keep", b"k"),
        file("etc/gone", b"g"),
        dir("opq/"),
        file("opq/old1", b"1"),
        dir("opq/sub/"),
        file("opq/sub/old2", b"2"),
        dir("deldir/"),
        file("deldir/x", b"x"),
        dir("opq2/"),
        dir("opq2/sub/"),
        file("opq2/sub/old", b"o"),
        file("opq2/old", b"o"),
    ]);
    let l1 = raw_tar(&[
        file("etc/.wh.gone", b""),
        file(".wh.deldir", b""),
        dir("opq/"),
        file("opq/new", b"n"),
        file("opq/.wh..wh..opq", b""),
        file("opq2/sub/new", b"n"),
        file("opq2/.wh..wh..opq", b""),
        file("etc/.wh..wh.plnk", b""),
        file("etc/.wh.never-existed", b""),
    ]);
    let img = raw_image(t.path(), &[l0, l1]);
    let li = load_archive(&img, &t.path().join("dest")).unwrap();
    let r = &li.rootfs;
    assert_eq!(listing(&r.join("etc")), ["keep"]);
    assert_eq!(
        listing(&r.join("opq")),
        ["new"],
        "opaque dir keeps only this layer's entries"
    );
    assert_eq!(
        listing(&r.join("opq2")),
        ["sub"],
        "dirs written by this layer survive its opaque marker"
    );
    assert_eq!(listing(&r.join("opq2/sub")), ["new"]);
    assert!(!r.join("deldir").exists());
    assert_eq!(listing(r), ["etc", "opq", "opq2"]);
}

#[test]
fn later_layers_replace_files_dirs_and_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let l0 = raw_tar(&[
        file("a", b"old"),
        dir("d/"),
        file("d/x", b"x"),
        symlink("s", "a"),
    ]);
    let l1 = raw_tar(&[
        dir("a/"),
        file("d", b"now a file"),
        file("s", b"no longer a link"),
        file("a/inner", b"i"),
    ]);
    let img = raw_image(t.path(), &[l0, l1]);
    let li = load_archive(&img, &t.path().join("dest")).unwrap();
    let r = &li.rootfs;
    assert_eq!(fs::read(r.join("a/inner")).unwrap(), b"i");
    assert_eq!(fs::read(r.join("d")).unwrap(), b"now a file");
    assert!(!fs::symlink_metadata(r.join("s"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlinks_inside_the_root_are_followed_within_it() {
    let t = tempfile::tempdir().unwrap();
    // usrmerge-style absolute and relative links, then files written through them.
    let l0 = raw_tar(&[
        dir("usr/"),
        dir("usr/bin/"),
        symlink("bin", "usr/bin"),
        symlink("abs", "/usr"),
        symlink("lib", "./usr/../usr/lib"),
    ]);
    let l1 = raw_tar(&[
        file("bin/sh", b"sh"),
        file("abs/marker", b"m"),
        file("lib/libc.so", b"c"),
    ]);
    let img = raw_image(t.path(), &[l0, l1]);
    let li = load_archive(&img, &t.path().join("dest")).unwrap();
    let r = &li.rootfs;
    assert_eq!(fs::read(r.join("usr/bin/sh")).unwrap(), b"sh");
    assert_eq!(fs::read(r.join("usr/marker")).unwrap(), b"m");
    assert_eq!(fs::read(r.join("usr/lib/libc.so")).unwrap(), b"c");
    assert!(fs::symlink_metadata(r.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn refuses_dotdot_entries() {
    let t = tempfile::tempdir().unwrap();
    let img = raw_image(
        t.path(),
        &[raw_tar(&[file("ok", b"1"), file("a/../../evil", b"x")])],
    );
    let err = refused(t.path(), &img, &["layer 0", "a/../../evil", "'..'"]);
    assert!(matches!(err, Error::UnsafeEntry { layer: 0, .. }));
    assert!(!t.path().parent().unwrap().join("evil").exists());
}

#[test]
fn refuses_absolute_entries() {
    let t = tempfile::tempdir().unwrap();
    let img = raw_image(t.path(), &[raw_tar(&[file("/etc/evil", b"x")])]);
    refused(t.path(), &img, &["layer 0", "/etc/evil", "absolute"]);
}

#[test]
fn refuses_paths_through_symlinks_pointing_outside() {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("victim");
    fs::create_dir(&target).unwrap();
    // Symlink in layer 0, write through it in layer 1 (and in the same layer).
    let l0 = raw_tar(&[symlink("esc", "../../../../../../../../../..")]);
    let l1 = raw_tar(&[file("esc/tmp/evil", b"x")]);
    let img = raw_image(t.path(), &[l0, l1]);
    let err = refused(
        t.path(),
        &img,
        &["layer 1", "esc/tmp/evil", "outside the root"],
    );
    assert!(matches!(err, Error::UnsafeEntry { layer: 1, .. }));
    let img2 = t.path().join("img2");
    fs::create_dir(&img2).unwrap();
    let img2 = raw_image(
        &img2,
        &[raw_tar(&[
            dir("d/"),
            symlink("d/up", "../.."),
            file("d/up/x", b"x"),
        ])],
    );
    refused(t.path(), &img2, &["layer 0", "d/up/x", "outside the root"]);
    assert_eq!(listing(&target), Vec::<String>::new());
}

#[test]
fn refuses_hard_links_to_outside() {
    let t = tempfile::tempdir().unwrap();
    for (i, target) in ["/etc/passwd", "../../etc/passwd", "missing"]
        .iter()
        .enumerate()
    {
        let d = t.path().join(format!("c{i}"));
        fs::create_dir(&d).unwrap();
        let img = raw_image(&d, &[raw_tar(&[file("f", b"x"), hardlink("h", target)])]);
        let needle = match i {
            0 => "absolute",
            1 => "'..'",
            _ => "does not exist",
        };
        refused(&d, &img, &["layer 0", "\"h\"", needle]);
    }
    // Through a symlink that leaves the root.
    let d = t.path().join("c3");
    fs::create_dir(&d).unwrap();
    let img = raw_image(
        &d,
        &[raw_tar(&[
            symlink("up", "../../../.."),
            hardlink("h", "up/etc/passwd"),
        ])],
    );
    refused(&d, &img, &["\"h\"", "outside the root"]);
}

#[test]
fn refuses_device_nodes() {
    let t = tempfile::tempdir().unwrap();
    let dev = Raw {
        name: "dev/sda",
        typ: b'4',
        link: "",
        data: b"",
        mode: 0o660,
    };
    let img = raw_image(t.path(), &[raw_tar(&[dir("dev/"), dev])]);
    refused(t.path(), &img, &["layer 0", "dev/sda", "device node"]);
    let d = t.path().join("c");
    fs::create_dir(&d).unwrap();
    let chr = Raw {
        name: "null",
        typ: b'3',
        link: "",
        data: b"",
        mode: 0o666,
    };
    let img = raw_image(&d, &[raw_tar(&[chr])]);
    refused(&d, &img, &["null", "device node"]);
}

#[test]
fn corrupted_layer_blob_is_detected_and_leaves_nothing() {
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        write(
            &src.join("big"),
            &(0..200_000u32)
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
            0o644,
        );
        let l = layer_of(&src, "layer", c);
        let img = t.path().join("img.tar");
        write_oci_archive(&img, &spec(vec![l.clone()])).unwrap();
        // Flip one byte in the middle of the layer blob inside the archive.
        let mut bytes = fs::read(&img).unwrap();
        let blob = fs::read(&l.path).unwrap();
        let pos = bytes.windows(64).position(|w| w == &blob[..64]).unwrap() + blob.len() / 2;
        bytes[pos] ^= 0x55;
        fs::write(&img, &bytes).unwrap();
        fs::remove_dir_all(&src).unwrap();
        fs::remove_file(&l.path).unwrap();
        let err = refused(
            t.path(),
            &img,
            &[
                &format!("blobs/sha256/{}", l.digest.hex()),
                "layer 0",
                "digest is",
            ],
        );
        assert!(matches!(err, Error::Blob { .. }), "{c:?}: {err}");
    }
}

#[test]
fn corrupted_config_and_wrong_size_are_detected() {
    let t = tempfile::tempdir().unwrap();
    let img = raw_image(t.path(), &[raw_tar(&[file("f", b"content")])]);
    let docs = image_documents(&spec(vec![raw_layer(
        t.path(),
        "l0.tar",
        &raw_tar(&[file("f", b"content")]),
    )]))
    .unwrap();
    let mut bytes = fs::read(&img).unwrap();
    let pos = bytes
        .windows(docs.config.len())
        .position(|w| w == &docs.config[..])
        .unwrap();
    let k = pos
        + docs
            .config
            .windows(8)
            .position(|w| w == b"/bin/app")
            .unwrap()
        + 1;
    bytes[k] = b'X';
    let bad = t.path().join("bad.tar");
    fs::write(&bad, &bytes).unwrap();
    refused(
        t.path(),
        &bad,
        &["config", &docs.config_digest.hex()[..12], "digest is"],
    );
    // Not an archive at all.
    let junk = t.path().join("junk.tar");
    fs::write(&junk, b"hello").unwrap();
    refused(t.path(), &junk, &["junk.tar"]);
}

#[test]
fn diff_id_mismatch_is_detected() {
    let t = tempfile::tempdir().unwrap();
    let tar = raw_tar(&[file("f", b"x")]);
    let mut l = raw_layer(t.path(), "l0.tar", &tar);
    l.diff_id = Digest::of_bytes(b"something else");
    let img = t.path().join("img.tar");
    // An uncompressed layer whose config diff_id differs from its digest.
    write_oci_archive(&img, &spec(vec![l])).unwrap();
    refused(t.path(), &img, &["layer 0", "rootfs.diff_ids[0]"]);
}
