//! Image recipes: the TOML files in `vm-images/` that describe a guest image.
//!
//! A recipe names the Debian suite, the packages, the login users, the kernels to boot
//! and the container root filesystems to bake into the guest. Parsing rejects unknown
//! fields and reports every mistake with `file:line:column`. The recipe hash (the cache
//! key) is computed from the parsed, normalised recipe, so comments and layout do not
//! change it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::ImageError;

/// Bump whenever the build procedure changes in a way that makes old images stale.
pub const BUILD_FORMAT_VERSION: u32 = 1;

/// A parsed and validated image recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// Image name, used in cache directory names (`[a-z0-9._-]`); defaults to the file stem.
    pub name: String,
    /// Debian suite of the guest, e.g. `bookworm`.
    pub suite: String,
    /// mmdebstrap variant of the guest root filesystem (default `minbase`).
    pub variant: String,
    /// Extra packages installed into the guest (kernels are added from `kernels`).
    pub packages: Vec<String>,
    /// Guest host name.
    pub hostname: String,
    /// Size of the guest disk in bytes.
    pub disk_size: u64,
    /// Login users besides root (root is always there and logs in with the harness key).
    pub users: Vec<User>,
    /// Kernels installed into the guest and copied out beside the disk, at least one.
    pub kernels: Vec<Kernel>,
    /// Container root filesystems built as tarballs into the guest.
    pub container_rootfs: Vec<ContainerRootfs>,
    /// systemd units masked in the guest to make it boot faster.
    pub mask_units: Vec<String>,
    /// Kernel modules never auto-loaded in the guest (`/etc/modprobe.d`), e.g. `kvm_amd`
    /// that a TCG `-cpu max` would otherwise pull in during boot.
    #[serde(default)]
    pub blacklist_modules: Vec<String>,
    /// Start sshd early in boot: `ssh.service` without its `After=network.target` ordering
    /// and without the `sshd -t` pre-check (sshd listens on the wildcard address, so it
    /// needs no configured address); SSH then answers as soon as DHCP is done.
    #[serde(default)]
    pub sshd_early: bool,
}

/// A login user of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User name.
    pub name: String,
    /// Login shell.
    pub shell: String,
    /// Subordinate uid/gid range written to `/etc/subuid` and `/etc/subgid`.
    pub subids: Option<SubIdRange>,
    /// Whether the user's systemd manager runs from boot (`loginctl enable-linger`).
    pub linger: bool,
}

/// A subordinate id range `start:count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIdRange {
    /// First subordinate id.
    pub start: u32,
    /// Number of ids.
    pub count: u32,
}

/// A kernel of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// Short name used by scenarios and file names, e.g. `cloud`.
    pub name: String,
    /// Debian package that pulls the kernel in, e.g. `linux-image-cloud-amd64`.
    pub package: String,
    /// Suite to take the package from when it is not the image's suite
    /// (e.g. `bookworm-backports`); that suite is added to the guest's sources.
    pub suite: Option<String>,
    /// Whether an initrd is built and used.
    pub initrd: bool,
    /// Modules put into a small initrd (`MODULES=list`); empty means Debian's default
    /// (`MODULES=most`).
    pub initrd_modules: Vec<String>,
    /// Kernel command line after `root=/dev/vda`; must contain `console=ttyS0`.
    pub cmdline: String,
}

/// A container root filesystem built with mmdebstrap and stored in the guest at
/// `/var/lib/ulxc-harness/rootfs/<name>.tar.zst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRootfs {
    /// Name of the tarball in the guest.
    pub name: String,
    /// Debian suite.
    pub suite: String,
    /// mmdebstrap variant.
    pub variant: String,
    /// Extra packages.
    pub packages: Vec<String>,
}

impl ContainerRootfs {
    /// Absolute path of the tarball inside the guest.
    pub fn guest_path(&self) -> String {
        format!("{}/{}.tar.zst", GUEST_ROOTFS_DIR, self.name)
    }
}

