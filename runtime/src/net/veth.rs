//! The container side of `lxc.net.N.type = veth` for an unprivileged user: the monitor
//! asks the setuid helper `ulxc-user-nic` to create the pair (host end on the bridge,
//! container end inside init's network namespace), within the quota that
//! `/etc/lxc/lxc-usernet` grants. The helper is the only privileged part; this module
//! finds it, checks it is installed setuid root, and turns its answer into a result.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::NetError;

/// Where the helper is looked for, in order, after `$ULXC_USER_NIC`.
pub const HELPER_PATHS: [&str; 2] = [
    "/usr/local/libexec/ulxc/ulxc-user-nic",
    "/usr/libexec/ulxc/ulxc-user-nic",
];

/// The environment variable that names the helper explicitly.
pub const HELPER_ENV: &str = "ULXC_USER_NIC";

/// One veth request, as the helper takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethRequest {
    /// The bridge on the host (`lxc.net.N.link`).
    pub bridge: String,
    /// The container's name, reduced to the characters the helper accepts.
    pub container: String,
    /// The interface name inside the container (`lxc.net.N.name`, default `eth0`).
    pub ifname: String,
    /// `lxc.net.N.mtu`.
    pub mtu: Option<u32>,
    /// `lxc.net.N.hwaddr`, `x` digits still to be filled by the helper.
    pub hwaddr: Option<String>,
}

/// A veth pair the helper made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// The host end (on the bridge).
    pub host: String,
    /// The container end.
    pub inside: String,
}

/// The helper's path: `$ULXC_USER_NIC`, else the first of [`HELPER_PATHS`] that exists,
/// else `ulxc-user-nic` next to the running `ulxc` (installed together, e.g. in
/// /usr/local/bin). It must be owned by root and setuid; anything else is an error that
/// says how to install it.
pub fn find_helper() -> Result<PathBuf, NetError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(HELPER_ENV) {
        Some(p) => vec![PathBuf::from(p)],
        None => HELPER_PATHS
            .iter()
            .map(PathBuf::from)
            .chain(
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.parent().map(|d| d.join("ulxc-user-nic"))),
            )
            .collect(),
    };
    for path in &candidates {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.uid() != 0 || meta.mode() & 0o4000 == 0 {
                return Err(NetError::HelperNotSetuid { path: path.clone() });
            }
            return Ok(path.clone());
        }
    }
    Err(NetError::HelperMissing {
        looked: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Reduces a container name to what the helper accepts (`[A-Za-z0-9][A-Za-z0-9_.-]*`,
/// at most 64 bytes): other characters become `_`; a name starting otherwise gets a `c`.
pub fn helper_container_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'c');
    }
    out.truncate(64);
    out
}

/// The helper's argument list for `req` and init's pid.
pub fn helper_args(pid: i32, req: &VethRequest) -> Vec<String> {
    let mut args = vec![
        "create".to_string(),
        pid.to_string(),
        "veth".to_string(),
        req.bridge.clone(),
        req.container.clone(),
        req.ifname.clone(),
    ];
    if let Some(mtu) = req.mtu {
        args.push("--mtu".into());
        args.push(mtu.to_string());
    }
    if let Some(mac) = &req.hwaddr {
        args.push("--hwaddr".into());
        args.push(mac.clone());
    }
    args
}

/// Parses the helper's answer: one line `HOST INSIDE`.
pub fn parse_answer(stdout: &str) -> Option<VethPair> {
    let mut words = stdout.split_whitespace();
    let host = words.next()?.to_string();
    let inside = words.next()?.to_string();
    words.next().is_none().then_some(VethPair { host, inside })
}

/// Runs the helper at `helper` for init `pid`: the pair exists when this returns.
pub fn create(helper: &Path, pid: i32, req: &VethRequest) -> Result<VethPair, NetError> {
    let out = Command::new(helper)
        .args(helper_args(pid, req))
        .output()
        .map_err(|e| NetError::Helper {
            why: format!("cannot run {}: {e}", helper.display()),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim_start_matches("ulxc-user-nic: "))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(NetError::Helper {
            why: if why.is_empty() {
                format!("{} failed ({})", helper.display(), out.status)
            } else {
                why
            },
        });
    }
    parse_answer(&stdout).ok_or_else(|| NetError::Helper {
        why: format!(
            "{} answered {:?}, not `HOST INSIDE`",
            helper.display(),
            stdout.trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_become_helper_safe() {
        assert_eq!(helper_container_name("web-1.a_b"), "web-1.a_b");
        assert_eq!(helper_container_name("a:b@c"), "a_b_c");
        assert_eq!(helper_container_name("_x"), "c_x");
        assert_eq!(helper_container_name(&"y".repeat(80)).len(), 64);
    }

    #[test]
    fn arguments_follow_the_helper_contract() {
        let req = VethRequest {
            bridge: "lxcbr0".into(),
            container: "stretch".into(),
            ifname: "eth0".into(),
            mtu: Some(1500),
            hwaddr: Some("00:16:3e:xx:xx:xx".into()),
        };
        assert_eq!(
            helper_args(42, &req),
            [
                "create",
                "42",
                "veth",
                "lxcbr0",
                "stretch",
                "eth0",
                "--mtu",
                "1500",
                "--hwaddr",
                "00:16:3e:xx:xx:xx"
            ]
        );
    }

    #[test]
    fn answers_are_two_words() {
        assert_eq!(
            parse_answer("vstretch-1a2b eth0\n"),
            Some(VethPair {
                host: "vstretch-1a2b".into(),
                inside: "eth0".into()
            })
        );
        assert_eq!(parse_answer("one\n"), None);
        assert_eq!(parse_answer("a b c\n"), None);
    }
}
