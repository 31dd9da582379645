//! VMs: one QEMU process per [`Vm`], with its qcow2 overlay, serial log, QMP socket and SSH
//! sessions, from start (cold boot, or restore of a saved ready state) to teardown.
//!
//! Teardown order, also on panic (`Drop`): SSH sessions are dropped, QEMU is killed by pid
//! (the child is not reaped before, so the pid cannot be reused), the overlay and QMP socket
//! are removed. [`Vm::shutdown`] is the graceful path: ACPI powerdown with a deadline, then
//! QMP `quit`, then SIGKILL. The serial log and QEMU's stderr (`qemu.stderr`) stay in the
//! work directory for the runner's artifacts. See [`lifetime`] for the pid registry, the
//! SIGINT/SIGTERM cleanup and the parent-death signal.

pub mod accel;
pub mod args;
pub mod console;
pub mod lifetime;
pub mod snapshot;
#[cfg(test)]
mod vm_tests;

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use russh::keys::PrivateKey;

pub use self::accel::{detect_accel, Accel};
use self::args::{BootMode, LaunchPaths};
use self::console::ConsoleWatch;
pub use self::lifetime::install_signal_cleanup;
use self::snapshot::{SaveLock, SnapshotPaths};
use crate::qmp::{Qmp, QmpError};
pub use crate::ssh::ExecOutput;
use crate::ssh::{Session, SshError};

/// Environment variable scaling every harness deadline (a float, e.g. `2.5`).
pub const TIMEOUT_MULTIPLIER_ENV: &str = "ULXC_HARNESS_TIMEOUT_MULTIPLIER";

/// The user the harness logs in as to wait for readiness and set the clock.
pub const ROOT_USER: &str = "root";

/// A `guestfwd`: the guest connects to `guest_addr` and reaches `host` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestFwd {
    /// Guest-side address in QEMU's user network, e.g. `10.0.2.100:80`.
    pub guest_addr: SocketAddrV4,
    /// Host-side service, e.g. `127.0.0.1:PORT`.
    pub host: SocketAddr,
}

/// Deadlines of a VM. Under TCG, boot/shutdown/snapshot waits are multiplied by
/// `tcg_multiplier`; every wait is multiplied by `$ULXC_HARNESS_TIMEOUT_MULTIPLIER`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// From QEMU start to SSH ready.
    pub boot: Duration,
    /// Default per-command deadline for callers (the runner); `exec` takes its own.
    pub command: Duration,
    /// Graceful powerdown before QMP `quit` and SIGKILL.
    pub shutdown: Duration,
    /// Factor for waits under TCG.
    pub tcg_multiplier: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            boot: Duration::from_secs(40),
            command: Duration::from_secs(300),
            shutdown: Duration::from_secs(10),
            tcg_multiplier: 3.0,
        }
    }
}

/// The multiplier from `$ULXC_HARNESS_TIMEOUT_MULTIPLIER` (1 when unset or invalid).
pub fn env_timeout_multiplier() -> f64 {
    std::env::var(TIMEOUT_MULTIPLIER_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|m| m.is_finite() && *m > 0.0)
        .unwrap_or(1.0)
}

impl Timeouts {
    /// `d` scaled for `accel` and the environment multiplier.
    pub fn scale(&self, d: Duration, accel: Accel) -> Duration {
        let tcg = match accel {
            Accel::Tcg if self.tcg_multiplier.is_finite() && self.tcg_multiplier > 0.0 => {
                self.tcg_multiplier
            }
            _ => 1.0,
        };
        d.mul_f64(tcg * env_timeout_multiplier())
    }
}

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Short name (logs, QEMU `-name`).
    pub name: String,
    /// The read-only qcow2 base image.
    pub disk_base: PathBuf,
    /// Kernel for direct boot.
    pub kernel: PathBuf,
    /// Its initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (`panic=-1` is added unless a `panic=` is present).
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Guest vCPUs.
    pub cpus: u32,
    /// Accelerator; `None` = [`detect_accel`].
    pub accel: Option<Accel>,
    /// Guest-to-host forwards for harness services.
    pub guestfwds: Vec<GuestFwd>,
    /// Per-VM directory: `overlay.qcow2`, `serial.log`, `qmp.sock`, `qemu.stderr`.
    pub work_dir: PathBuf,
    /// OpenSSH ed25519 private key accepted by every guest user.
    pub ssh_private_key: PathBuf,
    /// Where saved ready states of this image+kernel live; `None` = always cold boot.
    pub snapshot_cache: Option<PathBuf>,
    /// Deadlines.
    pub timeouts: Timeouts,
}

