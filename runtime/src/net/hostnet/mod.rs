//! The host side of container networking, what `ulxc-net` does (LXC's `lxc-net`): a
//! bridge (default `lxcbr0`, 10.0.3.1/24), IPv4 forwarding, NAT and filter rules of
//! ulxc's own, and a dnsmasq serving DHCP and DNS on the bridge.
//!
//! Everything acts on the network namespace the process runs in (as root), through the
//! Debian tools `ip`, `nft`/`iptables` and `dnsmasq` (nftables and iptables have no
//! maintained Rust library; this is also what `lxc-net` does).
//!
//! - [`start`] is idempotent: the rules are replaced as a whole (see [`nat`]), so there
//!   is exactly one copy of each while up; a running dnsmasq of this run dir is kept.
//!   A failing start undoes what it made and returns one error.
//! - [`stop`] is idempotent: it stops the dnsmasq (verified by pid and command line),
//!   removes the rules, and deletes the bridge only if `start` created it and nothing is
//!   attached to it any more (like lxc-net: a bridge that existed before, or one that
//!   running containers' veths still hang on, keeps everything but the address `start`
//!   added). The
//!   `net.ipv4.ip_forward` sysctl is left as it is: other services may rely on it.
//! - [`status`] reports bridge, dnsmasq, leases, owned rules and every setting with the
//!   file:line it came from.
//!
//! The binary is `ulxc-net` (`src/bin/ulxc-net`); `runtime/contrib/ulxc-net.service` runs
//! it at boot (installed by `.ci/install`).
//!
//! IPv6 follows LXC: with `LXC_IPV6_ADDR`, `_MASK` and `_NETWORK` set, the bridge gets
//! the address (duplicate address detection and autoconfiguration off on it), IPv6
//! forwarding is turned on, dnsmasq sends router advertisements (`ra-only`), and with
//! `LXC_IPV6_NAT=true` the network is masqueraded too.

pub mod bridge;
pub mod dnsmasq;
pub mod nat;
pub mod settings;
pub mod state;
pub mod status;
pub mod tool;

use nat::Backend;
pub use settings::{Settings, SettingsError, Source};
use state::State;
pub use status::Status;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tool::ToolError;

/// The run dir used when none is given.
pub const DEFAULT_RUN_DIR: &str = "/run/ulxc-net";
/// The environment variable that names the run dir.
pub const RUN_DIR_ENV: &str = "ULXC_NET_RUN_DIR";

/// Why `ulxc-net` could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    /// The settings are unusable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A step failed in a tool.
    #[error("{step}")]
    Step {
        /// What was being done.
        step: String,
        /// The tool's failure.
        source: ToolError,
    },
    /// dnsmasq failed.
    #[error(transparent)]
    Dnsmasq(#[from] dnsmasq::DnsmasqError),
    /// A file in the run dir or /proc could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// `LXC_BRIDGE` names an interface that is not a bridge.
    #[error("LXC_BRIDGE ({set_at}) names {name}, which exists and is a {kind} device, not a bridge; pick another name or remove it")]
    NotABridge {
        /// The interface.
        name: String,
        /// Its kind.
        kind: String,
        /// Where LXC_BRIDGE was set.
        set_at: Source,
    },
    /// Not running as root.
    #[error("ulxc-net {command} must run as root (it changes the network namespace's bridges, rules and sysctls)")]
    NotRoot {
        /// The subcommand.
        command: &'static str,
    },
}

fn step(step: impl Into<String>) -> impl FnOnce(ToolError) -> HostNetError {
    let step = step.into();
    move |source| HostNetError::Step { step, source }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostNetError {
    let what = what.into();
    move |source| HostNetError::Io { what, source }
}

/// The run dir: the explicit one, else `$ULXC_NET_RUN_DIR`, else [`DEFAULT_RUN_DIR`].
pub fn run_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os(RUN_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// `USE_LXC_BRIDGE` is false: nothing was made.
    Disabled {
        /// Where it was set to false.
        source: Source,
    },
    /// The network is up.
    Up {
        /// The state now recorded.
        state: State,
        /// Whether dnsmasq was already running and was kept.
        kept_dnsmasq: bool,
    },
}

fn require_root(command: &'static str) -> Result<(), HostNetError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(HostNetError::NotRoot { command })
    }
}

