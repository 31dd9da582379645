//! Index writing, meta packing, signing then verifying, recipe checks, and publishing.

use std::io::Read;
use std::path::Path;

use super::container::parse_container_recipe;
use super::*;

fn spec(build: &str) -> ImageSpec {
    ImageSpec {
        dist: "debian".into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        variant: "default".into(),
        build: build.into(),
    }
}

#[test]
fn index_upsert_keeps_other_lines_and_replaces_the_same_image() {
    let p = Path::new("idx");
    let mut e = parse_index(
        "alpine;3.19;amd64;default;b0;/images/alpine/3.19/amd64/default/b0/\n\n\
         debian;bookworm;amd64;default;b1;/images/debian/bookworm/amd64/default/b1/\n",
        p,
    )
    .unwrap();
    assert_eq!(e.len(), 2);
    let new = |build: &str, arch: &str| IndexEntry {
        dist: "debian".into(),
        release: "bookworm".into(),
        arch: arch.into(),
        variant: "default".into(),
        build: build.into(),
        path: format!("/images/debian/bookworm/{arch}/default/{build}/"),
    };
    upsert(&mut e, new("b2", "amd64"));
    upsert(&mut e, new("b2", "arm64"));
    assert_eq!(
        render_index(&e),
        "alpine;3.19;amd64;default;b0;/images/alpine/3.19/amd64/default/b0/\n\
         debian;bookworm;amd64;default;b2;/images/debian/bookworm/amd64/default/b2/\n\
         debian;bookworm;arm64;default;b2;/images/debian/bookworm/arm64/default/b2/\n"
    );
    let err = parse_index("a;b;c;d;e;f\ndebian;bookworm;amd64\n", p).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(parse_index("a;b;c;;e;f\n", p).is_err());
}

#[test]
fn sign_then_verify_and_reject_tampering_and_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(&dir.path().join("k1"), "test <t@example.invalid>").unwrap();
    assert!(
        keygen(&dir.path().join("k1"), "again").is_err(),
        "overwrote a key"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let key = load_secret_key(&secret).unwrap();
    let file = dir.path().join("rootfs.tar.xz");
    std::fs::write(&file, b"payload").unwrap();
    let sig = sign_file(&key, &file).unwrap();
    assert!(std::fs::read_to_string(&sig)
        .unwrap()
        .starts_with("-----BEGIN PGP SIGNATURE-----"));
    verify_file(&public, &file).unwrap();

    let (_, other_public) = keygen(&dir.path().join("k2"), "other").unwrap();
    let err = verify_file(&other_public, &file).unwrap_err();
    assert!(matches!(err, PublishError::BadSignature { .. }), "{err}");

    std::fs::write(&file, b"payloaD").unwrap();
    let err = verify_file(&public, &file).unwrap_err();
    assert!(matches!(err, PublishError::BadSignature { .. }), "{err}");

    std::fs::remove_file(&sig).unwrap();
    assert!(verify_file(&public, &file).is_err());
}

#[test]
fn meta_tarball_holds_lxc_config_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_meta(&spec("20261129_03:40"), dir.path()).unwrap();
    let mut tar = tar::Archive::new(liblzma::read::XzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let mut files = std::collections::BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    assert_eq!(
        files["config"],
        "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = linux64\n"
    );
    assert!(files["config-user"].contains("debian.userns.conf"));
    assert!(files["create-message"].contains("Debian bookworm amd64 (build 20261129_03:40)"));
    assert!(files.contains_key("excludes-user"));
    assert_eq!(files["templates"], "/etc/hostname\n/etc/hosts\n");
}

