//! `ulxc start` and `ulxc execute`: checks the configuration, then runs the monitor
//! (in the background with `-d`, in the foreground otherwise), which clones init into
//! new namespaces, maps its ids, puts it into a cgroup and supervises it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::unistd::Pid;

use super::create::{container_idmap, helper_map};
use super::paths::{Caller, ContainerDir};
use super::setup::{self, InitMode, SetupPlan};
use super::state::{self, RunInfo, State};
use super::{io_err, ContainerError};
use crate::cgroup::{self, ContainerCgroup, Placement};
use crate::config::{self, ContainerConfig};
use crate::idmap::{self, IdMap};
use crate::monitor::{self, ConsoleSink, Supervised};
use crate::sys;
use crate::sys::process::{CloneFlags, Cloned};

/// How to start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Run the monitor in the background and return once init runs (`-d`).
    pub daemonize: bool,
    /// Replace init's command line (`ulxc start -n NAME -- CMD`, or `execute`).
    pub command: Option<Vec<String>>,
    /// An application container (`execute`): a minimal init runs the command.
    pub application: bool,
    /// Extra configuration lines (`-s KEY=VALUE`).
    pub overrides: Vec<(String, String)>,
}

/// The environment variable that tells a start re-executed under `systemd-run` that it
/// already sits in a delegated scope.
pub const IN_SCOPE_ENV: &str = "ULXC_IN_DELEGATED_SCOPE";

/// Starts container `dir`. Returns the exit code to end with: 0 for a detached start,
/// init's (or the command's) exit status for a foreground one.
pub fn start(
    dir: &ContainerDir,
    caller: &Caller,
    opts: &StartOptions,
) -> Result<i32, ContainerError> {
    let observed = state::observe(dir);
    if observed.state != State::Stopped {
        return Err(ContainerError::Busy {
            name: dir.name.clone(),
            lock: caller.tilde(&dir.lock()),
        });
    }
    let cfg = load_config(dir, &opts.overrides)?;
    let map = container_idmap(&cfg, caller)?;
    let prepared = prepare(dir, &cfg, opts)?;

    let placement = cgroup::plan(&dir.name)?;
    if let Placement::ViaSystemd { argv_prefix } = &placement {
        if std::env::var_os(IN_SCOPE_ENV).is_none() {
            return reexec_in_scope(argv_prefix);
        }
    }

    // On cgroup v2 the monitor leaves the delegated parent before anything is forked,
    // so that controllers can be enabled there (no processes in inner cgroups).
    if let Err(e) = placement.enter_monitor(&dir.name) {
        tracing::warn!(%e, "cannot move into the monitor's cgroup");
    }

    // The lock is taken here and inherited by the monitor, which holds it while the
    // container runs: of two concurrent starts, one wins.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.lock())
        .map_err(io_err(format!("cannot open {}", dir.lock().display())))?;
    let lock = sys::socket::try_lock_exclusive(lock_file).map_err(|_| ContainerError::Busy {
        name: dir.name.clone(),
        lock: caller.tilde(&dir.lock()),
    })?;

    if !opts.daemonize {
        let code = run_monitor(dir, caller, &cfg, &map, prepared, &placement, None)?;
        drop(lock);
        return Ok(code);
    }

    let (report_r, report_w) = sys::socket::pipe_cloexec().map_err(|e| start_err(dir, e))?;
    match sys::process::fork_with_pidfd().map_err(|e| start_err(dir, e))? {
        Cloned::Child => {
            drop(report_r);
            let _ = sys::process::new_session();
            sys::process::ignore_hangups();
            redirect_to_log(dir);
            let code = match run_monitor(
                dir,
                caller,
                &cfg,
                &map,
                prepared,
                &placement,
                Some(report_w),
            ) {
                Ok(code) => code,
                Err(e) => {
                    tracing::error!(%e, "monitor failed");
                    1
                }
            };
            drop(lock);
            sys::process::exit_now(code)
        }
        Cloned::Parent { pid, .. } => {
            drop(report_w);
            // Close our descriptor without unlocking: the lock belongs to the monitor now
            // (flock locks are shared by every descriptor of the open file).
            std::mem::forget(lock);
            let mut answer = String::new();
            let _ = std::fs::File::from(report_r).read_to_string(&mut answer);
            if answer == "ok" {
                return Ok(0);
            }
            let _ = sys::process::wait_exit_code(pid);
            let why = if answer.is_empty() {
                format!(
                    "the monitor ended without reporting; see {}",
                    dir.monitor_log().display()
                )
            } else {
                answer
            };
            Err(ContainerError::Start {
                name: dir.name.clone(),
                why,
            })
        }
    }
}

