//! The small state file in the run dir: what the last `start` made, so that `stop`
//! undoes exactly that (and keeps a bridge that existed before, like a site's own).

use super::nat::Backend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The version of the state file's format.
pub const STATE_VERSION: u32 = 1;

/// What `start` set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// The bridge's name.
    pub bridge: String,
    /// Whether `ulxc-net` created the bridge (then `stop` deletes it).
    pub created_bridge: bool,
    /// The IPv4 and IPv6 addresses `start` put on the bridge (a later start with
    /// other addresses removes these first).
    #[serde(default)]
    pub bridge_addresses: Vec<String>,
    /// The address `ulxc-net` added to a bridge it did not create (`stop` removes it).
    pub added_address: Option<String>,
    /// The IPv6 address `ulxc-net` added to a bridge it did not create.
    #[serde(default)]
    pub added_ipv6_address: Option<String>,
    /// Which backend holds the rules.
    pub backend: Backend,
    /// The dnsmasq pid at the time of `start`.
    pub dnsmasq_pid: Option<i32>,
}

/// The state file of a run dir.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join("state.json")
}

/// Reads the state file (`Ok(None)` when there is none).
pub fn load(run_dir: &Path) -> std::io::Result<Option<State>> {
    match std::fs::read_to_string(path(run_dir)) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a ulxc-net state file: {e}",
                    path(run_dir).display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the state file atomically (temporary file, then rename).
pub fn save(run_dir: &Path, state: &State) -> std::io::Result<()> {
    let tmp = run_dir.join("state.json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path(run_dir))
}

/// Removes the state file (absent is fine).
pub fn remove(run_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(run_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
