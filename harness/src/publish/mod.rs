//! Container images for `ulxc create -t download` (and LXC's download template): build a
//! root filesystem tarball from a container recipe, pack `meta.tar.xz`, sign both with an
//! armored detached OpenPGP signature (`FILE.asc`), and add the image to the server's
//! `meta/1.0/index-system` (LXC's layout, so any static web server can serve the result).
//!
//! Recipes live in `vm-images/containers/*.toml` (see [`ContainerRecipe`]).
//!
//! Layout written under the output directory `DIR`:
//! `meta/1.0/index-system` (+ `.asc`) and
//! `images/DIST/RELEASE/ARCH/VARIANT/BUILD/{rootfs.tar.xz,meta.tar.xz,SHA256SUMS}` (+ `.asc`
//! each; `SHA256SUMS` lists the other two, as `sha256sum` writes them).

mod container;
mod index;
mod sign;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use container::{build_rootfs, container_recipe_path, load_container_recipe, ContainerRecipe};
pub use index::{parse_index, render_index, upsert, IndexEntry, INDEX_PATH, USER_INDEX_PATH};
pub use sign::{keygen, load_secret_key, sign_file, verify_file, PUBLIC_KEY_FILE, SECRET_KEY_FILE};

/// Errors of building, signing and publishing container images.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file operation failed.
    #[error("cannot {what} {}: {error}", path.display())]
    Io {
        /// The operation, e.g. "write".
        what: String,
        /// The path it was applied to.
        path: PathBuf,
        /// The underlying error (in the message, not a `source()`: printed once).
        error: std::io::Error,
    },
    /// A container recipe is malformed.
    #[error("{}: {message}", path.display())]
    Recipe {
        /// Recipe file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An index file line is malformed.
    #[error("{}: line {line}: {message}", path.display())]
    Index {
        /// Index file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An OpenPGP operation failed.
    #[error("OpenPGP: {what}: {message}")]
    Pgp {
        /// What was being done, with the file it concerned.
        what: String,
        /// The error of the `pgp` crate.
        message: String,
    },
    /// A signature does not verify.
    #[error("{}: bad signature: {message}", file.display())]
    BadSignature {
        /// The signed file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// Image building (mirror detection, cache lock) failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A build tool failed.
    #[error("{tool} failed ({status}); log: {}", log.display())]
    ToolFailed {
        /// The command.
        tool: String,
        /// Its exit status.
        status: String,
        /// The log with its output.
        log: PathBuf,
    },
}

pub(crate) fn io(what: &str, path: &Path, error: std::io::Error) -> PublishError {
    PublishError::Io {
        what: what.to_owned(),
        path: path.to_path_buf(),
        error,
    }
}

/// One image to publish: where it goes in the index and what it is made of.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Distribution, e.g. `debian`.
    pub dist: String,
    /// Release, e.g. `bookworm`.
    pub release: String,
    /// Debian architecture, e.g. `amd64`.
    pub arch: String,
    /// LXC variant, e.g. `default`.
    pub variant: String,
    /// Build id, e.g. `20261129_03:40`.
    pub build: String,
}

impl ImageSpec {
    /// The image's directory relative to the server root, `images/DIST/RELEASE/ARCH/VARIANT/BUILD`.
    pub fn rel_dir(&self) -> String {
        format!(
            "images/{}/{}/{}/{}/{}",
            self.dist, self.release, self.arch, self.variant, self.build
        )
    }

    /// The `lxc.arch` value LXC's own images use for this Debian architecture.
    pub fn lxc_arch(&self) -> &str {
        match self.arch.as_str() {
            "amd64" => "linux64",
            "i386" => "linux32",
            "arm64" => "aarch64",
            other => other,
        }
    }

    /// `meta.tar.xz`'s files: `config` (privileged), `config-user` (what LXC's download
    /// template picks inside a user namespace), `create-message`, `excludes-user`, and
    /// `templates`: the rootfs files in which `LXC_NAME` is replaced by the container's name.
    pub fn meta_files(&self) -> Vec<(&'static str, String)> {
        let arch = self.lxc_arch();
        vec![
            (
                "config",
                format!(
                    "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\nlxc.arch = {arch}\n"
                ),
            ),
            (
                "config-user",
                format!(
                    "lxc.include = LXC_TEMPLATE_CONFIG/debian.common.conf\n\
                     lxc.include = LXC_TEMPLATE_CONFIG/debian.userns.conf\nlxc.arch = {arch}\n"
                ),
            ),
            (
                "create-message",
                format!(
                    "You just created a {} {} {} (build {}) container.\n\n\
                     No default root or user password are set.\n",
                    capitalise(&self.dist),
                    self.release,
                    self.arch,
                    self.build
                ),
            ),
            ("excludes-user", String::new()),
            ("templates", "/etc/hostname\n/etc/hosts\n".into()),
        ]
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Writes `meta.tar.xz` with the files of [`ImageSpec::meta_files`] into `dir`.
pub fn write_meta(spec: &ImageSpec, dir: &Path) -> Result<PathBuf, PublishError> {
    let path = dir.join("meta.tar.xz");
    let file = std::fs::File::create(&path).map_err(|e| io("create", &path, e))?;
    let xz = liblzma::write::XzEncoder::new(file, 6);
    let mut tar = tar::Builder::new(xz);
    for (name, text) in spec.meta_files() {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, text.as_bytes())
            .map_err(|e| io("write", &path, e))?;
    }
    let xz = tar.into_inner().map_err(|e| io("write", &path, e))?;
    xz.finish().map_err(|e| io("write", &path, e))?;
    Ok(path)
}

/// Writes `SHA256SUMS` (sha256sum's `HEX  NAME` lines) for `files` into `dir`.
pub fn write_sums(dir: &Path, files: &[&Path]) -> Result<PathBuf, PublishError> {
    use sha2::{Digest, Sha256};
    let mut text = String::new();
    for file in files {
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::open(file).map_err(|e| io("read", file, e))?;
        std::io::copy(&mut f, &mut hasher).map_err(|e| io("read", file, e))?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let sum: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!("{sum}  {name}\n"));
    }
    let path = dir.join("SHA256SUMS");
    let tmp = dir.join(".SHA256SUMS.tmp");
    std::fs::write(&tmp, text).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename to", &path, e))?;
    Ok(path)
}

/// Publishes a root filesystem tarball as image `spec` under `out`: copies it to the
/// image directory (keeping its `.tar.xz`/`.tar.zst`/`.tar.gz` suffix), writes
/// `meta.tar.xz` and `SHA256SUMS` (of both), signs the three and the index with `key`, and replaces the index line of
/// the same dist/release/arch/variant (other lines are kept). Returns the image directory.
/// Safe to run from several processes at once (a file lock in `out`).
pub fn publish(
    out: &Path,
    spec: &ImageSpec,
    rootfs_tarball: &Path,
    key: &pgp::composed::SignedSecretKey,
) -> Result<PathBuf, PublishError> {
    let rel = spec.rel_dir();
    let dir = out.join(&rel);
    // One publisher at a time per output directory (`DIR/.publish.lock`): two processes
    // publishing the same image or updating the index never interleave.
    let _lock = crate::image::CacheLock::acquire(&out.join(".publish"))?;
    std::fs::create_dir_all(&dir).map_err(|e| io("create directory", &dir, e))?;
    let name = rootfs_tarball
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let suffix = [".tar.xz", ".tar.zst", ".tar.gz"]
        .into_iter()
        .find(|s| name.ends_with(s))
        .ok_or_else(|| PublishError::Recipe {
            path: rootfs_tarball.to_path_buf(),
            message: "a root filesystem tarball must end in .tar.xz, .tar.zst or .tar.gz".into(),
        })?;
    let rootfs = dir.join(format!("rootfs{suffix}"));
    let tmp = dir.join(format!(".rootfs{suffix}.tmp"));
    std::fs::copy(rootfs_tarball, &tmp).map_err(|e| io("copy to", &tmp, e))?;
    std::fs::rename(&tmp, &rootfs).map_err(|e| io("rename to", &rootfs, e))?;
    sign_file(key, &rootfs)?;
    let meta = write_meta(spec, &dir)?;
    sign_file(key, &meta)?;
    let sums = write_sums(&dir, &[&rootfs, &meta])?;
    sign_file(key, &sums)?;

    let index_path = out.join(INDEX_PATH);
    if let Some(parent) = index_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create directory", parent, e))?;
    }
    let mut entries = match std::fs::read_to_string(&index_path) {
        Ok(text) => parse_index(&text, &index_path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("read", &index_path, e)),
    };
    upsert(
        &mut entries,
        IndexEntry {
            dist: spec.dist.clone(),
            release: spec.release.clone(),
            arch: spec.arch.clone(),
            variant: spec.variant.clone(),
            build: spec.build.clone(),
            path: format!("/{rel}/"),
        },
    );
    // LXC reads `index-system` as root and `index-user` for unprivileged users (whose
    // images carry `config-user`); both list the same images here.
    let text = render_index(&entries);
    for path in [index_path.clone(), out.join(USER_INDEX_PATH)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename to", &path, e))?;
        sign_file(key, &path)?;
    }
    tracing::info!(dir = %dir.display(), "image published");
    Ok(dir)
}
