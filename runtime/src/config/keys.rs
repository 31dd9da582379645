//! The key table: which keys LXC 5 knows, how ulxc treats each, and the LXC 2.x legacy names.
//!
//! Built from LXC's `config_jump_table` (src/lxc/confile.c) and `lxc-update-config`.

/// How ulxc treats a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// Kept as typed data in [`super::ContainerConfig`].
    Applied,
    /// Accepted for compatibility and ignored, with the reason.
    Ignored(&'static str),
}

/// Keys matched exactly.
const EXACT: &[(&str, KeyClass)] = {
    use KeyClass::{Applied as A, Ignored as I};
    const LSM: KeyClass = I("ulxc does not load AppArmor profiles yet");
    const SEL: KeyClass = I("ulxc does not set SELinux contexts");
    const SEC: KeyClass = I("ulxc does not load seccomp policy yet");
    const CGD: KeyClass = I("ulxc chooses the container's cgroup itself");
    const MON: KeyClass = I("ulxc's monitor does not take this setting");
    const NS: KeyClass = I("ulxc always creates every namespace it needs");
    const CON: KeyClass = I("ulxc's console has no ring buffer");
    &[
        ("lxc.arch", A),
        ("lxc.apparmor.profile", LSM),
        ("lxc.apparmor.allow_incomplete", LSM),
        ("lxc.apparmor.allow_nesting", LSM),
        ("lxc.apparmor.raw", LSM),
        ("lxc.autodev", A),
        (
            "lxc.autodev.tmpfs.size",
            I("ulxc's /dev tmpfs has a fixed size"),
        ),
        ("lxc.cap.drop", A),
        ("lxc.cap.keep", A),
        ("lxc.cgroup", A),
        ("lxc.cgroup2", A),
        ("lxc.cgroup.dir", CGD),
        ("lxc.cgroup.dir.container", CGD),
        ("lxc.cgroup.dir.container.inner", CGD),
        ("lxc.cgroup.dir.monitor", CGD),
        ("lxc.cgroup.dir.monitor.pivot", CGD),
        ("lxc.cgroup.relative", CGD),
        ("lxc.console.buffer.size", CON),
        ("lxc.console.logfile", A),
        ("lxc.console.path", A),
        ("lxc.console.rotate", CON),
        ("lxc.console.size", CON),
        ("lxc.environment", A),
        ("lxc.ephemeral", I("ulxc has no ephemeral containers")),
        (
            "lxc.execute.cmd",
            I("ulxc has no application containers (lxc-execute)"),
        ),
        ("lxc.group", A),
        ("lxc.hook", A),
        (
            "lxc.hook.version",
            I("hooks are kept as data; their calling convention is not applied yet"),
        ),
        ("lxc.idmap", A),
        ("lxc.include", A),
        ("lxc.init.cmd", A),
        ("lxc.init.cwd", A),
        ("lxc.init.gid", A),
        (
            "lxc.init.groups",
            I("ulxc starts init with the groups of init.gid only"),
        ),
        ("lxc.init.uid", A),
        (
            "lxc.keyring.session",
            I("ulxc does not create a session keyring"),
        ),
        ("lxc.log.file", A),
        ("lxc.log.level", A),
        ("lxc.log.syslog", I("ulxc logs to its log file, not syslog")),
        ("lxc.monitor.signal.pdeath", MON),
        ("lxc.monitor.unshare", MON),
        ("lxc.mount.auto", A),
        ("lxc.mount.entry", A),
        ("lxc.mount.fstab", A),
        ("lxc.namespace.clone", NS),
        ("lxc.namespace.keep", NS),
        ("lxc.net", A),
        ("lxc.no_new_privs", A),
        ("lxc.prlimit", A),
        (
            "lxc.proc",
            I("ulxc does not write /proc/PID files at start"),
        ),
        ("lxc.pty.max", A),
        (
            "lxc.rootfs.managed",
            I("ulxc manages the rootfs of containers it created"),
        ),
        (
            "lxc.rootfs.mount",
            I("ulxc picks its own rootfs mount point"),
        ),
        (
            "lxc.rootfs.options",
            I("ulxc bind-mounts a directory rootfs without options"),
        ),
        ("lxc.rootfs.path", A),
        (
            "lxc.rootfs.backend",
            I("removed in LXC 3; the backend follows from lxc.rootfs.path"),
        ),
        ("lxc.sched.core", I("ulxc does not set core scheduling")),
        ("lxc.seccomp.allow_nesting", SEC),
        ("lxc.seccomp.notify.cookie", SEC),
        ("lxc.seccomp.notify.proxy", SEC),
        ("lxc.seccomp.profile", SEC),
        ("lxc.selinux.context", SEL),
        ("lxc.selinux.context.keyring", SEL),
        ("lxc.signal.halt", A),
        ("lxc.signal.reboot", A),
        ("lxc.signal.stop", A),
        ("lxc.start.auto", A),
        ("lxc.start.delay", A),
        ("lxc.start.order", A),
        ("lxc.sysctl", A),
        (
            "lxc.time.offset.boot",
            I("ulxc does not create a time namespace"),
        ),
        (
            "lxc.time.offset.monotonic",
            I("ulxc does not create a time namespace"),
        ),
        ("lxc.tty.dir", I("ulxc puts ttys directly in /dev")),
        ("lxc.tty.max", A),
        ("lxc.uts.name", A),
    ]
};

