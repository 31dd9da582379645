//! Container networking: veth pairs made by the setuid helper `ulxc-user-nic` on a host
//! bridge, the no-privilege user-mode types (pasta, slirp4netns), the quota file
//! `/etc/lxc/lxc-usernet` and the helper's nic database, and the host side that
//! `ulxc-net` runs (bridge, dnsmasq, NAT rules). See ARCHITECTURE.md for who calls what.
//!
//! A start goes through three steps here: [`plan`] checks `lxc.net.N.*` before any
//! process exists; [`attach`] (in the monitor, once init's namespaces exist and its ids
//! are mapped, before init runs) makes the interfaces; the child applies
//! [`InsideNic`]s (loopback up, static addresses, gateway) as container root; and
//! [`Attached::release`] stops what the monitor started once init is gone (the kernel
//! removes a veth pair with the container's network namespace by itself).

pub mod hostnet;
pub mod netlink;
pub mod nicdb;
pub mod usermode;
pub mod usernet;
pub mod usernic;
pub mod veth;

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::{ContainerConfig, NetConfig, NetType};

/// Why a container's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A `lxc.net.N.*` value this runtime cannot carry out.
    #[error("{at}: lxc.net.{index}: {why}")]
    Config {
        /// Where the interface was defined.
        at: String,
        /// N.
        index: u32,
        /// What is wrong and what to do.
        why: String,
    },
    /// The setuid helper is not installed.
    #[error("lxc.net.N.type = veth needs the setuid helper ulxc-user-nic, which was looked for at {looked}; install it as root (`install -o root -g root -m 4755 target/release/ulxc-user-nic /usr/local/libexec/ulxc/`, or `.ci/install`), or use lxc.net.N.type = usermode, which needs no privilege")]
    HelperMissing {
        /// The paths tried.
        looked: String,
    },
    /// The helper exists but cannot act.
    #[error("{path} is not owned by root with the setuid bit, so it cannot create veth devices; as root: chown root:root {path:?} && chmod 4755 {path:?}")]
    HelperNotSetuid {
        /// The helper.
        path: PathBuf,
    },
    /// The helper refused or failed.
    #[error("ulxc-user-nic: {why}")]
    Helper {
        /// Its message.
        why: String,
    },
    /// No user-mode stack is installed.
    #[error("no-privilege networking needs {wanted}; install it (apt install passt) or use lxc.net.N.type = veth or empty")]
    UsermodeMissing {
        /// What is missing.
        wanted: &'static str,
    },
    /// The user-mode stack failed.
    #[error("{backend} failed: {why}")]
    Usermode {
        /// pasta or slirp4netns.
        backend: &'static str,
        /// What it said.
        why: String,
    },
}

/// One interface to make, decided before any process exists.
#[derive(Debug, Clone)]
pub enum PlannedNic {
    /// A veth pair through the setuid helper.
    Veth {
        /// N of `lxc.net.N`.
        index: u32,
        /// The helper.
        helper: PathBuf,
        /// What to ask it for.
        request: veth::VethRequest,
    },
    /// A user-mode stack.
    Usermode {
        /// N of `lxc.net.N`.
        index: u32,
        /// Which stack.
        backend: usermode::Backend,
        /// The interface name inside.
        ifname: String,
        /// `lxc.net.N.mtu`.
        mtu: Option<u32>,
        /// `lxc.net.N.hwaddr` with random digits filled.
        hwaddr: Option<String>,
    },
}

/// What the child configures inside the container's network namespace for one
/// interface (static addresses and gateways from `lxc.net.N.ipv4/ipv6.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsideNic {
    /// The interface name inside.
    pub ifname: String,
    /// Addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Default gateways.
    pub gateways: Vec<IpAddr>,
}

/// The networks of one container.
#[derive(Debug, Clone, Default)]
pub struct NetPlan {
    /// Whether the container gets its own network namespace (false for `none`).
    pub own_netns: bool,
    /// The interfaces the monitor makes.
    pub nics: Vec<PlannedNic>,
    /// What the child configures inside.
    pub inside: Vec<InsideNic>,
}

/// Fills the `x` digits of a MAC address like `00:16:3e:xx:xx:xx` with random ones.
pub fn fill_hwaddr(template: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    template
        .chars()
        .map(|c| {
            if c == 'x' || c == 'X' {
                char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')
            } else {
                c
            }
        })
        .collect()
}

fn config_err(net: &NetConfig, why: impl Into<String>) -> NetError {
    NetError::Config {
        at: net.at.to_string(),
        index: net.index,
        why: why.into(),
    }
}

/// Parses `A.B.C.D/P [BROADCAST]` or `ADDR/P` (prefix 24 or 64 when missing).
fn parse_address(net: &NetConfig, text: &str) -> Result<(IpAddr, u8), NetError> {
    let first = text.split_whitespace().next().unwrap_or("");
    let (addr, prefix) = match first.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (first, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| config_err(net, format!("{text:?} is not an address")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| config_err(net, format!("{text:?} has a bad prefix length")))?,
        None if addr.is_ipv4() => 24,
        None => 64,
    };
    Ok((addr, prefix))
}

