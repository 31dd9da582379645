//! Container networking end to end, as the unprivileged test user, entirely inside
//! network namespaces that the test creates: a "host" namespace where `ulxc-net` builds
//! the bridge lxcbr0 with dnsmasq and NAT, linked to an "outside" namespace that runs a
//! TCP server and is the host's default route. A Debian bookworm container (systemd,
//! networkd asking DHCP on eth0) gets a veth on lxcbr0 through the installed setuid
//! `ulxc-user-nic`, an address in 10.0.3.0/24, shows it in `ls --fancy`, and reaches the
//! server, which sees the host's outside address (masqueraded). The same without any
//! privilege through pasta and slirp4netns. Needs root (to make the namespaces) and
//! `.ci/install` (the setuid helper); fails, never skips, without them.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::netns::{TcpObserver, TestNetns, UlxcNetHost};
use common::{env, eventually, fails, ok};

const HELPER: &str = "/usr/local/libexec/ulxc/ulxc-user-nic";
const HOST_OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

const OBSERVER_PORT: u16 = 18080;

/// "host" linked to "outside" (192.168.77.2 ↔ 192.168.77.1), host's default route there.
fn host_and_outside() -> (TestNetns, TestNetns) {
    let host = TestNetns::new("host");
    let outside = link_outside(&host);
    (host, outside)
}

fn link_outside(host: &TestNetns) -> TestNetns {
    let outside = TestNetns::new("outside");
    host.link_to(&outside, Some("192.168.77.2/24"), Some("192.168.77.1/24"));
    host.default_route("192.168.77.1");
    outside
}

fn ip(ns: &TestNetns, args: &[&str]) -> String {
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    ns.run(&full)
}

const LXC_NET_SETTINGS: &str = "USE_LXC_BRIDGE=\"true\"\nLXC_BRIDGE=\"lxcbr0\"\nLXC_ADDR=\"10.0.3.1\"\nLXC_NETMASK=\"255.255.255.0\"\nLXC_NETWORK=\"10.0.3.0/24\"\nLXC_DHCP_RANGE=\"10.0.3.2,10.0.3.254\"\nLXC_DHCP_MAX=\"253\"\n";

fn helper_installed() {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(HELPER).unwrap_or_else(|e| {
        panic!("{HELPER}: {e}; install it as root with `.ci/install target/debug`")
    });
    assert!(
        meta.uid() == 0 && meta.mode() & 0o4000 != 0,
        "{HELPER} is not setuid root; run `.ci/install target/debug` as root"
    );
}

fn debian_container(lxc: &Path, netns: &Path, name: &str, net_lines: &str) {
    let e = env();
    let conf = e.home.join(format!("{name}-{}.conf", std::process::id()));
    e.write_config(
        &conf,
        &format!("lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\n{net_lines}"),
    );
    let _ = Command::new("chown")
        .arg(format!("{}:{}", e.uid, e.gid))
        .arg(&conf)
        .output();
    let rootfs = e.debian_rootfs();
    ok(&e.ulxc_in_netns(
        netns,
        lxc,
        &[
            "create",
            "-n",
            name,
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "local",
            "--",
            "--rootfs",
            rootfs.to_str().unwrap(),
        ],
    ));
    let _ = std::fs::remove_file(&conf);
}

