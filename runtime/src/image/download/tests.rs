//! Unit tests of the index parser, server URLs, template arguments, `meta.tar.xz` and
//! signature verification.

use std::path::Path;

use pgp::composed::{
    ArmorOptions, DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;

use super::*;

#[test]
fn index_parses_lxc_lines() {
    let text = "debian;bookworm;amd64;default;20240101_05:24;/images/debian/bookworm/amd64/default/20240101_05:24/\n\
                \n# a comment\n\
                alpine;3.19;arm64;default;b2;images/alpine/./3.19//\n";
    let e = index::parse(text, "idx").unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].dist, "debian");
    assert_eq!(e[0].build, "20240101_05:24");
    assert_eq!(
        e[0].path,
        "images/debian/bookworm/amd64/default/20240101_05:24"
    );
    assert_eq!(e[1].path, "images/alpine/3.19");
}

#[test]
fn index_refuses_too_few_fields() {
    let err = index::parse(
        "ok;1;amd64;default;b;p\ndebian;bookworm;amd64;default\n",
        "idx",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("idx line 2"), "{msg}");
    assert!(msg.contains("4 fields"), "{msg}");
    let err = index::parse("debian;bookworm;amd64;;b;p\n", "idx").unwrap_err();
    assert!(err.to_string().contains("empty variant"), "{err}");
}

#[test]
fn index_refuses_paths_outside_the_root() {
    for path in [
        "../etc",
        "images/../../x",
        "http://evil.example/x",
        "//evil/x",
        "/",
        "a?b",
        "..%2f",
    ] {
        let line = format!("debian;bookworm;amd64;default;b;{path}\n");
        let err = index::parse(&line, "idx").unwrap_err();
        assert!(
            matches!(err, DownloadError::Index { line: 1, .. }),
            "{path}: {err}"
        );
    }
    let err = index::parse("deb/../x;bookworm;amd64;default;b;p\n", "idx").unwrap_err();
    assert!(err.to_string().contains("not a plain name"), "{err}");
}

#[test]
fn table_is_lxcs_and_filters() {
    let e = index::parse(
        "debian;bookworm;amd64;default;b1;p\nalpine;3.19;amd64;default;b2;q\n",
        "idx",
    )
    .unwrap();
    let all = index::table(&e, &Filter::default());
    assert_eq!(all, "\n---\nDIST\tRELEASE\tARCH\tVARIANT\tBUILD\n---\ndebian\tbookworm\tamd64\tdefault\tb1\nalpine\t3.19\tamd64\tdefault\tb2\n---\n");
    let only = index::table(
        &e,
        &Filter {
            dist: Some("alpine"),
            ..Default::default()
        },
    );
    assert!(
        only.contains("alpine") && !only.contains("debian"),
        "{only}"
    );
}

#[test]
fn server_urls() {
    assert_eq!(
        ServerUrl::parse("images.example.org").unwrap().as_str(),
        "https://images.example.org"
    );
    assert_eq!(
        ServerUrl::parse("http://127.0.0.1:8080/")
            .unwrap()
            .join("/meta/1.0/index-system"),
        "http://127.0.0.1:8080/meta/1.0/index-system"
    );
    assert!(ServerUrl::parse("http://[::1]:80").is_ok());
    assert!(ServerUrl::parse("http://localhost/x").is_ok());
    let err = ServerUrl::parse("http://images.example.org").unwrap_err();
    assert!(
        err.to_string().contains("only used for a loopback"),
        "{err}"
    );
    assert!(ServerUrl::parse("ftp://x").is_err());
    assert!(ServerUrl::parse("https://user@host").is_err());
}

