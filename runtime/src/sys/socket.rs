//! Unix sockets, pipes and file locks: peer credentials, close-on-exec pipes, `flock`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::socket::sockopt::PeerCredentials;

/// The uid of the process at the other end of a unix stream.
pub fn peer_uid(stream: &UnixStream) -> Result<u32, Errno> {
    let creds = nix::sys::socket::getsockopt(stream, PeerCredentials)?;
    Ok(creds.uid())
}

/// A pipe whose ends are closed on `exec` (read end, write end).
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

/// An exclusive `flock` held on a file for as long as the value lives.
pub type FileLock = Flock<File>;

/// Takes an exclusive lock on `file` without waiting; `Err` with the file back when
/// another process holds it.
pub fn try_lock_exclusive(file: File) -> Result<FileLock, (File, Errno)> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
}

/// Takes an exclusive lock on `file`, waiting for it.
pub fn lock_exclusive(file: File) -> Result<FileLock, (File, Errno)> {
    Flock::lock(file, FlockArg::LockExclusive)
}

/// Lets a child process inherit `fd` across `exec` (clears close-on-exec).
pub fn set_inheritable(fd: &OwnedFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    Ok(())
}

/// Waits until `fd` is readable (or its writer closed it): `true`, or `false` when
/// `timeout` passed first.
pub fn wait_readable(
    fd: &impl std::os::fd::AsFd,
    timeout: std::time::Duration,
) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let n = nix::poll::poll(&mut fds, PollTimeout::from(ms))?;
    Ok(n > 0)
}