fn start_err(dir: &ContainerDir, e: sys::Errno) -> ContainerError {
    ContainerError::Start {
        name: dir.name.clone(),
        why: e.to_string(),
    }
}

/// Loads the container's config and applies `-s KEY=VALUE` overrides.
pub fn load_config(
    dir: &ContainerDir,
    overrides: &[(String, String)],
) -> Result<ContainerConfig, ContainerError> {
    let mut raw = config::read_raw(&dir.config())?;
    if !overrides.is_empty() {
        let text: String = overrides
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let extra = config::parse_raw_str(&text, std::path::Path::new("<command line>"))?;
        raw.items.extend(extra.items);
    }
    let cfg = ContainerConfig::from_raw(&raw)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    for ignored in &cfg.ignored {
        tracing::debug!(key = %ignored.value, at = %ignored.at, "configuration key accepted without effect");
    }
    Ok(cfg)
}

/// The parts of a start that are decided before any process is made.
struct Prepared {
    plan: SetupPlan,
    net: crate::net::NetPlan,
    flags: CloneFlags,
    halt_signal: i32,
    limits: Vec<(String, String, String)>,
}

fn prepare(
    dir: &ContainerDir,
    cfg: &ContainerConfig,
    opts: &StartOptions,
) -> Result<Prepared, ContainerError> {
    let rootfs = cfg
        .rootfs_path
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_else(|| dir.rootfs());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ContainerError::Unsupported(format!(
                "the rootfs {} is not a directory",
                rootfs.display()
            )))
        }
        Err(e) => {
            return Err(ContainerError::Unsupported(format!(
                "the rootfs {} cannot be used: {e}",
                rootfs.display()
            )))
        }
    }
    let mut flags = CloneFlags::NEWUSER
        | CloneFlags::NEWNS
        | CloneFlags::NEWPID
        | CloneFlags::NEWUTS
        | CloneFlags::NEWIPC;
    let net = crate::net::plan(cfg, &dir.name)?;
    let own_netns = net.own_netns;
    if own_netns {
        flags = flags | CloneFlags::NEWNET;
    }
    let mut mount_auto = cfg.mount_auto.clone();
    if !own_netns && mount_auto.sys.is_some() {
        // sysfs can only be mounted by the owner of the network namespace.
        tracing::warn!(
            "lxc.net.0.type = none shares the host's network namespace: /sys is not mounted"
        );
        mount_auto.sys = None;
    }
    let mut mount_entries = Vec::new();
    for entry in &cfg.mount_entries {
        let parsed = setup::parse_mount_entry(&entry.value).map_err(|why| {
            ContainerError::Unsupported(format!("lxc.mount.entry at {}: {why}", entry.at))
        })?;
        mount_entries.push(parsed);
    }
    let drop_caps = capabilities_to_drop(cfg)?;
    let application = opts.application;
    let argv = match (&opts.command, &cfg.init_cmd) {
        (Some(cmd), _) if !cmd.is_empty() => cmd.clone(),
        (_, Some(cmd)) if !application && !cmd.is_empty() => cmd.clone(),
        _ if application => {
            return Err(ContainerError::Usage(
                "execute needs a command after `--`".into(),
            ))
        }
        _ => vec!["/sbin/init".to_string()],
    };
    if !application && argv[0].starts_with('/') {
        let inside = rootfs.join(argv[0].trim_start_matches('/'));
        if std::fs::symlink_metadata(&inside).is_err() {
            return Err(ContainerError::Unsupported(format!(
                "init {} does not exist in the rootfs {}; set lxc.init.cmd or use a rootfs with an init",
                argv[0],
                rootfs.display()
            )));
        }
    }
    let mut env = vec![
        ("container".to_string(), "lxc".to_string()),
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
    ];
    if application {
        if let Ok(term) = std::env::var("TERM") {
            env.push(("TERM".to_string(), term));
        }
    } else {
        env.push(("TERM".to_string(), "linux".to_string()));
    }
    env.extend(cfg.environment.iter().cloned());
    let hostname = cfg.uts_name.clone().unwrap_or_else(|| dir.name.clone());
    let plan = SetupPlan {
        rootfs,
        hostname,
        mount_auto,
        mount_entries,
        drop_caps,
        no_new_privs: cfg.no_new_privs,
        argv,
        env,
        cwd: cfg.init_cwd.clone().unwrap_or_else(|| PathBuf::from("/")),
        console: None,
        console_path: None,
        mode: if application {
            InitMode::Application
        } else {
            InitMode::System
        },
        loopback_up: own_netns,
        inside_net: net.inside.clone(),
    };
    let limits = cfg
        .cgroup2
        .iter()
        .map(|l| (l.value.0.clone(), l.value.1.clone(), l.at.to_string()))
        .collect();
    Ok(Prepared {
        plan,
        net,
        flags,
        halt_signal: cfg.signal_halt.unwrap_or(0),
        limits,
    })
}

