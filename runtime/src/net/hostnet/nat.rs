//! NAT and filter rules of `ulxc-net`, in rules of its own so that duplicates are
//! impossible by construction.
//!
//! - nftables: everything lives in the one table `inet ulxc`. `start` replaces it in one
//!   `nft -f -` transaction (create if missing, delete, define), so there is always
//!   exactly one copy; `stop` deletes it the same way.
//! - iptables (when nft is missing or `LXC_USE_NFT=false`): chains of ulxc's own
//!   (`ULXC-INPUT`, `ULXC-FORWARD` in filter, `ULXC-POSTROUTING` in nat and mangle, and
//!   with IPv6 NAT `ULXC-POSTROUTING` in ip6tables' nat),
//!   flushed and refilled on `start`; the jump into each is added only when `iptables -C`
//!   says it is absent; `stop` removes every jump and the chains.
//!
//! The rules are LXC's: DHCP and DNS accepted on the bridge, forwarding accepted in and
//! out of the bridge, masquerade from the network to anything outside it, and (iptables
//! only, where supported) a CHECKSUM fill for DHCP replies.

use super::settings::Settings;
use super::tool::{self, ToolError};
use serde::{Deserialize, Serialize};

/// The nftables table `ulxc-net` owns.
pub const NFT_TABLE: &str = "ulxc";
/// The nftables family of that table.
pub const NFT_FAMILY: &str = "inet";

/// The iptables chains `ulxc-net` owns: (table, own chain, built-in chain it hangs from,
/// whether the jump goes first in the built-in chain).
const IPTABLES_CHAINS: [(&str, &str, &str, bool); 4] = [
    ("filter", "ULXC-INPUT", "INPUT", true),
    ("filter", "ULXC-FORWARD", "FORWARD", true),
    ("nat", "ULXC-POSTROUTING", "POSTROUTING", false),
    ("mangle", "ULXC-POSTROUTING", "POSTROUTING", false),
];

/// The ip6tables chain `ulxc-net` owns when it masquerades IPv6 (nat table).
const IP6_NAT_CHAIN: &str = "ULXC-POSTROUTING";

/// The most jumps `stop` removes from one built-in chain (a guard against a tool that
/// keeps saying the jump is there).
const MAX_JUMPS: usize = 1000;

/// Which rule system carries the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// nftables through `nft`.
    Nftables,
    /// iptables through `iptables`.
    Iptables,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
        })
    }
}

/// One rule `ulxc-net` owns, as listed by the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedRule {
    /// `TABLE/CHAIN` (nft: `inet ulxc/postrouting`; iptables: `nat/ULXC-POSTROUTING`).
    pub chain: String,
    /// The rule in the backend's own words.
    pub rule: String,
    /// Whether it is the masquerade rule.
    pub masquerade: bool,
}

/// Chooses the backend as LXC does: nftables when `LXC_USE_NFT` is true and `nft`
/// works, iptables otherwise.
pub fn choose(settings: &Settings) -> Backend {
    if !settings.use_nft {
        Backend::Iptables
    } else if tool::in_path("nft") && tool::succeeds("nft", &["list", "tables"]) {
        Backend::Nftables
    } else {
        tracing::info!(
            "LXC_USE_NFT is true but `nft list tables` does not work here; using iptables"
        );
        Backend::Iptables
    }
}

/// The nft script that replaces the table atomically.
pub fn nft_script(settings: &Settings) -> String {
    let bridge = &settings.bridge;
    let net = settings.network;
    let v6_nat = match &settings.ipv6 {
        Some(v6) if v6.nat => format!(
            "\t\tip6 saddr {0} ip6 daddr != {0} counter masquerade\n",
            v6.network_cidr()
        ),
        _ => String::new(),
    };
    format!(
        "table {NFT_FAMILY} {NFT_TABLE} {{}}\n\
         delete table {NFT_FAMILY} {NFT_TABLE}\n\
         table {NFT_FAMILY} {NFT_TABLE} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\tiifname \"{bridge}\" udp dport {{ 53, 67 }} accept\n\
         \t\tiifname \"{bridge}\" tcp dport {{ 53, 67 }} accept\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" accept\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr {net} ip daddr != {net} counter masquerade\n\
         {v6_nat}\
         \t}}\n\
         }}\n"
    )
}

