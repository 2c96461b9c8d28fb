//! Parsing and validation of real manifest files.

use std::fs;
use std::path::{Path, PathBuf};

use distill_manifest::{Compression, Manifest, ManifestError, Owner, SourceKind};
use sha2::{Digest, Sha256};

const SHA: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";

fn full_manifest() -> String {
    format!(
        r#"version = 1
source_date_epoch = 1700000000

[source.busybox]
deb = "busybox-static"
deb_version = "1:1.35.0-4+deb12u1+b1"
sha256 = "{SHA}"

[source.hello-src]
file = "src/hello.sh"
sha256 = "{SHA}"

[source.tarball]
url = "https://example.org/x.tar.gz"
sha256 = "{SHA}"

[package.toolchain]
unpack = ["busybox", "tarball"]

[package.hello]
version = "1.0"
inputs = ["busybox", "hello-src"]
build = ["mkdir -p $out/bin", "cp $hello-src $out/bin/hello"]
shell = ["/store/busybox/bin/busybox", "sh", "-e", "-c"]
env = {{ GREETING = "hi" }}
root = "toolchain"

[image]
name = "hello"
packages = ["hello", "toolchain"]
entrypoint = ["/bin/hello"]
cmd = ["world"]
env = {{ LANG = "C.UTF-8" }}
workdir = "/"
user = "1000:1000"
ports = ["8080/tcp", "53/udp", "8080"]
labels = {{ "org.opencontainers.image.title" = "hello" }}
stop_signal = "SIGTERM"
compression = "zstd"
layer_budget = 16
owner = "0:0"

[trace]
keep = ["/etc/ssl/certs/**"]
exclude = ["/usr/share/doc/**"]

[[trace.probe]]
name = "greet"
args = ["/bin/hello", "world"]
env = {{ K = "V" }}
stdin = "some input"
exit_code = 3

[[trace.probe]]
args = ["/bin/hello"]
"#
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("manifest.toml");
    fs::write(&p, text).unwrap();
    p
}

fn load_err(text: &str) -> (PathBuf, ManifestError) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), text);
    let e = Manifest::load(&p).expect_err("manifest should be refused");
    (p, e)
}

/// The error's one-line message, with the path prefix checked and removed.
fn message(text: &str) -> String {
    let (p, e) = load_err(text);
    let s = e.to_string();
    assert!(!s.contains('\n'), "error is not one line: {s}");
    let prefix = p.display().to_string();
    assert!(
        s.starts_with(&prefix),
        "error does not start with the manifest path: {s}"
    );
    s[prefix.len()..].to_string()
}

fn minimal(extra: &str) -> String {
    format!("version = 1\n[source.a]\nfile = \"a.txt\"\nsha256 = \"{SHA}\"\n[package.p]\ninputs = [\"a\"]\nbuild = [\"true\"]\n{extra}")
}

