//! The image manifest (`manifest.json`): what was built, from what, and where it lies.
//!
//! Paths in the manifest are relative to the image directory so that a cache can be moved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ImageError, Recipe};

/// File name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Description of a built image, serialised as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Build procedure version ([`super::BUILD_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Recipe name.
    pub recipe_name: String,
    /// Full recipe hash.
    pub recipe_hash: String,
    /// The normalised recipe the image was built from.
    pub recipe: Recipe,
    /// Build completion time, RFC 3339 UTC.
    pub built_at: String,
    /// Seconds the build took.
    pub build_seconds: f64,
    /// Debian mirror used.
    pub mirror: String,
    /// Guest disk (qcow2), relative to the image directory.
    pub disk: PathBuf,
    /// Virtual size of the disk in bytes.
    pub disk_size: u64,
    /// Kernels.
    pub kernels: Vec<ManifestKernel>,
    /// SSH private key, relative to the image directory.
    pub ssh_private_key: PathBuf,
    /// SSH public key line.
    pub ssh_public_key: String,
    /// Login users, `root` first.
    pub users: Vec<String>,
    /// Container root filesystem tarballs inside the guest.
    pub container_rootfs: Vec<ManifestContainerRootfs>,
    /// Installed guest packages: name -> version.
    pub packages: BTreeMap<String, String>,
}

/// A kernel in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestKernel {
    /// Recipe kernel name.
    pub name: String,
    /// Package named in the recipe.
    pub package: String,
    /// Concrete kernel package (`linux-image-<release>`).
    pub image_package: String,
    /// Kernel release (`uname -r`).
    pub version: String,
    /// Kernel image, relative to the image directory.
    pub vmlinuz: PathBuf,
    /// Initrd, relative to the image directory.
    pub initrd: Option<PathBuf>,
    /// Complete kernel command line.
    pub cmdline: String,
}

/// A container rootfs tarball in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestContainerRootfs {
    /// Name from the recipe.
    pub name: String,
    /// Absolute path inside the guest.
    pub guest_path: String,
    /// Size of the tarball in bytes.
    pub size: u64,
}

impl Manifest {
    /// Reads `<dir>/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            what: "read manifest".into(),
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ImageError::BadManifest {
            dir: dir.to_owned(),
            message: e.to_string(),
        })
    }

    /// Writes `<dir>/manifest.json`.
    pub fn write(&self, dir: &Path) -> Result<(), ImageError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| ImageError::BadManifest {
            dir: dir.to_owned(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| ImageError::Io {
            what: "write manifest".into(),
            path,
            source,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::{parse_recipe, BuiltImage};

    pub(crate) fn sample() -> Manifest {
        let recipe = parse_recipe(
            "[[users]]\nname = \"user\"\n[[kernels]]\nname = \"cloud\"\npackage = \"linux-image-cloud-amd64\"\n",
            Path::new("bookworm.toml"),
        )
        .unwrap();
        Manifest {
            format_version: 1,
            recipe_name: recipe.name.clone(),
            recipe_hash: recipe.hash(),
            built_at: "2026-11-29T02:00:00Z".into(),
            build_seconds: 100.5,
            mirror: "http://mirror.example/debian".into(),
            disk: "disk.qcow2".into(),
            disk_size: 4 << 30,
            kernels: vec![ManifestKernel {
                name: "cloud".into(),
                package: "linux-image-cloud-amd64".into(),
                image_package: "linux-image-6.1.0-50-cloud-amd64".into(),
                version: "6.1.0-50-cloud-amd64".into(),
                vmlinuz: "kernels/cloud/vmlinuz".into(),
                initrd: Some("kernels/cloud/initrd.img".into()),
                cmdline: "root=/dev/vda rw console=ttyS0".into(),
            }],
            ssh_private_key: "id_ed25519".into(),
            ssh_public_key: "ssh-ed25519 AAAA test".into(),
            users: recipe.login_users(),
            container_rootfs: vec![],
            packages: [("systemd".to_owned(), "252.38-1~deb12u1".to_owned())].into(),
            recipe,
        }
    }

    #[test]
    fn manifest_round_trips_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("\"recipe_hash\""), "{text}");
        assert!(text.contains("\"6.1.0-50-cloud-amd64\""), "{text}");
        let back = Manifest::read(dir.path()).unwrap();
        assert_eq!(back, m);
        let img = BuiltImage::from_dir(dir.path()).unwrap();
        assert_eq!(img.disk, dir.path().join("disk.qcow2"));
        assert_eq!(img.users, vec!["root", "user"]);
        assert_eq!(
            img.kernel(Some("cloud")).unwrap().version,
            "6.1.0-50-cloud-amd64"
        );
        assert_eq!(
            img.kernel(None).unwrap().initrd.as_deref(),
            Some(dir.path().join("kernels/cloud/initrd.img").as_path())
        );
        assert!(img.kernel(Some("nope")).is_none());
    }

    #[test]
    fn broken_manifest_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("broken manifest"), "{e}");
    }
}
