//! `ulxc-net status`: the versioned report (`--json`) and its human rendering.

use super::bridge::BridgeState;
use super::nat::{Backend, OwnedRule};
use serde::Serialize;
use std::fmt::Write;

/// The version of the JSON report's format.
pub const STATUS_VERSION: u32 = 1;

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Format version ([`STATUS_VERSION`]).
    pub version: u32,
    /// Whether `ulxc-net` is started (its state file exists).
    pub up: bool,
    /// `USE_LXC_BRIDGE` and where it was set.
    pub enabled: bool,
    /// The run dir.
    pub run_dir: String,
    /// The bridge.
    pub bridge: BridgeReport,
    /// The DHCP server.
    pub dnsmasq: DnsmasqReport,
    /// The backend holding the rules (from the state file, else the one `start` would use).
    pub backend: Backend,
    /// The rules `ulxc-net` owns now.
    pub rules: Vec<OwnedRule>,
    /// Every setting with its value and source.
    pub settings: Vec<SettingReport>,
}

/// The bridge part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeReport {
    /// Its name.
    pub name: String,
    /// Whether it exists.
    pub exists: bool,
    /// Whether `ulxc-net` created it.
    pub created_by_ulxc_net: bool,
    /// Its state when it exists.
    #[serde(flatten)]
    pub state: Option<BridgeState>,
}

/// The dnsmasq part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct DnsmasqReport {
    /// The pid from the pid file.
    pub pid: Option<i32>,
    /// Whether that pid is our live dnsmasq.
    pub alive: bool,
    /// Leases in the lease file.
    pub leases: usize,
    /// The lease file.
    pub lease_file: String,
}

/// One setting in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// `default`, or `FILE:LINE`.
    pub source: String,
}

impl Status {
    /// The human rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "ulxc-net: {}", if self.up { "up" } else { "down" });
        if !self.enabled {
            let source = self
                .settings
                .iter()
                .find(|s| s.key == "USE_LXC_BRIDGE")
                .map_or("default", |s| s.source.as_str());
            let _ = writeln!(out, "  (disabled: USE_LXC_BRIDGE=\"false\" at {source})");
        }
        let b = &self.bridge;
        match &b.state {
            Some(state) => {
                let _ = writeln!(
                    out,
                    "bridge {}: {}{}, addresses: {}",
                    b.name,
                    if state.up { "up" } else { "down" },
                    if b.created_by_ulxc_net {
                        ", created by ulxc-net"
                    } else {
                        ""
                    },
                    if state.addresses.is_empty() {
                        "-".into()
                    } else {
                        state.addresses.join(", ")
                    }
                );
            }
            None => {
                let _ = writeln!(out, "bridge {}: absent", b.name);
            }
        }
        let d = &self.dnsmasq;
        let _ = writeln!(
            out,
            "dnsmasq: {}, {} lease(s) in {}",
            match (d.pid, d.alive) {
                (Some(pid), true) => format!("pid {pid} running"),
                (Some(pid), false) => format!("pid {pid} not running"),
                (None, _) => "not running".into(),
            },
            d.leases,
            d.lease_file
        );
        let _ = writeln!(out, "rules ({}): {}", self.backend, self.rules.len());
        for rule in &self.rules {
            let _ = writeln!(out, "  {}: {}", rule.chain, rule.rule);
        }
        let _ = writeln!(out, "settings:");
        for s in &self.settings {
            let _ = writeln!(out, "  {}=\"{}\"  ({})", s.key, s.value, s.source);
        }
        out
    }
}
