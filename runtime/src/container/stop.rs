//! `ulxc stop` and `ulxc wait`: halting a container (through its monitor, or directly
//! when the monitor is gone) and waiting for a state.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::paths::ContainerDir;
use super::state::{self, State};
use super::ContainerError;
use crate::monitor::{self, Request, Response};
use crate::sys;

/// LXC's default time to wait for a clean halt before killing.
pub const DEFAULT_STOP_TIMEOUT: u64 = 60;

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    WasStopped,
    /// Init halted within the time.
    Halted,
    /// It had to be killed.
    Killed,
}

/// Stops container `dir`: the halt signal, up to `timeout_secs` for init to end, then
/// SIGKILL; `kill` kills at once.
pub fn stop(dir: &ContainerDir, timeout_secs: u64, kill: bool) -> Result<Stopped, ContainerError> {
    // Ask the monitor first; only when none answers, look at the recorded state.
    match monitor::request(&dir.monitor_socket(), &Request::Stop { timeout_secs, kill }) {
        Ok(Response::Stopped { killed }) => {
            wait_for_monitor_exit(dir, Duration::from_secs(10));
            return Ok(if killed || kill {
                Stopped::Killed
            } else {
                Stopped::Halted
            });
        }
        Ok(Response::Error { message }) => return Err(ContainerError::Unsupported(message)),
        Ok(other) => tracing::warn!(?other, "unexpected answer to stop"),
        Err(monitor::MonitorError::Unreachable { .. }) => {}
        Err(e) => tracing::warn!(%e, "monitor did not answer the stop; stopping directly"),
    }
    // No monitor: signal init ourselves.
    let Some(run) = state::observe(dir).run else {
        return Ok(Stopped::WasStopped);
    };
    let pid = Pid::from_raw(run.init_pid);
    let pidfd = sys::process::pidfd_open(pid).map_err(|e| ContainerError::Start {
        name: dir.name.clone(),
        why: format!("cannot open init (pid {}): {e}", run.init_pid),
    })?;
    let result = if kill {
        let _ = sys::process::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), libc::SIGKILL);
        Stopped::Killed
    } else {
        let sig = monitor::halt_signal(run.halt_signal, pid);
        let _ = sys::process::pidfd_send_signal(std::os::fd::AsFd::as_fd(&pidfd), sig);
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            if !run.init_alive() {
                break Stopped::Halted;
            }
            if Instant::now() >= deadline {
                let _ = sys::process::pidfd_send_signal(
                    std::os::fd::AsFd::as_fd(&pidfd),
                    libc::SIGKILL,
                );
                break Stopped::Killed;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.init_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    state::clean_stale(dir, Some(&run));
    Ok(result)
}

fn wait_for_monitor_exit(dir: &ContainerDir, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(file) = std::fs::File::open(dir.lock()) {
            if sys::socket::try_lock_exclusive(file).is_ok() {
                return;
            }
        } else {
            return;
        }
        // The monitor answers once it has cleaned up, just before it exits.
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Waits until container `dir` is in one of `states` (LXC's `-s 'RUNNING|STOPPED'`);
/// `timeout` of `None` waits for ever.
pub fn wait(
    dir: &ContainerDir,
    states: &[State],
    timeout: Option<Duration>,
) -> Result<State, ContainerError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let now = state::observe(dir).state;
        if states.contains(&now) {
            return Ok(now);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ContainerError::Timeout(format!(
                "container {} is still {} after {} s",
                dir.name,
                now.as_str(),
                timeout.map_or(0, |t| t.as_secs())
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
