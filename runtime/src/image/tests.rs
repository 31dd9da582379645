//! Unit tests of the image module: tarballs built here with the `tar` crate in each
//! compression, each kind of unsafe or broken input, the busybox template and
//! `remove_tree`, all in temporary directories (as root or as an ordinary user).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;

const MTIME: u64 = 1_600_000_000;
const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";
const SU: &[u8] = b"\x7fELF not really";

/// An archive being built: headers with raw names, so that bad names can be written too.
struct Archive(tar::Builder<Vec<u8>>);

impl Archive {
    fn new() -> Archive {
        Archive(tar::Builder::new(Vec::new()))
    }

    fn header(name: &str, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        let slot = &mut header.as_gnu_mut().unwrap().name;
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(MTIME);
        let (uid, gid) = owner_in_archive();
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header
    }

    fn add(&mut self, mut header: Header, data: &[u8]) -> &mut Self {
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.add(Self::header(name, EntryType::Directory, mode, 0), b"")
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.add(
            Self::header(name, EntryType::Regular, mode, data.len() as u64),
            data,
        )
    }

    fn link(&mut self, name: &str, kind: EntryType, target: &str) -> &mut Self {
        let mut header = Self::header(name, kind, 0o777, 0);
        header.set_link_name_literal(target).unwrap();
        self.add(header, b"")
    }

    fn node(&mut self, name: &str, kind: EntryType) -> &mut Self {
        let mut header = Self::header(name, kind, 0o666, 0);
        header.set_device_major(1).unwrap();
        header.set_device_minor(3).unwrap();
        self.add(header, b"")
    }

