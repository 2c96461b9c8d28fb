//! `diff_archives` names the first difference.

mod common;
use common::*;
use distill_oci::*;
use std::fs;
use std::path::{Path, PathBuf};

fn image(
    t: &Path,
    name: &str,
    build: impl Fn(&Path),
    c: Compression,
    tweak: impl Fn(&mut ImageSpec),
) -> PathBuf {
    let src = t.join(format!("{name}-src"));
    fs::create_dir_all(&src).unwrap();
    build(&src);
    let opts = LayerOptions {
        compression: c,
        created_by: "pkg".into(),
        ..Default::default()
    };
    let mut base = raw_layer(
        t,
        &format!("{name}-base.tar"),
        &raw_tar(&[dir("base/"), file("base/f", b"base")]),
    );
    base.created_by = "base".into();
    let l = write_layer(
        &LayerSource::Dir(src),
        &opts,
        &t.join(format!("{name}.layer")),
    )
    .unwrap();
    let mut s = spec(vec![base, l]);
    tweak(&mut s);
    let out = t.join(format!("{name}.tar"));
    write_oci_archive(&out, &s).unwrap();
    out
}

fn base_tree(root: &Path) {
    write(&root.join("bin/app"), b"application", 0o755);
    write(&root.join("etc/conf"), b"key=1", 0o644);
    std::os::unix::fs::symlink("conf", root.join("etc/link")).unwrap();
}

fn diff_with(build_b: impl Fn(&Path), c: Compression) -> Option<Difference> {
    let t = tempfile::tempdir().unwrap();
    let a = image(t.path(), "a", base_tree, Compression::Gzip, |_| {});
    let b = image(t.path(), "b", build_b, c, |_| {});
    diff_archives(&a, &b).unwrap()
}

#[test]
fn identical_archives_have_no_difference() {
    assert_eq!(diff_with(base_tree, Compression::Gzip), None);
}

#[test]
fn content_difference_names_layer_and_path() {
    let d = diff_with(
        |r| {
            base_tree(r);
            write(&r.join("etc/conf"), b"key=2", 0o644);
        },
        Compression::Gzip,
    )
    .unwrap();
    assert!(
        matches!(d.location, DiffLocation::Layer { index: 1, .. }),
        "{d}"
    );
    assert_eq!(d.path.as_deref(), Some("etc/conf"));
    assert_eq!(d.kind, DiffKind::Content);
    let s = d.to_string();
    assert!(
        s.starts_with("layer 1 (sha256:") && s.ends_with("etc/conf: content differs"),
        "{s}"
    );
}

#[test]
fn mode_size_link_and_missing_differences() {
    let d = diff_with(
        |r| {
            base_tree(r);
            fs::set_permissions(
                r.join("bin/app"),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
        },
        Compression::Gzip,
    )
    .unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("bin/app"), DiffKind::Mode)
    );
    assert_eq!(d.detail, "0755 vs 0700");

    let d = diff_with(
        |r| {
            base_tree(r);
            write(&r.join("etc/conf"), b"key=10", 0o644);
        },
        Compression::Gzip,
    )
    .unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("etc/conf"), DiffKind::Size)
    );

    let d = diff_with(
        |r| {
            base_tree(r);
            fs::remove_file(r.join("etc/link")).unwrap();
            std::os::unix::fs::symlink("other", r.join("etc/link")).unwrap();
        },
        Compression::Gzip,
    )
    .unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("etc/link"), DiffKind::LinkTarget)
    );

    let d = diff_with(
        |r| {
            base_tree(r);
            write(&r.join("etc/extra"), b"", 0o644);
        },
        Compression::Gzip,
    )
    .unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("etc/extra"), DiffKind::MissingInA)
    );

    let d = diff_with(
        |r| {
            base_tree(r);
            fs::remove_file(r.join("bin/app")).unwrap();
        },
        Compression::Gzip,
    )
    .unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("bin/app"), DiffKind::MissingInB)
    );
}

#[test]
fn owner_and_compression_differences() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    base_tree(&src);
    let mk = |name: &str, owner: Ownership, c: Compression| {
        let opts = LayerOptions {
            owner,
            compression: c,
            ..Default::default()
        };
        let l = write_layer(
            &LayerSource::Dir(src.clone()),
            &opts,
            &t.path().join(format!("{name}.l")),
        )
        .unwrap();
        let out = t.path().join(format!("{name}.tar"));
        write_oci_archive(&out, &spec(vec![l])).unwrap();
        out
    };
    let a = mk("a", Ownership::default(), Compression::Gzip);
    let b = mk("b", Ownership::Fixed { uid: 0, gid: 7 }, Compression::Gzip);
    let c = mk("c", Ownership::default(), Compression::Zstd);
    let d = diff_archives(&a, &b).unwrap().unwrap();
    assert_eq!(
        (d.path.as_deref(), d.kind),
        (Some("bin"), DiffKind::Owner),
        "{d}"
    );
    let d = diff_archives(&a, &c).unwrap().unwrap();
    assert_eq!(d.kind, DiffKind::Encoding, "{d}");
    assert!(matches!(d.location, DiffLocation::Layer { index: 0, .. }));
}

#[test]
fn config_field_difference_is_named() {
    let t = tempfile::tempdir().unwrap();
    let a = image(t.path(), "a", base_tree, Compression::Gzip, |_| {});
    let b = image(t.path(), "b", base_tree, Compression::Gzip, |s| {
        s.config.env.push("B=2".into())
    });
    let d = diff_archives(&a, &b).unwrap().unwrap();
    assert_eq!(d.location, DiffLocation::Document("config".into()));
    assert_eq!(d.kind, DiffKind::Field);
    assert_eq!(d.path.as_deref(), Some("config.Env[1]"));
    assert_eq!(
        d.to_string(),
        "config: config.Env[1]: field differs (\"PATH=/bin\" vs \"B=2\")"
    );
    let c = image(t.path(), "c", base_tree, Compression::Gzip, |s| {
        s.annotations.insert("signer".into(), "X".into());
    });
    let d = diff_archives(&a, &c).unwrap().unwrap();
    assert_eq!(d.location, DiffLocation::Document("manifest".into()));
    assert_eq!(d.path.as_deref(), Some("annotations"));
    let e = image(t.path(), "e", base_tree, Compression::Gzip, |s| {
        s.layers.truncate(1)
    });
    let d = diff_archives(&a, &e).unwrap().unwrap();
    assert_eq!(d.kind, DiffKind::LayerCount);
}
