//! `ulxc checkconfig`: like lxc-checkconfig, but about whether this user on this host can
//! run rootless containers: namespaces (and whether a user namespace can really be
//! created), the sysctls that gate them, the cgroup layout and delegation, subordinate
//! ids, newuidmap/newgidmap, network modules and the kernel version.
//!
//! The readers take a [`Roots`] so that tests point them at a temporary directory; only
//! the user-namespace probe and the cgroup placement look at the live system.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::{self, Placement};
use crate::idmap::SubIdFiles;
use crate::sys;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and usable.
    Ok,
    /// Usable with a limitation, or worth knowing.
    Warn,
    /// Absent or unusable.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Section: `Namespaces`, `Control groups` or `Misc`.
    pub group: String,
    /// What was checked, e.g. `User namespace`.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// Whether rootless containers cannot start without it.
    pub needed: bool,
    /// What to do when it is not `Ok`.
    pub fix: Option<String>,
}

/// All checks, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

/// The versioned JSON form of a report.
#[derive(Serialize)]
struct ReportJson<'a> {
    version: u32,
    checks: &'a [Check],
}

impl Report {
    /// `false` when a needed check is missing (the CLI then exits non-zero).
    pub fn ok(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| c.needed && c.status == Status::Missing)
    }

    /// The report as text grouped like lxc-checkconfig; with `color`, the status words are
    /// green (enabled), yellow (warning) or red (missing).
    pub fn render_text(&self, color: bool) -> String {
        let paint = |status: Status| -> String {
            let (word, code) = match status {
                Status::Ok => ("enabled", "32"),
                Status::Warn => ("warning", "33"),
                Status::Missing => ("missing", "31"),
            };
            if color {
                format!("\x1b[1;{code}m{word}\x1b[0m")
            } else {
                word.to_string()
            }
        };
        let mut out = String::new();
        let mut groups: Vec<&str> = Vec::new();
        for c in &self.checks {
            if !groups.contains(&c.group.as_str()) {
                groups.push(&c.group);
            }
        }
        for group in groups {
            let _ = writeln!(out, "--- {group} ---");
            for c in self.checks.iter().filter(|c| c.group == group) {
                let _ = write!(out, "{}: {}", c.name, paint(c.status));
                if !c.detail.is_empty() {
                    let _ = write!(out, " ({})", c.detail);
                }
                if c.status == Status::Missing && !c.needed {
                    out.push_str(" [optional]");
                }
                out.push('\n');
                if let (Some(fix), false) = (&c.fix, c.status == Status::Ok) {
                    let _ = writeln!(out, "    fix: {fix}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// The report as `{"version":1,"checks":[...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(ReportJson {
            version: 1,
            checks: &self.checks,
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

/// Where the checks read from; `/` for the live system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The proc file system, normally `/proc`.
    pub proc: PathBuf,
    /// sysfs, normally `/sys`.
    pub sys: PathBuf,
    /// `/etc` (subuid, subgid).
    pub etc: PathBuf,
    /// `/lib/modules`.
    pub modules: PathBuf,
    /// `/boot` (kernel configs).
    pub boot: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: "/proc".into(),
            sys: "/sys".into(),
            etc: "/etc".into(),
            modules: "/lib/modules".into(),
            boot: "/boot".into(),
        }
    }
}

fn check(
    group: &str,
    name: &str,
    status: Status,
    detail: impl Into<String>,
    needed: bool,
    fix: Option<String>,
) -> Check {
    Check {
        group: group.into(),
        name: name.into(),
        status,
        detail: detail.into(),
        needed,
        fix,
    }
}

const NS: &str = "Namespaces";
const CG: &str = "Control groups";
const MISC: &str = "Misc";

/// Runs every check against the live system for the calling user.
pub fn run_checks() -> Report {
    let roots = Roots::default();
    let uid = cgroup::effective_uid();
    let user = user_name(&roots, uid)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string());
    let mut checks = namespace_checks(&roots);
    checks.push(userns_probe_check(probe_user_namespace()));
    checks.extend(sysctl_checks(&roots));
    checks.extend(cgroup_checks());
    checks.extend(subid_checks(&roots, &user, uid));
    for (tool, cap_bit, cap) in [
        ("newuidmap", 7, "cap_setuid"),
        ("newgidmap", 6, "cap_setgid"),
    ] {
        checks.push(map_tool_check(
            tool,
            cgroup_find_in_path(tool).as_deref(),
            cap_bit,
            cap,
        ));
    }
    let release = kernel_release(&roots);
    for (module, config) in [
        ("veth", "CONFIG_VETH"),
        ("bridge", "CONFIG_BRIDGE"),
        ("nf_nat", "CONFIG_NF_NAT"),
    ] {
        checks.push(module_check(&roots, release.as_deref(), module, config));
    }
    checks.push(kernel_check(release.as_deref()));
    Report { checks }
}

fn cgroup_find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// One check per namespace type, from `PROC/self/ns/*`.
pub fn namespace_checks(roots: &Roots) -> Vec<Check> {
    [
        ("user", "User namespace", true),
        ("mnt", "Mount namespace", true),
        ("pid", "PID namespace", true),
        ("uts", "Utsname namespace", true),
        ("ipc", "Ipc namespace", true),
        ("net", "Network namespace", true),
        ("cgroup", "Cgroup namespace", false),
    ]
    .into_iter()
    .map(|(kind, name, needed)| {
        let path = roots.proc.join("self/ns").join(kind);
        if fs::symlink_metadata(&path).is_ok() {
            check(NS, name, Status::Ok, "", needed, None)
        } else {
            let fix = format!(
                "use a kernel built with the {kind} namespace (CONFIG_{}_NS)",
                kind.to_uppercase()
            );
            check(
                NS,
                name,
                Status::Missing,
                format!("{} is absent", path.display()),
                needed,
                Some(fix),
            )
        }
    })
    .collect()
}

/// Creates a user namespace in a child that exits at once (through the `sys` process
/// wrappers), and reports whether the kernel allowed it.
pub fn probe_user_namespace() -> Result<(), sys::Errno> {
    use sys::process::{clone_process, exit_now, wait_exit_code, CloneFlags, Cloned};
    match clone_process(CloneFlags::NEWUSER, None)? {
        Cloned::Child => exit_now(0),
        Cloned::Parent { pid, pidfd } => {
            let code = wait_exit_code(pid);
            drop(pidfd);
            match code {
                Ok(0) => Ok(()),
                _ => Err(sys::Errno::ECHILD),
            }
        }
    }
}

/// The name of the user with uid `uid` in `ETC/passwd`.
pub fn user_name(roots: &Roots, uid: u32) -> Option<String> {
    let text = fs::read_to_string(roots.etc.join("passwd")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// The check for the result of actually creating a user namespace.
pub fn userns_probe_check(result: Result<(), sys::Errno>) -> Check {
    match result {
        Ok(()) => check(NS, "User namespace creation", Status::Ok, "a test child created one", true, None),
        Err(e) => check(
            NS,
            "User namespace creation",
            Status::Missing,
            format!("creating one failed: {e}"),
            true,
            Some("check the sysctls below (kernel.unprivileged_userns_clone, user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns) and any seccomp filter of this session".into()),
        ),
    }
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The sysctls that gate unprivileged user namespaces; the distribution-specific ones
/// only where the kernel has them.
pub fn sysctl_checks(roots: &Roots) -> Vec<Check> {
    let mut out = Vec::new();
    let max = read_trim(&roots.proc.join("sys/user/max_user_namespaces"));
    out.push(match max.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => check(
            NS,
            "user.max_user_namespaces",
            Status::Ok,
            n.to_string(),
            true,
            None,
        ),
        Some(Ok(_)) => check(
            NS,
            "user.max_user_namespaces",
            Status::Missing,
            "0: user namespaces are disabled",
            true,
            Some("sysctl -w user.max_user_namespaces=15000".into()),
        ),
        _ => check(
            NS,
            "user.max_user_namespaces",
            Status::Missing,
            "cannot be read",
            true,
            Some("use a kernel with CONFIG_USER_NS".into()),
        ),
    });
    if let Some(v) = read_trim(&roots.proc.join("sys/kernel/unprivileged_userns_clone")) {
        out.push(if v == "0" {
            check(NS, "kernel.unprivileged_userns_clone", Status::Missing, "0: only root may create user namespaces", true, Some("sysctl -w kernel.unprivileged_userns_clone=1 (and persist it in /etc/sysctl.d/)".into()))
        } else {
            check(NS, "kernel.unprivileged_userns_clone", Status::Ok, v, true, None)
        });
    }
    if let Some(v) = read_trim(
        &roots
            .proc
            .join("sys/kernel/apparmor_restrict_unprivileged_userns"),
    ) {
        out.push(if v == "0" {
            check(NS, "kernel.apparmor_restrict_unprivileged_userns", Status::Ok, v, true, None)
        } else {
            check(NS, "kernel.apparmor_restrict_unprivileged_userns", Status::Missing, format!("{v}: AppArmor denies capabilities in unprivileged user namespaces"), true, Some("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give ulxc an AppArmor profile with `userns,`".into()))
        });
    }
    out
}

/// The cgroup layout and whether a delegated cgroup can be had (live system).
pub fn cgroup_checks() -> Vec<Check> {
    let mut out = Vec::new();
    match cgroup::detect_layout() {
        Ok(layout) => {
            let mut detail = layout.kind().to_string();
            if let Some(m) = layout.unified_mount() {
                let _ = write!(detail, ", cgroup2 at {}", m.display());
            }
            if !layout.v1().is_empty() {
                let v1: Vec<&str> = layout.v1().iter().map(|(c, _)| c.as_str()).collect();
                let _ = write!(detail, ", v1: {}", v1.join(" "));
            }
            let status = if layout.unified_mount().is_some() {
                Status::Ok
            } else {
                Status::Missing
            };
            let fix = (status != Status::Ok)
                .then(|| "boot with systemd.unified_cgroup_hierarchy=1".to_string());
            out.push(check(CG, "Cgroup layout", status, detail, false, fix));
        }
        Err(e) => out.push(check(
            CG,
            "Cgroup layout",
            Status::Missing,
            e.to_string(),
            false,
            Some("mount cgroup2 at /sys/fs/cgroup".into()),
        )),
    }
    out.push(match cgroup::plan("checkconfig") {
        Ok(Placement::Delegated { parent }) => check(
            CG,
            "Delegated cgroup",
            Status::Ok,
            format!("containers go under {}", parent.display()),
            false,
            None,
        ),
        Ok(Placement::ViaSystemd { .. }) => check(
            CG,
            "Delegated cgroup",
            Status::Ok,
            "through a systemd-run --user scope with Delegate=yes",
            false,
            None,
        ),
        Ok(Placement::None { reason }) => check(
            CG,
            "Delegated cgroup",
            Status::Warn,
            "containers start without a cgroup (no limits, no accounting)",
            false,
            Some(reason),
        ),
        Err(e) => check(
            CG,
            "Delegated cgroup",
            Status::Warn,
            e.to_string(),
            false,
            None,
        ),
    });
    out
}

/// The user's subordinate uid and gid ranges.
pub fn subid_checks(roots: &Roots, user: &str, uid: u32) -> Vec<Check> {
    let files = SubIdFiles {
        uid_path: roots.etc.join("subuid"),
        gid_path: roots.etc.join("subgid"),
    };
    let mut out = Vec::new();
    for (word, opt, ranges) in [
        ("subuid", "--add-subuids", files.subuid_ranges(user, uid)),
        ("subgid", "--add-subgids", files.subgid_ranges(user, uid)),
    ] {
        let name = format!("{word} entries for {user}");
        let fix = Some(format!(
            "usermod {opt} 100000-165535 {user} (as root; pick a range no other user has)"
        ));
        out.push(match ranges {
            Ok(r) if r.is_empty() => check(
                MISC,
                &name,
                Status::Missing,
                format!("none in {}", roots.etc.join(word).display()),
                true,
                fix,
            ),
            Ok(r) => {
                let total: u64 = r.iter().map(|x| u64::from(x.count)).sum();
                let list = r
                    .iter()
                    .map(|x| x.file_form())
                    .collect::<Vec<_>>()
                    .join(", ");
                if total < 65536 {
                    check(
                        MISC,
                        &name,
                        Status::Warn,
                        format!(
                            "{list}: {total} ids, fewer than the 65536 a full distribution uses"
                        ),
                        true,
                        fix,
                    )
                } else {
                    check(MISC, &name, Status::Ok, list, true, None)
                }
            }
            Err(e) => check(MISC, &name, Status::Missing, e.to_string(), true, fix),
        });
    }
    out
}

/// Whether the `security.capability` xattr value `raw` grants capability `bit`
/// (permitted set, first 32 bits; vfs_cap_data v2/v3 layout).
pub fn file_caps_grant(raw: &[u8], bit: u32) -> bool {
    let Some(word) = raw.get(4..8) else {
        return false;
    };
    let permitted = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    bit < 32 && permitted & (1 << bit) != 0
}

/// newuidmap/newgidmap: present, and setuid root or with the file capability.
pub fn map_tool_check(tool: &str, path: Option<&Path>, cap_bit: u32, cap: &str) -> Check {
    let fix = Some("apt install uidmap (Debian/Ubuntu) or shadow-utils".to_string());
    let Some(path) = path else {
        return check(MISC, tool, Status::Missing, "not found in PATH", true, fix);
    };
    let Ok(meta) = fs::metadata(path) else {
        return check(
            MISC,
            tool,
            Status::Missing,
            format!("{} cannot be read", path.display()),
            true,
            fix,
        );
    };
    if meta.uid() == 0 && meta.mode() & 0o4000 != 0 {
        return check(
            MISC,
            tool,
            Status::Ok,
            format!("{} is setuid root", path.display()),
            true,
            None,
        );
    }
    if let Ok(Some(raw)) = xattr::get(path, "security.capability") {
        if file_caps_grant(&raw, cap_bit) {
            return check(
                MISC,
                tool,
                Status::Ok,
                format!("{} has {cap}", path.display()),
                true,
                None,
            );
        }
    }
    check(
        MISC,
        tool,
        Status::Missing,
        format!("{} is neither setuid root nor has {cap}", path.display()),
        true,
        Some(format!(
            "chmod u+s {} (as root), or setcap {cap}+ep {}",
            path.display(),
            path.display()
        )),
    )
}

/// The running kernel's release (`PROC/sys/kernel/osrelease`).
pub fn kernel_release(roots: &Roots) -> Option<String> {
    read_trim(&roots.proc.join("sys/kernel/osrelease"))
}

fn kernel_config_has(roots: &Roots, release: Option<&str>, config: &str) -> Option<bool> {
    let mut text = String::new();
    let gz = roots.proc.join("config.gz");
    if let Ok(f) = fs::File::open(&gz) {
        let _ = flate2::read::GzDecoder::new(f).read_to_string(&mut text);
    }
    if text.is_empty() {
        text = fs::read_to_string(roots.boot.join(format!("config-{}", release?))).ok()?;
    }
    let y = format!("{config}=y");
    let m = format!("{config}=m");
    Some(text.lines().any(|l| l.trim() == y || l.trim() == m))
}

/// Whether a kernel module is loaded, built in, installed, or configured.
pub fn module_check(roots: &Roots, release: Option<&str>, module: &str, config: &str) -> Check {
    let name = format!("{module} support");
    let ok = |detail: &str| check(MISC, &name, Status::Ok, detail, false, None);
    if roots.sys.join("module").join(module).exists() {
        return ok("loaded or built in");
    }
    if read_trim(&roots.proc.join("modules")).is_some_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some(module))
    }) {
        return ok("loaded");
    }
    if let Some(rel) = release {
        let dir = roots.modules.join(rel);
        let file = format!("/{module}.ko");
        if read_trim(&dir.join("modules.builtin"))
            .is_some_and(|t| t.lines().any(|l| l.ends_with(&file)))
        {
            return ok("built in");
        }
        if read_trim(&dir.join("modules.dep")).is_some_and(|t| {
            t.lines()
                .any(|l| l.split(':').next().is_some_and(|p| p.contains(&file)))
        }) {
            return ok("available as a module");
        }
    }
    match kernel_config_has(roots, release, config) {
        Some(true) => ok(&format!("{config} in the kernel config")),
        Some(false) => check(
            MISC,
            &name,
            Status::Missing,
            format!("{config} is not set in the kernel config"),
            false,
            Some(format!(
                "use a kernel with {config}; needed for veth networking on a bridge with NAT"
            )),
        ),
        None => check(
            MISC,
            &name,
            Status::Warn,
            "not loaded, and no module list or kernel config to tell",
            false,
            Some(format!("modprobe {module} (as root)")),
        ),
    }
}

