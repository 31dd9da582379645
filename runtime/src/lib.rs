//! ulxc: rootless, LXC-compatible system containers.
//!
//! The library holds all of the logic; the binaries in `src/bin/` parse arguments,
//! dispatch and map errors to exit codes. See ARCHITECTURE.md for who may call whom.
//! Every raw syscall and every `unsafe` block lives in [`sys`].

pub mod attach;
pub mod cgroup;
pub mod checkconfig;
pub mod config;
pub mod container;
pub mod idmap;
pub mod image;
pub mod monitor;
pub mod net;
pub mod sys;
pub mod userns;