#[test]
fn full_manifest_loads_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = full_manifest();
    let p = write(dir.path(), &text);
    let loaded = Manifest::load(&p).unwrap();
    assert_eq!(loaded.path, p);
    assert_eq!(loaded.dir, dir.path());
    assert_eq!(
        loaded.digest,
        format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
    );
    let m = &loaded.manifest;
    assert_eq!(m.version, 1);
    assert_eq!(m.source_date_epoch, 1_700_000_000);
    assert_eq!(
        m.sources["busybox"].kind,
        SourceKind::Deb {
            name: "busybox-static".into(),
            version: "1:1.35.0-4+deb12u1+b1".into(),
            arch: "amd64".into()
        }
    );
    assert_eq!(
        m.sources["hello-src"].kind,
        SourceKind::File {
            path: PathBuf::from("src/hello.sh")
        }
    );
    assert_eq!(
        loaded.resolve_file(Path::new("src/hello.sh")),
        dir.path().join("src/hello.sh")
    );
    assert_eq!(
        m.sources["tarball"].kind,
        SourceKind::Url {
            url: "https://example.org/x.tar.gz".into()
        }
    );
    assert_eq!(m.sources["tarball"].sha256, SHA);

    let hello = &m.packages["hello"];
    assert_eq!(hello.version, "1.0");
    assert_eq!(hello.inputs, ["busybox", "hello-src"]);
    assert_eq!(hello.build.len(), 2);
    assert_eq!(hello.shell[0], "/store/busybox/bin/busybox");
    assert_eq!(hello.env["GREETING"], "hi");
    assert_eq!(hello.root.as_deref(), Some("toolchain"));
    assert_eq!(hello.dependencies(), ["busybox", "hello-src", "toolchain"]);
    let tc = &m.packages["toolchain"];
    assert_eq!(tc.version, "0");
    assert_eq!(tc.shell, ["sh", "-e", "-c"]);
    assert_eq!(tc.unpack, ["busybox", "tarball"]);

    let img = m.image.as_ref().unwrap();
    assert_eq!(img.name, "hello");
    assert_eq!(img.packages, ["hello", "toolchain"]);
    assert_eq!(img.entrypoint, ["/bin/hello"]);
    assert_eq!(img.cmd, ["world"]);
    assert_eq!(img.env["LANG"], "C.UTF-8");
    assert_eq!(img.workdir.as_deref(), Some("/"));
    assert_eq!(img.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        img.ports,
        ["53/udp", "8080/tcp"],
        "normalized, sorted, deduplicated"
    );
    assert_eq!(img.labels["org.opencontainers.image.title"], "hello");
    assert_eq!(img.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(img.compression, Compression::Zstd);
    assert_eq!(img.layer_budget, Some(16));
    assert_eq!(img.owner, Some(Owner { uid: 0, gid: 0 }));

    let tr = m.trace.as_ref().unwrap();
    assert_eq!(tr.keep, ["/etc/ssl/certs/**"]);
    assert_eq!(tr.exclude, ["/usr/share/doc/**"]);
    assert_eq!(tr.probes.len(), 2);
    assert_eq!(tr.probes[0].name.as_deref(), Some("greet"));
    assert_eq!(tr.probes[0].env["K"], "V");
    assert_eq!(tr.probes[0].stdin.as_deref(), Some("some input"));
    assert_eq!(tr.probes[0].exit_code, 3);
    assert_eq!(tr.probes[1].exit_code, 0);
    assert_eq!(tr.probes[1].label(1), "probe[1]");

    assert_eq!(loaded.package_order(), ["toolchain", "hello"]);
}

#[test]
fn defaults_and_canonical_json() {
    let m = Manifest::parse_str(&minimal(""), Path::new("m.toml")).unwrap();
    assert_eq!(m.source_date_epoch, 0);
    assert!(m.image.is_none() && m.trace.is_none());
    // Same meaning, different layout and key order: same canonical JSON.
    let reordered = format!(
        "version = 1\n\n[package.p]\nbuild = [\"true\"]\ninputs = [\"a\"]\nversion = \"0\"\n[source.a]\nsha256 = \"{SHA}\"\nfile = \"a.txt\"\n"
    );
    let m2 = Manifest::parse_str(&reordered, Path::new("m.toml")).unwrap();
    assert_eq!(m, m2);
    assert_eq!(m.canonical_json(), m2.canonical_json());
    let v: serde_json::Value = serde_json::from_str(&m.canonical_json()).unwrap();
    assert_eq!(v["packages"]["p"]["shell"][0], "sh");
    assert_eq!(v["sources"]["a"]["kind"]["file"]["path"], "a.txt");
    // A change in meaning changes it.
    let m3 = Manifest::parse_str(&minimal("env = { X = \"1\" }"), Path::new("m.toml")).unwrap();
    assert_ne!(m.canonical_json(), m3.canonical_json());
}

#[test]
fn package_order_is_topological_with_ties_by_name() {
    let text = format!(
        "version = 1\n[source.s]\nfile = \"s\"\nsha256 = \"{SHA}\"\n\
         [package.zlib]\nunpack = [\"s\"]\n\
         [package.app]\ninputs = [\"zlib\", \"lib\"]\nbuild = [\"x\"]\n\
         [package.lib]\ninputs = [\"zlib\"]\nbuild = [\"x\"]\n\
         [package.aaa]\nunpack = [\"s\"]\n\
         [package.mid]\nroot = \"app\"\nbuild = [\"x\"]\n"
    );
    let m = Manifest::parse_str(&text, Path::new("m.toml")).unwrap();
    assert_eq!(m.package_order(), ["aaa", "zlib", "lib", "app", "mid"]);
}

