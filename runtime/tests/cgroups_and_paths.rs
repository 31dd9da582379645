//! Where a container's processes live (its own delegated cgroup, cleaned up after it)
//! and the parent-directory pitfall LXC's users hit (lxc#3669): a rootfs below a 0700
//! directory that container root cannot search still starts.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{env, fails, ok};

fn init_pid(lxc: &std::path::Path, name: &str) -> u32 {
    let out = ok(&env().ulxc_in(lxc, &["info", "-n", name, "-p"]));
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn container_runs_in_its_own_cgroup_which_is_removed_after() {
    let e = env();
    let lxc = e.lxcpath("cgroup");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "cg", "-t", "busybox"]));
    ok(&e.ulxc_in(&lxc.path, &["start", "-n", "cg", "-d"]));
    let pid = init_pid(&lxc.path, "cg");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .trim_start_matches("0::")
        .to_string();
    assert!(v2.ends_with("/ulxc.payload.cg"), "init's cgroup: {v2}");
    // Inside, the cgroup namespace is rooted there.
    let inside = ok(&e.ulxc_in(
        &lxc.path,
        &["attach", "-n", "cg", "--", "cat", "/proc/self/cgroup"],
    ));
    assert!(inside.lines().any(|l| l == "0::/"), "inside: {inside}");
    let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    let dir = std::path::PathBuf::from(format!("{base}{v2}"));
    assert!(dir.is_dir());
    ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "cg", "-k"]));
    assert!(!dir.exists(), "{} removed after stop", dir.display());
}

#[test]
fn cgroup2_limits_are_applied_or_refused_clearly() {
    let e = env();
    let lxc = e.lxcpath("limits");
    ok(&e.ulxc_in(&lxc.path, &["create", "-n", "lim", "-t", "busybox"]));
    let out = e.ulxc_in(
        &lxc.path,
        &["start", "-n", "lim", "-d", "-s", "lxc.cgroup2.pids.max=64"],
    );
    let pid_controller = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| {
            let rel = c.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
            let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
            {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            std::fs::read_to_string(format!("{base}{rel}/cgroup.controllers")).ok()
        });
    if pid_controller.is_some_and(|c| c.split_whitespace().any(|x| x == "pids")) {
        ok(&out);
        let max = ok(&e.ulxc_in(
            &lxc.path,
            &[
                "attach",
                "-n",
                "lim",
                "--",
                "cat",
                "/sys/fs/cgroup/pids.max",
            ],
        ));
        assert_eq!(max.trim(), "64");
        ok(&e.ulxc_in(&lxc.path, &["stop", "-n", "lim", "-k"]));
    } else {
        // This host's pids controller is not available to the delegated subtree (e.g.
        // bound to cgroup v1): the start fails and says which controller and why.
        let err = fails(&out);
        assert!(err.contains("pids"), "{err}");
        let info = ok(&e.ulxc_in(&lxc.path, &["info", "-n", "lim", "-s"]));
        assert!(info.contains("STOPPED"), "nothing left running: {info}");
    }
}

#[test]
fn rootfs_below_a_private_directory_starts() {
    let e = env();
    let lxc = e.lxcpath("private");
    // A 0700 directory on the way to the rootfs: container root (uid 100000) cannot
    // search it, which makes LXC fail; ulxc reaches the rootfs before it changes ids.
    let private = lxc.path.join("private");
    let out = e
        .command(std::path::Path::new("/bin/mkdir"))
        .arg(&private)
        .output()
        .unwrap();
    ok(&out);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let p = private.to_str().unwrap();
    ok(&e.ulxc(&["create", "-P", p, "-n", "hidden", "-t", "busybox"]));
    ok(&e.ulxc(&["start", "-P", p, "-n", "hidden", "-d"]));
    let id = ok(&e.ulxc(&["attach", "-P", p, "-n", "hidden", "--", "id", "-u"]));
    assert_eq!(id.trim(), "0");
    ok(&e.ulxc(&["stop", "-P", p, "-n", "hidden", "-k"]));
    ok(&e.ulxc(&["destroy", "-P", p, "-n", "hidden"]));
}

fn v2_cgroup_of(pid: u32) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .trim_start_matches("0::")
        .to_string()
}

#[test]
fn same_name_in_two_directories_gets_two_cgroups() {
    let e = env();
    let one = e.lxcpath("samename-a");
    let two = e.lxcpath("samename-b");
    for lxc in [&one, &two] {
        ok(&e.ulxc_in(&lxc.path, &["create", "-n", "twin", "-t", "busybox"]));
        ok(&e.ulxc_in(&lxc.path, &["start", "-n", "twin", "-d"]));
    }
    let (a, b) = (init_pid(&one.path, "twin"), init_pid(&two.path, "twin"));
    let (cg_a, cg_b) = (v2_cgroup_of(a), v2_cgroup_of(b));
    assert_ne!(cg_a, cg_b, "two containers named twin share a cgroup");
    assert!(cg_b.ends_with("/ulxc.payload.twin-1"), "{cg_b}");
    // Stopping one must not touch the other.
    ok(&e.ulxc_in(&one.path, &["stop", "-n", "twin", "-k"]));
    let state = ok(&e.ulxc_in(&two.path, &["info", "-n", "twin", "-s"]));
    assert!(state.contains("RUNNING"), "the other twin: {state}");
    ok(&e.ulxc_in(&two.path, &["attach", "-n", "twin", "--", "true"]));
    ok(&e.ulxc_in(&two.path, &["stop", "-n", "twin", "-k"]));
}
