//! `ulxc-net`'s settings: LXC's `/etc/default/lxc` and `/etc/default/lxc-net`, read
//! without a shell.
//!
//! The files are shell fragments in LXC; ulxc reads the subset that needs no shell:
//! `KEY=value` lines (optionally `export`ed) with unquoted, `'single'` or `"double"`
//! quoted values, comments and blank lines, and the one sourcing idiom Debian's
//! `/etc/default/lxc` uses (`[ ! -f FILE ] || . FILE`, also plain `. FILE`). Anything
//! that needs a shell (`$VAR`, `$(...)`, backticks, `;`, pipes) is one error naming
//! file:line. Files are read in LXC's order, later assignments win, and every setting
//! remembers where it came from so `status` can say so.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The files LXC's `lxc-net` reads, in its order (later assignments win).
pub const DEFAULT_FILES: [&str; 2] = ["/etc/default/lxc", "/etc/default/lxc-net"];

/// The keys `ulxc-net` understands, in the order `status` shows them, with LXC's defaults.
pub const KNOWN_KEYS: [(&str, &str); 16] = [
    ("USE_LXC_BRIDGE", "true"),
    ("LXC_BRIDGE", "lxcbr0"),
    ("LXC_BRIDGE_MAC", "00:16:3e:00:00:00"),
    ("LXC_ADDR", "10.0.3.1"),
    ("LXC_NETMASK", "255.255.255.0"),
    ("LXC_NETWORK", "10.0.3.0/24"),
    ("LXC_DHCP_RANGE", "10.0.3.2,10.0.3.254"),
    ("LXC_DHCP_MAX", "253"),
    ("LXC_DHCP_CONFILE", ""),
    ("LXC_DOMAIN", ""),
    ("LXC_DHCP_PING", "true"),
    ("LXC_USE_NFT", "true"),
    ("LXC_IPV6_ADDR", ""),
    ("LXC_IPV6_MASK", ""),
    ("LXC_IPV6_NETWORK", ""),
    ("LXC_IPV6_NAT", "false"),
];

/// Keys that `/etc/default/lxc` holds for LXC's other scripts (autostart, templates);
/// they are not `ulxc-net`'s business and are skipped without a warning.
const OTHER_LXC_KEYS: [&str; 9] = [
    "LXC_AUTO",
    "BOOTGROUPS",
    "SHUTDOWNDELAY",
    "OPTIONS",
    "STOPOPTS",
    "LXC_SHUTDOWN_TIMEOUT",
    "MIRROR",
    "SECURITY_MIRROR",
    "LXC_SSH_USE_SSHD",
];

/// How many nested `. FILE` a settings file may use.
const MAX_INCLUDE_DEPTH: usize = 4;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// LXC's built-in default.
    Default,
    /// An assignment in a file.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// A settings file that cannot be used: what is wrong and where.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SettingsError {
    /// `file:line`, or the file alone for whole-file problems.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl SettingsError {
    fn at(source: &Source, message: impl Into<String>) -> Self {
        SettingsError {
            location: source.to_string(),
            message: message.into(),
        }
    }
}

/// One key's raw value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, e.g. `LXC_BRIDGE`.
    pub key: String,
    /// The value as written (quotes removed).
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// Network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// The mask of a prefix length.
    pub fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = Self::mask_of(self.prefix);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The DHCP range handed to dnsmasq: first and last address and an optional lease time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    /// First address handed out.
    pub start: Ipv4Addr,
    /// Last address handed out.
    pub end: Ipv4Addr,
    /// dnsmasq's optional third field, a lease time (`12h`, `infinite`).
    pub lease_time: Option<String>,
}

impl fmt::Display for DhcpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.start, self.end)?;
        if let Some(lease) = &self.lease_time {
            write!(f, ",{lease}")?;
        }
        Ok(())
    }
}

/// IPv6 on the bridge, as LXC's `LXC_IPV6_*` keys describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Settings {
    /// `LXC_IPV6_ADDR`: the bridge's IPv6 address (also where dnsmasq listens).
    pub addr: Ipv6Addr,
    /// `LXC_IPV6_MASK`: its prefix length.
    pub prefix: u8,
    /// `LXC_IPV6_NETWORK`: the network, `ADDR/PREFIX` with host bits zero.
    pub network: Ipv6Addr,
    /// `LXC_IPV6_NAT`: whether the network is masqueraded to the outside.
    pub nat: bool,
}

