//! No-privilege networking (`lxc.net.N.type = usermode | pasta | slirp4netns`): a
//! user-mode network stack running as the caller joins the container's user and network
//! namespaces, creates a tap device there, configures its address and default route, and
//! carries the container's traffic through ordinary sockets of the caller. No setuid
//! helper, no host bridge. pasta (package passt) is preferred; slirp4netns serves where
//! pasta is not installed.
//!
//! pasta daemonizes once the interface is configured (that is our readiness signal) and
//! leaves its pid in a file; it does not notice the container's end, so the monitor stops
//! it by that pid (checked against its start time). slirp4netns stays the monitor's child,
//! reports readiness on a pipe and exits by itself when the monitor's end of its exit pipe
//! closes, even if the monitor is killed.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::NetError;
use crate::config::NetType;
use crate::sys;

/// Which user-mode stack serves a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// pasta, at this path.
    Pasta(PathBuf),
    /// slirp4netns, at this path.
    Slirp4netns(PathBuf),
}

impl Backend {
    /// The program's name.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Pasta(_) => "pasta",
            Backend::Slirp4netns(_) => "slirp4netns",
        }
    }
}

/// Finds `program` in `$PATH`, else in /usr/bin or /usr/sbin (where Debian installs
/// pasta and slirp4netns) for a caller with a minimal `$PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    crate::cgroup::find_in_path(program).or_else(|| {
        ["/usr/bin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
    })
}

/// The backend for a network of type `kind` (`usermode`: pasta, else slirp4netns).
pub fn choose(kind: NetType) -> Result<Backend, NetError> {
    let pasta = || find_program("pasta").map(Backend::Pasta);
    let slirp = || find_program("slirp4netns").map(Backend::Slirp4netns);
    let found = match kind {
        NetType::Pasta => pasta(),
        NetType::Slirp4netns => slirp(),
        _ => pasta().or_else(slirp),
    };
    found.ok_or(NetError::UsermodeMissing {
        wanted: match kind {
            NetType::Pasta => "pasta (Debian package passt)",
            NetType::Slirp4netns => "slirp4netns (Debian package slirp4netns)",
            _ => "pasta (Debian package passt) or slirp4netns (package slirp4netns)",
        },
    })
}

/// A running user-mode stack serving one container interface.
#[derive(Debug)]
pub struct UsermodeNet {
    backend: &'static str,
    pid: i32,
    start_time: u64,
    /// slirp4netns: our child, and the write end of its exit pipe.
    child: Option<(Child, OwnedFd)>,
}

/// How long a stack may take to configure the interface.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What to attach.
#[derive(Debug, Clone)]
pub struct UsermodeRequest<'a> {
    /// The interface name inside the container.
    pub ifname: &'a str,
    /// `lxc.net.N.mtu`.
    pub mtu: Option<u32>,
    /// `lxc.net.N.hwaddr` (pasta only).
    pub hwaddr: Option<&'a str>,
    /// Where pasta writes its pid.
    pub pid_file: &'a Path,
    /// Where the stack's messages go.
    pub log: &'a Path,
}

/// Starts `backend` for container init `init_pid`; returns once the interface inside the
/// container has its address and route.
pub fn attach(
    backend: &Backend,
    init_pid: i32,
    req: &UsermodeRequest<'_>,
) -> Result<UsermodeNet, NetError> {
    match backend {
        Backend::Pasta(program) => attach_pasta(program, init_pid, req),
        Backend::Slirp4netns(program) => attach_slirp(program, init_pid, req),
    }
}

fn log_file(path: &Path) -> Result<File, NetError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| NetError::Usermode {
            backend: "pasta/slirp4netns",
            why: format!("cannot open the log {}: {e}", path.display()),
        })
}

fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("to syslog"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        format!("no message; see {}", path.display())
    } else {
        tail.join("; ")
    }
}

/// pasta's argument list.
pub fn pasta_args(init_pid: i32, req: &UsermodeRequest<'_>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config-net",
        "--quiet",
        // No port forwarding in either direction, and the gateway address is not mapped
        // to the host's loopback: the container reaches only what the caller could.
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["-I".into(), req.ifname.to_string()]);
    if let Some(mtu) = req.mtu {
        args.extend(["-m".into(), mtu.to_string()]);
    }
    if let Some(mac) = req.hwaddr {
        args.extend(["--ns-mac-addr".into(), mac.to_string()]);
    }
    args.extend([
        "-P".into(),
        req.pid_file.display().to_string(),
        "-l".into(),
        req.log.display().to_string(),
        "--userns".into(),
        format!("/proc/{init_pid}/ns/user"),
        "--netns".into(),
        format!("/proc/{init_pid}/ns/net"),
    ]);
    args
}

fn attach_pasta(
    program: &Path,
    init_pid: i32,
    req: &UsermodeRequest<'_>,
) -> Result<UsermodeNet, NetError> {
    let failed = |why: String| NetError::Usermode {
        backend: "pasta",
        why,
    };
    let _ = std::fs::remove_file(req.pid_file);
    let log = log_file(req.log)?;
    let err_log = log.try_clone().map_err(|e| failed(e.to_string()))?;
    // pasta forks into the background once the interface is configured; the
    // foreground process's exit is the readiness signal.
    let status = Command::new(program)
        .args(pasta_args(init_pid, req))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .status()
        .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    if !status.success() {
        return Err(failed(format!("{status}: {}", last_lines(req.log))));
    }
    let pid: i32 = std::fs::read_to_string(req.pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| failed(format!("no pid in {}", req.pid_file.display())))?;
    let start_time = sys::process::process_start_time(Pid::from_raw(pid)).unwrap_or(0);
    Ok(UsermodeNet {
        backend: "pasta",
        pid,
        start_time,
        child: None,
    })
}