#[test]
fn syntax_error_has_line_and_column() {
    let msg = message("version = 1\n[source.a]\nfile \"x\"\n");
    assert!(msg.starts_with(":3:6: "), "{msg}");
}

#[test]
fn unknown_field_has_line_and_column() {
    let msg = message(&minimal("biuld = [\"x\"]\n"));
    assert!(msg.starts_with(":8:1: "), "{msg}");
    assert!(msg.contains("unknown field `biuld`"), "{msg}");
    let msg = message("version = 1\nsource_date = 3\n");
    assert!(
        msg.starts_with(":2:1: ") && msg.contains("source_date"),
        "{msg}"
    );
}

#[test]
fn wrong_type_is_reported() {
    let msg = message(&minimal("version = 1.0\n"));
    assert!(msg.starts_with(":8:11: "), "{msg}");
}

#[test]
fn version_must_be_1() {
    assert!(message("version = 2\n").contains(":1:11: version: unsupported manifest version 2"));
    assert!(message("[source.a]\nfile = \"x\"\nsha256 = \"x\"\n").contains("version: missing"));
}

#[test]
fn unknown_input_names_the_field_path() {
    let text = minimal("").replace("inputs = [\"a\"]", "inputs = [\"a\", \"busybx\"]");
    let msg = message(&text);
    assert_eq!(msg, ":6:16: package.p.inputs[1]: unknown input \"busybx\" (not a source or package in this manifest)");
}

#[test]
fn source_rules() {
    let src = |body: &str| format!("version = 1\n[source.a]\n{body}\n");
    assert!(message(&src(&format!("sha256 = \"{SHA}\""))).contains(
        "source.a: a source needs exactly one of `file`, `url` or `deb`; this one has none"
    ));
    let m = message(&src(&format!(
        "file = \"x\"\nurl = \"https://e.org/x\"\nsha256 = \"{SHA}\""
    )));
    assert!(
        m.starts_with(":4:7: source.a: ") && m.contains("has more than one"),
        "{m}"
    );
    assert!(message(&src("file = \"x\"")).contains("source.a.sha256: missing"));
    assert!(message(&src("file = \"x\"\nsha256 = \"abc\""))
        .contains("source.a.sha256: \"abc\" is not a sha256"));
    let upper = SHA.to_uppercase();
    assert!(
        message(&src(&format!("file = \"x\"\nsha256 = \"{upper}\"")))
            .contains("write it in lowercase")
    );
    let m = message(&src(&format!("deb = \"busybox\"\nsha256 = \"{SHA}\"")));
    assert!(m.contains("source.a.deb_version: missing"), "{m}");
    let m = message(&src(&format!(
        "url = \"ftp://e.org/x\"\nsha256 = \"{SHA}\""
    )));
    assert!(
        m.contains("source.a.url: \"ftp://e.org/x\": only http:// and https://"),
        "{m}"
    );
    let m = message(&src(&format!(
        "url = \"https://user:pw@e.org/x\"\nsha256 = \"{SHA}\""
    )));
    assert!(m.contains("credentials"), "{m}");
    let m = message(&src(&format!("file = \"/etc/passwd\"\nsha256 = \"{SHA}\"")));
    assert!(
        m.contains("source.a.file: absolute path \"/etc/passwd\" is refused"),
        "{m}"
    );
    let m = message(&src(&format!(
        "file = \"x\"\ndeb_version = \"1\"\nsha256 = \"{SHA}\""
    )));
    assert!(
        m.contains("source.a.deb_version: only valid with `deb`"),
        "{m}"
    );
    let m = message(&src(&format!(
        "deb = \"Bad_Name\"\ndeb_version = \"1\"\nsha256 = \"{SHA}\""
    )));
    assert!(
        m.contains("source.a.deb: \"Bad_Name\" is not a Debian package name"),
        "{m}"
    );
    let m = message(&src(&format!(
        "deb = \"bb\"\ndeb_version = \"1 2\"\nsha256 = \"{SHA}\""
    )));
    assert!(
        m.contains("source.a.deb_version: \"1 2\" is not a Debian version"),
        "{m}"
    );
    let m = message(&format!(
        "version = 1\n[source.A]\nfile = \"x\"\nsha256 = \"{SHA}\"\n"
    ));
    assert!(m.contains("source.A: invalid name"), "{m}");
}

