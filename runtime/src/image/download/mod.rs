//! The `download` template: LXC's image index, signed images over HTTP(S), and their
//! cache.
//!
//! Everything here runs in the caller's own context, before a container directory
//! exists: [`prepare`] reads the index, downloads the rootfs and `meta.tar.xz` with their
//! `.asc` signatures into a partial cache entry, verifies both against the user's
//! keyring (and, when the image directory offers one, against its signed `SHA256SUMS`)
//! and only then renames the entry into place (`build_id` inside it marks it complete).
//! One process at a time works on an image's cache directory (`flock` on its `.lock`), so
//! concurrent creates of one image share one download. The container code then unpacks
//! the verified tarball like `-t local`; the first unpack also leaves a fast zstd copy
//! and the image's exclude list is applied (see [`cache`]).
//!
//! Settings, first found wins: the template's flags; the environment
//! (`ULXC_DOWNLOAD_SERVER`, `ULXC_DOWNLOAD_KEYRING`, `ULXC_DOWNLOAD_CA_FILE`);
//! `$XDG_CONFIG_HOME/ulxc/download.conf` (`server = URL`, `keyring = FILE`,
//! `ca_file = FILE`); the defaults (`images.linuxcontainers.org` over HTTPS,
//! `$XDG_CONFIG_HOME/ulxc/trusted.asc`).

pub mod cache;
pub mod fetch;
pub mod index;
pub mod meta;
pub mod verify;

#[cfg(test)]
mod tests;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub use fetch::{Client, ServerUrl};
pub use index::{Filter, IndexEntry};
pub use meta::Meta;
pub use verify::Keyring;

/// The public image server LXC uses.
pub const DEFAULT_SERVER: &str = "images.linuxcontainers.org";

