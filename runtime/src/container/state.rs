//! A container's run state: what the monitor records in `run.json`, how `ls`, `stop`
//! and `attach` find out whether a container runs, and the cleanup of what a killed
//! monitor left behind.

use std::path::Path;

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::paths::ContainerDir;
use crate::monitor;
use crate::sys;

/// LXC's container states (the ones ulxc reaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Not running.
    Stopped,
    /// Being started.
    Starting,
    /// Init runs.
    Running,
    /// A stop is under way.
    Stopping,
}

impl State {
    /// LXC's spelling: `STOPPED`, `RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "STOPPED",
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Stopping => "STOPPING",
        }
    }

    /// Parses LXC's spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "STOPPED" => Some(State::Stopped),
            "STARTING" => Some(State::Starting),
            "RUNNING" => Some(State::Running),
            "STOPPING" => Some(State::Stopping),
            _ => None,
        }
    }
}

/// What the monitor writes to `run.json` once init runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Init's pid in the host's pid namespace.
    pub init_pid: i32,
    /// Init's start time (clock ticks after boot), to tell it from a reused pid.
    pub init_start_time: u64,
    /// The inode of init's user namespace.
    pub userns_inode: u64,
    /// The monitor's pid.
    pub monitor_pid: i32,
    /// Seconds since the epoch when init started.
    pub started_at: u64,
    /// The container's cgroup directory, when it has one.
    pub cgroup: Option<std::path::PathBuf>,
    /// The halt signal chosen at start (number).
    pub halt_signal: i32,
    /// The user-mode network stacks (pasta) the monitor started: (pid, start time).
    #[serde(default)]
    pub net_helpers: Vec<(i32, u64)>,
}

impl RunInfo {
    /// Whether the recorded init process still exists and is the same process.
    pub fn init_alive(&self) -> bool {
        let pid = Pid::from_raw(self.init_pid);
        sys::process::process_start_time(pid) == Some(self.init_start_time)
            && sys::ns::namespace_id(pid, "user").is_none_or(|ino| ino == self.userns_inode)
    }

    /// Reads `run.json`, if present and readable.
    pub fn read(dir: &ContainerDir) -> Option<Self> {
        let text = std::fs::read_to_string(dir.run_state()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes `run.json` atomically.
    pub fn write(&self, dir: &ContainerDir) -> std::io::Result<()> {
        let tmp = dir.dir.join(".run.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, dir.run_state())
    }
}

/// The observed state of a container, with its run information when it runs.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The state.
    pub state: State,
    /// What the monitor recorded, when running.
    pub run: Option<RunInfo>,
    /// Whether a monitor answered (false: running without a monitor, or stopped).
    pub monitor: bool,
}

/// Finds out a container's state: asks its monitor; without an answer, checks whether
/// the recorded init still runs; otherwise it is stopped, and what a killed monitor left
/// (socket, run.json, an empty cgroup) is cleaned up.
pub fn observe(dir: &ContainerDir) -> Observed {
    if let Ok(monitor::Response::Status { state, run }) =
        monitor::request(&dir.monitor_socket(), &monitor::Request::Status)
    {
        return Observed {
            state,
            run,
            monitor: true,
        };
    }
    match RunInfo::read(dir) {
        Some(run) if run.init_alive() => Observed {
            state: State::Running,
            run: Some(run),
            monitor: false,
        },
        stale => {
            clean_stale(dir, stale.as_ref());
            Observed {
                state: State::Stopped,
                run: None,
                monitor: false,
            }
        }
    }
}

/// Removes what a monitor that died without cleaning up left behind.
pub fn clean_stale(dir: &ContainerDir, run: Option<&RunInfo>) {
    // A live monitor holds the lock; never clean under it.
    if let Ok(file) = std::fs::File::open(dir.lock()) {
        if sys::socket::try_lock_exclusive(file).is_err() {
            return;
        }
    }
    remove_if_present(&dir.monitor_socket());
    remove_if_present(&dir.run_state());
    // A monitor killed before it could stop its user-mode network stacks left them
    // running; stop them by pid, only if the pid is still the same process.
    for (pid, start_time) in run.map(|r| r.net_helpers.as_slice()).unwrap_or(&[]) {
        crate::net::usermode::stop_by_pid(*pid, *start_time);
    }
    if let Some(path) = run.and_then(|r| r.cgroup.as_ref()) {
        let Ok(cg) = crate::cgroup::ContainerCgroup::open(path) else {
            return;
        };
        if !cg.pids().is_empty() {
            return;
        }
        let caller = super::Caller::current();
        let map = crate::config::load(&dir.config())
            .map_err(super::ContainerError::from)
            .and_then(|cfg| super::create::container_idmap(&cfg, &caller));
        match map {
            Ok(map) => super::start::release_cgroup(&cg, &map, &caller),
            Err(e) => tracing::warn!(?path, %e, "stale cgroup not removed"),
        }
    }
}

/// Removes the monitor's socket and `run.json`; called by the monitor itself (which
/// holds the lock) once init has ended.
pub fn clean_stale_unlocked(dir: &ContainerDir) {
    remove_if_present(&dir.monitor_socket());
    remove_if_present(&dir.run_state());
}

fn remove_if_present(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(?path, %e, "cannot remove stale file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in [
            State::Stopped,
            State::Starting,
            State::Running,
            State::Stopping,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("running"), Some(State::Running));
        assert_eq!(State::parse("FROZEN"), None);
    }

    #[test]
    fn a_dead_init_is_not_alive() {
        let run = RunInfo {
            init_pid: i32::MAX - 1,
            init_start_time: 1,
            userns_inode: 1,
            monitor_pid: 1,
            started_at: 0,
            cgroup: None,
            halt_signal: 15,
            net_helpers: Vec::new(),
        };
        assert!(!run.init_alive());
    }
}