/// Keys that take a free-form suffix (`lxc.sysctl.net.ipv4.ip_forward`).
const PREFIXES: &[(&str, KeyClass)] = &[
    ("lxc.cgroup2.", KeyClass::Applied),
    ("lxc.cgroup.", KeyClass::Applied),
    ("lxc.sysctl.", KeyClass::Applied),
    ("lxc.prlimit.", KeyClass::Applied),
    (
        "lxc.proc.",
        KeyClass::Ignored("ulxc does not write /proc/PID files at start"),
    ),
    (
        "lxc.namespace.share.",
        KeyClass::Ignored("ulxc does not share namespaces with other containers"),
    ),
];

/// Hook names of `lxc.hook.NAME`.
pub const HOOKS: &[&str] = &[
    "pre-start",
    "pre-mount",
    "mount",
    "autodev",
    "start",
    "stop",
    "post-stop",
    "clone",
    "destroy",
    "start-host",
];

/// Sub-keys of `lxc.net.N.` (LXC 5).
pub const NET_SUBKEYS: &[&str] = &[
    "type",
    "flags",
    "link",
    "l2proxy",
    "name",
    "hwaddr",
    "mtu",
    "script.up",
    "script.down",
    "veth.pair",
    "veth.mode",
    "veth.ipv4.route",
    "veth.ipv6.route",
    "veth.vlan.id",
    "veth.vlan.tagged.id",
    "veth.n_rxqueues",
    "veth.n_txqueues",
    "macvlan.mode",
    "ipvlan.mode",
    "ipvlan.isolation",
    "vlan.id",
    "ipv4.address",
    "ipv4.gateway",
    "ipv6.address",
    "ipv6.gateway",
];

/// Resource names of `lxc.prlimit.NAME`.
pub const PRLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Split `lxc.net.N[.SUB]` into the index and the sub-key (`""` for `lxc.net.N`).
pub fn split_net_key(key: &str) -> Option<(u32, &str)> {
    let rest = key.strip_prefix("lxc.net.")?;
    let (num, sub) = match rest.find('.') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((num.parse().ok()?, sub))
}

/// The class of a current-spelling key, or `None` when LXC 5 does not know it.
pub fn classify(key: &str) -> Option<KeyClass> {
    if let Some((_, k)) = EXACT.iter().find(|(k, _)| *k == key) {
        return Some(*k);
    }
    if let Some((_, sub)) = split_net_key(key) {
        return (sub.is_empty() || NET_SUBKEYS.contains(&sub)).then_some(KeyClass::Applied);
    }
    if let Some(name) = key.strip_prefix("lxc.hook.") {
        return HOOKS.contains(&name).then_some(KeyClass::Applied);
    }
    if let Some(res) = key.strip_prefix("lxc.prlimit.") {
        return PRLIMITS.contains(&res).then_some(KeyClass::Applied);
    }
    if let Some(ctl) = key.strip_prefix("lxc.cgroup.") {
        // v1 controller keys are `lxc.cgroup.CONTROLLER.FILE`
        return (ctl.contains('.') && !ctl.starts_with('.') && !ctl.ends_with('.'))
            .then_some(KeyClass::Applied);
    }
    PREFIXES
        .iter()
        .find(|(p, _)| key.len() > p.len() && key.starts_with(p))
        .map(|(_, c)| *c)
}