    /// A pax header with `SCHILY.xattr.KEY=VALUE` records for the next entry.
    fn xattrs(&mut self, pairs: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in pairs {
            let body_len = format!(" SCHILY.xattr.{key}=").len() + value.len() + 1;
            let mut len = body_len + 1;
            while (body_len + len.to_string().len()) != len {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} SCHILY.xattr.{key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let header = Self::header(
            "./PaxHeaders/x",
            EntryType::XHeader,
            0o644,
            data.len() as u64,
        );
        self.add(header, &data)
    }

    fn bytes(&mut self) -> Vec<u8> {
        self.0.finish().unwrap();
        self.0.get_ref().clone()
    }
}

/// The owner put in archives: a foreign id when the test runs as root (so that chown is
/// really exercised), the caller's own ids otherwise.
fn owner_in_archive() -> (u32, u32) {
    let probe = tempfile::NamedTempFile::new().unwrap();
    let meta = probe.as_file().metadata().unwrap();
    if meta.uid() == 0 {
        (1234, 2345)
    } else {
        (meta.uid(), meta.gid())
    }
}

fn compress(data: &[u8], how: Compression) -> Vec<u8> {
    match how {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => {
            let mut e = zstd::Encoder::new(Vec::new(), 1).unwrap();
            e.include_checksum(true).unwrap();
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    tarball: PathBuf,
    rootfs: PathBuf,
}

/// Writes `bytes` as a tarball named `name` and makes an empty rootfs beside it.
fn setup(name: &str, bytes: &[u8]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join(name);
    fs::write(&tarball, bytes).unwrap();
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    Setup {
        _dir: dir,
        tarball,
        rootfs,
    }
}

fn unpack(s: &Setup) -> Result<UnpackSummary, ImageError> {
    unpack_tarball(
        &s.tarball,
        &s.rootfs,
        &UnpackOptions {
            preserve_owners: true,
        },
    )
}

fn rootfs_archive() -> Vec<u8> {
    let mut a = Archive::new();
    a.dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/passwd", 0o644, PASSWD)
        .link("./etc/passwd-hard", EntryType::Link, "./etc/passwd")
        .link("./etc/mtab", EntryType::Symlink, "/proc/self/mounts")
        .dir("./usr/", 0o755)
        .dir("./usr/lib/", 0o755)
        .link("./lib", EntryType::Symlink, "usr/lib")
        .link("./usr/lib/up", EntryType::Symlink, "../../etc")
        .file("./usr/bin/su", 0o4755, SU)
        .dir("./ro/", 0o555)
        .file("./ro/inside", 0o400, b"secret")
        .node("./dev/null", EntryType::Char)
        .node("./dev/console", EntryType::Char)
        .node("./dev/sda", EntryType::Block)
        .link("./dev/sda-again", EntryType::Link, "./dev/sda")
        .node("./run/initctl", EntryType::Fifo)
        .file("no-dot-prefix", 0o600, b"x");
    a.bytes()
}

#[test]
fn unpacks_every_compression_detected_by_magic() {
    let plain = rootfs_archive();
    for how in [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ] {
        // a misleading name: detection must go by the content
        let s = setup("rootfs.tar.gz", &compress(&plain, how));
        assert_eq!(Compression::detect(&s.tarball).unwrap(), how);
        let summary = unpack(&s).unwrap_or_else(|e| panic!("{how:?}: {e}"));
        check_unpacked(&s.rootfs, &summary);
    }
}

fn check_unpacked(root: &Path, summary: &UnpackSummary) {
    let (uid, gid) = owner_in_archive();
    assert_eq!(summary.entries, 18);
    assert_eq!(summary.bytes, (PASSWD.len() + SU.len() + 6 + 1) as u64);
    assert_eq!(summary.skipped_device_count, 3);
    assert_eq!(
        summary.skipped_devices,
        ["/dev/null", "/dev/console", "/dev/sda"]
    );
    assert_eq!(
        summary.skipped_devices_line().unwrap(),
        "skipped 3 device nodes (/dev/null, /dev/console, /dev/sda): they cannot be created \
         in a user namespace; /dev is populated at start"
    );
    assert!(!root.join("dev/null").exists());
    assert!(!root.join("dev/sda-again").exists());

    let passwd = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), PASSWD);
    assert_eq!(passwd.mode() & 0o7777, 0o644);
    assert_eq!(passwd.mtime(), MTIME as i64);
    assert_eq!((passwd.uid(), passwd.gid()), (uid, gid));
    assert_eq!(
        fs::symlink_metadata(root.join("etc/passwd-hard"))
            .unwrap()
            .ino(),
        passwd.ino()
    );
    assert_eq!(
        fs::read_link(root.join("etc/mtab")).unwrap(),
        Path::new("/proc/self/mounts")
    );
    assert_eq!(
        fs::read_link(root.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        fs::read_link(root.join("usr/lib/up")).unwrap(),
        Path::new("../../etc")
    );
    let mtab = fs::symlink_metadata(root.join("etc/mtab")).unwrap();
    assert_eq!((mtab.uid(), mtab.mtime()), (uid, MTIME as i64));
    let su = fs::metadata(root.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "setuid bit kept after chown");
    assert_eq!((su.uid(), su.gid()), (uid, gid));
    let ro = fs::metadata(root.join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert_eq!(ro.mtime(), MTIME as i64);
    assert_eq!(
        fs::metadata(root.join("ro/inside")).unwrap().mode() & 0o777,
        0o400
    );
    let fifo = fs::symlink_metadata(root.join("run/initctl")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o777, 0o666);
    // a parent made because the archive did not list it
    assert!(fs::metadata(root.join("usr/bin")).unwrap().is_dir());
    assert_eq!(fs::metadata(root).unwrap().mode() & 0o777, 0o755);
    assert!(root.join("no-dot-prefix").is_file());
    // clean up the 0555 directory for TempDir (as an ordinary user it could not)
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

fn unsafe_error(bytes: Vec<u8>) -> (String, Setup) {
    let s = setup("bad.tar", &bytes);
    let err = unpack(&s).unwrap_err();
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    (err.to_string(), s)
}

#[test]
fn absolute_paths_are_refused() {
    let (message, _s) = unsafe_error(Archive::new().file("/etc/x", 0o644, b"x").bytes());
    assert!(
        message.contains("entry `/etc/x` has an absolute path"),
        "{message}"
    );
}

#[test]
fn dot_dot_components_are_refused() {
    for name in ["../escape", "./a/../../escape", "a/.."] {
        let (message, s) = unsafe_error(Archive::new().file(name, 0o644, b"x").bytes());
        assert!(
            message.contains(&format!("entry `{name}` has a `..` component")),
            "{message}"
        );
        assert!(!s.rootfs.parent().unwrap().join("escape").exists());
    }
}

#[test]
fn escaping_hard_links_are_refused() {
    let cases = [
        ("/etc/shadow", "target `/etc/shadow` has an absolute path"),
        ("../outside", "target `../outside` has a `..` component"),
        (
            "etc/shadow",
            "is a hard link to `etc/shadow`, which is not an earlier file",
        ),
        (
            "etc",
            "is a hard link to `etc`, which is not an earlier file",
        ),
    ];
    for (target, why) in cases {
        let mut a = Archive::new();
        a.dir("etc/", 0o755)
            .link("etc/link", EntryType::Link, target);
        let (message, _s) = unsafe_error(a.bytes());
        assert!(
            message.contains("entry `etc/link`") && message.contains(why),
            "{message}"
        );
    }
}

#[test]
fn escaping_relative_symlinks_are_refused() {
    let (message, _s) = unsafe_error(
        Archive::new()
            .link("a/b", EntryType::Symlink, "../../../etc")
            .bytes(),
    );
    assert!(
        message.contains("entry `a/b` is a symlink to `../../../etc`, which points outside"),
        "{message}"
    );
    let (message, _s) = unsafe_error(Archive::new().link("top", EntryType::Symlink, "..").bytes());
    assert!(message.contains("points outside"), "{message}");
    // staying inside, even through `..`, is fine
    let s = setup(
        "ok.tar",
        &Archive::new()
            .link("a/b/c", EntryType::Symlink, "../../x/../y")
            .bytes(),
    );
    unpack(&s).unwrap();
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    let mut a = Archive::new();
    a.link("x", EntryType::Symlink, &target)
        .file("x/passwd", 0o644, b"owned");
    let (message, _s) = unsafe_error(a.bytes());
    assert!(
        message.contains("entry `x/passwd` would be written through the symlink `x`"),
        "{message}"
    );
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

    // a directory entry below a symlink, and a hard link through one, are refused too
    let mut a = Archive::new();
    a.link("x", EntryType::Symlink, &target)
        .dir("x/sub/", 0o755);
    unsafe_error(a.bytes());
    let mut a = Archive::new();
    a.link("x", EntryType::Symlink, &target)
        .file("f", 0o644, b"1")
        .link("x/h", EntryType::Link, "f");
    let (message, _s) = unsafe_error(a.bytes());
    assert!(
        message.contains("entry `x/h` would be written through the symlink"),
        "{message}"
    );
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);

    // an entry replacing a symlink replaces the link, not its target
    let victim = outside.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    let mut a = Archive::new();
    a.link("v", EntryType::Symlink, &victim.display().to_string())
        .file("v", 0o644, b"new");
    let s = setup("replace.tar", &a.bytes());
    unpack(&s).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(fs::read_to_string(s.rootfs.join("v")).unwrap(), "new");
}

#[test]
fn xattrs_are_set() {
    let mut a = Archive::new();
    a.xattrs(&[("user.ulxc", b"yes")]).file("f", 0o644, b"data");
    let s = setup("x.tar", &a.bytes());
    let summary = unpack(&s).unwrap();
    assert_eq!(summary.entries, 1, "the pax header is not an entry");
    match xattr::get(s.rootfs.join("f"), "user.ulxc") {
        Ok(value) => assert_eq!(value.as_deref(), Some(&b"yes"[..])),
        Err(err) => panic!("reading back the xattr: {err}"),
    }
}

#[test]
fn privileged_xattrs_are_set_or_counted() {
    // trusted.* needs CAP_SYS_ADMIN in the initial namespace: set as real root, refused
    // (and counted, not fatal) as an ordinary user or inside a user namespace
    let mut a = Archive::new();
    a.xattrs(&[("trusted.ulxc", b"t"), ("user.kept", b"u")])
        .file("f", 0o644, b"data");
    let s = setup("t.tar", &a.bytes());
    let summary = unpack(&s).unwrap();
    let f = s.rootfs.join("f");
    let trusted = xattr::get(&f, "trusted.ulxc").unwrap();
    match summary.skipped_xattrs {
        0 => assert_eq!(trusted.as_deref(), Some(&b"t"[..])),
        1 => assert_eq!(trusted, None),
        n => panic!("{n} xattrs skipped"),
    }
    assert_eq!(
        xattr::get(&f, "user.kept").unwrap().as_deref(),
        Some(&b"u"[..])
    );
}

#[test]
fn broken_archives_are_clear_errors() {
    let plain = rootfs_archive();

    // gzip cut in the middle
    let gz = compress(&plain, Compression::Gzip);
    let s = setup("cut.tgz", &gz[..gz.len() / 2]);
    let err = unpack(&s).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("is corrupt or truncated"), "{err}");
    assert!(
        err.to_string().contains("download or build it again"),
        "{err}"
    );

    // zstd with damaged bytes
    let mut zst = compress(&plain, Compression::Zstd);
    let middle = zst.len() / 2;
    for byte in &mut zst[middle..middle + 16] {
        *byte ^= 0x5a;
    }
    let s = setup("bad.tar.zst", &zst);
    assert!(matches!(
        unpack(&s).unwrap_err(),
        ImageError::Corrupt { .. }
    ));

    // plain tar cut inside a file's data
    let mut a = Archive::new();
    a.file("big", 0o644, &[7u8; 4000]);
    let bytes = a.bytes();
    let s = setup("cut.tar", &bytes[..512 + 1000]);
    let err = unpack(&s).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::Truncated {
                expected: 4000,
                got: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("entry `big` has 1000 of its 4000 bytes"),
        "{err}"
    );

    // not an archive at all
    let s = setup("notes.txt", b"hello, this is not a tarball");
    let err = unpack(&s).unwrap_err();
    assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("68 65 6c 6c"), "{err}");
    let s = setup("old.tar.bz2", b"BZh91AY&SY....");
    assert!(matches!(
        unpack(&s).unwrap_err(),
        ImageError::UnsupportedCompression {
            format: "bzip2",
            ..
        }
    ));

    // a missing tarball and a missing destination
    let s = setup("x.tar", b"");
    let err = unpack_tarball(
        &s.tarball.with_extension("nope"),
        &s.rootfs,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Open { .. }), "{err}");
    let err = unpack_tarball(
        &s.tarball,
        &s.rootfs.join("missing"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::DestNotDir { .. }), "{err}");
}

#[test]
fn without_preserve_owners_files_belong_to_the_caller() {
    let s = setup("r.tar", &Archive::new().file("f", 0o640, b"1").bytes());
    unpack_tarball(
        &s.tarball,
        &s.rootfs,
        &UnpackOptions {
            preserve_owners: false,
        },
    )
    .unwrap();
    let me = fs::metadata(&s.rootfs).unwrap();
    let f = fs::metadata(s.rootfs.join("f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (me.uid(), me.gid()));
    assert_eq!(f.mode() & 0o777, 0o640);
}

#[test]
fn summary_line_abbreviates_long_lists() {
    let summary = UnpackSummary {
        skipped_devices: vec!["/dev/a".into(), "/dev/b".into()],
        skipped_device_count: 12,
        ..UnpackSummary::default()
    };
    assert!(summary
        .skipped_devices_line()
        .unwrap()
        .starts_with("skipped 12 device nodes (/dev/a, /dev/b, ...):"));
    assert_eq!(UnpackSummary::default().skipped_devices_line(), None);
}

#[test]
fn busybox_rootfs_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let out = busybox_rootfs(&root, Path::new(DEFAULT_BUSYBOX)).unwrap();
    assert_eq!(
        fs::read_link(root.join("sbin/init")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(root.join("usr/bin/[")).unwrap(),
        Path::new("/bin/busybox")
    );
    let binary = fs::symlink_metadata(root.join("bin/busybox")).unwrap();
    assert!(binary.is_file() && binary.mode() & 0o111 != 0);
    let inittab = fs::read_to_string(root.join("etc/inittab")).unwrap();
    assert!(inittab.contains("::sysinit:/etc/init.d/rcS"), "{inittab}");
    assert!(inittab.contains("console::respawn:-/bin/sh"), "{inittab}");
    assert!(
        inittab.contains("::ctrlaltdel:/bin/umount -a -r"),
        "{inittab}"
    );
    let rcs = fs::metadata(root.join("etc/init.d/rcS")).unwrap();
    assert_eq!(rcs.mode() & 0o777, 0o755);
    let rcs_text = fs::read_to_string(root.join("etc/init.d/rcS")).unwrap();
    assert!(
        !rcs_text.contains("mount -t proc") && !rcs_text.contains("mount -a"),
        "{rcs_text}"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert!(fs::read_to_string(root.join("etc/shadow"))
        .unwrap()
        .starts_with("root::"));
    assert_eq!(
        fs::metadata(root.join("etc/shadow")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .starts_with("root:x:0:"));
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(root.join("root")).unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::read_link(root.join("var/run")).unwrap(),
        Path::new("/run")
    );
    let keys: Vec<(&str, &str)> = out
        .config_lines
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(keys.contains(&("lxc.signal.halt", "SIGUSR1")), "{keys:?}");
    assert!(keys.contains(&("lxc.signal.reboot", "SIGTERM")), "{keys:?}");
    assert!(keys.contains(&("lxc.init.cmd", "/sbin/init")), "{keys:?}");
    // the copied binary runs, and the shell script parses
    let output = std::process::Command::new(root.join("bin/busybox"))
        .args([
            "sh",
            "-n",
            &root.join("etc/init.d/rcS").display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // making it again over the first one works
    busybox_rootfs(&root, Path::new(DEFAULT_BUSYBOX)).unwrap();
}

#[test]
fn busybox_must_be_a_static_elf() {
    let dir = tempfile::tempdir().unwrap();
    let err = busybox_rootfs(dir.path(), Path::new("/bin/ls")).unwrap_err();
    assert!(matches!(err, ImageError::BusyboxNotStatic { .. }), "{err}");
    assert!(err.to_string().contains("ld-linux"), "{err}");
    let err = check_static(Path::new("/etc/passwd")).unwrap_err();
    assert!(matches!(err, ImageError::BusyboxNotElf { .. }), "{err}");
    let err = check_static(&dir.path().join("none")).unwrap_err();
    assert!(
        err.to_string()
            .contains("install the busybox-static package"),
        "{err}"
    );
    check_static(Path::new(DEFAULT_BUSYBOX)).unwrap();
}

#[test]
fn remove_tree_keeps_what_symlinks_point_to() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "keep").unwrap();
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("home/user")).unwrap();
    fs::write(root.join("home/user/file"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("home/user/link-to-dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join("home/relative")).unwrap();
    crate::sys::image::mkfifo(&root.join("fifo"), 0o600).unwrap();

    remove_tree(&root).unwrap();
    assert!(!root.exists());
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep"
    );

    // the tree's root itself a symlink: only the link goes
    let link = dir.path().join("rootfs-link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    remove_tree(&link).unwrap();
    assert!(fs::symlink_metadata(&link).is_err());
    assert_eq!(
        fs::read_to_string(outside.join("precious")).unwrap(),
        "keep"
    );

    // removing what is not there is fine
    remove_tree(&dir.path().join("never-was")).unwrap();
}

#[test]
fn remove_tree_handles_read_only_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("usr/share/ro/deeper")).unwrap();
    fs::write(root.join("usr/share/ro/deeper/f"), "x").unwrap();
    fs::create_dir_all(root.join("locked")).unwrap();
    fs::write(root.join("locked/f"), "x").unwrap();
    for (path, mode) in [
        ("usr/share/ro/deeper", 0o555),
        ("usr/share/ro", 0o555),
        ("locked", 0o000),
        ("", 0o555),
    ] {
        fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    remove_tree(&root).unwrap();
    assert!(!root.exists());
}

/// Makes `s`'s directory look like a download cache entry (`build_id` beside the tarball).
fn as_cache_entry(s: &Setup) -> PathBuf {
    let dir = s.tarball.parent().unwrap().to_path_buf();
    fs::write(dir.join("build_id"), "b1\n").unwrap();
    dir
}

#[test]
fn a_cache_entrys_xz_tarball_gets_a_checked_fast_copy() {
    use super::download::cache::{fast_copy, FastCopy, FAST_NAME, FAST_SUM};
    let plain = rootfs_archive();
    let s = setup("rootfs.tar.xz", &compress(&plain, Compression::Xz));
    // Not a cache entry: no copy.
    check_unpacked(&s.rootfs, &unpack(&s).unwrap());
    let dir = s.tarball.parent().unwrap().to_path_buf();
    assert!(!dir.join(FAST_NAME).exists());

    as_cache_entry(&s);
    remove_tree(&s.rootfs).unwrap();
    fs::create_dir(&s.rootfs).unwrap();
    check_unpacked(&s.rootfs, &unpack(&s).unwrap());
    let copy = fast_copy(&dir).expect("a fast copy that matches its sum");
    assert_eq!(copy, dir.join(FAST_NAME));
    assert_eq!(Compression::detect(&copy).unwrap(), Compression::Zstd);
    let decoded = zstd::decode_all(fs::File::open(&copy).unwrap()).unwrap();
    assert_eq!(decoded, plain, "the copy holds the same tar stream");
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Made once: an entry with a copy plans none.
    assert!(FastCopy::plan(&s.tarball).is_none());
    // Unpacking the copy itself works and makes no copy of it.
    let r2 = dir.join("rootfs2");
    fs::create_dir(&r2).unwrap();
    let summary = unpack_tarball(
        &copy,
        &r2,
        &UnpackOptions {
            preserve_owners: true,
        },
    )
    .unwrap();
    check_unpacked(&r2, &summary);

    // A corrupted copy fails its check and is removed, so that it is made again.
    let mut bytes = fs::read(&copy).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0xff;
    fs::write(&copy, bytes).unwrap();
    assert_eq!(fast_copy(&dir), None);
    assert!(!copy.exists() && !dir.join(FAST_SUM).exists());
    assert!(FastCopy::plan(&s.tarball).is_some());
}

#[test]
fn a_failed_unpack_keeps_no_fast_copy() {
    use super::download::cache::{FAST_NAME, FAST_SUM};
    let mut a = Archive::new();
    a.dir("./", 0o755)
        .file("./ok", 0o644, b"fine")
        .file("../escape", 0o644, b"evil");
    let s = setup("rootfs.tar.xz", &compress(&a.bytes(), Compression::Xz));
    let dir = as_cache_entry(&s);
    assert!(matches!(unpack(&s), Err(ImageError::UnsafeEntry { .. })));
    assert!(!dir.join(FAST_NAME).exists() && !dir.join(FAST_SUM).exists());
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");

    // A truncated xz stream: an error, and no copy either.
    let whole = compress(&rootfs_archive(), Compression::Xz);
    let s = setup("rootfs.tar.xz", &whole[..whole.len() - 20]);
    let dir = as_cache_entry(&s);
    assert!(unpack(&s).is_err());
    assert!(!dir.join(FAST_NAME).exists() && !dir.join(FAST_SUM).exists());
}

#[test]
fn a_cache_entrys_exclude_list_is_applied() {
    use super::download::cache::{
        excludes_for, is_excluded, parse_excludes, write_excludes, EXCLUDES_NAME,
    };
    let patterns = parse_excludes("# devices\n./dev/sd*\n/run/\n\n../etc\n./usr/bin/s?\n");
    assert_eq!(
        patterns,
        vec![
            vec!["dev".to_string(), "sd*".to_string()],
            vec!["run".to_string()],
            vec!["usr".to_string(), "bin".to_string(), "s?".to_string()],
        ]
    );
    let m = |p: &str| {
        let parts: Vec<&[u8]> = p.split('/').map(str::as_bytes).collect();
        is_excluded(&patterns, &parts)
    };
    assert!(m("dev/sda") && m("run/initctl") && m("run") && m("usr/bin/su"));
    assert!(!m("dev/null") && !m("etc/passwd") && !m("usr/bin/sudo") && !m("runner"));

    let s = setup(
        "rootfs.tar.xz",
        &compress(&rootfs_archive(), Compression::Xz),
    );
    // Outside a cache entry the list is not looked at.
    fs::write(s.tarball.parent().unwrap().join(EXCLUDES_NAME), "etc\n").unwrap();
    assert!(excludes_for(&s.tarball).is_empty());
    let dir = as_cache_entry(&s);
    write_excludes(&dir, &["./etc/passwd".into(), "ro/".into()]).unwrap();
    let summary = unpack(&s).unwrap();
    assert!(!s.rootfs.join("etc/passwd").exists());
    // a hard link to an excluded file goes with it
    assert!(!s.rootfs.join("etc/passwd-hard").exists());
    assert!(!s.rootfs.join("ro").exists());
    assert!(s.rootfs.join("usr/bin/su").is_file());
    assert_eq!(summary.excluded, 3, "{summary:?}");
    write_excludes(&dir, &[]).unwrap();
    assert!(!dir.join(EXCLUDES_NAME).exists());
}