/// What went wrong with a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file operation in the work or snapshot directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `qemu-img create` failed.
    #[error("qemu-img create of overlay {overlay} over {base} failed: {stderr}")]
    Overlay {
        /// The overlay path.
        overlay: PathBuf,
        /// The base image.
        base: PathBuf,
        /// qemu-img's stderr (or the spawn error).
        stderr: String,
    },
    /// QEMU could not be started.
    #[error("cannot start {binary} (install qemu-system-x86 from bookworm-backports): {source}")]
    Spawn {
        /// The binary.
        binary: &'static str,
        /// The spawn error.
        source: std::io::Error,
    },
    /// QEMU exited when it should be running.
    #[error("QEMU for VM {name} exited ({status}){}; stderr:\n{stderr}\nlast serial console lines:\n{serial}", problem.as_ref().map(|p| format!("; guest console shows {p:?}")).unwrap_or_default())]
    QemuExited {
        /// VM name.
        name: String,
        /// Exit status.
        status: String,
        /// The first problem line on the serial console (panic, oops, ...), if any.
        problem: Option<String>,
        /// QEMU's stderr.
        stderr: Box<str>,
        /// Tail of the serial log.
        serial: Box<str>,
    },
    /// The QMP socket did not appear.
    #[error("QMP socket {path} did not appear within {waited:?}; QEMU stderr:\n{stderr}")]
    QmpSocket {
        /// The socket path.
        path: PathBuf,
        /// How long it was awaited.
        waited: Duration,
        /// QEMU's stderr.
        stderr: String,
    },
    /// A QMP command failed.
    #[error("QMP on VM {name}: {source}")]
    Qmp {
        /// VM name.
        name: String,
        /// The QMP error.
        source: QmpError,
    },
    /// SSH failed (including "not ready before the boot deadline").
    #[error("SSH on VM {name}: {source}\nlast serial console lines:\n{serial}")]
    Ssh {
        /// VM name.
        name: String,
        /// The SSH error.
        source: Box<SshError>,
        /// Tail of the serial log.
        serial: String,
    },
    /// The guest console showed a kernel panic, oops, BUG, WARNING or an emergency shell.
    #[error("VM {name}: guest console shows a problem: {line:?} (see {serial_log})")]
    GuestProblem {
        /// VM name.
        name: String,
        /// The console line.
        line: String,
        /// The serial log path.
        serial_log: PathBuf,
    },
    /// The VM does not run any more (after shutdown or a failed reboot).
    #[error("VM {name} is not running")]
    NotRunning {
        /// VM name.
        name: String,
    },
    /// A guest reboot did not end the QEMU process in time.
    #[error("VM {name}: guest did not go down within {waited:?} after reboot was requested")]
    RebootTimeout {
        /// VM name.
        name: String,
        /// How long it was awaited.
        waited: Duration,
    },
}

/// A VM left running by [`Vm::keep`]: what to print so a developer can enter it.
#[derive(Debug)]
pub struct KeptVm {
    /// VM name.
    pub name: String,
    /// QEMU's pid.
    pub pid: u32,
    /// Host port forwarded to the guest's SSH.
    pub ssh_port: u16,
    /// Ready-to-paste ssh command (as root).
    pub ssh_command: String,
    /// QMP socket (e.g. for `socat - UNIX-CONNECT:...`).
    pub qmp_socket: PathBuf,
    /// Serial console log.
    pub serial_log: PathBuf,
    /// The work directory to delete afterwards.
    pub work_dir: PathBuf,
    child: Option<Child>,
}

impl KeptVm {
    /// How to stop it.
    pub fn stop_hint(&self) -> String {
        format!(
            "kill {} (and rm -r {}); it also ends when ulxc-harness exits",
            self.pid,
            self.work_dir.display()
        )
    }

    /// Blocks until QEMU exits (stopped with `kill PID`, a guest poweroff, or Ctrl-C).
    pub async fn wait(mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        lifetime::unregister(self.pid);
        Ok(Some(status))
    }
}

impl fmt::Display for KeptVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "VM {} kept running (QEMU pid {})", self.name, self.pid)?;
        writeln!(f, "  enter it:  {}", self.ssh_command)?;
        writeln!(f, "  console:   {}", self.serial_log.display())?;
        writeln!(f, "  QMP:       {}", self.qmp_socket.display())?;
        write!(f, "  stop it:   {}", self.stop_hint())
    }
}

