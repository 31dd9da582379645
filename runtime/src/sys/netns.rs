//! Network-namespace ownership checks and identity switches for the setuid helper
//! `ulxc-user-nic`: pidfds, `/proc/PID/ns/net` opened with the caller's rights, the
//! nsfs filesystem check, namespace inodes, `NS_GET_USERNS` / `NS_GET_OWNER_UID`, and
//! the real/effective/saved id switches.
//!
//! Nothing here takes a path from the caller: the only path built is
//! `/proc/<decimal pid>/ns/net` from an integer.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Pid, Uid};

/// `_IO(0xb7, 0x1)`: a namespace's owning user namespace, as a new fd.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `_IO(0xb7, 0x4)`: the uid (in the caller's user namespace) that owns a user namespace.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// Opens a pidfd for `pid` (`pidfd_open(2)`); it pins the identity of the process, so a
/// later liveness check through it detects pid reuse.
pub fn open_pidfd(pid: Pid) -> Result<OwnedFd, Errno> {
    super::process::pidfd_open(pid)
}

/// Whether the process a pidfd refers to is still running (`pidfd_send_signal(fd, 0)`).
pub fn pidfd_is_alive(pidfd: BorrowedFd<'_>) -> Result<bool, Errno> {
    match super::process::pidfd_send_signal(pidfd, 0) {
        Ok(()) | Err(Errno::EPERM) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `/proc/PID/ns/net` read-only with the calling process's current (file-system)
/// credentials, so the kernel's ptrace-read access check applies to them.
pub fn open_netns_of(pid: Pid) -> Result<OwnedFd, Errno> {
    let path = format!("/proc/{}/ns/net", pid.as_raw());
    let fd = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the calling thread's own network namespace (`/proc/thread-self/ns/net`).
pub fn open_own_netns() -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        "/proc/thread-self/ns/net",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is a file on nsfs (a namespace file: `f_type` NSFS_MAGIC 0x6e736673),
/// by `fstatfs(2)`.
pub fn is_on_nsfs(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let stat = nix::sys::statfs::fstatfs(fd)?;
    Ok(stat.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// The inode number of the namespace `fd` refers to (its identity on nsfs).
pub fn namespace_inode(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    Ok(nix::sys::stat::fstat(fd.as_raw_fd())?.st_ino)
}

/// The inode of the network namespace of process `pid`, or `None` if it cannot be seen
/// (no such process, or no access with the current credentials).
pub fn netns_inode_of(pid: Pid) -> Option<u64> {
    let fd = open_netns_of(pid).ok()?;
    namespace_inode(fd.as_fd()).ok()
}

/// The user namespace that owns the namespace `fd` refers to (`NS_GET_USERNS`).
pub fn owning_userns(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_USERNS as _) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// The uid that created (owns) the user namespace `userns` refers to
/// (`NS_GET_OWNER_UID`), as seen from the caller's user namespace.
pub fn userns_owner_uid(userns: BorrowedFd<'_>) -> Result<Uid, Errno> {
    let mut uid: libc::uid_t = libc::uid_t::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which points to a
    // live, properly aligned local.
    let ret = unsafe {
        libc::ioctl(
            userns.as_raw_fd(),
            NS_GET_OWNER_UID as _,
            std::ptr::addr_of_mut!(uid),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(Uid::from_raw(uid))
}

/// The real, effective and saved user ids of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    /// Real uid: who ran the helper.
    pub real: Uid,
    /// Effective uid.
    pub effective: Uid,
    /// Saved set-user-id.
    pub saved: Uid,
}

/// The process's real, effective and saved uids.
pub fn user_ids() -> Result<UserIds, Errno> {
    let ids = nix::unistd::getresuid()?;
    Ok(UserIds {
        real: ids.real,
        effective: ids.effective,
        saved: ids.saved,
    })
}

/// The process's real gid.
pub fn real_gid() -> Gid {
    nix::unistd::getgid()
}

/// Sets only the effective uid (the saved uid stays, so root can be regained while the
/// saved uid is 0). The file-system uid follows the effective uid.
pub fn set_effective_uid(uid: Uid) -> Result<(), Errno> {
    nix::unistd::seteuid(uid)
}

/// Sets the real, effective and saved uids (`setresuid(2)`).
pub fn set_user_ids(real: Uid, effective: Uid, saved: Uid) -> Result<(), Errno> {
    nix::unistd::setresuid(real, effective, saved)
}

/// Sets only the effective gid (the file-system gid follows it), so that files made
/// while acting as root belong to group root.
pub fn set_effective_gid(gid: Gid) -> Result<(), Errno> {
    nix::unistd::setegid(gid)
}

/// Moves the calling THREAD into the network namespace `netns` (`setns(2)`); other
/// threads stay where they are. Sockets made afterwards by this thread live there.
pub fn enter_netns_this_thread(netns: BorrowedFd<'_>) -> Result<(), Errno> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
}

/// Drops for good to the given ids: `setresgid(gid, gid, gid)` then
/// `setresuid(uid, uid, uid)`. After this, root cannot be regained.
pub fn drop_privileges_for_good(uid: Uid, gid: Gid) -> Result<(), Errno> {
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)?;
    let ids = user_ids()?;
    if ids.real != uid || ids.effective != uid || ids.saved != uid {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// The caller's supplementary groups (`getgroups(2)`).
pub fn supplementary_groups() -> Result<Vec<Gid>, Errno> {
    nix::unistd::getgroups()
}

/// The login name of `uid` from the system's user database, if it has one.
pub fn user_name(uid: Uid) -> Option<String> {
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The name of group `gid` from the system's group database, if it has one.
pub fn group_name(gid: Gid) -> Option<String> {
    nix::unistd::Group::from_gid(gid)
        .ok()
        .flatten()
        .map(|g| g.name)
}
