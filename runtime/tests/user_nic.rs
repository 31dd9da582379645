//! The hostile-input suite of the setuid helper `ulxc-user-nic`.
//!
//! Runs as root against the INSTALLED helper (`/usr/local/libexec/ulxc/ulxc-user-nic`,
//! setuid root; install it with `.ci/install target/debug` after each build). Each test
//! makes its own network namespace (`ulxcnic-<pid>-<n>`, removed by a guard) with the
//! bridges it needs, runs the helper there as `ulxc-test`, and uses as targets processes
//! it starts in their own user+network namespaces (killed by pid at the end). Every
//! refusal is checked for its exit status, one clear line on stderr, and that NOTHING
//! changed: the links of the test namespace and of the target namespace, and the
//! helper's database file. The tests share the global database and `/run/ulxc`, so they
//! run one at a time (a static mutex).
//!
//! Run: `cargo build -p ulxc && .ci/install target/debug &&
//!       cargo test -p ulxc --test user_nic -- --nocapture`

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const HELPER: &str = "/usr/local/libexec/ulxc/ulxc-user-nic";
const USER: &str = "ulxc-test";
const DB_DIR: &str = "/run/ulxc";
const DB_FILE: &str = "/run/ulxc/nics";
/// How many `#[test]`s this file has; the last one to finish prints the total line.
const TESTS: usize = 15;

static SERIAL: Mutex<()> = Mutex::new(());
static NETNS_COUNTER: AtomicUsize = AtomicUsize::new(0);
static CHECKED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Takes the suite-wide lock and checks the prerequisites (failing, never skipping).
fn begin() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        nix::unistd::geteuid().is_root(),
        "the user_nic suite must run as root (it makes network namespaces and runs the \
         helper as {USER})"
    );
    let meta = std::fs::metadata(HELPER).unwrap_or_else(|e| {
        panic!(
            "{HELPER}: {e}; build and install it: cargo build -p ulxc && .ci/install target/debug"
        )
    });
    assert!(
        meta.uid() == 0 && meta.mode() & 0o4000 != 0,
        "{HELPER} is not setuid root (mode {:o}, uid {}); run: .ci/install target/debug",
        meta.mode(),
        meta.uid()
    );
    let usernet = std::fs::read_to_string("/etc/lxc/lxc-usernet").unwrap_or_default();
    for line in [
        "ulxc-test veth lxcbr0 100",
        "ulxc-test veth ulxcq0 1",
        "@ulxc-nic veth ulxcg0 2",
    ] {
        assert!(
            usernet.lines().any(|l| l.trim() == line),
            "/etc/lxc/lxc-usernet lacks `{line}`: run .ci/host-setup as root"
        );
    }
    guard
}

