//! The other commands, and the monitor's robustness: execute, usernsexec, checkconfig,
//! config upgrade, subid, LXC's command names, concurrent starts, a killed monitor.

mod common;

use std::time::Duration;

use common::{env, eventually, fails, ok};

#[test]
fn execute_returns_the_commands_status() {
    let e = env();
    let lxc = e.lxcpath("execute");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "app", "-t", "busybox"]));
    let out = e.ulxc_in(
        &lxc.path,
        &[
            "execute",
            "-n",
            "app",
            "--",
            "/bin/sh",
            "-c",
            "echo pid=$$; exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pid=2"),
        "the command is the child of a minimal init"
    );
}

#[test]
fn usernsexec_maps_the_users_ranges() {
    let e = env();
    let out = ok(&e.ulxc(&["usernsexec", "--", "cat", "/proc/self/uid_map"]));
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["0", &e.subuid.to_string(), "65536"]);
    let out = ok(&e.ulxc(&[
        "usernsexec",
        "-m",
        &format!("b:0:{}:1", e.subuid),
        "--",
        "id",
        "-u",
    ]));
    assert_eq!(out.trim(), "0");
    let err = fails(&e.ulxc(&["usernsexec", "-m", "u:0:1:1", "--", "true"]));
    assert!(err.contains("subuid"), "{err}");
}

#[test]
fn checkconfig_reports_json_and_status() {
    let e = env();
    let out = e.ulxc(&["checkconfig", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["version"], 1);
    assert!(doc["checks"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(
        out.status.success(),
        "this host is ready: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = ok(&e.ulxc(&["checkconfig", "--no-color"]));
    assert!(text.to_lowercase().contains("user namespace"), "{text}");
}

#[test]
fn config_upgrade_rewrites_legacy_keys() {
    let e = env();
    let lxc = e.lxcpath("upgrade");
    let file = lxc.path.join("legacy.conf");
    std::fs::write(&file, "lxc.id_map = u 0 100000 65536\nlxc.network.type = veth\nlxc.network.link = lxcbr0\nlxc.utsname = old\n").unwrap();
    std::os::unix::fs::chown(&file, Some(e.uid), Some(e.gid)).ok();
    ok(&e.ulxc(&["config", "upgrade", file.to_str().unwrap()]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("lxc.idmap = u 0 100000 65536"), "{text}");
    assert!(
        text.contains("lxc.net.0.type = veth") && text.contains("lxc.net.0.link = lxcbr0"),
        "{text}"
    );
    assert!(text.contains("lxc.uts.name = old"), "{text}");
}

#[test]
fn subid_prints_both_forms() {
    let e = env();
    let out = ok(&e.ulxc(&["subid"]));
    assert!(out.contains(&format!("{}:65536", e.subuid)), "{out}");
    assert!(
        out.contains(&format!("{}-{}", e.subuid, e.subuid + 65535)),
        "{out}"
    );
}

#[test]
fn answers_to_lxc_names() {
    let e = env();
    let lxc = e.lxcpath("lxcnames");
    let bin = lxc.path.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in [
        "lxc-create",
        "lxc-start",
        "lxc-ls",
        "lxc-attach",
        "lxc-stop",
        "lxc-destroy",
        "lxc-info",
    ] {
        std::os::unix::fs::symlink(&e.bin, bin.join(name)).unwrap();
    }
    let p = lxc.path.to_str().unwrap();
    let run = |name: &str, args: &[&str]| e.command(&bin.join(name)).args(args).output().unwrap();
    ok(&run(
        "lxc-create",
        &["-n", "walk", "-t", "busybox", "-P", p],
    ));
    ok(&run(
        "lxc-start",
        &[
            "-n",
            "walk",
            "-d",
            "-P",
            p,
            "-l",
            "DEBUG",
            "-o",
            &format!("{p}/log"),
        ],
    ));
    let fancy = ok(&run("lxc-ls", &["-P", p, "-f"]));
    assert!(
        fancy.contains("walk") && fancy.contains("RUNNING"),
        "{fancy}"
    );
    let id = ok(&run(
        "lxc-attach",
        &["-n", "walk", "-P", p, "--", "id", "-u"],
    ));
    assert_eq!(id.trim(), "0");
    ok(&run("lxc-stop", &["-n", "walk", "-P", p, "-k"]));
    ok(&run("lxc-destroy", &["-n", "walk", "-P", p, "-f"]));
}

#[test]
fn two_starts_at_once_one_wins() {
    let e = env();
    let lxc = e.lxcpath("race");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "r", "-t", "busybox"]));
    let p = lxc.path.to_str().unwrap().to_string();
    let spawn = || {
        e.command(&e.bin)
            .args(["start", "-P", &p, "-n", "r", "-d"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let wins = [a.status.success(), b.status.success()]
        .iter()
        .filter(|x| **x)
        .count();
    assert_eq!(wins, 1, "exactly one start wins:\n{a:?}\n{b:?}");
    let loser = if a.status.success() { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("already being started or running"), "{err}");
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "r", "-k"]));
}

#[test]
fn a_killed_monitor_is_survived() {
    let e = env();
    let lxc = e.lxcpath("monitorkill");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "m", "-t", "busybox"]));
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "m", "-d"]));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lxc.path.join("m/run.json")).unwrap())
            .unwrap();
    let monitor = i32::try_from(run["monitor_pid"].as_i64().unwrap()).unwrap();
    let init = i32::try_from(run["init_pid"].as_i64().unwrap()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the monitor to die", Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{monitor}")).exists()).then_some(())
    });
    // Init still runs: the container is reported running, and can be attached and stopped.
    let info = ok(&e.ulxc_in(&lxc.path, &["info", "-n", "m"]));
    assert!(
        info.contains("RUNNING") && info.contains(&init.to_string()),
        "{info}"
    );
    let id = ok(&e.ulxc_in(&lxc.path, &["attach", "-n", "m", "--", "id", "-u"]));
    assert_eq!(id.trim(), "0");
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "m", "-t", "5"]));
    let info = ok(&e.ulxc_in(&lxc.path, &["info", "-n", "m"]));
    assert!(info.contains("STOPPED"), "{info}");
    assert!(
        !lxc.path.join("m/monitor.sock").exists() && !lxc.path.join("m/run.json").exists(),
        "stale files cleaned"
    );
    // And it starts again.
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "m", "-d"]));
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "m", "-k"]));
    let _ = fails(&e.ulxc_in(&lxc.path, &["attach", "-n", "m", "--", "true"]));
}