/// Directory inside the guest that holds container root filesystem tarballs.
pub const GUEST_ROOTFS_DIR: &str = "/var/lib/ulxc-harness/rootfs";

impl Recipe {
    /// The sha256 of the normalised recipe and [`BUILD_FORMAT_VERSION`], in hex.
    pub fn hash(&self) -> String {
        let normalised = serde_json::to_string(self).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(format!(
            "ulxc-harness-image-format-{BUILD_FORMAT_VERSION}\n"
        ));
        hasher.update(normalised.as_bytes());
        format!("{:x}", hasher.finalize())
    }

    /// The cache directory name of this recipe: `<name>-<first 12 hex digits of hash>`.
    pub fn cache_name(&self) -> String {
        format!("{}-{}", self.name, &self.hash()[..12])
    }

    /// The user names that can log in, `root` first.
    pub fn login_users(&self) -> Vec<String> {
        std::iter::once("root".to_owned())
            .chain(self.users.iter().map(|u| u.name.clone()))
            .collect()
    }

    /// All packages mmdebstrap installs into the guest: `packages` plus each kernel's
    /// package (as `pkg/suite` when it comes from another suite).
    pub fn all_packages(&self) -> Vec<String> {
        let mut all = self.packages.clone();
        for k in &self.kernels {
            let p = match &k.suite {
                Some(s) if s != &self.suite => format!("{}/{}", k.package, s),
                _ => k.package.clone(),
            };
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all
    }

    /// Extra suites (besides `suite`) the guest's apt sources must name.
    pub fn extra_suites(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in &self.kernels {
            if let Some(s) = &k.suite {
                if s != &self.suite && !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

/// Resolves a recipe argument: a bare name such as `bookworm` means
/// `<workspace>/vm-images/bookworm.toml`; anything with a `/` or ending in `.toml` is a path.
pub fn recipe_path(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        PathBuf::from(name_or_path)
    } else {
        vm_images_dir().join(format!("{name_or_path}.toml"))
    }
}

/// The workspace's `vm-images/` directory (from the crate's location at build time).
pub fn vm_images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("vm-images")
}

/// Reads and validates a recipe file.
pub fn load_recipe(path: &Path) -> Result<Recipe, ImageError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        what: "read recipe".into(),
        path: path.to_owned(),
        source,
    })?;
    parse_recipe(&text, path)
}

