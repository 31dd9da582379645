//! One container's cgroup: creating it, moving processes in, limits, accounting, killing
//! and removing it.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layout::{self, Layout};
use super::limits::{parse_limit_key, LimitKey};
use super::placement::{detect_layout, own_v2_dir, Placement};
use super::{check_name, effective_uid, writable_by, CgroupError, MONITOR_PREFIX, PAYLOAD_PREFIX};
use crate::sys;

/// How long [`ContainerCgroup::remove`] waits for processes to drain.
const REMOVE_DEADLINE: Duration = Duration::from_secs(5);

/// A container's cgroup v2 directory (`PARENT/ulxc.payload.NAME`).
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    path: PathBuf,
    name: String,
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The pids listed in `dir/cgroup.procs` (empty when unreadable).
fn procs_of(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `dir` and every cgroup below it, parents before children; never follows symlinks.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            let mut children: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

impl ContainerCgroup {
    /// Creates the container's cgroup for a delegated `placement`: `PARENT/ulxc.payload.NAME`.
    ///
    /// A leftover directory of a crashed run is reused when no process is left in it
    /// (its sub-cgroups are removed first); one that still holds processes is an error
    /// naming them. When the caller lives in PARENT itself it is first moved into
    /// `PARENT/ulxc.monitor.NAME` ([`Placement::enter_monitor`]).
    pub fn create(placement: &Placement, name: &str) -> Result<ContainerCgroup, CgroupError> {
        check_name(name)?;
        let path = match placement {
            Placement::Delegated { .. } => placement.payload_path(name).ok_or_else(|| {
                CgroupError::NotDelegated { why: "the placement has no parent".into() }
            })?,
            Placement::ViaSystemd { .. } => {
                return Err(CgroupError::NotDelegated {
                    why: "the process was not re-executed in a delegated systemd scope (or the scope is not writable); run under `systemd-run --user --scope -p Delegate=yes`".into(),
                })
            }
            Placement::None { reason } => {
                return Err(CgroupError::NotDelegated { why: reason.clone() })
            }
        };
        placement.enter_monitor(name)?;
        // Containers of the same name in different container directories (or a cgroup
        // still busy from an earlier run) must never share a cgroup: like LXC, try
        // NAME, NAME-1, NAME-2, ...; `mkdir` is atomic, so of two racing starts each gets
        // its own directory. A directory a crashed run left is removed by the stale-state
        // cleanup (`container::state::clean_stale`), not taken over here.
        let mut last_err = None;
        for n in 0..100u32 {
            let candidate = if n == 0 {
                path.clone()
            } else {
                PathBuf::from(format!("{}-{n}", path.display()))
            };
            match fs::create_dir(&candidate) {
                Ok(()) => {
                    tracing::debug!(path = ?candidate, "created the container's cgroup");
                    return Ok(ContainerCgroup {
                        path: candidate,
                        name: name.to_string(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pids = ContainerCgroup {
                        path: candidate.clone(),
                        name: name.to_string(),
                    }
                    .pids();
                    tracing::debug!(path = ?candidate, ?pids, "cgroup taken; trying the next name");
                    last_err = Some(CgroupError::Busy {
                        path: candidate,
                        pids,
                    });
                }
                Err(source) => {
                    return Err(CgroupError::Mkdir {
                        path: candidate,
                        source,
                    })
                }
            }
        }
        Err(last_err.unwrap_or(CgroupError::NotDelegated {
            why: "no free cgroup name".into(),
        }))
    }

    /// Opens an existing container cgroup directory (as recorded in the run state).
    pub fn open(path: &Path) -> Result<ContainerCgroup, CgroupError> {
        let meta = fs::symlink_metadata(path.join("cgroup.procs"));
        if !meta.map(|m| m.is_file()).unwrap_or(false)
            || !fs::symlink_metadata(path)
                .map(|m| m.is_dir())
                .unwrap_or(false)
        {
            return Err(CgroupError::NotACgroup {
                path: path.to_path_buf(),
            });
        }
        let base = path
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or_default();
        let name = base
            .strip_prefix(PAYLOAD_PREFIX)
            .unwrap_or(base)
            .to_string();
        Ok(ContainerCgroup {
            path: path.to_path_buf(),
            name,
        })
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container name the cgroup belongs to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves process `pid` (all its threads) into the cgroup, and into the container's
    /// v1 cgroups that [`apply_limits`](Self::apply_limits) created.
    pub fn add_pid(&self, pid: u32) -> Result<(), CgroupError> {
        write(&self.path.join("cgroup.procs"), &pid.to_string())?;
        for dir in self.v1_dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Enables those of `controllers` that the parent offers (its `cgroup.controllers`)
    /// in the parent's `cgroup.subtree_control`, so that this cgroup gets their files.
    /// Returns the controllers enabled for this cgroup afterwards (also those already
    /// enabled); ones the parent does not offer are skipped.
    pub fn enable_controllers(&self, controllers: &[&str]) -> Result<Vec<String>, CgroupError> {
        let Some(parent) = self.path.parent() else {
            return Ok(Vec::new());
        };
        let available = words(&read(&parent.join("cgroup.controllers"))?);
        let control = parent.join("cgroup.subtree_control");
        let mut enabled = words(&read(&control)?);
        let wanted: Vec<&str> = controllers
            .iter()
            .copied()
            .filter(|c| available.iter().any(|a| a == c) && !enabled.iter().any(|e| e == c))
            .collect();
        if wanted.is_empty() {
            return Ok(enabled
                .into_iter()
                .filter(|e| controllers.contains(&e.as_str()))
                .collect());
        }
        let value = wanted
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        if let Err(source) = fs::write(&control, &value) {
            if source.raw_os_error() == Some(libc::EBUSY) {
                return Err(CgroupError::InternalProcesses {
                    path: parent.to_path_buf(),
                    controllers: wanted.join(" "),
                    pids: procs_of(parent),
                });
            }
            return Err(CgroupError::Write {
                path: control,
                value,
                source,
            });
        }
        tracing::debug!(?parent, ?wanted, "enabled controllers");
        enabled.extend(wanted.iter().map(|s| s.to_string()));
        Ok(enabled
            .into_iter()
            .filter(|e| controllers.contains(&e.as_str()))
            .collect())
    }

    /// Writes limits given as `(key, value, where)`: `lxc.cgroup2.memory.max` (or the
    /// bare `memory.max`) goes to the file `memory.max` of this cgroup, enabling the
    /// controller in the parent when it is offered there. A controller this cgroup cannot
    /// have is an error saying why (bound to v1 on a hybrid host, or not delegated).
    ///
    /// `lxc.cgroup.*` (v1) keys are written into a `ulxc.payload.NAME` cgroup under the
    /// caller's own cgroup of that v1 hierarchy when the caller may write it; otherwise
    /// they are skipped and returned as warnings.
    pub fn apply_limits<K, V, L>(&self, limits: &[(K, V, L)]) -> Result<Vec<String>, CgroupError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
        L: AsRef<str>,
    {
        let mut warnings = Vec::new();
        let mut layout: Option<Layout> = None;
        for (key, value, at) in limits {
            let (key, value, at) = (key.as_ref(), value.as_ref().trim(), at.as_ref());
            let parsed = parse_limit_key(key).map_err(|why| CgroupError::BadLimitKey {
                key: key.to_string(),
                at: at.to_string(),
                why,
            })?;
            if layout.is_none() {
                layout = detect_layout().ok();
            }
            match &parsed {
                LimitKey::V2 { file, controller } => {
                    self.apply_v2(key, value, at, file, controller, layout.as_ref())?
                }
                LimitKey::V1 { file, controller } => {
                    if let Some(w) =
                        self.apply_v1(key, value, at, file, controller, layout.as_ref())?
                    {
                        warnings.push(w);
                    }
                }
            }
        }
        Ok(warnings)
    }

    fn apply_v2(
        &self,
        key: &str,
        value: &str,
        at: &str,
        file: &str,
        controller: &str,
        layout: Option<&Layout>,
    ) -> Result<(), CgroupError> {
        let target = self.path.join(file);
        if !target.exists() && controller != "cgroup" {
            let parent = self.path.parent().unwrap_or(&self.path);
            let offered = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            if offered.split_whitespace().any(|c| c == controller) {
                self.enable_controllers(&[controller])?;
            } else {
                let why = missing_controller_why(controller, parent, &offered, layout);
                return Err(CgroupError::ControllerMissing {
                    key: key.to_string(),
                    at: at.to_string(),
                    controller: controller.to_string(),
                    path: self.path.clone(),
                    why,
                });
            }
        }
        if !target.exists() {
            return Err(CgroupError::NoSuchLimitFile {
                key: key.to_string(),
                at: at.to_string(),
                file: file.to_string(),
                controller: controller.to_string(),
                path: self.path.clone(),
            });
        }
        fs::write(&target, value).map_err(|source| CgroupError::LimitRefused {
            key: key.to_string(),
            value: value.to_string(),
            at: at.to_string(),
            path: target.clone(),
            source,
        })?;
        tracing::debug!(?target, value, "limit set");
        Ok(())
    }

    fn apply_v1(
        &self,
        key: &str,
        value: &str,
        at: &str,
        file: &str,
        controller: &str,
        layout: Option<&Layout>,
    ) -> Result<Option<String>, CgroupError> {
        let Some(dir) = self.v1_dir_for(controller, layout) else {
            return Ok(Some(format!(
                "{at}: `{key}` ignored: no cgroup v1 hierarchy with the {controller} controller is writable by you here; use lxc.cgroup2.* keys on a cgroup v2 host"
            )));
        };
        if !dir.exists() {
            fs::create_dir(&dir).map_err(|source| CgroupError::Mkdir {
                path: dir.clone(),
                source,
            })?;
            for pid in self.pids() {
                write(&dir.join("cgroup.procs"), &pid.to_string())?;
            }
        }
        let target = dir.join(file);
        fs::write(&target, value).map_err(|source| CgroupError::LimitRefused {
            key: key.to_string(),
            value: value.to_string(),
            at: at.to_string(),
            path: target,
            source,
        })?;
        Ok(None)
    }

    /// The v1 cgroup `OWN/ulxc.payload.NAME` in the hierarchy holding `controller`, when
    /// the caller's own cgroup there is writable by it.
    fn v1_dir_for(&self, controller: &str, layout: Option<&Layout>) -> Option<PathBuf> {
        let mount = layout?.v1_mount_of(controller)?;
        let own = layout::parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").ok()?);
        let own_path = own.v1_path_of(controller)?;
        let mounts = layout::parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").ok()?);
        let base = layout::fs_path(mount, layout::mount_root(&mounts, mount), own_path)?;
        let owned = fs::metadata(&base)
            .map(|m| m.uid() == effective_uid())
            .unwrap_or(false);
        (owned && writable_by(&base.join("cgroup.procs"), effective_uid()))
            .then(|| base.join(format!("{PAYLOAD_PREFIX}{}", self.name)))
    }

    /// The v1 cgroups of this container that exist (created by `apply_limits`).
    fn v1_dirs(&self) -> Vec<PathBuf> {
        let Ok(layout) = detect_layout() else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (ctrls, _) in layout.v1() {
            let first = ctrls.split(',').next().unwrap_or(ctrls);
            if let Some(d) = self.v1_dir_for(first, Some(&layout)) {
                if d.is_dir() && !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        dirs
    }

    /// The paths the container's root (host uid of container uid 0) must own for a
    /// systemd inside to manage its subtree: the directory, `cgroup.procs`,
    /// `cgroup.subtree_control` and `cgroup.threads`.
    pub fn paths_to_chown(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.path.clone()];
        for f in ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
            let p = self.path.join(f);
            if p.exists() {
                paths.push(p);
            }
        }
        paths
    }

    /// Memory in use by the container, bytes (`memory.current`), when the memory
    /// controller is enabled for it.
    pub fn memory_current(&self) -> Option<u64> {
        fs::read_to_string(self.path.join("memory.current"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every process in the cgroup and its sub-cgroups.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = subtree(&self.path)
            .iter()
            .flat_map(|d| procs_of(d))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process of the container: through `cgroup.kill` when the kernel has
    /// it, else SIGKILL to each listed pid (repeated while new ones appear, for at most
    /// a second). Returns the pids that were signalled one by one (empty with cgroup.kill).
    pub fn kill_all(&self) -> Vec<u32> {
        let kill_file = self.path.join("cgroup.kill");
        if kill_file.exists() {
            match fs::write(&kill_file, "1") {
                Ok(()) => return Vec::new(),
                Err(e) => tracing::debug!(?kill_file, %e, "cgroup.kill failed, killing pids"),
            }
        }
        let mut killed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let pids: Vec<u32> = self
                .pids()
                .into_iter()
                .filter(|p| !killed.contains(p))
                .collect();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let Ok(raw) = i32::try_from(pid) else {
                    continue;
                };
                if let Err(e) =
                    sys::process::kill_raw(nix::unistd::Pid::from_raw(raw), libc::SIGKILL)
                {
                    tracing::debug!(pid, %e, "cannot kill");
                }
                killed.push(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        killed
    }

    /// Removes every sub-cgroup (deepest first) but not the cgroup itself. After the
    /// directory was handed to the container's root, the sub-cgroups that the
    /// container's systemd made can only be removed by that user: call this in the
    /// helper user namespace as the container's root, then [`remove`](Self::remove).
    pub fn remove_subcgroups(&self) -> Result<(), CgroupError> {
        let mut dirs = subtree(&self.path);
        dirs.remove(0);
        remove_dirs(dirs)
    }

    /// Removes the cgroup and every sub-cgroup (the container's systemd leaves some),
    /// deepest first, retrying for a few seconds while processes drain; never follows
    /// symlinks. Also removes the container's v1 cgroups and, when the caller is the
    /// monitor in `ulxc.monitor.NAME`, moves it back to the parent and removes that one.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let v1 = self.v1_dirs();
        if fs::symlink_metadata(&self.path).is_ok() {
            remove_dirs(subtree(&self.path))?;
        }
        for dir in v1 {
            remove_dirs(vec![dir])?;
        }
        self.leave_monitor();
        Ok(())
    }

    /// Best effort: moves the caller out of `ulxc.monitor.NAME` and removes it.
    fn leave_monitor(&self) {
        let Some(parent) = self.path.parent() else {
            return;
        };
        let monitor = parent.join(format!("{MONITOR_PREFIX}{}", self.name));
        if own_v2_dir().ok().as_deref() == Some(monitor.as_path()) {
            if let Err(e) = fs::write(parent.join("cgroup.procs"), std::process::id().to_string()) {
                tracing::debug!(?parent, %e, "monitor stays in its cgroup");
                return;
            }
        }
        if monitor.is_dir() && procs_of(&monitor).is_empty() {
            if let Err(e) = fs::remove_dir(&monitor) {
                tracing::debug!(?monitor, %e, "monitor cgroup not removed");
            }
        }
    }

    /// Opens the cgroup directory, e.g. for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn open_dir_fd(&self) -> Result<OwnedFd, CgroupError> {
        fs::File::open(&self.path)
            .map(OwnedFd::from)
            .map_err(|source| CgroupError::Read {
                path: self.path.clone(),
                source,
            })
    }
}

/// rmdir each of `dirs` (given parents first), deepest first, retrying on EBUSY.
fn remove_dirs(mut dirs: Vec<PathBuf>) -> Result<(), CgroupError> {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let deadline = Instant::now() + REMOVE_DEADLINE;
    for dir in dirs {
        loop {
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir,
                        pids: Vec::new(),
                        source,
                    })
                }
            }
            match fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    let owner = dir
                        .parent()
                        .and_then(|p| fs::symlink_metadata(p).ok())
                        .map(|m| m.uid())
                        .unwrap_or(u32::MAX);
                    return Err(CgroupError::RemoveDenied { path: dir, owner });
                }
                Err(source) => {
                    let pids = subtree(&dir).iter().flat_map(|d| procs_of(d)).collect();
                    return Err(CgroupError::Remove {
                        path: dir,
                        pids,
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Why `controller` is not offered in `parent` (whose cgroup.controllers is `offered`).
fn missing_controller_why(
    controller: &str,
    parent: &Path,
    offered: &str,
    layout: Option<&Layout>,
) -> String {
    if let Some(m) = layout.and_then(|l| l.v1_mount_of(controller)) {
        return format!(
            "on this host it is bound to the cgroup v1 hierarchy at {} (hybrid layout), so cgroup v2 cannot use it; use an lxc.cgroup.* (v1) key, or boot with systemd.unified_cgroup_hierarchy=1",
            m.display()
        );
    }
    let root_offers = layout
        .and_then(Layout::unified_mount)
        .and_then(|m| fs::read_to_string(m.join("cgroup.controllers")).ok())
        .map(|t| t.split_whitespace().any(|c| c == controller));
    let offered = if offered.trim().is_empty() {
        "none".to_string()
    } else {
        offered.trim().to_string()
    };
    match root_offers {
        Some(false) => "the kernel's cgroup v2 hierarchy does not offer it at all; check the key's spelling".to_string(),
        _ => format!(
            "it is not delegated to {} (its cgroup.controllers: {offered}); ask root to enable it in the subtree_control of every ancestor, or use a systemd scope with Delegate=yes",
            parent.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_controller_explains_v1_binding() {
        let layout = Layout::Hybrid {
            unified: Some(PathBuf::from("/nonexistent/unified")),
            v1: vec![("memory".into(), PathBuf::from("/sys/fs/cgroup/memory"))],
        };
        let why = missing_controller_why("memory", Path::new("/p"), "", Some(&layout));
        assert!(
            why.contains("bound to the cgroup v1 hierarchy at /sys/fs/cgroup/memory"),
            "{why}"
        );
        let why = missing_controller_why("pids", Path::new("/p"), "cpu io", Some(&layout));
        assert!(
            why.contains("not delegated to /p (its cgroup.controllers: cpu io)"),
            "{why}"
        );
    }

    #[test]
    fn subtree_and_removal_in_a_plain_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ulxc.payload.c");
        fs::create_dir_all(root.join("init.scope")).unwrap();
        fs::create_dir_all(root.join("system.slice/a.service")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("link")).unwrap();
        let all = subtree(&root);
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(!all.iter().any(|p| p.ends_with("link")));
        let cg = ContainerCgroup {
            path: root.clone(),
            name: "c".into(),
        };
        assert_eq!(cg.pids(), Vec::<u32>::new());
        assert_eq!(cg.memory_current(), None);
        fs::write(root.join("memory.current"), "4096\n").unwrap();
        assert_eq!(cg.memory_current(), Some(4096));
    }

    #[test]
    fn removal_is_depth_first_and_leaves_symlink_targets_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("keep")).unwrap();
        let root = tmp.path().join("ulxc.payload.c");
        fs::create_dir_all(root.join("system.slice/a.service")).unwrap();
        fs::create_dir_all(root.join("init.scope")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("system.slice/link")).unwrap();
        let cg = ContainerCgroup {
            path: root.clone(),
            name: "c".into(),
        };
        // The symlink is not a cgroup: its directory cannot be removed, and its target
        // must survive.
        let err = cg.remove_subcgroups().unwrap_err();
        assert!(matches!(err, CgroupError::Remove { .. }), "{err:?}");
        assert!(outside.join("keep").is_dir());
        assert!(!root.join("init.scope").exists());
        assert!(!root.join("system.slice/a.service").exists());
        fs::remove_file(root.join("system.slice/link")).unwrap();
        cg.remove_subcgroups().unwrap();
        assert!(root.is_dir());
        remove_dirs(subtree(&root)).unwrap();
        assert!(!root.exists());
        assert!(outside.join("keep").is_dir());
    }

    #[test]
    fn kill_all_without_cgroup_kill_signals_each_listed_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        fs::write(tmp.path().join("cgroup.procs"), format!("{}\n", child.id())).unwrap();
        let cg = ContainerCgroup {
            path: tmp.path().to_path_buf(),
            name: "c".into(),
        };
        assert_eq!(cg.pids(), vec![child.id()]);
        assert_eq!(cg.kill_all(), vec![child.id()]);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
