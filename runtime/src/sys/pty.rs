//! Terminals: pseudo-terminal pairs, controlling terminals, raw mode, window sizes and
//! the byte relay between a user's terminal and a container's pty.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    /// The side the relay reads and writes.
    pub master: OwnedFd,
    /// The side given to the container's process as its terminal.
    pub slave: OwnedFd,
}

/// Opens a new pty pair on the host's `/dev/ptmx`, sized like `like` when that is a
/// terminal.
pub fn open_pty(like: Option<BorrowedFd<'_>>) -> Result<Pty, Errno> {
    let size = like.and_then(|fd| window_size(fd).ok());
    let pair = nix::pty::openpty(size.as_ref(), None)?;
    Ok(Pty {
        master: pair.master,
        slave: pair.slave,
    })
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

fn window_size(fd: BorrowedFd<'_>) -> Result<nix::pty::Winsize, Errno> {
    let mut ws = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, which lives
    // across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ws)
    }
}

/// Copies the window size of terminal `from` to pty `to`.
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), Errno> {
    let ws = window_size(from)?;
    // SAFETY: TIOCSWINSZ reads one `winsize` from the struct we pass.
    let ret = unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// In a freshly forked child: starts a new session, makes `slave` the controlling
/// terminal and standard input, output and error.
pub fn make_controlling_terminal(slave: BorrowedFd<'_>) -> Result<(), Errno> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    let ret = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    redirect_stdio(slave)
}

/// Makes `fd` the standard input, output and error of this process.
pub fn redirect_stdio(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    for target in 0..3 {
        dup_onto(fd, target)?;
    }
    Ok(())
}

/// `dup2(fd, target)`.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 only manipulates the fd table; `target` is a small fixed number the
    // caller owns (0, 1 or 2).
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// A terminal put into raw mode; restores its settings when dropped.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts `fd` into raw mode.
    pub fn enter(fd: BorrowedFd<'a>) -> Result<Self, Errno> {
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)?;
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Relays bytes between `input` (if any) and the pty `master`, copying what the master
/// produces to `output`, until `stop` becomes readable (e.g. a pidfd of the process
/// on the terminal) or the master hangs up. Returns when done; drains what is left.
pub fn relay(
    master: BorrowedFd<'_>,
    input: Option<BorrowedFd<'_>>,
    output: &mut dyn Write,
    stop: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let mut master_file = File::from(
        master
            .try_clone_to_owned()
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))?,
    );
    let mut input_open = input.is_some();
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![
            PollFd::new(master, PollFlags::POLLIN),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        if let (true, Some(inp)) = (input_open, input) {
            fds.push(PollFd::new(inp, PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .unwrap_or(PollFlags::empty())
        };
        let master_ev = ready(0);
        let stop_ev = ready(1);
        let input_ev = ready(2);
        if master_ev.contains(PollFlags::POLLIN) {
            match master_file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let _ = output.write_all(&buf[..n]);
                    let _ = output.flush();
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(_) => return Ok(()),
            }
        } else if master_ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return Ok(());
        }
        if input_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            if let Some(inp) = input {
                match nix::unistd::read(inp.as_raw_fd(), &mut buf) {
                    Ok(0) | Err(_) => input_open = false,
                    Ok(n) => {
                        let _ = master_file.write_all(&buf[..n]);
                    }
                }
            }
        }
        if stop_ev.contains(PollFlags::POLLIN) {
            // Drain what the process wrote before it ended.
            drain(master.as_fd(), &mut master_file, output);
            return Ok(());
        }
    }
}

fn drain(master: BorrowedFd<'_>, file: &mut File, output: &mut dyn Write) {
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(master, PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        if !fds[0]
            .revents()
            .unwrap_or(PollFlags::empty())
            .contains(PollFlags::POLLIN)
        {
            return;
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let _ = output.write_all(&buf[..n]);
            }
        }
    }
}