/// Parses and validates recipe text; `path` is used for error positions and the default name.
pub fn parse_recipe(text: &str, path: &Path) -> Result<Recipe, ImageError> {
    let raw: RawRecipe = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ImageError::Recipe {
            path: path.to_owned(),
            line,
            col,
            message: e.message().trim().to_owned(),
        }
    })?;
    let bad = |span: std::ops::Range<usize>, message: String| {
        let (line, col) = line_col(text, span.start);
        ImageError::Recipe {
            path: path.to_owned(),
            line,
            col,
            message,
        }
    };

    let name = match raw.name {
        Some(n) => {
            check_name(n.get_ref()).map_err(|m| bad(n.span(), m))?;
            n.into_inner()
        }
        None => {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            check_name(&stem).map_err(|m| {
                bad(
                    0..0,
                    format!("{m} (the name comes from the file name; set `name = \"...\"`)"),
                )
            })?;
            stem
        }
    };
    let disk_size = match raw.disk_size {
        Some(s) => parse_size(s.get_ref()).map_err(|m| bad(s.span(), m))?,
        None => 4 << 30,
    };
    let hostname = raw
        .hostname
        .unwrap_or_else(|| Spanned::new(0..0, "ulxc-vm".into()));
    if hostname.get_ref().is_empty()
        || hostname.get_ref().len() > 63
        || !hostname
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(bad(
            hostname.span(),
            format!(
                "invalid hostname {:?}: use 1-63 letters, digits and '-'",
                hostname.get_ref()
            ),
        ));
    }

    let mut users = Vec::new();
    for u in raw.users {
        let n = u.name.get_ref();
        let valid = !n.is_empty()
            && n.len() <= 32
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid || n == "root" {
            return Err(bad(
                u.name.span(),
                format!(
                    "invalid user name {n:?}: use lowercase letters, digits, '_' and '-' (root is always present, do not list it)"
                ),
            ));
        }
        if users.iter().any(|x: &User| &x.name == n) {
            return Err(bad(u.name.span(), format!("user {n:?} is listed twice")));
        }
        let subids = match u.subids {
            Some(s) => Some(parse_subids(s.get_ref()).map_err(|m| bad(s.span(), m))?),
            None => None,
        };
        users.push(User {
            name: u.name.into_inner(),
            shell: u.shell.unwrap_or_else(|| "/bin/bash".into()),
            subids,
            linger: u.linger.unwrap_or(false),
        });
    }

    let mut kernels: Vec<Kernel> = Vec::new();
    if raw.kernels.is_empty() {
        return Err(bad(
            0..0,
            "the recipe names no kernel: add a [[kernels]] table with name and package".into(),
        ));
    }
    for k in raw.kernels {
        check_name(k.name.get_ref()).map_err(|m| bad(k.name.span(), m))?;
        if kernels.iter().any(|x| &x.name == k.name.get_ref()) {
            return Err(bad(
                k.name.span(),
                format!("kernel {:?} is listed twice", k.name.get_ref()),
            ));
        }
        let cmdline = k
            .cmdline
            .unwrap_or_else(|| Spanned::new(0..0, DEFAULT_CMDLINE.into()));
        if !cmdline
            .get_ref()
            .split_whitespace()
            .any(|w| w.starts_with("console=ttyS0"))
        {
            return Err(bad(
                cmdline.span(),
                "kernel cmdline lacks console=ttyS0: the harness reads the serial console".into(),
            ));
        }
        if cmdline
            .get_ref()
            .split_whitespace()
            .any(|w| w.starts_with("root="))
        {
            return Err(bad(
                cmdline.span(),
                "kernel cmdline must not set root=: the harness puts root=/dev/vda first".into(),
            ));
        }
        kernels.push(Kernel {
            name: k.name.into_inner(),
            package: k.package,
            suite: k.suite,
            initrd: k.initrd.unwrap_or(true),
            initrd_modules: k.initrd_modules,
            cmdline: cmdline.into_inner(),
        });
    }

    let mut container_rootfs: Vec<ContainerRootfs> = Vec::new();
    for c in raw.container_rootfs {
        check_name(c.name.get_ref()).map_err(|m| bad(c.name.span(), m))?;
        if container_rootfs.iter().any(|x| &x.name == c.name.get_ref()) {
            return Err(bad(
                c.name.span(),
                format!("container rootfs {:?} is listed twice", c.name.get_ref()),
            ));
        }
        container_rootfs.push(ContainerRootfs {
            name: c.name.into_inner(),
            suite: c.suite.unwrap_or_else(|| "bookworm".into()),
            variant: c.variant.unwrap_or_else(|| "minbase".into()),
            packages: c.packages,
        });
    }

    Ok(Recipe {
        name,
        suite: raw.suite.unwrap_or_else(|| "bookworm".into()),
        variant: raw.variant.unwrap_or_else(|| "minbase".into()),
        packages: raw.packages,
        hostname: hostname.into_inner(),
        disk_size,
        users,
        kernels,
        container_rootfs,
        mask_units: raw.mask_units,
        blacklist_modules: raw.blacklist_modules,
        sshd_early: raw.sshd_early.unwrap_or(false),
    })
}

