//! The logic of the setuid helper `ulxc-user-nic`: argument validation, authorisation
//! against `/etc/lxc/lxc-usernet`, the network-namespace ownership check, and the
//! creation of a veth pair whose host end goes on a bridge and whose other end is made
//! directly inside the caller's container.
//!
//! Threat model (DESIGN.md): the target network namespace is opened through
//! `/proc/PID/ns/net` with the caller's own credentials, checked to be on nsfs, checked
//! to belong to the process the pidfd pins, and checked to be owned (through its user
//! namespace) by the caller's real uid (CVE-2017-5985, CVE-2018-6556); no path given by
//! the caller is ever opened. Refusals about a pid say the same words whatever the
//! reason (CVE-2022-47952). There is no delete command: a nic stops counting when it
//! stops existing, never because a name matched (CVE-2026-39402). Privileges: the
//! effective uid is the caller's except around the database and netlink, and all ids are
//! dropped for good before anything is printed.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{Gid, Pid, Uid};

use super::netlink::{format_mac, Netlink, NetlinkError};
use super::nicdb::{Liveness, NicDb, NicDbError, NicEntry, NICDB_DIR};
use super::usernet::{Usernet, UsernetError, USERNET_PATH};
use crate::sys::netns;

/// The longest argument accepted, in bytes.
pub const MAX_ARG_BYTES: usize = 256;
/// The longest interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_BYTES: usize = 15;
/// The longest container name.
pub const MAX_CONTAINER_CHARS: usize = 64;
/// The kernel's absolute pid limit (PID_MAX_LIMIT on 64-bit).
const PID_MAX_LIMIT: u32 = 4_194_304;

/// The usage text of `--help`.
pub const USAGE: &str = "\
usage: ulxc-user-nic create PID TYPE BRIDGE CONTAINER IFNAME [--mtu N] [--hwaddr MAC]
       ulxc-user-nic list
       ulxc-user-nic --help | --version

create  makes a veth pair: one end named IFNAME inside the network namespace of PID
        (a process in a network namespace you own), the other on BRIDGE in your
        current network namespace, within your quota in /etc/lxc/lxc-usernet.
        Prints \"<host-ifname> <container-ifname>\".
list    prints your live nics: \"<bridge> <host-ifname> <container> <pid>\".";

/// A MAC address in which some hex digits may be left to chance (`x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacTemplate {
    /// The fixed nibbles (random ones are 0 here).
    pub value: [u8; 6],
    /// A set bit marks a nibble to fill randomly.
    pub random_mask: [u8; 6],
}

impl MacTemplate {
    /// The default, `00:16:3e:xx:xx:xx` (the Xen OUI that LXC uses).
    pub const DEFAULT: MacTemplate = MacTemplate {
        value: [0x00, 0x16, 0x3e, 0, 0, 0],
        random_mask: [0, 0, 0, 0xff, 0xff, 0xff],
    };

    /// Fills the random nibbles from `random`, keeping the address unicast.
    pub fn fill(&self, random: [u8; 6]) -> [u8; 6] {
        let mut mac = [0u8; 6];
        for i in 0..6 {
            mac[i] = (self.value[i] & !self.random_mask[i]) | (random[i] & self.random_mask[i]);
        }
        mac[0] &= !0x01;
        mac
    }
}

/// The arguments of `create`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// The target process (container init) as the caller sees it.
    pub pid: Pid,
    /// The nic type.
    pub nic_type: String,
    /// The host bridge.
    pub bridge: String,
    /// The container's name.
    pub container: String,
    /// The interface name inside the container.
    pub ifname: String,
    /// The MTU, or `None` for the bridge's.
    pub mtu: Option<u32>,
    /// The MAC address of the container end.
    pub mac: MacTemplate,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Make a nic.
    Create(CreateRequest),
    /// List the caller's nics.
    List,
    /// Print the usage.
    Help,
    /// Print the version.
    Version,
}

