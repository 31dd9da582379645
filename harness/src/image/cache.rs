//! The image cache on disk: directory layout, the per-image file lock, completeness,
//! listing and pruning.
//!
//! Layout under `<cache>/images/`: `<name>-<hash12>/` (complete images, each with a
//! `complete` marker written last), `<name>-<hash12>.lock` (flock held while building or
//! pruning it), `<name>-<hash12>.tmp/` (a build in progress; stale when its lock is free),
//! `<name>-<hash12>.log` (log of a running or the last failed build; moved into the
//! image as `build.log` on success).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{BuildOptions, BuiltImage, ImageError};

/// Marker file written last into a complete image directory.
pub const COMPLETE_MARKER: &str = "complete";

/// An exclusive flock on `<image dir>.lock`, released on drop.
#[derive(Debug)]
pub struct CacheLock {
    file: File,
    path: PathBuf,
}

impl CacheLock {
    /// Takes the lock for `image_dir`, waiting for another holder to finish.
    pub fn acquire(image_dir: &Path) -> Result<Self, ImageError> {
        loop {
            let lock = Self::open(image_dir)?;
            if let Err(fs4::TryLockError::WouldBlock) = fs4::FileExt::try_lock(&lock.file) {
                tracing::info!(lock = ?lock.path, "another process is building this image; waiting");
                fs4::FileExt::lock(&lock.file).map_err(|source| lock.io("lock", source))?;
            }
            if lock.still_current() {
                return Ok(lock);
            }
        }
    }

    /// Takes the lock if it is free; `None` if another process holds it.
    pub fn try_acquire(image_dir: &Path) -> Result<Option<Self>, ImageError> {
        loop {
            let lock = Self::open(image_dir)?;
            match fs4::FileExt::try_lock(&lock.file) {
                Ok(()) if lock.still_current() => return Ok(Some(lock)),
                Ok(()) => continue,
                Err(fs4::TryLockError::WouldBlock) => return Ok(None),
                Err(fs4::TryLockError::Error(source)) => return Err(lock.io("lock", source)),
            }
        }
    }

