//! Deciding where a container's cgroup goes ([`plan`]) and finding it again
//! ([`find_existing`], [`of_pid`]).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::layout::{self, Layout};
use super::{
    check_name, effective_uid, writable_by, CgroupError, ContainerCgroup, MONITOR_PREFIX,
    PAYLOAD_PREFIX, REEXEC_ENV,
};

/// Where a container's processes will live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The caller may write the cgroup v2 directory `parent`: the container goes into
    /// `parent/ulxc.payload.NAME`, the monitor into `parent/ulxc.monitor.NAME`.
    Delegated {
        /// The delegated cgroup directory (a file-system path under the cgroup2 mount).
        parent: PathBuf,
    },
    /// No writable cgroup, but a user systemd is reachable: re-execute the command as
    /// `argv_prefix + original argv` to run in a delegated transient scope.
    ViaSystemd {
        /// `systemd-run --user --scope -p Delegate=yes --unit=ulxc-NAME-N --quiet --collect --`
        argv_prefix: Vec<String>,
    },
    /// Start without a cgroup; `reason` says why and what to do (print it once).
    None {
        /// Why, and what to do about it.
        reason: String,
    },
}

impl Placement {
    /// The container's cgroup directory, for a delegated placement.
    pub fn payload_path(&self, name: &str) -> Option<PathBuf> {
        match self {
            Placement::Delegated { parent } => Some(parent.join(format!("{PAYLOAD_PREFIX}{name}"))),
            _ => None,
        }
    }

    /// The monitor's cgroup directory, for a delegated placement.
    pub fn monitor_path(&self, name: &str) -> Option<PathBuf> {
        match self {
            Placement::Delegated { parent } => Some(parent.join(format!("{MONITOR_PREFIX}{name}"))),
            _ => None,
        }
    }

    /// Moves the calling process into the monitor cgroup `parent/ulxc.monitor.NAME`
    /// (created when missing) if it still lives in `parent` itself, so that controllers
    /// can later be enabled in `parent`. Call it before forking helpers that stay alive
    /// while the container starts. Returns the monitor cgroup, or `None` when the
    /// placement is not delegated or the caller lives elsewhere.
    pub fn enter_monitor(&self, name: &str) -> Result<Option<PathBuf>, CgroupError> {
        check_name(name)?;
        let (Placement::Delegated { parent }, Some(monitor)) = (self, self.monitor_path(name))
        else {
            return Ok(None);
        };
        let own = own_v2_dir().ok();
        if own.as_deref() == Some(monitor.as_path()) {
            return Ok(Some(monitor));
        }
        if own.as_deref() != Some(parent.as_path()) {
            return Ok(None);
        }
        match fs::create_dir(&monitor) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Mkdir {
                    path: monitor,
                    source,
                })
            }
        }
        let procs = monitor.join("cgroup.procs");
        let pid = std::process::id().to_string();
        fs::write(&procs, &pid).map_err(|source| CgroupError::Write {
            path: procs.clone(),
            value: pid,
            source,
        })?;
        tracing::debug!(?monitor, "moved the monitor into its own cgroup");
        Ok(Some(monitor))
    }
}

/// Reads the host's cgroup layout from `/proc/self/mountinfo`.
pub fn detect_layout() -> Result<Layout, CgroupError> {
    let mounts = read_mounts()?;
    layout::layout_from_mounts(&mounts).ok_or(CgroupError::NoHierarchy)
}

fn read_mounts() -> Result<Vec<layout::CgroupMount>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(layout::parse_mountinfo(&text))
}

/// The cgroup v2 directory of process `pid` ("self" for the caller) on this host.
pub(super) fn v2_dir_of(pid: &str) -> Result<PathBuf, CgroupError> {
    let mounts = read_mounts()?;
    let layout = layout::layout_from_mounts(&mounts).ok_or(CgroupError::NoHierarchy)?;
    let pid_num = pid.parse().unwrap_or_else(|_| std::process::id());
    let Some(mount) = layout.unified_mount() else {
        return Err(CgroupError::NoV2Cgroup {
            pid: pid_num,
            detail: "no cgroup2 mount".into(),
        });
    };
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
    let cg = layout::parse_proc_cgroup(&text);
    let Some(v2) = cg.v2 else {
        return Err(CgroupError::NoV2Cgroup {
            pid: pid_num,
            detail: "no `0::` line".into(),
        });
    };
    layout::fs_path(mount, layout::mount_root(&mounts, mount), &v2).ok_or_else(|| {
        CgroupError::NoV2Cgroup {
            pid: pid_num,
            detail: format!("{v2} is outside the mount"),
        }
    })
}