/// The container's IPv4 addresses as `ls --fancy` shows them.
fn fancy_ipv4(lxc: &Path, netns: &Path, name: &str) -> Vec<String> {
    let out = ok(&env().ulxc_in_netns(netns, lxc, &["ls", "--fancy"]));
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .map(|f| {
            f.get(4)
                .copied()
                .unwrap_or("-")
                .split(',')
                .filter(|a| *a != "-" && !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Connects from inside the container to the observer; returns the peers it saw.
fn connect_and_observe(
    lxc: &Path,
    netns: &Path,
    name: &str,
    observer: &TcpObserver,
) -> Vec<IpAddr> {
    connect_from(lxc, netns, name, OBSERVER_PORT);
    eventually(
        "the connection at the server",
        Duration::from_secs(10),
        || {
            let p = observer.peers();
            (!p.is_empty()).then_some(p)
        },
    )
}

/// Connects from inside the container to the observer.
fn connect_from(lxc: &Path, netns: &Path, name: &str, port: u16) {
    let script = format!("exec 3<>/dev/tcp/{OUTSIDE}/{port} && echo hello >&3");
    ok(&env().ulxc_in_netns(
        netns,
        lxc,
        &["attach", "-n", name, "--", "bash", "-c", &script],
    ));
}

#[test]
fn veth_on_the_host_bridge_gets_dhcp_and_reaches_out_through_nat() {
    helper_installed();
    let e = env();
    let lxc = e.lxcpath("veth");
    let hostnet = UlxcNetHost::new("host", LXC_NET_SETTINGS);
    let host = &hostnet.ns;
    let outside = link_outside(host);
    hostnet.ok(&["start"]);
    let observer = outside.tcp_observer(OUTSIDE, OBSERVER_PORT);
    let ns = host.path();
    debian_container(
        &lxc.path,
        &ns,
        "web",
        // The walkthrough's own (legacy) spelling.
        "lxc.network.type = veth\nlxc.network.link = lxcbr0\nlxc.network.flags = up\nlxc.network.hwaddr = 00:16:3e:xx:xx:xx\n",
    );
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["start", "-n", "web", "-d"]));

    // The host end is on the bridge, named after the container.
    let on_bridge = ip(host, &["-o", "link", "show", "master", "lxcbr0"]);
    assert!(on_bridge.contains(": vweb-"), "bridge ports: {on_bridge}");
    let mine = ok(&e
        .command_in_netns(&ns, Path::new(HELPER))
        .arg("list")
        .output()
        .unwrap());
    assert!(
        mine.lines()
            .any(|l| l.starts_with("lxcbr0 vweb-") && l.contains(" web ")),
        "ulxc-user-nic list: {mine}"
    );

    let v4 = eventually(
        "a DHCP address in ls --fancy",
        Duration::from_secs(90),
        || {
            let v4 = fancy_ipv4(&lxc.path, &ns, "web");
            v4.iter().any(|a| a.starts_with("10.0.3.")).then_some(v4)
        },
    );
    println!("container web got {v4:?} from dnsmasq on lxcbr0");
    // `info -iH` prints the bare addresses, as `lxc-info -iH` does (scripts rely on it).
    let bare = ok(&e.ulxc_in_netns(&ns, &lxc.path, &["info", "-n", "web", "-iH"]));
    assert!(
        bare.lines().all(|l| l.parse::<IpAddr>().is_ok()) && bare.contains(&v4[0]),
        "info -iH: {bare:?}"
    );
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&e.ulxc_in_netns(&ns, &lxc.path, &["ls", "--json"]))).unwrap();
    let row = &listing["containers"][0];
    assert_eq!(row["name"], "web");
    assert!(
        row["ipv4"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("10.0.3.")),
        "ls --json: {listing}"
    );
    let mac = ok(&e.ulxc_in_netns(
        &ns,
        &lxc.path,
        &[
            "attach",
            "-n",
            "web",
            "--",
            "cat",
            "/sys/class/net/eth0/address",
        ],
    ));
    assert!(mac.trim().starts_with("00:16:3e:"), "eth0's MAC: {mac}");

    let peers = connect_and_observe(&lxc.path, &ns, "web", &observer);
    assert_eq!(
        peers,
        vec![IpAddr::V4(HOST_OUTSIDE)],
        "the server must see the host's outside address (masqueraded), not 10.0.3.x"
    );

    // Stopping releases the nic: the helper no longer counts it once the kernel has
    // removed the pair with the container's namespace (it does so asynchronously).
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["stop", "-n", "web", "-k"]));
    let helper_list = || {
        ok(&e
            .command_in_netns(&ns, Path::new(HELPER))
            .arg("list")
            .output()
            .unwrap())
    };
    eventually(
        "the stopped container's nic to be released",
        Duration::from_secs(20),
        || {
            let on_bridge = ip(host, &["-o", "link", "show", "master", "lxcbr0"]);
            (!helper_list().contains(" web ") && !on_bridge.contains("vweb-")).then_some(())
        },
    );

    // A crash (monitor and init killed) releases it too.
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["start", "-n", "web", "-d"]));
    assert!(
        helper_list().contains(" web "),
        "counted again after the restart"
    );
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lxc.path.join("web/run.json")).unwrap())
            .unwrap();
    for key in ["monitor_pid", "init_pid"] {
        let pid = run[key].as_i64().unwrap().to_string();
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill {key} {pid}");
    }
    eventually(
        "the crashed container's nic to be released",
        Duration::from_secs(20),
        || (!helper_list().contains(" web ")).then_some(()),
    );
    // The dying init may outlive its network namespace by a moment.
    eventually(
        "the crashed container to be STOPPED",
        Duration::from_secs(20),
        || {
            let state = ok(&e.ulxc_in_netns(&ns, &lxc.path, &["info", "-n", "web", "-s"]));
            state.contains("STOPPED").then_some(())
        },
    );
}

