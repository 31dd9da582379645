//! An image's `meta.tar.xz`: `config` (or `config-user`), `create-message`, `templates`,
//! `excludes`, `expiry`, read in memory (small regular files at the top level only).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::DownloadError;

/// The compatibility level whose `.N` suffixed files LXC's download template prefers.
pub const COMPAT_LEVEL: u32 = 7;

/// Where LXC's shipped config snippets live (`LXC_TEMPLATE_CONFIG`).
pub const LXC_TEMPLATE_CONFIG: &str = "/usr/share/lxc/config";

/// Where LXC's hooks live (`LXC_HOOK_DIR`).
pub const LXC_HOOK_DIR: &str = "/usr/share/lxc/hooks";

const MAX_FILE: u64 = 1024 * 1024;

/// The files of a `meta.tar.xz`.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    files: BTreeMap<String, String>,
}

impl Meta {
    /// Reads `path` (an xz-compressed tar archive).
    pub fn read(path: &Path) -> Result<Self, DownloadError> {
        let bad = |why: String| DownloadError::Meta {
            path: path.to_path_buf(),
            why,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
        let mut archive = tar::Archive::new(liblzma::read::XzDecoder::new(file));
        let mut files = BTreeMap::new();
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not an xz-compressed tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| bad(format!("not an xz-compressed tar archive: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| bad(format!("bad entry name: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if name.is_empty() || !entry.header().entry_type().is_file() {
                continue;
            }
            if name.contains('/') {
                tracing::debug!(name, "meta.tar.xz: ignoring a nested entry");
                continue;
            }
            if entry.size() > MAX_FILE {
                return Err(bad(format!("entry `{name}` is larger than 1 MiB")));
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("entry `{name}` is not readable text: {e}")))?;
            files.insert(name, text);
        }
        let meta = Meta { files };
        if meta.relevant("config").is_none() {
            return Err(bad(
                "it has no `config` file (LXC: \"meta tarball is missing the configuration file\")"
                    .into(),
            ));
        }
        Ok(meta)
    }

    /// The file LXC's `relevant_file` picks for `name` in user mode: `NAME-user` over
    /// `NAME`, then the `.7` suffixed one over either.
    pub fn relevant(&self, name: &str) -> Option<&str> {
        let user = format!("{name}-user");
        let base = if self.files.contains_key(&user)
            || self.files.contains_key(&format!("{user}.{COMPAT_LEVEL}"))
        {
            user
        } else {
            name.to_string()
        };
        self.files
            .get(&format!("{base}.{COMPAT_LEVEL}"))
            .or_else(|| self.files.get(&base))
            .map(String::as_str)
    }

    /// The image's config with LXC's template variables filled in.
    pub fn config(&self, name: &str, lxc_path: &Path, rootfs: &Path) -> String {
        self.relevant("config")
            .map(|c| substitute(c, name, lxc_path, rootfs))
            .unwrap_or_default()
    }

    /// The `create-message`, if any, with variables filled in.
    pub fn create_message(&self, name: &str, lxc_path: &Path, rootfs: &Path) -> Option<String> {
        self.relevant("create-message")
            .map(|m| substitute(m, name, lxc_path, rootfs))
    }

    /// Lines for the user about parts of the image that ulxc does not apply.
    pub fn ignored_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (file, what) in [("fstab", "the image's `fstab` was not installed")] {
            if self.relevant(file).is_some_and(|t| !t.trim().is_empty()) {
                notes.push(what.to_string());
            }
        }
        notes
    }

    /// The lines of the image's exclude list (`excludes-user` over `excludes`, as LXC
    /// picks it for an unprivileged user): paths left out of the unpack.
    pub fn excludes(&self) -> Vec<String> {
        self.relevant("excludes")
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rootfs files (relative paths) in which LXC's variables are to be filled in.
    pub fn templates(&self) -> Vec<String> {
        self.relevant("templates")
            .map(|t| {
                t.lines()
                    .map(|l| l.trim().trim_start_matches('/').to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Unix time after which a cached copy should be downloaded again, if the image
    /// says so.
    pub fn expiry(&self) -> Option<u64> {
        self.relevant("expiry").and_then(|t| t.trim().parse().ok())
    }
}

/// Fills in LXC's variables in the files `paths` (relative to `rootfs`), as LXC's download
/// template does with the image's `templates` list. Missing files are skipped; a path
/// through a symbolic link or to anything but a regular file is refused, and the file is
/// rewritten without following links. Returns how many files were filled in.
pub fn fill_templates(
    rootfs: &Path,
    paths: &[String],
    name: &str,
    lxc_path: &Path,
    container_rootfs: &Path,
) -> Result<usize, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut done = 0;
    'paths: for rel in paths {
        let mut at = rootfs.to_path_buf();
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == ".." {
                return Err(format!(
                    "the image's templates name `{rel}`, which leaves the rootfs"
                ));
            }
            at.push(part);
            let meta = match std::fs::symlink_metadata(&at) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'paths,
                Err(e) => return Err(format!("cannot examine {}: {e}", at.display())),
            };
            let last = i + 1 == parts.len();
            if (!last && !meta.is_dir()) || (last && !meta.is_file()) {
                tracing::warn!(path = %at.display(), "template path is a link or not a regular file; left alone");
                continue 'paths;
            }
        }
        if parts.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&at)
            .map_err(|e| format!("cannot read {}: {e}", at.display()))?;
        let filled = substitute(&text, name, lxc_path, container_rootfs);
        if filled != text {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&at)
                .map_err(|e| format!("cannot write {}: {e}", at.display()))?;
            std::io::Write::write_all(&mut f, filled.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", at.display()))?;
            done += 1;
        }
    }
    Ok(done)
}

fn substitute(text: &str, name: &str, lxc_path: &Path, rootfs: &Path) -> String {
    text.replace("LXC_NAME", name)
        .replace("LXC_PATH", &lxc_path.display().to_string())
        .replace("LXC_ROOTFS", &rootfs.display().to_string())
        .replace("LXC_TEMPLATE_CONFIG", LXC_TEMPLATE_CONFIG)
        .replace("LXC_HOOK_DIR", LXC_HOOK_DIR)
}