/// Takes the run dir's lock so that two `ulxc-net` runs on one run dir do not
/// interleave; `None` when the run dir does not exist (nothing of ours is there).
fn lock(run_dir: &Path) -> Result<Option<crate::sys::socket::FileLock>, HostNetError> {
    if !run_dir.is_dir() {
        return Ok(None);
    }
    let path = run_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening the lock file {}", path.display())))?;
    crate::sys::socket::lock_exclusive(file)
        .map(Some)
        .map_err(|(_, errno)| HostNetError::Io {
            what: format!("locking {}", path.display()),
            source: errno.into(),
        })
}

fn ensure_run_dir(run_dir: &Path) -> Result<(), HostNetError> {
    if !run_dir.is_dir() {
        std::fs::create_dir_all(run_dir)
            .map_err(io(format!("creating the run dir {}", run_dir.display())))?;
        std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("setting the mode of {}", run_dir.display())))?;
    }
    Ok(())
}

/// What a start made so far, for undoing it when a later step fails.
#[derive(Default)]
struct Made {
    bridge: Option<String>,
    address: Option<(String, String)>,
    address6: Option<(String, String)>,
    rules: Option<Backend>,
    dnsmasq: bool,
}

impl Made {
    fn undo(&self, run_dir: &Path) {
        if self.dnsmasq {
            if let Err(err) = dnsmasq::stop(run_dir, None) {
                tracing::warn!(%err, "undo: stopping dnsmasq");
            }
        }
        if let Some(backend) = self.rules {
            if let Err(err) = nat::remove(backend) {
                tracing::warn!(%err, "undo: removing the rules");
            }
        }
        for (name, cidr) in self.address.iter().chain(&self.address6) {
            if let Err(err) = bridge::remove_address(name, cidr) {
                tracing::warn!(%err, "undo: removing the address");
            }
        }
        if let Some(name) = &self.bridge {
            if let Err(err) = bridge::delete(name) {
                tracing::warn!(%err, "undo: deleting the bridge");
            }
        }
    }
}

/// Sets the network up (idempotent); see the module documentation.
pub fn start(settings: &Settings, run_dir: &Path) -> Result<StartOutcome, HostNetError> {
    if !settings.use_bridge {
        return Ok(StartOutcome::Disabled {
            source: settings.source_of("USE_LXC_BRIDGE"),
        });
    }
    require_root("start")?;
    ensure_run_dir(run_dir)?;
    let _lock = lock(run_dir)?;
    let mut prior = state::load(run_dir).map_err(io("reading the state file"))?;
    if let Some(old) = prior.as_ref().filter(|old| old.bridge != settings.bridge) {
        tracing::info!(old = %old.bridge, new = %settings.bridge, "LXC_BRIDGE changed; stopping the old network first");
        stop_locked(run_dir)?;
        prior = None;
    }
    let backend = nat::choose(settings);
    if let Some(old) = prior.as_ref().filter(|old| old.backend != backend) {
        nat::remove(old.backend)
            .map_err(step(format!("removing the old {} rules", old.backend)))?;
    }
    let mut made = Made::default();
    match start_steps(settings, run_dir, prior.as_ref(), backend, &mut made) {
        Ok(outcome) => Ok(outcome),
        Err(err) => {
            made.undo(run_dir);
            Err(err)
        }
    }
}

