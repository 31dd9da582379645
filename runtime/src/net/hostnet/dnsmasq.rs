//! The DHCP/DNS server on the bridge: a real dnsmasq with LXC's flags, its pid file and
//! lease file in the run dir, running as an unprivileged user, stopped by its verified
//! pid (never a pid that is not this dnsmasq: the pid is opened as a pidfd, its command
//! line checked for dnsmasq and our pid file, then signalled through the pidfd).

use super::settings::Settings;
use super::tool::{self, ToolError};
use crate::sys::process::{pidfd_open, pidfd_send_signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Users dnsmasq may run as, in LXC's order of preference.
const USERS: [&str; 3] = ["lxc-dnsmasq", "dnsmasq", "nobody"];
/// How long dnsmasq gets to end after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the pid file after dnsmasq's start returned.
const PID_FILE_WAIT: Duration = Duration::from_secs(3);

/// A dnsmasq problem.
#[derive(Debug, thiserror::Error)]
pub enum DnsmasqError {
    /// dnsmasq could not start.
    #[error("dnsmasq did not start")]
    Start(#[source] ToolError),
    /// It started but left no usable pid file.
    #[error("dnsmasq started but {path} holds no live dnsmasq pid: {why}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// No user to run it as.
    #[error("none of the users {} exists to run dnsmasq as; create one", USERS.join(", "))]
    NoUser,
    /// Signalling or waiting failed.
    #[error("cannot stop dnsmasq (pid {pid}): {why}")]
    Stop {
        /// Its pid.
        pid: i32,
        /// What went wrong.
        why: String,
    },
}

/// The pid file of the dnsmasq of this run dir.
pub fn pid_file(run_dir: &Path) -> PathBuf {
    run_dir.join("dnsmasq.pid")
}

/// The lease file of the dnsmasq of this run dir and bridge.
pub fn lease_file(run_dir: &Path, bridge: &str) -> PathBuf {
    run_dir.join(format!("dnsmasq.{bridge}.leases"))
}

/// The user dnsmasq drops to: the first of LXC's choices that exists.
pub fn user() -> Result<String, DnsmasqError> {
    USERS
        .iter()
        .find(|name| matches!(nix::unistd::User::from_name(name), Ok(Some(_))))
        .map(|name| (*name).to_string())
        .ok_or(DnsmasqError::NoUser)
}

/// dnsmasq's arguments: LXC's flags with the pid and lease files in `run_dir`.
pub fn arguments(settings: &Settings, run_dir: &Path, user: &str) -> Vec<String> {
    let confile = settings
        .dhcp_confile
        .as_ref()
        .map_or_else(|| "/dev/null".to_string(), |p| p.display().to_string());
    let mut args = vec![format!("--conf-file={confile}")];
    if let Some(domain) = &settings.domain {
        args.extend([
            "-s".into(),
            domain.clone(),
            "-S".into(),
            format!("/{domain}/"),
        ]);
    }
    if !settings.dhcp_ping {
        args.push("--no-ping".into());
    }
    args.extend([
        "-u".into(),
        user.to_string(),
        "--strict-order".into(),
        "--bind-interfaces".into(),
        format!("--pid-file={}", pid_file(run_dir).display()),
        "--listen-address".into(),
        settings.addr.to_string(),
        "--dhcp-range".into(),
        settings.dhcp_range.to_string(),
        format!("--dhcp-lease-max={}", settings.dhcp_max),
        "--dhcp-no-override".into(),
        "--except-interface=lo".into(),
        format!("--interface={}", settings.bridge),
        format!(
            "--dhcp-leasefile={}",
            lease_file(run_dir, &settings.bridge).display()
        ),
        "--dhcp-authoritative".into(),
    ]);
    if let Some(v6) = &settings.ipv6 {
        args.extend([
            format!("--dhcp-range={},ra-only", v6.addr),
            "--listen-address".into(),
            v6.addr.to_string(),
        ]);
    }
    args
}

/// Whether `pid` is alive (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is a live dnsmasq using the pid file of `run_dir`.
pub fn is_ours(pid: i32, run_dir: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_dnsmasq = args
        .first()
        .is_some_and(|argv0| argv0.rsplit(|b| *b == b'/').next() == Some(b"dnsmasq"));
    let ours = format!("--pid-file={}", pid_file(run_dir).display());
    is_dnsmasq && args.contains(&ours.as_bytes())
}

/// The pid in the pid file of `run_dir`, if the file holds one.
pub fn recorded_pid(run_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file(run_dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid of our running dnsmasq, if there is one.
pub fn running(run_dir: &Path) -> Option<i32> {
    recorded_pid(run_dir).filter(|pid| is_ours(*pid, run_dir))
}

/// Whether the live dnsmasq `pid` runs with exactly the arguments `settings` ask for
/// now (otherwise a changed setting needs a restart).
pub fn runs_with(pid: i32, settings: &Settings, run_dir: &Path) -> bool {
    let Ok(user) = user() else {
        return false;
    };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let running: Vec<&[u8]> = cmdline
        .strip_suffix(&[0])
        .unwrap_or(&cmdline)
        .split(|b| *b == 0)
        .skip(1)
        .collect();
    let wanted = arguments(settings, run_dir, &user);
    running.len() == wanted.len()
        && running
            .iter()
            .zip(&wanted)
            .all(|(have, want)| *have == want.as_bytes())
}

/// Starts dnsmasq (it daemonizes; its exit status reports configuration and bind
/// errors) and returns the daemon's pid.
pub fn start(settings: &Settings, run_dir: &Path) -> Result<i32, DnsmasqError> {
    let user = user()?;
    let args = arguments(settings, run_dir, &user);
    let _ = std::fs::remove_file(pid_file(run_dir));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tool::run("dnsmasq", &refs).map_err(DnsmasqError::Start)?;
    let deadline = Instant::now() + PID_FILE_WAIT;
    loop {
        if let Some(pid) = running(run_dir) {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(DnsmasqError::PidFile {
                path: pid_file(run_dir),
                why: match recorded_pid(run_dir) {
                    Some(pid) => format!("pid {pid} is not a running dnsmasq of this run dir"),
                    None => "no pid".into(),
                },
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops our dnsmasq if it runs (SIGTERM, then SIGKILL after a grace period) and
/// removes its pid file. The pid comes from the pid file, else from `known_pid` (the
/// state file's record, for a pid file someone removed). A pid that is not our dnsmasq
/// is never signalled.
pub fn stop(run_dir: &Path, known_pid: Option<i32>) -> Result<Option<i32>, DnsmasqError> {
    let Some(pid) = recorded_pid(run_dir).or(known_pid) else {
        return Ok(None);
    };
    let stop_err = |why: String| DnsmasqError::Stop { pid, why };
    // Open the pidfd first, then check: the pidfd keeps naming the checked process
    // even if the pid were reused afterwards.
    let Ok(pidfd) = pidfd_open(Pid::from_raw(pid)) else {
        let _ = std::fs::remove_file(pid_file(run_dir));
        return Ok(None);
    };
    if !is_ours(pid, run_dir) {
        tracing::warn!(
            pid,
            "the pid file names a process that is not our dnsmasq; left alone"
        );
        let _ = std::fs::remove_file(pid_file(run_dir));
        return Ok(None);
    }
    use std::os::fd::AsFd;
    pidfd_send_signal(pidfd.as_fd(), libc::SIGTERM)
        .map_err(|e| stop_err(format!("SIGTERM: {e}")))?;
    let deadline = Instant::now() + TERM_GRACE;
    while alive(pid) {
        if Instant::now() > deadline {
            tracing::warn!(pid, "dnsmasq ignored SIGTERM; killing it");
            let _ = pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let kill_deadline = Instant::now() + TERM_GRACE;
            while alive(pid) {
                if Instant::now() > kill_deadline {
                    return Err(stop_err("it survived SIGKILL".into()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(pid_file(run_dir));
    Ok(Some(pid))
}

/// How many leases the lease file holds (0 when there is none).
pub fn lease_count(run_dir: &Path, bridge: &str) -> usize {
    std::fs::read_to_string(lease_file(run_dir, bridge))
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("duid "))
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_lxc() {
        let s =
            Settings::parse_str(Path::new("x"), "LXC_DOMAIN=lxc\nLXC_DHCP_PING=false\n").unwrap();
        let args = arguments(&s, Path::new("/run/ulxc-net"), "nobody").join(" ");
        assert_eq!(
            args,
            "--conf-file=/dev/null -s lxc -S /lxc/ --no-ping -u nobody --strict-order \
             --bind-interfaces --pid-file=/run/ulxc-net/dnsmasq.pid --listen-address 10.0.3.1 \
             --dhcp-range 10.0.3.2,10.0.3.254 --dhcp-lease-max=253 --dhcp-no-override \
             --except-interface=lo --interface=lxcbr0 \
             --dhcp-leasefile=/run/ulxc-net/dnsmasq.lxcbr0.leases --dhcp-authoritative"
        );
    }
}
