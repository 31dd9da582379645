//! The typed container configuration built from [`RawConfig`], with each value's grammar checked.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::keys::{self, KeyClass};
use super::parse::legacy_warning;
use super::{signal_from_name, ConfigError, Located, Location, RawConfig, RawItem};
use crate::idmap::IdMapLine;

/// How `/proc` is mounted (`lxc.mount.auto = proc:...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcMount {
    /// `proc:mixed` (and bare `proc`): `/proc` rw, `/proc/sys` and `/proc/sysrq-trigger` ro.
    Mixed,
    /// `proc:rw`.
    Rw,
}

/// How `/sys` is mounted (`lxc.mount.auto = sys:...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysMount {
    /// `sys:ro`.
    Ro,
    /// `sys:rw`.
    Rw,
    /// `sys:mixed` (and bare `sys`): ro, with `/sys/devices/virtual/net` writable.
    Mixed,
}

/// How cgroups are mounted (`lxc.mount.auto = cgroup...`); `:force` is in
/// [`MountAuto::cgroup_force`].
///
/// LXC's bare `cgroup` / `cgroup-full` pick rw when the container keeps `CAP_SYS_ADMIN` and
/// mixed otherwise; [`ContainerConfig::from_raw`] resolves that from `lxc.cap.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMount {
    /// `cgroup:mixed`: the container's own cgroup writable, the rest read-only.
    Mixed,
    /// `cgroup:ro`.
    Ro,
    /// `cgroup:rw`.
    Rw,
    /// `cgroup-full:mixed`.
    FullMixed,
    /// `cgroup-full:ro`.
    FullRo,
    /// `cgroup-full:rw`.
    FullRw,
}

/// The `lxc.mount.auto` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountAuto {
    /// `/proc`.
    pub proc: Option<ProcMount>,
    /// `/sys`.
    pub sys: Option<SysMount>,
    /// `/sys/fs/cgroup`.
    pub cgroup: Option<CgroupMount>,
    /// A `:force` cgroup variant: mount even when the container has `CAP_SYS_ADMIN`.
    pub cgroup_force: bool,
    /// `shmounts:HOSTPATH[:CONTAINERPATH]` (container path defaults to `/dev/.lxc-mounts`).
    pub shmounts: Option<(String, String)>,
}

/// `lxc.net.N.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetType {
    /// `empty`: only loopback.
    Empty,
    /// `none`: share the host's network namespace.
    None,
    /// `veth`: a veth pair, host end on a bridge.
    Veth,
    /// `macvlan`.
    Macvlan,
    /// `ipvlan`.
    Ipvlan,
    /// `vlan`.
    Vlan,
    /// `phys`: move a host device in.
    Phys,
    /// `usermode`: ulxc's no-privilege networking through pasta, or slirp4netns where
    /// pasta is not installed.
    Usermode,
    /// `pasta`: no-privilege networking through pasta (package passt).
    Pasta,
    /// `slirp4netns`: no-privilege networking through slirp4netns.
    Slirp4netns,
}

impl NetType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "empty" => NetType::Empty,
            "none" => NetType::None,
            "veth" => NetType::Veth,
            "macvlan" => NetType::Macvlan,
            "ipvlan" => NetType::Ipvlan,
            "vlan" => NetType::Vlan,
            "phys" => NetType::Phys,
            "usermode" => NetType::Usermode,
            "pasta" => NetType::Pasta,
            "slirp4netns" => NetType::Slirp4netns,
            _ => return None,
        })
    }
}

