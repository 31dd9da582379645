//! Processes: `clone3` with namespace flags, pidfds, signals, `prctl` settings and exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Namespace and other flags for [`clone_process`]; the values are the kernel's `CLONE_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneFlags(u64);

impl CloneFlags {
    /// New user namespace.
    pub const NEWUSER: Self = Self(libc::CLONE_NEWUSER as u64);
    /// New mount namespace.
    pub const NEWNS: Self = Self(libc::CLONE_NEWNS as u64);
    /// New pid namespace (the child is its pid 1).
    pub const NEWPID: Self = Self(libc::CLONE_NEWPID as u64);
    /// New UTS namespace.
    pub const NEWUTS: Self = Self(libc::CLONE_NEWUTS as u64);
    /// New IPC namespace.
    pub const NEWIPC: Self = Self(libc::CLONE_NEWIPC as u64);
    /// New network namespace.
    pub const NEWNET: Self = Self(libc::CLONE_NEWNET as u64);
    /// New cgroup namespace.
    pub const NEWCGROUP: Self = Self(libc::CLONE_NEWCGROUP as u64);

    /// No flags: a plain fork that also returns a pidfd.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
}

impl std::ops::BitOr for CloneFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// What [`clone_process`] returns in each of the two processes.
#[derive(Debug)]
pub enum Cloned {
    /// In the parent: the child's pid and a pidfd for it.
    Parent {
        /// The child's pid, as seen from the parent's pid namespace.
        pid: Pid,
        /// A pidfd referring to the child (pollable: readable when it exits).
        pidfd: OwnedFd,
    },
    /// In the child.
    Child,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks the calling process with `clone3(2)`, creating the namespaces in `flags`,
/// returning a pidfd, and optionally placing the child directly into the cgroup
/// whose directory `cgroup_dir` refers to (`CLONE_INTO_CGROUP`).
///
/// Like `fork(2)`, this must only be called while the process has a single thread.
pub fn clone_process(
    flags: CloneFlags,
    cgroup_dir: Option<BorrowedFd<'_>>,
) -> Result<Cloned, Errno> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags.bits() | libc::CLONE_PIDFD as u64,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup_dir {
        args.flags |= 0x2_0000_0000; // CLONE_INTO_CGROUP
        args.cgroup = u64::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    }
    // SAFETY: clone3 with no stack behaves like fork: the child continues on a copy of
    // the parent's address space. `args` and `pidfd` outlive the call, and the size
    // passed is the size of the struct the kernel reads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Cloned::Child),
        pid => {
            // SAFETY: the kernel stored a fresh pidfd that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            let pid = i32::try_from(pid).map_err(|_| Errno::EOVERFLOW)?;
            Ok(Cloned::Parent {
                pid: Pid::from_raw(pid),
                pidfd,
            })
        }
    }
}

