//! The monitor: one small process per running container (LXC keeps one too). It is the
//! parent of the container's init, holds the container's lock, relays the console, and
//! answers `ls`, `stop`, `info` and `attach` over a unix socket in the container's
//! directory (JSON lines; only the container's owner may connect).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use crate::container::state::{RunInfo, State};
use crate::sys;

/// A question to the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The container's state and run information.
    Status,
    /// Stop the container: the halt signal, then SIGKILL after `timeout_secs`; with
    /// `kill`, SIGKILL at once. The answer comes once init has ended.
    Stop {
        /// Seconds to wait for a clean halt.
        timeout_secs: u64,
        /// Kill at once.
        kill: bool,
    },
}

/// The monitor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// The state and run information.
    Status {
        /// The state.
        state: State,
        /// Run information while running.
        run: Option<RunInfo>,
    },
    /// Init has ended.
    Stopped {
        /// Whether it had to be killed.
        killed: bool,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why talking to a monitor failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// No monitor listens (the container is stopped, or its monitor died).
    #[error("no monitor answers at {path}: {source}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke off or was garbled.
    #[error("the monitor at {path} gave no valid answer: {why}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Connects to a unix socket even when its path is longer than `sun_path` allows, by
/// going through `/proc/self/fd` of its opened directory.
fn connect(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    let dir = std::fs::File::open(path.parent().unwrap_or(Path::new("/")))?;
    let name = path.file_name().unwrap_or_default();
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixStream::connect(short)
}

/// Binds a unix socket, with the same long-path workaround as [`connect`].
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.as_os_str().len() < 100 {
        return UnixListener::bind(path);
    }
    let dir = std::fs::File::open(path.parent().unwrap_or(Path::new("/")))?;
    let name = path.file_name().unwrap_or_default();
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixListener::bind(short)
}