/// One network interface, `lxc.net.N.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// N.
    pub index: u32,
    /// `type`.
    pub kind: NetType,
    /// `link`: the host bridge or device.
    pub link: Option<String>,
    /// `flags = up`.
    pub flags_up: bool,
    /// `name`: the name inside the container.
    pub name: Option<String>,
    /// `hwaddr`, possibly with `x` placeholders to fill at random.
    pub hwaddr: Option<String>,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `veth.pair`: the host-side name.
    pub veth_pair: Option<String>,
    /// `ipv4.address` entries (`ADDR/PREFIX [BROADCAST]`).
    pub ipv4: Vec<String>,
    /// `ipv4.gateway` (an address, `auto` or `dev`).
    pub ipv4_gateway: Option<String>,
    /// `ipv6.address` entries (`ADDR/PREFIX`).
    pub ipv6: Vec<String>,
    /// `ipv6.gateway` (an address, `auto` or `dev`).
    pub ipv6_gateway: Option<String>,
    /// Other checked sub-keys in order (`script.up`, `vlan.id`, `macvlan.mode`, `veth.mode`, ...).
    pub extra: Vec<(String, String)>,
    /// Where the interface's first key is.
    pub at: Location,
}

/// A container's configuration, typed. See the module documentation for which keys are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// `lxc.rootfs.path`, `dir:` prefix stripped.
    pub rootfs_path: Option<Located<PathBuf>>,
    /// `lxc.uts.name`.
    pub uts_name: Option<String>,
    /// `lxc.idmap` lines.
    pub idmaps: Vec<Located<IdMapLine>>,
    /// `lxc.mount.auto`.
    pub mount_auto: MountAuto,
    /// `lxc.mount.entry` lines, raw fstab format.
    pub mount_entries: Vec<Located<String>>,
    /// `lxc.mount.fstab`.
    pub mount_fstab: Option<Located<PathBuf>>,
    /// `lxc.cap.drop`: lower-case names without `cap_` (or numbers).
    pub cap_drop: Vec<String>,
    /// `lxc.cap.keep`: lower-case names without `cap_` (or numbers; `none` keeps nothing).
    pub cap_keep: Vec<String>,
    /// `lxc.init.cmd`, split like a shell word list (quotes respected).
    pub init_cmd: Option<Vec<String>>,
    /// `lxc.init.cwd`.
    pub init_cwd: Option<PathBuf>,
    /// `lxc.init.uid`.
    pub init_uid: Option<u32>,
    /// `lxc.init.gid`.
    pub init_gid: Option<u32>,
    /// `lxc.signal.halt` as a number.
    pub signal_halt: Option<i32>,
    /// `lxc.signal.reboot` as a number.
    pub signal_reboot: Option<i32>,
    /// `lxc.signal.stop` as a number.
    pub signal_stop: Option<i32>,
    /// `lxc.net.N.*`, sorted by index.
    pub net: Vec<NetConfig>,
    /// `lxc.cgroup2.KEY = VALUE` in order.
    pub cgroup2: Vec<Located<(String, String)>>,
    /// `lxc.cgroup.CONTROLLER.KEY = VALUE` (cgroup v1) in order.
    pub cgroup1: Vec<Located<(String, String)>>,
    /// `lxc.environment`; a bare `NAME` takes the value from the caller's environment.
    pub environment: Vec<(String, String)>,
    /// `lxc.tty.max` (default 0).
    pub tty_max: u32,
    /// `lxc.pty.max`.
    pub pty_max: Option<u32>,
    /// `lxc.start.auto`.
    pub start_auto: bool,
    /// `lxc.start.delay` in seconds.
    pub start_delay: u32,
    /// `lxc.start.order`.
    pub start_order: i32,
    /// `lxc.group`.
    pub groups: Vec<String>,
    /// `lxc.arch`.
    pub arch: Option<String>,
    /// `lxc.autodev` (default on, as in LXC).
    pub autodev: bool,
    /// `lxc.console.path`.
    pub console_path: Option<String>,
    /// `lxc.console.logfile`.
    pub console_logfile: Option<PathBuf>,
    /// `lxc.log.file`.
    pub log_file: Option<PathBuf>,
    /// `lxc.log.level`, lower case (`trace` ... `fatal`) or a number 0-8.
    pub log_level: Option<String>,
    /// `lxc.sysctl.KEY = VALUE` (a later line for the same key replaces it).
    pub sysctls: Vec<(String, String)>,
    /// `lxc.prlimit.RESOURCE = SOFT[:HARD]` (a later line for the same resource replaces it).
    pub prlimits: Vec<(String, String)>,
    /// `lxc.no_new_privs`.
    pub no_new_privs: bool,
    /// `lxc.hook.NAME = COMMAND` as (NAME, COMMAND).
    pub hooks: Vec<Located<(String, String)>>,
    /// Keys accepted without effect (see [`super::ignored_reason`]).
    pub ignored: Vec<Located<String>>,
    /// Legacy-key warnings, one line each.
    pub warnings: Vec<String>,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            rootfs_path: None,
            uts_name: None,
            idmaps: Vec::new(),
            mount_auto: MountAuto::default(),
            mount_entries: Vec::new(),
            mount_fstab: None,
            cap_drop: Vec::new(),
            cap_keep: Vec::new(),
            init_cmd: None,
            init_cwd: None,
            init_uid: None,
            init_gid: None,
            signal_halt: None,
            signal_reboot: None,
            signal_stop: None,
            net: Vec::new(),
            cgroup2: Vec::new(),
            cgroup1: Vec::new(),
            environment: Vec::new(),
            tty_max: 0,
            pty_max: None,
            start_auto: false,
            start_delay: 0,
            start_order: 0,
            groups: Vec::new(),
            arch: None,
            autodev: true,
            console_path: None,
            console_logfile: None,
            log_file: None,
            log_level: None,
            sysctls: Vec::new(),
            prlimits: Vec::new(),
            no_new_privs: false,
            hooks: Vec::new(),
            ignored: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Capability names LXC accepts (lower case, without `cap_`): the kernel's, as
