//! Safe unpacking of a rootfs tarball (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`, `.tar.zst`,
//! told apart by their magic bytes) into a container's rootfs directory.
//!
//! The reading is the `tar` crate's; the writing is done here, entry by entry, because a
//! rootfs needs what `tar::Entry::unpack` does not give: errors (not silent skips) for
//! unsafe entries, no write through any symlink, relative symlinks checked to stay inside,
//! hard links only to earlier entries, device nodes skipped and counted, fifos created,
//! directory modes applied at the end (a 0555 directory must not block its own contents),
//! and `trusted.*`/`security.*` xattrs skipped where the namespace may not set them.
//!
//! A compressed tarball is decoded on its own thread, ahead of the unpack, and read to its
//! very end (so the format's own check is verified). A download cache entry's tarball
//! (see [`super::download::cache`]) also gets its exclude list applied and, the first
//! time, a fast zstd copy written from the decoded stream.
//!
//! Invariant: every path written is `dest` joined with a normalized relative path whose
//! parent components were checked with `lstat` to be real directories (or created here);
//! nothing else writes into `dest` while unpacking (the container is not running yet).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;
use tar::{EntryType, Header};

use super::ImageError;

/// How many skipped device names [`UnpackSummary`] keeps.
const KEPT_DEVICE_NAMES: usize = 5;

/// The compression of a tarball, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Detects the compression of `path` by its magic bytes; a file without a known magic
    /// is a plain tar if it has the ustar magic at offset 257 or is named `*.tar`.
    pub fn detect(path: &Path) -> Result<Compression, ImageError> {
        let mut head = Vec::with_capacity(512);
        File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(|source| ImageError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_magic(&head, path)
    }

    fn from_magic(head: &[u8], path: &Path) -> Result<Compression, ImageError> {
        let found = if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            return Err(ImageError::UnsupportedCompression {
                path: path.into(),
                format: "bzip2",
            });
        } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
            return Err(ImageError::UnsupportedCompression {
                path: path.into(),
                format: "lz4",
            });
        } else if head.len() >= 262 && &head[257..262] == b"ustar"
            || path.extension() == Some(OsStr::new("tar"))
        {
            Compression::None
        } else {
            let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(ImageError::UnknownFormat {
                path: path.into(),
                first_bytes: shown.join(" "),
            });
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let by_name = if name.ends_with(".gz") || name.ends_with(".tgz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".xz") || name.ends_with(".txz") {
            Some(Compression::Xz)
        } else if name.ends_with(".zst") || name.ends_with(".tzst") {
            Some(Compression::Zstd)
        } else {
            None
        };
        if by_name.is_some_and(|n| n != found) {
            tracing::info!(
                ?path,
                ?found,
                "the tarball's name does not match its content; using the content"
            );
        }
        Ok(found)
    }
}

/// How to unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackOptions {
    /// Set each entry's uid/gid from the archive (true inside the container's user
    /// namespace; false as an ordinary user, e.g. in tests: everything is then the caller's).
    pub preserve_owners: bool,
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnpackSummary {
    /// Entries read from the archive (including skipped ones).
    pub entries: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// The first few skipped device nodes, as container paths (`/dev/null`).
    pub skipped_devices: Vec<String>,
    /// How many device nodes were skipped.
    pub skipped_device_count: u64,
    /// How many `trusted.*`/`security.*` (or unsupported) xattrs could not be set.
    pub skipped_xattrs: u64,
    /// How many entries the image's exclude list left out.
    pub excluded: u64,
}

impl UnpackSummary {
    /// The one line to show about skipped device nodes, LXC-style, or `None` if there were
    /// none: "skipped 12 device nodes (/dev/console, /dev/null, ...): they cannot be
    /// created in a user namespace; /dev is populated at start".
    pub fn skipped_devices_line(&self) -> Option<String> {
        if self.skipped_device_count == 0 {
            return None;
        }
        let mut names = self.skipped_devices.join(", ");
        if self.skipped_device_count > self.skipped_devices.len() as u64 {
            names.push_str(", ...");
        }
        let noun = if self.skipped_device_count == 1 {
            "device node"
        } else {
            "device nodes"
        };
        Some(format!(
            "skipped {} {noun} ({names}): they cannot be created in a user namespace; \
             /dev is populated at start",
            self.skipped_device_count
        ))
    }
}