/// What went wrong fetching an image.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server setting is unusable.
    #[error("image server `{server}`: {why}")]
    Server {
        /// As given.
        server: String,
        /// Why.
        why: String,
    },
    /// The server could not be reached or the transfer failed.
    #[error("cannot fetch {url}: {why}; check the server address and that it is up (--server, ULXC_DOWNLOAD_SERVER)")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The server answered with an HTTP error.
    #[error("{url}: the server answered HTTP {status}")]
    Http {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A download ended early.
    #[error("download of {url} is truncated: {got} of {expected} bytes ({why}); run the create again to resume it")]
    Truncated {
        /// The URL.
        url: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
        /// Why.
        why: String,
    },
    /// The index is malformed.
    #[error("{source_name} line {line}: {why}")]
    Index {
        /// The index URL.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// Why.
        why: String,
    },
    /// The server has no index.
    #[error("{server} has no image index (tried {tried}); is it an LXC image server?")]
    NoIndex {
        /// The server.
        server: String,
        /// The URLs tried.
        tried: String,
    },
    /// No image matches the request.
    #[error("no image {image} on {server}; {available}")]
    NoMatch {
        /// `DIST RELEASE ARCH (variant V)`.
        image: String,
        /// The server.
        server: String,
        /// What it offers.
        available: String,
    },
    /// The image directory lacks its rootfs.
    #[error("{url}: no rootfs.tar.xz, rootfs.tar.zst or rootfs.tar.gz there (HTTP 404); the server's index is out of date")]
    NoRootfs {
        /// The image directory URL.
        url: String,
    },
    /// The keyring is unusable.
    #[error("keyring {path}: {why}")]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A file's signature is missing or wrong.
    #[error("signature check of {file} failed: {why}; nothing was created")]
    Signature {
        /// The file.
        file: PathBuf,
        /// Why.
        why: String,
    },
    /// The server offers no `.asc` for a file.
    #[error("{url} has no signature ({url}.asc: HTTP 404); refusing an unsigned image (--no-validate skips the check)")]
    Unsigned {
        /// The signed file's URL.
        url: String,
    },
    /// A file does not match the SHA-256 the image's signed `SHA256SUMS` lists for it.
    #[error("{file} does not match the image's SHA256SUMS ({why}); nothing was created, the download is discarded")]
    Checksum {
        /// The file.
        file: PathBuf,
        /// What differs.
        why: String,
    },
    /// `meta.tar.xz` is unusable.
    #[error("image metadata {path}: {why}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The extra CA file is unusable.
    #[error("CA file {path}: {why}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The settings file is malformed.
    #[error("{path}:{line}: {why}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        why: String,
    },
    /// A local file operation failed.
    #[error("{what}")]
    Io {
        /// What was done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The template's arguments (`-t download -- ...`), as LXC's download template takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `-d`.
    pub dist: Option<String>,
    /// `-r`.
    pub release: Option<String>,
    /// `-a`.
    pub arch: Option<String>,
    /// `--variant` (default `default`).
    pub variant: Option<String>,
    /// `--server`.
    pub server: Option<String>,
    /// `--keyring`.
    pub keyring: Option<PathBuf>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--no-validate`.
    pub no_validate: bool,
    /// `--flush-cache`.
    pub flush_cache: bool,
    /// `--list`.
    pub list: bool,
}

/// The usage line of the template.
pub const USAGE: &str = "-t download -- [-d DIST -r RELEASE -a ARCH [--variant V]] [--server HOST[:PORT]|URL] [--keyring FILE] [--ca-file FILE] [--no-validate] [--flush-cache] [--list]";

impl Request {
    /// Parses the arguments after `--`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut r = Request::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("template option {flag} needs a value"))
            };
            match flag {
                "-d" | "--dist" => r.dist = Some(value()?),
                "-r" | "--release" => r.release = Some(value()?),
                "-a" | "--arch" => r.arch = Some(value()?),
                "-v" | "--variant" => r.variant = Some(value()?),
                "--server" => r.server = Some(value()?),
                "--keyring" => r.keyring = Some(absolute(PathBuf::from(value()?))),
                "--ca-file" => r.ca_file = Some(absolute(PathBuf::from(value()?))),
                "--no-validate" => r.no_validate = true,
                "--flush-cache" => r.flush_cache = true,
                "-l" | "--list" => r.list = true,
                other => {
                    return Err(format!(
                        "unknown option {other} for the download template; it takes {USAGE}"
                    ))
                }
            }
        }
        for (name, v) in [
            ("-d", &r.dist),
            ("-r", &r.release),
            ("-a", &r.arch),
            ("--variant", &r.variant),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                    return Err(format!("{name} `{v}` is not a plain name"));
                }
            }
        }
        Ok(r)
    }

    /// The flags among `-d`, `-r`, `-a` that were not given.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("-d DIST", &self.dist),
            ("-r RELEASE", &self.release),
            ("-a ARCH", &self.arch),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(f, _)| f)
        .collect()
    }

    /// The variant asked for.
    pub fn variant(&self) -> &str {
        self.variant.as_deref().unwrap_or("default")
    }

    /// The index filter of this request.
    pub fn filter(&self) -> Filter<'_> {
        Filter {
            dist: self.dist.as_deref(),
            release: self.release.as_deref(),
            arch: self.arch.as_deref(),
            variant: self.variant.as_deref(),
        }
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Where things are, after flags, environment and the settings file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server.
    pub server: ServerUrl,
    /// The keyring (`None` with `--no-validate`).
    pub keyring: Option<PathBuf>,
    /// An extra CA file.
    pub ca_file: Option<PathBuf>,
    /// `$XDG_CACHE_HOME/lxc/download`.
    pub cache: PathBuf,
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(fallback),
    }
}

/// `$XDG_CONFIG_HOME/ulxc/download.conf`.
pub fn settings_file() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("ulxc/download.conf")
}

impl Settings {
    /// Resolves the settings of `req`.
    pub fn resolve(req: &Request) -> Result<Self, DownloadError> {
        let file = settings_file();
        let mut conf: std::collections::HashMap<String, String> = Default::default();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let bad = |why: String| DownloadError::Settings {
                        path: file.clone(),
                        line: n + 1,
                        why,
                    };
                    let (k, v) = line
                        .split_once('=')
                        .ok_or_else(|| bad(format!("expected `key = value`, found `{line}`")))?;
                    let k = k.trim();
                    if !["server", "keyring", "ca_file"].contains(&k) {
                        return Err(bad(format!(
                            "unknown setting `{k}`; known: server, keyring, ca_file"
                        )));
                    }
                    conf.insert(k.to_string(), v.trim().trim_matches('"').to_string());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DownloadError::Io {
                    what: format!("cannot read {}", file.display()),
                    source: e,
                })
            }
        }
        let pick = |flag: Option<String>, env: &str, key: &str| {
            flag.or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
                .or_else(|| conf.get(key).cloned())
        };
        let server = pick(req.server.clone(), "ULXC_DOWNLOAD_SERVER", "server")
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let keyring = pick(
            req.keyring.as_ref().map(|p| p.display().to_string()),
            "ULXC_DOWNLOAD_KEYRING",
            "keyring",
        )
        .map(PathBuf::from)
        .unwrap_or_else(|| xdg("XDG_CONFIG_HOME", ".config").join("ulxc/trusted.asc"));
        let ca_file = pick(
            req.ca_file.as_ref().map(|p| p.display().to_string()),
            "ULXC_DOWNLOAD_CA_FILE",
            "ca_file",
        )
        .map(PathBuf::from);
        Ok(Settings {
            server: ServerUrl::parse(&server)?,
            keyring: (!req.no_validate).then_some(keyring),
            ca_file,
            cache: xdg("XDG_CACHE_HOME", ".cache").join("lxc/download"),
        })
    }
}

/// Fetches the index: `meta/1.0/index-system.7` first, then `meta/1.0/index-system`,
/// as LXC does.
pub fn fetch_index(client: &Client, server: &ServerUrl) -> Result<Vec<IndexEntry>, DownloadError> {
    let mut tried = Vec::new();
    for name in [
        format!("meta/1.0/index-system.{}", meta::COMPAT_LEVEL),
        "meta/1.0/index-system".to_string(),
    ] {
        let url = server.join(&name);
        // Like LXC, any failure of the compat-suffixed index falls back to the plain one.
        let compat = tried.is_empty();
        match client.get_text(&url) {
            Ok(Some(text)) => return index::parse(&text, &url),
            Ok(None) => {}
            Err(DownloadError::Http { status, .. }) if compat => {
                tracing::debug!(url, status, "no compat index; trying the plain one");
            }
            Err(e) => return Err(e),
        }
        tried.push(url);
    }
    Err(DownloadError::NoIndex {
        server: server.as_str().to_string(),
        tried: tried.join(", "),
    })
}

/// Asks for the missing `-d`, `-r`, `-a` as LXC does (`Distribution: ` ...).
pub fn ask_missing(
    req: &mut Request,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for (label, slot) in [
        ("Distribution", &mut req.dist),
        ("Release", &mut req.release),
        ("Architecture", &mut req.arch),
    ] {
        if slot.is_none() {
            write!(out, "{label}: ")?;
            out.flush()?;
            let mut line = String::new();
            input.read_line(&mut line)?;
            let v = line.trim();
            if !v.is_empty() {
                *slot = Some(v.to_string());
            }
        }
    }
    Ok(())
}

/// A verified image in the cache, ready to unpack.
#[derive(Debug, Clone)]
pub struct Image {
    /// The index line.
    pub entry: IndexEntry,
    /// The cache entry directory.
    pub dir: PathBuf,
    /// The rootfs tarball in it.
    pub rootfs: PathBuf,
    /// Its metadata.
    pub meta: Meta,
    /// Whether nothing had to be downloaded.
    pub from_cache: bool,
    /// Lines for the user.
    pub notes: Vec<String>,
}

const ROOTFS_NAMES: [&str; 3] = ["rootfs.tar.xz", "rootfs.tar.zst", "rootfs.tar.gz"];
const BUILD_ID: &str = "build_id";

fn io(what: String) -> impl FnOnce(std::io::Error) -> DownloadError {
    move |source| DownloadError::Io { what, source }
}

/// Fetches (or finds in the cache) and verifies the image `req` names; `-d`, `-r` and
/// `-a` must be set. Nothing outside the cache is written.
pub fn prepare(req: &Request) -> Result<Image, DownloadError> {
    let (Some(dist), Some(release), Some(arch)) = (&req.dist, &req.release, &req.arch) else {
        return Err(DownloadError::Server {
            server: String::new(),
            why: format!("the download template needs {}", req.missing().join(" ")),
        });
    };
    let settings = Settings::resolve(req)?;
    let keyring = match &settings.keyring {
        Some(path) => Some(Keyring::load(path)?),
        None => {
            tracing::warn!("--no-validate: the image's signatures are NOT checked; anyone between you and the server can change it");
            None
        }
    };
    let variant = req.variant();
    let variant_dir = settings
        .cache
        .join(dist)
        .join(release)
        .join(arch)
        .join(variant);
    // One create at a time per image: a second one waits, then finds the cache ready.
    let _lock = lock_image_dir(&variant_dir)?;
    if req.flush_cache {
        eprintln!("Flushing the cache...");
        flush(&variant_dir)?;
    }
    let client = Client::new(&settings.server, settings.ca_file.as_deref())?;
    eprintln!("Downloading the image index");
    let entries = match fetch_index(&client, &settings.server) {
        Ok(e) => e,
        Err(e @ DownloadError::Transport { .. }) => {
            if let Some(image) = newest_cached(&variant_dir, keyring.as_ref())? {
                tracing::warn!(error = %e, "the image server is unreachable; using the cached build {}", image.entry.build);
                return Ok(image);
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let filter = Filter {
        dist: Some(dist),
        release: Some(release),
        arch: Some(arch),
        variant: Some(variant),
    };
    let Some(entry) = entries.iter().find(|e| filter.matches(e)).cloned() else {
        let offered: Vec<String> = entries
            .iter()
            .filter(|e| &e.dist == dist)
            .map(|e| format!("{} {} {} {}", e.dist, e.release, e.arch, e.variant))
            .collect();
        return Err(DownloadError::NoMatch {
            image: format!("{dist} {release} {arch} (variant {variant})"),
            server: settings.server.as_str().to_string(),
            available: if offered.is_empty() {
                format!(
                    "it has {} images, none of {dist} (see --list)",
                    entries.len()
                )
            } else {
                format!("it offers: {}", offered.join(", "))
            },
        });
    };
    let entry_dir = variant_dir.join(&entry.build);
    if let Some(image) = cached(&entry_dir, &entry, keyring.as_ref())? {
        eprintln!("The cache is already up to date\nUsing image from local cache");
        return Ok(image);
    }
    let image = download(
        &client,
        &settings.server,
        &variant_dir,
        &entry,
        keyring.as_ref(),
    )?;
    eprintln!("The image cache is now ready");
    Ok(image)
}

/// The name of the lock file in an image's cache directory.
pub const LOCK_FILE: &str = ".lock";

/// Creates `variant_dir` and takes the exclusive `flock` on its [`LOCK_FILE`], waiting
/// (with a line on stderr) while another process holds it. Released when dropped.
fn lock_image_dir(variant_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DownloadError> {
    use nix::fcntl::{Flock, FlockArg};
    std::fs::create_dir_all(variant_dir)
        .map_err(io(format!("cannot create {}", variant_dir.display())))?;
    let path = variant_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("cannot open the lock file {}", path.display())))?;
    let lock_err = |errno: nix::errno::Errno| DownloadError::Io {
        what: format!("cannot lock {}", path.display()),
        source: errno.into(),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            eprintln!("Waiting for another create of the same image to fill the cache");
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| lock_err(errno))
        }
        Err((_, errno)) => Err(lock_err(errno)),
    }
}

/// Empties an image's cache directory (`--flush-cache`), keeping its lock file.
fn flush(variant_dir: &Path) -> Result<(), DownloadError> {
    let read = std::fs::read_dir(variant_dir)
        .map_err(io(format!("cannot read {}", variant_dir.display())))?;
    for item in read {
        let item = item.map_err(io(format!("cannot read {}", variant_dir.display())))?;
        if item.file_name() == LOCK_FILE {
            continue;
        }
        let path = item.path();
        let removed = if item.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(format!("cannot remove {}", path.display())))?;
    }
    Ok(())
}

/// A complete, verified cache entry for `entry`, or `None`. An entry that fails its
/// check is removed (with a warning) so that it is downloaded again.
fn cached(
    dir: &Path,
    entry: &IndexEntry,
    keyring: Option<&Keyring>,
) -> Result<Option<Image>, DownloadError> {
    let build = match std::fs::read_to_string(dir.join(BUILD_ID)) {
        Ok(b) => b,
        Err(_) => return Ok(None),
    };
    if build.trim() != entry.build {
        return Ok(None);
    }
    let Some(rootfs) = ROOTFS_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    // The fast copy, checked against its recorded SHA-256, stands in for the signed
    // tarball it was made from (see `cache`); without it the signature is checked again.
    let fast = cache::fast_copy(dir);
    let check = || -> Result<Meta, DownloadError> {
        let meta_path = dir.join("meta.tar.xz");
        if let Some(k) = keyring {
            if fast.is_none() {
                k.verify_file(&rootfs, &asc(&rootfs))?;
            }
            k.verify_file(&meta_path, &asc(&meta_path))?;
        }
        Meta::read(&meta_path)
    };
    match check() {
        Ok(meta) => {
            if let Some(t) = meta.expiry() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                if t < now {
                    eprintln!("The cached copy has expired, re-downloading...");
                    std::fs::remove_dir_all(dir)
                        .map_err(io(format!("cannot remove {}", dir.display())))?;
                    return Ok(None);
                }
            }
            keep_excludes(dir, &meta)?;
            Ok(Some(Image {
                entry: entry.clone(),
                dir: dir.to_path_buf(),
                rootfs: fast.unwrap_or(rootfs),
                notes: meta.ignored_notes(),
                meta,
                from_cache: true,
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the cached image {} fails its check; downloading it again", dir.display());
            std::fs::remove_dir_all(dir).map_err(io(format!("cannot remove {}", dir.display())))?;
            Ok(None)
        }
    }
}

/// The newest complete entry under `variant_dir` (used when the server is unreachable).
fn newest_cached(
    variant_dir: &Path,
    keyring: Option<&Keyring>,
) -> Result<Option<Image>, DownloadError> {
    let Ok(read) = std::fs::read_dir(variant_dir) else {
        return Ok(None);
    };
    let mut builds: Vec<String> = read
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    builds.sort();
    while let Some(build) = builds.pop() {
        let parts: Vec<String> = variant_dir
            .iter()
            .rev()
            .take(4)
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if parts.len() < 4 {
            return Ok(None);
        }
        let entry = IndexEntry {
            dist: parts[3].clone(),
            release: parts[2].clone(),
            arch: parts[1].clone(),
            variant: parts[0].clone(),
            build: build.clone(),
            path: String::new(),
        };
        if let Some(image) = cached(&variant_dir.join(&build), &entry, keyring)? {
            return Ok(Some(image));
        }
    }
    Ok(None)
}

/// The optional list of SHA-256 sums in an image directory.
pub const SUMS_NAME: &str = "SHA256SUMS";

/// If the image directory offers `SHA256SUMS`, fetches it (and, with a keyring, checks its
/// `.asc`) and checks each of `files` against it: each must be listed, with its sum.
/// Without the file nothing is checked (it is optional, as in LXC's images).
fn check_sums(
    client: &Client,
    server: &ServerUrl,
    entry: &IndexEntry,
    partial: &Path,
    keyring: Option<&Keyring>,
    files: &[&Path],
) -> Result<(), DownloadError> {
    let url = server.join(&format!("{}/{SUMS_NAME}", entry.path));
    let sums_path = partial.join(SUMS_NAME);
    let _ = std::fs::remove_file(&sums_path);
    if !client.download(&url, &sums_path, SUMS_NAME)? {
        tracing::debug!(url, "no SHA256SUMS offered");
        return Ok(());
    }
    if let Some(k) = keyring {
        let sig = asc(&sums_path);
        let _ = std::fs::remove_file(&sig);
        if !client.download(&format!("{url}.asc"), &sig, &format!("{SUMS_NAME}.asc"))? {
            return Err(DownloadError::Unsigned { url });
        }
        k.verify_file(&sums_path, &sig)?;
    }
    let text = std::fs::read_to_string(&sums_path)
        .map_err(io(format!("cannot read {}", sums_path.display())))?;
    let listed = parse_sums(&text);
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |why: String| DownloadError::Checksum {
            file: file.to_path_buf(),
            why,
        };
        let Some(expected) = listed.get(&name) else {
            return Err(bad(format!("{SUMS_NAME} does not list {name}")));
        };
        let actual = std::fs::File::open(file)
            .and_then(cache::sha256_hex)
            .map_err(io(format!("cannot read {}", file.display())))?;
        if &actual != expected {
            return Err(bad(format!("SHA-256 {actual}, listed {expected}")));
        }
    }
    Ok(())
}

/// `HEX  NAME` or `HEX *NAME` lines (sha256sum's format): name to lowercase hex sum.
pub fn parse_sums(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (sum, name) = line.trim().split_once(char::is_whitespace)?;
            let name = name.trim_start().trim_start_matches('*');
            let name = name.rsplit('/').next().unwrap_or(name);
            (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_string(), sum.to_ascii_lowercase()))
        })
        .collect()
}

/// Records the image's exclude list in the cache entry, where the unpack finds it.
fn keep_excludes(dir: &Path, meta: &Meta) -> Result<(), DownloadError> {
    cache::write_excludes(dir, &meta.excludes()).map_err(io(format!(
        "cannot write {}",
        dir.join(cache::EXCLUDES_NAME).display()
    )))
}

fn asc(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".asc");
    PathBuf::from(s)
}

/// Downloads `entry` into `VARIANT/.partial-BUILD`, verifies it, writes `build_id` and
/// renames the entry to `VARIANT/BUILD`; older builds are removed.
fn download(
    client: &Client,
    server: &ServerUrl,
    variant_dir: &Path,
    entry: &IndexEntry,
    keyring: Option<&Keyring>,
) -> Result<Image, DownloadError> {
    let partial = variant_dir.join(format!(".partial-{}", entry.build));
    std::fs::create_dir_all(&partial)
        .map_err(io(format!("cannot create {}", partial.display())))?;
    let result = (|| -> Result<(PathBuf, Meta), DownloadError> {
        let mut rootfs = None;
        for name in ROOTFS_NAMES {
            let url = server.join(&format!("{}/{name}", entry.path));
            let dest = partial.join(name);
            if client.download(&url, &dest, name)? {
                rootfs = Some((url, dest));
                break;
            }
        }
        let Some((rootfs_url, rootfs)) = rootfs else {
            return Err(DownloadError::NoRootfs {
                url: server.join(&entry.path),
            });
        };
        let meta_url = server.join(&format!("{}/meta.tar.xz", entry.path));
        let meta_path = partial.join("meta.tar.xz");
        if !client.download(&meta_url, &meta_path, "meta.tar.xz")? {
            return Err(DownloadError::Http {
                url: meta_url,
                status: 404,
            });
        }
        if let Some(k) = keyring {
            for (url, file) in [(&rootfs_url, &rootfs), (&meta_url, &meta_path)] {
                let sig = asc(file);
                let _ = std::fs::remove_file(&sig);
                let label = format!(
                    "{}.asc",
                    file.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                );
                if !client.download(&format!("{url}.asc"), &sig, &label)? {
                    return Err(DownloadError::Unsigned { url: url.clone() });
                }
                if let Err(e) = k.verify_file(file, &sig) {
                    // A bad file must not be resumed from next time.
                    let _ = std::fs::remove_dir_all(&partial);
                    return Err(e);
                }
            }
        }
        if let Err(e) = check_sums(
            client,
            server,
            entry,
            &partial,
            keyring,
            &[&rootfs, &meta_path],
        ) {
            // A bad file must not be resumed from next time.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        let meta = Meta::read(&meta_path).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&partial);
        })?;
        Ok((rootfs, meta))
    })();
    let (rootfs, meta) = result?;
    let id = partial.join(BUILD_ID);
    std::fs::write(&id, format!("{}\n", entry.build))
        .map_err(io(format!("cannot write {}", id.display())))?;
    let final_dir = variant_dir.join(&entry.build);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .map_err(io(format!("cannot remove {}", final_dir.display())))?;
    }
    std::fs::rename(&partial, &final_dir)
        .map_err(io(format!("cannot move {} into place", partial.display())))?;
    if let Ok(read) = std::fs::read_dir(variant_dir) {
        for old in read.flatten() {
            let name = old.file_name();
            if name != std::ffi::OsStr::new(&entry.build)
                && !name.to_string_lossy().starts_with('.')
            {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    let rootfs = final_dir.join(rootfs.file_name().unwrap_or_default());
    keep_excludes(&final_dir, &meta)?;
    Ok(Image {
        entry: entry.clone(),
        dir: final_dir,
        rootfs,
        notes: meta.ignored_notes(),
        meta,
        from_cache: false,
    })
}