#[test]
fn publish_writes_lxc_layout_signed_and_updates_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(&dir.path().join("keys"), "test").unwrap();
    let key = load_secret_key(&secret).unwrap();
    let out = dir.path().join("srv");
    std::fs::create_dir_all(out.join("meta/1.0")).unwrap();
    std::fs::write(
        out.join(INDEX_PATH),
        "alpine;3.19;amd64;default;b0;/images/alpine/3.19/amd64/default/b0/\n",
    )
    .unwrap();
    let tarball = dir.path().join("busybox.tar.gz");
    std::fs::write(&tarball, b"not really a tarball").unwrap();
    let img = publish(&out, &spec("b1"), &tarball, &key).unwrap();
    assert_eq!(img, out.join("images/debian/bookworm/amd64/default/b1"));
    for f in ["rootfs.tar.gz", "meta.tar.xz", "SHA256SUMS"] {
        verify_file(&public, &img.join(f)).unwrap();
    }
    let sums = std::fs::read_to_string(img.join("SHA256SUMS")).unwrap();
    let sha = |data: &[u8]| -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let meta_bytes = std::fs::read(img.join("meta.tar.xz")).unwrap();
    assert_eq!(
        sums,
        format!(
            "{}  rootfs.tar.gz\n{}  meta.tar.xz\n",
            sha(b"not really a tarball"),
            sha(&meta_bytes)
        )
    );
    verify_file(&public, &out.join(INDEX_PATH)).unwrap();
    verify_file(&public, &out.join(super::USER_INDEX_PATH)).unwrap();
    publish(&out, &spec("b2"), &tarball, &key).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join(INDEX_PATH)).unwrap(),
        "alpine;3.19;amd64;default;b0;/images/alpine/3.19/amd64/default/b0/\n\
         debian;bookworm;amd64;default;b2;/images/debian/bookworm/amd64/default/b2/\n"
    );
    let bad = dir.path().join("rootfs.tar");
    std::fs::write(&bad, b"x").unwrap();
    assert!(publish(&out, &spec("b3"), &bad, &key).is_err());
}

#[test]
fn container_recipe_defaults_checks_and_mmdebstrap_line() {
    let p = Path::new("r.toml");
    let r = parse_container_recipe("packages = [\"less\"]\n", p).unwrap();
    assert_eq!(
        (r.dist.as_str(), r.release.as_str(), r.arch.as_str()),
        ("debian", "bookworm", "amd64")
    );
    assert_eq!(r.variant, "default");
    assert!(parse_container_recipe("release = \"../x\"\n", p).is_err());
    assert!(parse_container_recipe("packages = [\"a,b\"]\n", p).is_err());
    assert!(parse_container_recipe("unknown = 1\n", p).is_err());
    let args = r.mmdebstrap_args("http://deb.example/debian", Path::new("/o/rootfs.tar.xz"));
    assert!(args.contains(&"--include=systemd-sysv,iproute2,less".to_owned()));
    assert!(args.contains(&"--skip=output/dev".to_owned()));
    assert_eq!(
        args[args.len() - 3..],
        [
            "bookworm".to_owned(),
            "/o/rootfs.tar.xz".to_owned(),
            "deb http://deb.example/debian bookworm main".to_owned()
        ]
    );
    assert_ne!(r.hash(), parse_container_recipe("", p).unwrap().hash());
    let shipped = super::load_container_recipe(
        &crate::image::vm_images_dir().join("containers/bookworm.toml"),
    )
    .unwrap();
    assert_eq!(shipped.release, "bookworm");
}

#[test]
fn concurrent_publishes_keep_every_index_line() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = keygen(&dir.path().join("keys"), "test").unwrap();
    let key = load_secret_key(&secret).unwrap();
    let out = dir.path().join("srv");
    let tarball = dir.path().join("r.tar.xz");
    std::fs::write(&tarball, b"x").unwrap();
    let arches = ["amd64", "arm64", "i386", "riscv64", "s390x", "ppc64el"];
    std::thread::scope(|s| {
        for arch in arches {
            let (out, tarball, key) = (&out, &tarball, &key);
            s.spawn(move || {
                let mut sp = spec("b1");
                sp.arch = arch.into();
                publish(out, &sp, tarball, key).unwrap();
            });
        }
    });
    let text = std::fs::read_to_string(out.join(INDEX_PATH)).unwrap();
    let entries = parse_index(&text, Path::new("idx")).unwrap();
    assert_eq!(entries.len(), arches.len(), "{text}");
    verify_file(&public, &out.join(INDEX_PATH)).unwrap();
}