impl Ipv6Settings {
    /// The network in CIDR form.
    pub fn network_cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    /// The bridge address in CIDR form.
    pub fn addr_cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

fn ipv6_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// LXC sets IPv6 up only when address, mask and network are all given; ulxc-net asks
/// for all three or none so that a half-written setting is not silently ignored.
fn parse_ipv6(
    addr: &Entry,
    mask: &Entry,
    network: &Entry,
    nat: &Entry,
) -> Result<Option<Ipv6Settings>, SettingsError> {
    let nat = parse_bool(nat)?;
    let given: Vec<&Entry> = [addr, mask, network]
        .into_iter()
        .filter(|e| !e.value.is_empty())
        .collect();
    if given.is_empty() {
        return Ok(None);
    }
    let parse_addr = |e: &Entry, text: &str| -> Result<Ipv6Addr, SettingsError> {
        text.parse().map_err(|_| {
            SettingsError::at(
                &e.source,
                format!("{}=\"{}\" is not an IPv6 address", e.key, e.value),
            )
        })
    };
    let bridge_addr = if addr.value.is_empty() {
        None
    } else {
        Some(parse_addr(addr, &addr.value)?)
    };
    let prefix = if mask.value.is_empty() {
        None
    } else {
        Some(
            mask.value
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 128)
                .ok_or_else(|| {
                    SettingsError::at(
                        &mask.source,
                        format!(
                            "LXC_IPV6_MASK=\"{}\" is not a prefix length 0..128",
                            mask.value
                        ),
                    )
                })?,
        )
    };
    let net = if network.value.is_empty() {
        None
    } else {
        let (text, len) = network.value.split_once('/').ok_or_else(|| {
            SettingsError::at(
                &network.source,
                format!(
                    "LXC_IPV6_NETWORK=\"{}\" is not a network like fc42:5009:ba4b:5ab0::/64",
                    network.value
                ),
            )
        })?;
        let len: u8 = len.parse().ok().filter(|p| *p <= 128).ok_or_else(|| {
            SettingsError::at(
                &network.source,
                format!(
                    "LXC_IPV6_NETWORK=\"{}\" has a prefix length outside 0..128",
                    network.value
                ),
            )
        })?;
        Some((parse_addr(network, text)?, len))
    };
    let (Some(bridge_addr), Some(prefix), Some((net, net_len))) = (bridge_addr, prefix, net) else {
        return Err(SettingsError::at(
            &given[0].source,
            "LXC_IPV6_ADDR, LXC_IPV6_MASK and LXC_IPV6_NETWORK go together: set all three \
             for IPv6 on the bridge, or none",
        ));
    };
    if net_len != prefix {
        return Err(SettingsError::at(
            &network.source,
            format!(
                "LXC_IPV6_NETWORK {net}/{net_len} does not match LXC_IPV6_MASK {prefix} (from {})",
                mask.source
            ),
        ));
    }
    let m = ipv6_mask(prefix);
    if u128::from(net) & !m != 0 {
        return Err(SettingsError::at(
            &network.source,
            format!(
                "LXC_IPV6_NETWORK=\"{}\" has host bits set; did you mean {}/{prefix}?",
                network.value,
                Ipv6Addr::from(u128::from(net) & m)
            ),
        ));
    }
    if u128::from(bridge_addr) & m != u128::from(net) {
        return Err(SettingsError::at(
            &addr.source,
            format!(
                "LXC_IPV6_ADDR {bridge_addr} is outside LXC_IPV6_NETWORK {net}/{prefix} (from {})",
                network.source
            ),
        ));
    }
    Ok(Some(Ipv6Settings {
        addr: bridge_addr,
        prefix,
        network: net,
        nat,
    }))
}