/// [`crate::sys::caps`] numbers them.
const CAPS: &[&str] = &crate::sys::caps::CAPABILITY_NAMES;

/// Architectures LXC's `lxc.arch` accepts.
const ARCHES: &[&str] = &[
    "arm",
    "armel",
    "armhf",
    "armv7l",
    "athlon",
    "i386",
    "i486",
    "i586",
    "i686",
    "linux32",
    "mips",
    "mipsel",
    "ppc",
    "powerpc",
    "x86",
    "aarch64",
    "amd64",
    "arm64",
    "linux64",
    "mips64",
    "mips64el",
    "ppc64",
    "ppc64el",
    "ppc64le",
    "powerpc64",
    "riscv64",
    "s390x",
    "x86_64",
];

const LOG_LEVELS: &[&str] = &[
    "trace", "debug", "info", "notice", "warn", "error", "crit", "alert", "fatal",
];

fn bad(item: &RawItem, expected: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        at: item.at.clone(),
        key: item.key.clone(),
        value: item.value.clone(),
        expected: expected.into(),
    }
}

fn located<T>(item: &RawItem, value: T) -> Located<T> {
    Located {
        value,
        at: item.at.clone(),
    }
}

fn boolean(item: &RawItem) -> Result<bool, ConfigError> {
    match item.value.as_str() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad(item, "0 or 1")),
    }
}

fn number<T: std::str::FromStr>(item: &RawItem, what: &str) -> Result<T, ConfigError> {
    item.value
        .parse::<T>()
        .map_err(|_| bad(item, what.to_string()))
}

fn optional<T>(
    item: &RawItem,
    f: impl FnOnce(&RawItem) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    if item.value.is_empty() {
        Ok(None)
    } else {
        f(item).map(Some)
    }
}

fn signal(item: &RawItem) -> Result<Option<i32>, ConfigError> {
    optional(item, |i| {
        signal_from_name(&i.value).ok_or_else(|| {
            bad(
                i,
                "a signal name or number, e.g. SIGPWR, PWR, SIGRTMIN+3 or 30",
            )
        })
    })
}

