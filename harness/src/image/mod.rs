//! Guest images: recipe -> Debian root filesystem -> qcow2 disk plus kernels, cached.
//!
//! A [`Recipe`] (`vm-images/*.toml`) is built by [`build`] with mmdebstrap from the mirror
//! that the host's apt sources name into `<cache>/images/<name>-<hash12>/`:
//! `disk.qcow2` (read-only base for overlays), `kernels/<name>/vmlinuz` and `initrd.img`,
//! `id_ed25519` (the harness's SSH key), `manifest.json`, `build.log` and the `complete`
//! marker written last. Builds take a file lock so that two processes share one build; a
//! failed or interrupted build never leaves a directory that looks complete.
//! [`list`] and [`prune`] serve `ulxc-harness image list|prune`.

mod build;
mod cache;
mod manifest;
mod mirror;
mod progress;
mod recipe;
mod tool;

use std::path::{Path, PathBuf};

pub use build::build;
pub use cache::{list, prune, CacheLock};
pub use manifest::{Manifest, ManifestContainerRootfs, ManifestKernel};
pub use mirror::{detect_mirror, pick_mirror, read_sources, SourceEntry};
pub use progress::Progress;
pub use recipe::{
    load_recipe, parse_recipe, recipe_path, vm_images_dir, ContainerRootfs, Kernel, Recipe,
    SubIdRange, User, BUILD_FORMAT_VERSION, DEFAULT_CMDLINE, GUEST_ROOTFS_DIR,
};

/// Errors of recipe loading, image building and the image cache.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A recipe file is malformed.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Recipe {
        /// Recipe file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. "create directory".
        what: String,
        /// The path it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A tool the build needs is not installed.
    #[error("`{tool}` is not installed: install the Debian package {package} (apt-get install {package})")]
    ToolMissing {
        /// Program name.
        tool: String,
        /// Debian package that provides it.
        package: String,
    },
    /// A spawned tool exited unsuccessfully.
    #[error("{tool} failed ({status}); full output in {}; last lines:\n{tail}", log.display())]
    ToolFailed {
        /// Command that failed (program and the first arguments).
        tool: String,
        /// Exit status description.
        status: String,
        /// Last lines of its output.
        tail: String,
        /// Build log with the complete output.
        log: PathBuf,
    },
    /// The build needs root and does not have it.
    #[error("building an image needs root (mmdebstrap in root mode, chroot, mkfs with file ownership): run `sudo ulxc-harness image build {recipe}` or build as root once; the cache is then reused")]
    NotRoot {
        /// Recipe name.
        recipe: String,
    },
    /// No usable Debian mirror in the host's apt sources.
    #[error("no debian mirror for suite {suite} found in the apt sources under {}: add a `deb` entry for the Debian archive or set ULXC_HARNESS_MIRROR=URI", searched.display())]
    NoMirror {
        /// Directory searched.
        searched: PathBuf,
        /// Suite wanted.
        suite: String,
    },
    /// The built root filesystem is not what the recipe promised.
    #[error("{message} (build log: {})", log.display())]
    BadRootfs {
        /// What is missing or wrong.
        message: String,
        /// Build log.
        log: PathBuf,
    },
    /// A cached image's manifest cannot be read.
    #[error("cached image {} has a broken manifest ({message}): remove the directory or run `ulxc-harness image prune`", dir.display())]
    BadManifest {
        /// Image directory.
        dir: PathBuf,
        /// Parse error.
        message: String,
    },
    /// A temporary build directory still has something mounted in it.
    #[error("{} still has mounts inside ({mount}); refusing to delete it: unmount them (umount -R) and retry", dir.display())]
    MountedInside {
        /// The directory.
        dir: PathBuf,
        /// First mount point found.
        mount: String,
    },
}

/// Where and how images are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Cache root; images live in `<cache_dir>/images/`.
    pub cache_dir: PathBuf,
    /// Show progress (a spinner on a terminal, plain lines on stderr otherwise).
    pub progress: bool,
}