/// The kernel version line.
pub fn kernel_check(release: Option<&str>) -> Check {
    match release {
        Some(r) => check(MISC, "Kernel version", Status::Ok, r, false, None),
        None => check(MISC, "Kernel version", Status::Warn, "unknown", false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(tmp: &Path) -> Roots {
        let r = Roots {
            proc: tmp.join("proc"),
            sys: tmp.join("sys"),
            etc: tmp.join("etc"),
            modules: tmp.join("modules"),
            boot: tmp.join("boot"),
        };
        for d in [&r.proc, &r.sys, &r.etc, &r.modules, &r.boot] {
            fs::create_dir_all(d).unwrap();
        }
        r
    }

    fn put(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn namespaces_present_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        for ns in ["user", "mnt", "pid", "uts", "ipc", "net"] {
            put(&r.proc.join("self/ns").join(ns), "");
        }
        let checks = namespace_checks(&r);
        assert_eq!(checks.len(), 7);
        assert!(checks[..6].iter().all(|c| c.status == Status::Ok));
        assert_eq!(checks[6].status, Status::Missing);
        assert!(!checks[6].needed);
        assert!(Report { checks }.ok());
    }

    #[test]
    fn sysctls_only_where_present() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        put(&r.proc.join("sys/user/max_user_namespaces"), "15000\n");
        let c = sysctl_checks(&r);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Ok);
        put(&r.proc.join("sys/kernel/unprivileged_userns_clone"), "0\n");
        put(
            &r.proc
                .join("sys/kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        );
        put(&r.proc.join("sys/user/max_user_namespaces"), "0\n");
        let c = sysctl_checks(&r);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.status == Status::Missing));
        assert_eq!(
            c[1].fix
                .as_deref()
                .unwrap()
                .split(' ')
                .take(3)
                .collect::<Vec<_>>(),
            ["sysctl", "-w", "kernel.unprivileged_userns_clone=1"]
        );
        assert!(!Report { checks: c }.ok());
    }

    #[test]
    fn userns_probe_result() {
        assert_eq!(userns_probe_check(Ok(())).status, Status::Ok);
        let c = userns_probe_check(Err(sys::Errno::EPERM));
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("EPERM"), "{}", c.detail);
    }

    #[test]
    fn passwd_names() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        put(
            &r.etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        );
        assert_eq!(user_name(&r, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(&r, 0).as_deref(), Some("root"));
        assert_eq!(user_name(&r, 5), None);
    }

    #[test]
    fn userns_probe_runs() {
        // Where the sysctls allow unprivileged user namespaces (as on this project's
        // test hosts), the probe must succeed; either way its line follows its answer.
        let live = Roots::default();
        let allowed = sysctl_checks(&live).iter().all(|c| c.status == Status::Ok);
        let result = probe_user_namespace();
        if allowed {
            assert_eq!(result, Ok(()));
        }
        assert_eq!(
            userns_probe_check(result).status == Status::Ok,
            result.is_ok()
        );
    }

    #[test]
    fn subids() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        put(
            &r.etc.join("subuid"),
            "other:100000:65536\nalice:165536:65536\n",
        );
        put(&r.etc.join("subgid"), "alice:165536:1000\n");
        let c = subid_checks(&r, "alice", 1000);
        assert_eq!(c[0].status, Status::Ok);
        assert_eq!(c[0].detail, "165536:65536");
        assert_eq!(c[1].status, Status::Warn);
        let c = subid_checks(&r, "bob", 1001);
        assert!(c.iter().all(|c| c.status == Status::Missing && c.needed));
        assert!(c[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("usermod --add-subuids 100000-165535 bob"));
    }

    #[test]
    fn map_tools() {
        let tmp = tempfile::tempdir().unwrap();
        let tool = tmp.path().join("newuidmap");
        put(&tool, "");
        assert_eq!(
            map_tool_check("newuidmap", None, 7, "cap_setuid").status,
            Status::Missing
        );
        let c = map_tool_check("newuidmap", Some(&tool), 7, "cap_setuid");
        assert_eq!(c.status, Status::Missing);
        assert!(c.fix.unwrap().contains("setcap cap_setuid+ep"));
        if cgroup::effective_uid() == 0 {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
            assert_eq!(
                map_tool_check("newuidmap", Some(&tool), 7, "cap_setuid").status,
                Status::Ok
            );
        }
        let mut raw = vec![0u8; 20];
        raw[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
        raw[4..8].copy_from_slice(&(1u32 << 7).to_le_bytes());
        assert!(file_caps_grant(&raw, 7));
        assert!(!file_caps_grant(&raw, 6));
        assert!(!file_caps_grant(&raw[..3], 7));
    }

    #[test]
    fn modules_from_each_source() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        let rel = Some("6.1.0-test");
        assert_eq!(
            module_check(&r, rel, "veth", "CONFIG_VETH").status,
            Status::Warn
        );
        put(
            &r.boot.join("config-6.1.0-test"),
            "CONFIG_VETH=m\n# CONFIG_BRIDGE is not set\n",
        );
        assert_eq!(
            module_check(&r, rel, "veth", "CONFIG_VETH").status,
            Status::Ok
        );
        assert_eq!(
            module_check(&r, rel, "bridge", "CONFIG_BRIDGE").status,
            Status::Missing
        );
        put(
            &r.modules.join("6.1.0-test/modules.dep"),
            "kernel/net/bridge/bridge.ko.xz: kernel/net/llc/llc.ko.xz\n",
        );
        assert_eq!(
            module_check(&r, rel, "bridge", "CONFIG_BRIDGE").detail,
            "available as a module"
        );
        put(
            &r.modules.join("6.1.0-test/modules.builtin"),
            "kernel/net/netfilter/nf_nat.ko\n",
        );
        assert_eq!(
            module_check(&r, rel, "nf_nat", "CONFIG_NF_NAT").detail,
            "built in"
        );
        put(&r.proc.join("modules"), "veth 40960 0 - Live 0x0\n");
        assert_eq!(
            module_check(&r, rel, "veth", "CONFIG_VETH").detail,
            "loaded"
        );
        fs::create_dir_all(r.sys.join("module/bridge")).unwrap();
        assert_eq!(
            module_check(&r, rel, "bridge", "CONFIG_BRIDGE").detail,
            "loaded or built in"
        );
    }

    #[test]
    fn kernel_version() {
        let tmp = tempfile::tempdir().unwrap();
        let r = roots(tmp.path());
        put(&r.proc.join("sys/kernel/osrelease"), "6.1.0-28-amd64\n");
        assert_eq!(kernel_release(&r).as_deref(), Some("6.1.0-28-amd64"));
        assert_eq!(
            kernel_check(kernel_release(&r).as_deref()).detail,
            "6.1.0-28-amd64"
        );
    }

    #[test]
    fn render_and_json() {
        let report = Report {
            checks: vec![
                check(NS, "User namespace", Status::Ok, "", true, None),
                check(
                    CG,
                    "Delegated cgroup",
                    Status::Warn,
                    "none",
                    false,
                    Some("ask root".into()),
                ),
                check(
                    MISC,
                    "veth support",
                    Status::Missing,
                    "x",
                    false,
                    Some("y".into()),
                ),
            ],
        };
        let text = report.render_text(false);
        assert!(
            text.starts_with("--- Namespaces ---\nUser namespace: enabled\n"),
            "{text}"
        );
        assert!(
            text.contains("Delegated cgroup: warning (none)\n    fix: ask root\n"),
            "{text}"
        );
        assert!(
            text.contains("veth support: missing (x) [optional]"),
            "{text}"
        );
        assert!(report
            .render_text(true)
            .contains("\x1b[1;32menabled\x1b[0m"));
        let json = report.to_json();
        assert_eq!(json["version"], 1);
        assert_eq!(json["checks"][1]["status"], "warn");
        assert_eq!(json["checks"][2]["fix"], "y");
        assert!(report.ok());
    }
}