/// The inside configuration of `net` named `ifname`; `bridge_v4` answers `gateway = auto`.
fn inside_of(
    net: &NetConfig,
    ifname: &str,
    bridge_v4: &dyn Fn(&str) -> Option<IpAddr>,
) -> Result<InsideNic, NetError> {
    let mut addresses = Vec::new();
    for a in net.ipv4.iter().chain(&net.ipv6) {
        addresses.push(parse_address(net, a)?);
    }
    let mut gateways = Vec::new();
    for (gw, family) in [(&net.ipv4_gateway, 4), (&net.ipv6_gateway, 6)] {
        match gw.as_deref() {
            None | Some("") => {}
            Some("auto") if family == 4 => {
                let link = net.link.as_deref().unwrap_or("");
                let addr = bridge_v4(link).ok_or_else(|| {
                    config_err(
                        net,
                        format!("ipv4.gateway = auto, but the bridge {link:?} has no IPv4 address; name the gateway"),
                    )
                })?;
                gateways.push(addr);
            }
            Some(g @ ("auto" | "dev")) => {
                return Err(config_err(
                    net,
                    format!("gateway = {g} is not supported here; name the gateway's address"),
                ))
            }
            Some(g) => gateways.push(
                g.parse()
                    .map_err(|_| config_err(net, format!("gateway {g:?} is not an address")))?,
            ),
        }
    }
    Ok(InsideNic {
        ifname: ifname.to_string(),
        addresses,
        gateways,
    })
}

/// The first IPv4 address of host interface `link`, through iproute2.
fn bridge_ipv4(link: &str) -> Option<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", link])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    word.split('/').next()?.parse().ok()
}

/// Checks `lxc.net.N.*` and decides what to make. No process is started here.
pub fn plan(cfg: &ContainerConfig, container: &str) -> Result<NetPlan, NetError> {
    let mut plan = NetPlan {
        own_netns: true,
        ..NetPlan::default()
    };
    let mut helper: Option<PathBuf> = None;
    let mut names: Vec<String> = Vec::new();
    for net in &cfg.net {
        let ifname = net
            .name
            .clone()
            .unwrap_or_else(|| format!("eth{}", net.index));
        let hwaddr = net.hwaddr.as_deref().map(fill_hwaddr);
        match net.kind {
            NetType::Empty => continue,
            NetType::None => {
                if cfg.net.len() > 1 {
                    return Err(config_err(
                        net,
                        "type = none shares the host's network namespace and cannot be combined with other interfaces",
                    ));
                }
                plan.own_netns = false;
                continue;
            }
            NetType::Veth => {
                let bridge = net.link.clone().filter(|l| !l.is_empty()).ok_or_else(|| {
                    config_err(
                        net,
                        format!("an unprivileged veth needs lxc.net.{}.link, the host bridge that /etc/lxc/lxc-usernet grants (e.g. lxcbr0)", net.index),
                    )
                })?;
                if net.veth_pair.is_some() {
                    tracing::warn!(
                        "{}: lxc.net.{}.veth.pair is ignored: ulxc-user-nic names the host end after the container",
                        net.at,
                        net.index
                    );
                }
                let path = match &helper {
                    Some(p) => p.clone(),
                    None => {
                        let p = veth::find_helper()?;
                        helper = Some(p.clone());
                        p
                    }
                };
                plan.inside.push(inside_of(net, &ifname, &bridge_ipv4)?);
                plan.nics.push(PlannedNic::Veth {
                    index: net.index,
                    helper: path,
                    request: veth::VethRequest {
                        bridge,
                        container: veth::helper_container_name(container),
                        ifname: ifname.clone(),
                        mtu: net.mtu,
                        hwaddr,
                    },
                });
            }
            NetType::Usermode | NetType::Pasta | NetType::Slirp4netns => {
                if !net.ipv4.is_empty() || !net.ipv6.is_empty() {
                    return Err(config_err(
                        net,
                        format!("a user-mode interface takes its address from pasta/slirp4netns; remove lxc.net.{}.ipv4/ipv6.address", net.index),
                    ));
                }
                if plan
                    .nics
                    .iter()
                    .any(|n| matches!(n, PlannedNic::Usermode { .. }))
                {
                    return Err(config_err(
                        net,
                        "only one user-mode interface per container is supported",
                    ));
                }
                plan.nics.push(PlannedNic::Usermode {
                    index: net.index,
                    backend: usermode::choose(net.kind)?,
                    ifname: ifname.clone(),
                    mtu: net.mtu,
                    hwaddr,
                });
            }
            other => {
                return Err(config_err(
                    net,
                    format!(
                        "type = {} needs privilege over host devices that an unprivileged user does not have; use veth (through ulxc-user-nic), usermode or empty",
                        format!("{other:?}").to_lowercase()
                    ),
                ))
            }
        }
        if names.contains(&ifname) {
            return Err(config_err(
                net,
                format!("the interface name {ifname} is used twice; set lxc.net.N.name"),
            ));
        }
        names.push(ifname);
    }
    Ok(plan)
}

