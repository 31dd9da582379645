//! Saved ready states ("snapshots") of an image + kernel: where they live, what they are keyed
//! by, and how one is published atomically under a lock.
//!
//! A snapshot is a directory `<snapshot_cache>/<key>/` holding `state` (the RAM and device
//! state, written by QMP `migrate` to `file:` with `mapped-ram`), `overlay.qcow2` (a copy of
//! the VM's overlay at that instant: the saved RAM refers to that disk state) and `complete`
//! (written last: a directory without it is not a snapshot). The key covers everything the
//! saved state depends on: the base disk's identity (path, size, mtime), kernel, initrd,
//! command line, memory, cpus, accelerator, guest-side forwards, QEMU's version and this
//! module's [`FORMAT_VERSION`] (bumped when the QEMU command line changes).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use fs4::FileExt;
use sha2::{Digest, Sha256};

use super::{Accel, VmSpec};

/// Bump when the QEMU command line or the save procedure changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// File names inside a snapshot directory.
pub const STATE_FILE: &str = "state";
/// The saved overlay.
pub const OVERLAY_FILE: &str = "overlay.qcow2";
/// The marker written last.
pub const COMPLETE_FILE: &str = "complete";

/// Identity of a file for the key: canonical path, size and modification time.
pub fn file_identity(path: &Path) -> String {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&canon) {
        Ok(m) => {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{}:{}:{}", canon.display(), m.len(), mtime)
        }
        Err(_) => format!("{}:missing", canon.display()),
    }
}

/// The snapshot key (hex) of a spec under an accelerator and a QEMU version string. Pure
/// except for reading the files' metadata.
pub fn snapshot_key(spec: &VmSpec, accel: Accel, qemu_version: &str) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(value.as_bytes());
        h.update(b"\n");
    };
    field("format", &FORMAT_VERSION.to_string());
    field("disk", &file_identity(&spec.disk_base));
    field("kernel", &file_identity(&spec.kernel));
    field(
        "initrd",
        &spec
            .initrd
            .as_deref()
            .map(file_identity)
            .unwrap_or_default(),
    );
    field("cmdline", &super::args::kernel_cmdline(&spec.cmdline));
    field("memory", &spec.memory_mib.to_string());
    field("cpus", &spec.cpus.to_string());
    field("accel", accel.as_str());
    let fwds: Vec<String> = spec
        .guestfwds
        .iter()
        .map(|f| f.guest_addr.to_string())
        .collect();
    field("guestfwds", &fwds.join(","));
    field("qemu", qemu_version.trim());
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `qemu-system-x86_64 --version`'s first line (empty if it cannot be run).
pub fn qemu_version() -> String {
    std::process::Command::new(super::args::QEMU_BINARY)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// A snapshot's directory and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    /// `<cache>/<key>`.
    pub dir: PathBuf,
}

impl SnapshotPaths {
    /// The paths for `key` under `cache`.
    pub fn new(cache: &Path, key: &str) -> SnapshotPaths {
        SnapshotPaths {
            dir: cache.join(key),
        }
    }
    /// The migration stream file.
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
    /// The saved overlay.
    pub fn overlay(&self) -> PathBuf {
        self.dir.join(OVERLAY_FILE)
    }
    /// Whether a complete snapshot is there.
    pub fn is_complete(&self) -> bool {
        self.dir.join(COMPLETE_FILE).is_file() && self.state().is_file() && self.overlay().is_file()
    }
    /// The staging directory a save writes into before renaming it into place.
    pub fn staging(&self) -> PathBuf {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir
            .with_file_name(format!(".{name}.tmp-{}", std::process::id()))
    }
    /// Removes a (corrupt) snapshot.
    pub fn remove(&self) {
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = ?self.dir, %err, "could not remove a snapshot");
            }
        }
    }
}

/// An exclusive lock on `<cache>/<key>.lock`, held while a snapshot is written.
#[derive(Debug)]
pub struct SaveLock {
    file: File,
}

