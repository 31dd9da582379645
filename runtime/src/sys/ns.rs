//! Namespaces: `unshare(2)`, `setns(2)`, identity switches inside a user namespace,
//! host name.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::sched::CloneFlags as NixCloneFlags;
use nix::unistd::{Gid, Pid, Uid};

/// The namespace kinds ulxc creates and joins, in the order [`join`] enters them.
pub const JOIN_ORDER: [&str; 7] = ["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"];

fn flag_of(kind: &str) -> Result<NixCloneFlags, Errno> {
    Ok(match kind {
        "user" => NixCloneFlags::CLONE_NEWUSER,
        "mnt" => NixCloneFlags::CLONE_NEWNS,
        "pid" => NixCloneFlags::CLONE_NEWPID,
        "uts" => NixCloneFlags::CLONE_NEWUTS,
        "ipc" => NixCloneFlags::CLONE_NEWIPC,
        "net" => NixCloneFlags::CLONE_NEWNET,
        "cgroup" => NixCloneFlags::CLONE_NEWCGROUP,
        _ => return Err(Errno::EINVAL),
    })
}

/// Creates a new user namespace for the calling process.
pub fn unshare_user() -> Result<(), Errno> {
    nix::sched::unshare(NixCloneFlags::CLONE_NEWUSER)
}

/// Creates a new cgroup namespace rooted at the calling process's current cgroup.
pub fn unshare_cgroup() -> Result<(), Errno> {
    nix::sched::unshare(NixCloneFlags::CLONE_NEWCGROUP)
}

/// Creates a new mount namespace.
pub fn unshare_mount() -> Result<(), Errno> {
    nix::sched::unshare(NixCloneFlags::CLONE_NEWNS)
}

/// The open namespace files of one process, ready to be joined.
#[derive(Debug)]
pub struct NamespaceFiles {
    files: Vec<(&'static str, File)>,
}

impl NamespaceFiles {
    /// Opens `/proc/PID/ns/*` for every kind in [`JOIN_ORDER`].
    pub fn open(pid: Pid) -> std::io::Result<Self> {
        let mut files = Vec::new();
        for kind in JOIN_ORDER {
            let file = File::open(format!("/proc/{}/ns/{kind}", pid.as_raw()))?;
            files.push((kind, file));
        }
        Ok(Self { files })
    }

    /// Joins every namespace, the user namespace first (which grants the capabilities
    /// needed to join the others). The pid namespace applies to children forked later.
    /// Namespaces that are already ours are skipped (`setns` refuses to re-enter the
    /// caller's own user namespace).
    pub fn join(&self) -> Result<(), (String, Errno)> {
        for (kind, file) in &self.files {
            let own = std::fs::metadata(format!("/proc/self/ns/{kind}"))
                .map(|m| m.ino())
                .ok();
            let target = file.metadata().map(|m| m.ino()).ok();
            if own.is_some() && own == target {
                continue;
            }
            let flag = flag_of(kind).map_err(|e| (kind.to_string(), e))?;
            nix::sched::setns(file.as_fd(), flag).map_err(|e| (kind.to_string(), e))?;
        }
        Ok(())
    }
}

/// The inode number of a process's namespace of `kind`, which identifies it.
pub fn namespace_id(pid: Pid, kind: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{}/ns/{kind}", pid.as_raw()))
        .ok()
        .map(|m| m.ino())
}

/// Becomes root (uid and gid 0) inside the current user namespace and clears the
/// supplementary groups where the namespace allows `setgroups`.
pub fn become_root() -> Result<(), Errno> {
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)?;
    // setgroups is denied in namespaces whose gid map was written without privilege;
    // newgidmap allows it, but do not fail where it is not.
    match nix::unistd::setgroups(&[]) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e),
    }
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
}

/// Sets the host name in the current UTS namespace.
pub fn set_hostname(name: &str) -> Result<(), Errno> {
    nix::unistd::sethostname(name)
}
