//! Finding the workspace's freshly built ulxc binaries on the host and installing them into
//! a guest before a scenario's steps, so that a code change needs no image rebuild.
//!
//! Guest layout: `/usr/local/bin/ulxc`; the `lxc-*` names as links to it in
//! [`GUEST_LXC_BIN_DIR`] (not on `PATH`: Debian's real `lxc-*` live in `/usr/bin`);
//! `/usr/local/bin/ulxc-user-nic` setuid root and `/usr/local/bin/ulxc-net` when built.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::scenario::{workspace_root, GUEST_LXC_BIN_DIR, GUEST_ULXC};
use crate::vm::Vm;

/// Environment variable naming the host directory holding `ulxc` (and friends).
pub const ULXC_BIN_DIR_ENV: &str = "ULXC_BIN_DIR";

/// The names under which ulxc answers as LXC (links in [`GUEST_LXC_BIN_DIR`]).
pub const LXC_NAMES: &[&str] = &[
    "lxc-create",
    "lxc-start",
    "lxc-ls",
    "lxc-attach",
    "lxc-stop",
    "lxc-destroy",
    "lxc-execute",
    "lxc-wait",
    "lxc-info",
    "lxc-checkconfig",
    "lxc-usernsexec",
];

/// Guest path of the setuid network helper.
pub const GUEST_USER_NIC: &str = "/usr/local/bin/ulxc-user-nic";
/// Guest path of the host-network tool.
pub const GUEST_NET: &str = "/usr/local/bin/ulxc-net";

/// Why the binaries could not be found or installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// No `ulxc` binary was found on the host.
    #[error("no ulxc binary found (looked in {looked}); build it with `cargo build -p ulxc` or set {ULXC_BIN_DIR_ENV}")]
    NotFound {
        /// Directories searched.
        looked: String,
    },
    /// Copying or linking in the guest failed.
    #[error("installing {what} into vm {vm} failed: {detail}")]
    Guest {
        /// VM name.
        vm: String,
        /// What was being installed.
        what: String,
        /// The error or the command's stderr.
        detail: String,
    },
}

/// The host binaries to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlxcBinaries {
    /// Directory they were found in.
    pub dir: PathBuf,
    /// `ulxc`.
    pub ulxc: PathBuf,
    /// `ulxc-user-nic`, if built.
    pub user_nic: Option<PathBuf>,
    /// `ulxc-net`, if built.
    pub net: Option<PathBuf>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
}

/// Finds the binaries: `$ULXC_BIN_DIR`, else the newer `ulxc` of `<target>/debug` and
/// `<target>/release` (`<target>` = `$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn find_binaries() -> Result<UlxcBinaries, InstallError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(ULXC_BIN_DIR_ENV) {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            vec![target.join("debug"), target.join("release")]
        }
    };
    let best = candidates
        .iter()
        .filter_map(|d| mtime(&d.join("ulxc")).map(|t| (t, d)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, d)| d.clone());
    let Some(dir) = best else {
        return Err(InstallError::NotFound {
            looked: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let opt = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    Ok(UlxcBinaries {
        ulxc: dir.join("ulxc"),
        user_nic: opt("ulxc-user-nic"),
        net: opt("ulxc-net"),
        dir,
    })
}

/// The shell script, run as root in the guest after the uploads, that makes the links and
/// sets the helper's owner and mode.
pub fn link_script(bins: &UlxcBinaries) -> String {
    let mut s = format!("set -e\nmkdir -p {GUEST_LXC_BIN_DIR}\n");
    for n in LXC_NAMES {
        s.push_str(&format!("ln -sfn {GUEST_ULXC} {GUEST_LXC_BIN_DIR}/{n}\n"));
    }
    if bins.user_nic.is_some() {
        s.push_str(&format!(
            "chown root:root {GUEST_USER_NIC}\nchmod 4755 {GUEST_USER_NIC}\n"
        ));
    }
    s
}

/// Copies the binaries into `vm` as root and makes the links.
pub async fn install(vm: &Vm, bins: &UlxcBinaries, timeout: Duration) -> Result<(), InstallError> {
    let guest_err = |what: &str, detail: String| InstallError::Guest {
        vm: vm.name().to_owned(),
        what: what.to_owned(),
        detail,
    };
    let mut uploads = vec![(bins.ulxc.as_path(), GUEST_ULXC, 0o755)];
    if let Some(p) = &bins.user_nic {
        uploads.push((p.as_path(), GUEST_USER_NIC, 0o4755));
    }
    if let Some(p) = &bins.net {
        uploads.push((p.as_path(), GUEST_NET, 0o755));
    }
    for (local, remote, mode) in uploads {
        vm.upload("root", local, remote, mode)
            .await
            .map_err(|e| guest_err(remote, e.to_string()))?;
    }
    let out = vm
        .exec("root", &link_script(bins), timeout)
        .await
        .map_err(|e| guest_err("lxc-* links", e.to_string()))?;
    if out.status != 0 {
        return Err(guest_err(
            "lxc-* links",
            format!(
                "exit status {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_links_every_name_outside_path() {
        let bins = UlxcBinaries {
            dir: "/x".into(),
            ulxc: "/x/ulxc".into(),
            user_nic: Some("/x/ulxc-user-nic".into()),
            net: None,
        };
        let s = link_script(&bins);
        for n in LXC_NAMES {
            assert!(
                s.contains(&format!(
                    "ln -sfn /usr/local/bin/ulxc /usr/local/lib/ulxc/lxc-bin/{n}\n"
                )),
                "{s}"
            );
        }
        assert!(!s.contains("/usr/local/bin/lxc-"), "{s}");
        assert!(s.contains("chmod 4755 /usr/local/bin/ulxc-user-nic"), "{s}");
        let without = link_script(&UlxcBinaries {
            user_nic: None,
            ..bins
        });
        assert!(!without.contains("4755"));
    }
}