#[test]
fn names_share_one_namespace() {
    let m = message(&minimal("[package.a]\nbuild = [\"x\"]\n"));
    assert!(m.contains("package.a: name \"a\" is also a source"), "{m}");
}

#[test]
fn input_variables_do_not_collide() {
    assert_eq!(
        distill_manifest::input_env_name("hello-src").as_deref(),
        Some("hello_src")
    );
    assert_eq!(
        distill_manifest::input_env_name("libbz2-1.0").as_deref(),
        Some("libbz2_1_0")
    );
    assert_eq!(distill_manifest::input_env_name("7zip"), None);
    let text = minimal(&format!("[source.\"a.b\"]\nfile = \"x\"\nsha256 = \"{SHA}\"\n[source.a_b]\nfile = \"y\"\nsha256 = \"{SHA}\"\n"))
        .replace("inputs = [\"a\"]", "inputs = [\"a.b\", \"a_b\"]");
    let m = message(&text);
    assert!(
        m.contains("package.p.inputs[1]: inputs \"a.b\" and \"a_b\" would both be $a_b"),
        "{m}"
    );
    let m = message(&minimal("[package.out]\nbuild = [\"x\"]\n"));
    assert!(m.contains("package.out: the name `out` is reserved"), "{m}");
    // An unpacked source is a variable in the build too.
    let text = minimal(&format!("[source.\"a.b\"]\nfile = \"x\"\nsha256 = \"{SHA}\"\n[source.a_b]\nfile = \"y\"\nsha256 = \"{SHA}\"\n"))
        .replace("inputs = [\"a\"]", "inputs = [\"a_b\"]\nunpack = [\"a.b\"]");
    let m = message(&text);
    assert!(m.contains("would both be $a_b"), "{m}");
}

#[test]
fn package_rules() {
    let m = message(&minimal("").replace(
        "inputs = [\"a\"]\nbuild = [\"true\"]\n",
        "inputs = [\"a\"]\n",
    ));
    assert!(
        m.contains("package.p: a package needs `unpack` or `build`"),
        "{m}"
    );
    let m = message(&minimal("[package.q]\nunpack = [\"p\"]\n"));
    assert!(
        m.contains("package.q.unpack[0]: \"p\" is a package; only sources can be unpacked"),
        "{m}"
    );
    let m = message(&minimal("[package.q]\nunpack = [\"nope\"]\n"));
    assert!(
        m.contains("package.q.unpack[0]: unknown source \"nope\""),
        "{m}"
    );
    let m = message(&minimal("env = { PATH = \"/x\" }\n"));
    assert!(
        m.contains("package.p.env.PATH: PATH is set by the builder"),
        "{m}"
    );
    let m = message(&minimal("env = { \"1X\" = \"/x\" }\n"));
    assert!(m.contains("package.p.env.1X: invalid variable name"), "{m}");
    let m = message(&minimal("root = \"a\"\n"));
    assert!(m.contains("package.p.root: \"a\" is a source"), "{m}");
    let m = message(&minimal("root = \"zz\"\n"));
    assert!(m.contains("package.p.root: unknown package \"zz\""), "{m}");
    let m = message(&minimal("version = \"1/2\"\n"));
    assert!(
        m.contains("package.p.version: \"1/2\" is not a valid package version"),
        "{m}"
    );
    let m = message(&minimal("shell = []\n"));
    assert!(
        m.contains("package.p.shell: needs at least a program"),
        "{m}"
    );
    let m = message(&minimal("").replace("[\"a\"]", "[\"a\", \"a\"]"));
    assert!(
        m.contains("package.p.inputs[1]: input \"a\" is listed twice"),
        "{m}"
    );
}

#[test]
fn dependency_cycle_is_named() {
    let text = format!(
        "version = 1\n[package.a]\ninputs = [\"b\"]\nbuild = [\"x\"]\n[package.b]\ninputs = [\"c\"]\nbuild = [\"x\"]\n\
         [package.c]\nbuild = [\"x\"]\nroot = \"a\"\n[source.s]\nfile = \"s\"\nsha256 = \"{SHA}\"\n"
    );
    let m = message(&text);
    assert!(
        m.contains("package.c.root: dependency cycle: a -> b -> c -> a"),
        "{m}"
    );
    let m = message(&minimal("").replace("[\"a\"]", "[\"a\", \"p\"]"));
    assert!(
        m.contains("package.p.inputs[1]: dependency cycle: p -> p"),
        "{m}"
    );
}

