//! `ulxc-net` against the real tools: each test runs the real binary as root inside
//! network namespaces it creates (never the machine's own), with its own settings file
//! and run dir, and asserts on the real state: `nft list table`, `iptables -S`,
//! `ip addr`, the dnsmasq process, and TCP traffic through the NAT.
//!
//! Run as root: `cargo test -p ulxc --test host_net`.

mod common;

use common::netns::{TestNetns, UlxcNetHost as NetHost};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The IPv4 addresses of lxcbr0 in the host's namespace (`ip -4 -o addr show`).
fn lxcbr0_ipv4(host: &NetHost) -> String {
    host.ns
        .run(&["ip", "-4", "-o", "addr", "show", "dev", "lxcbr0"])
}

/// Holds the UDP port `addr` inside `ns` until the returned guard is dropped.
struct PortHolder {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PortHolder {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn hold_udp_port(ns: &TestNetns, addr: &'static str) -> PortHolder {
    let (taken_tx, taken_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let thread = ns.in_thread(move || {
        let socket = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        taken_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(socket);
    });
    taken_rx.recv().unwrap();
    PortHolder {
        release: Some(release_tx),
        thread: Some(thread),
    }
}

#[test]
fn start_is_idempotent_and_stop_undoes_everything() {
    let host = NetHost::new("idempotent", "");
    host.ok(&["start"]);
    let addrs = lxcbr0_ipv4(&host);
    assert!(addrs.contains("10.0.3.1/24"), "{addrs}");
    let link = host.ns.run(&["ip", "-o", "link", "show", "dev", "lxcbr0"]);
    assert!(link.contains(",UP"), "{link}");
    let pid = host.dnsmasq_pid().expect("dnsmasq pid file");
    assert!(host.is_our_dnsmasq(pid));
    assert_eq!(host.nft_masquerades(), 1);
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let forward_inside = host.ns.run(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forward_inside.trim(), "1");
    println!(
        "forwarding in the machine's own namespace: {}",
        forward.trim()
    );

    let again = host.ok(&["start"]);
    assert!(again.contains("already running"), "{again}");
    assert_eq!(
        host.nft_masquerades(),
        1,
        "second start duplicated the rule"
    );
    assert_eq!(
        host.dnsmasq_pid(),
        Some(pid),
        "second start replaced dnsmasq"
    );
    assert!(host.is_our_dnsmasq(pid));

    // A changed setting restarts dnsmasq with it (the rules stay one copy).
    std::fs::write(&host.configs[0], "LXC_DHCP_MAX=42\n").unwrap();
    let changed = host.ok(&["start"]);
    assert!(!changed.contains("already running"), "{changed}");
    let new_pid = host.dnsmasq_pid().unwrap();
    assert_ne!(new_pid, pid);
    assert!(host.is_our_dnsmasq(new_pid));
    assert!(!host.is_our_dnsmasq(pid), "the old dnsmasq still runs");
    let args = std::fs::read(format!("/proc/{new_pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&args).contains("--dhcp-lease-max=42"));
    assert_eq!(host.nft_masquerades(), 1);

    // A changed address replaces the old one on the bridge.
    std::fs::write(&host.configs[0], "LXC_ADDR=10.0.3.5\n").unwrap();
    host.ok(&["start"]);
    let addrs = lxcbr0_ipv4(&host);
    assert!(
        addrs.contains("10.0.3.5/24") && !addrs.contains("10.0.3.1/24"),
        "{addrs}"
    );
    let last_pid = host.dnsmasq_pid().unwrap();
    assert!(host.is_our_dnsmasq(last_pid));

    host.ok(&["stop"]);
    host.assert_nothing("lxcbr0");
    assert!(!host.is_our_dnsmasq(new_pid) && !host.is_our_dnsmasq(last_pid));
    let again = host.ok(&["stop"]);
    assert!(again.contains("was not up"), "{again}");
    host.assert_nothing("lxcbr0");
}

fn rounds(settings: &str, count: usize, masquerades: impl Fn(&NetHost) -> usize) {
    let host = NetHost::new("rounds", settings);
    for round in 0..count {
        host.ok(&["start"]);
        assert_eq!(masquerades(&host), 1, "round {round}: after start");
        host.ok(&["stop"]);
        assert_eq!(masquerades(&host), 0, "round {round}: after stop");
    }
    host.assert_nothing("lxcbr0");
    println!("{count} start/stop rounds: exactly one NAT rule while up, none while down");
}

#[test]
fn hundred_start_stop_rounds_nftables() {
    rounds("", 100, |h| {
        assert_eq!(h.iptables_masquerades(), 0);
        h.nft_masquerades()
    });
}

#[test]
fn start_stop_rounds_iptables() {
    rounds("LXC_USE_NFT=\"false\"\n", 40, |h| {
        assert!(!h.has_ulxc_table(), "iptables backend made the nft table");
        let nat = h.iptables_masquerades();
        // iptables-nft keeps its rules in nftables: the same one rule, seen twice.
        assert_eq!(h.nft_masquerades(), nat);
        nat
    });
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Applies a lease from busybox udhcpc with ip(8).
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    ;;
esac
exit 0
"#;

#[test]
fn dhcp_lease_and_masqueraded_traffic_end_to_end() {
    let host = NetHost::new("nat-host", "");
    host.ok(&["start"]);

    let outside = TestNetns::new("outside");
    host.ns
        .link_to(&outside, Some("192.168.77.2/24"), Some("192.168.77.1/24"));
    host.ns.default_route("192.168.77.1");
    let observer = outside.tcp_observer(Ipv4Addr::new(192, 168, 77, 1), 7777);

    let client = TestNetns::new("client");
    let veth = client.link_to(&host.ns, None, None);
    host.ns
        .run(&["ip", "link", "set", &veth.there, "master", "lxcbr0", "up"]);

    let script = host.dir.path().join("udhcpc.script");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.display().to_string();
    let dhcp = client.output(&[
        "busybox", "udhcpc", "-i", &veth.here, "-n", "-q", "-t", "10", "-T", "1", "-s", &script,
    ]);
    assert!(
        dhcp.status.success(),
        "udhcpc got no lease: {}{}",
        String::from_utf8_lossy(&dhcp.stdout),
        stderr(&dhcp)
    );
    let addr = client.run(&["ip", "-4", "-o", "addr", "show", "dev", &veth.here]);
    let leased: Ipv4Addr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address on the client: {addr}"));
    let octets = leased.octets();
    assert_eq!(&octets[..3], &[10, 0, 3], "leased {leased}");
    assert!((2..=254).contains(&octets[3]), "leased {leased}");
    let route = client.run(&["ip", "route", "show", "default"]);
    assert!(route.contains("via 10.0.3.1"), "{route}");
    println!("client leased {leased}");

    let local = client
        .connect_from(SocketAddr::from(([192, 168, 77, 1], 7777)))
        .expect("the client reaches the outside server through the NAT");
    assert_eq!(local.ip(), IpAddr::V4(leased));
    let peers = common::eventually(
        "the server to see the connection",
        Duration::from_secs(5),
        || {
            let peers = observer.peers();
            (!peers.is_empty()).then_some(peers)
        },
    );
    assert_eq!(
        peers,
        vec![IpAddr::V4(Ipv4Addr::new(192, 168, 77, 2))],
        "the server must see the host namespace's outside address (masqueraded), not {leased}"
    );
    println!("outside server saw {:?} for client {leased}", peers[0]);

    let status = host.status_json();
    assert_eq!(status["dnsmasq"]["leases"], 1, "{status}");
    let counted = host.ns.run(&["nft", "list", "table", "inet", "ulxc"]);
    assert!(
        counted
            .lines()
            .any(|l| l.contains("masquerade") && !l.contains("packets 0 ")),
        "the masquerade rule counted no packets: {counted}"
    );
}

#[test]
fn bad_settings_are_one_error_with_location_and_start_nothing() {
    let cases = [
        ("LXC_ADDR=$(hostname -i)\n", ":1:", "needs a shell"),
        (
            "# addresses\nLXC_ADDR=\"10.0.3.999\"\n",
            ":2:",
            "not an IPv4 address",
        ),
        (
            "\n\nLXC_DHCP_RANGE=10.0.3.2,10.0.9.254\n",
            ":3:",
            "outside LXC_NETWORK 10.0.3.0/24",
        ),
        (
            "LXC_NETMASK=255.255.0.0\n",
            ":1:",
            "does not match LXC_NETMASK",
        ),
        ("LXC_BRIDGE=`id -un`\n", ":1:", "needs a shell"),
    ];
    for (settings, line, message) in cases {
        let host = NetHost::new("bad-settings", settings);
        let out = host.ulxc_net(&["start"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{settings}: start succeeded");
        let config = host.configs[0].display().to_string();
        assert!(
            err.contains(&format!("{config}{line}")),
            "{settings}: {err}"
        );
        assert!(err.contains(message), "{settings}: {err}");
        assert_eq!(
            err.matches("error").count(),
            1,
            "{settings}: not one error: {err}"
        );
        host.assert_nothing("lxcbr0");
        assert!(!host.run_dir.exists(), "{settings}: the run dir was made");
    }
    println!("{} bad settings refused with file:line", cases.len());

    // An unknown key is only a warning.
    let host = NetHost::new("unknown-key", "LXC_BRIDGE=ulxcbr9\nLXC_FROBNICATE=\"1\"\n");
    let out = host.ulxc_net(&["start"]);
    let config = host.configs[0].display().to_string();
    common::ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{config}:2: unknown setting LXC_FROBNICATE")),
        "{err}"
    );
    assert!(host.bridge_exists("ulxcbr9"));
    host.ok(&["stop"]);
    host.assert_nothing("ulxcbr9");
}

#[test]
fn failed_dnsmasq_start_is_undone_and_a_site_bridge_is_kept() {
    let host = NetHost::new("dns-busy", "LXC_DHCP_PING=false\n");
    // A site's own bridge with the address already on it, and port 53 taken there.
    host.ns
        .run(&["ip", "link", "add", "lxcbr0", "type", "bridge"]);
    host.ns
        .run(&["ip", "addr", "add", "10.0.3.1/24", "dev", "lxcbr0"]);
    host.ns.run(&["ip", "link", "set", "lxcbr0", "up"]);
    let blocker = hold_udp_port(&host.ns, "10.0.3.1:53");

    let out = host.ulxc_net(&["start"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "start succeeded with port 53 taken");
    assert!(err.contains("dnsmasq did not start"), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(!host.has_ulxc_table(), "the failed start left its table");
    assert!(
        host.bridge_exists("lxcbr0"),
        "the site's bridge was deleted"
    );
    let addrs = lxcbr0_ipv4(&host);
    assert!(addrs.contains("10.0.3.1/24"), "{addrs}");

    drop(blocker);
    host.ok(&["start"]);
    let stopped = host.ok(&["stop"]);
    assert!(stopped.contains("bridge lxcbr0 kept"), "{stopped}");
    assert!(
        host.bridge_exists("lxcbr0"),
        "stop deleted the site's bridge"
    );
    let addrs = lxcbr0_ipv4(&host);
    assert!(
        addrs.contains("10.0.3.1/24"),
        "stop removed the site's own address: {addrs}"
    );
    assert!(!host.has_ulxc_table());
}

#[test]
fn failed_dnsmasq_start_deletes_the_bridge_it_created() {
    let host = NetHost::new("dns-busy-new", "LXC_DHCP_PING=false\n");
    // Port 53 held on the wildcard address: dnsmasq cannot bind 10.0.3.1:53.
    let blocker = hold_udp_port(&host.ns, "0.0.0.0:53");
    let out = host.ulxc_net(&["start"]);
    let err = stderr(&out);
    drop(blocker);
    assert!(!out.status.success(), "start succeeded with port 53 taken");
    assert!(err.contains("dnsmasq did not start"), "{err}");
    assert_eq!(err.matches("error").count(), 1, "not one error: {err}");
    host.assert_nothing("lxcbr0");
    assert!(
        !host.run_dir.join("state.json").exists(),
        "a failed start left its state file"
    );
}

#[test]
fn status_json_while_up_and_down_with_sources() {
    let mut host = NetHost::new("status", "LXC_DHCP_MAX=\"50\"\n");
    let second = host.dir.path().join("second.conf");
    std::fs::write(&second, "# site overrides\nexport LXC_DHCP_MAX=100\n").unwrap();
    host.configs.push(second.clone());

    let down = host.status_json();
    assert_eq!(down["version"], 1);
    assert_eq!(down["up"], false);
    assert_eq!(down["rules"].as_array().map(Vec::len), Some(0), "{down}");
    assert_eq!(down["dnsmasq"]["alive"], false);
    let setting = |status: &serde_json::Value, key: &str| -> (String, String) {
        let entry = status["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {status}"))
            .clone();
        (
            entry["value"].as_str().unwrap().to_string(),
            entry["source"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        setting(&down, "LXC_DHCP_MAX"),
        ("100".to_string(), format!("{}:2", second.display()))
    );
    assert_eq!(
        setting(&down, "LXC_BRIDGE"),
        ("lxcbr0".to_string(), "default".to_string())
    );
    // --config replaces the default files: nothing comes from /etc/default.
    let sources: Vec<&str> = down["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.iter().all(|s| !s.starts_with("/etc/")),
        "{sources:?}"
    );

    host.ok(&["start"]);
    let up = host.status_json();
    assert_eq!(up["version"], 1);
    assert_eq!(up["up"], true);
    assert_eq!(up["backend"], "nftables");
    assert_eq!(up["bridge"]["exists"], true);
    assert_eq!(up["bridge"]["created_by_ulxc_net"], true);
    assert!(up["bridge"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "10.0.3.1/24"));
    assert_eq!(up["dnsmasq"]["alive"], true);
    assert_eq!(up["dnsmasq"]["pid"], host.dnsmasq_pid().unwrap());
    let rules = up["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 5, "{up}");
    let masq: Vec<_> = rules.iter().filter(|r| r["masquerade"] == true).collect();
    assert_eq!(masq.len(), 1, "{up}");
    assert_eq!(masq[0]["chain"], "inet ulxc/postrouting");
    assert!(
        masq[0]["rule"].as_str().unwrap().contains("10.0.3.0/24"),
        "{up}"
    );
    let args = std::fs::read(format!("/proc/{}/cmdline", host.dnsmasq_pid().unwrap())).unwrap();
    assert!(String::from_utf8_lossy(&args).contains("--dhcp-lease-max=100"));

    let human = host.ok(&["status"]);
    assert!(
        human.contains(&format!("LXC_DHCP_MAX=\"100\"  ({}:2)", second.display())),
        "{human}"
    );

    host.ok(&["stop"]);
    let down = host.status_json();
    assert_eq!(down["up"], false);
    assert_eq!(down["bridge"]["exists"], false);
    assert_eq!(down["rules"].as_array().map(Vec::len), Some(0), "{down}");
}

#[test]
fn disabled_bridge_starts_nothing_and_says_where() {
    let host = NetHost::new("disabled", "# no bridge here\nUSE_LXC_BRIDGE=\"false\"\n");
    let out = host.ok(&["start"]);
    let config = host.configs[0].display().to_string();
    assert!(out.contains("disabled"), "{out}");
    assert!(out.contains(&format!("{config}:2")), "{out}");
    host.assert_nothing("lxcbr0");
    assert!(!host.run_dir.exists(), "the run dir was made");
}

#[test]
fn a_pid_file_naming_another_process_is_never_signalled() {
    let host = NetHost::new("foreign-pid", "");
    std::fs::create_dir_all(&host.run_dir).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let sleeper_pid = i32::try_from(sleeper.id()).unwrap();
    host.ns.kill_on_drop(sleeper_pid);
    std::fs::write(host.pid_file(), format!("{sleeper_pid}\n")).unwrap();

    // stop must not signal it; start must not take it for a running dnsmasq.
    host.ok(&["stop"]);
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "stop signalled a foreign pid"
    );
    std::fs::write(host.pid_file(), format!("{sleeper_pid}\n")).unwrap();
    let started = host.ok(&["start"]);
    assert!(!started.contains("already running"), "{started}");
    let pid = host.dnsmasq_pid().unwrap();
    assert_ne!(pid, sleeper_pid);
    assert!(host.is_our_dnsmasq(pid));
    host.ok(&["restart"]);
    assert_eq!(host.nft_masquerades(), 1);
    host.ok(&["stop"]);
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "a foreign pid was signalled"
    );
    host.assert_nothing("lxcbr0");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

const IPV6_SETTINGS: &str = "LXC_IPV6_ADDR=fc42:5009:ba4b:5ab0::1\nLXC_IPV6_MASK=64\n\
LXC_IPV6_NETWORK=fc42:5009:ba4b:5ab0::/64\nLXC_IPV6_NAT=true\n";

#[test]
fn ipv6_address_router_advertisements_and_nat_like_lxc() {
    for backend in ["", "LXC_USE_NFT=false\n"] {
        let host = NetHost::new("ipv6", &format!("{backend}{IPV6_SETTINGS}"));
        host.ok(&["start"]);
        host.ok(&["start"]);
        let addrs = host
            .ns
            .run(&["ip", "-6", "-o", "addr", "show", "dev", "lxcbr0"]);
        assert!(addrs.contains("fc42:5009:ba4b:5ab0::1/64"), "{addrs}");
        let forwarding = host
            .ns
            .run(&["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]);
        assert_eq!(forwarding.trim(), "1");
        let pid = host.dnsmasq_pid().unwrap();
        assert!(host.is_our_dnsmasq(pid));
        let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&args).contains("--dhcp-range=fc42:5009:ba4b:5ab0::1,ra-only")
        );
        let v6_masquerades = if backend.is_empty() {
            let table = host.ns.run(&["nft", "list", "table", "inet", "ulxc"]);
            assert_eq!(host.nft_masquerades(), 2, "{table}");
            table
                .lines()
                .filter(|l| l.contains("ip6 saddr") && l.contains("masquerade"))
                .count()
        } else {
            host.ns
                .run(&["ip6tables", "-w", "-t", "nat", "-S"])
                .lines()
                .filter(|l| l.contains("MASQUERADE"))
                .count()
        };
        assert_eq!(v6_masquerades, 1, "backend {backend:?}");
        let status = host.status_json();
        let masq = status["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["masquerade"] == true)
            .count();
        assert_eq!(masq, 2, "{status}");

        host.ok(&["stop"]);
        host.assert_nothing("lxcbr0");
        let v6_left = host.ns.run(&["ip6tables", "-w", "-t", "nat", "-S"]);
        assert!(
            !v6_left.contains("ULXC") && !v6_left.contains("MASQUERADE"),
            "{v6_left}"
        );
    }
}

#[test]
fn half_written_ipv6_settings_are_an_error_with_location() {
    let host = NetHost::new("ipv6-bad", "\nLXC_IPV6_ADDR=fc42::zz\n");
    let config = host.configs[0].display().to_string();
    let out = host.ulxc_net(&["start"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{config}:2: LXC_IPV6_ADDR")),
        "{}",
        stderr(&out)
    );
    std::fs::write(&host.configs[0], "LXC_IPV6_MASK=64\n").unwrap();
    let out = host.ulxc_net(&["start"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{config}:1: ")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("go together"), "{}", stderr(&out));
    host.assert_nothing("lxcbr0");
}

#[test]
fn run_dir_from_the_environment() {
    let host = NetHost::new("env-run-dir", "LXC_DHCP_PING=false\n");
    let env_dir = host.dir.path().join("from-env");
    let run = |command: &str| {
        let out = host
            .ns
            .command(env!("CARGO_BIN_EXE_ulxc-net"))
            .env("ULXC_NET_RUN_DIR", &env_dir)
            .arg("--config")
            .arg(&host.configs[0])
            .arg(command)
            .output()
            .unwrap();
        common::ok(&out)
    };
    run("start");
    let pid: i32 = std::fs::read_to_string(env_dir.join("dnsmasq.pid"))
        .expect("the pid file is in $ULXC_NET_RUN_DIR")
        .trim()
        .parse()
        .unwrap();
    // Not in the run dir NetHost cleans up: killed with the namespace if the test fails.
    host.ns.kill_on_drop(pid);
    let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&args).contains(&format!(
        "--pid-file={}",
        env_dir.join("dnsmasq.pid").display()
    )));
    assert!(env_dir.join("state.json").exists());
    let stopped = run("stop");
    assert!(
        stopped.contains(&format!("dnsmasq pid {pid} stopped")),
        "{stopped}"
    );
    host.assert_nothing("lxcbr0");
}

#[test]
fn stop_keeps_a_created_bridge_that_still_has_ports() {
    let host = NetHost::new("busy-bridge", "");
    host.ok(&["start"]);
    // A port on the bridge, as a running container's veth would be.
    host.ns.run(&[
        "ip", "link", "add", "vbusy0", "type", "veth", "peer", "name", "vbusy1",
    ]);
    host.ns
        .run(&["ip", "link", "set", "vbusy0", "master", "lxcbr0"]);
    let said = host.ok(&["stop"]);
    assert!(
        said.contains("bridge lxcbr0 kept") && said.contains("vbusy0"),
        "{said}"
    );
    let link = host
        .ns
        .run(&["ip", "-o", "link", "show", "master", "lxcbr0"]);
    assert!(link.contains("vbusy0"), "the port stays attached: {link}");
    let addrs = lxcbr0_ipv4(&host);
    assert!(!addrs.contains("10.0.3.1"), "the address goes: {addrs}");
    assert_eq!(host.nft_masquerades(), 0);
    // Once the port is gone, the bridge (no longer ulxc-net's) is left to the admin.
    host.ns.run(&["ip", "link", "delete", "vbusy0"]);
    host.ns.run(&["ip", "link", "delete", "lxcbr0"]);
}