/// Unpacks `tarball` into the existing directory `dest`.
///
/// On an error `dest` is left half-filled; the caller removes it (see
/// [`super::remove_tree`]). Each unsafe entry is an error naming it: an absolute path or a
/// `..` component; a hard link whose target is absolute, has `..` or is not an earlier
/// entry; a relative symlink that resolves lexically outside the rootfs; an entry that would
/// be written through a symlink. Absolute symlink targets are allowed (they resolve inside
/// the container). Device nodes are skipped and counted.
pub fn unpack_tarball(
    tarball: &Path,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackSummary, ImageError> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {}
        _ => {
            return Err(ImageError::DestNotDir {
                path: dest.to_path_buf(),
            })
        }
    }
    let compression = Compression::detect(tarball)?;
    let file = File::open(tarball).map_err(|source| ImageError::Open {
        path: tarball.into(),
        source,
    })?;
    let file = io::BufReader::with_capacity(1 << 16, file);
    let open_err = |source| ImageError::Open {
        path: tarball.into(),
        source,
    };
    let decoder: Box<dyn Read + Send> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(open_err)?)
        }
    };
    tracing::debug!(?tarball, ?dest, ?compression, ?opts, "unpacking");
    let mut unpacker = Unpacker {
        tarball,
        dest,
        opts: *opts,
        summary: UnpackSummary::default(),
        dirs_ok: HashSet::new(),
        nondirs: HashSet::new(),
        skipped_nodes: HashSet::new(),
        deferred_dirs: Vec::new(),
        last_entry: None,
        excludes: super::download::cache::excludes_for(tarball),
        buffer: Vec::new(),
        umask: current_umask(),
    };
    if compression == Compression::None {
        unpacker.archive(decoder)?;
    } else {
        // Decoding runs on its own thread, ahead of the unpack (which spends its time in
        // syscalls); a cache entry's xz/gzip tarball is also teed into its fast copy.
        let mut fast_copy = match compression {
            Compression::Xz | Compression::Gzip => super::download::cache::FastCopy::plan(tarball),
            _ => None,
        };
        std::thread::scope(|scope| -> Result<(), ImageError> {
            let (data_tx, data_rx) = std::sync::mpsc::sync_channel(DECODED_CHUNKS_AHEAD);
            let (copy_tx, encoder) = match fast_copy.as_mut().and_then(|c| c.take_file()) {
                Some(file) => {
                    let (tx, rx) = std::sync::mpsc::sync_channel(DECODED_CHUNKS_AHEAD);
                    let encoder =
                        scope.spawn(move || super::download::cache::FastCopy::encode(file, rx));
                    (Some(tx), Some(encoder))
                }
                None => (None, None),
            };
            scope.spawn(move || decode_ahead(decoder, data_tx, copy_tx));
            let result = unpacker.archive(ChunkReader {
                chunks: data_rx,
                current: None,
                offset: 0,
            });
            // The decoder thread sees the receiver gone (on an error) and stops.
            let copied = encoder.map(|e| e.join());
            result?;
            if let (Some(copy), Some(copied)) = (fast_copy.take(), copied) {
                match copied {
                    Ok(Ok(sum)) => {
                        if let Err(e) = copy.commit(&sum) {
                            tracing::warn!(%e, "cannot keep the fast copy of the rootfs");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(%e, "no fast copy of the rootfs"),
                    Err(_) => tracing::warn!("the fast copy's encoder panicked"),
                }
            }
            Ok(())
        })?;
    }
    unpacker.finish_dirs()?;
    if let Some(line) = unpacker.summary.skipped_devices_line() {
        tracing::info!("{line}");
    }
    tracing::info!(
        ?tarball,
        entries = unpacker.summary.entries,
        bytes = unpacker.summary.bytes,
        skipped_xattrs = unpacker.summary.skipped_xattrs,
        excluded = unpacker.summary.excluded,
        "unpacked"
    );
    Ok(unpacker.summary)
}

/// How many decoded chunks the decoder thread may run ahead of the unpack.
const DECODED_CHUNKS_AHEAD: usize = 8;
/// The buffer through which file data is copied.
const COPY_BUFFER: usize = 1 << 18;
/// The size of a decoded chunk.
const DECODED_CHUNK: usize = 1 << 20;

/// What the decoder thread sends: data, a decoding error, or the clean end.
enum Decoded {
    Data(std::sync::Arc<[u8]>),
    Failed(io::Error),
    End,
}

/// The decoder thread: reads `decoder` to its end in chunks, sending each to the unpack
/// (`data`) and, if given, to the fast copy's encoder (`copy`, `None` marks the clean
/// end). Stops when the unpack is gone.
fn decode_ahead(
    mut decoder: Box<dyn Read + Send>,
    data: std::sync::mpsc::SyncSender<Decoded>,
    mut copy: Option<std::sync::mpsc::SyncSender<Option<std::sync::Arc<[u8]>>>>,
) {
    loop {
        let mut chunk = vec![0u8; DECODED_CHUNK];
        let mut filled = 0;
        let mut failed = None;
        while filled < chunk.len() {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if filled > 0 {
            chunk.truncate(filled);
            let chunk: std::sync::Arc<[u8]> = chunk.into();
            if let Some(tx) = &copy {
                if tx.send(Some(chunk.clone())).is_err() {
                    copy = None;
                }
            }
            if data.send(Decoded::Data(chunk)).is_err() {
                return;
            }
        }
        if let Some(e) = failed {
            let _ = data.send(Decoded::Failed(e));
            return;
        }
        if filled < DECODED_CHUNK {
            if let Some(tx) = &copy {
                let _ = tx.send(None);
            }
            let _ = data.send(Decoded::End);
            return;
        }
    }
}

/// The unpack's side of [`decode_ahead`].
struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<Decoded>,
    current: Option<std::sync::Arc<[u8]>>,
    offset: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                if self.offset < chunk.len() {
                    let n = buf.len().min(chunk.len() - self.offset);
                    buf[..n].copy_from_slice(&chunk[self.offset..self.offset + n]);
                    self.offset += n;
                    return Ok(n);
                }
            }
            match self.chunks.recv() {
                Ok(Decoded::Data(chunk)) => {
                    self.current = Some(chunk);
                    self.offset = 0;
                }
                Ok(Decoded::Failed(e)) => return Err(e),
                Ok(Decoded::End) => {
                    self.current = None;
                    return Ok(0);
                }
                Err(_) => return Err(io::Error::other("the decoder stopped early")),
            }
        }
    }
}