fn capabilities_to_drop(cfg: &ContainerConfig) -> Result<Vec<u32>, ContainerError> {
    let lookup = |name: &str| {
        sys::caps::capability_number(name).ok_or_else(|| {
            ContainerError::Unsupported(format!(
                "unknown capability `{name}` in lxc.cap.drop/lxc.cap.keep"
            ))
        })
    };
    if !cfg.cap_keep.is_empty() {
        let keep: Vec<u32> = cfg
            .cap_keep
            .iter()
            .filter(|c| *c != "none")
            .map(|c| lookup(c))
            .collect::<Result<_, _>>()?;
        return Ok((0..=sys::caps::last_capability())
            .filter(|c| !keep.contains(c))
            .collect());
    }
    cfg.cap_drop.iter().map(|c| lookup(c)).collect()
}

fn reexec_in_scope(prefix: &[String]) -> Result<i32, ContainerError> {
    let mut argv: Vec<String> = prefix.to_vec();
    argv.extend(std::env::args());
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push((IN_SCOPE_ENV.to_string(), "1".to_string()));
    tracing::info!(?argv, "re-executing in a delegated systemd scope");
    let e = sys::process::exec_with_env(&argv, &env);
    Err(ContainerError::Unsupported(format!(
        "cannot re-execute under systemd-run for a delegated cgroup: {e}; run: systemd-run --user --scope -p Delegate=yes -- {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    )))
}

fn redirect_to_log(dir: &ContainerDir) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.monitor_log());
    let devnull = std::fs::File::open("/dev/null");
    if let Ok(null) = devnull {
        let _ = sys::pty::dup_onto(null.as_fd(), 0);
    }
    if let Ok(log) = log {
        let _ = sys::pty::dup_onto(log.as_fd(), 1);
        let _ = sys::pty::dup_onto(log.as_fd(), 2);
    }
}

/// The monitor: clones init, maps it, places it, supervises it. `report` (detached
/// starts) receives "ok" once init runs, or the reason it could not start.
fn run_monitor(
    dir: &ContainerDir,
    caller: &Caller,
    cfg: &ContainerConfig,
    map: &IdMap,
    mut prepared: Prepared,
    placement: &Placement,
    report: Option<OwnedFd>,
) -> Result<i32, ContainerError> {
    let mut report = report.map(std::fs::File::from);
    let detached = report.is_some();
    let result = launch(dir, caller, cfg, map, &mut prepared, placement, detached);
    let (sup, cgroup, mut attached) = match result {
        Ok(x) => x,
        Err(e) => {
            if let Some(r) = report.as_mut() {
                let why = match &e {
                    ContainerError::Start { why, .. } => why.clone(),
                    other => other.to_string(),
                };
                let _ = r.write_all(why.as_bytes());
            }
            return Err(e);
        }
    };
    if let Some(mut r) = report.take() {
        let _ = r.write_all(b"ok");
    }
    let stdin = std::io::stdin();
    let raw = (!detached && sys::pty::is_terminal(stdin.as_fd()))
        .then(|| sys::pty::RawMode::enter(stdin.as_fd()).ok())
        .flatten();
    let served = monitor::serve(sup, caller.uid);
    drop(raw);
    attached.release();
    if let Some(cg) = &cgroup {
        release_cgroup(cg, map, caller);
    }
    state::clean_stale_unlocked(dir);
    Ok(served.confirm())
}

#[allow(clippy::type_complexity)]
fn launch(
    dir: &ContainerDir,
    caller: &Caller,
    cfg: &ContainerConfig,
    map: &IdMap,
    prepared: &mut Prepared,
    placement: &Placement,
    detached: bool,
) -> Result<(Supervised, Option<ContainerCgroup>, crate::net::Attached), ContainerError> {
    let start_err = |why: String| ContainerError::Start {
        name: dir.name.clone(),
        why,
    };
    let console = if prepared.plan.mode == InitMode::System {
        let stdin = std::io::stdin();
        let like = sys::pty::is_terminal(stdin.as_fd()).then(|| stdin.as_fd());
        Some(
            sys::pty::open_pty(like)
                .map_err(|e| start_err(format!("cannot open a pty for the console: {e}")))?,
        )
    } else {
        None
    };
    let cgroup = match placement {
        Placement::None { reason } => {
            tracing::warn!(
                "starting {} without a cgroup (no limits, no accounting): {reason}",
                dir.name
            );
            None
        }
        other => Some(ContainerCgroup::create(other, &dir.name)?),
    };
    let _ = std::fs::remove_file(dir.monitor_socket());
    let listener = monitor::bind(&dir.monitor_socket()).map_err(io_err(format!(
        "cannot listen on {}",
        dir.monitor_socket().display()
    )))?;
    let (go_r, go_w) = sys::socket::pipe_cloexec().map_err(|e| start_err(e.to_string()))?;
    let (err_r, err_w) = sys::socket::pipe_cloexec().map_err(|e| start_err(e.to_string()))?;
    prepared.plan.console = console.as_ref().and_then(|p| p.slave.try_clone().ok());
    if let Some(cg) = &cgroup {
        match cg.apply_limits(&prepared.limits) {
            Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
            Err(e) => {
                let _ = cg.remove();
                return Err(e.into());
            }
        }
    } else if !cfg.cgroup2.is_empty() {
        tracing::warn!("lxc.cgroup2.* limits are ignored: the container has no cgroup");
    }
    let console_path = match &console {
        Some(pty) => Some(
            std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
                .map_err(io_err("cannot find the console pty's path"))?,
        ),
        None => None,
    };
    let cgroup_paths = cgroup
        .as_ref()
        .map(|c| c.paths_to_chown())
        .unwrap_or_default();
    if let Err(e) = hand_over(map, caller, console_path.clone(), cgroup_paths) {
        if let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
        let _ = std::fs::remove_file(dir.monitor_socket());
        return Err(e);
    }
    prepared.plan.console_path = console_path;

    let cloned = sys::process::clone_process(prepared.flags, None).map_err(|e| {
        start_err(format!(
            "cannot create the container's namespaces: {e}; see `ulxc checkconfig`"
        ))
    })?;
    let (pid, pidfd) = match cloned {
        Cloned::Child => {
            drop(go_w);
            drop(err_r);
            drop(listener);
            let mut err = std::fs::File::from(err_w);
            let mut go = [0u8; 1];
            if !matches!(std::fs::File::from(go_r).read(&mut go), Ok(1)) {
                sys::process::exit_now(1);
            }
            let msg = setup::run_child(&prepared.plan);
            let _ = err.write_all(msg.as_bytes());
            sys::process::exit_now(1)
        }
        Cloned::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(go_r);
    drop(err_w);
    prepared.plan.console = None;
    let abort = |why: String| {
        let _ = sys::process::kill_raw(pid, libc::SIGKILL);
        let _ = sys::process::wait_exit_code(pid);
        if let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
        let _ = std::fs::remove_file(dir.monitor_socket());
        start_err(why)
    };
    let host_pid = u32::try_from(pid.as_raw()).unwrap_or(0);
    if let Err(e) = idmap::write_maps(host_pid, map) {
        return Err(abort(e.to_string()));
    }
    if let Some(cg) = &cgroup {
        if let Err(e) = cg.add_pid(host_pid) {
            return Err(abort(format!(
                "cannot move init into {}: {e}",
                cg.path().display()
            )));
        }
    }
    let mut attached = match crate::net::attach(&prepared.net, dir, pid.as_raw()) {
        Ok(a) => a,
        Err(e) => return Err(abort(e.to_string())),
    };
    let _ = std::fs::File::from(go_w).write_all(b"1");
    let mut failure = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut failure);
    if !failure.is_empty() {
        attached.release();
        return Err(abort(failure));
    }
    let run = RunInfo {
        init_pid: pid.as_raw(),
        init_start_time: sys::process::process_start_time(pid).unwrap_or(0),
        userns_inode: sys::ns::namespace_id(pid, "user").unwrap_or(0),
        monitor_pid: std::process::id() as i32,
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        cgroup: cgroup.as_ref().map(|c| c.path().to_path_buf()),
        halt_signal: prepared.halt_signal,
        net_helpers: attached.helper_processes(),
    };
    run.write(dir).map_err(io_err(format!(
        "cannot write {}",
        dir.run_state().display()
    )))?;
    let sink = if detached {
        ConsoleSink::Log(open_console_log(dir)?)
    } else {
        ConsoleSink::Terminal
    };
    let kill_cgroup = cgroup.as_ref().map(|c| c.path().to_path_buf());
    let kill_all: Box<dyn Fn()> = Box::new(move || {
        if let Some(path) = &kill_cgroup {
            if let Ok(cg) = ContainerCgroup::open(path) {
                cg.kill_all();
                return;
            }
        }
        let _ = sys::process::kill_raw(pid, libc::SIGKILL);
    });
    let sup = Supervised {
        listener,
        init_pidfd: pidfd,
        init_pid: Pid::from_raw(pid.as_raw()),
        console: console.map(|p| p.master),
        sink,
        run,
        kill_all,
    };
    Ok((sup, cgroup, attached))
}

/// Removes a container's cgroup once its processes are gone: the sub-cgroups that the
/// container's systemd made belong to the container's root, so they are removed from
/// the helper user namespace first.
pub fn release_cgroup(cg: &ContainerCgroup, map: &IdMap, caller: &Caller) {
    let path = cg.path().to_path_buf();
    let has_children = std::fs::read_dir(&path)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        })
        .unwrap_or(false);
    if !has_children {
        if let Err(e) = cg.remove() {
            tracing::warn!(%e, "cannot remove the container's cgroup");
        }
        return;
    }
    let helper = helper_map(map, caller);
    let inner = crate::userns::run_mapped(&helper, crate::userns::Identity::Caller, move || {
        let cg = ContainerCgroup::open(&path).map_err(|e| e.to_string())?;
        cg.remove_subcgroups().map_err(|e| e.to_string())?;
        Ok(0)
    });
    if let Err(e) = inner {
        tracing::warn!(%e, "cannot remove the container's sub-cgroups");
    }
    if let Err(e) = cg.remove() {
        tracing::warn!(%e, "cannot remove the container's cgroup");
    }
}

