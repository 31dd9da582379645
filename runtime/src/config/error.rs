//! Errors of the configuration module; every error about a line carries its [`Location`].

use std::path::PathBuf;

use super::Location;
use crate::idmap::IdMapLineError;

/// What went wrong reading, checking or upgrading an LXC configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written (upgrade).
    #[error("cannot write config file {path}: {source}; check that its directory is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is neither blank, a comment, nor `key = value`.
    #[error("{at}: `{line}` is not a `key = value` line; write `lxc.KEY = VALUE` or start the line with #")]
    Syntax {
        /// Where.
        at: Location,
        /// The offending line.
        line: String,
    },
    /// The key is not one LXC knows.
    #[error("{at}: unknown key {key}{}", match suggestion { Some(s) => format!("; did you mean {s}?"), None => "; see man lxc.container.conf for the keys".to_string() })]
    UnknownKey {
        /// Where.
        at: Location,
        /// The key as written.
        key: String,
        /// The nearest known key, when one is close.
        suggestion: Option<String>,
    },
    /// `lxc.include` names a path that does not exist or cannot be read.
    #[error("{at}: included file {} cannot be read: {source}; fix the lxc.include path or remove the line", path.display())]
    Include {
        /// Where the include line is.
        at: Location,
        /// The path it names (resolved).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Includes form a cycle.
    #[error("{at}: include cycle: {chain}; remove one of these lxc.include lines")]
    IncludeCycle {
        /// Where the include that closes the cycle is.
        at: Location,
        /// The files of the cycle, `a -> b -> a`.
        chain: String,
    },
    /// A value does not match its key's grammar.
    #[error("{at}: bad value `{value}` for {key}: expected {expected}")]
    BadValue {
        /// Where.
        at: Location,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What the key accepts.
        expected: String,
    },
    /// An `lxc.idmap` line does not parse.
    #[error("{at}: {source}")]
    IdMap {
        /// Where.
        at: Location,
        /// The id map error.
        source: IdMapLineError,
    },
    /// `lxc.rootfs.path` uses a storage backend ulxc does not support.
    #[error("{at}: rootfs backend `{backend}` in lxc.rootfs.path is not supported; ulxc uses plain directories (`dir:/path` or `/path`)")]
    RootfsBackend {
        /// Where.
        at: Location,
        /// The backend prefix (`btrfs`, `zfs`, ...).
        backend: String,
    },
    /// A legacy `lxc.network.*` key came before any `lxc.network.type`.
    #[error("{at}: legacy key {key} comes before any lxc.network.type; put lxc.network.type first (or use lxc.net.N.* keys)")]
    LegacyNetworkWithoutType {
        /// Where.
        at: Location,
        /// The key.
        key: String,
    },
    /// A network interface has keys but no `type`.
    #[error("{at}: network interface lxc.net.{index} has no lxc.net.{index}.type; add one (veth, empty, none, usermode, pasta, slirp4netns, macvlan, ipvlan, vlan, phys)")]
    NetWithoutType {
        /// Where the interface's first key is.
        at: Location,
        /// The interface index.
        index: u32,
    },
}
