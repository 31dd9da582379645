//! The busybox template: a minimal rootfs made of one static busybox binary, its applet
//! symlinks and a few files in /etc, in the spirit of LXC's `lxc-busybox` (written anew).
//!
//! busybox init reads /etc/inittab; it halts on SIGUSR1, powers off on SIGUSR2 and reboots
//! on SIGTERM, which is why the template asks for `lxc.signal.halt = SIGUSR1` and
//! `lxc.signal.reboot = SIGTERM`. The runtime mounts /proc, /sys and /dev; rcS mounts
//! none of them.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::ImageError;

/// Where Debian's busybox-static installs the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// What a template wants in the container's config besides the rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateOutput {
    /// `(key, value)` pairs, e.g. `("lxc.signal.halt", "SIGUSR1")`, in LXC key spelling.
    pub config_lines: Vec<(String, String)>,
}

/// Directories of the tree with their modes.
const TREE: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("usr/share", 0o755),
    ("usr/share/udhcpc", 0o755),
    ("etc", 0o755),
    ("etc/init.d", 0o755),
    ("dev", 0o755),
    ("dev/pts", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("mnt", 0o755),
    ("home", 0o755),
    ("root", 0o700),
    ("run", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
    ("tmp", 0o1777),
];

const INITTAB: &str = "\
# /etc/inittab of a ulxc busybox container (busybox init)
::sysinit:/etc/init.d/rcS
# a shell on the container's console, started again when it exits
console::respawn:-/bin/sh
::ctrlaltdel:/bin/umount -a -r
::restart:/sbin/init
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
";

const RCS: &str = r#"#!/bin/sh
# Started once by init (::sysinit). The runtime has already mounted /proc, /sys, /dev
# and /dev/pts and set the hostname from lxc.uts.name: nothing is mounted here.
if [ -s /etc/hostname ]; then
    hostname -F /etc/hostname
fi
name="$(hostname)"
if ! grep -q "[[:space:]]$name\$" /etc/hosts 2>/dev/null; then
    echo "127.0.1.1 $name" >> /etc/hosts
fi
ip link set lo up 2>/dev/null
syslogd 2>/dev/null
# DHCP on eth0 unless it already has an IPv4 address (a static lxc.net.0.ipv4.address
# or a user-mode stack that configured it).
if [ -e /sys/class/net/eth0 ] && ! ip -o -f inet addr show dev eth0 | grep -q inet; then
    udhcpc -b -i eth0 -s /usr/share/udhcpc/default.script >/dev/null 2>&1
fi
exit 0
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script: applies the lease to $interface
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    renew|bound)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
        if [ -n "$router" ]; then
            ip route del default 2>/dev/null
            for gateway in $router; do
                ip route add default via "$gateway" dev "$interface" && break
            done
        fi
        : > /etc/resolv.conf
        [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
        for server in $dns; do
            echo "nameserver $server" >> /etc/resolv.conf
        done
        ;;
esac
exit 0
"#;

const PROFILE: &str = "\
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=\"${HOME:-/root}\"
export PS1='\\u@\\h:\\w\\$ '
umask 022
";

/// Builds a busybox rootfs in `dest` (created if missing) from the static binary `busybox`
/// (normally [`DEFAULT_BUSYBOX`], Debian package busybox-static).
pub fn busybox_rootfs(dest: &Path, busybox: &Path) -> Result<TemplateOutput, ImageError> {
    check_static(busybox)?;
    let applets = list_applets(busybox)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Template { path, source }
    };
    fs::create_dir_all(dest).map_err(write_err(dest))?;
    for (dir, mode) in TREE {
        let path = dest.join(dir);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(ImageError::TemplateConflict { path }),
            Err(_) => fs::create_dir(&path).map_err(write_err(&path))?,
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(write_err(&path))?;
    }
    symlink(Path::new("/run"), &dest.join("var/run"))?;

    let target = dest.join("bin/busybox");
    let mut binary = Vec::new();
    fs::File::open(busybox)
        .and_then(|mut f| f.read_to_end(&mut binary))
        .map_err(|source| ImageError::BusyboxRead {
            path: busybox.to_path_buf(),
            source,
        })?;
    write_file(&target, &binary, 0o755)?;

    let mut linked = 0usize;
    for applet in &applets {
        let Some(rel) = applet_path(applet) else {
            tracing::debug!(
                applet,
                "skipping an odd applet path from busybox --list-full"
            );
            continue;
        };
        if rel == Path::new("bin/busybox") {
            continue;
        }
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(dest.join(parent)).map_err(write_err(&dest.join(parent)))?;
        }
        symlink(Path::new("/bin/busybox"), &dest.join(&rel))?;
        linked += 1;
    }
    // init and a shell are what the container needs, whatever the applet list said
    for needed in ["sbin/init", "bin/sh"] {
        if fs::symlink_metadata(dest.join(needed)).is_err() {
            symlink(Path::new("/bin/busybox"), &dest.join(needed))?;
        }
    }

    write_file(
        &dest.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    write_file(&dest.join("etc/group"), b"root:x:0:\n", 0o644)?;
    // an empty password field: root logs in without a password
    write_file(&dest.join("etc/shadow"), b"root::0:0:99999:7:::\n", 0o600)?;
    write_file(&dest.join("etc/inittab"), INITTAB.as_bytes(), 0o644)?;
    write_file(&dest.join("etc/init.d/rcS"), RCS.as_bytes(), 0o755)?;
    write_file(&dest.join("etc/profile"), PROFILE.as_bytes(), 0o644)?;
    write_file(
        &dest.join("etc/fstab"),
        b"# nothing: the runtime mounts /proc, /sys and /dev\n",
        0o644,
    )?;
    write_file(
        &dest.join("etc/hosts"),
        b"127.0.0.1 localhost\n::1 localhost\n",
        0o644,
    )?;
    write_file(&dest.join("etc/shells"), b"/bin/sh\n/bin/ash\n", 0o644)?;
    write_file(&dest.join("etc/resolv.conf"), b"", 0o644)?;
    write_file(
        &dest.join("usr/share/udhcpc/default.script"),
        UDHCPC_SCRIPT.as_bytes(),
        0o755,
    )?;
    write_file(&dest.join("root/.profile"), b". /etc/profile\n", 0o644)?;
    tracing::info!(?dest, applets = linked, "made a busybox rootfs");

    let lines = [
        ("lxc.init.cmd", "/sbin/init"),
        ("lxc.signal.halt", "SIGUSR1"),
        ("lxc.signal.reboot", "SIGTERM"),
    ];
    Ok(TemplateOutput {
        config_lines: lines
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

/// Checks that `path` is a static ELF executable (no `PT_INTERP` program header).
pub fn check_static(path: &Path) -> Result<(), ImageError> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::BusyboxMissing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(ImageError::BusyboxRead {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match elf_interpreter(&data) {
        Some(None) => Ok(()),
        Some(Some(interpreter)) => Err(ImageError::BusyboxNotStatic {
            path: path.to_path_buf(),
            interpreter,
        }),
        None => Err(ImageError::BusyboxNotElf {
            path: path.to_path_buf(),
        }),
    }
}

/// `None` if `data` is not an ELF file; `Some(None)` if it has no program interpreter
/// (static); `Some(Some(interpreter))` if it is dynamically linked.
///
/// Hand-written because reading three header fields does not justify an ELF crate.
fn elf_interpreter(data: &[u8]) -> Option<Option<String>> {
    const PT_INTERP: u32 = 3;
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match data[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match data[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let read = |offset: usize, size: usize| -> Option<u64> {
        let bytes = data.get(offset..offset.checked_add(size)?)?;
        let mut value: u64 = 0;
        for i in 0..size {
            let byte = if little {
                bytes[size - 1 - i]
            } else {
                bytes[i]
            };
            value = (value << 8) | u64::from(byte);
        }
        Some(value)
    };
    let (phoff, phentsize, phnum) = if wide {
        (read(32, 8)?, read(54, 2)?, read(56, 2)?)
    } else {
        (read(28, 4)?, read(42, 2)?, read(44, 2)?)
    };
    let (phoff, phentsize) = (
        usize::try_from(phoff).ok()?,
        usize::try_from(phentsize).ok()?,
    );
    for index in 0..usize::try_from(phnum).ok()? {
        let header = phoff.checked_add(index.checked_mul(phentsize)?)?;
        if read(header, 4)? != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (read(header + 8, 8)?, read(header + 32, 8)?)
        } else {
            (read(header + 4, 4)?, read(header + 16, 4)?)
        };
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        let text = data.get(start..end).unwrap_or_default();
        let text = String::from_utf8_lossy(text)
            .trim_end_matches('\0')
            .to_string();
        return Some(Some(text));
    }
    Some(None)
}

/// The applets of `busybox`, as `busybox --list-full` prints them (`usr/bin/[`, `sbin/init`).
fn list_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let command = format!("{} --list-full", busybox.display());
    let output = duct::cmd(busybox, ["--list-full"])
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|source| ImageError::BusyboxRead {
            path: busybox.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(ImageError::BusyboxList {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let applets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if applets.is_empty() {
        return Err(ImageError::BusyboxList {
            command,
            status: output.status.to_string(),
            stderr: "it listed no applets".to_string(),
        });
    }
    Ok(applets)
}

/// A relative, `..`-free path for an applet line, or `None` for an odd one.
fn applet_path(line: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(line).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (out.components().count() >= 2).then_some(out)
}

fn symlink(target: &Path, link: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.is_dir() => {
            return Err(ImageError::TemplateConflict { path: link.into() })
        }
        Ok(_) => {
            fs::remove_file(link).map_err(|source| ImageError::Template {
                path: link.into(),
                source,
            })?;
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(|source| ImageError::Template {
        path: link.into(),
        source,
    })
}

/// Writes a new file (a file or symlink already there is replaced, never written through).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ImageError> {
    let err = |source| ImageError::Template {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(ImageError::TemplateConflict { path: path.into() })
        }
        Ok(_) => fs::remove_file(path).map_err(err)?,
        Err(_) => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    Ok(())
}