/// Kernel command line used when a kernel entry does not set one.
pub const DEFAULT_CMDLINE: &str = "rw console=ttyS0 panic=-1 loglevel=5";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Option<Spanned<String>>,
    suite: Option<String>,
    variant: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    hostname: Option<Spanned<String>>,
    disk_size: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    kernels: Vec<RawKernel>,
    #[serde(default)]
    container_rootfs: Vec<RawContainerRootfs>,
    #[serde(default)]
    mask_units: Vec<String>,
    #[serde(default)]
    blacklist_modules: Vec<String>,
    sshd_early: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    shell: Option<String>,
    subids: Option<Spanned<String>>,
    linger: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    name: Spanned<String>,
    package: String,
    suite: Option<String>,
    initrd: Option<bool>,
    #[serde(default)]
    initrd_modules: Vec<String>,
    cmdline: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainerRootfs {
    name: Spanned<String>,
    suite: Option<String>,
    variant: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
}

fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && !name.starts_with('.')
    {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use lowercase letters, digits, '.', '_' and '-'"
        ))
    }
}

/// Parses a size like `4G`, `512M`, `2048K` or a plain byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size {s:?}: use a number with K, M, G or T"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: use a number with K, M, G or T, e.g. \"4G\""))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if bytes < (256 << 20) {
        return Err(format!("disk size {s:?} is too small: use at least 256M"));
    }
    Ok(bytes)
}