/// slirp4netns's argument list (`ready` and `exit` are the child's descriptor numbers).
pub fn slirp_args(init_pid: i32, req: &UsermodeRequest<'_>, ready: i32, exit: i32) -> Vec<String> {
    vec![
        "--configure".into(),
        format!("--mtu={}", req.mtu.unwrap_or(65520)),
        "--disable-host-loopback".into(),
        format!("--ready-fd={ready}"),
        format!("--exit-fd={exit}"),
        format!("--userns-path=/proc/{init_pid}/ns/user"),
        "--netns-type=path".into(),
        format!("/proc/{init_pid}/ns/net"),
        req.ifname.to_string(),
    ]
}

fn attach_slirp(
    program: &Path,
    init_pid: i32,
    req: &UsermodeRequest<'_>,
) -> Result<UsermodeNet, NetError> {
    use std::os::fd::AsRawFd;
    let failed = |why: String| NetError::Usermode {
        backend: "slirp4netns",
        why,
    };
    // slirp4netns inherits the ends it needs (close-on-exec cleared on those two only);
    // our copies of those ends are closed right after the spawn.
    let (ready_r, ready_w) = sys::socket::pipe_cloexec().map_err(|e| failed(e.to_string()))?;
    let (exit_r, exit_w) = sys::socket::pipe_cloexec().map_err(|e| failed(e.to_string()))?;
    sys::socket::set_inheritable(&ready_w).map_err(|e| failed(e.to_string()))?;
    sys::socket::set_inheritable(&exit_r).map_err(|e| failed(e.to_string()))?;
    let log = log_file(req.log)?;
    let err_log = log.try_clone().map_err(|e| failed(e.to_string()))?;
    let child = Command::new(program)
        .args(slirp_args(
            init_pid,
            req,
            ready_w.as_raw_fd(),
            exit_r.as_raw_fd(),
        ))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    drop(ready_w);
    drop(exit_r);
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let mut net = UsermodeNet {
        backend: "slirp4netns",
        pid,
        start_time: sys::process::process_start_time(Pid::from_raw(pid)).unwrap_or(0),
        child: Some((child, exit_w)),
    };
    let ready = read_ready(ready_r, READY_TIMEOUT);
    if !ready {
        let why = last_lines(req.log);
        net.stop_in_place();
        return Err(failed(format!("it did not get ready: {why}")));
    }
    Ok(net)
}

/// Waits until the ready pipe delivers a byte (true) or closes / times out (false).
fn read_ready(fd: OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(fd);
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || !sys::socket::wait_readable(&file, left).unwrap_or(false) {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(file.read(&mut byte), Ok(1))
}

impl UsermodeNet {
    /// The stack's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The stack process's start time (to tell it from a reused pid).
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Which stack runs.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    fn stop_in_place(&mut self) {
        if let Some((mut child, exit_w)) = self.child.take() {
            // Closing the exit pipe tells slirp4netns to quit; the kill is the backstop.
            drop(exit_w);
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                }
            }
        }
        stop_by_pid(self.pid, self.start_time);
    }

    /// Stops the stack (the container's network namespace is going away).
    pub fn stop(mut self) {
        self.stop_in_place();
    }
}

/// Stops a detached stack (pasta) by pid, only if that pid still is the same process
/// (same start time): SIGTERM, then SIGKILL after two seconds.
pub fn stop_by_pid(pid: i32, start_time: u64) {
    let p = Pid::from_raw(pid);
    if pid <= 1 || sys::process::process_start_time(p) != Some(start_time) {
        return;
    }
    let _ = sys::process::kill_raw(p, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if sys::process::process_start_time(p) != Some(start_time) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = sys::process::kill_raw(p, libc::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(pid_file: &'a Path, log: &'a Path) -> UsermodeRequest<'a> {
        UsermodeRequest {
            ifname: "eth0",
            mtu: Some(1500),
            hwaddr: Some("00:16:3e:01:02:03"),
            pid_file,
            log,
        }
    }

    #[test]
    fn pasta_joins_init_namespaces_and_forwards_nothing() {
        let args = pasta_args(77, &req(Path::new("/c/net0.pid"), Path::new("/c/net.log")));
        let joined = args.join(" ");
        assert!(joined.contains("--userns /proc/77/ns/user --netns /proc/77/ns/net"));
        assert!(joined.contains("-t none -u none -T none -U none --no-map-gw"));
        assert!(joined.contains("-I eth0 -m 1500 --ns-mac-addr 00:16:3e:01:02:03"));
        assert!(joined.contains("-P /c/net0.pid"));
    }

    #[test]
    fn slirp_gets_ready_and_exit_pipes() {
        let args = slirp_args(
            77,
            &req(Path::new("/c/net0.pid"), Path::new("/c/net.log")),
            5,
            6,
        );
        assert_eq!(args.last().unwrap(), "eth0");
        assert!(args.contains(&"--ready-fd=5".to_string()));
        assert!(args.contains(&"--exit-fd=6".to_string()));
        assert!(args.contains(&"--disable-host-loopback".to_string()));
        assert!(args.contains(&"/proc/77/ns/net".to_string()));
    }
}
