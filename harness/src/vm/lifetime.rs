//! Process lifetime of the QEMUs this harness starts.
//!
//! Three layers make sure no QEMU outlives its test:
//! 1. [`super::Vm`]'s `Drop` kills its QEMU by pid (the child is never reaped before that, so
//!    the pid cannot have been reused) and removes its work files;
//! 2. a global registry of live QEMU pids, which [`install_signal_cleanup`] kills on SIGINT or
//!    SIGTERM before exiting with 130 or 143;
//! 3. QEMU is started through `setpriv --pdeathsig KILL` (util-linux), so the kernel kills it
//!    when the harness dies abruptly (SIGKILL, abort). The parent-death signal fires when the
//!    *thread* that forked the child exits, and tokio's blocking threads come and go, so every
//!    QEMU is forked from one dedicated spawner thread that lives as long as the process.
//!    This needs no `unsafe` `pre_exec` in the harness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Live QEMU pids and the work files to remove when they are killed by the signal handler.
fn registry() -> &'static Mutex<BTreeMap<u32, Vec<PathBuf>>> {
    static PIDS: OnceLock<Mutex<BTreeMap<u32, Vec<PathBuf>>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ulxc-qemu-spawner".into())
            .spawn(move || {
                // Lives until the process ends: the sender is in a static and never dropped.
                for (mut cmd, reply) in rx {
                    let child = cmd.spawn();
                    if let Ok(c) = &child {
                        register(c.id());
                    }
                    let _ = reply.send(child);
                }
            })
            .expect("spawning the QEMU spawner thread");
        Mutex::new(tx)
    })
}

/// Wraps `program args` so that the child gets SIGKILL when its parent thread dies.
pub fn with_pdeathsig(program: &str, args: &[String]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg("--pdeathsig")
        .arg("KILL")
        .arg("--")
        .arg(program)
        .args(args);
    cmd
}

/// Spawns `cmd` from the long-lived spawner thread and registers its pid.
pub fn spawn_registered(cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the QEMU spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the QEMU spawner thread did not answer"))?
}

/// Adds a pid to the registry of live QEMUs.
pub fn register(pid: u32) {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(pid)
        .or_default();
}

/// Records the work files (overlay, sockets) of a registered QEMU, removed by the signal
/// handler after it kills that QEMU.
pub fn set_work_files(pid: u32, files: Vec<PathBuf>) {
    if let Some(entry) = registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&pid)
    {
        *entry = files;
    }
}

/// Removes a pid from the registry (after it was reaped).
pub fn unregister(pid: u32) {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
}

/// The pids of every QEMU this process started and has not reaped yet.
pub fn live_pids() -> Vec<u32> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect()
}

/// Sends SIGKILL to every registered QEMU (they stay registered until reaped).
pub fn kill_all_registered() {
    for pid in live_pids() {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if let Err(err) = kill(Pid::from_raw(raw), Signal::SIGKILL) {
            tracing::debug!(pid, %err, "killing a registered QEMU");
        }
    }
}

/// Whether `/proc/PID` exists and is not a zombie (used by the orphan tests).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Installs SIGINT/SIGTERM handling for the whole process: kill every QEMU this process
/// started (the registry), then exit with 130 (SIGINT) or 143 (SIGTERM). Idempotent; works
/// with or without a tokio runtime (it runs its own on a small thread).
pub fn install_signal_cleanup() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("ulxc-signal-cleanup".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        tracing::error!(%err, "no runtime for the signal handler");
                        return;
                    }
                };
                rt.block_on(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        tracing::error!("could not install SIGINT/SIGTERM handlers");
                        return;
                    };
                    let _ = ready_tx.send(());
                    let code = tokio::select! {
                        _ = int.recv() => 130,
                        _ = term.recv() => 143,
                    };
                    let pids = live_pids();
                    tracing::warn!(?pids, code, "signal received: killing the harness's QEMUs");
                    kill_all_registered();
                    #[expect(clippy::exit, reason = "the documented exit on SIGINT/SIGTERM")]
                    std::process::exit(code);
                });
            });
        if spawned.is_ok() {
            // Wait until the handlers are in place so a signal right after this call is seen.
            let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_children_are_registered_and_killable() {
        let child = spawn_registered(with_pdeathsig("sleep", &["30".to_string()])).unwrap();
        let pid = child.id();
        let mut child = child;
        assert!(live_pids().contains(&pid));
        assert!(pid_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        unregister(pid);
        assert!(!pid_alive(pid));
        assert!(!live_pids().contains(&pid));
    }

    #[test]
    fn pid_alive_of_a_missing_pid() {
        assert!(!pid_alive(u32::MAX - 1));
        assert!(pid_alive(std::process::id()));
    }
}