/// The iptables rules per (table, own chain), as argument lists after `-A CHAIN`.
fn iptables_rules(settings: &Settings) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let bridge = settings.bridge.as_str();
    let net = settings.network.to_string();
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let mut rules = Vec::new();
    for proto in ["udp", "tcp"] {
        for port in ["67", "53"] {
            rules.push((
                "filter",
                "ULXC-INPUT",
                words(&format!("-i {bridge} -p {proto} --dport {port} -j ACCEPT")),
            ));
        }
    }
    rules.push((
        "filter",
        "ULXC-FORWARD",
        words(&format!("-i {bridge} -j ACCEPT")),
    ));
    rules.push((
        "filter",
        "ULXC-FORWARD",
        words(&format!("-o {bridge} -j ACCEPT")),
    ));
    rules.push((
        "nat",
        "ULXC-POSTROUTING",
        words(&format!("-s {net} ! -d {net} -j MASQUERADE")),
    ));
    rules
}

fn ip6tables(args: &[&str]) -> Result<String, ToolError> {
    let mut all = vec!["-w", "-t", "nat"];
    all.extend_from_slice(args);
    tool::run("ip6tables", &all)
}

fn ip6tables_ok(args: &[&str]) -> bool {
    let mut all = vec!["-w", "-t", "nat"];
    all.extend_from_slice(args);
    tool::succeeds("ip6tables", &all)
}

fn iptables(table: &str, args: &[&str]) -> Result<String, ToolError> {
    let mut all = vec!["-w", "-t", table];
    all.extend_from_slice(args);
    tool::run("iptables", &all)
}

fn iptables_ok(table: &str, args: &[&str]) -> bool {
    let mut all = vec!["-w", "-t", table];
    all.extend_from_slice(args);
    tool::succeeds("iptables", &all)
}

/// Installs (or replaces) the rules with `backend`.
pub fn apply(backend: Backend, settings: &Settings) -> Result<(), ToolError> {
    match backend {
        Backend::Nftables => {
            tool::run_with_input("nft", &["-f", "-"], Some(&nft_script(settings))).map(drop)
        }
        Backend::Iptables => {
            for (table, chain, _, _) in IPTABLES_CHAINS {
                if !iptables_ok(table, &["-S", chain]) {
                    iptables(table, &["-N", chain])?;
                }
                iptables(table, &["-F", chain])?;
            }
            for (table, chain, rule) in iptables_rules(settings) {
                let mut args = vec!["-A", chain];
                args.extend(rule.iter().map(String::as_str));
                iptables(table, &args)?;
            }
            let bridge = settings.bridge.as_str();
            let checksum = [
                "-A",
                "ULXC-POSTROUTING",
                "-o",
                bridge,
                "-p",
                "udp",
                "-m",
                "udp",
                "--dport",
                "68",
                "-j",
                "CHECKSUM",
                "--checksum-fill",
            ];
            if let Err(err) = iptables("mangle", &checksum) {
                tracing::warn!(%err, "this iptables has no CHECKSUM target; DHCP replies are sent without a checksum fill");
            }
            for (table, chain, parent, first) in IPTABLES_CHAINS {
                if !iptables_ok(table, &["-C", parent, "-j", chain]) {
                    if first {
                        iptables(table, &["-I", parent, "1", "-j", chain])?;
                    } else {
                        iptables(table, &["-A", parent, "-j", chain])?;
                    }
                }
            }
            match settings.ipv6.as_ref().filter(|v6| v6.nat) {
                Some(v6) => {
                    let net = v6.network_cidr();
                    if !ip6tables_ok(&["-S", IP6_NAT_CHAIN]) {
                        ip6tables(&["-N", IP6_NAT_CHAIN])?;
                    }
                    ip6tables(&["-F", IP6_NAT_CHAIN])?;
                    ip6tables(&[
                        "-A",
                        IP6_NAT_CHAIN,
                        "-s",
                        &net,
                        "!",
                        "-d",
                        &net,
                        "-j",
                        "MASQUERADE",
                    ])?;
                    if !ip6tables_ok(&["-C", "POSTROUTING", "-j", IP6_NAT_CHAIN]) {
                        ip6tables(&["-A", "POSTROUTING", "-j", IP6_NAT_CHAIN])?;
                    }
                }
                None => remove_ip6()?,
            }
            Ok(())
        }
    }
}