/// Check a MAC address; `x` stands for a random hex digit.
fn valid_hwaddr(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == 'x' || c == 'X')
        })
}

fn valid_ipv4_address(s: &str) -> bool {
    let mut words = s.split_whitespace();
    let Some(addr) = words.next() else {
        return false;
    };
    let bcast_ok = words.next().is_none_or(|b| b.parse::<Ipv4Addr>().is_ok());
    let (ip, prefix) = addr.split_once('/').unwrap_or((addr, "32"));
    bcast_ok
        && words.next().is_none()
        && ip.parse::<Ipv4Addr>().is_ok()
        && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
}

fn valid_ipv6_address(s: &str) -> bool {
    let (ip, prefix) = s.split_once('/').unwrap_or((s, "64"));
    ip.parse::<Ipv6Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
}

/// Split a command line into words: whitespace separates, single and double quotes group,
/// a backslash escapes the next character outside single quotes.
fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                cur.push(chars.next()?);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

fn caps(item: &RawItem) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for word in item.value.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        let name = lower.strip_prefix("cap_").unwrap_or(&lower);
        let ok = CAPS.contains(&name)
            || (item.key == "lxc.cap.keep" && name == "none")
            || name
                .parse::<u8>()
                .is_ok_and(|n| usize::from(n) < CAPS.len());
        if !ok {
            return Err(bad(
                item,
                format!("capability names separated by spaces, e.g. `sys_admin sys_module`; `{word}` is not one"),
            ));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn set_pair(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
}

fn prlimit_value(s: &str) -> bool {
    let ok = |v: &str| v == "unlimited" || v.parse::<u64>().is_ok();
    match s.split_once(':') {
        Some((soft, hard)) => ok(soft) && ok(hard),
        None => ok(s),
    }
}

#[derive(Debug, Default)]
struct MountAutoBuilder {
    auto: MountAuto,
    /// bare `cgroup` / `cgroup-full`: mode decided from the capabilities
    cgroup_nospec: Option<bool>,
}

impl MountAutoBuilder {
    fn apply(&mut self, item: &RawItem) -> Result<(), ConfigError> {
        if item.value.is_empty() {
            *self = MountAutoBuilder::default();
            return Ok(());
        }
        for token in item.value.split_whitespace() {
            self.token(token).ok_or_else(|| {
                bad(
                    item,
                    format!(
                        "space-separated tokens among proc, proc:mixed, proc:rw, sys, sys:ro, sys:mixed, sys:rw, \
                         cgroup[:mixed|:ro|:rw][:force], cgroup-full[:mixed|:ro|:rw][:force], \
                         shmounts:HOSTPATH[:CONTAINERPATH]; `{token}` is not one"
                    ),
                )
            })?;
        }
        Ok(())
    }

    fn token(&mut self, token: &str) -> Option<()> {
        let a = &mut self.auto;
        match token {
            "proc" | "proc:mixed" => a.proc = Some(ProcMount::Mixed),
            "proc:rw" => a.proc = Some(ProcMount::Rw),
            "sys" | "sys:mixed" => a.sys = Some(SysMount::Mixed),
            "sys:ro" => a.sys = Some(SysMount::Ro),
            "sys:rw" => a.sys = Some(SysMount::Rw),
            _ if token.starts_with("shmounts:") => {
                let rest = &token["shmounts:".len()..];
                let (host, cont) = match rest.split_once(':') {
                    Some((h, c)) => (h, c),
                    None => (rest, "/dev/.lxc-mounts"),
                };
                if host.is_empty() || cont.is_empty() {
                    return None;
                }
                a.shmounts = Some((host.to_string(), cont.to_string()));
            }
            _ => {
                let (full, rest) = if let Some(r) = token.strip_prefix("cgroup-full") {
                    (true, r)
                } else {
                    (false, token.strip_prefix("cgroup")?)
                };
                let (rest, force) = match rest.strip_suffix(":force") {
                    Some(r) => (r, true),
                    None => (rest, false),
                };
                let mode = match (rest, full) {
                    ("", _) => None,
                    (":mixed", false) => Some(CgroupMount::Mixed),
                    (":ro", false) => Some(CgroupMount::Ro),
                    (":rw", false) => Some(CgroupMount::Rw),
                    (":mixed", true) => Some(CgroupMount::FullMixed),
                    (":ro", true) => Some(CgroupMount::FullRo),
                    (":rw", true) => Some(CgroupMount::FullRw),
                    _ => return None,
                };
                a.cgroup = mode;
                a.cgroup_force = force;
                self.cgroup_nospec = mode.is_none().then_some(full);
            }
        }
        Some(())
    }

    fn finish(mut self, keeps_sys_admin: bool) -> MountAuto {
        if let Some(full) = self.cgroup_nospec {
            self.auto.cgroup = Some(match (full, keeps_sys_admin) {
                (false, true) => CgroupMount::Rw,
                (false, false) => CgroupMount::Mixed,
                (true, true) => CgroupMount::FullRw,
                (true, false) => CgroupMount::FullMixed,
            });
        }
        self.auto
    }
}

#[derive(Debug)]
struct NetBuilder {
    kind: Option<NetType>,
    cfg: NetConfig,
}

impl NetBuilder {
    fn new(index: u32, at: &Location) -> Self {
        NetBuilder {
            kind: None,
            cfg: NetConfig {
                index,
                kind: NetType::Empty,
                link: None,
                flags_up: false,
                name: None,
                hwaddr: None,
                mtu: None,
                veth_pair: None,
                ipv4: Vec::new(),
                ipv4_gateway: None,
                ipv6: Vec::new(),
                ipv6_gateway: None,
                extra: Vec::new(),
                at: at.clone(),
            },
        }
    }

    fn apply(&mut self, sub: &str, item: &RawItem) -> Result<(), ConfigError> {
        let v = item.value.as_str();
        let text = || (!v.is_empty()).then(|| v.to_string());
        let one_of = |opts: &[&str]| -> Result<(), ConfigError> {
            if v.is_empty() || opts.contains(&v) {
                Ok(())
            } else {
                Err(bad(item, format!("one of {}", opts.join(", "))))
            }
        };
        let c = &mut self.cfg;
        match sub {
            "type" => {
                self.kind = Some(NetType::parse(v).ok_or_else(|| {
                    bad(
                        item,
                        "one of veth, empty, none, usermode, pasta, slirp4netns, macvlan, ipvlan, vlan, phys",
                    )
                })?);
            }
            "flags" => {
                c.flags_up = match v {
                    "up" => true,
                    "" => false,
                    _ => return Err(bad(item, "`up` or nothing")),
                }
            }
            "link" => c.link = text(),
            "name" | "veth.pair" => {
                if v.len() > 15 || v.contains(['/', ' ']) {
                    return Err(bad(
                        item,
                        "an interface name of at most 15 characters without / or spaces",
                    ));
                }
                if sub == "name" {
                    c.name = text();
                } else {
                    c.veth_pair = text();
                }
            }
            "hwaddr" => {
                if !v.is_empty() && !valid_hwaddr(v) {
                    return Err(bad(
                        item,
                        "a MAC address like 00:16:3e:xx:xx:xx (x = random hex digit)",
                    ));
                }
                c.hwaddr = text();
            }
            "mtu" => {
                c.mtu = optional(item, |i| {
                    number::<u32>(i, "an MTU, a whole number of bytes")
                })?
            }
            "ipv4.address" => {
                if v.is_empty() {
                    c.ipv4.clear();
                } else if valid_ipv4_address(v) {
                    c.ipv4.push(v.to_string());
                } else {
                    return Err(bad(
                        item,
                        "an IPv4 address with optional prefix and broadcast, e.g. 10.0.3.5/24",
                    ));
                }
            }
            "ipv6.address" => {
                if v.is_empty() {
                    c.ipv6.clear();
                } else if valid_ipv6_address(v) {
                    c.ipv6.push(v.to_string());
                } else {
                    return Err(bad(
                        item,
                        "an IPv6 address with optional prefix, e.g. fd00::5/64",
                    ));
                }
            }
            "ipv4.gateway" | "ipv6.gateway" => {
                let ok = v.is_empty()
                    || v == "auto"
                    || v == "dev"
                    || if sub == "ipv4.gateway" {
                        v.parse::<Ipv4Addr>().is_ok()
                    } else {
                        v.parse::<Ipv6Addr>().is_ok()
                    };
                if !ok {
                    return Err(bad(item, "an address, `auto` or `dev`"));
                }
                if sub == "ipv4.gateway" {
                    c.ipv4_gateway = text();
                } else {
                    c.ipv6_gateway = text();
                }
            }
            _ => {
                match sub {
                    "veth.mode" => one_of(&["bridge", "router"])?,
                    "macvlan.mode" => one_of(&["private", "vepa", "bridge", "passthru"])?,
                    "ipvlan.mode" => one_of(&["l3", "l3s", "l2"])?,
                    "ipvlan.isolation" => one_of(&["bridge", "private", "vepa"])?,
                    "l2proxy" => one_of(&["0", "1"])?,
                    "vlan.id" | "veth.vlan.id"
                        if !v.is_empty() && !v.parse::<u16>().is_ok_and(|n| n <= 4094) =>
                    {
                        return Err(bad(item, "a VLAN id from 0 to 4094"));
                    }
                    "veth.n_rxqueues" | "veth.n_txqueues" => {
                        optional(item, |i| number::<u32>(i, "a number of queues"))?;
                    }
                    _ => {}
                }
                c.extra.push((sub.to_string(), v.to_string()));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<NetConfig, ConfigError> {
        let mut cfg = self.cfg;
        cfg.kind = self.kind.ok_or_else(|| ConfigError::NetWithoutType {
            at: cfg.at.clone(),
            index: cfg.index,
        })?;
        Ok(cfg)
    }
}

impl ContainerConfig {
    /// Build the typed configuration from raw items, checking every value.
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        let mut c = ContainerConfig::default();
        let mut auto = MountAutoBuilder::default();
        let mut nets: BTreeMap<u32, NetBuilder> = BTreeMap::new();
        for item in &raw.items {
            if let Some(w) = legacy_warning(item) {
                c.warnings.push(w);
            }
            if let Some(KeyClass::Ignored(reason)) = keys::classify(&item.key) {
                tracing::trace!(key = %item.key, at = %item.at, reason, "config key ignored");
                c.ignored.push(located(item, item.key.clone()));
                continue;
            }
            c.apply(item, &mut auto, &mut nets)?;
        }
        let keeps_sys_admin = !c.cap_drop.iter().any(|x| x == "sys_admin")
            && (c.cap_keep.is_empty() || c.cap_keep.iter().any(|x| x == "sys_admin"));
        c.mount_auto = auto.finish(keeps_sys_admin);
        c.net = nets
            .into_values()
            .map(NetBuilder::finish)
            .collect::<Result<_, _>>()?;
        Ok(c)
    }

    fn apply(
        &mut self,
        item: &RawItem,
        auto: &mut MountAutoBuilder,
        nets: &mut BTreeMap<u32, NetBuilder>,
    ) -> Result<(), ConfigError> {
        let v = item.value.as_str();
        let path = || (!v.is_empty()).then(|| PathBuf::from(v));
        let key = item.key.as_str();
        match key {
            "lxc.rootfs.path" => {
                self.rootfs_path = if v.is_empty() {
                    None
                } else {
                    let p = match v.split_once(':') {
                        Some(("dir", p)) => p,
                        Some((b, _)) if !b.contains('/') => {
                            return Err(ConfigError::RootfsBackend {
                                at: item.at.clone(),
                                backend: b.to_string(),
                            })
                        }
                        _ => v,
                    };
                    Some(located(item, PathBuf::from(p)))
                }
            }
            "lxc.uts.name" => {
                if v.len() > 64 {
                    return Err(bad(item, "a host name of at most 64 characters"));
                }
                self.uts_name = (!v.is_empty()).then(|| v.to_string());
            }
            "lxc.idmap" => {
                if v.is_empty() {
                    self.idmaps.clear();
                } else {
                    let line: IdMapLine = v.parse().map_err(|source| ConfigError::IdMap {
                        at: item.at.clone(),
                        source,
                    })?;
                    self.idmaps.push(located(item, line));
                }
            }
            "lxc.mount.auto" => auto.apply(item)?,
            "lxc.mount.entry" => {
                if v.is_empty() {
                    self.mount_entries.clear();
                } else {
                    if v.split_whitespace().count() < 3 {
                        return Err(bad(
                            item,
                            "an fstab line: SOURCE TARGET TYPE [OPTIONS [DUMP [PASS]]]",
                        ));
                    }
                    self.mount_entries.push(located(item, v.to_string()));
                }
            }
            "lxc.mount.fstab" => self.mount_fstab = path().map(|p| located(item, p)),
            "lxc.cap.drop" | "lxc.cap.keep" => {
                let list = if key == "lxc.cap.drop" {
                    &mut self.cap_drop
                } else {
                    &mut self.cap_keep
                };
                if v.is_empty() {
                    list.clear();
                } else {
                    list.extend(caps(item)?);
                }
            }
            "lxc.init.cmd" => {
                self.init_cmd = if v.is_empty() {
                    None
                } else {
                    Some(
                        split_words(v)
                            .ok_or_else(|| bad(item, "a command line with matched quotes"))?,
                    )
                }
            }
            "lxc.init.cwd" => {
                if !v.is_empty() && !v.starts_with('/') {
                    return Err(bad(item, "an absolute path inside the container"));
                }
                self.init_cwd = path();
            }
            "lxc.init.uid" => {
                self.init_uid = optional(item, |i| number(i, "a uid from 0 to 4294967295"))?
            }
            "lxc.init.gid" => {
                self.init_gid = optional(item, |i| number(i, "a gid from 0 to 4294967295"))?
            }
            "lxc.signal.halt" => self.signal_halt = signal(item)?,
            "lxc.signal.reboot" => self.signal_reboot = signal(item)?,
            "lxc.signal.stop" => self.signal_stop = signal(item)?,
            "lxc.net" => nets.clear(),
            "lxc.cgroup2" => self.cgroup2.clear(),
            "lxc.cgroup" => self.cgroup1.clear(),
            "lxc.environment" => {
                if v.is_empty() {
                    self.environment.clear();
                } else if let Some((name, value)) = v.split_once('=') {
                    if name.is_empty() {
                        return Err(bad(item, "NAME=VALUE or NAME"));
                    }
                    self.environment.push((name.to_string(), value.to_string()));
                } else {
                    match std::env::var(v) {
                        Ok(value) => self.environment.push((v.to_string(), value)),
                        Err(_) => {
                            tracing::debug!(name = v, at = %item.at, "lxc.environment names a variable that is not set; skipped")
                        }
                    }
                }
            }
            "lxc.tty.max" => {
                self.tty_max = optional(item, |i| number(i, "a number of ttys"))?.unwrap_or(0)
            }
            "lxc.pty.max" => self.pty_max = optional(item, |i| number(i, "a number of ptys"))?,
            "lxc.start.auto" => self.start_auto = v.is_empty() || boolean(item)?,
            "lxc.start.delay" => {
                self.start_delay =
                    optional(item, |i| number(i, "a number of seconds"))?.unwrap_or(0)
            }
            "lxc.start.order" => {
                self.start_order = optional(item, |i| number(i, "a whole number"))?.unwrap_or(0)
            }
            "lxc.group" => {
                if v.is_empty() {
                    self.groups.clear();
                } else {
                    self.groups.extend(v.split_whitespace().map(str::to_string));
                }
            }
            "lxc.arch" => {
                if !v.is_empty() && !ARCHES.contains(&v) {
                    return Err(bad(item, format!("one of {}", ARCHES.join(", "))));
                }
                self.arch = (!v.is_empty()).then(|| v.to_string());
            }
            "lxc.autodev" => self.autodev = v.is_empty() || boolean(item)?,
            "lxc.console.path" => self.console_path = (!v.is_empty()).then(|| v.to_string()),
            "lxc.console.logfile" => self.console_logfile = path(),
            "lxc.log.file" => self.log_file = path(),
            "lxc.log.level" => {
                let lower = v.to_ascii_lowercase();
                let ok = lower.is_empty()
                    || LOG_LEVELS.contains(&lower.as_str())
                    || lower.parse::<u8>().is_ok_and(|n| n <= 8);
                if !ok {
                    return Err(bad(
                        item,
                        format!("a number 0-8 or one of {}", LOG_LEVELS.join(", ")),
                    ));
                }
                self.log_level = (!lower.is_empty()).then_some(lower);
            }
            "lxc.sysctl" => self.sysctls.clear(),
            "lxc.prlimit" => self.prlimits.clear(),
            "lxc.no_new_privs" => self.no_new_privs = v.is_empty() || boolean(item)?,
            "lxc.hook" => self.hooks.clear(),
            _ => return self.apply_prefixed(item, nets),
        }
        Ok(())
    }

    fn apply_prefixed(
        &mut self,
        item: &RawItem,
        nets: &mut BTreeMap<u32, NetBuilder>,
    ) -> Result<(), ConfigError> {
        let v = item.value.as_str();
        let key = item.key.as_str();
        if let Some((n, sub)) = keys::split_net_key(key) {
            if sub.is_empty() {
                nets.remove(&n);
            } else {
                nets.entry(n)
                    .or_insert_with(|| NetBuilder::new(n, &item.at))
                    .apply(sub, item)?;
            }
        } else if let Some(k) = key.strip_prefix("lxc.cgroup2.") {
            if v.is_empty() {
                self.cgroup2.retain(|x| x.value.0 != k);
            } else {
                self.cgroup2
                    .push(located(item, (k.to_string(), v.to_string())));
            }
        } else if let Some(k) = key.strip_prefix("lxc.cgroup.") {
            if v.is_empty() {
                self.cgroup1.retain(|x| x.value.0 != k);
            } else {
                self.cgroup1
                    .push(located(item, (k.to_string(), v.to_string())));
            }
        } else if let Some(k) = key.strip_prefix("lxc.sysctl.") {
            if v.is_empty() {
                self.sysctls.retain(|(x, _)| x != k);
            } else {
                set_pair(&mut self.sysctls, k, v);
            }
        } else if let Some(k) = key.strip_prefix("lxc.prlimit.") {
            if v.is_empty() {
                self.prlimits.retain(|(x, _)| x != k);
            } else if prlimit_value(v) {
                set_pair(&mut self.prlimits, k, v);
            } else {
                return Err(bad(item, "SOFT or SOFT:HARD, each a number or `unlimited`"));
            }
        } else if let Some(k) = key.strip_prefix("lxc.hook.") {
            if v.is_empty() {
                self.hooks.retain(|x| x.value.0 != k);
            } else {
                self.hooks
                    .push(located(item, (k.to_string(), v.to_string())));
            }
        } else {
            // classify() accepted the key, so it must be handled above or ignored
            tracing::debug!(key, at = %item.at, "config key kept without effect");
            self.ignored.push(located(item, key.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) fn split_words_for_test(s: &str) -> Option<Vec<String>> {
    split_words(s)
}