/// The validated settings of `ulxc-net`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `USE_LXC_BRIDGE`: whether ulxc-net sets anything up at all.
    pub use_bridge: bool,
    /// `LXC_BRIDGE`: the bridge's name.
    pub bridge: String,
    /// `LXC_BRIDGE_MAC`: the MAC given to a bridge ulxc-net creates.
    pub bridge_mac: String,
    /// `LXC_ADDR`: the bridge's address (also where dnsmasq listens).
    pub addr: Ipv4Addr,
    /// `LXC_NETMASK` as a prefix length.
    pub prefix: u8,
    /// `LXC_NETWORK`: the subnet masqueraded to the outside.
    pub network: Ipv4Net,
    /// `LXC_DHCP_RANGE`.
    pub dhcp_range: DhcpRange,
    /// `LXC_DHCP_MAX`: dnsmasq's `--dhcp-lease-max`.
    pub dhcp_max: u32,
    /// `LXC_DHCP_CONFILE`: an extra dnsmasq configuration file.
    pub dhcp_confile: Option<PathBuf>,
    /// `LXC_DOMAIN`: the local DNS domain dnsmasq serves.
    pub domain: Option<String>,
    /// `LXC_DHCP_PING`: whether dnsmasq pings an address before offering it.
    pub dhcp_ping: bool,
    /// `LXC_USE_NFT`: nftables (true) or iptables.
    pub use_nft: bool,
    /// `LXC_IPV6_*`: IPv6 on the bridge (router advertisements, optional NAT), when
    /// address, mask and network are all set.
    pub ipv6: Option<Ipv6Settings>,
    /// Every known key with its value and source, in [`KNOWN_KEYS`] order.
    pub entries: Vec<Entry>,
    /// Warnings met while reading (unknown keys), each with file:line.
    pub warnings: Vec<String>,
}

impl Settings {
    /// The entry of a known key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Where a known key's value came from (`default` when no file set it).
    pub fn source_of(&self, key: &str) -> Source {
        self.entry(key)
            .map(|e| e.source.clone())
            .unwrap_or(Source::Default)
    }

    /// Reads `files` in order (later wins). Missing files are skipped when `required` is
    /// false (LXC's `[ ! -f FILE ] || . FILE`) and are an error when it is true (files
    /// named on the command line).
    pub fn load(files: &[PathBuf], required: bool) -> Result<Settings, SettingsError> {
        let mut reader = Reader::default();
        for file in files {
            if !file.exists() {
                if required {
                    return Err(SettingsError {
                        location: file.display().to_string(),
                        message: "no such settings file; give an existing file to --config".into(),
                    });
                }
                continue;
            }
            reader.read_file(file, 0)?;
        }
        Self::from_assignments(reader.values, reader.warnings)
    }

    /// Parses settings from text, as if it were the file `path` (for tests and tools).
    pub fn parse_str(path: &Path, text: &str) -> Result<Settings, SettingsError> {
        let mut reader = Reader::default();
        reader.read_text(path, text, 0)?;
        Self::from_assignments(reader.values, reader.warnings)
    }