/// Owns a freshly spawned QEMU until it is handed over: kills and reaps it on drop.
struct ChildGuard {
    child: Option<Child>,
    pid: u32,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            lifetime::unregister(self.pid);
        }
    }
}

/// One running QEMU process and its control channels.
struct Instance {
    child: Child,
    pid: u32,
    qmp: Qmp,
    ssh_port: u16,
    console: ConsoleWatch,
}

/// A running VM. See the module doc for teardown.
pub struct Vm {
    spec: VmSpec,
    accel: Accel,
    paths: LaunchPaths,
    stderr_path: PathBuf,
    key: Arc<PrivateKey>,
    inst: Option<Instance>,
    sessions: tokio::sync::Mutex<HashMap<String, Arc<Session>>>,
    restored: bool,
    ready_after: Duration,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.spec.name)
            .field("accel", &self.accel)
            .field("pid", &self.pid())
            .field("ssh_port", &self.inst.as_ref().map(|i| i.ssh_port))
            .field("restored", &self.restored)
            .finish_non_exhaustive()
    }
}

/// Picks a free TCP port on 127.0.0.1 (bind to port 0, read it, release it). Another process
/// may take it before QEMU binds it: [`Vm::start`] retries QEMU with a new port then.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Whether QEMU's stderr says the SSH hostfwd could not bind its port.
pub fn is_hostfwd_bind_failure(stderr: &str) -> bool {
    stderr.contains("host forwarding rule") || stderr.contains("hostfwd")
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VmError {
    let path = path.to_path_buf();
    move |source| VmError::Io { what, path, source }
}

/// Polls `child` until it has exited or `d` has passed; true if it exited.
async fn wait_exit(child: &mut Child, d: Duration) -> bool {
    let start = Instant::now();
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        if start.elapsed() >= d {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn qemu_version_cached() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(snapshot::qemu_version)
}

fn now_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Vm {
    /// Boots the VM (or restores the saved ready state of its image+kernel), waits until SSH
    /// answers and returns it. On the first cold boot with a `snapshot_cache`, the ready state
    /// is saved for the next VMs.
    pub async fn start(spec: VmSpec) -> Result<Vm, VmError> {
        let accel = spec.accel.unwrap_or_else(detect_accel);
        std::fs::create_dir_all(&spec.work_dir).map_err(io_err("creating", &spec.work_dir))?;
        let paths = LaunchPaths {
            overlay: spec.work_dir.join("overlay.qcow2"),
            serial_log: spec.work_dir.join("serial.log"),
            qmp_socket: spec.work_dir.join("qmp.sock"),
        };
        // The console log is appended to across reboots: start it empty.
        let _ = std::fs::remove_file(&paths.serial_log);
        let key = crate::ssh::load_key(&spec.ssh_private_key).map_err(|source| VmError::Ssh {
            name: spec.name.clone(),
            source: Box::new(source),
            serial: String::new(),
        })?;
        let mut vm = Vm {
            stderr_path: spec.work_dir.join("qemu.stderr"),
            spec,
            accel,
            paths,
            key,
            inst: None,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            restored: false,
            ready_after: Duration::ZERO,
        };
        let started = Instant::now();
        let snap = vm.spec.snapshot_cache.clone().map(|cache| {
            let key = snapshot::snapshot_key(&vm.spec, accel, qemu_version_cached());
            (cache, key)
        });
        if let Some((cache, key)) = &snap {
            let sp = SnapshotPaths::new(cache, key);
            if sp.is_complete() {
                match vm.restore(&sp).await {
                    Ok(()) => {
                        vm.restored = true;
                        vm.ready_after = started.elapsed();
                        tracing::info!(vm = %vm.spec.name, ready_after = ?vm.ready_after, "restored from snapshot");
                        return Ok(vm);
                    }
                    Err(err) => {
                        tracing::warn!(vm = %vm.spec.name, %err, dir = ?sp.dir, "restoring the saved state failed: removing it and booting cold");
                        vm.kill_instance();
                        sp.remove();
                    }
                }
            }
        }
        vm.cold_boot().await?;
        vm.ready_after = started.elapsed();
        tracing::info!(vm = %vm.spec.name, accel = %accel, ready_after = ?vm.ready_after, "cold boot ready");
        if let Some((cache, key)) = &snap {
            vm.save_snapshot(cache, key).await?;
        }
        Ok(vm)
    }

    async fn cold_boot(&mut self) -> Result<(), VmError> {
        let overlay = self.paths.overlay.clone();
        let _ = std::fs::remove_file(&overlay);
        let base = std::fs::canonicalize(&self.spec.disk_base)
            .map_err(io_err("reading base image", &self.spec.disk_base))?;
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&base)
            .arg(&overlay)
            .output();
        let failed = |stderr: String| VmError::Overlay {
            overlay: overlay.clone(),
            base: base.clone(),
            stderr,
        };
        match out {
            Err(e) => return Err(failed(e.to_string())),
            Ok(o) if !o.status.success() => {
                return Err(failed(String::from_utf8_lossy(&o.stderr).into_owned()))
            }
            Ok(_) => {}
        }
        self.launch(BootMode::Cold).await?;
        self.wait_ssh_ready(
            self.spec
                .timeouts
                .scale(self.spec.timeouts.boot, self.accel),
        )
        .await
    }

    async fn restore(&mut self, sp: &SnapshotPaths) -> Result<(), VmError> {
        let t0 = Instant::now();
        std::fs::copy(sp.overlay(), &self.paths.overlay)
            .map_err(io_err("copying the saved overlay", &sp.overlay()))?;
        self.launch(BootMode::Incoming).await?;
        tracing::debug!(vm = %self.spec.name, launched = ?t0.elapsed(), "restore: QEMU up");
        let qmp_err = |name: &str| {
            let name = name.to_string();
            move |source| VmError::Qmp { name, source }
        };
        let name = self.spec.name.clone();
        let deadline = self
            .spec
            .timeouts
            .scale(Duration::from_secs(20), self.accel);
        {
            let qmp = &self.instance()?.qmp;
            qmp.enable_mapped_ram().await.map_err(qmp_err(&name))?;
            qmp.migrate_incoming_file(&sp.state())
                .await
                .map_err(qmp_err(&name))?;
            qmp.wait_migration(deadline).await.map_err(qmp_err(&name))?;
            if qmp.query_status().await.map_err(qmp_err(&name))? != "running" {
                qmp.cont().await.map_err(qmp_err(&name))?;
            }
        }
        let loaded = t0.elapsed();
        self.wait_ssh_ready(
            self.spec
                .timeouts
                .scale(Duration::from_secs(15), self.accel),
        )
        .await?;
        let ssh = t0.elapsed();
        self.set_guest_clock().await?;
        tracing::debug!(vm = %name, ?loaded, ?ssh, total = ?t0.elapsed(), "restore timings");
        Ok(())
    }

    /// Sets the guest's wall clock to the host's (after a restore the guest keeps the clock of
    /// the moment it was saved).
    async fn set_guest_clock(&self) -> Result<(), VmError> {
        let now = now_epoch();
        let cmd = format!(
            "date -u -s @{}.{:09} >/dev/null",
            now.as_secs(),
            now.subsec_nanos()
        );
        let out = self.exec(ROOT_USER, &cmd, Duration::from_secs(30)).await?;
        if out.status != 0 {
            tracing::warn!(vm = %self.spec.name, status = out.status, stderr = %out.stderr_text(), "setting the guest clock failed");
        }
        Ok(())
    }

    async fn save_snapshot(&mut self, cache: &Path, key: &str) -> Result<(), VmError> {
        let sp = SnapshotPaths::new(cache, key);
        let lock = match SaveLock::try_acquire(cache, key) {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::debug!(vm = %self.spec.name, "another VM is saving this snapshot");
                return Ok(());
            }
            Err(err) => {
                tracing::warn!(vm = %self.spec.name, %err, "cannot lock the snapshot cache: not saving");
                return Ok(());
            }
        };
        if sp.is_complete() {
            return Ok(());
        }
        let t0 = Instant::now();
        // No open SSH connection should be part of the saved state.
        self.close_sessions().await;
        let staging = sp.staging();
        let _ = std::fs::remove_dir_all(&staging);
        let result = self.save_into(&staging).await;
        let result = result.and_then(|()| {
            snapshot::publish(&staging, &sp).map_err(io_err("publishing snapshot", &sp.dir))
        });
        drop(lock);
        // Whatever happened, the VM must run on.
        let resumed = match self.instance() {
            Ok(inst) => inst.qmp.cont().await,
            Err(e) => return Err(e),
        };
        match result {
            Ok(()) => {
                tracing::info!(vm = %self.spec.name, dir = ?sp.dir, took = ?t0.elapsed(), "ready state saved");
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&staging);
                tracing::warn!(vm = %self.spec.name, %err, "saving the ready state failed: later VMs boot cold");
            }
        }
        resumed.map_err(|source| VmError::Qmp {
            name: self.spec.name.clone(),
            source,
        })?;
        self.wait_ssh_ready(
            self.spec
                .timeouts
                .scale(Duration::from_secs(20), self.accel),
        )
        .await
    }

    async fn save_into(&mut self, staging: &Path) -> Result<(), VmError> {
        std::fs::create_dir_all(staging).map_err(io_err("creating", staging))?;
        let name = self.spec.name.clone();
        let deadline = self
            .spec
            .timeouts
            .scale(Duration::from_secs(60), self.accel);
        let qmp = &self.instance()?.qmp;
        let q = |source| VmError::Qmp {
            name: name.clone(),
            source,
        };
        qmp.stop().await.map_err(q)?;
        qmp.enable_mapped_ram().await.map_err(q)?;
        qmp.migrate_to_file(&staging.join(snapshot::STATE_FILE))
            .await
            .map_err(q)?;
        qmp.wait_migration(deadline).await.map_err(q)?;
        // The guest is stopped and the block layer flushed: the overlay matches the saved RAM.
        let dst = staging.join(snapshot::OVERLAY_FILE);
        std::fs::copy(&self.paths.overlay, &dst).map_err(io_err("copying overlay to", &dst))?;
        Ok(())
    }

    /// Starts QEMU (retrying with a new port if the SSH hostfwd cannot bind), waits for the
    /// QMP socket and connects to it.
    async fn launch(&mut self, mode: BootMode) -> Result<(), VmError> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _ = std::fs::remove_file(&self.paths.qmp_socket);
            let port = free_port().map_err(io_err("picking a port on", Path::new("127.0.0.1")))?;
            let argv = args::build_args(&self.spec, self.accel, port, &self.paths, mode);
            tracing::debug!(vm = %self.spec.name, ?argv, "starting QEMU");
            let stderr = std::fs::File::create(&self.stderr_path)
                .map_err(io_err("creating", &self.stderr_path))?;
            let mut cmd = lifetime::with_pdeathsig(args::QEMU_BINARY, &argv);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr));
            let child = lifetime::spawn_registered(cmd).map_err(|source| VmError::Spawn {
                binary: args::QEMU_BINARY,
                source,
            })?;
            lifetime::set_work_files(
                child.id(),
                vec![self.paths.overlay.clone(), self.paths.qmp_socket.clone()],
            );
            let serial_offset = std::fs::metadata(&self.paths.serial_log)
                .map(|m| m.len())
                .unwrap_or(0);
            match self.connect_qmp(child, port, serial_offset).await {
                Ok(inst) => {
                    self.inst = Some(inst);
                    return Ok(());
                }
                Err(VmError::QemuExited { stderr, .. })
                    if is_hostfwd_bind_failure(&stderr) && attempt < ATTEMPTS =>
                {
                    tracing::info!(vm = %self.spec.name, port, "SSH port was taken: retrying QEMU with another");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn exited_error(&self, status: String) -> VmError {
        VmError::QemuExited {
            name: self.spec.name.clone(),
            status,
            problem: console::first_problem(
                &std::fs::read_to_string(&self.paths.serial_log).unwrap_or_default(),
            ),
            stderr: std::fs::read_to_string(&self.stderr_path)
                .unwrap_or_default()
                .into(),
            serial: console::tail_lines(&self.paths.serial_log, 30).into(),
        }
    }

    async fn connect_qmp(
        &self,
        child: Child,
        ssh_port: u16,
        serial_offset: u64,
    ) -> Result<Instance, VmError> {
        let pid = child.id();
        // Kills QEMU if this future fails or is dropped (e.g. a caller's timeout) before the
        // child is handed to the Instance.
        let mut guard = ChildGuard {
            child: Some(child),
            pid,
        };
        let waited = Instant::now();
        let deadline = self
            .spec
            .timeouts
            .scale(Duration::from_secs(10), self.accel);
        loop {
            let Some(child) = guard.child.as_mut() else {
                return Err(VmError::NotRunning {
                    name: self.spec.name.clone(),
                });
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    guard.child = None;
                    lifetime::unregister(pid);
                    return Err(self.exited_error(status.to_string()));
                }
                Ok(None) => {}
                Err(e) => return Err(io_err("waiting for QEMU", &self.stderr_path)(e)),
            }
            if self.paths.qmp_socket.exists() {
                match Qmp::connect(&self.paths.qmp_socket).await {
                    Ok(qmp) => {
                        if let Some(child) = guard.child.take() {
                            let console =
                                ConsoleWatch::start(self.paths.serial_log.clone(), serial_offset);
                            return Ok(Instance {
                                child,
                                pid,
                                qmp,
                                ssh_port,
                                console,
                            });
                        }
                    }
                    Err(err) => tracing::debug!(%err, "QMP not accepting yet"),
                }
            }
            if waited.elapsed() > deadline {
                return Err(VmError::QmpSocket {
                    path: self.paths.qmp_socket.clone(),
                    waited: waited.elapsed(),
                    stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn instance(&self) -> Result<&Instance, VmError> {
        self.inst.as_ref().ok_or_else(|| VmError::NotRunning {
            name: self.spec.name.clone(),
        })
    }

    /// Fails if QEMU has exited or the console shows a problem.
    fn check_alive(&mut self) -> Result<(), VmError> {
        let name = self.spec.name.clone();
        let inst = self
            .inst
            .as_mut()
            .ok_or(VmError::NotRunning { name: name.clone() })?;
        if let Some(line) = inst.console.problem() {
            return Err(VmError::GuestProblem {
                name,
                line,
                serial_log: self.paths.serial_log.clone(),
            });
        }
        match inst.child.try_wait() {
            Ok(Some(status)) => {
                lifetime::unregister(inst.pid);
                let e = self.exited_error(status.to_string());
                self.inst = None;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    async fn wait_ssh_ready(&mut self, deadline: Duration) -> Result<(), VmError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.instance()?.ssh_port));
        let key = self.key.clone();
        let name = self.spec.name.clone();
        let res =
            Session::connect_with_retry(addr, ROOT_USER, key, deadline, || self.check_alive())
                .await?;
        match res {
            Ok(session) => {
                self.sessions
                    .get_mut()
                    .insert(ROOT_USER.to_string(), Arc::new(session));
                Ok(())
            }
            Err(source) => Err(VmError::Ssh {
                name,
                source: Box::new(source),
                serial: console::tail_lines(&self.paths.serial_log, 30),
            }),
        }
    }

    async fn close_sessions(&self) {
        let mut sessions = self.sessions.lock().await;
        for (_, s) in sessions.drain() {
            s.close().await;
        }
    }

    async fn session(&self, user: &str) -> Result<Arc<Session>, VmError> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(user) {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ssh_port()));
        let ssh_err = |source| VmError::Ssh {
            name: self.spec.name.clone(),
            source: Box::new(source),
            serial: console::tail_lines(&self.paths.serial_log, 30),
        };
        let s = Session::connect_with_retry(
            addr,
            user,
            self.key.clone(),
            self.spec
                .timeouts
                .scale(Duration::from_secs(10), self.accel),
            || self.problem_or_gone(),
        )
        .await?
        .map_err(ssh_err)?;
        let s = Arc::new(s);
        sessions.insert(user.to_string(), s.clone());
        Ok(s)
    }

    /// Like `check_alive` but through `&self` (QEMU's pid is checked through /proc).
    fn problem_or_gone(&self) -> Result<(), VmError> {
        let inst = self.instance()?;
        if let Some(line) = inst.console.problem() {
            return Err(VmError::GuestProblem {
                name: self.spec.name.clone(),
                line,
                serial_log: self.paths.serial_log.clone(),
            });
        }
        if !lifetime::pid_alive(inst.pid) {
            return Err(self.exited_error("gone".to_string()));
        }
        Ok(())
    }

    /// Races `fut` against the console watcher and QEMU's liveness.
    async fn guarded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, VmError>>,
    ) -> Result<T, VmError> {
        let watch = async {
            loop {
                if let Err(e) = self.problem_or_gone() {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            r = fut => r,
            e = watch => Err(e),
        }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The accelerator the VM runs under.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Whether this VM was started from a saved ready state.
    pub fn restored(&self) -> bool {
        self.restored
    }

    /// Time from `start` being called to SSH ready (including any save of a snapshot's
    /// predecessor steps, excluding the save itself).
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// QEMU's pid (None once it has ended).
    pub fn pid(&self) -> Option<u32> {
        self.inst.as_ref().map(|i| i.pid)
    }

    /// Host port forwarded to the guest's port 22 (0 when not running).
    pub fn ssh_port(&self) -> u16 {
        self.inst.as_ref().map(|i| i.ssh_port).unwrap_or(0)
    }

    /// An `ssh` command line that enters the VM as `user`.
    pub fn ssh_command(&self, user: &str) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}@127.0.0.1",
            self.spec.ssh_private_key.display(),
            self.ssh_port(),
            user
        )
    }

    /// Runs a shell command line as `user`; the exit status is in the output (128+N for a
    /// signal). Errors: SSH failure, `timeout` passed, QEMU exited, console problem.
    pub async fn exec(
        &self,
        user: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, VmError> {
        self.guarded(async {
            let s = self.session(user).await?;
            s.exec(command, timeout)
                .await
                .map_err(|source| VmError::Ssh {
                    name: self.spec.name.clone(),
                    source: Box::new(source),
                    serial: console::tail_lines(&self.paths.serial_log, 30),
                })
        })
        .await
    }

    /// Copies a local file to `remote` as `user` and sets its mode.
    pub async fn upload(
        &self,
        user: &str,
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Result<(), VmError> {
        let data = tokio::fs::read(local)
            .await
            .map_err(io_err("reading for upload", local))?;
        self.upload_bytes(user, &data, remote, mode).await
    }

    /// Writes `data` to `remote` as `user` and sets its mode.
    pub async fn upload_bytes(
        &self,
        user: &str,
        data: &[u8],
        remote: &str,
        mode: u32,
    ) -> Result<(), VmError> {
        let timeout = self.spec.timeouts.command;
        self.guarded(async {
            let s = self.session(user).await?;
            s.upload_bytes(data, remote, mode, timeout)
                .await
                .map_err(|source| VmError::Ssh {
                    name: self.spec.name.clone(),
                    source: Box::new(source),
                    serial: String::new(),
                })
        })
        .await
    }

    /// Reboots the guest and waits for SSH again. QEMU runs with `-no-reboot` (so a panic
    /// ends it at once): the guest's reboot ends QEMU, and the harness starts it again on the
    /// same overlay, i.e. with the disk as the guest left it.
    pub async fn reboot(&mut self) -> Result<(), VmError> {
        let detach = "nohup sh -c 'sleep 0.3; systemctl reboot || reboot' >/dev/null 2>&1 &";
        let out = self
            .exec(ROOT_USER, detach, Duration::from_secs(30))
            .await?;
        if out.status != 0 {
            tracing::warn!(vm = %self.spec.name, status = out.status, "reboot command returned non-zero");
        }
        self.close_sessions().await;
        let waited = self
            .spec
            .timeouts
            .scale(self.spec.timeouts.shutdown * 3, self.accel);
        let start = Instant::now();
        loop {
            let inst = self.inst.as_mut().ok_or(VmError::NotRunning {
                name: self.spec.name.clone(),
            })?;
            if let Ok(Some(status)) = inst.child.try_wait() {
                lifetime::unregister(inst.pid);
                tracing::debug!(vm = %self.spec.name, %status, "QEMU ended for the reboot");
                self.inst = None;
                break;
            }
            if start.elapsed() > waited {
                return Err(VmError::RebootTimeout {
                    name: self.spec.name.clone(),
                    waited,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(line) = console::first_problem(
            &std::fs::read_to_string(&self.paths.serial_log).unwrap_or_default(),
        ) {
            return Err(VmError::GuestProblem {
                name: self.spec.name.clone(),
                line,
                serial_log: self.paths.serial_log.clone(),
            });
        }
        self.launch(BootMode::Cold).await?;
        self.wait_ssh_ready(
            self.spec
                .timeouts
                .scale(self.spec.timeouts.boot, self.accel),
        )
        .await
    }

    /// Sets the link of the guest's NIC up or down (QMP `set_link`).
    pub async fn set_link(&self, up: bool) -> Result<(), VmError> {
        self.instance()?
            .qmp
            .set_link(args::NIC_ID, up)
            .await
            .map_err(|source| VmError::Qmp {
                name: self.spec.name.clone(),
                source,
            })
    }

    /// QMP `query-status` (`running`, `paused`, ...).
    pub async fn query_status(&self) -> Result<String, VmError> {
        self.instance()?
            .qmp
            .query_status()
            .await
            .map_err(|source| VmError::Qmp {
                name: self.spec.name.clone(),
                source,
            })
    }

    /// QMP event names seen on the current QEMU process.
    pub fn qmp_events(&self) -> Vec<String> {
        self.inst
            .as_ref()
            .map(|i| i.qmp.events_seen())
            .unwrap_or_default()
    }

    /// The serial console log file.
    pub fn serial_log(&self) -> PathBuf {
        self.paths.serial_log.clone()
    }

    /// The first kernel panic / oops / `BUG:` / `WARNING: CPU:` / emergency-shell line seen on
    /// the serial console.
    pub fn console_problem(&self) -> Option<String> {
        self.inst
            .as_ref()
            .and_then(|i| i.console.problem())
            .or_else(|| {
                console::first_problem(
                    &std::fs::read_to_string(&self.paths.serial_log).unwrap_or_default(),
                )
            })
    }

    /// Graceful end: ACPI powerdown with the shutdown deadline, then QMP `quit`, then SIGKILL;
    /// removes the overlay and QMP socket.
    pub async fn shutdown(mut self) -> Result<(), VmError> {
        self.close_sessions().await;
        let grace = self
            .spec
            .timeouts
            .scale(self.spec.timeouts.shutdown, self.accel);
        if let Some(mut inst) = self.inst.take() {
            let mut done = wait_exit(&mut inst.child, Duration::ZERO).await;
            if !done {
                if let Err(err) = inst.qmp.system_powerdown().await {
                    tracing::debug!(%err, "system_powerdown");
                }
                done = wait_exit(&mut inst.child, grace).await;
            }
            if !done {
                tracing::info!(vm = %self.spec.name, "guest did not power off in time: QMP quit");
                let _ = inst.qmp.quit().await;
                done = wait_exit(&mut inst.child, Duration::from_secs(5)).await;
            }
            if !done {
                tracing::warn!(vm = %self.spec.name, pid = inst.pid, "QEMU still alive: SIGKILL");
                let _ = inst.child.kill();
                let _ = inst.child.wait();
            }
            lifetime::unregister(inst.pid);
        }
        self.remove_work_files();
        Ok(())
    }

    /// Leaves QEMU running (for `--keep`) and returns what to print. The VM lives until it is
    /// killed or until this process exits (the parent-death signal; see [`lifetime`]).
    pub fn keep(mut self) -> KeptVm {
        let ssh_command = self.ssh_command(ROOT_USER);
        let inst = self.inst.take();
        // Nothing may run any more (after a failed reboot): then there is no child.
        let (child, pid, ssh_port) = match inst {
            Some(i) => (Some(i.child), i.pid, i.ssh_port),
            None => (None, 0, 0),
        };
        KeptVm {
            name: self.spec.name.clone(),
            pid,
            ssh_port,
            ssh_command,
            qmp_socket: self.paths.qmp_socket.clone(),
            serial_log: self.paths.serial_log.clone(),
            work_dir: self.spec.work_dir.clone(),
            child,
        }
    }

    fn kill_instance(&mut self) {
        if let Some(mut inst) = self.inst.take() {
            let _ = inst.child.kill();
            let _ = inst.child.wait();
            lifetime::unregister(inst.pid);
        }
    }

    fn remove_work_files(&self) {
        for p in [&self.paths.overlay, &self.paths.qmp_socket] {
            if let Err(err) = std::fs::remove_file(p) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = ?p, %err, "could not remove a VM work file");
                }
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            tracing::debug!(vm = %self.spec.name, pid, "dropping VM: killing QEMU");
        }
        self.sessions.get_mut().clear();
        self.kill_instance();
        self.remove_work_files();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port().unwrap();
        assert_ne!(p, 0);
        let _l = std::net::TcpListener::bind(("127.0.0.1", p)).unwrap();
        let q = free_port().unwrap();
        assert_ne!(p, q, "a port in use is not handed out");
    }

    #[test]
    fn recognises_a_hostfwd_bind_failure() {
        let msg = "qemu-system-x86_64: -netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:2222-:22'";
        assert!(is_hostfwd_bind_failure(msg));
        assert!(!is_hostfwd_bind_failure(
            "qemu-system-x86_64: -kernel /x: No such file"
        ));
    }

    #[test]
    fn timeouts_scale_for_tcg() {
        let t = Timeouts::default();
        let d = Duration::from_secs(10);
        let env = env_timeout_multiplier();
        assert_eq!(t.scale(d, Accel::Kvm), d.mul_f64(env));
        assert_eq!(t.scale(d, Accel::Tcg), d.mul_f64(3.0 * env));
    }
}
