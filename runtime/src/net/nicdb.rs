//! The setuid helper's record of the nics it made, under `/run/ulxc/`.
//!
//! The directory must be a real directory owned by root and writable by nobody else;
//! anything else (a symlink, a file, another owner, group- or world-writable) is refused
//! without being followed. `nics.lock` is `flock`ed for the whole check + create +
//! record of one helper run, so two helpers racing for the last slot cannot both win.
//! `nics` holds one text line per nic and is replaced through a temporary file and a
//! rename, so a crash leaves either the old or the new content.
//!
//! Entries are never deleted by name: on every open, each entry is checked to be live
//! and dropped if it is not. Live means: if the entry's host network namespace is the
//! helper's current one, the host link still exists with the recorded name and ifindex
//! (a pending entry, ifindex 0, only needs the name); otherwise the target process still
//! exists with the same start time and network namespace inode. A container that stopped
//! takes its network namespace, and with it the veth pair, away; so it stops counting.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The helper's database directory.
pub const NICDB_DIR: &str = "/run/ulxc";
const DB_FILE: &str = "nics";
const LOCK_FILE: &str = "nics.lock";
const TEMP_FILE: &str = "nics.tmp";
const LINE_TAG: &str = "nic1";
/// How long to wait for another helper to release the lock.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// One nic made by the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicEntry {
    /// The real uid of the user who asked for it.
    pub uid: u32,
    /// The nic type (`veth`).
    pub nic_type: String,
    /// The bridge its host end is on.
    pub bridge: String,
    /// The name of the host end.
    pub host_ifname: String,
    /// The ifindex of the host end; 0 while the entry is reserved but not yet created.
    pub host_ifindex: u32,
    /// Inode of the network namespace the helper (and the host end) was in.
    pub host_netns: u64,
    /// The target (container init) pid as the helper saw it.
    pub pid: i32,
    /// The target's start time (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
    /// Inode of the target's network namespace.
    pub target_netns: u64,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// The container's name.
    pub container: String,
}

impl NicEntry {
    /// The entry as one line of the database (no newline).
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_TAG} {} {} {} {} {} {} {} {} {} {} {}",
            self.uid,
            self.nic_type,
            self.bridge,
            self.host_ifname,
            self.host_ifindex,
            self.host_netns,
            self.pid,
            self.start_time,
            self.target_netns,
            self.created,
            self.container
        )
    }

    /// Parses a line written by [`NicEntry::to_line`].
    pub fn from_line(line: &str) -> Option<NicEntry> {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() != 12 || fields[0] != LINE_TAG {
            return None;
        }
        if fields.iter().any(|f| f.is_empty()) {
            return None;
        }
        Some(NicEntry {
            uid: fields[1].parse().ok()?,
            nic_type: fields[2].to_string(),
            bridge: fields[3].to_string(),
            host_ifname: fields[4].to_string(),
            host_ifindex: fields[5].parse().ok()?,
            host_netns: fields[6].parse().ok()?,
            pid: fields[7].parse().ok()?,
            start_time: fields[8].parse().ok()?,
            target_netns: fields[9].parse().ok()?,
            created: fields[10].parse().ok()?,
            container: fields[11].to_string(),
        })
    }
}

/// What the database asks of the system to tell whether an entry is still live.
pub trait Liveness {
    /// Inode of the helper's current network namespace.
    fn current_netns(&mut self) -> u64;
    /// Whether the link `name` exists in the current network namespace with index
    /// `ifindex` (any index when `ifindex` is 0). When this cannot be told, it must
    /// answer true, so that a nic is never forgotten by mistake.
    fn host_link_is(&mut self, name: &str, ifindex: u32) -> bool;
    /// Start time and network namespace inode of process `pid`, if it exists.
    fn process(&mut self, pid: i32) -> Option<(u64, u64)>;
}