    fn from_assignments(
        values: BTreeMap<String, (String, Source)>,
        warnings: Vec<String>,
    ) -> Result<Settings, SettingsError> {
        let entries: Vec<Entry> = KNOWN_KEYS
            .iter()
            .map(|(key, default)| {
                let (value, source) = values
                    .get(*key)
                    .cloned()
                    .unwrap_or_else(|| ((*default).to_string(), Source::Default));
                Entry {
                    key: (*key).to_string(),
                    value,
                    source,
                }
            })
            .collect();
        let get = |key: &str| -> &Entry {
            entries
                .iter()
                .find(|e| e.key == key)
                .expect("every known key has an entry")
        };

        let use_bridge = parse_bool(get("USE_LXC_BRIDGE"))?;
        let bridge = parse_ifname(get("LXC_BRIDGE"))?;
        let bridge_mac = parse_mac(get("LXC_BRIDGE_MAC"))?;
        let addr = parse_ipv4(get("LXC_ADDR"))?;
        let prefix = parse_netmask(get("LXC_NETMASK"))?;
        let network = parse_network(get("LXC_NETWORK"))?;
        // A clash between two settings is reported where a file set one of them (the
        // one a person most likely just edited), naming where the other came from.
        let blame = |first: &Entry, second: &Entry| -> (Source, Source) {
            if first.source == Source::Default {
                (second.source.clone(), first.source.clone())
            } else {
                (first.source.clone(), second.source.clone())
            }
        };
        if network.prefix != prefix {
            let (at, other) = blame(get("LXC_NETWORK"), get("LXC_NETMASK"));
            return Err(SettingsError::at(
                &at,
                format!(
                    "LXC_NETWORK {network} does not match LXC_NETMASK {} (/{prefix}) \
                     (the other is from {other}); make them the same size",
                    get("LXC_NETMASK").value
                ),
            ));
        }
        if !network.contains(addr) {
            let (at, other) = blame(get("LXC_ADDR"), get("LXC_NETWORK"));
            return Err(SettingsError::at(
                &at,
                format!(
                    "LXC_ADDR {addr} is outside LXC_NETWORK {network} (the other is from \
                     {other}); give the bridge an address inside the network"
                ),
            ));
        }
        let dhcp_range = parse_range(get("LXC_DHCP_RANGE"), &network)?;
        let dhcp_max = parse_count(get("LXC_DHCP_MAX"))?;
        let dhcp_confile = parse_confile(get("LXC_DHCP_CONFILE"))?;
        let domain = parse_domain(get("LXC_DOMAIN"))?;
        let dhcp_ping = parse_bool(get("LXC_DHCP_PING"))?;
        let use_nft = parse_bool(get("LXC_USE_NFT"))?;
        let ipv6 = parse_ipv6(
            get("LXC_IPV6_ADDR"),
            get("LXC_IPV6_MASK"),
            get("LXC_IPV6_NETWORK"),
            get("LXC_IPV6_NAT"),
        )?;

        Ok(Settings {
            use_bridge,
            bridge,
            bridge_mac,
            addr,
            prefix,
            network,
            dhcp_range,
            dhcp_max,
            dhcp_confile,
            domain,
            dhcp_ping,
            use_nft,
            ipv6,
            entries,
            warnings,
        })
    }
}

/// Reads assignments from files, following the sourcing idiom.
#[derive(Default)]
struct Reader {
    values: BTreeMap<String, (String, Source)>,
    warnings: Vec<String>,
    read: HashSet<PathBuf>,
}

impl Reader {
    fn read_file(&mut self, path: &Path, depth: usize) -> Result<(), SettingsError> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.read.insert(canonical) {
            // Already read (Debian's /etc/default/lxc sources /etc/default/lxc-net, and
            // lxc-net is also on the default list): reading it again changes nothing.
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|err| SettingsError {
            location: path.display().to_string(),
            message: format!("cannot read the settings file: {err}"),
        })?;
        self.read_text(path, &text, depth)
    }

    fn read_text(&mut self, path: &Path, text: &str, depth: usize) -> Result<(), SettingsError> {
        for (index, raw) in text.lines().enumerate() {
            let source = Source::File {
                path: path.to_path_buf(),
                line: index + 1,
            };
            match parse_line(raw).map_err(|message| SettingsError::at(&source, message))? {
                Line::Nothing => {}
                Line::Include { file, optional } => {
                    let file = PathBuf::from(file);
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(SettingsError::at(
                            &source,
                            format!("settings files nest deeper than {MAX_INCLUDE_DEPTH} levels"),
                        ));
                    }
                    if !file.exists() {
                        if optional {
                            continue;
                        }
                        return Err(SettingsError::at(
                            &source,
                            format!("sources {} which does not exist", file.display()),
                        ));
                    }
                    self.read_file(&file, depth + 1)
                        .map_err(|e| SettingsError {
                            location: e.location,
                            message: format!("{} (sourced from {source})", e.message),
                        })?;
                }
                Line::Assign { key, value } => {
                    if !KNOWN_KEYS.iter().any(|(k, _)| *k == key) {
                        if OTHER_LXC_KEYS.contains(&key.as_str()) {
                            tracing::debug!(%key, %source, "setting for LXC's other scripts, skipped");
                        } else {
                            let warning = format!(
                                "{source}: unknown setting {key} ignored (ulxc-net knows {})",
                                KNOWN_KEYS.map(|(k, _)| k).join(", ")
                            );
                            tracing::warn!("{warning}");
                            self.warnings.push(warning);
                        }
                        continue;
                    }
                    self.values.insert(key, (value, source));
                }
            }
        }
        Ok(())
    }
}