/// What the monitor started for a running container's networks.
#[derive(Debug, Default)]
pub struct Attached {
    /// The veth pairs (released by the kernel with the namespace).
    pub veths: Vec<veth::VethPair>,
    /// The user-mode stacks (stopped by [`Attached::release`]).
    pub usermode: Vec<usermode::UsermodeNet>,
}

/// Makes the planned interfaces for init `init_pid` (namespaces made, ids mapped, init
/// not yet running). On failure, what was already made is released.
pub fn attach(
    plan: &NetPlan,
    dir: &crate::container::ContainerDir,
    init_pid: i32,
) -> Result<Attached, NetError> {
    let mut attached = Attached::default();
    for nic in &plan.nics {
        let made = match nic {
            PlannedNic::Veth {
                helper, request, ..
            } => veth::create(helper, init_pid, request).map(|pair| {
                tracing::info!(host = %pair.host, inside = %pair.inside, bridge = %request.bridge, "veth attached");
                attached.veths.push(pair);
            }),
            PlannedNic::Usermode {
                index,
                backend,
                ifname,
                mtu,
                hwaddr,
            } => {
                let pid_file = dir.usermode_pid_file(*index);
                let log = dir.net_log();
                let req = usermode::UsermodeRequest {
                    ifname,
                    mtu: *mtu,
                    hwaddr: hwaddr.as_deref(),
                    pid_file: &pid_file,
                    log: &log,
                };
                usermode::attach(backend, init_pid, &req).map(|net| {
                    tracing::info!(backend = net.backend(), pid = net.pid(), "user-mode network attached");
                    attached.usermode.push(net);
                })
            }
        };
        if let Err(e) = made {
            attached.release();
            return Err(e);
        }
    }
    Ok(attached)
}

impl Attached {
    /// The user-mode stacks' (pid, start time), recorded so that a monitor killed before
    /// it could stop them does not leave them behind.
    pub fn helper_processes(&self) -> Vec<(i32, u64)> {
        self.usermode
            .iter()
            .map(|u| (u.pid(), u.start_time()))
            .collect()
    }

    /// Stops the user-mode stacks. Veth pairs need nothing: the kernel deletes them with
    /// the container's network namespace, and ulxc-user-nic stops counting them.
    pub fn release(&mut self) {
        for u in self.usermode.drain(..) {
            u.stop();
        }
        self.veths.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwaddr_templates_are_filled() {
        let mac = fill_hwaddr("00:16:3e:xx:xx:xx");
        assert!(mac.starts_with("00:16:3e:"));
        assert!(!mac.contains('x'));
        assert_eq!(mac.len(), 17);
        assert_eq!(fill_hwaddr("02:00:00:00:00:01"), "02:00:00:00:00:01");
    }

    fn net_with(kind: NetType) -> NetConfig {
        let cfg = ContainerConfig::from_raw(
            &crate::config::parse_raw_str(
                "lxc.net.0.type = empty\n",
                std::path::Path::new("/c/config"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut net = cfg.net[0].clone();
        net.kind = kind;
        net
    }

    #[test]
    fn static_addresses_and_gateways() {
        let mut net = net_with(NetType::Veth);
        net.ipv4 = vec!["10.0.3.5/24 10.0.3.255".into(), "10.0.4.5".into()];
        net.ipv6 = vec!["fd00::5/64".into()];
        net.ipv4_gateway = Some("auto".into());
        net.link = Some("lxcbr0".into());
        let inside = inside_of(&net, "eth0", &|l| {
            (l == "lxcbr0").then(|| "10.0.3.1".parse().unwrap())
        })
        .unwrap();
        assert_eq!(
            inside.addresses,
            vec![
                ("10.0.3.5".parse().unwrap(), 24),
                ("10.0.4.5".parse().unwrap(), 24),
                ("fd00::5".parse().unwrap(), 64)
            ]
        );
        assert_eq!(inside.gateways, vec!["10.0.3.1".parse::<IpAddr>().unwrap()]);
        net.ipv4 = vec!["10.0.3.5/40".into()];
        let e = inside_of(&net, "eth0", &|_| None).unwrap_err().to_string();
        assert!(e.contains("prefix"), "{e}");
        net.ipv4.clear();
        let e = inside_of(&net, "eth0", &|_| None).unwrap_err().to_string();
        assert!(e.contains("no IPv4 address"), "{e}");
    }
}