/// A command line of the wrong shape (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; see ulxc-user-nic --help")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Why a valid request was refused or failed (exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum UserNicError {
    /// The binary is not installed setuid root.
    #[error("not running with root privileges: install ulxc-user-nic setuid root (mode 4755, owner root); see .ci/install")]
    NotSetuid,
    /// An identity syscall failed.
    #[error("cannot {what}: {errno}")]
    Identity {
        /// What was being done.
        what: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// The caller's uid has no name.
    #[error("your uid {0} has no entry in the user database")]
    NoUserName(u32),
    /// The quota file is unreadable.
    #[error(transparent)]
    Usernet(#[from] UsernetError),
    /// The quota file could be written by others than root.
    #[error("refusing to use {path}: {why}; it must be owned by root and writable by nobody else")]
    UnsafeUsernet {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// No line grants this (user/groups, type, bridge).
    #[error(
        "not granted: {path} has no line for user {user} or {groups} with type {nic_type} \
         and bridge {bridge}; an administrator can add a line such as `{user} {nic_type} {bridge} 10`"
    )]
    NotGranted {
        /// The quota file.
        path: String,
        /// The caller's name.
        user: String,
        /// The caller's groups, as `groups @a, @b` (or `no groups`).
        groups: String,
        /// The type asked for.
        nic_type: String,
        /// The bridge asked for.
        bridge: String,
    },
    /// The type is granted but the helper cannot make it.
    #[error("nic type {0} is not supported by ulxc-user-nic (only veth is)")]
    UnsupportedType(String),
    /// All slots are in use.
    #[error("quota reached: {0}")]
    QuotaReached(Box<QuotaReport>),
    /// The pid is not usable, for whatever reason (the reason is not revealed).
    #[error("pid {0} is not a process in a network namespace that you own")]
    PidNotOwned(i32),
    /// The pid is in the helper's own network namespace.
    #[error("pid {0} is in your current network namespace; give the pid of a container's init, which has its own")]
    SameNetns(i32),
    /// The bridge does not exist here.
    #[error(
        "bridge {0} does not exist in your network namespace; is ulxc-net (or lxc-net) running?"
    )]
    NoBridge(String),
    /// The link exists but is not a bridge.
    #[error("{0} is not a bridge")]
    NotABridge(String),
    /// IFNAME is taken inside the container.
    #[error("the container already has an interface named {0}; choose another IFNAME")]
    IfnameTaken(String),
    /// No free host name was found.
    #[error("cannot find a free host interface name for container {0}")]
    NoFreeHostName(String),
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The database failed.
    #[error(transparent)]
    NicDb(#[from] NicDbError),
}

/// What a "quota reached" refusal tells: who and what was looked for, which lines
/// matched, and which nics count against the allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReport {
    /// The caller's name.
    pub user: String,
    /// The caller's groups, as `groups @a, @b` (or `no groups`).
    pub groups: String,
    /// The type.
    pub nic_type: String,
    /// The bridge.
    pub bridge: String,
    /// The allowance (sum of the matching lines).
    pub allowed: u64,
    /// The matching lines, `file:line: text`.
    pub lines: Vec<String>,
    /// The nics counted, as (container, host ifname).
    pub holders: Vec<(String, String)>,
}

impl std::fmt::Display for QuotaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "user {} ({}) may have {} {} nic(s) on bridge {} by {}; {} counted against it: ",
            self.user,
            self.groups,
            self.allowed,
            self.nic_type,
            self.bridge,
            self.lines.join(", "),
            self.holders.len()
        )?;
        if self.holders.is_empty() {
            write!(f, "none")?;
        } else {
            let holders: Vec<String> = self
                .holders
                .iter()
                .map(|(container, host)| format!("container {container} ({host})"))
                .collect();
            write!(f, "{}", holders.join(", "))?;
        }
        write!(
            f,
            "; stop one of these containers or ask an administrator to raise the count"
        )
    }
}

/// Checks one argument: valid UTF-8, not longer than [`MAX_ARG_BYTES`].
fn check_arg(arg: &OsString, position: usize) -> Result<String, UsageError> {
    let text = arg
        .to_str()
        .ok_or_else(|| usage(format!("argument {position} is not valid UTF-8")))?;
    if text.len() > MAX_ARG_BYTES {
        return Err(usage(format!(
            "argument {position} is {} bytes long (at most {MAX_ARG_BYTES})",
            text.len()
        )));
    }
    Ok(text.to_string())
}

