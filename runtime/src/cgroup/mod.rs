//! Cgroups: where a container's processes go, the limits written there, and finding a
//! container's cgroup again.
//!
//! ulxc puts containers only into a cgroup v2 subtree the caller may write (a *delegated*
//! subtree). [`plan`] decides among three placements: a delegated cgroup the process
//! already is in, a re-exec under `systemd-run --user --scope -p Delegate=yes` (what LXC
//! does over D-Bus, lxc#4153), or no cgroup at all with one reason for the user.
//!
//! Inside a delegated parent `P` a container `NAME` gets `P/ulxc.payload.NAME` (init and
//! everything below it; the container's systemd manages that subtree) and the monitor
//! moves to `P/ulxc.monitor.NAME`, so that `P` holds no processes and controllers can be
//! enabled in its `cgroup.subtree_control` (cgroup v2's no-internal-process rule).

mod container;
mod layout;
mod limits;
mod placement;

use std::io;
use std::path::PathBuf;

pub use container::ContainerCgroup;
pub use layout::{
    fs_path, layout_from_mounts, parse_mountinfo, parse_proc_cgroup, CgroupMount, Layout,
    ProcCgroups,
};
pub use limits::{parse_limit_key, LimitKey};
pub use placement::{detect_layout, find_existing, find_in_path, of_pid, plan, Placement};

/// Directory-name prefix of a container's own cgroup inside the delegated parent.
pub const PAYLOAD_PREFIX: &str = "ulxc.payload.";
/// Directory-name prefix of a container monitor's cgroup inside the delegated parent.
pub const MONITOR_PREFIX: &str = "ulxc.monitor.";

/// Environment variable set (to any value) on the command re-executed under
/// [`Placement::ViaSystemd`]'s argv prefix; [`plan`] then never asks for a second
/// re-exec. Same name as the start code's `IN_SCOPE_ENV`.
pub const REEXEC_ENV: &str = "ULXC_IN_DELEGATED_SCOPE";