/// One parsed line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Nothing,
    Assign { key: String, value: String },
    Include { file: String, optional: bool },
}

const NEEDS_SHELL: &str = "needs a shell, which ulxc-net does not run; \
                           write the value literally (KEY=\"value\")";

/// Parses one line of a settings file; the error is the message (the caller adds file:line).
fn parse_line(raw: &str) -> Result<Line, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Line::Nothing);
    }
    if let Some(include) = parse_include(line) {
        return Ok(include);
    }
    // `export NAME...` without a value only marks variables for export: nothing to read.
    if let Some(names) = line.strip_prefix("export ") {
        if !names.contains('=') && names.split_whitespace().all(is_variable_name) {
            return Ok(Line::Nothing);
        }
    }
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map(str::trim_start)
        .unwrap_or(line);
    let Some((key, rest)) = line.split_once('=') else {
        return Err(format!(
            "`{line}` is not a KEY=value assignment and {NEEDS_SHELL}"
        ));
    };
    if !is_variable_name(key) {
        return Err(format!(
            "`{key}` is not a variable name (write KEY=value with no spaces around `=`)"
        ));
    }
    let value = parse_value(rest)?;
    Ok(Line::Assign {
        key: key.to_string(),
        value,
    })
}

fn is_variable_name(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with(|c: char| c.is_ascii_digit())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `. FILE`, `source FILE`, `[ ! -f FILE ] || . FILE`, `[ -f FILE ] && . FILE`.
fn parse_include(line: &str) -> Option<Line> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let is_dot = |w: &str| w == "." || w == "source";
    let plain_path = |w: &str| {
        w.starts_with('/')
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    };
    match words.as_slice() {
        [dot, file] if is_dot(dot) && plain_path(file) => Some(Line::Include {
            file: (*file).to_string(),
            optional: false,
        }),
        ["[", "!", "-f", tested, "]", "||", dot, file]
        | ["[", "-f", tested, "]", "&&", dot, file]
            if tested == file && is_dot(dot) && plain_path(file) =>
        {
            Some(Line::Include {
                file: (*file).to_string(),
                optional: true,
            })
        }
        _ => None,
    }
}

/// The value after `=`: unquoted, single- or double-quoted pieces, then an optional
/// comment.
fn parse_value(text: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '\'' => {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    value.push(c);
                }
                if !closed {
                    return Err("a single quote is not closed on this line".into());
                }
            }
            '"' => {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '$' | '`' | '\\' => {
                            return Err(format!("`{c}` inside double quotes {NEEDS_SHELL}"));
                        }
                        _ => value.push(c),
                    }
                }
                if !closed {
                    return Err("a double quote is not closed on this line".into());
                }
            }
            ' ' | '\t' => {
                let rest = chars.collect::<String>();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    return Ok(value);
                }
                return Err(format!(
                    "`{rest}` after the value {NEEDS_SHELL} (quote values with spaces)"
                ));
            }
            '$' | '`' | '\\' | ';' | '|' | '&' | '<' | '>' | '(' | ')' | '*' | '?' | '[' => {
                return Err(format!("`{c}` {NEEDS_SHELL}"));
            }
            _ => {
                value.push(c);
                chars.next();
            }
        }
    }
    Ok(value)
}

fn parse_bool(e: &Entry) -> Result<bool, SettingsError> {
    match e.value.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(SettingsError::at(
            &e.source,
            format!("{}=\"{other}\" must be \"true\" or \"false\"", e.key),
        )),
    }
}

fn parse_ifname(e: &Entry) -> Result<String, SettingsError> {
    let ok = !e.value.is_empty()
        && e.value.len() <= 15
        && e.value != "."
        && e.value != ".."
        && e.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(e.value.clone())
    } else {
        Err(SettingsError::at(
            &e.source,
            format!(
                "{}=\"{}\" is not an interface name (1 to 15 of A-Z a-z 0-9 _ . -)",
                e.key, e.value
            ),
        ))
    }
}