/// Hands the console pty and the container's cgroup to the container's root, in one
/// helper user namespace: the console as `root:tty` (as on a real system); the cgroup
/// directory and its delegation files as root with the caller's group, `cgroup.procs`
/// group-writable, so that the container's systemd manages its subtree and `attach`
/// (running as the caller) can still move into it. A cgroup that cannot be handed over
/// is a warning (systemd inside may fail); a console that cannot is an error.
fn hand_over(
    map: &IdMap,
    caller: &Caller,
    console: Option<PathBuf>,
    cgroup_paths: Vec<PathBuf>,
) -> Result<(), ContainerError> {
    const CGROUP_FAILED: i32 = 3;
    if console.is_none() && cgroup_paths.is_empty() {
        return Ok(());
    }
    if let Some(path) = &console {
        // A devpts mounted with gid=5 gives new ptys the group tty, which the helper
        // namespace cannot map; the owner may first give it its own group.
        std::os::unix::fs::chown(path, None, Some(caller.gid)).map_err(io_err(format!(
            "cannot change the group of the console {}",
            path.display()
        )))?;
    }
    let helper = helper_map(map, caller);
    let (_, caller_ns_gid) = helper
        .caller_ns_ids(caller.uid, caller.gid)
        .unwrap_or((0, 0));
    let code = crate::userns::run_mapped(&helper, crate::userns::Identity::Caller, move || {
        use std::os::unix::fs::PermissionsExt;
        if let Some(path) = &console {
            std::os::unix::fs::chown(path, Some(0), Some(5)).map_err(|e| {
                format!(
                    "cannot hand the console {} to the container's root: {e}",
                    path.display()
                )
            })?;
        }
        for p in &cgroup_paths {
            let chowned = std::os::unix::fs::chown(p, Some(0), Some(caller_ns_gid));
            let writable = match p.file_name().and_then(|n| n.to_str()) {
                Some("cgroup.procs" | "cgroup.threads") => {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o664))
                }
                _ => Ok(()),
            };
            if let Err(e) = chowned.and(writable) {
                eprintln!("cannot hand {} to the container's root: {e}", p.display());
                return Ok(CGROUP_FAILED);
            }
        }
        Ok(0)
    })?;
    if code == CGROUP_FAILED {
        tracing::warn!("cannot hand the cgroup to the container's root; systemd inside may fail");
    }
    Ok(())
}

fn open_console_log(dir: &ContainerDir) -> Result<std::fs::File, ContainerError> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.console_log())
        .map_err(io_err(format!(
            "cannot open {}",
            dir.console_log().display()
        )))
}
