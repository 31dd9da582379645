//! LXC container configuration: parse, includes, legacy keys, typed model, errors with file:line.
//!
//! The format is LXC 5's: `key = value` lines, `#` comment lines and blank lines.
//! One extension: a trailing ` # comment` preceded by whitespace is stripped (the
//! walkthrough writes one; LXC would take it as part of the value).
//!
//! Two layers:
//! - [`RawConfig`] ([`read_raw`], [`parse_raw_str`]): the ordered `key = value` items with
//!   `lxc.include` expanded (a file, or a directory's `*.conf` in sorted order; cycles
//!   reported with the chain), unknown keys rejected (with the nearest known key suggested)
//!   and legacy LXC 2.x keys renamed to their current spelling (with a warning).
//! - [`ContainerConfig`] ([`ContainerConfig::from_raw`], [`load`]): typed values, each
//!   grammar checked (id maps, `lxc.mount.auto`, signals, network types, MAC addresses, ...).
//!
//! Key classification (see [`keys::classify`]):
//! - *applied*: kept as typed data in [`ContainerConfig`] — rootfs.path, uts.name, idmap,
//!   mount.auto/entry/fstab, cap.drop/keep, init.cmd/cwd/uid/gid, signal.*, net.N.*,
//!   cgroup2.*, cgroup.* (v1 controller keys), environment, tty.max, pty.max, start.*,
//!   group, arch, autodev, console.path/logfile, log.file/level, sysctl.*, prlimit.*,
//!   no_new_privs, hook.*. Some are data only for now (hooks, start.*, arch).
//! - *accepted and ignored*: every other key of LXC 5's table (apparmor.*, selinux.*,
//!   seccomp.* — ulxc does not load LSM or seccomp policy yet —, namespace.*, proc.*,
//!   rootfs.mount/options/managed, cgroup.dir*, monitor.*, keyring.session, ephemeral,
//!   time.offset.*, sched.core, ...). They are listed in [`ContainerConfig::ignored`] with
//!   their [`Location`]; [`ignored_reason`] says why, for debug logging.
//!
//! `ulxc config upgrade FILE` is [`upgrade_file`] / [`upgrade_text`]; [`render`] writes
//! items back as text.

mod error;
pub mod keys;
mod model;
mod parse;
mod signal;
mod upgrade;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use keys::ignored_reason;
pub use model::{CgroupMount, ContainerConfig, MountAuto, NetConfig, NetType, ProcMount, SysMount};
pub use parse::{parse_raw_str, read_raw};
pub use signal::signal_from_name;
pub use upgrade::{render, upgrade_file, upgrade_text};

pub use crate::idmap::{IdKind, IdMapLine};

/// Where a configuration line is: file and 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file the line was read from (as given or as resolved from an include).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl Location {
    /// A location in `file` at 1-based `line`.
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

/// `path` with the caller's `$HOME` prefix shown as `~`.
pub fn tilde(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME") {
        let home = Path::new(&home);
        if home != Path::new("/") && !home.as_os_str().is_empty() {
            if let Ok(rest) = path.strip_prefix(home) {
                return if rest.as_os_str().is_empty() {
                    "~".to_string()
                } else {
                    format!("~/{}", rest.display())
                };
            }
        }
    }
    path.display().to_string()
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", tilde(&self.file), self.line)
    }
}

/// A value together with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub at: Location,
}

/// One `key = value` line after include expansion and legacy renaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    /// The key in current LXC spelling (e.g. `lxc.net.0.type`).
    pub key: String,
    /// The value, trimmed, trailing ` # comment` removed.
    pub value: String,
    /// Where the line is.
    pub at: Location,
    /// The original legacy key when the line used one (e.g. `lxc.network.type`).
    pub legacy_of: Option<String>,
}

/// All items of a configuration, includes expanded, in the order LXC applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    /// The items in order.
    pub items: Vec<RawItem>,
}

impl RawConfig {
    /// Legacy-key warnings, one line each, in order (the same as [`ContainerConfig::warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(parse::legacy_warning)
            .collect()
    }
}

/// Read `path` (with its includes) and build the typed configuration.
pub fn load(path: &Path) -> Result<ContainerConfig, ConfigError> {
    ContainerConfig::from_raw(&read_raw(path)?)
}

/// The user's default configuration: `$XDG_CONFIG_HOME/lxc/default.conf`, falling back to
/// `~/.config/lxc/default.conf`.
pub fn default_user_config_path() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() && Path::new(&x).is_absolute() => {
            PathBuf::from(x).join("lxc/default.conf")
        }
        _ => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
            home.join(".config/lxc/default.conf")
        }
    }
}
