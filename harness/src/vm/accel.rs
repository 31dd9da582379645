//! Accelerator choice: KVM only where it can really run a standard guest, TCG otherwise.
//!
//! The decision is made from host facts (is `/dev/kvm` usable, is a hardware KVM module —
//! `kvm_intel` or `kvm_amd` — loaded, does the CPU advertise `vmx`/`svm`). A `/dev/kvm` backed
//! only by a paravirtual module (such as `kvm_pvm`) hangs or crashes a stock Debian kernel, so
//! it counts as "no KVM". The decision is cached in memory for the process and on disk in the
//! harness cache directory, keyed by kernel release and CPU flags, so a host decides once.
//! `ULXC_HARNESS_ACCEL=kvm|tcg` overrides everything.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Environment variable that forces the accelerator (`kvm` or `tcg`).
pub const ACCEL_ENV: &str = "ULXC_HARNESS_ACCEL";

/// The QEMU accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulator (multi-threaded TCG).
    Tcg,
}

impl Accel {
    /// The lowercase name QEMU and the environment variable use.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accelerator name that is neither `kvm` nor `tcg`.
#[derive(Debug, thiserror::Error)]
#[error("unknown accelerator {0:?}: use kvm or tcg")]
pub struct ParseAccelError(pub String);

impl FromStr for Accel {
    type Err = ParseAccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(ParseAccelError(s.to_string())),
        }
    }
}

/// The host facts the decision is made from (collected by [`HostFacts::collect`], or built by
/// hand in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/dev/kvm` exists and can be opened read-write by this process.
    pub dev_kvm_usable: bool,
    /// Kernel modules related to KVM that are loaded (`kvm`, `kvm_intel`, `kvm_amd`, `kvm_pvm`, ...).
    pub kvm_modules: Vec<String>,
    /// The CPU flags line of `/proc/cpuinfo`, split on whitespace.
    pub cpu_flags: Vec<String>,
    /// `uname -r` of the host.
    pub kernel_release: String,
}

impl HostFacts {
    /// Reads the facts from this host (`/dev/kvm`, `/sys/module`, `/proc/cpuinfo`).
    pub fn collect() -> HostFacts {
        let dev_kvm_usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let mut kvm_modules: Vec<String> = std::fs::read_dir("/sys/module")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n == "kvm" || n.starts_with("kvm_"))
                    .collect()
            })
            .unwrap_or_default();
        kvm_modules.sort();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_flags = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        HostFacts {
            dev_kvm_usable,
            kvm_modules,
            cpu_flags,
            kernel_release,
        }
    }

    /// A short stable key of the facts that can change the decision (for the on-disk cache).
    pub fn cache_key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.kernel_release.as_bytes());
        h.update([0]);
        h.update(self.cpu_flags.join(" ").as_bytes());
        h.update([0]);
        h.update(self.kvm_modules.join(" ").as_bytes());
        h.update([u8::from(self.dev_kvm_usable)]);
        let digest = h.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Decides the accelerator from host facts: KVM only with a usable `/dev/kvm`, a hardware KVM
/// module (`kvm_intel` or `kvm_amd`) loaded and the matching CPU flag (`vmx` or `svm`).
pub fn decide(facts: &HostFacts) -> Accel {
    let has = |m: &str| facts.kvm_modules.iter().any(|x| x == m);
    let flag = |f: &str| facts.cpu_flags.iter().any(|x| x == f);
    let hardware = (has("kvm_intel") && flag("vmx")) || (has("kvm_amd") && flag("svm"));
    if facts.dev_kvm_usable && has("kvm") && hardware {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// The harness cache directory: `$ULXC_HARNESS_CACHE`, else `$XDG_CACHE_HOME/ulxc-harness`,
/// else `~/.cache/ulxc-harness`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ULXC_HARNESS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("ulxc-harness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/ulxc-harness")
}

fn decide_cached(dir: &Path, facts: &HostFacts) -> Accel {
    let file = dir.join(format!("accel-{}", facts.cache_key()));
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(accel) = text.parse::<Accel>() {
            tracing::debug!(?file, %accel, "accelerator decision read from cache");
            return accel;
        }
    }
    let accel = decide(facts);
    tracing::info!(
        %accel,
        dev_kvm = facts.dev_kvm_usable,
        modules = ?facts.kvm_modules,
        "accelerator decided for this host"
    );
    let write = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = dir.join(format!(".accel-{}.tmp", std::process::id()));
        std::fs::write(&tmp, accel.as_str())?;
        std::fs::rename(&tmp, &file)
    });
    if let Err(err) = write {
        tracing::warn!(?file, %err, "could not cache the accelerator decision");
    }
    accel
}