fn start_steps(
    settings: &Settings,
    run_dir: &Path,
    prior: Option<&State>,
    backend: Backend,
    made: &mut Made,
) -> Result<StartOutcome, HostNetError> {
    let name = settings.bridge.as_str();
    let existing = bridge::inspect(name).map_err(step(format!("reading the bridge {name}")))?;
    let created_now = match &existing {
        None => {
            bridge::create(name, &settings.bridge_mac)
                .map_err(step(format!("creating the bridge {name}")))?;
            made.bridge = Some(name.to_string());
            true
        }
        Some(found) if found.kind.as_deref() != Some("bridge") => {
            return Err(HostNetError::NotABridge {
                name: name.to_string(),
                kind: found.kind.clone().unwrap_or_else(|| "plain".into()),
                set_at: settings.source_of("LXC_BRIDGE"),
            });
        }
        Some(_) => false,
    };
    let created_bridge = created_now || prior.is_some_and(|p| p.created_bridge);
    let cidr = format!("{}/{}", settings.addr, settings.prefix);
    let cidr6 = settings.ipv6.as_ref().map(|v6| v6.addr_cidr());
    let wanted: Vec<String> = std::iter::once(cidr.clone()).chain(cidr6.clone()).collect();
    // Addresses an earlier start put there that the settings no longer ask for (an
    // address the site had before start is never recorded, so never removed).
    if let (Some(prior), Some(found)) = (prior, &existing) {
        let ours_before = |c: &String| {
            prior.created_bridge
                || prior.added_address.as_ref() == Some(c)
                || prior.added_ipv6_address.as_ref() == Some(c)
        };
        for old in prior
            .bridge_addresses
            .iter()
            .filter(|c| !wanted.contains(c) && found.addresses.contains(c) && ours_before(c))
        {
            tracing::info!(%old, "removing the bridge address of the previous settings");
            bridge::remove_address(name, old)
                .map_err(step(format!("removing the old address {old} from {name}")))?;
        }
    }
    let has_address = existing
        .as_ref()
        .is_some_and(|b| b.addresses.contains(&cidr));
    let mut added_address = prior.and_then(|p| p.added_address.clone());
    if !has_address {
        bridge::add_address(name, &cidr)
            .map_err(step(format!("adding {cidr} to the bridge {name}")))?;
        if !created_now {
            made.address = Some((name.to_string(), cidr.clone()));
            if !created_bridge {
                added_address = Some(cidr.clone());
            }
        }
    }
    let mut added_ipv6_address = prior.and_then(|p| p.added_ipv6_address.clone());
    if let Some(v6) = &settings.ipv6 {
        for (knob, value) in [("accept_dad", "0"), ("autoconf", "0")] {
            let path = format!("/proc/sys/net/ipv6/conf/{name}/{knob}");
            std::fs::write(&path, value)
                .map_err(io(format!("setting {path} (is IPv6 enabled here?)")))?;
        }
        let cidr6 = v6.addr_cidr();
        let has_v6 = existing
            .as_ref()
            .is_some_and(|b| b.addresses.contains(&cidr6));
        if !has_v6 {
            bridge::add_address6(name, &cidr6)
                .map_err(step(format!("adding {cidr6} to the bridge {name}")))?;
            if !created_now {
                made.address6 = Some((name.to_string(), cidr6.clone()));
                if !created_bridge {
                    added_ipv6_address = Some(cidr6);
                }
            }
        }
        std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1\n").map_err(io(
            "enabling IPv6 forwarding (/proc/sys/net/ipv6/conf/all/forwarding)",
        ))?;
    }
    bridge::set_up(name).map_err(step(format!("bringing the bridge {name} up")))?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1\n").map_err(io(
        "enabling IPv4 forwarding (/proc/sys/net/ipv4/ip_forward)",
    ))?;
    nat::apply(backend, settings).map_err(step(format!("installing the {backend} rules")))?;
    if prior.is_none() {
        made.rules = Some(backend);
    }
    let mut kept_dnsmasq = false;
    let pid = match dnsmasq::running(run_dir) {
        // A dnsmasq bound to a bridge that was just re-created listens on nothing, and
        // one started with other settings serves the old ones: both are restarted.
        Some(pid) if !created_now && dnsmasq::runs_with(pid, settings, run_dir) => {
            kept_dnsmasq = true;
            pid
        }
        running => {
            if running.is_some() {
                dnsmasq::stop(run_dir, None)?;
            }
            let pid = dnsmasq::start(settings, run_dir)?;
            made.dnsmasq = true;
            pid
        }
    };
    let state = State {
        version: state::STATE_VERSION,
        bridge: name.to_string(),
        created_bridge,
        bridge_addresses: wanted,
        added_address,
        added_ipv6_address,
        backend,
        dnsmasq_pid: Some(pid),
    };
    state::save(run_dir, &state).map_err(io(format!(
        "writing the state file {}",
        state::path(run_dir).display()
    )))?;
    Ok(StartOutcome::Up {
        state,
        kept_dnsmasq,
    })
}

/// What `stop` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Whether a state file said the network was up.
    pub was_up: bool,
    /// The dnsmasq pid that was stopped.
    pub stopped_dnsmasq: Option<i32>,
    /// The bridge that was deleted.
    pub deleted_bridge: Option<String>,
    /// The bridge that was kept (it existed before `start`).
    pub kept_bridge: Option<String>,
    /// A bridge `start` created but kept because interfaces are still attached to it
    /// (running containers' veths), with their names; like lxc-net, it loses only its
    /// address and is not deleted under them.
    pub busy_bridge: Option<(String, Vec<String>)>,
}