fn parse_subids(s: &str) -> Result<SubIdRange, String> {
    let err = || format!("invalid subids {s:?}: write START:COUNT, e.g. \"100000:65536\"");
    let (a, b) = s.split_once(':').ok_or_else(err)?;
    let start: u32 = a.trim().parse().map_err(|_| err())?;
    let count: u32 = b.trim().parse().map_err(|_| err())?;
    if count == 0 || start.checked_add(count).is_none() {
        return Err(err());
    }
    Ok(SubIdRange { start, count })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
suite = "bookworm"
packages = ["openssh-server", "systemd"]
hostname = "vm1"
disk_size = "3G"

[[users]]
name = "user"
subids = "100000:65536"
linger = true

[[kernels]]
name = "cloud"
package = "linux-image-cloud-amd64"
initrd_modules = ["virtio_pci", "virtio_blk"]

[[container_rootfs]]
name = "bookworm"
packages = ["systemd-sysv"]
"#;

    fn parse(text: &str) -> Result<Recipe, ImageError> {
        parse_recipe(text, Path::new("/r/bookworm.toml"))
    }

    fn err_pos(text: &str) -> (usize, usize, String) {
        match parse(text) {
            Err(ImageError::Recipe {
                line, col, message, ..
            }) => (line, col, message),
            other => panic!("expected a recipe error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_recipe_with_defaults() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.name, "bookworm");
        assert_eq!(r.variant, "minbase");
        assert_eq!(r.disk_size, 3 << 30);
        assert_eq!(r.users[0].shell, "/bin/bash");
        assert_eq!(
            r.users[0].subids,
            Some(SubIdRange {
                start: 100000,
                count: 65536
            })
        );
        assert!(r.users[0].linger);
        assert_eq!(r.kernels[0].cmdline, DEFAULT_CMDLINE);
        assert!(r.kernels[0].initrd);
        assert_eq!(r.container_rootfs[0].suite, "bookworm");
        assert_eq!(
            r.container_rootfs[0].guest_path(),
            "/var/lib/ulxc-harness/rootfs/bookworm.tar.zst"
        );
        assert_eq!(r.login_users(), vec!["root", "user"]);
        assert_eq!(
            r.all_packages(),
            vec!["openssh-server", "systemd", "linux-image-cloud-amd64"]
        );
    }

    #[test]
    fn unknown_field_is_reported_with_its_line() {
        let text = GOOD.replace("linger = true", "linger = true\nshel = \"/bin/sh\"");
        let (line, _, msg) = err_pos(&text);
        assert_eq!(line, 11, "{msg}");
        assert!(msg.contains("shel"), "{msg}");
    }

    #[test]
    fn bad_type_is_reported_with_its_line() {
        let text = GOOD.replace("hostname = \"vm1\"", "hostname = 5");
        let (line, col, msg) = err_pos(&text);
        assert_eq!((line, col), (4, 12), "{msg}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let (line, col, msg) = err_pos(&GOOD.replace("\"3G\"", "\"3Q\""));
        assert_eq!((line, col), (5, 13));
        assert!(msg.contains("invalid size"), "{msg}");

        let (line, _, msg) = err_pos(&GOOD.replace("100000:65536", "100000"));
        assert_eq!(line, 9);
        assert!(msg.contains("START:COUNT"), "{msg}");

        let text = format!("{GOOD}\n[[kernels]]\nname = \"cloud\"\npackage = \"x\"\n");
        let (line, _, msg) = err_pos(&text);
        assert_eq!(line, 22);
        assert!(msg.contains("twice"), "{msg}");

        let text = GOOD.replace("initrd_modules", "cmdline = \"quiet\"\ninitrd_modules");
        let (line, _, msg) = err_pos(&text);
        assert_eq!(line, 15);
        assert!(msg.contains("console=ttyS0"), "{msg}");
    }

    #[test]
    fn a_recipe_without_kernels_is_rejected() {
        let text = "packages = []\n";
        let (_, _, msg) = err_pos(text);
        assert!(msg.contains("no kernel"), "{msg}");
    }

    #[test]
    fn error_display_has_file_and_line() {
        let e = parse(&GOOD.replace("hostname = \"vm1\"", "hostname = 5")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/r/bookworm.toml:4:12: "), "{s}");
    }

    #[test]
    fn hash_ignores_layout_but_not_content() {
        let a = parse(GOOD).unwrap();
        let b = parse(&format!("# a comment\n{}", GOOD.replace(" = ", "="))).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        let c = parse(&GOOD.replace("\"systemd\"]", "\"systemd\", \"less\"]")).unwrap();
        assert_ne!(a.hash(), c.hash());
        let d = parse(&GOOD.replace("linger = true", "linger = false")).unwrap();
        assert_ne!(a.hash(), d.hash());
        assert_eq!(a.cache_name(), format!("bookworm-{}", &a.hash()[..12]));
    }

    #[test]
    fn hash_is_pinned() {
        // A fixed recipe keeps its hash unless BUILD_FORMAT_VERSION is bumped or the
        // Recipe struct changes: otherwise every cached image is rebuilt without a reason.
        // When this fails after an intended change, update the literal.
        let r = parse("[[kernels]]\nname = \"cloud\"\npackage = \"linux-image-cloud-amd64\"\n")
            .unwrap();
        let again =
            parse("[[kernels]]\nname=\"cloud\"\npackage=\"linux-image-cloud-amd64\"").unwrap();
        assert_eq!(r.hash(), again.hash());
        assert_eq!(
            r.hash(),
            "f0445d8b2cb00ecd3e7665a0ca42528759c0e9bb814dad378ff0c65cdcb897ec"
        );
    }

    #[test]
    fn backports_kernel_adds_a_suite() {
        let text = format!(
            "{GOOD}\n[[kernels]]\nname = \"bpo\"\npackage = \"linux-image-cloud-amd64\"\nsuite = \"bookworm-backports\"\n"
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.extra_suites(), vec!["bookworm-backports"]);
        assert!(r
            .all_packages()
            .contains(&"linux-image-cloud-amd64/bookworm-backports".to_owned()));
    }

    #[test]
    fn recipe_path_resolves_names_and_paths() {
        assert!(recipe_path("bookworm").ends_with("vm-images/bookworm.toml"));
        assert_eq!(recipe_path("./x.toml"), PathBuf::from("./x.toml"));
        assert_eq!(recipe_path("a/b"), PathBuf::from("a/b"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("10").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn the_workspace_recipe_parses() {
        let r = load_recipe(&recipe_path("bookworm")).unwrap();
        assert_eq!(r.name, "bookworm");
        assert!(r.kernels.iter().any(|k| k.name == "cloud"));
        assert!(r.container_rootfs.iter().any(|c| c.name == "bookworm"));
        assert!(r.users.iter().any(|u| u.name == "user" && u.linger));
    }
}
