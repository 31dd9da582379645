//! The host bridge: created if missing, given its address, brought up; removed again
//! only when `ulxc-net` created it. Driven through `ip` (its JSON output is parsed).

use super::tool::{self, ToolError};
use serde::Deserialize;

/// What `ip -j -d link show` tells about an interface (the fields used here).
#[derive(Debug, Deserialize)]
struct IpLink {
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    family: String,
    local: String,
    prefixlen: u8,
}

/// A bridge's state as seen now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BridgeState {
    /// The interface's kind (`bridge` for a bridge; `None` for a plain device).
    pub kind: Option<String>,
    /// Whether the interface is administratively up.
    pub up: bool,
    /// Its addresses in CIDR form (`10.0.3.1/24`, IPv6 too).
    pub addresses: Vec<String>,
}

/// The names of the interfaces attached to bridge `name` (its ports), e.g. the host ends
/// of running containers' veths.
pub fn ports(name: &str) -> Result<Vec<String>, ToolError> {
    #[derive(Deserialize)]
    struct Port {
        ifname: String,
    }
    let out = tool::run("ip", &["-j", "link", "show", "master", name])?;
    let ports: Vec<Port> = serde_json::from_str(&out).unwrap_or_default();
    Ok(ports.into_iter().map(|p| p.ifname).collect())
}

/// Reads the interface `name`, `None` when there is none.
pub fn inspect(name: &str) -> Result<Option<BridgeState>, ToolError> {
    let link = match tool::run("ip", &["-j", "-d", "link", "show", "dev", name]) {
        Ok(out) => out,
        Err(err) if err.stderr().is_some_and(|e| e.contains("does not exist")) => return Ok(None),
        Err(err) => return Err(err),
    };
    let addrs = tool::run("ip", &["-j", "addr", "show", "dev", name])?;
    let links: Vec<IpLink> = serde_json::from_str(&link).unwrap_or_default();
    let with_addrs: Vec<IpLink> = serde_json::from_str(&addrs).unwrap_or_default();
    let Some(first) = links.first() else {
        return Ok(None);
    };
    Ok(Some(BridgeState {
        kind: first.linkinfo.as_ref().and_then(|l| l.info_kind.clone()),
        up: first.flags.iter().any(|f| f == "UP"),
        addresses: with_addrs
            .iter()
            .flat_map(|l| &l.addr_info)
            .filter(|a| a.family == "inet" || a.family == "inet6")
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
            .collect(),
    }))
}

/// Creates the bridge `name` with the MAC address `mac`.
pub fn create(name: &str, mac: &str) -> Result<(), ToolError> {
    tool::run("ip", &["link", "add", "name", name, "type", "bridge"])?;
    tool::run("ip", &["link", "set", "dev", name, "address", mac])?;
    Ok(())
}

/// Adds `cidr` (with the broadcast address computed) to `name`.
pub fn add_address(name: &str, cidr: &str) -> Result<(), ToolError> {
    tool::run("ip", &["addr", "add", cidr, "broadcast", "+", "dev", name]).map(drop)
}

/// Adds the IPv6 address `cidr` to `name`.
pub fn add_address6(name: &str, cidr: &str) -> Result<(), ToolError> {
    tool::run("ip", &["-6", "addr", "add", cidr, "dev", name]).map(drop)
}

/// Removes `cidr` from `name`.
pub fn remove_address(name: &str, cidr: &str) -> Result<(), ToolError> {
    tool::run("ip", &["addr", "del", cidr, "dev", name]).map(drop)
}

/// Brings `name` up.
pub fn set_up(name: &str) -> Result<(), ToolError> {
    tool::run("ip", &["link", "set", "dev", name, "up"]).map(drop)
}

/// Deletes the interface `name`.
pub fn delete(name: &str) -> Result<(), ToolError> {
    tool::run("ip", &["link", "del", "dev", name]).map(drop)
}