/// Takes the network down (idempotent); see the module documentation.
pub fn stop(run_dir: &Path) -> Result<StopReport, HostNetError> {
    require_root("stop")?;
    let _lock = lock(run_dir)?;
    stop_locked(run_dir)
}

fn stop_locked(run_dir: &Path) -> Result<StopReport, HostNetError> {
    let prior = state::load(run_dir).map_err(io("reading the state file"))?;
    let mut report = StopReport {
        was_up: prior.is_some(),
        ..StopReport::default()
    };
    report.stopped_dnsmasq = dnsmasq::stop(run_dir, prior.as_ref().and_then(|s| s.dnsmasq_pid))?;
    let backends: Vec<Backend> = match &prior {
        Some(state) => vec![state.backend],
        // No record: remove whatever of ulxc's own rules exist (they are ours by name).
        None => {
            let mut all = vec![Backend::Iptables];
            if tool::in_path("nft") && tool::succeeds("nft", &["list", "tables"]) {
                all.push(Backend::Nftables);
            }
            all
        }
    };
    for backend in backends {
        nat::remove(backend).map_err(step(format!("removing the {backend} rules")))?;
    }
    if let Some(state) = &prior {
        let name = state.bridge.as_str();
        let found = bridge::inspect(name).map_err(step(format!("reading the bridge {name}")))?;
        if let Some(found) = found {
            let ports = if state.created_bridge {
                bridge::ports(name).map_err(step(format!("listing the ports of {name}")))?
            } else {
                Vec::new()
            };
            if state.created_bridge && ports.is_empty() {
                bridge::delete(name).map_err(step(format!("deleting the bridge {name}")))?;
                report.deleted_bridge = Some(name.to_string());
            } else {
                // A bridge `start` created got all its (non link-local) addresses from
                // `start`; one that existed keeps all but the ones `start` recorded.
                let ours: Vec<&String> = if state.created_bridge {
                    found
                        .addresses
                        .iter()
                        .filter(|c| !c.starts_with("fe80:"))
                        .collect()
                } else {
                    [&state.added_address, &state.added_ipv6_address]
                        .into_iter()
                        .flatten()
                        .filter(|c| found.addresses.contains(c))
                        .collect()
                };
                for cidr in ours {
                    bridge::remove_address(name, cidr)
                        .map_err(step(format!("removing {cidr} from the bridge {name}")))?;
                }
                if state.created_bridge {
                    report.busy_bridge = Some((name.to_string(), ports));
                } else {
                    report.kept_bridge = Some(name.to_string());
                }
            }
        }
    }
    state::remove(run_dir).map_err(io("removing the state file"))?;
    Ok(report)
}

/// Reports the network's state now.
pub fn status(settings: &Settings, run_dir: &Path) -> Result<Status, HostNetError> {
    let recorded = state::load(run_dir).map_err(io("reading the state file"))?;
    let name = recorded
        .as_ref()
        .map_or(settings.bridge.clone(), |s| s.bridge.clone());
    let found = bridge::inspect(&name).map_err(step(format!("reading the bridge {name}")))?;
    let backend = recorded
        .as_ref()
        .map_or_else(|| nat::choose(settings), |s| s.backend);
    let rules = nat::list(backend).map_err(step(format!("listing the {backend} rules")))?;
    let pid = dnsmasq::recorded_pid(run_dir);
    Ok(Status {
        version: status::STATUS_VERSION,
        up: recorded.is_some(),
        enabled: settings.use_bridge,
        run_dir: run_dir.display().to_string(),
        bridge: status::BridgeReport {
            name: name.clone(),
            exists: found.is_some(),
            created_by_ulxc_net: recorded.as_ref().is_some_and(|s| s.created_bridge),
            state: found,
        },
        dnsmasq: status::DnsmasqReport {
            pid,
            alive: pid.is_some_and(|p| dnsmasq::is_ours(p, run_dir)),
            leases: dnsmasq::lease_count(run_dir, &name),
            lease_file: dnsmasq::lease_file(run_dir, &name).display().to_string(),
        },
        backend,
        rules,
        settings: settings
            .entries
            .iter()
            .map(|e| status::SettingReport {
                key: e.key.clone(),
                value: e.value.clone(),
                source: e.source.to_string(),
            })
            .collect(),
    })
}
