//! The container's side of a start: what the child of the monitor does between
//! `clone3` and `exec` of init — cgroup namespace, host name, the rootfs bind mount,
//! `lxc.mount.auto`, `/dev`, `lxc.mount.entry`, `pivot_root`, capabilities, identity.
//!
//! Everything is decided before the fork ([`SetupPlan`]); the child only carries it out.
//! The rootfs is reached (bind-mounted and made the current directory) while the child
//! still has the caller's own host uid, so no ancestor of the rootfs needs to be
//! searchable by the container's root (LXC fails there: lxc#3669); after that the
//! child becomes root of its user namespace and works relative to the rootfs.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::{CgroupMount, MountAuto, ProcMount, SysMount};
use crate::sys;
use crate::sys::mount::Flags;

/// One `lxc.mount.entry` line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Source (a host path for bind mounts, a device or `none` otherwise).
    pub source: String,
    /// Target, relative to the rootfs.
    pub target: PathBuf,
    /// File system type (`none` for bind mounts).
    pub fstype: String,
    /// Options that are not flags (passed as data).
    pub data: Vec<String>,
    /// Flags from the options.
    pub flags: Flags,
    /// `optional`: a failure is logged, not fatal.
    pub optional: bool,
    /// `create=dir` / `create=file`: make the target first.
    pub create: Option<CreateKind>,
}

/// What `create=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    /// `create=dir`.
    Dir,
    /// `create=file`.
    File,
}

/// Parses an fstab-style `lxc.mount.entry` value.
pub fn parse_mount_entry(line: &str) -> Result<MountEntry, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 4 {
        return Err(format!(
            "`{line}` has {} fields; expected `SOURCE TARGET TYPE OPTIONS [0 0]`",
            fields.len()
        ));
    }
    let target = fields[1].trim_start_matches('/');
    if Path::new(target)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "target `{}` leaves the rootfs through `..`",
            fields[1]
        ));
    }
    let mut flags = Flags::empty();
    let mut data = Vec::new();
    let mut optional = false;
    let mut create = None;
    for opt in fields[3].split(',') {
        match opt {
            "bind" => flags |= Flags::MS_BIND,
            "rbind" => flags |= Flags::MS_BIND | Flags::MS_REC,
            "ro" => flags |= Flags::MS_RDONLY,
            "rw" | "defaults" => {}
            "nosuid" => flags |= Flags::MS_NOSUID,
            "nodev" => flags |= Flags::MS_NODEV,
            "noexec" => flags |= Flags::MS_NOEXEC,
            "relatime" => flags |= Flags::MS_RELATIME,
            "noatime" => flags |= Flags::MS_NOATIME,
            "optional" => optional = true,
            "create=dir" => create = Some(CreateKind::Dir),
            "create=file" => create = Some(CreateKind::File),
            other => data.push(other.to_string()),
        }
    }
    Ok(MountEntry {
        source: fields[0].to_string(),
        target: PathBuf::from(target),
        fstype: fields[2].to_string(),
        data,
        flags,
        optional,
        create,
    })
}

/// How init is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitMode {
    /// A system container: exec `argv` as PID 1 on the console.
    System,
    /// An application container (`execute`): a minimal init runs `argv` as its child,
    /// reaps orphans, forwards signals and exits with the command's status.
    Application,
}

/// Everything the child needs, decided before the fork.
#[derive(Debug)]
pub struct SetupPlan {
    /// The rootfs directory on the host.
    pub rootfs: PathBuf,
    /// The host name (`lxc.uts.name`, else the container name).
    pub hostname: String,
    /// `lxc.mount.auto`.
    pub mount_auto: MountAuto,
    /// `lxc.mount.entry` lines.
    pub mount_entries: Vec<MountEntry>,
    /// Capabilities to drop from the bounding set.
    pub drop_caps: Vec<u32>,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
    /// Init's argv.
    pub argv: Vec<String>,
    /// Init's environment (exactly this).
    pub env: Vec<(String, String)>,
    /// Init's working directory inside the container.
    pub cwd: PathBuf,
    /// The pty slave that becomes init's terminal (system mode).
    pub console: Option<OwnedFd>,
    /// The path of that pty slave on the host (`/dev/pts/N`), bind-mounted onto
    /// `/dev/console`: a bind mount's source must be reached in the child's own mount
    /// namespace, so the inherited descriptor cannot serve.
    pub console_path: Option<PathBuf>,
    /// System or application container.
    pub mode: InitMode,
    /// Bring `lo` up (the container has its own network namespace).
    pub loopback_up: bool,
    /// Static addresses and gateways to configure inside, as container root.
    pub inside_net: Vec<crate::net::InsideNic>,
}

