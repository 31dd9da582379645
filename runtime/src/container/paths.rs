//! Where containers live: the container directory (`-P`, LXC's lxcpath) and the files
//! inside each container's directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ContainerError;

/// The calling user, as far as paths are concerned.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Login name (from the password database; the uid as text when absent).
    pub name: String,
    /// Home directory.
    pub home: PathBuf,
}

impl Caller {
    /// The user running this process.
    pub fn current() -> Self {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let entry = nix::unistd::User::from_uid(uid).ok().flatten();
        let name = entry
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_else(|| uid.to_string());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| entry.map(|u| u.dir))
            .unwrap_or_else(|| PathBuf::from("/"));
        Self {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            name,
            home,
        }
    }

    /// Shows `path` with the home directory written as `~`.
    pub fn tilde(&self, path: &Path) -> String {
        match path.strip_prefix(&self.home) {
            Ok(rest) if self.home != Path::new("/") => {
                if rest.as_os_str().is_empty() {
                    "~".to_string()
                } else {
                    format!("~/{}", rest.display())
                }
            }
            _ => path.display().to_string(),
        }
    }

    fn xdg_dir(&self, var: &str, fallback: &str) -> PathBuf {
        match std::env::var_os(var).map(PathBuf::from) {
            Some(p) if p.is_absolute() => p,
            _ => self.home.join(fallback),
        }
    }

    /// The default container directory: `/var/lib/lxc` for root, otherwise
    /// `$XDG_DATA_HOME/lxc` (`~/.local/share/lxc`), as LXC has it.
    pub fn default_lxcpath(&self) -> PathBuf {
        if self.uid == 0 {
            PathBuf::from("/var/lib/lxc")
        } else {
            self.xdg_dir("XDG_DATA_HOME", ".local/share").join("lxc")
        }
    }

    /// Where ulxc remembers which container directories this user has used, so that a
    /// "not found" can say which `-P` was probably meant.
    pub fn lxcpath_registry(&self) -> PathBuf {
        self.xdg_dir("XDG_STATE_HOME", ".local/state")
            .join("ulxc")
            .join("lxcpaths")
    }
}

