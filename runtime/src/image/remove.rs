//! Destroy-safe recursive removal of a rootfs (LXC lost a home directory through a symlink,
//! lxc#1051): the tree is walked with `openat`/`fstatat`/`unlinkat` relative to directory
//! descriptors opened with `O_NOFOLLOW`, so a symlink is removed itself and never followed,
//! and a directory on another filesystem (a mount point: another `st_dev`, or listed in
//! `/proc/self/mountinfo`, which also catches bind mounts from the same filesystem) is
//! left alone and reported.
//! Directories without write or search permission (a rootfs has 0555 ones) are made
//! writable before descending. Inside the container's user namespace this also removes
//! files owned by the container's ids.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::image::{DirHandle, NodeKind, NodeStat};
use crate::sys::Errno;

use super::ImageError;

/// Removes `path` and everything below it without following symlinks or crossing into
/// another filesystem.
///
/// If `path` itself is a symlink or a file, only it is removed; if it does not exist,
/// nothing is done. Directories on another filesystem are left in place, the rest is
/// removed, and then [`ImageError::RemoveLeftMounts`] lists what was left.
pub fn remove_tree(path: &Path) -> Result<(), ImageError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(?path, "nothing to remove");
            return Ok(());
        }
        Err(source) => {
            return Err(ImageError::Remove {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.is_dir() {
        // a symlink (to a directory or not) is removed itself, not what it points to
        return std::fs::remove_file(path).map_err(|source| ImageError::Remove {
            path: path.to_path_buf(),
            source,
        });
    }
    let errno = |source: Errno| ImageError::Remove {
        path: path.to_path_buf(),
        source: source.into(),
    };
    let mut root = DirHandle::open_nofollow(path).map_err(errno)?;
    let root_stat = root.stat().map_err(errno)?;
    let canonical = std::fs::canonicalize(path).map_err(|source| ImageError::Remove {
        path: path.to_path_buf(),
        source,
    })?;
    let mounts = mount_points_under(&canonical);
    if mounts.contains(&canonical) {
        return Err(ImageError::RemoveLeftMounts {
            path: path.to_path_buf(),
            left: vec![path.to_path_buf()],
        });
    }
    let mut walk = Walk {
        dev: root_stat.dev,
        mounts,
        left: Vec::new(),
    };
    walk.make_writable(&root, &root_stat, path)?;
    walk.remove_contents(&mut root, path, &canonical)?;
    drop(root);
    if !walk.left.is_empty() {
        return Err(ImageError::RemoveLeftMounts {
            path: path.to_path_buf(),
            left: walk.left,
        });
    }
    std::fs::remove_dir(path).map_err(|source| ImageError::Remove {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::debug!(?path, "removed");
    Ok(())
}

struct Walk {
    /// The filesystem of the tree's root; nothing on another one is touched.
    dev: u64,
    /// Mount points at or below the root (canonical paths), from `/proc/self/mountinfo`.
    mounts: HashSet<PathBuf>,
    /// Directories left because they are on another filesystem.
    left: Vec<PathBuf>,
}

/// The mount points of this process's mount namespace at or below `root` (canonical).
/// Without a readable mountinfo the walk relies on `st_dev` alone.
fn mount_points_under(root: &Path) -> HashSet<PathBuf> {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => parse_mount_points(&text)
            .into_iter()
            .filter(|m| m.starts_with(root))
            .collect(),
        Err(err) => {
            tracing::warn!(?err, "cannot read /proc/self/mountinfo; bind mounts from the same filesystem will not be noticed");
            HashSet::new()
        }
    }
}

/// The mount points (5th field, with `\040`-style octal escapes decoded) of a mountinfo text.
fn parse_mount_points(text: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            let bytes = field.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let escaped = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
                let decoded = escaped.and_then(|digits| {
                    let text = std::str::from_utf8(digits).ok()?;
                    u8::from_str_radix(text, 8).ok()
                });
                match decoded {
                    Some(byte) => {
                        out.push(byte);
                        i += 4;
                    }
                    None => {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

impl Walk {
    /// Gives the owner read, write and search permission on an open directory if missing.
    fn make_writable(
        &self,
        dir: &DirHandle,
        stat: &NodeStat,
        path: &Path,
    ) -> Result<(), ImageError> {
        if stat.mode & 0o700 != 0o700 {
            dir.chmod(stat.mode | 0o700)
                .map_err(|e| ImageError::Remove {
                    path: path.to_path_buf(),
                    source: e.into(),
                })?;
        }
        Ok(())
    }

    /// Removes everything in `dir`; `path` names it in errors, `canonical` is matched
    /// against the mount points.
    fn remove_contents(
        &mut self,
        dir: &mut DirHandle,
        path: &Path,
        canonical: &Path,
    ) -> Result<(), ImageError> {
        let names = dir.names().map_err(|e| ImageError::Remove {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        for name in names {
            let child_path = path.join(&name);
            let err = |e: Errno| ImageError::Remove {
                path: child_path.clone(),
                source: e.into(),
            };
            let stat = match dir.stat_child(&name) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(err(e)),
            };
            if stat.kind != NodeKind::Dir {
                match dir.unlink_child(&name, false) {
                    Ok(()) | Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(err(e)),
                }
            }
            let child_canonical = canonical.join(&name);
            if stat.dev != self.dev || self.mounts.contains(&child_canonical) {
                tracing::warn!(path = ?child_path, "not removing a directory on another filesystem (a mount point?)");
                self.left.push(child_path);
                continue;
            }
            let left_before = self.left.len();
            let mut child = self.open_child(dir, &name, &stat, &child_path)?;
            self.remove_contents(&mut child, &child_path, &child_canonical)?;
            drop(child);
            if self.left.len() > left_before {
                continue; // something below was kept, so this directory stays too
            }
            match dir.unlink_child(&name, true) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// Opens the subdirectory `name` (whose `fstatat` is `stat`), making it readable and
    /// writable first if it is not, and checks it is the same inode that was examined.
    fn open_child(
        &self,
        dir: &DirHandle,
        name: &OsStr,
        stat: &NodeStat,
        path: &Path,
    ) -> Result<DirHandle, ImageError> {
        let err = |e: Errno| ImageError::Remove {
            path: path.to_path_buf(),
            source: e.into(),
        };
        let child = match dir.open_child(name) {
            Ok(child) => child,
            Err(Errno::EACCES) => {
                dir.chmod_child_dir(name, stat.mode | 0o700).map_err(err)?;
                dir.open_child(name).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let opened = child.stat().map_err(err)?;
        if opened.dev != stat.dev || opened.ino != stat.ino {
            return Err(ImageError::RemoveChanged {
                path: path.to_path_buf(),
            });
        }
        self.make_writable(&child, &opened, path)?;
        Ok(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    90 22 8:1 /home/a /srv/c/rootfs/my\\040home rw - ext4 /dev/vda1 rw\n";
        assert_eq!(
            parse_mount_points(text),
            [PathBuf::from("/"), PathBuf::from("/srv/c/rootfs/my home")]
        );
    }
}
