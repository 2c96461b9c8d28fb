//! Image names come from archives (`org.opencontainers.image.ref.name`, docker RepoTags) and
//! are printed by `load` and `images`: one holding terminal escapes, newlines or bidi
//! controls must be refused, not written to the admin's terminal.

use std::io::Read;

use distill_tests::Lab;

/// A copy of the hello archive whose index names the image `name`.
fn archive_named(lab: &Lab, name: &str) -> std::path::PathBuf {
    let src = distill_tests::hello_archive();
    let dst = lab.path("renamed.oci.tar");
    let mut ar = tar::Archive::new(std::fs::File::open(&src).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(&dst).unwrap());
    let mut renamed = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        if path.to_str() == Some("index.json") {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = name.into();
            bytes = serde_json::to_vec(&v).unwrap();
            renamed = true;
        }
        let mut h = e.header().clone();
        h.set_size(bytes.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &path, &bytes[..]).unwrap();
    }
    out.finish().unwrap();
    assert!(renamed, "the archive has an index.json to rename in");
    dst
}

#[test]
fn names_with_escapes_newlines_or_bidi_controls_are_refused_at_load() {
    let lab = Lab::empty();
    for (name, shown) in [
        ("hello\u{1b}]0;owned\u{7}\u{1b}[2J:1", "\\u{1b}"),
        ("hello\nfake-line:1", "\\n"),
        ("hello\u{202e}1:gnp", "\\u{202e}"),
    ] {
        let archive = archive_named(&lab, name);
        let r = lab.distill(&["load", archive.to_str().unwrap()]);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_ne!(r.code, 0, "loaded {name:?}:\n{all}");
        assert!(
            all.contains(shown) && all.contains("image name"),
            "the error names the character escaped ({shown}):\n{all}"
        );
        // Nothing of the name reached the output raw.
        for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(!all.contains(raw), "{raw:?} printed raw:\n{all:?}");
        }
        assert!(
            !all.contains("hello\nfake"),
            "newline printed raw:\n{all:?}"
        );
        // And nothing was loaded.
        let images = lab.distill(&["images", "--json"]);
        images.ok();
        assert_eq!(images.stdout.trim(), "[]", "{}", images.stdout);
    }
    // A plain name still loads (the archive rewriting itself is sound).
    let archive = archive_named(&lab, "hello:plain");
    lab.distill(&["load", archive.to_str().unwrap()]).ok();
}