/// Carries out `plan` in the freshly cloned child; returns only on failure, with a
/// message saying which step failed.
pub fn run_child(plan: &SetupPlan) -> String {
    match setup(plan) {
        Ok(()) => {}
        Err(msg) => return msg,
    }
    match plan.mode {
        InitMode::System => {
            let e = sys::process::exec_with_env(&plan.argv, &plan.env);
            format!("cannot execute init {:?}: {e}", plan.argv.join(" "))
        }
        InitMode::Application => application_init(plan),
    }
}

fn step<T>(what: &str, r: Result<T, sys::Errno>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn setup(plan: &SetupPlan) -> Result<(), String> {
    step(
        "cannot create the cgroup namespace",
        sys::ns::unshare_cgroup(),
    )?;
    step(
        "cannot set the host name",
        sys::ns::set_hostname(&plan.hostname),
    )?;
    step(
        "cannot make mounts private",
        sys::mount::make_rprivate_root(),
    )?;
    step(
        &format!("cannot bind-mount the rootfs {}", plan.rootfs.display()),
        sys::mount::bind(&plan.rootfs, &plan.rootfs, true),
    )?;
    step(
        &format!("cannot enter the rootfs {}", plan.rootfs.display()),
        sys::process::change_dir(&plan.rootfs),
    )?;
    let console = match &plan.console_path {
        Some(p) => Some(step(
            &format!("cannot open the console {}", p.display()),
            sys::mount::open_path(p),
        )?),
        None => None,
    };
    step(
        "cannot become root in the user namespace",
        sys::ns::become_root(),
    )?;
    configure_network(plan)?;
    mount_auto(&plan.mount_auto)?;
    populate_dev(console.as_ref())?;
    for entry in &plan.mount_entries {
        if let Err(e) = mount_entry(entry) {
            if entry.optional {
                tracing::debug!(target = ?entry.target, %e, "optional mount entry skipped");
            } else {
                return Err(e);
            }
        }
    }
    step(
        "cannot pivot_root into the rootfs",
        sys::mount::pivot_to_cwd(),
    )?;
    for cap in &plan.drop_caps {
        step(
            &format!("cannot drop capability {cap}"),
            sys::caps::drop_bounding(*cap),
        )?;
    }
    if plan.no_new_privs {
        step("cannot set no_new_privs", sys::process::set_no_new_privs())?;
    }
    if let Some(console) = &plan.console {
        if plan.mode == InitMode::System {
            step(
                "cannot attach init to the console",
                sys::pty::make_controlling_terminal(console.as_fd()),
            )?;
        }
    }
    if let Err(e) = sys::process::change_dir(&plan.cwd) {
        tracing::debug!(cwd = ?plan.cwd, %e, "init's working directory missing; using /");
    }
    Ok(())
}

/// As container root in the container's network namespace: loopback up, then the static
/// addresses and gateways of `lxc.net.N.ipv4/ipv6.*` (the interfaces exist already: the
/// helper or the user-mode stack made them before init was let go).
fn configure_network(plan: &SetupPlan) -> Result<(), String> {
    if !plan.loopback_up && plan.inside_net.is_empty() {
        return Ok(());
    }
    let mut nl = crate::net::netlink::Netlink::open()
        .map_err(|e| format!("cannot talk to the kernel's routing netlink: {e}"))?;
    if plan.loopback_up {
        nl.set_up("lo")
            .map_err(|e| format!("cannot bring the loopback interface up: {e}"))?;
    }
    for nic in &plan.inside_net {
        for (addr, prefix) in &nic.addresses {
            nl.add_address(&nic.ifname, *addr, *prefix)
                .map_err(|e| format!("cannot add {addr}/{prefix} to {}: {e}", nic.ifname))?;
        }
        if !nic.addresses.is_empty() || !nic.gateways.is_empty() {
            nl.set_up(&nic.ifname)
                .map_err(|e| format!("cannot bring {} up: {e}", nic.ifname))?;
        }
        for gw in &nic.gateways {
            nl.add_default_route(*gw)
                .map_err(|e| format!("cannot add the default route via {gw}: {e}"))?;
        }
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<(), String> {
    match std::fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "cannot create {} in the rootfs: {e}",
            path.display()
        )),
    }
}