/// Whether `entry` still stands for a nic that exists.
pub fn is_live(entry: &NicEntry, liveness: &mut dyn Liveness) -> bool {
    if entry.host_netns == liveness.current_netns() {
        liveness.host_link_is(&entry.host_ifname, entry.host_ifindex)
    } else {
        liveness.process(entry.pid) == Some((entry.start_time, entry.target_netns))
    }
}

/// The database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NicDbError {
    /// The directory is not safe to use.
    #[error("refusing to use {path}: {why}; an administrator must fix it (it must be a directory owned by root with mode 0755)")]
    UnsafeDir {
        /// The directory.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// An I/O operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Another helper kept the lock too long.
    #[error("another ulxc-user-nic has held {path} for more than {} seconds; try again", LOCK_WAIT.as_secs())]
    LockTimeout {
        /// The lock file.
        path: String,
    },
}

/// The open, locked database. The lock is released when it is dropped.
#[derive(Debug)]
pub struct NicDb {
    dir_path: PathBuf,
    dir: File,
    _lock: Flock<File>,
    entries: Vec<NicEntry>,
    /// Malformed lines found (and dropped) when reading.
    pub warnings: Vec<String>,
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NicDbError {
    let path = path.display().to_string();
    move |source| NicDbError::Io { what, path, source }
}

/// Opens the directory without following a symlink and checks its owner and mode.
fn open_safe_dir(path: &Path, owner: u32) -> Result<File, NicDbError> {
    let unsafe_dir = |why: String| NicDbError::UnsafeDir {
        path: path.display().to_string(),
        why,
    };
    let mut created = false;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().mode(0o755).create(path) {
                Ok(()) => created = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("cannot create", path)(e)),
            }
        }
        Err(e) => return Err(io_error("cannot inspect", path)(e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(unsafe_dir("it is a symbolic link".into()))
        }
        Ok(_) => {}
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
            Errno::ELOOP => unsafe_dir("it is a symbolic link".into()),
            Errno::ENOTDIR => unsafe_dir("it is not a directory".into()),
            _ => io_error("cannot open", path)(e),
        })?;
    if created {
        // The caller's umask may have narrowed the mode; make it exactly 0755.
        dir.set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io_error("cannot set the mode of", path))?;
    }
    let meta = dir.metadata().map_err(io_error("cannot inspect", path))?;
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    if meta.uid() != owner {
        let wanted = if owner == 0 {
            "root".to_string()
        } else {
            format!("uid {owner}")
        };
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not {wanted}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {:04o} lets others than root write to it",
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

impl NicDb {
    /// Opens (creating if needed) the database in `dir`, takes its lock, reads it and
    /// drops the entries that are no longer live (rewriting the file if any were).
    pub fn open(dir: &Path, liveness: &mut dyn Liveness) -> Result<NicDb, NicDbError> {
        NicDb::open_owned_by(dir, 0, liveness)
    }

    /// [`NicDb::open`] with the owner the directory must have (root for the helper; the
    /// unit tests use their own uid).
    fn open_owned_by(
        dir: &Path,
        owner: u32,
        liveness: &mut dyn Liveness,
    ) -> Result<NicDb, NicDbError> {
        let dir_file = open_safe_dir(dir, owner)?;
        let through = PathBuf::from(format!("/proc/self/fd/{}", dir_file.as_raw_fd()));
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(through.join(LOCK_FILE))
            .map_err(io_error("cannot open", &lock_path))?;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut file = lock_file;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(NicDbError::LockTimeout {
                        path: lock_path.display().to_string(),
                    })
                }
                Err((_, errno)) => {
                    return Err(io_error("cannot lock", &lock_path)(std::io::Error::from(
                        errno,
                    )))
                }
            }
        };
        let mut db = NicDb {
            dir_path: dir.to_path_buf(),
            dir: dir_file,
            _lock: lock,
            entries: Vec::new(),
            warnings: Vec::new(),
        };
        let text = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(db.through(DB_FILE))
        {
            Ok(mut file) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut file, &mut text)
                    .map_err(io_error("cannot read", &dir.join(DB_FILE)))?;
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error("cannot open", &dir.join(DB_FILE))(e)),
        };
        let mut changed = false;
        for (index, line) in text.lines().enumerate() {
            match NicEntry::from_line(line) {
                Some(entry) if is_live(&entry, liveness) => db.entries.push(entry),
                Some(_) => changed = true,
                None => {
                    changed = true;
                    db.warnings.push(format!(
                        "{}:{}: malformed entry dropped",
                        dir.join(DB_FILE).display(),
                        index + 1
                    ));
                }
            }
        }
        if changed {
            db.save()?;
        }
        Ok(db)
    }

    fn through(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }

    /// The live entries.
    pub fn entries(&self) -> &[NicEntry] {
        &self.entries
    }

    /// Adds an entry and writes the file.
    pub fn add(&mut self, entry: NicEntry) -> Result<(), NicDbError> {
        self.entries.push(entry);
        self.save()
    }

    /// Sets the ifindex of the entry for host link `host_ifname` and writes the file.
    pub fn set_ifindex(&mut self, host_ifname: &str, ifindex: u32) -> Result<(), NicDbError> {
        for entry in &mut self.entries {
            if entry.host_ifname == host_ifname && entry.host_ifindex == 0 {
                entry.host_ifindex = ifindex;
            }
        }
        self.save()
    }

    /// Removes the pending (ifindex 0) entry for `host_ifname` (a creation that failed)
    /// and writes the file.
    pub fn remove_pending(&mut self, host_ifname: &str) -> Result<(), NicDbError> {
        self.entries
            .retain(|e| !(e.host_ifname == host_ifname && e.host_ifindex == 0));
        self.save()
    }

    fn save(&self) -> Result<(), NicDbError> {
        let temp_path = self.dir_path.join(TEMP_FILE);
        let mut text = String::new();
        for entry in &self.entries {
            text.push_str(&entry.to_line());
            text.push('\n');
        }
        let mut temp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.through(TEMP_FILE))
            .map_err(io_error("cannot create", &temp_path))?;
        // Root only: users see their own nics through `ulxc-user-nic list`.
        temp.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("cannot set the mode of", &temp_path))?;
        temp.write_all(text.as_bytes())
            .and_then(|()| temp.sync_all())
            .map_err(io_error("cannot write", &temp_path))?;
        std::fs::rename(self.through(TEMP_FILE), self.through(DB_FILE))
            .map_err(io_error("cannot replace", &self.dir_path.join(DB_FILE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake {
        netns: u64,
        links: HashMap<String, u32>,
        processes: HashMap<i32, (u64, u64)>,
    }

    impl Liveness for Fake {
        fn current_netns(&mut self) -> u64 {
            self.netns
        }
        fn host_link_is(&mut self, name: &str, ifindex: u32) -> bool {
            self.links
                .get(name)
                .is_some_and(|&i| ifindex == 0 || i == ifindex)
        }
        fn process(&mut self, pid: i32) -> Option<(u64, u64)> {
            self.processes.get(&pid).copied()
        }
    }

    fn entry(host: &str, ifindex: u32, host_netns: u64) -> NicEntry {
        NicEntry {
            uid: 1001,
            nic_type: "veth".into(),
            bridge: "lxcbr0".into(),
            host_ifname: host.into(),
            host_ifindex: ifindex,
            host_netns,
            pid: 4242,
            start_time: 777,
            target_netns: 4026532000,
            created: 1_700_000_000,
            container: "c1".into(),
        }
    }

    fn fake() -> Fake {
        Fake {
            netns: 100,
            links: HashMap::from([("vlive-0001".to_string(), 9)]),
            processes: HashMap::new(),
        }
    }

    fn me() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn the_database_keeps_live_entries_and_drops_dead_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ulxc");
        let mut liveness = fake();
        let mut db = NicDb::open_owned_by(&dir, me(), &mut liveness).unwrap();
        assert!(db.entries().is_empty());
        db.add(entry("vlive-0001", 0, 100)).unwrap();
        db.set_ifindex("vlive-0001", 9).unwrap();
        db.add(entry("vdead-0002", 7, 100)).unwrap();
        db.add(entry("vgone-0003", 0, 100)).unwrap();
        db.remove_pending("vgone-0003").unwrap();
        drop(db);
        let text = std::fs::read_to_string(dir.join(DB_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        std::fs::write(dir.join(DB_FILE), format!("{text}garbage line\n")).unwrap();
        let db = NicDb::open_owned_by(&dir, me(), &mut liveness).unwrap();
        assert_eq!(db.entries(), &[entry("vlive-0001", 9, 100)]);
        assert_eq!(db.warnings.len(), 1, "{:?}", db.warnings);
        let meta = std::fs::metadata(dir.join(DB_FILE)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        drop(db);
        let text = std::fs::read_to_string(dir.join(DB_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", entry("vlive-0001", 9, 100).to_line()));
    }

    #[test]
    fn the_lock_is_held_while_the_database_is_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ulxc");
        let db = NicDb::open_owned_by(&dir, me(), &mut fake()).unwrap();
        let other = File::open(dir.join(LOCK_FILE)).unwrap();
        let Err((_, errno)) = Flock::lock(other, FlockArg::LockExclusiveNonblock) else {
            panic!("a second lock was granted while the database is open");
        };
        assert_eq!(errno, Errno::EWOULDBLOCK);
        drop(db);
        let other = File::open(dir.join(LOCK_FILE)).unwrap();
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn unsafe_directories_are_refused_without_being_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let decoy = tmp.path().join("decoy");
        std::fs::create_dir(&decoy).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&decoy, &link).unwrap();
        let e = NicDb::open_owned_by(&link, me(), &mut fake()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&decoy).unwrap().count(), 0);

        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = NicDb::open_owned_by(&file, me(), &mut fake()).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = NicDb::open_owned_by(&open, me(), &mut fake()).unwrap_err();
        assert!(e.to_string().contains("0777"), "{e}");

        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = NicDb::open_owned_by(&open, me() + 1, &mut fake()).unwrap_err();
        assert!(
            e.to_string().contains(&format!("owned by uid {}", me())),
            "{e}"
        );
    }

    #[test]
    fn lines_round_trip_and_garbage_is_rejected() {
        let e = entry("vc1-ab12", 9, 4026531840);
        assert_eq!(NicEntry::from_line(&e.to_line()), Some(e.clone()));
        assert_eq!(NicEntry::from_line(""), None);
        assert_eq!(NicEntry::from_line("nic1 1001 veth"), None);
        let bad = e.to_line().replace(" 9 ", " x ");
        assert_eq!(NicEntry::from_line(&bad), None);
        let spaced = e.to_line().replace(" c1", "  c1");
        assert_eq!(NicEntry::from_line(&spaced), None);
    }

    #[test]
    fn liveness_uses_the_link_here_and_the_process_elsewhere() {
        let mut fake = Fake {
            netns: 100,
            links: HashMap::from([("vc1-ab12".to_string(), 9), ("vc2-0000".to_string(), 4)]),
            processes: HashMap::from([(4242, (777, 4026532000))]),
        };
        assert!(is_live(&entry("vc1-ab12", 9, 100), &mut fake));
        // Same name, other ifindex: a different link, not ours.
        assert!(!is_live(&entry("vc2-0000", 9, 100), &mut fake));
        // A pending entry needs only the name.
        assert!(is_live(&entry("vc2-0000", 0, 100), &mut fake));
        assert!(!is_live(&entry("gone", 9, 100), &mut fake));
        // Another host namespace: the target process decides.
        assert!(is_live(&entry("x", 9, 200), &mut fake));
        fake.processes.insert(4242, (778, 4026532000));
        assert!(!is_live(&entry("x", 9, 200), &mut fake));
        fake.processes.clear();
        assert!(!is_live(&entry("x", 9, 200), &mut fake));
    }
}
