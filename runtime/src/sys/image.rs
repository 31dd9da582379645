//! Filesystem calls of the image module that std does not offer: a directory handle for
//! walking a tree with `openat`/`fstatat`/`unlinkat` without ever following a symlink
//! (used by `image::remove_tree`), and `mkfifo` (used when unpacking a rootfs).
//!
//! All of it goes through `nix`; there is no `unsafe` here.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// What kind of node a directory entry is, as `lstat` sees it (links are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else: file, fifo, socket, device node.
    Other,
}

/// The parts of `struct stat` that a tree walk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStat {
    /// Device of the filesystem holding the node (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub ino: u64,
    /// Permission bits, including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// What kind of node it is.
    pub kind: NodeKind,
}

impl From<FileStat> for NodeStat {
    fn from(st: FileStat) -> Self {
        let format = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let kind = if format == SFlag::S_IFDIR {
            NodeKind::Dir
        } else if format == SFlag::S_IFLNK {
            NodeKind::Symlink
        } else {
            NodeKind::Other
        };
        NodeStat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode & 0o7777,
            kind,
        }
    }
}

/// An open directory, opened with `O_DIRECTORY | O_NOFOLLOW`, whose entries are examined
/// and removed relative to its descriptor.
#[derive(Debug)]
pub struct DirHandle(Dir);

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl DirHandle {
    /// Opens the directory `path`; fails with `ELOOP`/`ENOTDIR` if its last component is
    /// a symlink or not a directory.
    pub fn open_nofollow(path: &Path) -> Result<DirHandle, Errno> {
        Dir::open(path, dir_flags(), Mode::empty()).map(DirHandle)
    }

    /// Opens the subdirectory `name` of this directory without following a symlink.
    pub fn open_child(&self, name: &OsStr) -> Result<DirHandle, Errno> {
        Dir::openat(Some(self.0.as_raw_fd()), name, dir_flags(), Mode::empty()).map(DirHandle)
    }

    /// `fstat` of the directory itself.
    pub fn stat(&self) -> Result<NodeStat, Errno> {
        stat::fstat(self.0.as_raw_fd()).map(NodeStat::from)
    }

    /// `fstatat(.., AT_SYMLINK_NOFOLLOW)` of the entry `name`.
    pub fn stat_child(&self, name: &OsStr) -> Result<NodeStat, Errno> {
        stat::fstatat(Some(self.0.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map(NodeStat::from)
    }

    /// The names in the directory, without `.` and `..`.
    pub fn names(&mut self) -> Result<Vec<OsString>, Errno> {
        let mut names = Vec::new();
        for entry in self.0.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    }

    /// `fchmod` of the directory itself (permission bits only).
    pub fn chmod(&self, mode: u32) -> Result<(), Errno> {
        stat::fchmod(self.0.as_raw_fd(), Mode::from_bits_truncate(mode))
    }

    /// `fchmodat` of the entry `name`. Linux cannot refuse to follow a symlink here, so the
    /// caller must have checked with [`DirHandle::stat_child`] that `name` is a directory,
    /// and should compare the inode after opening it.
    pub fn chmod_child_dir(&self, name: &OsStr, mode: u32) -> Result<(), Errno> {
        stat::fchmodat(
            Some(self.0.as_raw_fd()),
            name,
            Mode::from_bits_truncate(mode),
            FchmodatFlags::FollowSymlink,
        )
    }

    /// `unlinkat` of the entry `name`: `rmdir` if `dir`, else `unlink` (a symlink itself is
    /// removed, never its target).
    pub fn unlink_child(&self, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let flag = if dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        nix::unistd::unlinkat(Some(self.0.as_raw_fd()), name, flag)
    }
}

/// Creates a fifo at `path` with permission bits `mode` (minus the umask).
pub fn mkfifo(path: &Path, mode: u32) -> Result<(), Errno> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode))
}