/// Counts of one test, printed at its end and added to the suite's total.
struct Tally {
    name: &'static str,
    checked: usize,
    refused: usize,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            checked: 0,
            refused: 0,
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        println!(
            "{}: hostile inputs refused: {}/{}",
            self.name, self.refused, self.checked
        );
        let checked = CHECKED.fetch_add(self.checked, Ordering::SeqCst) + self.checked;
        let refused = REFUSED.fetch_add(self.refused, Ordering::SeqCst) + self.refused;
        if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS {
            println!("user_nic hostile inputs refused: {refused}/{checked}");
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace for one test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// Makes the namespace with `lo` up and the given bridges up.
    fn new(bridges: &[&str]) -> Netns {
        let n = NETNS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("ulxcnic-{}-{n}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        for bridge in bridges {
            netns.ip(&["link", "add", bridge, "type", "bridge"]);
            netns.ip(&["link", "set", bridge, "up"]);
        }
        netns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The link names in the namespace, sorted.
    fn links(&self) -> Vec<String> {
        link_names(&self.ip(&["-o", "link", "show"]))
    }

    /// The helper with `args`, in this namespace, as the test user.
    fn helper_command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .args([
                "setpriv",
                "--reuid",
                USER,
                "--regid",
                USER,
                "--init-groups",
                "--",
            ])
            .arg(HELPER)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the helper in this namespace as the test user.
    fn helper<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.helper_command(args).output().expect("run the helper")
    }

    /// Starts the helper in this namespace as the test user, without waiting.
    fn spawn_helper(&self, args: &[&str]) -> Child {
        self.helper_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the helper")
    }

    /// Waits until the link `name` is gone from the namespace.
    fn wait_link_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.links().iter().any(|l| l == name) {
            assert!(
                Instant::now() < deadline,
                "{name} still exists in {} 15 s after its peer's namespace died",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn link_names(ip_output: &str) -> Vec<String> {
    let mut names: Vec<String> = ip_output
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    names.sort();
    names
}

/// Who a started process runs as and where.
#[derive(Clone, Copy)]
enum Who {
    /// The test user, in its own user + network namespace (a container's init).
    OwnNamespaces,
    /// The test user, in the namespace it is started in (no unshare).
    Plain,
    /// `nobody`, in its own user + network namespace.
    Nobody,
}

/// A process the test started (a target), killed by pid on drop.
struct Target {
    child: Option<Child>,
    pid: i32,
}

impl Target {
    /// Starts `sleep 600` as `who`, inside `netns` (or the root namespace when `None`).
    fn start(netns: Option<&Netns>, who: Who) -> Target {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path())).arg("setpriv");
                c
            }
            // The test's own (the machine's) network namespace.
            None => Command::new("setpriv"),
        };
        match who {
            Who::OwnNamespaces | Who::Plain => {
                command.args(["--reuid", USER, "--regid", USER, "--init-groups"]);
            }
            Who::Nobody => {
                command.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
            }
        }
        command.arg("--");
        if !matches!(who, Who::Plain) {
            command.args(["unshare", "--user", "--map-root-user", "--net"]);
        }
        command.args(["sleep", "600"]);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a target");
        let pid = i32::try_from(child.id()).expect("pid");
        let target = Target {
            child: Some(child),
            pid,
        };
        target.wait_exec();
        target
    }

