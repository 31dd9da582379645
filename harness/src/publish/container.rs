//! Container recipes (`vm-images/container-*.toml`) and their root filesystem tarballs,
//! built with mmdebstrap from the mirror the host's apt sources name and cached by the
//! recipe's hash under a file lock (two processes building the same recipe share a build).
//!
//! The VM recipe format (`image::Recipe`) needs kernels and a disk; a container image
//! needs neither, hence this small format of its own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io, ImageSpec, PublishError};
use crate::image::{detect_mirror, BuildOptions, CacheLock, Progress};

/// A container image recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecipe {
    /// Distribution name in the index (default `debian`).
    #[serde(default = "default_dist")]
    pub dist: String,
    /// Debian suite, also the release in the index (default `bookworm`).
    #[serde(default = "default_release")]
    pub release: String,
    /// Debian architecture (default `amd64`; must be the host's: no foreign builds).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// LXC variant name in the index (default `default`).
    #[serde(default = "default_variant")]
    pub variant: String,
    /// mmdebstrap variant (default `minbase`).
    #[serde(default = "default_mm_variant")]
    pub mmdebstrap_variant: String,
    /// Extra packages.
    #[serde(default)]
    pub packages: Vec<String>,
}

fn default_dist() -> String {
    "debian".into()
}
fn default_release() -> String {
    "bookworm".into()
}
fn default_arch() -> String {
    "amd64".into()
}
fn default_variant() -> String {
    "default".into()
}
fn default_mm_variant() -> String {
    "minbase".into()
}

/// Resolves a container recipe argument: a bare name such as `bookworm` means
/// `<workspace>/vm-images/containers/bookworm.toml`; anything with a `/` or ending in
/// `.toml` is a path.
pub fn container_recipe_path(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        PathBuf::from(name_or_path)
    } else {
        crate::image::vm_images_dir()
            .join("containers")
            .join(format!("{name_or_path}.toml"))
    }
}

/// Reads and checks a container recipe.
pub fn load_container_recipe(path: &Path) -> Result<ContainerRecipe, PublishError> {
    let text = std::fs::read_to_string(path).map_err(|e| io("read", path, e))?;
    parse_container_recipe(&text, path)
}

/// Parses and checks a container recipe's text.
pub fn parse_container_recipe(text: &str, path: &Path) -> Result<ContainerRecipe, PublishError> {
    let bad = |message: String| PublishError::Recipe {
        path: path.to_path_buf(),
        message,
    };
    let r: ContainerRecipe = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    for (field, v) in [
        ("dist", &r.dist),
        ("release", &r.release),
        ("arch", &r.arch),
        ("variant", &r.variant),
        ("mmdebstrap_variant", &r.mmdebstrap_variant),
    ] {
        let plain = !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !v.starts_with('.');
        if !plain {
            return Err(bad(format!(
                "{field} = {v:?}: use letters, digits, '.', '-', '_' only"
            )));
        }
    }
    if let Some(p) = r
        .packages
        .iter()
        .find(|p| p.is_empty() || p.contains([',', ' ']))
    {
        return Err(bad(format!("package {p:?} is not a package name")));
    }
    Ok(r)
}