#[test]
fn wait_reaches_states_or_times_out() {
    let e = env();
    let lxc = e.lxcpath("wait");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "w", "-t", "busybox"]));
    ok(&e.ulxc_in(&lxc.path, &["wait", "-n", "w", "-s", "STOPPED", "-t", "5"]));
    let err = fails(&e.ulxc_in(&lxc.path, &["wait", "-n", "w", "-s", "RUNNING", "-t", "1"]));
    assert!(err.contains("still STOPPED after 1 s"), "{err}");
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "w", "-d"]));
    ok(&e.ulxc_in(
        &lxc.path,
        &["wait", "-n", "w", "-s", "RUNNING|STOPPED", "-t", "5"],
    ));
    let bad = fails(&e.ulxc_in(&lxc.path, &["wait", "-n", "w", "-s", "FLYING"]));
    assert!(bad.contains("unknown state"), "{bad}");
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "w", "-k"]));
}

#[test]
fn foreground_start_shows_the_console_and_ends_with_the_container() {
    let e = env();
    let lxc = e.lxcpath("foreground");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "fg", "-t", "busybox"]));
    let p = lxc.path.to_str().unwrap().to_string();
    let child = e
        .command(&e.bin)
        .args(["start", "-P", &p, "-n", "fg", "-F"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        "the foreground container to run",
        Duration::from_secs(10),
        || {
            let s = e.ulxc_in(&lxc.path, &["info", "-n", "fg", "-s"]);
            String::from_utf8_lossy(&s.stdout)
                .contains("RUNNING")
                .then_some(())
        },
    );
    ok(&e.ulxc_in(
        &lxc.path,
        &[
            "attach",
            "-n",
            "fg",
            "--",
            "sh",
            "-c",
            "echo hello-console > /dev/console",
        ],
    ));
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "fg", "-t", "10"]));
    let out = child.wait_with_output().unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("hello-console"),
        "the console is relayed to stdout: {console}"
    );
}