/// Opens a pidfd for an existing process (`pidfd_open(2)`).
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments; on success it returns a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends signal `sig` (a raw number, so that real-time signals work) through a pidfd.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall; a null siginfo means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Sends a raw signal number to a pid (`kill(2)`); numbers allow real-time signals.
pub fn kill_raw(pid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::kill(pid.as_raw(), sig) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The real-time signal `SIGRTMIN+n` as a number.
pub fn sigrtmin_plus(n: i32) -> i32 {
    libc::SIGRTMIN() + n
}

/// Asks the kernel to send `sig` to this process when its parent exits.
pub fn set_parent_death_signal(sig: Signal) -> Result<(), Errno> {
    nix::sys::prctl::set_pdeathsig(sig)
}

/// Makes this process a child subreaper: orphaned descendants are reparented to it.
pub fn set_child_subreaper() -> Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Sets `no_new_privs` for this process and its descendants.
pub fn set_no_new_privs() -> Result<(), Errno> {
    nix::sys::prctl::set_no_new_privs()
}

/// Marks this process as not dumpable (no ptrace, no /proc/PID/mem for others).
pub fn set_not_dumpable() -> Result<(), Errno> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Replaces the process image with `argv[0]` found in `PATH` (from `env`), with exactly
/// the environment `env`. Returns only on failure.
pub fn exec_with_env(argv: &[String], env: &[(String, String)]) -> Errno {
    let to_c = |s: &str| CString::new(s).map_err(|_| Errno::EINVAL);
    let Some(program) = argv.first() else {
        return Errno::EINVAL;
    };
    let args: Result<Vec<CString>, Errno> = argv.iter().map(|a| to_c(a)).collect();
    let envs: Result<Vec<CString>, Errno> =
        env.iter().map(|(k, v)| to_c(&format!("{k}={v}"))).collect();
    let (args, envs) = match (args, envs) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if program.contains('/') {
        return match to_c(program) {
            Ok(path) => nix::unistd::execve(&path, &args, &envs).unwrap_err(),
            Err(e) => e,
        };
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut last = Errno::ENOENT;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{program}");
        let Ok(path) = to_c(&candidate) else { continue };
        match nix::unistd::execve(&path, &args, &envs) {
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => continue,
            Err(e) => last = e,
            Ok(never) => match never {},
        }
    }
    last
}

/// Exits the process at once without running destructors or atexit handlers; used in
/// forked children so that they never return into the parent's code.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Forks the calling (single-threaded) process; see [`clone_process`].
pub fn fork_with_pidfd() -> Result<Cloned, Errno> {
    clone_process(CloneFlags::empty(), None)
}

/// Reads the start time (clock ticks since boot, field 22 of `/proc/PID/stat`) of a
/// living process; with the pid it identifies a process across pid reuse. A zombie (an
/// init whose parent died and nobody reaped yet) or an exiting process (`PF_EXITING`,
/// e.g. a pid namespace's init waiting for its children while its namespaces are already
/// gone) gives `None`.
pub fn process_start_time(pid: Pid) -> Option<u64> {
    /// `PF_EXITING` in the flags field of `/proc/PID/stat` (include/linux/sched.h).
    const PF_EXITING: u64 = 0x4;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw())).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    let flags: u64 = fields.get(6)?.parse().ok()?;
    if flags & PF_EXITING != 0 {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `pid` exists (as seen from this pid namespace).
pub fn process_exists(pid: Pid) -> bool {
    matches!(
        nix::sys::signal::kill(pid, None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Waits for child `pid` to end and turns its end into an exit code (128+signal when
/// killed by a signal), as a shell would.
pub fn wait_exit_code(pid: Pid) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reaps any child that has ended, without waiting; returns its pid and exit code.
pub fn reap_any() -> Option<(Pid, i32)> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(pid, code)) => Some((pid, code)),
        Ok(WaitStatus::Signaled(pid, sig, _)) => Some((pid, 128 + sig as i32)),
        _ => None,
    }
}

/// Waits for any child to end; returns its pid and exit code, `None` when there are no
/// children left.
pub fn wait_any() -> Option<(Pid, i32)> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid, code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => return Some((pid, 128 + sig as i32)),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes integer arguments only.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGPWR received by
/// this process to `pid` (the minimal init of an application container).
pub fn forward_termination_signals(pid: Pid) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    FORWARD_TO.store(pid.as_raw(), std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        // SAFETY: the handler only calls the async-signal-safe kill(2) with a value
        // read from an atomic.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            tracing::warn!(?sig, %e, "cannot forward signal");
        }
    }
}

/// Ignores SIGPIPE and SIGHUP in this process (a detached monitor must survive its
/// terminal going away and clients hanging up).
pub fn ignore_hangups() {
    use nix::sys::signal::{signal, SigHandler};
    for sig in [Signal::SIGPIPE, Signal::SIGHUP] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// Starts a new session (detaches from the controlling terminal).
pub fn new_session() -> Result<(), Errno> {
    nix::unistd::setsid().map(drop)
}

/// Which signals `pid` catches, from the `SigCgt` mask of `/proc/PID/status`.
pub fn caught_signals(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw())).ok()?;
    let line = status.lines().find(|l| l.starts_with("SigCgt:"))?;
    u64::from_str_radix(line.trim_start_matches("SigCgt:").trim(), 16).ok()
}

/// Changes the working directory of this process.
pub fn change_dir(path: &std::path::Path) -> Result<(), Errno> {
    nix::unistd::chdir(path)
}