/// Why a key is accepted but ignored, or `None` when ulxc applies it or does not know it.
pub fn ignored_reason(key: &str) -> Option<&'static str> {
    match classify(key)? {
        KeyClass::Applied => None,
        KeyClass::Ignored(r) => Some(r),
    }
}

/// What a legacy (LXC 2.x) key becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Legacy {
    /// A plain rename.
    Rename(String),
    /// `lxc.network.SUB`: the sub-key of the current legacy interface (`type` starts one);
    /// `""` for `lxc.network` itself (clear all).
    Network(String),
}

/// Simple renames from `lxc-update-config`.
const RENAMES: &[(&str, &str)] = &[
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.rootfs", "lxc.rootfs.path"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.syslog", "lxc.log.syslog"),
    ("lxc.mount", "lxc.mount.fstab"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
];

/// Legacy `lxc.network.SUB` names that changed (others keep their sub-key).
const NET_RENAMES: &[(&str, &str)] = &[("ipv4", "ipv4.address"), ("ipv6", "ipv6.address")];

/// `lxc.rootfs.backend` was dropped by LXC 3 without a replacement.
pub const DROPPED_LEGACY: &str = "lxc.rootfs.backend";

/// The current form of a legacy key, or `None` when `key` is not a legacy key.
pub fn legacy(key: &str) -> Option<Legacy> {
    if let Some((_, new)) = RENAMES.iter().find(|(old, _)| *old == key) {
        return Some(Legacy::Rename((*new).to_string()));
    }
    if let Some(res) = key.strip_prefix("lxc.limit.") {
        return Some(Legacy::Rename(format!("lxc.prlimit.{res}")));
    }
    if key == "lxc.network" {
        return Some(Legacy::Network(String::new()));
    }
    if let Some(sub) = key.strip_prefix("lxc.network.") {
        let sub = NET_RENAMES
            .iter()
            .find(|(o, _)| *o == sub)
            .map_or(sub, |(_, n)| n);
        return Some(Legacy::Network(sub.to_string()));
    }
    None
}

/// Known keys written out, for suggestions (`lxc.net.0.` stands for every index).
fn suggestion_pool() -> Vec<String> {
    let mut pool: Vec<String> = EXACT.iter().map(|(k, _)| (*k).to_string()).collect();
    pool.extend(NET_SUBKEYS.iter().map(|s| format!("lxc.net.0.{s}")));
    pool.extend(HOOKS.iter().map(|h| format!("lxc.hook.{h}")));
    pool.extend(PRLIMITS.iter().map(|r| format!("lxc.prlimit.{r}")));
    pool.extend(RENAMES.iter().map(|(o, _)| (*o).to_string()));
    pool
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key nearest to an unknown `key`, when it is close (edit distance at most 3,
/// or a third of the key's length for long keys).
pub fn suggest(key: &str) -> Option<String> {
    // compare net keys with their index replaced by 0, and give the index back
    let (probe, net_index) = match key.strip_prefix("lxc.net.") {
        Some(rest) => match rest.split_once('.') {
            Some((n, sub)) if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
                (format!("lxc.net.0.{sub}"), Some(n.to_string()))
            }
            _ => (key.to_string(), None),
        },
        None => (key.to_string(), None),
    };
    let limit = 3.max(probe.len() / 6);
    let best = suggestion_pool()
        .into_iter()
        .map(|k| (levenshtein(&probe, &k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)?
        .1;
    Some(match (net_index, best.strip_prefix("lxc.net.0.")) {
        (Some(n), Some(sub)) => format!("lxc.net.{n}.{sub}"),
        _ => best,
    })
}