fn usermode(kind: &str) {
    let e = env();
    let lxc = e.lxcpath(kind);
    let (host, outside) = host_and_outside();
    let observer = outside.tcp_observer(OUTSIDE, OBSERVER_PORT);
    let ns = host.path();
    debian_container(&lxc.path, &ns, "um", &format!("lxc.net.0.type = {kind}\n"));
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["start", "-n", "um", "-d"]));
    let v4 = eventually("an address in ls --fancy", Duration::from_secs(60), || {
        let v4 = fancy_ipv4(&lxc.path, &ns, "um");
        (!v4.is_empty()).then_some(v4)
    });
    println!("{kind}: container got {v4:?}");
    let peers = connect_and_observe(&lxc.path, &ns, "um", &observer);
    assert_eq!(
        peers,
        vec![IpAddr::V4(HOST_OUTSIDE)],
        "{kind} carries the traffic through the host's own sockets"
    );
    // The stack runs while the container does, and stops with it.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lxc.path.join("um/run.json")).unwrap())
            .unwrap();
    let stack_pid = run["net_helpers"][0][0]
        .as_i64()
        .expect("a recorded stack pid");
    assert!(Path::new(&format!("/proc/{stack_pid}")).exists());
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["stop", "-n", "um", "-k"]));
    eventually(&format!("{kind} to end"), Duration::from_secs(10), || {
        let alive = std::fs::read_to_string(format!("/proc/{stack_pid}/cmdline"))
            .is_ok_and(|c| c.contains(kind));
        (!alive).then_some(())
    });
}

#[test]
fn pasta_gives_an_address_and_the_outside_without_privilege() {
    usermode("pasta");
}

#[test]
fn slirp4netns_gives_an_address_and_the_outside_without_privilege() {
    usermode("slirp4netns");
}

#[test]
fn refused_networks_leave_nothing_running() {
    helper_installed();
    let e = env();
    let lxc = e.lxcpath("netbad");
    let (host, _outside) = host_and_outside();
    let ns = host.path();
    ip(&host, &["link", "add", "ulxcno0", "type", "bridge"]);
    ok(&e.ulxc_in_netns(&ns, &lxc.path, &["create", "-n", "bb", "-t", "busybox"]));
    let config = lxc.path.join("bb/config");
    let original = std::fs::read_to_string(&config).unwrap();
    let cases = [
        ("lxc.net.0.type = veth\n", "lxc.net.0.link"),
        (
            "lxc.net.0.type = veth\nlxc.net.0.link = ulxcno0\n",
            "ulxc-user-nic",
        ),
        (
            "lxc.net.0.type = veth\nlxc.net.0.link = nosuchbr0\n",
            "ulxc-user-nic",
        ),
        (
            "lxc.net.0.type = macvlan\nlxc.net.0.link = vout\n",
            "privilege",
        ),
    ];
    for (lines, expect) in cases {
        std::fs::write(&config, format!("{original}{lines}")).unwrap();
        let err = fails(&e.ulxc_in_netns(&ns, &lxc.path, &["start", "-n", "bb", "-d"]));
        assert!(err.contains(expect), "{lines:?}: {err}");
        println!("refused {lines:?}: {}", err.trim());
        assert_eq!(
            err.lines().filter(|l| l.contains("error")).count(),
            1,
            "one error: {err}"
        );
        let state = ok(&e.ulxc_in_netns(&ns, &lxc.path, &["info", "-n", "bb", "-s"]));
        assert!(state.contains("STOPPED"), "{lines:?}: {state}");
        assert!(!lxc.path.join("bb/run.json").exists());
        assert!(!lxc.path.join("bb/monitor.sock").exists());
        let links = ip(&host, &["-o", "link"]);
        assert!(
            !links.contains("vbb-"),
            "{lines:?}: a veth was left: {links}"
        );
    }
    println!("refused network configurations: {}", cases.len());
}