#[test]
fn attach_gives_a_pty_when_stdin_is_a_terminal() {
    let e = env();
    let lxc = e.lxcpath("pty");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "t", "-t", "busybox"]));
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "t", "-d"]));
    let p = lxc.path.to_str().unwrap();
    // `script` runs the command on a pseudo-terminal, as an interactive user would.
    let inner = format!(
        "{} attach -P {p} -n t -- tty; echo status=$?",
        e.bin.display()
    );
    let out = ok(&e
        .command(std::path::Path::new("/usr/bin/script"))
        .args(["-qec", &inner, "/dev/null"])
        .output()
        .unwrap());
    assert!(out.contains("/dev/pts/"), "a terminal inside: {out}");
    assert!(out.contains("status=0"), "{out}");
    let piped = e.ulxc_in(&lxc.path, &["attach", "-n", "t", "--", "tty"]);
    assert_eq!(
        piped.status.code(),
        Some(1),
        "no terminal when stdin is not one"
    );
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "t", "-k"]));
}

#[test]
fn dropped_capabilities_leave_the_bounding_set() {
    let e = env();
    let lxc = e.lxcpath("caps");
    let conf = lxc.path.join("caps.conf");
    e.write_config(
        &conf,
        "lxc.mount.auto = proc:mixed\nlxc.cap.drop = sys_time mknod\n",
    );
    ok(&e.ulxc_in(
        &lxc.path,
        &[
            "create",
            "-n",
            "c",
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "busybox",
        ],
    ));
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "c", "-d"]));
    let status = ok(&e.ulxc_in(
        &lxc.path,
        &["attach", "-n", "c", "--", "cat", "/proc/1/status"],
    ));
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let mask = u64::from_str_radix(&bnd, 16).unwrap();
    assert_eq!(mask & (1 << 25), 0, "CAP_SYS_TIME dropped: {bnd}");
    assert_eq!(mask & (1 << 27), 0, "CAP_MKNOD dropped: {bnd}");
    assert_ne!(mask & (1 << 21), 0, "CAP_SYS_ADMIN kept: {bnd}");
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "c", "-k"]));
}

#[test]
fn veth_without_its_bridge_is_refused_clearly() {
    let e = env();
    let lxc = e.lxcpath("veth");
    let conf = lxc.path.join("veth.conf");
    e.write_config(&conf, "lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\nlxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\n");
    ok(&e.ulxc_in(
        &lxc.path,
        &[
            "create",
            "-n",
            "v",
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "busybox",
        ],
    ));
    // In a network namespace of the test's own without lxcbr0 (never the machine's: a
    // host running lxc-net has an lxcbr0 there).
    let netns = common::netns::TestNetns::new("no-bridge");
    let err = fails(&e.ulxc_in_netns(&netns.path(), &lxc.path, &["start", "-n", "v", "-d"]));
    assert!(
        err.contains("ulxc-user-nic") && err.contains("bridge lxcbr0 does not exist"),
        "{err}"
    );
    let info = ok(&e.ulxc_in(&lxc.path, &["info", "-n", "v", "-s"]));
    assert!(info.contains("STOPPED"), "{info}");
    // A bad MAC address is an error at its line.
    std::fs::write(
        &conf,
        "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:zz\n",
    )
    .unwrap();
    let err = fails(&e.ulxc_in(
        &lxc.path,
        &[
            "create",
            "-n",
            "v2",
            "-f",
            conf.to_str().unwrap(),
            "-t",
            "busybox",
        ],
    ));
    assert!(err.contains("veth.conf:2"), "{err}");
    assert!(!lxc.path.join("v2").exists());
}

#[test]
fn destroy_does_not_follow_links_out_of_the_container() {
    let e = env();
    let lxc = e.lxcpath("links");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "l", "-t", "busybox"]));
    // A file of the user's outside the container, and links to it from inside the rootfs.
    let outside = lxc.path.join("precious");
    std::fs::write(&outside, "keep me").unwrap();
    std::os::unix::fs::chown(&outside, Some(e.uid), Some(e.gid)).unwrap();
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "l", "-d"]));
    let target = outside.to_str().unwrap();
    ok(&e.ulxc_in(
        &lxc.path,
        &[
            "attach",
            "-n",
            "l",
            "--",
            "ln",
            "-s",
            target,
            "/root/abs-link",
        ],
    ));
    ok(&e.ulxc_in(
        &lxc.path,
        &[
            "attach",
            "-n",
            "l",
            "--",
            "ln",
            "-s",
            "../../../../precious",
            "/root/rel-link",
        ],
    ));
    ok(&e.ulxc_in(&lxc.path, &["destroy", "-n", "l", "-f"]));
    assert!(!lxc.path.join("l").exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
}