#[test]
fn image_rules() {
    let m = message(&minimal("[image]\nname = \"x\"\npackages = [\"a\"]\n"));
    assert!(
        m.contains("image.packages[0]: \"a\" is a source, not a package"),
        "{m}"
    );
    let m = message(&minimal(
        "[image]\nname = \"x\"\npackages = [\"p\", \"nope\"]\n",
    ));
    assert!(
        m.starts_with(":10:18: image.packages[1]: unknown package \"nope\""),
        "{m}"
    );
    let m = message(&minimal("[image]\nname = \"Bad\"\npackages = [\"p\"]\n"));
    assert!(
        m.contains("image.name: \"Bad\" is not a valid image name"),
        "{m}"
    );
    let m = message(&minimal("[image]\npackages = [\"p\"]\n"));
    assert!(m.contains("image.name: missing"), "{m}");
    let img = |extra: &str| {
        minimal(&format!(
            "[image]\nname = \"x\"\npackages = [\"p\"]\n{extra}\n"
        ))
    };
    assert!(message(&img("compression = \"lz4\""))
        .contains("image.compression: unknown compression \"lz4\""));
    assert!(
        message(&img("ports = [\"99999\"]")).contains("image.ports[0]: \"99999\" is not a port")
    );
    assert!(message(&img("workdir = \"app\""))
        .contains("image.workdir: \"app\" must be an absolute path"));
    assert!(message(&img("owner = \"root\"")).contains("image.owner: \"root\" is not UID:GID"));
    assert!(message(&img("layer_budget = 0")).contains("image.layer_budget: must be"));
    assert!(message(&img("stop_signal = \"SIGFOO\""))
        .contains("image.stop_signal: \"SIGFOO\" is not a signal"));
    assert!(message(&img("user = \"a b\"")).contains("image.user"));
    assert!(message(&img("entrypoint = [\"a\\u0000b\"]"))
        .contains("image.entrypoint[0]: contains a NUL"));
    let ok = Manifest::parse_str(&img("stop_signal = \"SIGRTMIN+3\""), Path::new("m")).unwrap();
    assert_eq!(ok.image.unwrap().compression, Compression::Gzip);
}

#[test]
fn trace_rules() {
    let m = message(&minimal("[[trace.probe]]\nargs = [\"/bin/x\"]\n"));
    assert!(m.contains("trace: [trace] needs an [image]"), "{m}");
    let t = |extra: &str| {
        minimal(&format!(
            "[image]\nname = \"x\"\npackages = [\"p\"]\n{extra}\n"
        ))
    };
    assert!(message(&t("[trace]\nkeep = [\"etc/**\"]"))
        .contains("trace.keep[0]: \"etc/**\" must be an absolute path glob"));
    assert!(message(&t("[trace]\nexclude = [\"/a/[b\"]")).contains("trace.exclude[0]: bad glob"));
    assert!(message(&t("[[trace.probe]]\nname = \"x\"")).contains("trace.probe[0].args: missing"));
    assert!(
        message(&t("[[trace.probe]]\nargs = [\"/x\"]\nexit_code = 300"))
            .contains("trace.probe[0].exit_code")
    );
    let dup = "[[trace.probe]]\nname = \"n\"\nargs = [\"/x\"]\n[[trace.probe]]\nname = \"n\"\nargs = [\"/y\"]";
    assert!(message(&t(dup)).contains("trace.probe[1].name: probe name \"n\" is used twice"));
    assert!(message(&t("[[trace.probe]]\nargs = [\"/x\"]\nbogus = 1"))
        .contains("unknown field `bogus`"));
}

#[test]
fn read_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = Manifest::load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&missing.display().to_string()) && e.contains("cannot read manifest"),
        "{e}"
    );
    let bad = dir.path().join("bad.toml");
    fs::write(&bad, b"version = 1\n# \xff\n").unwrap();
    let e = Manifest::load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("not valid UTF-8") && e.contains("offset 14"),
        "{e}"
    );
}