fn ensure_file(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {} in the rootfs: {e}", path.display()))
}

const SAFE: Flags = Flags::MS_NOSUID
    .union(Flags::MS_NODEV)
    .union(Flags::MS_NOEXEC);

fn mount_auto(auto: &MountAuto) -> Result<(), String> {
    if let Some(mode) = &auto.proc {
        ensure_dir(Path::new("proc"))?;
        step(
            "cannot mount /proc",
            sys::mount::mount(Some("proc"), Path::new("proc"), Some("proc"), SAFE, None),
        )?;
        if *mode == ProcMount::Mixed {
            for ro in ["proc/sys", "proc/sysrq-trigger"] {
                let p = Path::new(ro);
                if p.exists() {
                    step(&format!("cannot bind /{ro}"), sys::mount::bind(p, p, false))?;
                    step(
                        &format!("cannot make /{ro} read-only"),
                        sys::mount::remount_bind_readonly(p, SAFE),
                    )?;
                }
            }
            bind_writable("proc/sys/net")?;
        }
    }
    if let Some(mode) = &auto.sys {
        ensure_dir(Path::new("sys"))?;
        let mut flags = SAFE;
        if matches!(mode, SysMount::Ro | SysMount::Mixed) {
            flags |= Flags::MS_RDONLY;
        }
        step(
            "cannot mount /sys",
            sys::mount::mount(Some("sysfs"), Path::new("sys"), Some("sysfs"), flags, None),
        )?;
        if *mode == SysMount::Mixed {
            bind_writable("sys/devices/virtual/net")?;
        }
    }
    if let Some(mode) = &auto.cgroup {
        let target = Path::new("sys/fs/cgroup");
        if !target.is_dir() {
            // Without a sysfs from mount.auto, give cgroup2 a place of its own.
            ensure_dir(target)?;
        }
        let mut flags = SAFE;
        if matches!(mode, CgroupMount::Ro | CgroupMount::FullRo) {
            flags |= Flags::MS_RDONLY;
        }
        let r = sys::mount::mount(Some("cgroup2"), target, Some("cgroup2"), flags, None);
        step("cannot mount the cgroup2 hierarchy at /sys/fs/cgroup", r)?;
    }
    Ok(())
}

/// Makes `path` (relative to the rootfs, below a read-only mount) writable again by
/// bind-mounting it onto itself without `MS_RDONLY`; absent paths are left alone.
fn bind_writable(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.exists() {
        return Ok(());
    }
    step(
        &format!("cannot bind /{path}"),
        sys::mount::bind(p, p, false),
    )?;
    let flags = Flags::MS_BIND | Flags::MS_REMOUNT | SAFE;
    step(
        &format!("cannot make /{path} writable"),
        sys::mount::mount(None, p, None, flags, None),
    )
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

fn populate_dev(console: Option<&std::fs::File>) -> Result<(), String> {
    let dev = Path::new("dev");
    ensure_dir(dev)?;
    step(
        "cannot mount a tmpfs on /dev",
        sys::mount::mount(
            Some("none"),
            dev,
            Some("tmpfs"),
            Flags::MS_NOSUID | Flags::MS_NOEXEC,
            Some("mode=755,size=500k"),
        ),
    )?;
    for name in DEVICES {
        let target = dev.join(name);
        ensure_file(&target)?;
        let source = Path::new("/dev").join(name);
        step(
            &format!("cannot bind {} into the container", source.display()),
            sys::mount::bind(&source, &target, false),
        )?;
    }
    let pts = dev.join("pts");
    ensure_dir(&pts)?;
    step(
        "cannot mount a private devpts on /dev/pts",
        sys::mount::mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            Flags::MS_NOSUID | Flags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ),
    )?;
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, to) in links {
        std::os::unix::fs::symlink(to, dev.join(name))
            .map_err(|e| format!("cannot create /dev/{name}: {e}"))?;
    }
    for dir in ["shm", "mqueue"] {
        ensure_dir(&dev.join(dir))?;
    }
    step(
        "cannot mount /dev/shm",
        sys::mount::mount(
            Some("shm"),
            &dev.join("shm"),
            Some("tmpfs"),
            SAFE,
            Some("mode=1777"),
        ),
    )?;
    if let Some(console) = console {
        let target = dev.join("console");
        ensure_file(&target)?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", console.as_raw_fd()));
        step(
            "cannot bind the console pty onto /dev/console",
            sys::mount::bind(&source, &target, false),
        )?;
    }
    Ok(())
}