/// Sends `request` to the monitor at `socket` and reads its answer.
pub fn request(socket: &Path, request: &Request) -> Result<Response, MonitorError> {
    let unreachable = |source| MonitorError::Unreachable {
        path: socket.to_path_buf(),
        source,
    };
    let protocol = |why: String| MonitorError::Protocol {
        path: socket.to_path_buf(),
        why,
    };
    let mut stream = connect(socket).map_err(unreachable)?;
    let wait = match request {
        Request::Status => Duration::from_secs(5),
        Request::Stop { timeout_secs, .. } => Duration::from_secs(timeout_secs + 30),
    };
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| protocol(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| protocol(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| protocol(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| protocol(e.to_string()))?;
    if answer.is_empty() {
        return Err(protocol("the connection closed without an answer".into()));
    }
    serde_json::from_str(&answer).map_err(|e| protocol(format!("{e}: {answer:?}")))
}

/// Where the console's output goes while the monitor runs.
pub enum ConsoleSink {
    /// A detached container: the console log file (kept below [`CONSOLE_LOG_LIMIT`]).
    Log(std::fs::File),
    /// A foreground container: the user's terminal (stdin is relayed to the console).
    Terminal,
}

/// The console log is started afresh when it grows beyond this.
pub const CONSOLE_LOG_LIMIT: u64 = 4 << 20;

/// What the monitor supervises.
pub struct Supervised {
    /// The socket clients connect to.
    pub listener: UnixListener,
    /// A pidfd of init.
    pub init_pidfd: OwnedFd,
    /// Init's pid.
    pub init_pid: nix::unistd::Pid,
    /// The console pty master, when there is a console.
    pub console: Option<OwnedFd>,
    /// Where the console output goes.
    pub sink: ConsoleSink,
    /// The run information served to clients.
    pub run: RunInfo,
    /// Kills every process of the container (its cgroup, or init's pid namespace).
    pub kill_all: Box<dyn Fn()>,
}

struct PendingStop {
    clients: Vec<UnixStream>,
    kill_at: Instant,
    killed: bool,
}

/// How supervision ended: init's exit code, and the clients waiting for a stop to be
/// confirmed — answered by [`Served::confirm`] once the monitor has cleaned up, so that a
/// `stop` returns only when the container can be started again.
pub struct Served {
    /// Init's exit code (128+signal when killed).
    pub code: i32,
    /// Clients whose stop request awaits its answer.
    pub waiting: Vec<UnixStream>,
    /// Whether init had to be killed.
    pub killed: bool,
}

impl Served {
    /// Tells every waiting client that the container has stopped.
    pub fn confirm(self) -> i32 {
        for mut c in self.waiting {
            reply(
                &mut c,
                &Response::Stopped {
                    killed: self.killed,
                },
            );
        }
        self.code
    }
}

/// Serves clients, relays the console and waits for init to end. `self_uid` is the
/// only uid allowed to connect (besides root).
pub fn serve(mut sup: Supervised, self_uid: u32) -> Served {
    let _ = sup.listener.set_nonblocking(true);
    let mut pending: Option<PendingStop> = None;
    let mut console_file = sup
        .console
        .as_ref()
        .and_then(|fd| fd.try_clone().ok())
        .map(std::fs::File::from);
    let mut sink = std::mem::replace(&mut sup.sink, ConsoleSink::Terminal);
    let mut stdin_open = matches!(sink, ConsoleSink::Terminal);
    let stdin = std::io::stdin();
    let mut buf = [0u8; 8192];
    loop {
        let timeout = match &pending {
            Some(p) if !p.killed => {
                let left = p.kill_at.saturating_duration_since(Instant::now());
                PollTimeout::from(
                    u16::try_from(left.as_millis().clamp(1, 60_000)).unwrap_or(60_000),
                )
            }
            _ => PollTimeout::NONE,
        };
        let listener_fd = sup.listener.as_fd();
        let pidfd = sup.init_pidfd.as_fd();
        let mut fds = vec![
            PollFd::new(listener_fd, PollFlags::POLLIN),
            PollFd::new(pidfd, PollFlags::POLLIN),
        ];
        let console_fd: Option<BorrowedFd<'_>> = sup.console.as_ref().map(|c| c.as_fd());
        if let Some(c) = console_fd {
            fds.push(PollFd::new(c, PollFlags::POLLIN));
        }
        let stdin_fd = stdin.as_fd();
        if stdin_open && console_fd.is_some() {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Err(sys::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(%e, "poll failed in the monitor");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(_) => {}
        }
        let ev = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .unwrap_or(PollFlags::empty())
        };
        let (listen_ev, init_ev, console_ev, stdin_ev) = (ev(0), ev(1), ev(2), ev(3));
        drop(fds);
        if console_ev.contains(PollFlags::POLLIN) {
            if let Some(file) = console_file.as_mut() {
                use std::io::Read;
                if let Ok(n) = file.read(&mut buf) {
                    write_console(&mut sink, &buf[..n]);
                }
            }
        }
        if stdin_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(stdin_fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if let Some(file) = console_file.as_mut() {
                        let _ = file.write_all(&buf[..n]);
                    }
                }
            }
        }
        if listen_ev.contains(PollFlags::POLLIN) {
            while let Ok((stream, _)) = sup.listener.accept() {
                handle_client(stream, self_uid, &sup, &mut pending);
            }
        }
        if init_ev.contains(PollFlags::POLLIN) {
            let code = sys::process::wait_exit_code(sup.init_pid).unwrap_or(255);
            // Drain the console so that the last words of init are kept.
            if let Some(file) = console_file.as_mut() {
                drain_console(file, &mut sink);
            }
            (sup.kill_all)();
            let (waiting, killed) = match pending.take() {
                Some(p) => (p.clients, p.killed),
                None => (Vec::new(), false),
            };
            return Served {
                code,
                waiting,
                killed,
            };
        }
        if let Some(p) = pending.as_mut() {
            if !p.killed && Instant::now() >= p.kill_at {
                tracing::info!("halt timed out; killing the container");
                p.killed = true;
                (sup.kill_all)();
                let _ = sys::process::pidfd_send_signal(sup.init_pidfd.as_fd(), libc::SIGKILL);
            }
        }
    }
}