/// Removes every rule `ulxc-net` owns with `backend` (nothing to remove is fine).
pub fn remove(backend: Backend) -> Result<(), ToolError> {
    match backend {
        Backend::Nftables => {
            let script = format!(
                "table {NFT_FAMILY} {NFT_TABLE} {{}}\ndelete table {NFT_FAMILY} {NFT_TABLE}\n"
            );
            tool::run_with_input("nft", &["-f", "-"], Some(&script)).map(drop)
        }
        Backend::Iptables => {
            if !tool::in_path("iptables") {
                return Ok(());
            }
            for (table, chain, parent, _) in IPTABLES_CHAINS {
                let mut removed = 0;
                while iptables_ok(table, &["-C", parent, "-j", chain]) && removed < MAX_JUMPS {
                    iptables(table, &["-D", parent, "-j", chain])?;
                    removed += 1;
                }
            }
            for (table, chain, _, _) in IPTABLES_CHAINS {
                if iptables_ok(table, &["-S", chain]) {
                    iptables(table, &["-F", chain])?;
                    iptables(table, &["-X", chain])?;
                }
            }
            remove_ip6()
        }
    }
}

/// Removes the ip6tables chain and its jumps (nothing there is fine).
fn remove_ip6() -> Result<(), ToolError> {
    if !tool::in_path("ip6tables") || !ip6tables_ok(&["-S", IP6_NAT_CHAIN]) {
        return Ok(());
    }
    let mut removed = 0;
    while ip6tables_ok(&["-C", "POSTROUTING", "-j", IP6_NAT_CHAIN]) && removed < MAX_JUMPS {
        ip6tables(&["-D", "POSTROUTING", "-j", IP6_NAT_CHAIN])?;
        removed += 1;
    }
    ip6tables(&["-F", IP6_NAT_CHAIN])?;
    ip6tables(&["-X", IP6_NAT_CHAIN]).map(drop)
}

/// Lists the rules `ulxc-net` owns now with `backend` (none when its table or chains
/// are absent).
pub fn list(backend: Backend) -> Result<Vec<OwnedRule>, ToolError> {
    match backend {
        Backend::Nftables => {
            let out = match tool::run("nft", &["-j", "list", "table", NFT_FAMILY, NFT_TABLE]) {
                Ok(out) => out,
                Err(err) if err.stderr().is_some_and(|e| e.contains("No such file")) => {
                    return Ok(Vec::new());
                }
                Err(err) => return Err(err),
            };
            Ok(parse_nft_rules(&out))
        }
        Backend::Iptables => {
            let mut rules = Vec::new();
            let mut seen = Vec::new();
            for (table, chain, _, _) in IPTABLES_CHAINS {
                if seen.contains(&(table, chain)) || !iptables_ok(table, &["-S", chain]) {
                    continue;
                }
                seen.push((table, chain));
                for line in iptables(table, &["-S", chain])?.lines() {
                    if line.starts_with("-A ") {
                        rules.push(OwnedRule {
                            chain: format!("{table}/{chain}"),
                            rule: line.to_string(),
                            masquerade: line.contains("-j MASQUERADE"),
                        });
                    }
                }
            }
            if tool::in_path("ip6tables") && ip6tables_ok(&["-S", IP6_NAT_CHAIN]) {
                for line in ip6tables(&["-S", IP6_NAT_CHAIN])?.lines() {
                    if line.starts_with("-A ") {
                        rules.push(OwnedRule {
                            chain: format!("ip6 nat/{IP6_NAT_CHAIN}"),
                            rule: line.to_string(),
                            masquerade: line.contains("-j MASQUERADE"),
                        });
                    }
                }
            }
            Ok(rules)
        }
    }
}

