//! `ulxc attach`: runs a command inside a running container — in all of its
//! namespaces and its cgroup, as the container's root, with a clean environment, on a
//! pty when our standard input is a terminal — and returns the command's exit status.

use std::os::fd::AsFd;

use nix::unistd::Pid;

use crate::container::paths::ContainerDir;
use crate::container::state::{self, State};
use crate::container::ContainerError;
use crate::sys;
use crate::sys::process::Cloned;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// The command; empty means the container root's login shell.
    pub command: Vec<String>,
    /// Extra `NAME=VALUE` variables (`--set-var`).
    pub extra_env: Vec<(String, String)>,
    /// Keep the caller's environment instead of a clean one (`--keep-env`).
    pub keep_env: bool,
}

/// Runs the command in container `dir`; returns its exit status (128+signal when it was
/// killed by a signal).
pub fn attach(dir: &ContainerDir, opts: &AttachOptions) -> Result<i32, ContainerError> {
    let observed = state::observe(dir);
    let run = match (observed.state, observed.run) {
        (State::Running | State::Stopping, Some(run)) => run,
        _ => {
            return Err(ContainerError::NotRunning {
                name: dir.name.clone(),
            })
        }
    };
    let init = Pid::from_raw(run.init_pid);
    let namespaces = sys::ns::NamespaceFiles::open(init).map_err(|e| ContainerError::Start {
        name: dir.name.clone(),
        why: format!(
            "cannot open the namespaces of init (pid {}): {e}",
            run.init_pid
        ),
    })?;
    let root_rootfs_shell = login_shell(init);
    let argv = if opts.command.is_empty() {
        vec![root_rootfs_shell]
    } else {
        opts.command.clone()
    };
    let env = environment(opts);

    // Join the container's cgroup first, while we can still see the host's cgroupfs.
    if let Some(cg) = &run.cgroup {
        if let Err(e) = std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string()) {
            tracing::warn!(cgroup = ?cg, %e, "cannot join the container's cgroup; the command runs outside it");
        }
    }
    namespaces
        .join()
        .map_err(|(kind, e)| ContainerError::Start {
            name: dir.name.clone(),
            why: format!("cannot enter the container's {kind} namespace: {e}"),
        })?;
    let _ = sys::process::set_not_dumpable();
    // Become the container's root here already, so that the pty below comes from the
    // container's own devpts (a name the command can see, owned by container root).
    sys::ns::become_root().map_err(|e| ContainerError::Start {
        name: dir.name.clone(),
        why: format!("cannot become root in the container: {e}"),
    })?;
    let stdin = std::io::stdin();
    let tty = sys::pty::is_terminal(stdin.as_fd());
    let pty = if tty {
        match sys::pty::open_pty(Some(stdin.as_fd())) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(%e, "cannot open a pty in the container; running without one");
                None
            }
        }
    } else {
        None
    };

    match sys::process::fork_with_pidfd().map_err(|e| ContainerError::Start {
        name: dir.name.clone(),
        why: e.to_string(),
    })? {
        Cloned::Child => {
            if let Some(p) = &pty {
                if let Err(e) = sys::pty::make_controlling_terminal(p.slave.as_fd()) {
                    eprintln!("ulxc attach: cannot set up the terminal: {e}");
                    sys::process::exit_now(126);
                }
            }
            if let Err(e) = sys::ns::become_root() {
                eprintln!("ulxc attach: cannot become root in the container: {e}");
                sys::process::exit_now(126);
            }
            let _ = sys::process::change_dir(std::path::Path::new("/root"))
                .or_else(|_| sys::process::change_dir(std::path::Path::new("/")));
            let e = sys::process::exec_with_env(&argv, &env);
            eprintln!("ulxc attach: cannot execute {}: {e}", argv.join(" "));
            sys::process::exit_now(if e == sys::Errno::ENOENT { 127 } else { 126 })
        }
        Cloned::Parent { pid, pidfd } => {
            if let Some(p) = pty {
                drop(p.slave);
                let raw = sys::pty::RawMode::enter(stdin.as_fd()).ok();
                let mut out = std::io::stdout();
                let _ = sys::pty::relay(
                    p.master.as_fd(),
                    Some(stdin.as_fd()),
                    &mut out,
                    pidfd.as_fd(),
                );
                drop(raw);
            }
            sys::process::wait_exit_code(pid).map_err(|why| ContainerError::Start {
                name: dir.name.clone(),
                why,
            })
        }
    }
}

/// The container root's login shell from the container's `/etc/passwd` (read through
/// init's root directory), `/bin/sh` when unknown.
fn login_shell(init: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{}/root/etc/passwd", init.as_raw()))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("root:"))
                .and_then(|l| l.rsplit(':').next())
                .map(str::to_string)
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_string())
}

fn environment(opts: &AttachOptions) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = if opts.keep_env {
        std::env::vars().collect()
    } else {
        let mut e = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
            ("USER".to_string(), "root".to_string()),
            ("LOGNAME".to_string(), "root".to_string()),
            ("container".to_string(), "lxc".to_string()),
        ];
        if let Ok(term) = std::env::var("TERM") {
            e.push(("TERM".to_string(), term));
        }
        e
    };
    env.extend(opts.extra_env.iter().cloned());
    env
}