fn write_console(sink: &mut ConsoleSink, data: &[u8]) {
    match sink {
        ConsoleSink::Terminal => {
            let mut out = std::io::stdout();
            let _ = out.write_all(data);
            let _ = out.flush();
        }
        ConsoleSink::Log(file) => {
            if file
                .metadata()
                .map(|m| m.len() > CONSOLE_LOG_LIMIT)
                .unwrap_or(false)
            {
                let _ = file.set_len(0);
            }
            let _ = file.write_all(data);
        }
    }
}

fn drain_console(file: &mut std::fs::File, sink: &mut ConsoleSink) {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => write_console(sink, &buf[..n]),
        }
    }
}

fn reply(stream: &mut UnixStream, response: &Response) {
    if let Ok(mut line) = serde_json::to_string(response) {
        line.push('\n');
        let _ = stream.write_all(line.as_bytes());
    }
}

fn handle_client(
    mut stream: UnixStream,
    self_uid: u32,
    sup: &Supervised,
    pending: &mut Option<PendingStop>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    match sys::socket::peer_uid(&stream) {
        Ok(uid) if uid == self_uid || uid == 0 => {}
        Ok(uid) => {
            reply(
                &mut stream,
                &Response::Error {
                    message: format!("uid {uid} may not control this container"),
                },
            );
            return;
        }
        Err(e) => {
            tracing::warn!(%e, "cannot read peer credentials");
            return;
        }
    }
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            reply(
                &mut stream,
                &Response::Error {
                    message: format!("bad request: {e}"),
                },
            );
            return;
        }
    };
    match request {
        Request::Status => {
            let state = if pending.is_some() {
                State::Stopping
            } else {
                State::Running
            };
            reply(
                &mut stream,
                &Response::Status {
                    state,
                    run: Some(sup.run.clone()),
                },
            );
        }
        Request::Stop { timeout_secs, kill } => {
            let p = pending.get_or_insert_with(|| PendingStop {
                clients: Vec::new(),
                kill_at: Instant::now() + Duration::from_secs(timeout_secs),
                killed: false,
            });
            if kill && !p.killed {
                p.killed = true;
                (sup.kill_all)();
                let _ = sys::process::pidfd_send_signal(sup.init_pidfd.as_fd(), libc::SIGKILL);
            } else if !p.killed && p.clients.is_empty() {
                let signal = halt_signal(sup.run.halt_signal, sup.init_pid);
                tracing::info!(signal, "sending the halt signal to init");
                if let Err(e) = sys::process::pidfd_send_signal(sup.init_pidfd.as_fd(), signal) {
                    tracing::warn!(%e, "cannot signal init");
                }
            }
            p.clients.push(stream);
        }
    }
}

/// The signal that halts init: the configured one (`lxc.signal.halt`, non-zero), else
/// SIGPWR when init catches it, else SIGRTMIN+3 (systemd's halt), as LXC chooses.
pub fn halt_signal(configured: i32, init_pid: nix::unistd::Pid) -> i32 {
    if configured != 0 {
        return configured;
    }
    let pwr_bit = 1u64 << (libc::SIGPWR - 1);
    match sys::process::caught_signals(init_pid) {
        Some(mask) if mask & pwr_bit != 0 => libc::SIGPWR,
        _ => sys::process::sigrtmin_plus(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_is_json_lines_with_tags() {
        let s = serde_json::to_string(&Request::Stop {
            timeout_secs: 60,
            kill: false,
        })
        .unwrap();
        assert_eq!(s, r#"{"op":"stop","timeout_secs":60,"kill":false}"#);
        let r: Response = serde_json::from_str(r#"{"reply":"stopped","killed":true}"#).unwrap();
        assert_eq!(r, Response::Stopped { killed: true });
    }

    #[test]
    fn unreachable_monitor_is_reported() {
        let e = request(Path::new("/nonexistent/monitor.sock"), &Request::Status).unwrap_err();
        assert!(matches!(e, MonitorError::Unreachable { .. }), "{e}");
    }
}