pub(super) fn own_v2_dir() -> Result<PathBuf, CgroupError> {
    v2_dir_of("self")
}

/// What [`decide`] needs to know about the host, gathered apart so tests can fake it.
#[derive(Debug, Clone)]
pub(super) struct Inputs {
    pub layout: Option<Layout>,
    /// The caller's cgroup v2 directory, if it has one under the mount.
    pub own: Option<PathBuf>,
    /// Whether a user bus looks reachable ($XDG_RUNTIME_DIR/bus or $DBUS_SESSION_BUS_ADDRESS).
    pub user_bus: Option<String>,
    /// `systemd-run` found in PATH.
    pub systemd_run: Option<PathBuf>,
    /// Effective uid, for messages.
    pub euid: u32,
    /// Whether this process is already the re-exec under systemd-run ([`REEXEC_ENV`]).
    pub reexecuted: bool,
}

impl Inputs {
    fn gather() -> Inputs {
        let layout = read_mounts()
            .ok()
            .and_then(|m| layout::layout_from_mounts(&m));
        Inputs {
            layout,
            own: own_v2_dir().ok(),
            user_bus: user_bus(),
            systemd_run: find_in_path("systemd-run"),
            euid: effective_uid(),
            reexecuted: std::env::var_os(REEXEC_ENV).is_some(),
        }
    }
}

/// Where a user bus is, if one looks reachable.
fn user_bus() -> Option<String> {
    if let Some(addr) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        let addr = addr.to_string_lossy().into_owned();
        let path = addr
            .strip_prefix("unix:path=")
            .map(|p| p.split(',').next().unwrap_or(p));
        match path {
            Some(p) if !Path::new(p).exists() => {}
            _ => return Some(addr),
        }
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")?;
    let bus = Path::new(&runtime).join("bus");
    bus.exists().then(|| bus.display().to_string())
}

/// The first executable `prog` in `$PATH`.
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether the caller may use `dir` as a delegated parent: owned by the effective uid,
/// and the directory and its `cgroup.procs` writable.
fn writable_cgroup(dir: &Path) -> bool {
    let owned = fs::symlink_metadata(dir)
        .map(|m| m.is_dir() && m.uid() == effective_uid())
        .unwrap_or(false);
    let euid = effective_uid();
    owned && writable_by(dir, euid) && writable_by(&dir.join("cgroup.procs"), euid)
}

/// Decides where container `name` goes: see [`Placement`].
///
/// Looks at the caller's own cgroup v2 (skipping `ulxc.monitor.*`/`ulxc.payload.*`
/// levels a previous step moved it into) and its ancestors up to the mount, taking the
/// lowest one the caller owns and may write. Does not change anything.
pub fn plan(name: &str) -> Result<Placement, CgroupError> {
    check_name(name)?;
    let inputs = Inputs::gather();
    Ok(decide(&inputs, name, std::process::id(), writable_cgroup))
}