fn mount_entry(entry: &MountEntry) -> Result<(), String> {
    let target = entry.target.as_path();
    match entry.create {
        Some(CreateKind::Dir) => ensure_dir(target)?,
        Some(CreateKind::File) => ensure_file(target)?,
        None => {}
    }
    let data = if entry.data.is_empty() {
        None
    } else {
        Some(entry.data.join(","))
    };
    let fstype = (entry.fstype != "none").then_some(entry.fstype.as_str());
    let r = sys::mount::mount(
        Some(&entry.source),
        target,
        fstype,
        entry.flags & !Flags::MS_RDONLY,
        data.as_deref(),
    );
    step(
        &format!("cannot mount {} on /{}", entry.source, target.display()),
        r,
    )?;
    if entry.flags.contains(Flags::MS_RDONLY) && entry.flags.contains(Flags::MS_BIND) {
        step(
            &format!("cannot make /{} read-only", target.display()),
            sys::mount::remount_bind_readonly(target, Flags::empty()),
        )?;
    }
    Ok(())
}

/// The minimal init of an application container: runs the command as its child,
/// forwards termination signals, reaps every orphan, and exits with the command's
/// exit status.
fn application_init(plan: &SetupPlan) -> String {
    match sys::process::fork_with_pidfd() {
        Err(e) => format!("cannot fork the command: {e}"),
        Ok(sys::process::Cloned::Child) => {
            let e = sys::process::exec_with_env(&plan.argv, &plan.env);
            eprintln!(
                "ulxc execute: cannot execute {:?}: {e}",
                plan.argv.join(" ")
            );
            sys::process::exit_now(127)
        }
        Ok(sys::process::Cloned::Parent { pid, .. }) => {
            sys::process::forward_termination_signals(pid);
            loop {
                match sys::process::wait_any() {
                    Some((reaped, code)) if reaped == pid => sys::process::exit_now(code),
                    Some(_) => continue,
                    None => sys::process::exit_now(0),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_conf_entries() {
        let e =
            parse_mount_entry("/sys/kernel/debug sys/kernel/debug none bind,optional 0 0").unwrap();
        assert_eq!(e.target, PathBuf::from("sys/kernel/debug"));
        assert!(e.optional);
        assert!(e.flags.contains(Flags::MS_BIND));
        let e = parse_mount_entry("tmpfs /run tmpfs rw,nosuid,size=10m,create=dir 0 0").unwrap();
        assert_eq!(e.target, PathBuf::from("run"));
        assert_eq!(e.create, Some(CreateKind::Dir));
        assert_eq!(e.data, vec!["size=10m".to_string()]);
        assert!(e.flags.contains(Flags::MS_NOSUID));
    }

    #[test]
    fn refuses_escaping_targets_and_short_lines() {
        assert!(parse_mount_entry("/a ../../etc none bind 0 0")
            .unwrap_err()
            .contains(".."));
        assert!(parse_mount_entry("/a b").unwrap_err().contains("2 fields"));
    }
}