/// Parses a decimal number without sign, spaces or leading zeros.
fn parse_plain_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || text.len() > 19
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

/// Validates PID: decimal, > 1, below `pid_max`.
pub fn parse_pid(text: &str, pid_max: u32) -> Result<Pid, UsageError> {
    let bad = || {
        usage(format!(
            "PID `{}` is not a process id (a decimal number from 2 to {}, without sign, \
             spaces or leading zeros)",
            text.escape_debug(),
            pid_max.saturating_sub(1)
        ))
    };
    let value = parse_plain_decimal(text).ok_or_else(bad)?;
    if value < 2 || value >= u64::from(pid_max) {
        return Err(bad());
    }
    let raw = i32::try_from(value).map_err(|_| bad())?;
    Ok(Pid::from_raw(raw))
}

/// Validates an interface name (`what` names the argument in the message).
pub fn validate_ifname(what: &str, name: &str) -> Result<(), UsageError> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_IFNAME_BYTES {
        Some(format!(
            "is {} bytes long (at most {MAX_IFNAME_BYTES})",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is not a valid interface name".to_string())
    } else {
        name.chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '/' | ':' | '%'))
            .map(|c| {
                format!(
                    "contains `{}` (interface names are printable ASCII without `/`, `:`, \
                     `%` or spaces)",
                    c.escape_debug()
                )
            })
    };
    match problem {
        Some(p) => Err(usage(format!("{what} `{}` {p}", name.escape_debug()))),
        None => Ok(()),
    }
}