fn parse_mac(e: &Entry) -> Result<String, SettingsError> {
    let parts: Vec<&str> = e.value.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    // The multicast bit of the first octet may not be set on an interface address.
    let unicast = ok && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0);
    if unicast {
        Ok(e.value.to_ascii_lowercase())
    } else {
        Err(SettingsError::at(
            &e.source,
            format!(
                "{}=\"{}\" is not a unicast MAC address like 00:16:3e:00:00:00",
                e.key, e.value
            ),
        ))
    }
}

fn parse_ipv4(e: &Entry) -> Result<Ipv4Addr, SettingsError> {
    e.value.parse().map_err(|_| {
        SettingsError::at(
            &e.source,
            format!(
                "{}=\"{}\" is not an IPv4 address like 10.0.3.1",
                e.key, e.value
            ),
        )
    })
}

fn parse_netmask(e: &Entry) -> Result<u8, SettingsError> {
    let mask = u32::from(parse_ipv4(e)?);
    let prefix = mask.leading_ones();
    if mask.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(SettingsError::at(
            &e.source,
            format!(
                "{}=\"{}\" is not a netmask (its one bits must come first, e.g. 255.255.255.0)",
                e.key, e.value
            ),
        ));
    }
    Ok(u8::try_from(prefix).expect("a u32 has at most 32 leading ones"))
}

fn parse_network(e: &Entry) -> Result<Ipv4Net, SettingsError> {
    let bad = |why: &str| SettingsError::at(&e.source, format!("{}=\"{}\" {why}", e.key, e.value));
    let (addr, prefix) = e
        .value
        .split_once('/')
        .ok_or_else(|| bad("is not a network like 10.0.3.0/24"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| bad("is not a network like 10.0.3.0/24"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| bad("has a prefix length outside 0..32"))?;
    let net = Ipv4Net { addr, prefix };
    if u32::from(addr) & !Ipv4Net::mask_of(prefix) != 0 {
        let base = Ipv4Addr::from(u32::from(addr) & Ipv4Net::mask_of(prefix));
        return Err(bad(&format!(
            "has host bits set; did you mean {base}/{prefix}?"
        )));
    }
    Ok(net)
}

fn parse_range(e: &Entry, network: &Ipv4Net) -> Result<DhcpRange, SettingsError> {
    let bad =
        |why: String| SettingsError::at(&e.source, format!("{}=\"{}\" {why}", e.key, e.value));
    let fields: Vec<&str> = e.value.split(',').collect();
    if !(2..=3).contains(&fields.len()) {
        return Err(bad(
            "is not FIRST,LAST[,LEASE-TIME] like 10.0.3.2,10.0.3.254".into(),
        ));
    }
    let addr = |text: &str| -> Result<Ipv4Addr, SettingsError> {
        let ip: Ipv4Addr = text
            .parse()
            .map_err(|_| bad(format!("has `{text}`, which is not an IPv4 address")))?;
        if !network.contains(ip) {
            return Err(bad(format!(
                "has {ip}, which is outside LXC_NETWORK {network}; keep the range inside the network"
            )));
        }
        Ok(ip)
    };
    let start = addr(fields[0])?;
    let end = addr(fields[1])?;
    if u32::from(start) > u32::from(end) {
        return Err(bad("starts after it ends".into()));
    }
    let lease_time = match fields.get(2) {
        None => None,
        Some(t) => {
            let digits = t.trim_end_matches(['s', 'm', 'h', 'd', 'w']);
            let ok = *t == "infinite"
                || (!digits.is_empty()
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && t.len() <= digits.len() + 1);
            if !ok {
                return Err(bad(format!(
                    "has lease time `{t}`; write a number with s, m, h, d or w, or `infinite`"
                )));
            }
            Some((*t).to_string())
        }
    };
    Ok(DhcpRange {
        start,
        end,
        lease_time,
    })
}

fn parse_count(e: &Entry) -> Result<u32, SettingsError> {
    e.value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        SettingsError::at(
            &e.source,
            format!("{}=\"{}\" is not a positive whole number", e.key, e.value),
        )
    })
}