struct Unpacker<'a> {
    tarball: &'a Path,
    dest: &'a Path,
    opts: UnpackOptions,
    summary: UnpackSummary,
    /// Relative directories checked (or made) to be real directories.
    dirs_ok: HashSet<PathBuf>,
    /// Relative paths of non-directory entries unpacked so far (hard link targets).
    nondirs: HashSet<PathBuf>,
    /// Relative paths of skipped device nodes (a hard link to one is skipped too).
    skipped_nodes: HashSet<PathBuf>,
    /// Directory metadata applied at the end: path, mode, mtime.
    deferred_dirs: Vec<(PathBuf, u32, Option<FileTime>)>,
    /// The last entry read, to say where a corrupt archive broke.
    last_entry: Option<String>,
    /// Patterns of entries to leave out (a download cache entry's exclude list).
    excludes: Vec<Vec<String>>,
    /// The data copy buffer, reused from file to file.
    buffer: Vec<u8>,
    /// The process's umask (bits a file's mode at creation would lose).
    umask: u32,
}

/// The process's umask, read from `/proc/self/status` (setting it to read it would race
/// with other threads); 0o777 (always chmod) when it cannot be read.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// Normalizes an entry path: leading and inner `.` dropped; absolute or `..` refused.
fn normalize(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err("has an absolute path"),
            Component::ParentDir => return Err("has a `..` component"),
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
        }
    }
    Ok(out)
}