/// Turns `nft -j list table` output into rules, rendering each rule's expressions.
pub fn parse_nft_rules(json: &str) -> Vec<OwnedRule> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let items = doc
        .get("nftables")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|rule| {
            let exprs = rule
                .get("expr")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default();
            OwnedRule {
                chain: format!(
                    "{} {}/{}",
                    rule.get("family").and_then(|v| v.as_str()).unwrap_or("?"),
                    rule.get("table").and_then(|v| v.as_str()).unwrap_or("?"),
                    rule.get("chain").and_then(|v| v.as_str()).unwrap_or("?"),
                ),
                rule: exprs.iter().map(render_expr).collect::<Vec<_>>().join(" "),
                masquerade: exprs.iter().any(|e| e.get("masquerade").is_some()),
            }
        })
        .collect()
}

/// Renders one nft JSON expression in nft's words, compactly.
fn render_expr(expr: &serde_json::Value) -> String {
    use serde_json::Value;
    fn operand(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Object(map) => {
                if let Some(m) = map.get("meta") {
                    m.get("key")
                        .and_then(Value::as_str)
                        .unwrap_or("meta")
                        .to_string()
                } else if let Some(p) = map.get("payload") {
                    format!(
                        "{} {}",
                        p.get("protocol").and_then(Value::as_str).unwrap_or("?"),
                        p.get("field").and_then(Value::as_str).unwrap_or("?")
                    )
                } else if let Some(p) = map.get("prefix") {
                    format!("{}/{}", operand(&p["addr"]), operand(&p["len"]))
                } else if let Some(Value::Array(set)) = map.get("set") {
                    format!(
                        "{{ {} }}",
                        set.iter().map(operand).collect::<Vec<_>>().join(", ")
                    )
                } else {
                    v.to_string()
                }
            }
            other => other.to_string(),
        }
    }
    match expr {
        Value::Object(map) if map.len() == 1 => {
            let (key, value) = map.iter().next().expect("one entry");
            if key == "match" {
                let op = value.get("op").and_then(Value::as_str).unwrap_or("==");
                let op = if op == "==" || op == "in" {
                    String::new()
                } else {
                    format!("{op} ")
                };
                format!(
                    "{} {op}{}",
                    operand(&value["left"]),
                    operand(&value["right"])
                )
            } else if value.is_null() || value.as_object().is_some_and(|m| m.is_empty()) {
                key.clone()
            } else if key == "counter" {
                "counter".into()
            } else {
                format!("{key} {value}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_json_rules_are_rendered() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "ulxc"}},
          {"rule": {"family": "ip", "table": "ulxc", "chain": "postrouting", "handle": 7, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.3.0", "len": 24}}}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.0.3.0", "len": 24}}}},
            {"counter": {"packets": 0, "bytes": 0}}, {"masquerade": null}]}},
          {"rule": {"family": "ip", "table": "ulxc", "chain": "input", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lxcbr0"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"set": [53, 67]}}},
            {"accept": null}]}}]}"#;
        let rules = parse_nft_rules(json);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].chain, "ip ulxc/postrouting");
        assert_eq!(
            rules[0].rule,
            "ip saddr 10.0.3.0/24 ip daddr != 10.0.3.0/24 counter masquerade"
        );
        assert!(rules[0].masquerade);
        assert_eq!(rules[1].rule, "iifname lxcbr0 udp dport { 53, 67 } accept");
        assert!(!rules[1].masquerade);
    }

    #[test]
    fn nft_script_replaces_the_table_in_one_go() {
        let s = super::super::settings::Settings::parse_str(std::path::Path::new("x"), "").unwrap();
        let script = nft_script(&s);
        assert!(script.starts_with("table inet ulxc {}\ndelete table inet ulxc\ntable inet ulxc {"));
        assert_eq!(script.matches("masquerade").count(), 1);
    }
}