/// Validates a container name: 1..=64 chars `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn validate_container(name: &str) -> Result<(), UsageError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || name.len() > MAX_CONTAINER_CHARS {
        return Err(usage(format!(
            "CONTAINER `{}` is not a container name (1 to {MAX_CONTAINER_CHARS} characters \
             from A-Z a-z 0-9 _ . -, starting with a letter or digit)",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Validates an MTU: 68..=65535.
pub fn parse_mtu(text: &str) -> Result<u32, UsageError> {
    match parse_plain_decimal(text) {
        Some(value @ 68..=65535) => Ok(u32::try_from(value).unwrap_or(65535)),
        _ => Err(usage(format!(
            "MTU `{}` is not a number from 68 to 65535",
            text.escape_debug()
        ))),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` where any hex digit may be `x` (random); refuses
/// multicast and all-zero addresses.
pub fn parse_mac(text: &str) -> Result<MacTemplate, UsageError> {
    let bad = |why: &str| {
        usage(format!(
            "MAC `{}` {why} (expected aa:bb:cc:dd:ee:ff in hex, `x` for a random digit)",
            text.escape_debug()
        ))
    };
    let octets: Vec<&str> = text.split(':').collect();
    if octets.len() != 6 || octets.iter().any(|o| o.len() != 2) {
        return Err(bad("is not a MAC address"));
    }
    let mut template = MacTemplate {
        value: [0; 6],
        random_mask: [0; 6],
    };
    for (i, octet) in octets.iter().enumerate() {
        for (j, digit) in octet.chars().enumerate() {
            let shift = if j == 0 { 4 } else { 0 };
            if digit == 'x' || digit == 'X' {
                template.random_mask[i] |= 0x0f << shift;
            } else {
                let value = digit
                    .to_digit(16)
                    .ok_or_else(|| bad("is not a MAC address"))?;
                template.value[i] |= u8::try_from(value).unwrap_or(0) << shift;
            }
        }
    }
    if template.value[0] & 0x01 != 0 {
        return Err(bad("is a multicast address"));
    }
    if template.random_mask == [0; 6] && template.value == [0; 6] {
        return Err(bad("is all zero"));
    }
    Ok(template)
}

/// Parses the command line (without the program name). Every argument is checked to be
/// UTF-8 and short before anything else.
pub fn parse_args(args: &[OsString], pid_max: u32) -> Result<Command, UsageError> {
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| check_arg(a, i + 1))
        .collect::<Result<_, _>>()?;
    let Some(command) = args.first() else {
        return Err(usage("no command given"));
    };
    match command.as_str() {
        "--help" | "-h" | "help" if args.len() == 1 => Ok(Command::Help),
        "--version" if args.len() == 1 => Ok(Command::Version),
        "list" if args.len() == 1 => Ok(Command::List),
        "--help" | "-h" | "help" | "--version" | "list" => {
            Err(usage(format!("`{command}` takes no arguments")))
        }
        "create" => parse_create(&args[1..], pid_max),
        other => Err(usage(format!("unknown command `{}`", other.escape_debug()))),
    }
}

fn parse_create(args: &[String], pid_max: u32) -> Result<Command, UsageError> {
    if args.len() < 5 {
        return Err(usage(format!(
            "create needs PID TYPE BRIDGE CONTAINER IFNAME, got {} argument(s)",
            args.len()
        )));
    }
    let pid = parse_pid(&args[0], pid_max)?;
    let nic_type = args[1].clone();
    if nic_type.is_empty()
        || !nic_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(usage(format!(
            "TYPE `{}` is not a nic type",
            nic_type.escape_debug()
        )));
    }
    validate_ifname("BRIDGE", &args[2])?;
    validate_container(&args[3])?;
    validate_ifname("IFNAME", &args[4])?;
    let mut mtu = None;
    let mut mac = None;
    let mut rest = args[5..].iter();
    while let Some(option) = rest.next() {
        match option.as_str() {
            "--mtu" if mtu.is_none() => {
                let value = rest.next().ok_or_else(|| usage("--mtu needs a value"))?;
                mtu = Some(parse_mtu(value)?);
            }
            "--hwaddr" if mac.is_none() => {
                let value = rest.next().ok_or_else(|| usage("--hwaddr needs a value"))?;
                mac = Some(parse_mac(value)?);
            }
            "--mtu" | "--hwaddr" => return Err(usage(format!("{option} given twice"))),
            other => {
                return Err(usage(format!(
                    "unexpected argument `{}` after IFNAME",
                    other.escape_debug()
                )))
            }
        }
    }
    Ok(Command::Create(CreateRequest {
        pid,
        nic_type,
        bridge: args[2].clone(),
        container: args[3].clone(),
        ifname: args[4].clone(),
        mtu,
        mac: mac.unwrap_or(MacTemplate::DEFAULT),
    }))
}

/// The kernel's pid_max, or its absolute limit if it cannot be read.
pub fn read_pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(PID_MAX_LIMIT)
}

/// The host-end name for `container` with the random suffix `suffix`:
/// `v` + up to 9 characters of the name (others than `[A-Za-z0-9_-]` as `_`) + `-` +
/// 4 hex digits.
pub fn host_ifname(container: &str, suffix: u16) -> String {
    let stem: String = container
        .chars()
        .take(9)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("v{stem}-{suffix:04x}")
}

/// The caller, as the helper sees them.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Real uid.
    pub uid: Uid,
    /// Real gid.
    pub gid: Gid,
    /// Login name.
    pub name: String,
    /// Names of the supplementary groups (as LXC, `getgroups(2)`).
    pub groups: Vec<String>,
}

impl Caller {
    fn groups_text(&self) -> String {
        if self.groups.is_empty() {
            "no groups".into()
        } else {
            format!(
                "groups {}",
                self.groups
                    .iter()
                    .map(|g| format!("@{g}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// The privilege state of the setuid helper: effective uid = the caller's, saved uid 0.
#[derive(Debug)]
pub struct Privileges {
    caller: Uid,
    gid: Gid,
    root_available: bool,
}

impl Privileges {
    /// At the very start: sets the effective uid to the real uid (the saved uid stays 0
    /// when the helper is setuid root). Does not fail when the helper is not setuid, so
    /// that `--help` and usage errors still work; [`Privileges::as_root`] then refuses.
    pub fn enter() -> Result<Privileges, UserNicError> {
        let ids = netns::user_ids().map_err(|errno| UserNicError::Identity {
            what: "read the process ids",
            errno,
        })?;
        let root = Uid::from_raw(0);
        let root_available = ids.effective == root || ids.saved == root;
        if root_available {
            netns::set_user_ids(ids.real, ids.real, root).map_err(|errno| {
                UserNicError::Identity {
                    what: "switch to the caller's uid",
                    errno,
                }
            })?;
        }
        Ok(Privileges {
            caller: ids.real,
            gid: netns::real_gid(),
            root_available,
        })
    }

    /// Runs `f` as root (real, effective and saved uid 0, effective gid 0), then returns
    /// to the caller's uid (saved uid 0). The real uid is root too while `f` runs, so
    /// the caller cannot stop or kill the helper while it holds the database lock.
    pub fn as_root<T>(
        &self,
        f: impl FnOnce() -> Result<T, UserNicError>,
    ) -> Result<T, UserNicError> {
        if !self.root_available {
            return Err(UserNicError::NotSetuid);
        }
        let identity = |what| move |errno| UserNicError::Identity { what, errno };
        let root = Uid::from_raw(0);
        netns::set_user_ids(root, root, root).map_err(identity("regain root"))?;
        netns::set_effective_gid(Gid::from_raw(0)).map_err(identity("regain group root"))?;
        let result = f();
        netns::set_effective_gid(self.gid).map_err(identity("switch back to your gid"))?;
        netns::set_user_ids(self.caller, self.caller, root)
            .map_err(identity("switch back to your uid"))?;
        result
    }

    /// Drops all ids to the caller's for good.
    pub fn drop_for_good(&self) -> Result<(), UserNicError> {
        netns::drop_privileges_for_good(self.caller, self.gid).map_err(|errno| {
            UserNicError::Identity {
                what: "drop privileges",
                errno,
            }
        })
    }

    /// Who the caller is (real ids, name and supplementary groups).
    pub fn caller(&self) -> Result<Caller, UserNicError> {
        let name =
            netns::user_name(self.caller).ok_or(UserNicError::NoUserName(self.caller.as_raw()))?;
        let gids = netns::supplementary_groups().map_err(|errno| UserNicError::Identity {
            what: "read your groups",
            errno,
        })?;
        let mut groups = Vec::new();
        for gid in gids {
            if let Some(group) = netns::group_name(gid) {
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
        }
        Ok(Caller {
            uid: self.caller,
            gid: self.gid,
            name,
            groups,
        })
    }
}

/// The system side of the database's liveness checks.
struct SystemLiveness<'a> {
    netlink: &'a mut Netlink,
    own_netns: u64,
}

impl Liveness for SystemLiveness<'_> {
    fn current_netns(&mut self) -> u64 {
        self.own_netns
    }
    fn host_link_is(&mut self, name: &str, ifindex: u32) -> bool {
        match self.netlink.link_index(name) {
            Ok(Some(index)) => ifindex == 0 || index == ifindex,
            Ok(None) => false,
            // Cannot tell: keep counting it.
            Err(_) => true,
        }
    }
    fn process(&mut self, pid: i32) -> Option<(u64, u64)> {
        let pid = Pid::from_raw(pid);
        let start = crate::sys::process::process_start_time(pid)?;
        let netns = netns::netns_inode_of(pid)?;
        Some((start, netns))
    }
}

fn own_netns_inode() -> Result<u64, UserNicError> {
    let fd = netns::open_own_netns().map_err(|errno| UserNicError::Identity {
        what: "open your network namespace",
        errno,
    })?;
    netns::namespace_inode(fd.as_fd()).map_err(|errno| UserNicError::Identity {
        what: "inspect your network namespace",
        errno,
    })
}

/// The target's network namespace, checked (run with the caller's effective uid).
struct Target {
    pidfd: OwnedFd,
    netns: OwnedFd,
    netns_inode: u64,
}

/// The heart of the helper: opens the network namespace of `pid` with the caller's
/// rights and checks it is a namespace, still that process's, and owned by the caller.
fn open_target(pid: Pid, caller: Uid, own_netns: u64) -> Result<Target, UserNicError> {
    let refused = || UserNicError::PidNotOwned(pid.as_raw());
    let pidfd = netns::open_pidfd(pid).map_err(|_| refused())?;
    let netns_fd = netns::open_netns_of(pid).map_err(|_| refused())?;
    if !netns::is_on_nsfs(netns_fd.as_fd()).unwrap_or(false) {
        return Err(refused());
    }
    if !netns::pidfd_is_alive(pidfd.as_fd()).unwrap_or(false) {
        return Err(refused());
    }
    let userns = netns::owning_userns(netns_fd.as_fd()).map_err(|_| refused())?;
    let owner = netns::userns_owner_uid(userns.as_fd()).map_err(|_| refused())?;
    if owner != caller {
        return Err(refused());
    }
    let netns_inode = netns::namespace_inode(netns_fd.as_fd()).map_err(|_| refused())?;
    if netns_inode == own_netns {
        return Err(UserNicError::SameNetns(pid.as_raw()));
    }
    Ok(Target {
        pidfd,
        netns: netns_fd,
        netns_inode,
    })
}

fn check_usernet_file(path: &Path) -> Result<(), UserNicError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| UsernetError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let why = if meta.uid() != 0 {
        Some(format!("it is owned by uid {}", meta.uid()))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "its mode {:04o} lets others write to it",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(UserNicError::UnsafeUsernet {
            path: path.display().to_string(),
            why,
        }),
        None => Ok(()),
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Performs `create`; returns the line to print (`<host-ifname> <container-ifname>`).
/// Warnings (malformed quota lines) are passed to `warn`.
pub fn create(
    privileges: &Privileges,
    request: &CreateRequest,
    warn: &mut dyn FnMut(&str),
) -> Result<String, UserNicError> {
    let caller = privileges.caller()?;
    let usernet_path = Path::new(USERNET_PATH);
    let usernet = privileges.as_root(|| {
        check_usernet_file(usernet_path)?;
        Ok(Usernet::read(usernet_path)?)
    })?;
    for warning in &usernet.warnings {
        warn(warning);
    }
    let allowance = usernet.allowance(
        &caller.name,
        &caller.groups,
        &request.nic_type,
        &request.bridge,
    );
    if allowance.matched.is_empty() {
        return Err(UserNicError::NotGranted {
            path: usernet.path.clone(),
            user: caller.name.clone(),
            groups: caller.groups_text(),
            nic_type: request.nic_type.clone(),
            bridge: request.bridge.clone(),
        });
    }
    if request.nic_type != "veth" {
        return Err(UserNicError::UnsupportedType(request.nic_type.clone()));
    }
    let own_netns = own_netns_inode()?;
    // With the caller's own rights: the kernel's ptrace-read check guards the open.
    let target = open_target(request.pid, caller.uid, own_netns)?;

    privileges.as_root(|| {
        let mut netlink = Netlink::open()?;
        if netlink.link_index(&request.bridge)?.is_none() {
            return Err(UserNicError::NoBridge(request.bridge.clone()));
        }
        if !netlink.is_bridge(&request.bridge)? {
            return Err(UserNicError::NotABridge(request.bridge.clone()));
        }
        let mtu = match request.mtu {
            Some(mtu) => Some(mtu),
            None => netlink.link_mtu(&request.bridge)?,
        };
        let mut db = NicDb::open(
            Path::new(NICDB_DIR),
            &mut SystemLiveness {
                netlink: &mut netlink,
                own_netns,
            },
        )?;
        for warning in &db.warnings {
            warn(warning);
        }
        let held: Vec<&NicEntry> = db
            .entries()
            .iter()
            .filter(|e| {
                e.uid == caller.uid.as_raw()
                    && e.nic_type == request.nic_type
                    && e.bridge == request.bridge
            })
            .collect();
        if u64::try_from(held.len()).unwrap_or(u64::MAX) >= allowance.total {
            return Err(UserNicError::QuotaReached(Box::new(QuotaReport {
                user: caller.name.clone(),
                groups: caller.groups_text(),
                nic_type: request.nic_type.clone(),
                bridge: request.bridge.clone(),
                allowed: allowance.total,
                lines: allowance.matched.clone(),
                holders: held
                    .iter()
                    .map(|e| (e.container.clone(), e.host_ifname.clone()))
                    .collect(),
            })));
        }
        // The start time read now belongs to the pinned process only if it is still alive
        // afterwards.
        let start_time = crate::sys::process::process_start_time(request.pid).unwrap_or_default();
        if !netns::pidfd_is_alive(target.pidfd.as_fd()).unwrap_or(false) {
            return Err(UserNicError::PidNotOwned(request.pid.as_raw()));
        }
        let mac = loop {
            let mac = request.mac.fill(rand::random());
            if mac != [0; 6] {
                break mac;
            }
        };
        for _ in 0..16 {
            let host = host_ifname(&request.container, rand::random());
            if netlink.link_index(&host)?.is_some()
                || db.entries().iter().any(|e| e.host_ifname == host)
            {
                continue;
            }
            db.add(NicEntry {
                uid: caller.uid.as_raw(),
                nic_type: request.nic_type.clone(),
                bridge: request.bridge.clone(),
                host_ifname: host.clone(),
                host_ifindex: 0,
                host_netns: own_netns,
                pid: request.pid.as_raw(),
                start_time,
                target_netns: target.netns_inode,
                created: now_seconds(),
                container: request.container.clone(),
            })?;
            let created = netlink.create_veth_into(
                &host,
                &request.ifname,
                target.netns.as_fd(),
                mtu,
                Some(mac),
            );
            match created {
                Ok(()) => {}
                Err(e) if e.errno() == Some(Errno::EEXIST) => {
                    db.remove_pending(&host)?;
                    if netlink.link_index(&host)?.is_some() {
                        continue;
                    }
                    return Err(UserNicError::IfnameTaken(request.ifname.clone()));
                }
                Err(e) => {
                    db.remove_pending(&host)?;
                    return Err(e.into());
                }
            }
            let finish = |netlink: &mut Netlink| -> Result<u32, NetlinkError> {
                netlink.set_master(&host, &request.bridge)?;
                netlink.set_up(&host)?;
                netlink.link_index(&host)?.ok_or(NetlinkError::NoSuchLink {
                    operation: "reading the new host interface".into(),
                    name: host.clone(),
                })
            };
            match finish(&mut netlink) {
                Ok(index) => db.set_ifindex(&host, index)?,
                Err(e) => {
                    let _ = netlink.delete_link(&host);
                    db.remove_pending(&host)?;
                    return Err(e.into());
                }
            }
            tracing::debug!(host, mac = format_mac(mac), "nic created");
            return Ok(format!("{host} {}", request.ifname));
        }
        Err(UserNicError::NoFreeHostName(request.container.clone()))
    })
}

/// Performs `list`: the caller's live nics, one line each.
pub fn list(privileges: &Privileges, warn: &mut dyn FnMut(&str)) -> Result<String, UserNicError> {
    let own_netns = own_netns_inode()?;
    privileges.as_root(|| {
        let mut netlink = Netlink::open()?;
        let db = NicDb::open(
            Path::new(NICDB_DIR),
            &mut SystemLiveness {
                netlink: &mut netlink,
                own_netns,
            },
        )?;
        for warning in &db.warnings {
            warn(warning);
        }
        let mut out = String::new();
        for e in db
            .entries()
            .iter()
            .filter(|e| e.uid == privileges.caller.as_raw())
        {
            out.push_str(&format!(
                "{} {} {} {}\n",
                e.bridge, e.host_ifname, e.container, e.pid
            ));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn create_with(extra: &[&str]) -> Result<Command, UsageError> {
        let mut a = vec!["create", "1234", "veth", "lxcbr0", "c1", "eth0"];
        a.extend_from_slice(extra);
        parse_args(&args(&a), 32768)
    }

    #[test]
    fn a_good_create_line_parses() {
        let Command::Create(r) =
            create_with(&["--mtu", "1400", "--hwaddr", "00:16:3e:xx:xx:01"]).unwrap()
        else {
            panic!("not create")
        };
        assert_eq!(r.pid, Pid::from_raw(1234));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.mac.random_mask, [0, 0, 0, 0xff, 0xff, 0]);
        assert_eq!(r.mac.fill([0xff; 6]), [0x00, 0x16, 0x3e, 0xff, 0xff, 0x01]);
        assert_eq!(parse_args(&args(&["list"]), 32768), Ok(Command::List));
        assert_eq!(parse_args(&args(&["--help"]), 32768), Ok(Command::Help));
    }

    #[test]
    fn bad_pids_are_usage_errors() {
        for pid in [
            "0",
            "-1",
            "1",
            "abc",
            "12a",
            "+5",
            " 5",
            "5 ",
            "05",
            "99999999999",
            "",
            "../../self",
            "self",
            "1/../5",
            "32768",
        ] {
            assert!(parse_pid(pid, 32768).is_err(), "{pid:?} accepted");
        }
        assert_eq!(parse_pid("2", 32768), Ok(Pid::from_raw(2)));
        assert_eq!(parse_pid("32767", 32768), Ok(Pid::from_raw(32767)));
    }

    #[test]
    fn bad_names_are_usage_errors() {
        for name in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a:b",
            "eth%d",
            "0123456789abcdef",
            "tab\t",
            "é",
        ] {
            assert!(
                validate_ifname("BRIDGE", name).is_err(),
                "{name:?} accepted"
            );
        }
        assert!(validate_ifname("BRIDGE", "0123456789abcde").is_ok());
        assert!(validate_ifname("IFNAME", "eth0").is_ok());
        for name in ["", "-a", ".a", "a b", "a/b", &"a".repeat(65)] {
            assert!(validate_container(name).is_err(), "{name:?} accepted");
        }
        assert!(validate_container(&"a".repeat(64)).is_ok());
        assert!(validate_container("web-1.test_x").is_ok());
    }

    #[test]
    fn mtu_and_mac_are_checked() {
        for mtu in ["67", "65536", "0", "01500", "-1", "abc", ""] {
            assert!(parse_mtu(mtu).is_err(), "{mtu:?} accepted");
        }
        assert_eq!(parse_mtu("68"), Ok(68));
        assert_eq!(parse_mtu("65535"), Ok(65535));
        for mac in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "00:16:3e:00:00",
            "00:16:3e:0g:00:00",
            "0:16:3e:00:00:00:00",
            "00-16-3e-00-00-01",
        ] {
            assert!(parse_mac(mac).is_err(), "{mac:?} accepted");
        }
        // A random low nibble in the first octet never yields multicast.
        let t = parse_mac("0x:00:00:00:00:01").unwrap();
        assert_eq!(t.fill([0xff; 6])[0] & 1, 0);
    }

    #[test]
    fn shapes_are_checked_before_anything() {
        assert!(parse_args(&[], 32768).is_err());
        assert!(parse_args(&args(&["create", "1234", "veth", "lxcbr0", "c1"]), 32768).is_err());
        assert!(create_with(&["extra"]).is_err());
        assert!(create_with(&["--mtu"]).is_err());
        assert!(create_with(&["--mtu", "1500", "--mtu", "1500"]).is_err());
        assert!(parse_args(&args(&["list", "x"]), 32768).is_err());
        assert!(parse_args(&args(&["delete"]), 32768).is_err());
        let long = "a".repeat(300);
        let e = parse_args(
            &args(&["create", "1234", "veth", "lxcbr0", &long, "eth0"]),
            32768,
        )
        .unwrap_err();
        assert!(e.0.contains("300 bytes"), "{e}");
        use std::os::unix::ffi::OsStringExt;
        let mut bad = args(&["create", "1234", "veth", "lxcbr0", "c1", "eth0"]);
        bad[3] = OsString::from_vec(vec![b'l', 0xff, b'x']);
        assert!(parse_args(&bad, 32768).unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn host_names_fit_ifnamsiz() {
        assert_eq!(host_ifname("c1", 0xab), "vc1-00ab");
        let long = host_ifname("a.very.long.container.name", 0xffff);
        assert_eq!(long, "va_very_lo-ffff");
        assert_eq!(long.len(), 15);
        assert!(validate_ifname("host", &long).is_ok());
    }
}
