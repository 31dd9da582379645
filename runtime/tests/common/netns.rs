//! Network namespaces that a test creates, and servers and clients inside them.
//!
//! Every test that touches a network builds its world out of [`TestNetns`]: a named
//! namespace (`ip netns add ulxcnet-<pid>-<n>`) that is deleted again when the value is
//! dropped, also when the test fails. Commands run inside through `nsenter --net=`;
//! Rust code runs inside on a thread that has joined the namespace (`setns` affects
//! only the calling thread). Nothing is ever added to the machine's own namespace.
//!
//! [`UlxcNetHost`] is the host side of a networking test: a namespace in which the
//! real `ulxc-net` runs with its own settings file and run dir (bridge, dnsmasq, NAT),
//! stopped again on drop. Link it to an "outside" namespace with
//! [`TestNetns::link_to`] and watch the far side with [`TestNetns::tcp_observer`].

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The `ulxc-net` binary under test.
const ULXC_NET: &str = env!("CARGO_BIN_EXE_ulxc-net");
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Numbers the namespaces (and veth names) made by this test process.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_number() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A network namespace made for a test; deleted on drop after killing the processes
/// registered with [`TestNetns::kill_on_drop`].
pub struct TestNetns {
    /// Its name under `/run/netns`.
    pub name: String,
    /// What the test calls it (for messages).
    pub tag: String,
    pids: Mutex<Vec<(i32, u64)>>,
}

/// The two ends of a veth pair made by [`TestNetns::link_to`].
#[derive(Debug, Clone)]
pub struct VethPair {
    /// The end in the namespace `link_to` was called on.
    pub here: String,
    /// The end in the other namespace.
    pub there: String,
}

/// The start time (field 22 of `/proc/PID/stat`) of a live process; with the pid it
/// names one process across pid reuse.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.get(stat.rfind(')')? + 2..)?;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn check(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TestNetns {
    /// Creates a fresh namespace `ulxcnet-<pid>-<n>` with `lo` up. Fails the test (with
    /// the reason) when `ip netns add` is not possible, e.g. not running as root.
    pub fn new(tag: &str) -> TestNetns {
        let name = format!("ulxcnet-{}-{}", std::process::id(), next_number());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("running `ip netns add` (is iproute2 installed?)");
        check(
            &format!("`ip netns add {name}` for {tag} (these tests must run as root)"),
            &out,
        );
        let ns = TestNetns {
            name,
            tag: tag.to_string(),
            pids: Mutex::new(Vec::new()),
        };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's file, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace (network only: mounts,
    /// users and pids stay the test's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `args` inside and returns its output, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("running {args:?} in {}: {e}", self.tag))
    }

    /// Runs `args` inside, fails the test if it fails, and returns its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        check(&format!("{args:?} in {}", self.tag), &self.output(args))
    }

    /// Has the process `pid` (started inside by the test or by a tool under test)
    /// killed with SIGKILL when this namespace is dropped, if it is still the same
    /// process then (its start time is compared, so a reused pid is left alone).
    pub fn kill_on_drop(&self, pid: i32) {
        if let Some(start) = start_time(pid) {
            self.pids.lock().unwrap().push((pid, start));
        }
    }

    /// Makes a veth pair from this namespace to `other`, gives each end the address
    /// (CIDR) when one is given, and brings both up. Returns the two names.
    pub fn link_to(
        &self,
        other: &TestNetns,
        addr_here: Option<&str>,
        addr_there: Option<&str>,
    ) -> VethPair {
        let n = next_number();
        let pair = VethPair {
            here: format!("tv{n}a"),
            there: format!("tv{n}b"),
        };
        self.run(&[
            "ip",
            "link",
            "add",
            &pair.here,
            "type",
            "veth",
            "peer",
            "name",
            &pair.there,
            "netns",
            &other.path().display().to_string(),
        ]);
        if let Some(addr) = addr_here {
            self.run(&["ip", "addr", "add", addr, "dev", &pair.here]);
        }
        if let Some(addr) = addr_there {
            other.run(&["ip", "addr", "add", addr, "dev", &pair.there]);
        }
        self.run(&["ip", "link", "set", &pair.here, "up"]);
        other.run(&["ip", "link", "set", &pair.there, "up"]);
        pair
    }

    /// Sets this namespace's default route via `via`.
    pub fn default_route(&self, via: &str) {
        self.run(&["ip", "route", "replace", "default", "via", via]);
    }

    /// Runs `f` on a new thread that has joined this namespace (`setns`), and returns
    /// the thread's handle.
    pub fn in_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
            f()
        })
    }

    /// Connects by TCP from inside this namespace to `to`, sends a line and returns the
    /// local address the connection used.
    pub fn connect_from(&self, to: SocketAddr) -> std::io::Result<SocketAddr> {
        self.in_thread(move || {
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
            let local = stream.local_addr()?;
            stream.write_all(b"hello from a test namespace\n")?;
            Ok(local)
        })
        .join()
        .expect("the connecting thread panicked")
    }

    /// Starts a TCP server on `addr:port` inside this namespace that records the peer
    /// address of each connection (so a test can see whether traffic arrived
    /// masqueraded). The server stops when the returned value is dropped.
    pub fn tcp_observer(&self, addr: Ipv4Addr, port: u16) -> TcpObserver {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let peers = Arc::clone(&peers);
            let stop = Arc::clone(&stop);
            self.in_thread(move || {
                let listener = match TcpListener::bind((addr, port)) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                listener
                    .set_nonblocking(true)
                    .expect("non-blocking listener");
                let _ = ready_tx.send(Ok(()));
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, peer)) => {
                            peers.lock().unwrap().push(peer);
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                            let mut buf = [0u8; 256];
                            let _ = stream.read(&mut buf);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "tcp_observer cannot bind {addr}:{port} in {}: {e}",
                self.tag
            ),
            Err(_) => panic!("tcp_observer thread in {} died", self.tag),
        }
        TcpObserver {
            peers,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for (pid, start) in self.pids.lock().unwrap().drain(..) {
            if start_time(pid) != Some(start) {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("warning: `ip netns del {}` failed: {out:?}", self.name);
        }
    }
}

