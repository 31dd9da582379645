//! Id mapping: the `lxc.idmap` line type, subordinate id files, validation of a
//! container's map against what the user is allowed, and newuidmap/newgidmap.
//!
//! - [`line`]: `IdMapLine` (`u|g|b NSID HOSTID COUNT`), used by the config parser;
//! - [`subid`]: `/etc/subuid` and `/etc/subgid` ([`SubIdFiles`], [`SubIdRange`]);
//! - [`map`]: the map of one namespace ([`IdMap`]), lookups, the default map, the caller's id;
//! - [`check`]: [`check_allowed`] before start, [`describe_for_cli`] for `ulxc subid`;
//! - [`write`]: [`write_maps`] through the setuid helpers.

pub mod check;
pub mod line;
pub mod map;
pub mod subid;
pub mod write;

use std::path::PathBuf;

pub use check::{check_allowed, describe_for_cli};
pub use line::{IdKind, IdMapLine, IdMapLineError};
pub use map::{IdMap, IdRange, DEFAULT_MAP_SIZE};
pub use subid::{subgid_ranges, subuid_ranges, SubIdFiles, SubIdKind, SubIdRange};
pub use write::{write_maps, MapTools};

/// What went wrong reading subordinate ids, checking or writing an id map.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// A subordinate id file exists but could not be read.
    #[error("cannot read {path}; check that it is readable by everyone (mode 0644)")]
    ReadSubIds {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A line of the user in a subordinate id file is malformed.
    #[error(
        "malformed line `{text}` at {location}: {why}; expected `NAME:START:COUNT`, \
         e.g. `alice:100000:65536` (ask your administrator to fix it, e.g. with usermod)"
    )]
    SubIdLine {
        /// `file:line`.
        location: String,
        /// The line.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// Two map lines cover the same ids.
    #[error(
        "id maps `{first}` and `{second}` overlap in {side} {kind}s {low}-{high}; \
         each {kind} may be mapped once: make the ranges disjoint"
    )]
    Overlap {
        /// The first line (with its location).
        first: String,
        /// The second line (with its location).
        second: String,
        /// `container` or `host`.
        side: &'static str,
        /// `uid` or `gid`.
        kind: &'static str,
        /// First id in both.
        low: u32,
        /// Last id in both.
        high: u32,
    },
    /// The user has no subordinate range of this kind at all.
    #[error(
        "you have no {kind} range, which {needed_by} needs; ask your administrator: {usermod}"
    )]
    NoSubIds {
        /// Uids or gids.
        kind: SubIdKind,
        /// What needed the range, e.g. `lxc.idmap u 0 100000 65536 (file:3)`.
        needed_by: String,
        /// The usermod command that would grant it.
        usermod: String,
    },
    /// A map line uses host ids that the user does not own.
    #[error(
        "lxc.idmap {line} ({location}) is outside your {kind} ranges ({owned}); use {suggestion} \
         or ask your administrator: {usermod}"
    )]
    OutsideSubIds {
        /// The line.
        line: IdMapLine,
        /// Where it was written, `file:line`.
        location: String,
        /// Uids or gids.
        kind: SubIdKind,
        /// The user's ranges, `file:line: FIRST-LAST, ...`.
        owned: String,
        /// A line that would be allowed.
        suggestion: String,
        /// The usermod command that would allow the line as written.
        usermod: String,
    },
    /// Container uid or gid 0 is not mapped.
    #[error(
        "no lxc.idmap line maps container {} 0; an unprivileged container needs a root: \
         add {suggestion}", kind_id(*.kind)
    )]
    NoRoot {
        /// Uids or gids.
        kind: SubIdKind,
        /// A line that would map it.
        suggestion: String,
    },
    /// An id map with no uid or no gid range cannot be written.
    #[error("the id map has no {which} range; a container needs both uid and gid ranges")]
    EmptyMap {
        /// `uid` or `gid`.
        which: &'static str,
    },
    /// newuidmap or newgidmap is not installed.
    #[error("{tool} was not found in PATH, /usr/bin or /bin; install the uidmap package (apt install uidmap)")]
    ToolMissing {
        /// The program name.
        tool: &'static str,
    },
    /// newuidmap or newgidmap could not be started.
    #[error("cannot run `{command}`; check that the uidmap package is installed and intact")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// newuidmap or newgidmap exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

fn kind_id(kind: SubIdKind) -> &'static str {
    match kind {
        SubIdKind::Uid => "uid",
        SubIdKind::Gid => "gid",
    }
}