    /// Waits until the exec chain (nsenter, setpriv, unshare) has become `sleep`.
    fn wait_exec(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let comm =
                std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
            if comm.trim() == "sleep" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "target {} never became sleep",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The link names inside the target's network namespace.
    fn links(&self) -> Vec<String> {
        link_names(&run_ok(
            "nsenter",
            &[
                "-t",
                &self.pid.to_string(),
                "--net",
                "ip",
                "-o",
                "link",
                "show",
            ],
        ))
    }

    /// One link of the target, as `ip -o link show NAME` prints it.
    fn link(&self, name: &str) -> String {
        run_ok(
            "nsenter",
            &[
                "-t",
                &self.pid.to_string(),
                "--net",
                "ip",
                "-o",
                "link",
                "show",
                name,
            ],
        )
    }

    fn pid_text(&self) -> String {
        self.pid.to_string()
    }

    /// Kills and reaps the process.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

fn db_content() -> String {
    std::fs::read_to_string(DB_FILE).unwrap_or_default()
}

/// What must not change when the helper refuses.
#[derive(Debug, PartialEq, Eq)]
struct State {
    host_links: Vec<String>,
    target_links: Vec<Vec<String>>,
    db: String,
}

fn state(netns: &Netns, targets: &[&Target]) -> State {
    State {
        host_links: netns.links(),
        target_links: targets.iter().map(|t| t.links()).collect(),
        db: db_content(),
    }
}

/// Runs the helper with `args` and checks it refuses with `code`, one stderr line
/// containing every one of `needles`, nothing on stdout, and nothing changed.
fn refuse<S: AsRef<OsStr> + std::fmt::Debug>(
    tally: &mut Tally,
    netns: &Netns,
    targets: &[&Target],
    args: &[S],
    code: i32,
    needles: &[&str],
) -> String {
    tally.checked += 1;
    // `list` drops entries of nics that died earlier, so that the refusal below is the
    // only thing that could change the database.
    netns.helper(&["list"]);
    let before = state(netns, targets);
    let out = netns.helper(args);
    let after = state(netns, targets);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: expected exit {code}, got {:?}; stdout {:?} stderr {stderr:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr:?}"
    );
    assert!(
        stderr.starts_with("ulxc-user-nic: "),
        "{args:?}: {stderr:?}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
    }
    assert_eq!(before, after, "{args:?} changed something");
    tally.refused += 1;
    stderr
}

/// Runs `create` and expects success; returns (host ifname, container ifname).
fn create_ok(netns: &Netns, args: &[&str]) -> (String, String) {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let out = netns.helper(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "create {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = stdout.trim_end_matches('\n').split(' ').collect();
    assert_eq!(fields.len(), 2, "stdout {stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "stdout {stdout:?}");
    (fields[0].to_string(), fields[1].to_string())
}

#[test]
fn baseline_create_puts_the_veth_in_the_target_and_on_the_bridge() {
    let _serial = begin();
    let mut tally = Tally::new("baseline");
    let ns = Netns::new(&["lxcbr0"]);
    ns.ip(&["link", "set", "lxcbr0", "mtu", "1450"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();

    // Defaults: the bridge's MTU, a 00:16:3e MAC.
    let (host1, inner1) = create_ok(&ns, &[&pid, "veth", "lxcbr0", "web.1", "eth1"]);
    assert_eq!(inner1, "eth1");
    assert!(host1.starts_with("vweb_1-") && host1.len() == 11, "{host1}");
    let eth1 = target.link("eth1");
    assert!(eth1.contains("mtu 1450"), "{eth1}");
    assert!(eth1.contains("link/ether 00:16:3e:"), "{eth1}");

    // Given MTU and MAC.
    let (host, inner) = create_ok(
        &ns,
        &[
            &pid,
            "veth",
            "lxcbr0",
            "web.1",
            "eth0",
            "--mtu",
            "1400",
            "--hwaddr",
            "00:16:3e:12:34:56",
        ],
    );
    assert_eq!(inner, "eth0");
    let eth0 = target.link("eth0");
    assert!(eth0.contains("mtu 1400"), "{eth0}");
    assert!(eth0.contains("link/ether 00:16:3e:12:34:56"), "{eth0}");
    assert!(eth0.contains(",UP") || eth0.contains("<UP"), "{eth0}");
    let host_line = ns.ip(&["-o", "link", "show", &host]);
    assert!(host_line.contains("master lxcbr0"), "{host_line}");
    assert!(host_line.contains("mtu 1400"), "{host_line}");
    assert!(
        host_line.contains(",UP") || host_line.contains("<UP"),
        "{host_line}"
    );
    // The container ends never existed here.
    assert!(!ns.links().iter().any(|l| l == "eth0" || l == "eth1"));

    let list = String::from_utf8_lossy(&ns.helper(&["list"]).stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l == format!("lxcbr0 {host} web.1 {pid}")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l == format!("lxcbr0 {host1} web.1 {pid}")),
        "{list}"
    );

    // The same IFNAME again: refused, and the host end it tried is gone.
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "web.1", "eth0"],
        1,
        &["already has an interface named eth0"],
    );
}

#[test]
fn over_quota_names_the_line_the_count_and_the_container() {
    let _serial = begin();
    let mut tally = Tally::new("over quota");
    let ns = Netns::new(&["ulxcq0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let other = Target::start(Some(&ns), Who::OwnNamespaces);
    let (host, _) = create_ok(&ns, &[&target.pid_text(), "veth", "ulxcq0", "q1", "eth0"]);
    let message = refuse(
        &mut tally,
        &ns,
        &[&target, &other],
        &["create", &other.pid_text(), "veth", "ulxcq0", "q2", "eth0"],
        1,
        &[
            "quota reached",
            "user ulxc-test",
            "@ulxc-nic",
            "/etc/lxc/lxc-usernet:",
            "ulxc-test veth ulxcq0 1",
            "1 counted against it",
            &format!("container q1 ({host})"),
        ],
    );
    println!("over quota message: {message}");
}

#[test]
fn a_bridge_or_type_without_a_line_is_not_granted() {
    let _serial = begin();
    let mut tally = Tally::new("not granted");
    let ns = Netns::new(&["lxcbr0", "ulxcn0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();
    let message = refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "ulxcn0", "c1", "eth0"],
        1,
        &["not granted", "ulxcn0", "`ulxc-test veth ulxcn0 10`"],
    );
    println!("not granted message: {message}");
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "macvlan", "lxcbr0", "c1", "eth0"],
        1,
        &[
            "not granted",
            "type macvlan",
            "`ulxc-test macvlan lxcbr0 10`",
        ],
    );
}

#[test]
fn a_group_line_grants_two_and_refuses_the_third() {
    let _serial = begin();
    let mut tally = Tally::new("group line");
    let ns = Netns::new(&["ulxcg0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();
    let (a, _) = create_ok(&ns, &[&pid, "veth", "ulxcg0", "g1", "eth0"]);
    let (b, _) = create_ok(&ns, &[&pid, "veth", "ulxcg0", "g2", "eth1"]);
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "ulxcg0", "g3", "eth2"],
        1,
        &[
            "quota reached",
            "@ulxc-nic veth ulxcg0 2",
            "2 counted against it",
            &format!("container g1 ({a})"),
            &format!("container g2 ({b})"),
        ],
    );
}

const NOT_OWNED: &str = "is not a process in a network namespace that you own";

#[test]
fn a_foreign_users_pid_is_refused_with_the_same_words_as_a_missing_one() {
    let _serial = begin();
    let mut tally = Tally::new("foreign pid");
    let ns = Netns::new(&["lxcbr0"]);
    let foreign = Target::start(Some(&ns), Who::Nobody);
    let mut gone = Target::start(Some(&ns), Who::OwnNamespaces);
    let gone_pid = gone.pid_text();
    gone.kill();
    let foreign_message = refuse(
        &mut tally,
        &ns,
        &[&foreign],
        &[
            "create",
            &foreign.pid_text(),
            "veth",
            "lxcbr0",
            "c1",
            "eth0",
        ],
        1,
        &[NOT_OWNED],
    );
    let gone_message = refuse(
        &mut tally,
        &ns,
        &[&foreign],
        &["create", &gone_pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &[NOT_OWNED],
    );
    // CVE-2022-47952: nothing tells the two apart but the number.
    assert_eq!(
        foreign_message.replace(&foreign.pid_text(), "PID"),
        gone_message.replace(&gone_pid, "PID")
    );
}

#[test]
fn own_processes_in_namespaces_the_user_does_not_own_are_refused() {
    let _serial = begin();
    let mut tally = Tally::new("not owned netns");
    let ns = Netns::new(&["lxcbr0"]);
    let in_test_netns = Target::start(Some(&ns), Who::Plain);
    let in_init_netns = Target::start(None, Who::Plain);
    for t in [&in_test_netns, &in_init_netns] {
        refuse(
            &mut tally,
            &ns,
            &[],
            &["create", &t.pid_text(), "veth", "lxcbr0", "c1", "eth0"],
            1,
            &[NOT_OWNED],
        );
    }
    refuse(
        &mut tally,
        &ns,
        &[],
        &["create", "1", "veth", "lxcbr0", "c1", "eth0"],
        2,
        &["PID `1`"],
    );
}

/// Makes the next process forked by this (root) test get `pid`, by writing `pid - 1` to
/// `ns_last_pid` just before starting a `nobody` target; retries a few times.
fn start_nobody_with_pid(ns: &Netns, pid: i32) -> Option<Target> {
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let target = Target::start(Some(ns), Who::Nobody);
        if target.pid == pid {
            return Some(target);
        }
    }
    None
}

#[test]
fn a_reused_pid_or_a_vanished_one_is_refused() {
    let _serial = begin();
    let mut tally = Tally::new("pid reuse");
    let ns = Netns::new(&["lxcbr0"]);
    let mut target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid;
    target.kill();
    refuse(
        &mut tally,
        &ns,
        &[],
        &["create", &pid.to_string(), "veth", "lxcbr0", "c1", "eth0"],
        1,
        &[NOT_OWNED],
    );
    let reused = start_nobody_with_pid(&ns, pid)
        .unwrap_or_else(|| panic!("could not make a nobody process get pid {pid} again"));
    assert_eq!(reused.pid, pid);
    refuse(
        &mut tally,
        &ns,
        &[&reused],
        &["create", &pid.to_string(), "veth", "lxcbr0", "c1", "eth0"],
        1,
        &[NOT_OWNED],
    );
}

#[test]
fn missing_odd_or_fake_bridges_are_refused() {
    let _serial = begin();
    let mut tally = Tally::new("bridges");
    let no_bridge = Netns::new(&[]);
    let target = Target::start(Some(&no_bridge), Who::OwnNamespaces);
    let pid = target.pid_text();
    refuse(
        &mut tally,
        &no_bridge,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &["bridge lxcbr0 does not exist"],
    );
    for bridge in ["lxc/br0", "..", "."] {
        refuse(
            &mut tally,
            &no_bridge,
            &[&target],
            &["create", &pid, "veth", bridge, "c1", "eth0"],
            2,
            &["BRIDGE"],
        );
    }
    let dummy = Netns::new(&[]);
    // A link that is not a bridge (a dummy when the kernel has the module, else a veth).
    let made_dummy = run(
        "ip",
        &["-n", &dummy.name, "link", "add", "lxcbr0", "type", "dummy"],
    );
    if !made_dummy.status.success() {
        dummy.ip(&[
            "link", "add", "lxcbr0", "type", "veth", "peer", "name", "lxcbr0p",
        ]);
    }
    let target2 = Target::start(Some(&dummy), Who::OwnNamespaces);
    refuse(
        &mut tally,
        &dummy,
        &[&target2],
        &[
            "create",
            &target2.pid_text(),
            "veth",
            "lxcbr0",
            "c1",
            "eth0",
        ],
        1,
        &["lxcbr0 is not a bridge"],
    );
}

#[test]
fn bad_shapes_are_usage_errors() {
    let _serial = begin();
    let mut tally = Tally::new("bad shapes");
    let ns = Netns::new(&["lxcbr0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();
    let long300 = "a".repeat(300);
    let good = ["create", pid.as_str(), "veth", "lxcbr0", "c1", "eth0"];
    let with = |index: usize, value: &str| -> Vec<String> {
        let mut v: Vec<String> = good.iter().map(|s| s.to_string()).collect();
        v[index] = value.to_string();
        v
    };
    let mut cases: Vec<Vec<OsString>> = Vec::new();
    let mut push = |v: Vec<String>| cases.push(v.into_iter().map(OsString::from).collect());
    for bad_pid in [
        "0",
        "-1",
        "abc",
        "12a",
        "+5",
        " 5",
        "5 ",
        "05",
        "99999999999",
        "../../self",
        "",
    ] {
        push(with(1, bad_pid));
    }
    push(with(3, "0123456789abcdef")); // 16-byte bridge
    push(with(5, "0123456789abcdef")); // 16-byte ifname
    push(with(5, "eth%d"));
    push(with(5, "a b"));
    push(with(4, &long300));
    push(with(4, ""));
    push(with(4, "-c1"));
    push(with(2, ""));
    push(with(3, ""));
    push(with(5, ""));
    let mut extra = with(0, "create");
    extra.push("surplus".into());
    push(extra);
    push(good[..5].iter().map(|s| s.to_string()).collect());
    push(vec![]);
    push(vec!["delete".into(), "vc1-0000".into()]);
    push(vec!["list".into(), "--all".into()]);
    for (option, value) in [
        ("--mtu", "67"),
        ("--mtu", "65536"),
        ("--mtu", "abc"),
        ("--hwaddr", "01:00:5e:00:00:01"),
        ("--hwaddr", "ff:ff:ff:ff:ff:ff"),
        ("--hwaddr", "00:00:00:00:00:00"),
        ("--hwaddr", "00:16:3e:zz:00:01"),
    ] {
        let mut v = with(0, "create");
        v.push(option.into());
        v.push(value.into());
        push(v);
    }
    let mut missing_value = with(0, "create");
    missing_value.push("--mtu".into());
    push(missing_value);
    for args in &cases {
        refuse(&mut tally, &ns, &[&target], args, 2, &[]);
    }
    // Non-UTF-8 in each position.
    for index in 1..6 {
        let mut args: Vec<OsString> = good.iter().map(OsString::from).collect();
        args[index] = OsString::from_vec(vec![b'c', 0xff, b'1']);
        refuse(&mut tally, &ns, &[&target], &args, 2, &["UTF-8"]);
    }
    // A 300-byte argument is refused for its length, whatever its position.
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &with(1, &long300),
        2,
        &["300 bytes"],
    );
}

/// Moves `/run/ulxc` aside and puts it back on drop.
struct RunDirSwap {
    saved: String,
    extra: Vec<String>,
}

impl RunDirSwap {
    fn new() -> RunDirSwap {
        let saved = format!("/run/ulxc.user-nic-test-{}", std::process::id());
        std::fs::rename(DB_DIR, &saved).expect("move /run/ulxc aside");
        RunDirSwap {
            saved,
            extra: Vec::new(),
        }
    }
}

impl Drop for RunDirSwap {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(DB_DIR) {
            if meta.file_type().is_symlink() || meta.is_file() {
                let _ = std::fs::remove_file(DB_DIR);
            } else {
                let _ = std::fs::remove_dir_all(DB_DIR);
            }
        }
        let _ = std::fs::rename(&self.saved, DB_DIR);
        for path in &self.extra {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[test]
fn caller_paths_are_never_read_and_an_unsafe_run_dir_is_refused() {
    let _serial = begin();
    let mut tally = Tally::new("symlinks");
    let ns = Netns::new(&["lxcbr0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();
    for fake_pid in ["self", "1/../5", "thread-self", &format!("{pid}/../{pid}")] {
        refuse(
            &mut tally,
            &ns,
            &[&target],
            &["create", fake_pid, "veth", "lxcbr0", "c1", "eth0"],
            2,
            &["PID"],
        );
    }
    // Make sure /run/ulxc exists, then replace it by a symlink to a decoy.
    assert!(ns.helper(&["list"]).status.success());
    let decoy = format!("/tmp/ulxcnic-decoy-{}", std::process::id());
    std::fs::create_dir_all(&decoy).unwrap();
    let mut swap = RunDirSwap::new();
    swap.extra.push(decoy.clone());
    std::os::unix::fs::symlink(&decoy, DB_DIR).unwrap();
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &["refusing to use /run/ulxc", "symbolic link"],
    );
    assert_eq!(
        std::fs::read_dir(&decoy).unwrap().count(),
        0,
        "the decoy was written to"
    );
    std::fs::remove_file(DB_DIR).unwrap();

    // A world-writable directory and one owned by the test user are refused too.
    std::fs::create_dir(DB_DIR).unwrap();
    std::fs::set_permissions(DB_DIR, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &["refusing to use /run/ulxc", "0777"],
    );
    std::fs::set_permissions(DB_DIR, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(DB_DIR, Some(1001), None).unwrap();
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &["refusing to use /run/ulxc", "owned by uid 1001"],
    );
    assert_eq!(std::fs::read_dir(DB_DIR).unwrap().count(), 0);
    // A file instead of a directory.
    std::fs::remove_dir(DB_DIR).unwrap();
    std::fs::write(DB_DIR, "").unwrap();
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "c1", "eth0"],
        1,
        &["refusing to use /run/ulxc", "not a directory"],
    );
    drop(swap);
    assert!(Path::new(DB_DIR).is_dir());
}

#[test]
fn two_helpers_racing_for_the_last_slot_never_both_win() {
    let _serial = begin();
    let mut tally = Tally::new("race");
    let ns = Netns::new(&["ulxcq0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    let pid = target.pid_text();
    let rounds = 12;
    for round in 0..rounds {
        let a = ns.spawn_helper(&["create", &pid, "veth", "ulxcq0", "ra", "eth0"]);
        let b = ns.spawn_helper(&["create", &pid, "veth", "ulxcq0", "rb", "eth1"]);
        let a = a.wait_with_output().unwrap();
        let b = b.wait_with_output().unwrap();
        let winners: Vec<&Output> = [&a, &b]
            .into_iter()
            .filter(|o| o.status.success())
            .collect();
        let losers: Vec<&Output> = [&a, &b]
            .into_iter()
            .filter(|o| !o.status.success())
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} winners; a: {:?} b: {:?}",
            winners.len(),
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        );
        tally.checked += 1;
        let loser = String::from_utf8_lossy(&losers[0].stderr);
        assert_eq!(losers[0].status.code(), Some(1), "{loser}");
        assert!(loser.contains("quota reached"), "round {round}: {loser}");
        tally.refused += 1;
        let host = String::from_utf8_lossy(&winners[0].stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            target.links().len(),
            2,
            "round {round}: {:?}",
            target.links()
        );
        // Free the slot: the host end disappears, so the entry no longer counts.
        ns.ip(&["link", "del", &host]);
    }
}

#[test]
fn a_stopped_containers_nic_no_longer_counts() {
    let _serial = begin();
    let mut tally = Tally::new("reclaim");
    let ns = Netns::new(&["ulxcq0"]);
    let mut first = Target::start(Some(&ns), Who::OwnNamespaces);
    let (host, _) = create_ok(&ns, &[&first.pid_text(), "veth", "ulxcq0", "r1", "eth0"]);
    let second = Target::start(Some(&ns), Who::OwnNamespaces);
    refuse(
        &mut tally,
        &ns,
        &[&second],
        &["create", &second.pid_text(), "veth", "ulxcq0", "r2", "eth0"],
        1,
        &["quota reached", &format!("container r1 ({host})")],
    );
    first.kill();
    ns.wait_link_gone(&host);
    let (host2, _) = create_ok(&ns, &[&second.pid_text(), "veth", "ulxcq0", "r2", "eth0"]);
    let list = String::from_utf8_lossy(&ns.helper(&["list"]).stdout).into_owned();
    assert!(!list.contains(&host), "{list}");
    assert!(
        list.contains(&format!("ulxcq0 {host2} r2 {}", second.pid)),
        "{list}"
    );
}

#[test]
fn help_and_version_answer_and_list_takes_no_arguments() {
    let _serial = begin();
    let mut tally = Tally::new("help");
    let ns = Netns::new(&[]);
    let help = ns.helper(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("ulxc-user-nic create PID"));
    let version = ns.helper(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("ulxc-user-nic "));
    refuse(
        &mut tally,
        &ns,
        &[],
        &["--help", "x"],
        2,
        &["takes no arguments"],
    );
}

#[test]
fn the_environment_changes_nothing() {
    let _serial = begin();
    let mut tally = Tally::new("environment");
    // (`refuse` runs the helper with the test's own environment; the hostile one is below.)
    let ns = Netns::new(&["lxcbr0"]);
    let target = Target::start(Some(&ns), Who::OwnNamespaces);
    // A hostile environment: the helper must neither use nor mind it.
    let out = Command::new("/usr/bin/nsenter")
        .arg(format!("--net={}", ns.path()))
        .args([
            "/usr/bin/setpriv",
            "--reuid",
            USER,
            "--regid",
            USER,
            "--init-groups",
            "--",
        ])
        .args([
            "/usr/bin/env",
            "LD_PRELOAD=/nonexistent/evil.so",
            "LD_LIBRARY_PATH=/nonexistent",
            "RUST_BACKTRACE=full",
            "RUST_LOG=trace",
            "PATH=/nonexistent",
            "HOME=/nonexistent",
            "LXC_USERNIC_CONF=/tmp/evil-usernet",
            "LANG=xx_XX.UTF-8",
        ])
        .arg(HELPER)
        .args([
            "create",
            &target.pid_text(),
            "veth",
            "lxcbr0",
            "env",
            "eth0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    // A refusal under the same environment is the same one line.
    let pid = target.pid_text();
    refuse(
        &mut tally,
        &ns,
        &[&target],
        &["create", &pid, "veth", "lxcbr0", "env", "eth0"],
        1,
        &["already has an interface named eth0"],
    );
}

/// The rtnetlink client itself (no helper): every operation against a real kernel,
/// inside two test namespaces.
#[test]
fn the_netlink_client_works_in_test_namespaces() {
    use std::net::IpAddr;
    use std::os::fd::AsFd;
    use ulxc::net::netlink::Netlink;

    let _serial = begin();
    let _tally = Tally::new("netlink client");
    let host = Netns::new(&["lxcbr0"]);
    let peer = Netns::new(&[]);
    let host_fd = std::fs::File::open(host.path()).unwrap();
    let peer_fd = std::fs::File::open(peer.path()).unwrap();
    let mut nl = Netlink::open_in(host_fd.as_fd()).expect("netlink in the host namespace");
    assert!(nl.link_index("lxcbr0").unwrap().is_some());
    assert!(nl.link_index("nosuch0").unwrap().is_none());
    assert!(nl.is_bridge("lxcbr0").unwrap());
    assert!(!nl.is_bridge("lo").unwrap());
    assert!(!nl.is_bridge("nosuch0").unwrap());
    assert_eq!(nl.link_mtu("lxcbr0").unwrap(), Some(1500));
    assert_eq!(nl.link_mtu("nosuch0").unwrap(), None);

    nl.create_veth_into(
        "vt-host",
        "eth0",
        peer_fd.as_fd(),
        Some(1400),
        Some([0, 0x16, 0x3e, 1, 2, 3]),
    )
    .expect("create the pair");
    let exists = nl.create_veth_into("vt-host", "eth1", peer_fd.as_fd(), None, None);
    assert_eq!(exists.unwrap_err().errno(), Some(nix::errno::Errno::EEXIST));
    assert_eq!(peer.links(), vec!["eth0".to_string(), "lo".to_string()]);
    let eth0 = peer.ip(&["-o", "link", "show", "eth0"]);
    assert!(
        eth0.contains("mtu 1400") && eth0.contains("00:16:3e:01:02:03"),
        "{eth0}"
    );
    assert!(eth0.contains(",UP") || eth0.contains("<UP"), "{eth0}");

    // The host end: rename (while down), MTU, MAC, bridge, up.
    nl.rename_link("vt-host", "vt-renamed").unwrap();
    nl.set_mtu("vt-renamed", 1300).unwrap();
    nl.set_mac("vt-renamed", [0x02, 0, 0, 0, 0, 0x42]).unwrap();
    nl.set_master("vt-renamed", "lxcbr0").unwrap();
    nl.set_up("vt-renamed").unwrap();
    let line = host.ip(&["-o", "link", "show", "vt-renamed"]);
    assert!(
        line.contains("mtu 1300") && line.contains("02:00:00:00:00:42"),
        "{line}"
    );
    assert!(line.contains("master lxcbr0"), "{line}");
    assert!(line.contains(",UP") || line.contains("<UP"), "{line}");
    nl.set_down("vt-renamed").unwrap();
    let line = host.ip(&["-o", "link", "show", "vt-renamed"]);
    assert!(!line.contains(",UP,") && !line.contains("<UP"), "{line}");

    // Addresses and the default route, from inside the peer namespace.
    let mut inside = Netlink::open_in(peer_fd.as_fd()).unwrap();
    inside
        .add_address("eth0", "10.0.3.5".parse::<IpAddr>().unwrap(), 24)
        .unwrap();
    inside
        .add_address("eth0", "fd42::5".parse::<IpAddr>().unwrap(), 64)
        .unwrap();
    inside
        .add_default_route("10.0.3.1".parse::<IpAddr>().unwrap())
        .unwrap();
    let again = inside.add_default_route("10.0.3.1".parse::<IpAddr>().unwrap());
    assert_eq!(again.unwrap_err().errno(), Some(nix::errno::Errno::EEXIST));
    let addrs = peer.ip(&["-o", "addr", "show", "eth0"]);
    assert!(
        addrs.contains("10.0.3.5/24") && addrs.contains("fd42::5/64"),
        "{addrs}"
    );
    let routes = peer.ip(&["route", "show"]);
    assert!(routes.contains("default via 10.0.3.1 dev eth0"), "{routes}");
    let missing = inside.set_up("nosuch0").unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no network interface named nosuch0"),
        "{missing}"
    );

    // Deleting one end removes the pair.
    nl.delete_link("vt-renamed").unwrap();
    assert_eq!(peer.links(), vec!["lo".to_string()]);
}