/// Whether the relative symlink `target`, placed at `link` (relative to the rootfs),
/// resolves lexically inside the rootfs.
fn relative_link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Normal(_) => depth += 1,
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    true
}

fn mtime_of(header: &Header) -> Option<FileTime> {
    header
        .mtime()
        .ok()
        .and_then(|t| i64::try_from(t).ok())
        .map(|t| FileTime::from_unix_time(t, 0))
}

fn is_errno(err: &io::Error, codes: &[i32]) -> bool {
    err.raw_os_error().is_some_and(|code| codes.contains(&code))
}

impl Unpacker<'_> {
    /// Unpacks every entry of the tar stream `reader`, then reads it to its end (so that
    /// the decoder checks the whole compressed stream, trailing check included).
    fn archive<R: Read>(&mut self, reader: R) -> Result<(), ImageError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|source| self.corrupt(None, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| self.corrupt(None, source))?;
            self.entry(entry)?;
        }
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map_err(|source| self.corrupt(None, source))?;
        Ok(())
    }

    fn corrupt(&self, entry: Option<&str>, source: io::Error) -> ImageError {
        ImageError::Corrupt {
            tarball: self.tarball.to_path_buf(),
            entry: match (entry, &self.last_entry) {
                (Some(e), _) => format!(" at entry `{e}`"),
                (None, Some(last)) => format!(" after entry `{last}`"),
                (None, None) => String::new(),
            },
            source,
        }
    }

    fn unsafe_entry(&self, entry: &str, why: String) -> ImageError {
        ImageError::UnsafeEntry {
            tarball: self.tarball.to_path_buf(),
            entry: entry.to_string(),
            why,
        }
    }

    fn write_err(&self, entry: &str, path: &Path, source: io::Error) -> ImageError {
        ImageError::Write {
            entry: entry.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        self.summary.entries += 1;
        let raw = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
        let name = raw.display().to_string();
        self.last_entry = Some(name.clone());
        let rel = normalize(&raw).map_err(|why| self.unsafe_entry(&name, why.to_string()))?;
        let kind = entry.header().entry_type();
        if !self.excludes.is_empty() {
            let parts: Vec<&[u8]> = rel.iter().map(|c| c.as_bytes()).collect();
            if super::download::cache::is_excluded(&self.excludes, &parts) {
                tracing::debug!(entry = %name, "left out by the image's exclude list");
                self.summary.excluded += 1;
                // A hard link to it is left out too.
                self.skipped_nodes.insert(rel);
                return Ok(());
            }
        }
        if kind.is_character_special() || kind.is_block_special() {
            self.summary.skipped_device_count += 1;
            if self.summary.skipped_devices.len() < KEPT_DEVICE_NAMES {
                self.summary
                    .skipped_devices
                    .push(format!("/{}", rel.display()));
            }
            tracing::debug!(entry = %name, "skipping a device node");
            self.skipped_nodes.insert(rel);
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                return self.directory(&mut entry, &rel, &name);
            }
            return Err(self.unsafe_entry(
                &name,
                "names the rootfs itself but is not a directory".into(),
            ));
        }
        if let Some(parent) = rel.parent() {
            self.ensure_parents(parent, &name)?;
        }
        match kind {
            EntryType::Directory => self.directory(&mut entry, &rel, &name),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(&mut entry, &rel, &name, kind != EntryType::GNUSparse)
            }
            EntryType::Symlink => self.symlink(&mut entry, &rel, &name),
            EntryType::Link => self.hard_link(&mut entry, &rel, &name),
            EntryType::Fifo => self.fifo(&mut entry, &rel, &name),
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping an entry of an unsupported type");
                Ok(())
            }
        }
    }

    /// Checks that each component of `parent` is a real directory, creating missing ones.
    fn ensure_parents(&mut self, parent: &Path, name: &str) -> Result<(), ImageError> {
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.dirs_ok.contains(&prefix) {
                continue;
            }
            let full = self.dest.join(&prefix);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = fs::read_link(&full).unwrap_or_default();
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "would be written through the symlink `{}` -> `{}`; links are never \
                             followed while unpacking",
                            prefix.display(),
                            target.display()
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(self.unsafe_entry(
                        name,
                        format!(
                            "needs `{}` to be a directory, but it is a file",
                            prefix.display()
                        ),
                    ));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&full).map_err(|e| self.write_err(name, &full, e))?;
                }
                Err(err) => return Err(self.write_err(name, &full, err)),
            }
            self.dirs_ok.insert(prefix.clone());
        }
        Ok(())
    }

    /// Makes room for a non-directory at `rel`: removes a file or symlink there (without
    /// following it) or an empty directory; a non-empty directory is an error.
    fn clear_for_nondir(&mut self, rel: &Path, name: &str) -> Result<PathBuf, ImageError> {
        let full = self.dest.join(rel);
        match fs::symlink_metadata(&full) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(self.write_err(name, &full, err)),
            Ok(meta) if meta.is_dir() => {
                fs::remove_dir(&full).map_err(|_| {
                    self.unsafe_entry(
                        name,
                        "would replace a non-empty directory of the archive".into(),
                    )
                })?;
                self.dirs_ok.retain(|p| !p.starts_with(rel));
                self.deferred_dirs.retain(|(p, _, _)| !p.starts_with(rel));
            }
            Ok(_) => fs::remove_file(&full).map_err(|e| self.write_err(name, &full, e))?,
        }
        self.nondirs.insert(rel.to_path_buf());
        Ok(full)
    }

    fn owner(&self, header: &Header, name: &str) -> Result<Option<(u32, u32)>, ImageError> {
        if !self.opts.preserve_owners {
            return Ok(None);
        }
        let bad = |what: &str| self.unsafe_entry(name, format!("has an unreadable {what}"));
        let uid = header.uid().map_err(|_| bad("uid"))?;
        let gid = header.gid().map_err(|_| bad("gid"))?;
        match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(uid), Ok(gid)) => Ok(Some((uid, gid))),
            _ => Err(self.unsafe_entry(name, format!("has owner {uid}:{gid}, beyond 32-bit ids"))),
        }
    }

    fn chown_err(&self, name: &str, owner: (u32, u32), source: io::Error) -> ImageError {
        ImageError::Owner {
            entry: name.to_string(),
            uid: owner.0,
            gid: owner.1,
            source,
        }
    }

    fn directory<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ImageError> {
        let full = self.dest.join(rel);
        // mkdir never follows a link; only when something is in the way is it examined.
        match fs::create_dir(&full) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                match fs::symlink_metadata(&full) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&full).map_err(|e| self.write_err(name, &full, e))?;
                        fs::create_dir(&full).map_err(|e| self.write_err(name, &full, e))?;
                    }
                    Err(err) => return Err(self.write_err(name, &full, err)),
                }
            }
            Err(err) => return Err(self.write_err(name, &full, err)),
        }
        self.dirs_ok.insert(rel.to_path_buf());
        let header = entry.header().clone();
        if let Some(owner) = self.owner(&header, name)? {
            std::os::unix::fs::lchown(&full, Some(owner.0), Some(owner.1))
                .map_err(|e| self.chown_err(name, owner, e))?;
        }
        self.set_xattrs(entry, &full, name, None)?;
        let mode = header.mode().unwrap_or(0o755) & 0o7777;
        self.deferred_dirs
            .push((rel.to_path_buf(), mode, mtime_of(&header)));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
        check_size: bool,
    ) -> Result<(), ImageError> {
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        // Created with its final mode when that survives the umask and chown (no
        // setuid/setgid/sticky bits), saving a chmod; 0600 and a chmod otherwise.
        let mode_at_create = mode & 0o7000 == 0 && mode & self.umask == 0;
        let create = |full: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if mode_at_create { mode } else { 0o600 })
                .open(full)
        };
        // O_EXCL never follows a link; only when something is in the way is it examined.
        let full = self.dest.join(rel);
        let mut file = match create(&full) {
            Ok(file) => {
                self.nondirs.insert(rel.to_path_buf());
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let full = self.clear_for_nondir(rel, name)?;
                create(&full).map_err(|e| self.write_err(name, &full, e))?
            }
            Err(e) => return Err(self.write_err(name, &full, e)),
        };
        let expected = entry.size();
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(COPY_BUFFER, 0);
        let copied = self.copy_data(entry, &mut file, &mut buffer, name, &full);
        self.buffer = buffer;
        let written = copied?;
        if check_size && written != expected {
            return Err(ImageError::Truncated {
                tarball: self.tarball.to_path_buf(),
                entry: name.to_string(),
                expected,
                got: written,
            });
        }
        self.summary.bytes += written;
        if let Some(owner) = self.owner(&header, name)? {
            std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))
                .map_err(|e| self.chown_err(name, owner, e))?;
        }
        if !mode_at_create {
            // after chown, which clears setuid/setgid bits
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| self.write_err(name, &full, e))?;
        }
        self.set_xattrs(entry, &full, name, Some(&file))?;
        if let Some(mtime) = mtime_of(&header) {
            let times = fs::FileTimes::new()
                .set_modified(mtime_to_system(mtime))
                .set_accessed(mtime_to_system(mtime));
            file.set_times(times)
                .map_err(|e| self.write_err(name, &full, e))?;
        }
        Ok(())
    }

    /// Copies an entry's data into `file` through `buffer`; returns the bytes written.
    fn copy_data<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        buffer: &mut [u8],
        name: &str,
        full: &Path,
    ) -> Result<u64, ImageError> {
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(buffer) {
                Ok(0) => return Ok(written),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(self.corrupt(Some(name), err)),
            };
            file.write_all(&buffer[..n])
                .map_err(|e| self.write_err(name, full, e))?;
            written += n as u64;
        }
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ImageError> {
        let target = match entry.link_name_bytes() {
            Some(bytes) if !bytes.is_empty() => PathBuf::from(OsStr::from_bytes(&bytes)),
            _ => return Err(self.unsafe_entry(name, "is a symlink without a target".into())),
        };
        if target.is_relative() && !relative_link_stays_inside(rel, &target) {
            return Err(self.unsafe_entry(
                name,
                format!(
                    "is a symlink to `{}`, which points outside the rootfs",
                    target.display()
                ),
            ));
        }
        let full = self.dest.join(rel);
        match std::os::unix::fs::symlink(&target, &full) {
            Ok(()) => {
                self.nondirs.insert(rel.to_path_buf());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear_for_nondir(rel, name)?;
                std::os::unix::fs::symlink(&target, &full)
                    .map_err(|e| self.write_err(name, &full, e))?;
            }
            Err(e) => return Err(self.write_err(name, &full, e)),
        }
        let header = entry.header().clone();
        if let Some(owner) = self.owner(&header, name)? {
            std::os::unix::fs::lchown(&full, Some(owner.0), Some(owner.1))
                .map_err(|e| self.chown_err(name, owner, e))?;
        }
        if let Some(mtime) = mtime_of(&header) {
            filetime::set_symlink_file_times(&full, mtime, mtime)
                .map_err(|e| self.write_err(name, &full, e))?;
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ImageError> {
        let raw_target = match entry.link_name_bytes() {
            Some(bytes) if !bytes.is_empty() => PathBuf::from(OsStr::from_bytes(&bytes)),
            _ => return Err(self.unsafe_entry(name, "is a hard link without a target".into())),
        };
        let target = normalize(&raw_target).map_err(|why| {
            self.unsafe_entry(
                name,
                format!(
                    "is a hard link whose target `{}` {why}",
                    raw_target.display()
                ),
            )
        })?;
        if self.skipped_nodes.contains(&target) {
            tracing::debug!(entry = %name, "skipping a hard link to a skipped device node");
            self.skipped_nodes.insert(rel.to_path_buf());
            return Ok(());
        }
        if !self.nondirs.contains(&target) {
            return Err(self.unsafe_entry(
                name,
                format!(
                    "is a hard link to `{}`, which is not an earlier file of the archive",
                    raw_target.display()
                ),
            ));
        }
        if target == rel {
            return Ok(());
        }
        let full = self.clear_for_nondir(rel, name)?;
        let source = self.dest.join(&target);
        // linkat without AT_SYMLINK_FOLLOW: a symlink is linked itself, never its target
        fs::hard_link(&source, &full).map_err(|e| self.write_err(name, &full, e))?;
        Ok(())
    }

    fn fifo<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ImageError> {
        let full = self.clear_for_nondir(rel, name)?;
        let header = entry.header().clone();
        crate::sys::image::mkfifo(&full, 0o600)
            .map_err(|errno| self.write_err(name, &full, io::Error::from(errno)))?;
        if let Some(owner) = self.owner(&header, name)? {
            std::os::unix::fs::lchown(&full, Some(owner.0), Some(owner.1))
                .map_err(|e| self.chown_err(name, owner, e))?;
        }
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        // a fifo just made here, never a symlink: chmod may use the path
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .map_err(|e| self.write_err(name, &full, e))?;
        if let Some(mtime) = mtime_of(&header) {
            filetime::set_symlink_file_times(&full, mtime, mtime)
                .map_err(|e| self.write_err(name, &full, e))?;
        }
        Ok(())
    }

    /// Sets the entry's `SCHILY.xattr.*` pax records on `full` (through `file` if open).
    fn set_xattrs<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        full: &Path,
        name: &str,
        file: Option<&File>,
    ) -> Result<(), ImageError> {
        let Ok(Some(extensions)) = entry.pax_extensions() else {
            return Ok(());
        };
        let mut attrs = Vec::new();
        for extension in extensions {
            let extension = extension.map_err(|e| self.corrupt(Some(name), e))?;
            if let Some(key) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                attrs.push((
                    OsStr::from_bytes(key).to_os_string(),
                    extension.value_bytes().to_vec(),
                ));
            }
        }
        for (key, value) in attrs {
            let result = match file {
                Some(file) => xattr::FileExt::set_xattr(file, &key, &value),
                None => xattr::set(full, &key, &value),
            };
            let Err(err) = result else { continue };
            let key_text = key.to_string_lossy();
            let privileged = key_text.starts_with("trusted.") || key_text.starts_with("security.");
            let denied = is_errno(&err, &[libc::EPERM, libc::EACCES]);
            let unsupported = is_errno(&err, &[libc::EOPNOTSUPP, libc::ENOTSUP]);
            if unsupported || (privileged && denied) {
                self.summary.skipped_xattrs += 1;
                tracing::debug!(entry = %name, xattr = %key_text, ?err, "skipping an xattr that cannot be set here");
                continue;
            }
            return Err(ImageError::Xattr {
                entry: name.to_string(),
                name: key_text.into_owned(),
                source: err,
            });
        }
        Ok(())
    }

    /// Applies directory modes and mtimes, deepest first, once everything is written.
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        let mut dirs = std::mem::take(&mut self.deferred_dirs);
        dirs.sort_by_key(|(path, _, _)| std::cmp::Reverse(path.components().count()));
        for (rel, mode, mtime) in dirs {
            let full = self.dest.join(&rel);
            let name = format!("{}/", rel.display());
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&full)
                .map_err(|e| self.write_err(&name, &full, e))?;
            dir.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| self.write_err(&name, &full, e))?;
            if let Some(mtime) = mtime {
                let time = mtime_to_system(mtime);
                dir.set_times(fs::FileTimes::new().set_modified(time).set_accessed(time))
                    .map_err(|e| self.write_err(&name, &full, e))?;
            }
        }
        Ok(())
    }
}

fn mtime_to_system(time: FileTime) -> std::time::SystemTime {
    let secs = time.unix_seconds();
    match u64::try_from(secs) {
        Ok(secs) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        Err(_) => std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs()),
    }
}