impl BuildOptions {
    /// Cache directory from `$ULXC_HARNESS_CACHE`, else `$XDG_CACHE_HOME/ulxc-harness`,
    /// else `~/.cache/ulxc-harness`; progress on.
    pub fn from_env() -> Self {
        let get = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self::from_vars(
            get("ULXC_HARNESS_CACHE"),
            get("XDG_CACHE_HOME"),
            get("HOME"),
        )
    }

    fn from_vars(cache: Option<PathBuf>, xdg: Option<PathBuf>, home: Option<PathBuf>) -> Self {
        let cache_dir = cache
            .or_else(|| xdg.map(|x| x.join("ulxc-harness")))
            .or_else(|| home.map(|h| h.join(".cache/ulxc-harness")))
            .unwrap_or_else(|| std::env::temp_dir().join("ulxc-harness-cache"));
        BuildOptions {
            cache_dir,
            progress: true,
        }
    }

    /// `<cache_dir>/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.cache_dir.join("images")
    }
}

/// A kernel copied out of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    /// The recipe's kernel name, e.g. `cloud`.
    pub name: String,
    /// Kernel release (`uname -r`).
    pub version: String,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// The initrd, when the recipe asks for one.
    pub initrd: Option<PathBuf>,
    /// Complete kernel command line (`root=/dev/vda ... console=ttyS0 ...`).
    pub cmdline: String,
}

/// A complete image in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltImage {
    /// Recipe name.
    pub recipe: String,
    /// Full recipe hash.
    pub hash: String,
    /// Image directory.
    pub dir: PathBuf,
    /// qcow2 base disk; treat it as read-only (use overlays).
    pub disk: PathBuf,
    /// Kernels, in recipe order.
    pub kernels: Vec<BuiltKernel>,
    /// OpenSSH ed25519 private key (mode 0600) accepted by every login user.
    pub ssh_private_key: PathBuf,
    /// Login users, `root` first.
    pub users: Vec<String>,
    /// The manifest as written.
    pub manifest: Manifest,
}

impl BuiltImage {
    /// Reads a complete image directory.
    pub fn from_dir(dir: &Path) -> Result<Self, ImageError> {
        let manifest = Manifest::read(dir)?;
        Ok(Self::from_manifest(dir, manifest))
    }

    pub(crate) fn from_manifest(dir: &Path, manifest: Manifest) -> Self {
        BuiltImage {
            recipe: manifest.recipe_name.clone(),
            hash: manifest.recipe_hash.clone(),
            dir: dir.to_owned(),
            disk: dir.join(&manifest.disk),
            kernels: manifest
                .kernels
                .iter()
                .map(|k| BuiltKernel {
                    name: k.name.clone(),
                    version: k.version.clone(),
                    vmlinuz: dir.join(&k.vmlinuz),
                    initrd: k.initrd.as_ref().map(|i| dir.join(i)),
                    cmdline: k.cmdline.clone(),
                })
                .collect(),
            ssh_private_key: dir.join(&manifest.ssh_private_key),
            users: manifest.users.clone(),
            manifest,
        }
    }

    /// The kernel named `name` (e.g. `cloud`), or the first kernel when `name` is `None`.
    pub fn kernel(&self, name: Option<&str>) -> Option<&BuiltKernel> {
        match name {
            Some(n) => self.kernels.iter().find(|k| k.name == n),
            None => self.kernels.first(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            BuildOptions::from_vars(p("/c"), p("/x"), p("/h")).cache_dir,
            PathBuf::from("/c")
        );
        assert_eq!(
            BuildOptions::from_vars(None, p("/x"), p("/h")).cache_dir,
            PathBuf::from("/x/ulxc-harness")
        );
        assert_eq!(
            BuildOptions::from_vars(None, None, p("/h")).cache_dir,
            PathBuf::from("/h/.cache/ulxc-harness")
        );
    }
}