/// Escapes a string for use in a systemd unit name (like `systemd-escape`).
pub(super) fn unit_escape(s: &str) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && i > 0) || b == b':';
        if plain {
            out.push(char::from(b));
        } else if b == b'/' {
            out.push('-');
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The argv prefix that re-executes a command in a delegated transient user scope.
pub(super) fn systemd_argv_prefix(systemd_run: &Path, name: &str, n: u32) -> Vec<String> {
    vec![
        systemd_run.display().to_string(),
        "--user".into(),
        "--scope".into(),
        "-p".into(),
        "Delegate=yes".into(),
        format!("--unit=ulxc-{}-{n}", unit_escape(name)),
        "--quiet".into(),
        "--collect".into(),
        "--".into(),
    ]
}

/// Strips trailing `ulxc.monitor.*` / `ulxc.payload.*` levels from a cgroup path.
fn strip_ulxc_levels(mut dir: &Path) -> &Path {
    while let Some(base) = dir.file_name().and_then(|b| b.to_str()) {
        if !(base.starts_with(MONITOR_PREFIX) || base.starts_with(PAYLOAD_PREFIX)) {
            break;
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    dir
}

pub(super) fn decide(
    inputs: &Inputs,
    name: &str,
    n: u32,
    writable: impl Fn(&Path) -> bool,
) -> Placement {
    let Some(layout) = &inputs.layout else {
        return Placement::None {
            reason: "no cgroup file system is mounted; mount cgroup2 at /sys/fs/cgroup".into(),
        };
    };
    let Some(mount) = layout.unified_mount() else {
        return Placement::None {
            reason:
                "this host has only cgroup v1 hierarchies and ulxc needs a delegated cgroup v2 \
                     subtree; boot with systemd.unified_cgroup_hierarchy=1 (or mount cgroup2)"
                    .into(),
        };
    };
    let mut checked = None;
    if let Some(own) = &inputs.own {
        let start = strip_ulxc_levels(own);
        checked = Some(start.to_path_buf());
        for dir in start.ancestors() {
            if !dir.starts_with(mount) {
                break;
            }
            if writable(dir) {
                return Placement::Delegated {
                    parent: dir.to_path_buf(),
                };
            }
        }
    }
    let place = match &checked {
        Some(p) => format!(
            "your cgroup {} (and its ancestors) is not writable by uid {}",
            p.display(),
            inputs.euid
        ),
        None => format!(
            "your process has no cgroup v2 path under {}",
            mount.display()
        ),
    };
    if inputs.reexecuted {
        return Placement::None {
            reason: format!(
                "{place} although ulxc was re-executed under `systemd-run --user --scope -p \
                 Delegate=yes`; check that the user's systemd delegates cgroups \
                 (`systemctl --user show -p Delegate`), or ask root to delegate a cgroup"
            ),
        };
    }
    match (&inputs.user_bus, &inputs.systemd_run) {
        (Some(_), Some(run)) => Placement::ViaSystemd {
            argv_prefix: systemd_argv_prefix(run, name, n),
        },
        (bus, run) => {
            let missing = match (bus, run) {
                (None, None) => "no user systemd bus ($XDG_RUNTIME_DIR/bus, $DBUS_SESSION_BUS_ADDRESS) and no systemd-run in PATH",
                (None, Some(_)) => "no user systemd bus ($XDG_RUNTIME_DIR/bus, $DBUS_SESSION_BUS_ADDRESS)",
                _ => "no systemd-run in PATH",
            };
            Placement::None {
                reason: format!(
                    "{place}, and {missing}; run under `systemd-run --user --scope -p Delegate=yes`, \
                     or ask root to delegate a cgroup (mkdir DIR under {}, chown it and its \
                     cgroup.procs, cgroup.subtree_control and cgroup.threads to you, and move \
                     your shell into DIR/cgroup.procs)",
                    mount.display()
                ),
            }
        }
    }
}

/// Finds container `name`'s cgroup again (for attach, stop, info): first under the
/// parent [`plan`] gives, then anywhere in the cgroup2 hierarchy under a parent owned by
/// the caller (e.g. a `ulxc-NAME-N.scope` made by systemd-run).
pub fn find_existing(name: &str) -> Option<ContainerCgroup> {
    check_name(name).ok()?;
    let dir_name = format!("{PAYLOAD_PREFIX}{name}");
    let inputs = Inputs::gather();
    if let Placement::Delegated { parent } = decide(&inputs, name, 0, writable_cgroup) {
        let candidate = parent.join(&dir_name);
        if candidate.is_dir() {
            return ContainerCgroup::open(&candidate).ok();
        }
    }
    let mount = inputs.layout.as_ref()?.unified_mount()?.to_path_buf();
    let euid = inputs.euid;
    let found = search(&mount, &dir_name, euid, 12)?;
    ContainerCgroup::open(&found).ok()
}

/// Depth-limited search for a directory `dir_name` whose parent is owned by `euid`;
/// never follows symlinks.
fn search(dir: &Path, dir_name: &str, euid: u32, depth: u32) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_str() == Some(dir_name) {
            let owner = fs::symlink_metadata(dir).map(|m| m.uid()).ok();
            if owner == Some(euid) {
                return Some(path);
            }
            continue;
        }
        subdirs.push(path);
    }
    if depth == 0 {
        return None;
    }
    subdirs
        .into_iter()
        .find_map(|d| search(&d, dir_name, euid, depth - 1))
}

/// The container cgroup of process `pid` (e.g. a container's init): its cgroup v2
/// directory, walked up to the `ulxc.payload.NAME` level (the container's systemd moves
/// init into a sub-cgroup such as `init.scope`).
pub fn of_pid(pid: u32) -> Result<ContainerCgroup, CgroupError> {
    let dir = v2_dir_of(&pid.to_string())?;
    let payload = dir.ancestors().find(|d| {
        d.file_name()
            .and_then(|b| b.to_str())
            .is_some_and(|b| b.starts_with(PAYLOAD_PREFIX))
    });
    match payload {
        Some(p) => ContainerCgroup::open(p),
        None => Err(CgroupError::NotContainer {
            pid,
            cgroup: dir.display().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Layout {
        Layout::Hybrid {
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified")),
            v1: vec![("memory".into(), PathBuf::from("/sys/fs/cgroup/memory"))],
        }
    }

    fn inputs(own: &str) -> Inputs {
        Inputs {
            layout: Some(hybrid()),
            own: Some(PathBuf::from(own)),
            user_bus: None,
            systemd_run: None,
            euid: 1000,
            reexecuted: false,
        }
    }

    #[test]
    fn delegated_when_own_cgroup_is_writable() {
        let i = inputs("/sys/fs/cgroup/unified/ulxc-test.delegated");
        let p = decide(&i, "c1", 7, |d| d.ends_with("ulxc-test.delegated"));
        assert_eq!(
            p,
            Placement::Delegated {
                parent: "/sys/fs/cgroup/unified/ulxc-test.delegated".into()
            }
        );
        assert_eq!(
            p.payload_path("c1").unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/ulxc-test.delegated/ulxc.payload.c1")
        );
        assert_eq!(
            p.monitor_path("c1").unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/ulxc-test.delegated/ulxc.monitor.c1")
        );
    }

    #[test]
    fn monitor_level_is_skipped_and_ancestors_are_tried() {
        let i = inputs("/sys/fs/cgroup/unified/d/ulxc.monitor.c1");
        let p = decide(&i, "c1", 7, |d| d == Path::new("/sys/fs/cgroup/unified/d"));
        assert_eq!(
            p,
            Placement::Delegated {
                parent: "/sys/fs/cgroup/unified/d".into()
            }
        );
        let i = inputs("/sys/fs/cgroup/unified/d/leaf");
        let p = decide(&i, "c1", 7, |d| d == Path::new("/sys/fs/cgroup/unified/d"));
        assert_eq!(
            p,
            Placement::Delegated {
                parent: "/sys/fs/cgroup/unified/d".into()
            }
        );
    }

    #[test]
    fn systemd_when_not_writable_but_bus_is_there() {
        let mut i = inputs("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope");
        i.layout = Some(Layout::Unified {
            mount: "/sys/fs/cgroup".into(),
        });
        i.user_bus = Some("/run/user/1000/bus".into());
        i.systemd_run = Some("/usr/bin/systemd-run".into());
        let p = decide(&i, "web/1", 42, |_| false);
        let Placement::ViaSystemd { argv_prefix } = p else {
            panic!("{p:?}")
        };
        assert_eq!(
            argv_prefix,
            [
                "/usr/bin/systemd-run",
                "--user",
                "--scope",
                "-p",
                "Delegate=yes",
                "--unit=ulxc-web-1-42",
                "--quiet",
                "--collect",
                "--"
            ]
        );
    }

    #[test]
    fn no_second_reexec() {
        let mut i = inputs("/sys/fs/cgroup/user.slice/user@1000.service/app.slice/x.scope");
        i.layout = Some(Layout::Unified {
            mount: "/sys/fs/cgroup".into(),
        });
        i.user_bus = Some("/run/user/1000/bus".into());
        i.systemd_run = Some("/usr/bin/systemd-run".into());
        i.reexecuted = true;
        let Placement::None { reason } = decide(&i, "c", 1, |_| false) else {
            panic!()
        };
        assert!(reason.contains("although ulxc was re-executed"), "{reason}");
    }

    #[test]
    fn none_says_why_and_what_to_do() {
        let i = inputs("/sys/fs/cgroup/unified");
        let Placement::None { reason } = decide(&i, "c", 1, |_| false) else {
            panic!()
        };
        assert!(reason.contains("not writable by uid 1000"), "{reason}");
        assert!(
            reason.contains("systemd-run --user --scope -p Delegate=yes"),
            "{reason}"
        );
        assert!(reason.contains("ask root to delegate"), "{reason}");
        let mut i = inputs("/x");
        i.layout = Some(Layout::Legacy { v1: vec![] });
        let Placement::None { reason } = decide(&i, "c", 1, |_| true) else {
            panic!()
        };
        assert!(reason.contains("only cgroup v1"), "{reason}");
        i.layout = None;
        assert!(matches!(
            decide(&i, "c", 1, |_| true),
            Placement::None { .. }
        ));
    }

    #[test]
    fn a_writable_dir_outside_the_mount_is_never_used() {
        let i = inputs("/elsewhere/x");
        assert!(matches!(
            decide(&i, "c", 1, |_| true),
            Placement::None { .. }
        ));
    }

    #[test]
    fn unit_names_are_escaped() {
        assert_eq!(unit_escape("web"), "web");
        assert_eq!(unit_escape("a b"), "a\\x20b");
        assert_eq!(unit_escape(".x"), "\\x2ex");
        assert_eq!(unit_escape("a-b"), "a\\x2db");
    }
}