fn parse_confile(e: &Entry) -> Result<Option<PathBuf>, SettingsError> {
    if e.value.is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(&e.value);
    if !path.is_absolute() || !path.is_file() {
        return Err(SettingsError::at(
            &e.source,
            format!(
                "{}=\"{}\" must be the absolute path of an existing dnsmasq configuration file",
                e.key, e.value
            ),
        ));
    }
    Ok(Some(path))
}

fn parse_domain(e: &Entry) -> Result<Option<String>, SettingsError> {
    if e.value.is_empty() {
        return Ok(None);
    }
    let ok = e.value.len() <= 253
        && e.value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(Some(e.value.clone()))
    } else {
        Err(SettingsError::at(
            &e.source,
            format!("{}=\"{}\" is not a DNS domain like lxc", e.key, e.value),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse_str(Path::new("/etc/default/lxc-net"), text)
    }

    #[test]
    fn defaults_are_lxcs() {
        let s = parse("").unwrap();
        assert!(s.use_bridge);
        assert_eq!(s.bridge, "lxcbr0");
        assert_eq!(s.addr, Ipv4Addr::new(10, 0, 3, 1));
        assert_eq!(s.prefix, 24);
        assert_eq!(s.network.to_string(), "10.0.3.0/24");
        assert_eq!(s.dhcp_range.to_string(), "10.0.3.2,10.0.3.254");
        assert_eq!(s.dhcp_max, 253);
        assert!(s.use_nft && s.dhcp_ping);
        assert_eq!(s.source_of("LXC_BRIDGE"), Source::Default);
        assert!(s.ipv6.is_none());
    }

    #[test]
    fn quoting_comments_and_export() {
        let s = parse(
            "# comment\n\nexport LXC_BRIDGE='br-x'\nLXC_ADDR=\"10.9.0.1\" # trailing\n\
             LXC_NETMASK=255.255.0.0\nLXC_NETWORK=\"10.9\".0.0/16\n\
             LXC_DHCP_RANGE=10.9.0.2,10.9.255.254,12h\nUSE_LXC_BRIDGE=true\n",
        )
        .unwrap();
        assert_eq!(s.bridge, "br-x");
        assert_eq!(s.addr, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(s.prefix, 16);
        assert_eq!(s.dhcp_range.lease_time.as_deref(), Some("12h"));
        assert_eq!(
            s.source_of("LXC_ADDR").to_string(),
            "/etc/default/lxc-net:4"
        );
    }

    #[test]
    fn later_assignment_wins() {
        let s = parse("LXC_DHCP_MAX=10\nLXC_DHCP_MAX=20\nexport LXC_DHCP_MAX\n").unwrap();
        assert_eq!(s.dhcp_max, 20);
        assert_eq!(
            s.source_of("LXC_DHCP_MAX").to_string(),
            "/etc/default/lxc-net:2"
        );
    }

    #[test]
    fn shell_constructs_are_one_error_with_line() {
        for text in [
            "LXC_ADDR=$(hostname -i)",
            "LXC_ADDR=`hostname -i`",
            "LXC_ADDR=\"$ADDR\"",
            "LXC_ADDR=10.0.3.1; echo hi",
            "if true; then",
            "LXC_ADDR=10.0.3.1 LXC_BRIDGE=x",
            "LXC_ADDR='10.0.3.1",
        ] {
            let err = parse(&format!("# first\n{text}\n")).unwrap_err();
            assert_eq!(err.location, "/etc/default/lxc-net:2", "{text}: {err}");
        }
    }

    #[test]
    fn values_are_validated_with_location() {
        let cases = [
            ("LXC_ADDR=10.0.3.300", "not an IPv4 address"),
            ("LXC_ADDR=10.0.4.1", "outside LXC_NETWORK"),
            ("LXC_NETMASK=255.0.255.0", "not a netmask"),
            ("LXC_NETMASK=255.255.0.0", "does not match LXC_NETMASK"),
            ("LXC_NETWORK=10.0.3.1/24", "host bits"),
            ("LXC_DHCP_RANGE=10.0.3.2,10.0.4.254", "outside LXC_NETWORK"),
            ("LXC_DHCP_RANGE=10.0.3.9,10.0.3.2", "starts after it ends"),
            ("LXC_DHCP_MAX=0", "positive"),
            ("USE_LXC_BRIDGE=yes", "\"true\" or \"false\""),
            ("LXC_BRIDGE=a/b", "interface name"),
            ("LXC_BRIDGE=abcdefghijklmnop", "interface name"),
            ("LXC_BRIDGE_MAC=01:00:00:00:00:00", "unicast"),
            ("LXC_DHCP_CONFILE=relative.conf", "absolute path"),
            ("LXC_DOMAIN=bad_domain", "DNS domain"),
            ("LXC_IPV6_ADDR=fc00::zz", "IPv6"),
            ("LXC_IPV6_MASK=64", "go together"),
        ];
        for (line, expect) in cases {
            let err = parse(&format!("\n{line}\n")).unwrap_err();
            assert_eq!(err.location, "/etc/default/lxc-net:2", "{line}: {err}");
            assert!(err.message.contains(expect), "{line}: {err}");
        }
    }

    #[test]
    fn ipv6_is_all_three_keys_and_consistent() {
        let s = parse(
            "LXC_IPV6_ADDR=fc42:5009:ba4b:5ab0::1\nLXC_IPV6_MASK=64\n\
             LXC_IPV6_NETWORK=fc42:5009:ba4b:5ab0::/64\nLXC_IPV6_NAT=true\n",
        )
        .unwrap();
        let v6 = s.ipv6.unwrap();
        assert_eq!(v6.addr_cidr(), "fc42:5009:ba4b:5ab0::1/64");
        assert_eq!(v6.network_cidr(), "fc42:5009:ba4b:5ab0::/64");
        assert!(v6.nat);
        let err = parse(
            "LXC_IPV6_ADDR=fc42:1::1\nLXC_IPV6_MASK=64\nLXC_IPV6_NETWORK=fc42:5009:ba4b:5ab0::/64\n",
        )
        .unwrap_err();
        assert_eq!(err.location, "/etc/default/lxc-net:1");
        assert!(err.message.contains("outside"), "{err}");
        let err = parse("LXC_IPV6_ADDR=fc42::1\nLXC_IPV6_MASK=64\nLXC_IPV6_NETWORK=fc42::1/64\n")
            .unwrap_err();
        assert_eq!(err.location, "/etc/default/lxc-net:3");
    }

    #[test]
    fn unknown_keys_warn_other_lxc_keys_do_not() {
        let s = parse("LXC_AUTO=\"true\"\nFOO=bar\n").unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].starts_with("/etc/default/lxc-net:2: unknown setting FOO"));
    }

    #[test]
    fn sourcing_idiom_reads_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("lxc-net");
        std::fs::write(&net, "LXC_BRIDGE=fromnet\n").unwrap();
        let lxc = dir.path().join("lxc");
        std::fs::write(
            &lxc,
            format!(
                "USE_LXC_BRIDGE=\"false\"  # overridden in lxc-net\n[ ! -f {0} ] || . {0}\n",
                net.display()
            ),
        )
        .unwrap();
        let s = Settings::load(&[lxc.clone(), net.clone()], true).unwrap();
        assert_eq!(s.bridge, "fromnet");
        assert!(!s.use_bridge);
        assert_eq!(
            s.source_of("LXC_BRIDGE").to_string(),
            format!("{}:1", net.display())
        );
        assert_eq!(
            s.source_of("USE_LXC_BRIDGE").to_string(),
            format!("{}:1", lxc.display())
        );
        // An optional include of a missing file is fine; a plain one is an error.
        let missing = dir.path().join("missing");
        std::fs::write(&lxc, format!("[ -f {0} ] && . {0}\n", missing.display())).unwrap();
        Settings::load(std::slice::from_ref(&lxc), true).unwrap();
        std::fs::write(&lxc, format!(". {}\n", missing.display())).unwrap();
        let err = Settings::load(std::slice::from_ref(&lxc), true).unwrap_err();
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[test]
    fn required_file_missing_is_an_error() {
        let err = Settings::load(&[PathBuf::from("/nonexistent/ulxc-net.conf")], true).unwrap_err();
        assert!(err.message.contains("no such settings file"));
        Settings::load(&[PathBuf::from("/nonexistent/ulxc-net.conf")], false).unwrap();
    }
}