/// Turns a `-P` argument into an absolute path (relative to the current directory),
/// or gives the default container directory.
pub fn resolve_lxcpath(arg: Option<&Path>, caller: &Caller) -> Result<PathBuf, ContainerError> {
    match arg {
        None => Ok(caller.default_lxcpath()),
        Some(p) if p.as_os_str().is_empty() => {
            Err(ContainerError::Usage("-P needs a directory".into()))
        }
        Some(p) if p.is_absolute() => Ok(normalize(p)),
        Some(p) => {
            let cwd = std::env::current_dir().map_err(|e| ContainerError::Io {
                what: "cannot read the current directory to make -P absolute".into(),
                source: e,
            })?;
            Ok(normalize(&cwd.join(p)))
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Checks that the caller can use `lxcpath` (search and write it), creating it when
/// `create` is set; the error names the directory, why, and what to do.
pub fn check_lxcpath(lxcpath: &Path, caller: &Caller, create: bool) -> Result<(), ContainerError> {
    match std::fs::metadata(lxcpath) {
        Ok(meta) if !meta.is_dir() => Err(ContainerError::Lxcpath {
            path: caller.tilde(lxcpath),
            why: "it is not a directory".into(),
            hint: hint_for(caller, lxcpath),
        }),
        Ok(meta) => {
            let writable = nix::unistd::access(
                lxcpath,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok();
            if writable {
                return Ok(());
            }
            Err(ContainerError::Lxcpath {
                path: caller.tilde(lxcpath),
                why: format!(
                    "you (uid {}) cannot enter and write it: it is owned by uid {} with mode {:04o}",
                    caller.uid,
                    meta.uid(),
                    meta.permissions().mode() & 0o7777
                ),
                hint: hint_for(caller, lxcpath),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::create_dir_all(lxcpath).map_err(|e| ContainerError::Lxcpath {
                path: caller.tilde(lxcpath),
                why: format!("it cannot be created: {e}"),
                hint: hint_for(caller, lxcpath),
            })?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ContainerError::Lxcpath {
            path: caller.tilde(lxcpath),
            why: "it does not exist".into(),
            hint: hint_for(caller, lxcpath),
        }),
        Err(e) => Err(ContainerError::Lxcpath {
            path: caller.tilde(lxcpath),
            why: format!("it cannot be examined: {e}"),
            hint: hint_for(caller, lxcpath),
        }),
    }
}

fn hint_for(caller: &Caller, lxcpath: &Path) -> String {
    let known = known_lxcpaths(caller);
    let others: Vec<String> = known
        .iter()
        .filter(|p| p.as_path() != lxcpath)
        .map(|p| caller.tilde(p))
        .collect();
    if others.is_empty() {
        format!(
            "use -P with a directory of yours, e.g. -P {}",
            caller.tilde(&caller.default_lxcpath())
        )
    } else {
        format!("you have used -P {} before", others.join(", -P "))
    }
}

/// The container directories this user has created containers in (most recent last).
pub fn known_lxcpaths(caller: &Caller) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_to_string(caller.lxcpath_registry())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect();
    let default = caller.default_lxcpath();
    if !paths.contains(&default) {
        paths.insert(0, default);
    }
    paths.dedup();
    paths
}

/// Records `lxcpath` in the user's registry of container directories.
pub fn remember_lxcpath(caller: &Caller, lxcpath: &Path) {
    let registry = caller.lxcpath_registry();
    let mut known: Vec<String> = std::fs::read_to_string(&registry)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let entry = lxcpath.display().to_string();
    if known.contains(&entry) {
        return;
    }
    known.push(entry);
    if let Some(parent) = registry.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&registry, known.join("\n") + "\n");
}

/// The files of one container: `LXCPATH/NAME/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    /// The container directory (`-P`).
    pub lxcpath: PathBuf,
    /// The container's name.
    pub name: String,
    /// `LXCPATH/NAME`.
    pub dir: PathBuf,
}

impl ContainerDir {
    /// The directory of container `name` under `lxcpath` (the name must be valid).
    pub fn new(lxcpath: &Path, name: &str) -> Self {
        Self {
            lxcpath: lxcpath.to_path_buf(),
            name: name.to_string(),
            dir: lxcpath.join(name),
        }
    }

    /// The container's configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    /// The default rootfs directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// The monitor's unix socket.
    pub fn monitor_socket(&self) -> PathBuf {
        self.dir.join("monitor.sock")
    }
    /// What the monitor records about the running container.
    pub fn run_state(&self) -> PathBuf {
        self.dir.join("run.json")
    }
    /// Held (flock) by the monitor for as long as the container runs.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }
    /// What the container's console printed (detached containers).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The monitor's own log.
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
    /// The pid file of the user-mode network helper (pasta) of `lxc.net.INDEX`.
    pub fn usermode_pid_file(&self, index: u32) -> PathBuf {
        self.dir.join(format!("net{index}.pid"))
    }
    /// The log of the network helpers (pasta, slirp4netns).
    pub fn net_log(&self) -> PathBuf {
        self.dir.join("net.log")
    }
    /// Whether the container exists (has a config file).
    pub fn exists(&self) -> bool {
        self.config().is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            uid: 1000,
            gid: 1000,
            name: "u".into(),
            home: PathBuf::from("/home/u"),
        }
    }

    #[test]
    fn relative_lxcpath_becomes_absolute() {
        let c = caller();
        let p = resolve_lxcpath(Some(Path::new("work/../lxc")), &c).unwrap();
        assert!(p.is_absolute());
        assert!(p.ends_with("lxc"));
        assert!(!p.to_string_lossy().contains(".."));
    }

    #[test]
    fn tilde_shortens_home() {
        let c = caller();
        assert_eq!(
            c.tilde(Path::new("/home/u/.local/share/lxc")),
            "~/.local/share/lxc"
        );
        assert_eq!(c.tilde(Path::new("/home/u")), "~");
        assert_eq!(c.tilde(Path::new("/var/lib/lxc")), "/var/lib/lxc");
    }

    #[test]
    fn missing_lxcpath_is_explained() {
        let c = caller();
        let e = check_lxcpath(Path::new("/nonexistent/ulxc-test"), &c, false).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/nonexistent/ulxc-test"), "{text}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains("-P"), "{text}");
    }
}