/// What went wrong with a cgroup operation.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup file system is mounted.
    #[error("no cgroup file system is mounted (nothing in /proc/self/mountinfo); mount cgroup2 at /sys/fs/cgroup")]
    NoHierarchy,
    /// A cgroup or proc file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file could not be written.
    #[error("cannot write `{value}` to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be created.
    #[error("cannot create cgroup {path}; check that its parent is delegated to you")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("cannot remove cgroup {path}{}", if pids.is_empty() { String::new() } else { format!(" (still holds pids {})", join_pids(pids)) })]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Processes still in it (or below it) when giving up.
        pids: Vec<u32>,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A sub-cgroup lies in a directory the caller may not write (the container's root
    /// owns it after the hand-over).
    #[error("cannot remove cgroup {path}: its parent directory belongs to uid {owner}; remove the container's sub-cgroups as the container's root (ContainerCgroup::remove_subcgroups in its user namespace), then the rest")]
    RemoveDenied {
        /// The directory that could not be removed.
        path: PathBuf,
        /// Owner of its parent directory.
        owner: u32,
    },
    /// The container name cannot be part of a cgroup directory name.
    #[error("container name `{name}` cannot name a cgroup: it must be non-empty and contain no `/`, NUL or newline, and not be `.` or `..`")]
    BadName {
        /// The name.
        name: String,
    },
    /// [`ContainerCgroup::create`] was given a placement without a delegated parent.
    #[error("no delegated cgroup to create the container's cgroup in: {why}")]
    NotDelegated {
        /// Why, with what to do.
        why: String,
    },
    /// A leftover cgroup of the same name still holds processes.
    #[error("cgroup {path} still holds processes {}: the container is running or a crashed run left them; stop the container (`ulxc stop`) or kill them", join_pids(pids))]
    Busy {
        /// The cgroup.
        path: PathBuf,
        /// The processes in it and below it.
        pids: Vec<u32>,
    },
    /// A limit key is malformed or not a cgroup file.
    #[error("{at}: `{key}` is not a cgroup limit: {why}")]
    BadLimitKey {
        /// The key as written.
        key: String,
        /// Where it was written (`file:line`).
        at: String,
        /// Why.
        why: String,
    },
    /// A limit needs a controller that this cgroup does not have.
    #[error(
        "{at}: cannot apply `{key}`: the {controller} controller is not available in {path}: {why}"
    )]
    ControllerMissing {
        /// The key as written.
        key: String,
        /// Where it was written (`file:line`).
        at: String,
        /// The controller.
        controller: String,
        /// The container's cgroup.
        path: PathBuf,
        /// Why, with what to do.
        why: String,
    },
    /// A limit names a file that the cgroup does not have.
    #[error("{at}: cannot apply `{key}`: {path} has no file {file} although the {controller} controller is enabled; check the key's spelling")]
    NoSuchLimitFile {
        /// The key as written.
        key: String,
        /// Where it was written (`file:line`).
        at: String,
        /// The file name.
        file: String,
        /// The controller.
        controller: String,
        /// The container's cgroup.
        path: PathBuf,
    },
    /// The kernel refused a limit value.
    #[error("{at}: cannot set `{key} = {value}` (writing {path}); check the value's format for this file")]
    LimitRefused {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// Where it was written (`file:line`).
        at: String,
        /// The file written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Controllers could not be enabled because processes live in the parent itself.
    #[error("cannot enable controllers {controllers} in {path}/cgroup.subtree_control: processes {} live in {path} itself and cgroup v2 allows processes only in leaf cgroups once controllers are enabled; move them into a child cgroup", join_pids(pids))]
    InternalProcesses {
        /// The parent cgroup.
        path: PathBuf,
        /// The controllers asked for, space-separated.
        controllers: String,
        /// The processes in the parent.
        pids: Vec<u32>,
    },
    /// A process's cgroup is not a ulxc container cgroup.
    #[error("process {pid} is not in a ulxc container cgroup (it is in {cgroup})")]
    NotContainer {
        /// The process.
        pid: u32,
        /// Its cgroup as /proc/PID/cgroup says.
        cgroup: String,
    },
    /// A process has no cgroup v2 line, or its cgroup is outside the mounted hierarchy.
    #[error("process {pid} has no cgroup v2 path visible here (/proc/{pid}/cgroup: {detail})")]
    NoV2Cgroup {
        /// The process.
        pid: u32,
        /// What was found.
        detail: String,
    },
    /// A path given to [`ContainerCgroup::open`] is not a cgroup v2 directory.
    #[error("{path} is not a cgroup v2 directory (no cgroup.procs in it)")]
    NotACgroup {
        /// The path.
        path: PathBuf,
    },
}

/// The effective uid of the calling process, from `/proc/self/status` (no syscall
/// wrapper needed; `u32::MAX`, which owns nothing, if it cannot be read).
pub fn effective_uid() -> u32 {
    proc_status_id(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        "Uid:",
    )
    .unwrap_or(u32::MAX)
}

/// The effective id (second field) of a `Uid:`/`Gid:` line of `/proc/PID/status` text.
fn proc_status_id(status: &str, field: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Whether the calling process (effective uid `euid`) may write `path` by its owner and
/// mode bits: root always, the owner through `u+w`, others through `o+w`.
fn writable_by(path: &std::path::Path, euid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    euid == 0 || (meta.uid() == euid && meta.mode() & 0o200 != 0) || meta.mode() & 0o002 != 0
}

fn join_pids(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `name` can be part of a cgroup directory name.
fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '\n']) {
        return Err(CgroupError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_ids_from_proc_status() {
        let status = "Name:\tx\nUid:\t1000\t1001\t1001\t1001\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(proc_status_id(status, "Uid:"), Some(1001));
        assert_eq!(proc_status_id(status, "Gid:"), Some(1000));
        assert_eq!(proc_status_id("Name: x\n", "Uid:"), None);
        assert_ne!(effective_uid(), u32::MAX);
    }

    #[test]
    fn names_that_cannot_be_cgroups() {
        for bad in ["", ".", "..", "a/b", "a\nb", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("bookworm-1.2_x").unwrap();
    }
}
