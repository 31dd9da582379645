//! Bad input of every kind ends in one clear error, a non-zero exit, and nothing
//! half-made on disk.

mod common;

use std::io::Write;
use std::path::Path;

use common::{env, fails, ok};

fn leftovers(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unknown_container_says_where_it_looked() {
    let e = env();
    let lxc = e.lxcpath("unknown");
    let err = fails(&e.ulxc_in(&lxc.path, &["start", "-n", "nosuch"]));
    assert!(err.contains("container nosuch does not exist in"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_names_are_refused() {
    let e = env();
    let lxc = e.lxcpath("names");
    let long = "x".repeat(65);
    for (name, why) in [
        ("a/b", "`/`"),
        ("..", "`..`"),
        ("x..y", "`..`"),
        (long.as_str(), "65 bytes"),
        ("a b", "white space"),
    ] {
        let err = fails(&e.ulxc_in(&lxc.path, &["create", "-n", name, "-t", "busybox"]));
        assert!(
            err.contains("invalid container name") && err.contains(why),
            "{name}: {err}"
        );
    }
    assert!(
        leftovers(&lxc.path).is_empty(),
        "nothing made: {:?}",
        leftovers(&lxc.path)
    );
}

fn tarball_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.set_size(0);
        // Write raw names so that absolute and `..` paths survive the builder's checks.
        let name = h.as_old_mut();
        name.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_tarballs_leave_nothing() {
    let e = env();
    let lxc = e.lxcpath("tarballs");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "abs",
            tarball_with(&[("/etc/evil", tar::EntryType::Regular, None)]),
            "/etc/evil",
        ),
        (
            "dotdot",
            tarball_with(&[("a/../../evil", tar::EntryType::Regular, None)]),
            "..",
        ),
        (
            "hardlink",
            tarball_with(&[("x", tar::EntryType::Link, Some("../../etc/passwd"))]),
            "x",
        ),
        (
            "symlink",
            tarball_with(&[
                ("d", tar::EntryType::Symlink, Some("../../../..")),
                ("d/f", tar::EntryType::Regular, None),
            ]),
            "d",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = lxc.path.join(format!("{name}.tar"));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        // The test user must be able to read it.
        std::os::unix::fs::chown(&path, Some(e.uid), Some(e.gid)).ok();
        let err = fails(&e.ulxc_in(
            &lxc.path,
            &[
                "create",
                "-n",
                name,
                "-t",
                "local",
                "--",
                "--rootfs",
                path.to_str().unwrap(),
            ],
        ));
        assert!(err.contains(needle), "{name}: {err}");
        assert!(
            !lxc.path.join(name).exists(),
            "{name}: half-made container left behind"
        );
    }
}

#[test]
fn idmap_outside_subuid_ranges_is_explained() {
    let e = env();
    let lxc = e.lxcpath("idmap");
    let conf = lxc.path.join("bad.conf");
    std::fs::write(
        &conf,
        "lxc.idmap = u 0 900000 65536\nlxc.idmap = g 0 900000 65536\n",
    )
    .unwrap();
    let err = fails(&e.ulxc_in(
        &lxc.path,
        &[
            "create",
            "-n",
            "c",
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "busybox",
        ],
    ));
    assert!(
        err.contains("900000") && err.contains("/etc/subuid") && err.contains("bad.conf:1"),
        "{err}"
    );
    assert!(!lxc.path.join("c").exists());
}

#[test]
fn corrupt_config_names_file_and_line() {
    let e = env();
    let lxc = e.lxcpath("corrupt");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "c", "-t", "busybox"]));
    let config = lxc.path.join("c/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("lxc.no_such_key = 1\n");
    let line = text.lines().count();
    std::fs::write(&config, text).unwrap();
    let err = fails(&e.ulxc_in(&lxc.path, &["start", "-n", "c"]));
    assert!(
        err.contains(&format!("config:{line}")) && err.contains("lxc.no_such_key"),
        "{err}"
    );
    // A container with a broken config can still be destroyed.
    ok(&e.ulxc_in(&lxc.path, &["destroy", "-n", "c"]));
    assert!(!lxc.path.join("c").exists());
}

#[test]
fn unusable_lxcpath_is_explained() {
    let e = env();
    let err = fails(&e.ulxc(&["ls", "-P", "/root"]));
    assert!(err.contains("/root") && err.contains("-P"), "{err}");
    let err = fails(&e.ulxc(&["create", "-n", "x", "-P", "/proc/ulxc", "-t", "busybox"]));
    assert!(err.contains("/proc/ulxc"), "{err}");
}

#[test]
fn relative_lxcpath_is_made_absolute() {
    let e = env();
    let lxc = e.lxcpath("relative");
    let rel = lxc
        .path
        .strip_prefix(&e.home)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    ok(&e.ulxc(&["create", "-n", "r", "-P", &rel, "-t", "busybox"]));
    assert!(lxc.path.join("r/config").is_file());
    let names = ok(&e.ulxc(&["ls", "-P", &rel, "-1"]));
    assert_eq!(names.trim(), "r");
}

#[test]
fn container_found_elsewhere_is_suggested() {
    let e = env();
    let lxc = e.lxcpath("elsewhere");
    ok(&e.ulxc_in(
        &lxc.path,
        &["create", "-n", "lost-walkthrough", "-t", "busybox"],
    ));
    // Without -P: the default directory has no such container, but the error says where it is.
    let err = fails(&e.ulxc(&["info", "-n", "lost-walkthrough"]));
    assert!(err.contains("add -P"), "{err}");
}

#[test]
fn a_failing_newuidmap_leaves_nothing() {
    let e = env();
    let lxc = e.lxcpath("newuidmap");
    // A newuidmap that refuses, first in PATH: the helper namespace cannot be mapped,
    // so neither the unpack nor the namespaced clean-up can run.
    let bin = lxc.path.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["newuidmap", "newgidmap"] {
        let path = bin.join(tool);
        std::fs::write(
            &path,
            "#!/bin/sh\necho \"$0: refused by the test\" >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let out = e
        .command(&e.bin)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        )
        .args([
            "create",
            "-P",
            lxc.path.to_str().unwrap(),
            "-n",
            "m",
            "-t",
            "busybox",
        ])
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("refused by the test"), "{err}");
    assert!(!lxc.path.join("m").exists(), "nothing half-made");
}
