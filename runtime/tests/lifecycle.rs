//! The walkthrough's lifecycle with the real binary as an unprivileged user: create,
//! start -d, ls, attach, ownership on the host, stop, destroy — on a busybox container
//! and on a Debian bookworm rootfs running systemd.

mod common;

use std::time::Duration;

use common::{env, eventually, fails, ok, owner};

fn state_of(lxc: &std::path::Path, name: &str) -> String {
    let out = env().ulxc_in(lxc, &["info", "-n", name, "-s"]);
    ok(&out).split_whitespace().nth(1).unwrap_or("").to_string()
}

#[test]
fn busybox_container_lifecycle() {
    let e = env();
    let lxc = e.lxcpath("busybox");
    let p = &lxc.path;
    ok(&e.ulxc_in(p, &["create", "-n", "bb", "-t", "busybox"]));
    let rootfs = p.join("bb/rootfs");
    assert_eq!(
        owner(&rootfs),
        (e.subuid, e.subgid),
        "rootfs belongs to container root"
    );
    assert_eq!(owner(&rootfs.join("bin")).0, e.subuid);
    assert_eq!(state_of(p, "bb"), "STOPPED");

    ok(&e.ulxc_in(p, &["start", "-n", "bb", "-d"]));
    assert_eq!(state_of(p, "bb"), "RUNNING");
    let fancy = ok(&e.ulxc_in(p, &["ls", "--fancy"]));
    let mut lines = fancy.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "STATE",
            "AUTOSTART",
            "GROUPS",
            "IPV4",
            "IPV6",
            "UNPRIVILEGED"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, ["bb", "RUNNING", "0", "-", "-", "-", "true"]);

    let uid_map = ok(&e.ulxc_in(
        p,
        &["attach", "-n", "bb", "--", "cat", "/proc/self/uid_map"],
    ));
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(
        fields,
        ["0", &e.subuid.to_string(), "65536"],
        "uid_map: {uid_map}"
    );
    let out = e.ulxc_in(p, &["attach", "-n", "bb", "--", "/bin/sh", "-c", "exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "attach returns the command's status"
    );
    let id = ok(&e.ulxc_in(p, &["attach", "-n", "bb", "--", "id", "-u"]));
    assert_eq!(id.trim(), "0");
    let host = ok(&e.ulxc_in(p, &["attach", "-n", "bb", "--", "hostname"]));
    assert_eq!(host.trim(), "bb");
    let pid1 = ok(&e.ulxc_in(p, &["attach", "-n", "bb", "--", "cat", "/proc/1/comm"]));
    assert_eq!(pid1.trim(), "init");

    let info = ok(&e.ulxc_in(p, &["info", "-n", "bb"]));
    assert!(info.contains("State:          RUNNING"), "{info}");
    assert!(info.contains("PID:"), "{info}");

    let running = fails(&e.ulxc_in(p, &["destroy", "-n", "bb"]));
    assert!(running.contains("is running"), "{running}");

    ok(&e.ulxc_in(p, &["stop", "-n", "bb", "-t", "10"]));
    assert_eq!(state_of(p, "bb"), "STOPPED");
    let stopped = fails(&e.ulxc_in(p, &["attach", "-n", "bb", "--", "true"]));
    assert!(stopped.contains("not running"), "{stopped}");

    ok(&e.ulxc_in(p, &["destroy", "-n", "bb"]));
    assert!(!p.join("bb").exists(), "destroy removed everything");
}

#[test]
fn debian_systemd_container_lifecycle() {
    let e = env();
    let tarball = e.debian_rootfs();
    let lxc = e.lxcpath("debian");
    let p = &lxc.path;
    let conf = p.join("deb.conf");
    e.write_config(
        &conf,
        "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\nlxc.net.0.type = empty\n",
    );
    let created = e.ulxc_in(
        p,
        &[
            "create",
            "-n",
            "deb",
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "local",
            "--",
            "--rootfs",
            tarball.to_str().unwrap(),
        ],
    );
    ok(&created);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        stderr.contains("device nodes"),
        "one summary line for skipped device nodes: {stderr}"
    );
    let rootfs = p.join("deb/rootfs");
    assert_eq!(owner(&rootfs.join("etc")), (e.subuid, e.subgid));
    // _apt owns /var/cache/apt/archives/partial in Debian; its uid comes from the
    // container's own /etc/passwd.
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    let apt_uid: u32 = passwd
        .lines()
        .find(|l| l.starts_with("_apt:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        owner(&rootfs.join("var/cache/apt/archives/partial")).0,
        e.subuid + apt_uid
    );

    ok(&e.ulxc_in(p, &["start", "-n", "deb", "-d"]));
    let status = eventually(
        "systemd to finish booting",
        Duration::from_secs(120),
        || {
            let out = e.ulxc_in(
                p,
                &[
                    "attach",
                    "-n",
                    "deb",
                    "--",
                    "systemctl",
                    "is-system-running",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            matches!(text.as_str(), "running" | "degraded").then_some(text)
        },
    );
    assert!(status == "running" || status == "degraded");
    let map = ok(&e.ulxc_in(
        p,
        &["attach", "-n", "deb", "--", "cat", "/proc/self/uid_map"],
    ));
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &e.subuid.to_string(), "65536"]
    );
    ok(&e.ulxc_in(p, &["stop", "-n", "deb", "-t", "60"]));
    assert_eq!(state_of(p, "deb"), "STOPPED");
    ok(&e.ulxc_in(p, &["destroy", "-n", "deb"]));
    assert!(!p.join("deb").exists());
}