impl SaveLock {
    /// Tries to take the lock without waiting (None: another VM is saving this key).
    pub fn try_acquire(cache: &Path, key: &str) -> std::io::Result<Option<SaveLock>> {
        std::fs::create_dir_all(cache)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join(format!("{key}.lock")))?;
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(SaveLock { file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Drop for SaveLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// Publishes a staged snapshot: writes `complete` into `staging` and renames it to `dir`.
pub fn publish(staging: &Path, paths: &SnapshotPaths) -> std::io::Result<()> {
    std::fs::write(staging.join(COMPLETE_FILE), FORMAT_VERSION.to_string())?;
    if paths.dir.exists() {
        std::fs::remove_dir_all(&paths.dir)?;
    }
    std::fs::rename(staging, &paths.dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{GuestFwd, Timeouts};
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    fn spec(dir: &Path) -> VmSpec {
        std::fs::write(dir.join("disk.qcow2"), b"disk").unwrap();
        std::fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
        VmSpec {
            name: "k".into(),
            disk_base: dir.join("disk.qcow2"),
            kernel: dir.join("vmlinuz"),
            initrd: None,
            cmdline: "root=/dev/vda".into(),
            memory_mib: 1024,
            cpus: 2,
            accel: None,
            guestfwds: vec![],
            work_dir: dir.join("w"),
            ssh_private_key: dir.join("key"),
            snapshot_cache: Some(dir.join("snap")),
            timeouts: Timeouts::default(),
        }
    }

    #[test]
    fn key_is_stable_and_depends_on_what_matters() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path());
        let k = snapshot_key(&s, Accel::Tcg, "QEMU 10.0.2");
        assert_eq!(k.len(), 32);
        assert_eq!(k, snapshot_key(&s, Accel::Tcg, "QEMU 10.0.2"));
        // Names, work dirs and host-side ports do not matter.
        let mut t = s.clone();
        t.name = "other".into();
        t.work_dir = "/elsewhere".into();
        assert_eq!(k, snapshot_key(&t, Accel::Tcg, "QEMU 10.0.2"));
        // These do.
        assert_ne!(k, snapshot_key(&s, Accel::Kvm, "QEMU 10.0.2"));
        assert_ne!(k, snapshot_key(&s, Accel::Tcg, "QEMU 9.2.0"));
        let mut m = s.clone();
        m.memory_mib = 2048;
        assert_ne!(k, snapshot_key(&m, Accel::Tcg, "QEMU 10.0.2"));
        let mut c = s.clone();
        c.cmdline.push_str(" quiet");
        assert_ne!(k, snapshot_key(&c, Accel::Tcg, "QEMU 10.0.2"));
        let mut g = s.clone();
        g.guestfwds.push(GuestFwd {
            guest_addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 80),
            host: SocketAddr::from(([127, 0, 0, 1], 1)),
        });
        let kg = snapshot_key(&g, Accel::Tcg, "QEMU 10.0.2");
        assert_ne!(k, kg);
        g.guestfwds[0].host = SocketAddr::from(([127, 0, 0, 1], 2));
        assert_eq!(kg, snapshot_key(&g, Accel::Tcg, "QEMU 10.0.2"));
        // A rebuilt disk (new size) changes the key.
        std::fs::write(dir.path().join("disk.qcow2"), b"disk2").unwrap();
        assert_ne!(k, snapshot_key(&s, Accel::Tcg, "QEMU 10.0.2"));
    }

    #[test]
    fn publish_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("snap");
        let paths = SnapshotPaths::new(&cache, "abc");
        assert!(!paths.is_complete());
        let lock = SaveLock::try_acquire(&cache, "abc").unwrap().unwrap();
        let staging = paths.staging();
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join(STATE_FILE), b"s").unwrap();
        std::fs::write(staging.join(OVERLAY_FILE), b"o").unwrap();
        assert!(!paths.is_complete());
        publish(&staging, &paths).unwrap();
        assert!(paths.is_complete());
        drop(lock);
        assert!(SaveLock::try_acquire(&cache, "abc").unwrap().is_some());
        paths.remove();
        assert!(!paths.dir.exists());
    }
}