/// The accelerator for this host: `ULXC_HARNESS_ACCEL` if set, else the cached decision,
/// else decided from [`HostFacts`] and cached (in memory and in the cache directory).
pub fn detect_accel() -> Accel {
    static DECIDED: OnceLock<Accel> = OnceLock::new();
    if let Ok(v) = std::env::var(ACCEL_ENV) {
        match v.parse() {
            Ok(a) => return a,
            Err(err) => tracing::warn!(%err, "ignoring {ACCEL_ENV}"),
        }
    }
    *DECIDED.get_or_init(|| decide_cached(&cache_dir(), &HostFacts::collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dev: bool, modules: &[&str], flags: &[&str]) -> HostFacts {
        HostFacts {
            dev_kvm_usable: dev,
            kvm_modules: modules.iter().map(|s| s.to_string()).collect(),
            cpu_flags: flags.iter().map(|s| s.to_string()).collect(),
            kernel_release: "6.1.0-test".into(),
        }
    }

    #[test]
    fn paravirtual_kvm_only_means_tcg() {
        // This machine: /dev/kvm, kvm + kvm_pvm, no kvm_intel.
        let f = facts(true, &["kvm", "kvm_pvm"], &["fpu", "sse2", "hypervisor"]);
        assert_eq!(decide(&f), Accel::Tcg);
    }

    #[test]
    fn hardware_kvm_means_kvm() {
        assert_eq!(
            decide(&facts(true, &["kvm", "kvm_intel"], &["vmx"])),
            Accel::Kvm
        );
        assert_eq!(
            decide(&facts(true, &["kvm", "kvm_amd"], &["svm"])),
            Accel::Kvm
        );
    }

    #[test]
    fn unusable_dev_kvm_or_missing_flag_means_tcg() {
        assert_eq!(
            decide(&facts(false, &["kvm", "kvm_intel"], &["vmx"])),
            Accel::Tcg
        );
        assert_eq!(
            decide(&facts(true, &["kvm", "kvm_intel"], &["svm"])),
            Accel::Tcg
        );
        assert_eq!(decide(&facts(true, &[], &["vmx"])), Accel::Tcg);
    }

    #[test]
    fn decision_is_cached_on_disk_by_facts() {
        let dir = tempfile::tempdir().unwrap();
        let f = facts(true, &["kvm", "kvm_intel"], &["vmx"]);
        assert_eq!(decide_cached(dir.path(), &f), Accel::Kvm);
        let file = dir.path().join(format!("accel-{}", f.cache_key()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kvm");
        // A cached answer wins over re-deciding.
        std::fs::write(&file, "tcg").unwrap();
        assert_eq!(decide_cached(dir.path(), &f), Accel::Tcg);
        // Other facts, other key.
        let g = facts(true, &["kvm", "kvm_pvm"], &["vmx"]);
        assert_ne!(f.cache_key(), g.cache_key());
    }

    #[test]
    fn parses_names() {
        assert_eq!("KVM".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf".parse::<Accel>().is_err());
    }

    #[test]
    fn this_host_collects_facts() {
        let f = HostFacts::collect();
        assert!(!f.kernel_release.is_empty());
    }
}