/// A TCP server inside a test namespace that records who connected.
pub struct TcpObserver {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpObserver {
    /// The peer addresses of the connections so far.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .map(SocketAddr::ip)
            .collect()
    }
}

impl Drop for TcpObserver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A namespace where the real `ulxc-net` runs (as root) with its own settings file and
/// run dir: the host side (bridge, dnsmasq, NAT) of a networking test. On drop it runs
/// `ulxc-net stop` and kills a dnsmasq left behind, before the namespace goes.
pub struct UlxcNetHost {
    /// A temporary directory for the settings, the run dir and scratch files.
    pub dir: tempfile::TempDir,
    /// The settings files passed as `--config`, in order.
    pub configs: Vec<PathBuf>,
    /// The run dir passed as `--run-dir`.
    pub run_dir: PathBuf,
    /// The namespace `ulxc-net` acts on.
    pub ns: TestNetns,
}

impl UlxcNetHost {
    /// A fresh namespace with `settings` as the one settings file (not started).
    pub fn new(tag: &str, settings: &str) -> UlxcNetHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("lxc-net");
        std::fs::write(&config, settings).unwrap();
        let run_dir = dir.path().join("run");
        UlxcNetHost {
            configs: vec![config],
            run_dir,
            dir,
            ns: TestNetns::new(tag),
        }
    }

    /// Runs `ulxc-net --config ... --run-dir ... ARGS` inside the namespace.
    pub fn ulxc_net(&self, args: &[&str]) -> Output {
        let mut cmd = self.ns.command(ULXC_NET);
        for config in &self.configs {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--run-dir").arg(&self.run_dir).args(args);
        cmd.output().expect("running ulxc-net")
    }

    /// Like [`UlxcNetHost::ulxc_net`], failing the test when it fails; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ulxc_net(args);
        super::ok(&out)
    }

    /// dnsmasq's pid file in the run dir.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("dnsmasq.pid")
    }

    /// The pid in dnsmasq's pid file.
    pub fn dnsmasq_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether `pid` is a live dnsmasq started with this host's pid file.
    pub fn is_our_dnsmasq(&self, pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|s| s == "Z");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        !zombie
            && cmdline.starts_with("dnsmasq\0")
            && cmdline.contains(&format!("--pid-file={}", self.pid_file().display()))
    }

    /// Masquerade rules in the namespace's whole nftables ruleset (the iptables-nft
    /// tables included).
    pub fn nft_masquerades(&self) -> usize {
        self.ns
            .run(&["nft", "list", "ruleset"])
            .lines()
            .filter(|l| l.contains("masquerade"))
            .count()
    }

    /// Whether nftables has the table `inet ulxc`.
    pub fn has_ulxc_table(&self) -> bool {
        self.ns
            .run(&["nft", "list", "tables"])
            .contains("table inet ulxc")
    }

    /// MASQUERADE rules in iptables' nat table.
    pub fn iptables_masquerades(&self) -> usize {
        self.ns
            .run(&["iptables", "-w", "-t", "nat", "-S"])
            .lines()
            .filter(|l| l.contains("MASQUERADE"))
            .count()
    }

    /// Lines of `iptables-save` that mention ulxc's chains.
    pub fn iptables_ulxc_lines(&self) -> usize {
        self.ns
            .run(&["iptables-save"])
            .lines()
            .filter(|l| l.contains("ULXC-"))
            .count()
    }

    /// Whether the interface `name` exists in the namespace.
    pub fn bridge_exists(&self, name: &str) -> bool {
        self.ns
            .output(&["ip", "link", "show", "dev", name])
            .status
            .success()
    }

    /// `ulxc-net status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let text = self.ok(&["status", "--json"]);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {text}"))
    }

    /// Asserts that nothing is set up: no bridge, no table or chains, no dnsmasq.
    pub fn assert_nothing(&self, bridge: &str) {
        assert!(!self.bridge_exists(bridge), "bridge {bridge} exists");
        assert!(!self.has_ulxc_table(), "table inet ulxc exists");
        assert_eq!(self.iptables_ulxc_lines(), 0, "iptables has ULXC chains");
        assert_eq!(self.nft_masquerades(), 0, "a masquerade rule is left");
        assert!(
            self.dnsmasq_pid().is_none_or(|p| !self.is_our_dnsmasq(p)),
            "dnsmasq runs"
        );
    }
}

impl Drop for UlxcNetHost {
    fn drop(&mut self) {
        let _ = self.ulxc_net(&["stop"]);
        if let Some(pid) = self.dnsmasq_pid().filter(|p| self.is_our_dnsmasq(*p)) {
            eprintln!("warning: dnsmasq {pid} survived `ulxc-net stop`; killing it");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = &self.dir;
    }
}