    /// Whether the locked file is still the one at the lock path: `prune` deletes lock
    /// files of removed images while holding them, and a waiter that locked the deleted
    /// file must start over on the new one.
    fn still_current(&self) -> bool {
        match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
            _ => false,
        }
    }

    /// Deletes the lock file while holding the lock (for images that no longer exist).
    fn remove(self) -> Result<PathBuf, ImageError> {
        std::fs::remove_file(&self.path).map_err(|source| self.io("remove", source))?;
        Ok(self.path.clone())
    }

    fn open(image_dir: &Path) -> Result<Self, ImageError> {
        let path = lock_path(image_dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ImageError::Io {
                what: "create directory".into(),
                path: parent.to_owned(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ImageError::Io {
                what: "open lock file".into(),
                path: path.clone(),
                source,
            })?;
        Ok(CacheLock { file, path })
    }

    fn io(&self, what: &str, source: std::io::Error) -> ImageError {
        ImageError::Io {
            what: what.into(),
            path: self.path.clone(),
            source,
        }
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<dir>.lock`.
pub fn lock_path(image_dir: &Path) -> PathBuf {
    with_suffix(image_dir, ".lock")
}

/// `<dir>.tmp`.
pub fn tmp_path(image_dir: &Path) -> PathBuf {
    with_suffix(image_dir, ".tmp")
}

/// `<dir>.log`: the log of a build in progress or of the last failed build.
pub fn log_path(image_dir: &Path) -> PathBuf {
    with_suffix(image_dir, ".log")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether `dir` holds a complete image (marker present and manifest readable).
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file() && dir.join(super::manifest::MANIFEST_FILE).is_file()
}

/// Removes a directory tree without following symlinks, refusing when anything is
/// mounted inside it (an interrupted mmdebstrap could leave /proc or /dev bound there).
pub fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    if let Some(mount) = mount_inside(dir) {
        return Err(ImageError::MountedInside {
            dir: dir.to_owned(),
            mount,
        });
    }
    std::fs::remove_dir_all(dir).map_err(|source| ImageError::Io {
        what: "remove".into(),
        path: dir.to_owned(),
        source,
    })
}

/// First mount point at or below `dir`, from /proc/self/mountinfo.
fn mount_inside(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .find(|m| Path::new(m).starts_with(&dir))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Complete images in the cache, sorted by directory name.
pub fn list(opts: &BuildOptions) -> Result<Vec<BuiltImage>, ImageError> {
    let mut out = Vec::new();
    for dir in image_dirs(opts)? {
        if is_complete(&dir) {
            match BuiltImage::from_dir(&dir) {
                Ok(img) => out.push(img),
                Err(err) => tracing::warn!(?dir, %err, "skipping unreadable cached image"),
            }
        }
    }
    Ok(out)
}

/// Directories (not `.tmp`) under `<cache>/images`.
fn image_dirs(opts: &BuildOptions) -> Result<Vec<PathBuf>, ImageError> {
    let images = opts.images_dir();
    let rd = match std::fs::read_dir(&images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::Io {
                what: "list".into(),
                path: images,
                source,
            })
        }
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) != Some("tmp"))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Removes every cached image whose hash is not in `keep` (a full hash or a prefix of at
/// least 12 hex digits), incomplete directories, stale temporary build directories and
/// old failure logs. Images being built (lock held) are left alone. Returns what was
/// removed. Do not prune an image that a running VM uses as its base.
pub fn prune(opts: &BuildOptions, keep: &[String]) -> Result<Vec<PathBuf>, ImageError> {
    let kept = |hash: &str| {
        keep.iter()
            .any(|k| k.len() >= 12 && hash.starts_with(k.as_str()))
    };
    let mut removed = Vec::new();
    for dir in image_dirs(opts)? {
        let Some(_lock) = CacheLock::try_acquire(&dir)? else {
            tracing::info!(?dir, "in use by a build; not pruned");
            continue;
        };
        let keep_it = is_complete(&dir)
            && BuiltImage::from_dir(&dir)
                .map(|img| kept(&img.hash))
                .unwrap_or(false);
        if !keep_it {
            remove_tree(&dir)?;
            removed.push(dir.clone());
        }
        for extra in [tmp_path(&dir), log_path(&dir)] {
            if extra.exists() && !keep_it {
                if extra.is_dir() {
                    remove_tree(&extra)?;
                } else {
                    remove_file(&extra)?;
                }
                removed.push(extra);
            }
        }
    }
    // Orphans: temporary dirs, logs and lock files of images that no longer exist. A lock
    // file is deleted while held; a process waiting on it notices and retries.
    if let Ok(rd) = std::fs::read_dir(opts.images_dir()) {
        let mut rest: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        // Lock files last: taking a lock (re)creates its file.
        rest.sort_by_key(|p| (p.extension().is_some_and(|e| e == "lock"), p.clone()));
        for p in rest {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(base) = [".tmp", ".log", ".lock"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
            else {
                continue;
            };
            let image_dir = p.with_file_name(base);
            if image_dir.exists() || !p.exists() {
                continue;
            }
            let Some(lock) = CacheLock::try_acquire(&image_dir)? else {
                continue;
            };
            if p == lock.path {
                let lock_file = lock.remove()?;
                if !removed.contains(&lock_file) {
                    removed.push(lock_file);
                }
                continue;
            }
            if p.is_dir() {
                remove_tree(&p)?;
            } else {
                remove_file(&p)?;
            }
            removed.push(p);
            let lock_file = lock.remove()?;
            if !removed.contains(&lock_file) {
                removed.push(lock_file);
            }
        }
    }
    Ok(removed)
}

fn remove_file(p: &Path) -> Result<(), ImageError> {
    std::fs::remove_file(p).map_err(|source| ImageError::Io {
        what: "remove".into(),
        path: p.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::MANIFEST_FILE;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    fn opts(dir: &Path) -> BuildOptions {
        BuildOptions {
            cache_dir: dir.to_owned(),
            progress: false,
        }
    }

    fn fake_image(images: &Path, name: &str, hash: &str, complete: bool) -> PathBuf {
        let mut m = crate::image::manifest::tests::sample();
        m.recipe_hash = hash.to_owned();
        m.recipe_name = name.to_owned();
        let dir = images.join(format!("{name}-{}", &hash[..12]));
        std::fs::create_dir_all(&dir).unwrap();
        m.write(&dir).unwrap();
        if complete {
            std::fs::write(dir.join(COMPLETE_MARKER), "").unwrap();
        }
        dir
    }

    #[test]
    fn second_locker_waits_for_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images/x-0123456789ab");
        let first = CacheLock::acquire(&dir).unwrap();
        assert!(CacheLock::try_acquire(&dir).unwrap().is_none());
        let barrier = Arc::new(Barrier::new(2));
        let (d, b) = (dir.clone(), barrier.clone());
        let waiter = std::thread::spawn(move || {
            b.wait();
            let t = Instant::now();
            let _l = CacheLock::acquire(&d).unwrap();
            t.elapsed()
        });
        barrier.wait();
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(250), "waited {waited:?}");
        assert!(CacheLock::try_acquire(&dir).unwrap().is_some());
    }

    #[test]
    fn incomplete_images_are_not_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        let h1 = "a".repeat(64);
        let h2 = "b".repeat(64);
        let done = fake_image(&images, "bookworm", &h1, true);
        let half = fake_image(&images, "other", &h2, false);
        std::fs::create_dir_all(tmp_path(&done)).unwrap();
        assert!(is_complete(&done));
        assert!(!is_complete(&half));
        std::fs::remove_file(done.join(MANIFEST_FILE)).unwrap();
        assert!(
            !is_complete(&done),
            "a marker without a manifest is incomplete"
        );
        std::fs::write(done.join(MANIFEST_FILE), "{}").unwrap();
        assert!(list(&opts(tmp.path())).unwrap().is_empty());
        let done2 = fake_image(&images, "bookworm", &h1, true);
        let listed = list(&opts(tmp.path())).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].dir, done2);
    }

    #[test]
    fn prune_keeps_named_hashes_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        let (h1, h2, h3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
        let keep = fake_image(&images, "a", &h1, true);
        let old = fake_image(&images, "b", &h2, true);
        let half = fake_image(&images, "c", &h3, false);
        let stale = images.join("d-444444444444.tmp");
        std::fs::create_dir_all(stale.join("rootfs/etc")).unwrap();
        let busy = fake_image(&images, "e", &"5".repeat(64), true);
        let busy_lock = CacheLock::acquire(&busy).unwrap();

        let removed = prune(&opts(tmp.path()), &[h1[..12].to_owned()]).unwrap();
        assert!(keep.exists());
        assert!(!old.exists() && !half.exists() && !stale.exists());
        assert!(busy.exists(), "an image under lock is left alone");
        assert!(removed.contains(&old) && removed.contains(&half) && removed.contains(&stale));
        assert!(!lock_path(&old).exists() && !lock_path(&stale_base(&stale)).exists());
        assert!(lock_path(&busy).exists());
        drop(busy_lock);
        let removed = prune(&opts(tmp.path()), std::slice::from_ref(&h1)).unwrap();
        assert!(removed.contains(&busy));
        assert_eq!(list(&opts(tmp.path())).unwrap().len(), 1);
    }

    fn stale_base(tmp: &Path) -> PathBuf {
        tmp.with_file_name(tmp.file_stem().unwrap())
    }

    #[test]
    fn a_waiter_on_a_deleted_lock_file_takes_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images/x-0123456789ab");
        let first = CacheLock::acquire(&dir).unwrap();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || CacheLock::acquire(&d).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        // The waiter may re-create the lock file at once, so the removal itself is
        // checked in `remove_deletes_the_lock_file`.
        first.remove().unwrap();
        let second = waiter.join().unwrap();
        assert!(
            second.still_current(),
            "the waiter must hold the file now at the path"
        );
        assert!(lock_path(&dir).exists());
        assert!(CacheLock::try_acquire(&dir).unwrap().is_none());
    }

    #[test]
    fn remove_deletes_the_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("images/x-0123456789ab");
        let lock = CacheLock::acquire(&dir).unwrap();
        let path = lock.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let victim = tmp.path().join("x.tmp");
        std::fs::create_dir(&victim).unwrap();
        std::os::unix::fs::symlink(&outside, victim.join("link")).unwrap();
        remove_tree(&victim).unwrap();
        assert!(!victim.exists());
        assert!(outside.join("precious").exists());
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert!(
            mount_inside(Path::new("/")).is_some(),
            "/ itself is a mount"
        );
    }
}
