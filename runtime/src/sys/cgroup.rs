//! Syscalls used by the cgroup module and by `ulxc checkconfig`: effective ids, access
//! checks with the effective uid, signals to single pids, and a probe that creates a user
//! namespace in a short-lived child.

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{AccessFlags, Pid};

use super::process::{clone_process, CloneFlags, Cloned};

/// The effective uid of the calling process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The effective gid of the calling process.
pub fn effective_gid() -> u32 {
    nix::unistd::getegid().as_raw()
}

/// The name of the user with uid `uid` from the passwd database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Whether the calling process may write `path`, judged with its effective ids
/// (`faccessat(2)` with `AT_EACCESS`).
pub fn writable_by_me(path: &Path) -> bool {
    nix::unistd::faccessat(None, path, AccessFlags::W_OK, AtFlags::AT_EACCESS).is_ok()
}

/// Sends SIGKILL to the process `pid`.
pub fn kill_pid(pid: u32) -> Result<(), Errno> {
    let raw = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
    nix::sys::signal::kill(Pid::from_raw(raw), Signal::SIGKILL)
}

/// Creates a user namespace in a child process that exits at once, and reports whether
/// the kernel allowed it (`Err` carries the errno of `clone3(2)`, e.g. `EPERM` or
/// `ENOSPC`).
///
/// The child only calls `_exit(2)`, so this is safe to call from a threaded process.
pub fn probe_user_namespace() -> Result<(), Errno> {
    match clone_process(CloneFlags::NEWUSER, None)? {
        Cloned::Child => super::process::exit_now(0),
        Cloned::Parent { pid, pidfd } => {
            let status = loop {
                match waitpid(pid, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            drop(pidfd);
            match status? {
                WaitStatus::Exited(_, 0) => Ok(()),
                _ => Err(Errno::ECHILD),
            }
        }
    }
}