#[test]
fn request_parses_lxc_flags() {
    let args: Vec<String> = [
        "-d",
        "debian",
        "-r",
        "bookworm",
        "-a",
        "amd64",
        "--variant=cloud",
        "--server",
        "127.0.0.1:1",
        "--no-validate",
        "--flush-cache",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = Request::parse(&args).unwrap();
    assert_eq!(r.dist.as_deref(), Some("debian"));
    assert_eq!(r.variant(), "cloud");
    assert!(r.no_validate && r.flush_cache && !r.list);
    assert!(r.missing().is_empty());
    let r = Request::parse(&["--list".to_string()]).unwrap();
    assert_eq!(r.missing(), vec!["-d DIST", "-r RELEASE", "-a ARCH"]);
    assert!(Request::parse(&["--bogus".to_string()])
        .unwrap_err()
        .contains("unknown option --bogus"));
    assert!(Request::parse(&["-d".to_string()])
        .unwrap_err()
        .contains("needs a value"));
    assert!(Request::parse(&["-d".to_string(), "../x".to_string()])
        .unwrap_err()
        .contains("plain name"));
}

#[test]
fn ask_missing_reads_answers() {
    let mut r = Request {
        dist: Some("debian".into()),
        ..Default::default()
    };
    let mut out = Vec::new();
    ask_missing(&mut r, &mut &b"bookworm\namd64\n"[..], &mut out).unwrap();
    assert_eq!(r.release.as_deref(), Some("bookworm"));
    assert_eq!(r.arch.as_deref(), Some("amd64"));
    assert_eq!(String::from_utf8(out).unwrap(), "Release: Architecture: ");
}

fn meta_tarball(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.join("meta.tar.xz");
    let xz = liblzma::write::XzEncoder::new(std::fs::File::create(&path).unwrap(), 1);
    let mut b = tar::Builder::new(xz);
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn meta_picks_lxcs_relevant_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = meta_tarball(
        dir.path(),
        &[
            ("config", "lxc.arch = x86_64\n"),
            (
                "config-user",
                "lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = LXC_NAME\n",
            ),
            ("create-message", "hello LXC_NAME\n"),
            ("templates", "/etc/hostname\n"),
            ("excludes", "dev/*\n"),
        ],
    );
    let m = Meta::read(&p).unwrap();
    let c = m.config("web", Path::new("/p/web"), Path::new("/p/web/rootfs"));
    assert_eq!(
        c,
        "lxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = web\n"
    );
    assert_eq!(
        m.create_message("web", Path::new("/p"), Path::new("/r"))
            .unwrap(),
        "hello web\n"
    );
    assert!(m.ignored_notes().is_empty());
    assert_eq!(m.excludes(), vec!["dev/*".to_string()]);
    let p = meta_tarball(dir.path(), &[("create-message", "x")]);
    let err = Meta::read(&p).unwrap_err();
    assert!(err.to_string().contains("no `config`"), "{err}");
}

fn keypair() -> (SignedSecretKey, String) {
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("ulxc test <test@example.invalid>".into());
    let mut rng = rand::thread_rng();
    let secret = params.build().unwrap().generate(&mut rng).unwrap();
    let signed = secret.sign(&mut rng, &Password::empty()).unwrap();
    let public = SignedPublicKey::from(signed.clone())
        .to_armored_string(ArmorOptions::default())
        .unwrap();
    (signed, public)
}

fn sign(key: &SignedSecretKey, file: &Path) {
    let data = std::fs::read(file).unwrap();
    let sig = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha256,
        &data[..],
    )
    .unwrap();
    std::fs::write(
        super::asc(file),
        sig.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
}

#[test]
fn signatures() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair();
    let (other, other_public) = keypair();
    let ring = dir.path().join("trusted.asc");
    std::fs::write(&ring, &public).unwrap();
    let keyring = Keyring::load(&ring).unwrap();
    let file = dir.path().join("rootfs.tar.xz");
    std::fs::write(&file, b"some rootfs bytes").unwrap();

    // good
    sign(&key, &file);
    keyring.verify_file(&file, &super::asc(&file)).unwrap();

    // a keyring with two keys accepts either
    std::fs::write(&ring, format!("{other_public}\n{public}")).unwrap();
    Keyring::load(&ring)
        .unwrap()
        .verify_file(&file, &super::asc(&file))
        .unwrap();

    // corrupted file
    std::fs::write(&file, b"some rootfs bytez").unwrap();
    let err = keyring.verify_file(&file, &super::asc(&file)).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");

    // signed by another key
    sign(&other, &file);
    let err = keyring.verify_file(&file, &super::asc(&file)).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");

    // missing .asc
    std::fs::remove_file(super::asc(&file)).unwrap();
    let err = keyring.verify_file(&file, &super::asc(&file)).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");

    // not a signature
    std::fs::write(super::asc(&file), "hello").unwrap();
    assert!(keyring.verify_file(&file, &super::asc(&file)).is_err());

    // keyring problems
    let err = Keyring::load(&dir.path().join("none.asc")).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    std::fs::write(&ring, "not a key").unwrap();
    assert!(Keyring::load(&ring).is_err());
}

#[test]
fn templates_are_filled_without_following_links() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(&outside, "LXC_NAME\n").unwrap();
    std::fs::write(root.join("etc/hostname"), "LXC_NAME\n").unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.1.1 LXC_NAME\n").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("etc/link")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    let paths: Vec<String> = [
        "/etc/hostname",
        "etc/hosts",
        "/etc/link",
        "up/outside",
        "/etc/missing",
    ]
    .map(String::from)
    .to_vec();
    let n = meta::fill_templates(&root, &paths, "web", Path::new("/p/web"), &root).unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "web\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "127.0.1.1 web\n"
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "LXC_NAME\n");
    let err = meta::fill_templates(
        &root,
        &["../outside".to_string()],
        "web",
        Path::new("/p"),
        &root,
    )
    .unwrap_err();
    assert!(err.contains("leaves the rootfs"), "{err}");
}

#[test]
fn sha256sums_lines_parse_like_sha256sum_writes_them() {
    let a = "a".repeat(64);
    let b = "B".repeat(64);
    let sums = parse_sums(&format!(
        "{a}  rootfs.tar.xz\n{b} *./meta.tar.xz\nnot a line\n{}  short\n",
        "c".repeat(10)
    ));
    assert_eq!(sums.len(), 2, "{sums:?}");
    assert_eq!(sums["rootfs.tar.xz"], a);
    assert_eq!(sums["meta.tar.xz"], "b".repeat(64));
}