impl ContainerRecipe {
    /// sha256 of the recipe (as JSON) with a format version, in hex.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"ulxc-harness-container-format-2\n");
        h.update(serde_json::to_string(self).unwrap_or_default().as_bytes());
        format!("{:x}", h.finalize())
    }

    /// The mmdebstrap command line that writes the root filesystem tarball `out`
    /// (`.tar.xz`), with `LXC_NAME` in `/etc/hostname` and `/etc/hosts` (replaced by the
    /// container's name on create, see `templates` in `meta.tar.xz`), no device nodes in it (`--skip=output/dev`: the container's
    /// `/dev` is made at start) and a systemd-networkd DHCP config for `eth0`.
    pub fn mmdebstrap_args(&self, mirror: &str, out: &Path) -> Vec<String> {
        let mut include = vec!["systemd-sysv".to_owned(), "iproute2".to_owned()];
        include.extend(self.packages.iter().cloned());
        vec![
            "--mode=root".into(),
            format!("--variant={}", self.mmdebstrap_variant),
            format!("--architectures={}", self.arch),
            "--components=main".into(),
            "--aptopt=Acquire::Languages \"none\"".into(),
            "--dpkgopt=path-exclude=/usr/share/man/*".into(),
            "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
            format!("--include={}", include.join(",")),
            "--skip=output/dev".into(),
            "--customize-hook=mkdir -p \"$1/etc/systemd/network\" && printf '[Match]\\nName=eth0\\n\\n[Network]\\nDHCP=yes\\n' > \"$1/etc/systemd/network/eth0.network\" && chroot \"$1\" systemctl enable systemd-networkd".into(),
            "--customize-hook=echo LXC_NAME > \"$1/etc/hostname\" && printf '127.0.0.1 localhost\\n127.0.1.1 LXC_NAME\\n::1 localhost ip6-localhost ip6-loopback\\n' > \"$1/etc/hosts\" && : > \"$1/etc/machine-id\"".into(),
            self.release.clone(),
            out.display().to_string(),
            format!("deb {mirror} {} main", self.release),
        ]
    }
}

/// Builds (or finds in the cache) the recipe's `rootfs.tar.xz`; returns the image spec
/// (the build id is the build's UTC time, `YYYYMMDD_HH:MM`, kept with the cached build)
/// and the tarball's path. Needs root for a fresh build.
pub fn build_rootfs(
    recipe: &ContainerRecipe,
    opts: &BuildOptions,
) -> Result<(ImageSpec, PathBuf), PublishError> {
    let dir = opts.cache_dir.join("containers").join(format!(
        "{}-{}-{}",
        recipe.dist,
        recipe.release,
        &recipe.hash()[..12]
    ));
    let tarball = dir.join("rootfs.tar.xz");
    let build_file = dir.join("build");
    let spec = |build: String| ImageSpec {
        dist: recipe.dist.clone(),
        release: recipe.release.clone(),
        arch: recipe.arch.clone(),
        variant: recipe.variant.clone(),
        build,
    };
    let cached = || -> Option<String> {
        let b = std::fs::read_to_string(&build_file).ok()?;
        tarball.is_file().then(|| b.trim().to_owned())
    };
    if let Some(b) = cached() {
        return Ok((spec(b), tarball));
    }
    let mut progress = Progress::new(
        &format!("{}-{}", recipe.dist, recipe.release),
        opts.progress,
    );
    let _lock = CacheLock::acquire(&dir)?;
    if let Some(b) = cached() {
        progress.finish("built by another process");
        return Ok((spec(b), tarball));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io("create directory", &dir, e))?;
    let mirror = detect_mirror(Path::new("/"), &recipe.release)?;
    let tmp = dir.join("rootfs.tmp.tar.xz");
    let log = dir.join("build.log");
    progress.phase("mmdebstrap", &format!("{} from {mirror}", recipe.release));
    let args = recipe.mmdebstrap_args(&mirror, &tmp);
    tracing::info!(?args, "running mmdebstrap");
    let out = duct::cmd("mmdebstrap", &args)
        .stderr_to_stdout()
        .stdout_path(&log)
        .unchecked()
        .run()
        .map_err(|e| {
            io(
                "run mmdebstrap (apt-get install mmdebstrap) logging to",
                &log,
                e,
            )
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(PublishError::ToolFailed {
            tool: "mmdebstrap".into(),
            status: out.status.to_string(),
            log,
        });
    }
    std::fs::rename(&tmp, &tarball).map_err(|e| io("rename to", &tarball, e))?;
    let build = jiff::Timestamp::now().strftime("%Y%m%d_%H:%M").to_string();
    std::fs::write(&build_file, format!("{build}\n")).map_err(|e| io("write", &build_file, e))?;
    progress.finish("built");
    Ok((spec(build), tarball))
}
