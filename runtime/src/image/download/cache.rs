//! The download cache's fast copy of a rootfs: next to a verified `rootfs.tar.xz` (or
//! `.tar.gz`), a `rootfs.cache.tar.zst` re-compression of the same tar stream, so that a cached
//! create decodes zstd (several times faster) instead of xz.
//!
//! The copy is written once, as a side effect of the first unpack of the downloaded
//! tarball (the decoded stream is teed into a zstd encoder on its own thread, see
//! [`FastCopy`]), and only kept when that whole unpack succeeded and the source decoded
//! to its end (its xz/gzip check included). Its integrity is its SHA-256, recorded in
//! `rootfs.cache.tar.zst.sha256` (written last, so its presence marks a complete copy) and
//! checked before each use ([`fast_copy`]); the signed `rootfs.tar.xz` stays in the
//! cache and is used (and its signature checked) whenever the copy is missing or fails
//! its check.
//!
//! The image's `excludes` list (`excludes-user` for an unprivileged user, as LXC picks it)
//! is kept in the entry too, as [`EXCLUDES_NAME`], so that the unpack of the entry's
//! tarball leaves those paths out ([`excludes_for`]), as LXC's `tar --exclude-from` does.
//!
//! The cache entry is the user's own directory: whoever may write it may also replace the
//! recorded sum, exactly as they could replace the keyring in their own configuration.
//! The copy guards against corruption, not against the cache's owner.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use pgp::crypto::hash::HashAlgorithm;

/// The fast copy's file name in a cache entry.
pub const FAST_NAME: &str = "rootfs.cache.tar.zst";
/// The file holding the fast copy's SHA-256 (`HEX  rootfs.cache.tar.zst`).
pub const FAST_SUM: &str = "rootfs.cache.tar.zst.sha256";
/// The zstd level of the copy: level 1 costs ~30% less CPU than 3 (the copy is written
/// during the first, CPU-bound, create) for a ~20% larger file, and decodes as fast.
const FAST_LEVEL: i32 = 1;
/// The file marking a complete cache entry (also in [`super`]).
const BUILD_ID: &str = "build_id";

/// The file in a cache entry with the image's exclude patterns, one a line.
pub const EXCLUDES_NAME: &str = "rootfs.excludes";

/// Writes (or, with no patterns, removes) the entry's [`EXCLUDES_NAME`].
pub fn write_excludes(dir: &Path, patterns: &[String]) -> io::Result<()> {
    let path = dir.join(EXCLUDES_NAME);
    if patterns.is_empty() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let mut text = patterns.join("\n");
    text.push('\n');
    if fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{EXCLUDES_NAME}.{}.partial", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &path)
}

/// The exclude patterns for unpacking `tarball`: those of its cache entry when it is one
/// (a directory with `build_id`), none otherwise. Each pattern is a list of path
/// components (`*` and `?` are wildcards within one component), anchored at the rootfs;
/// an entry is left out when its leading components match a whole pattern, so a
/// directory's contents go with it. Lines with `..` are ignored.
pub fn excludes_for(tarball: &Path) -> Vec<Vec<String>> {
    let Some(dir) = tarball.parent() else {
        return Vec::new();
    };
    if !dir.join(BUILD_ID).is_file() {
        return Vec::new();
    }
    match fs::read_to_string(dir.join(EXCLUDES_NAME)) {
        Ok(text) => parse_excludes(&text),
        Err(_) => Vec::new(),
    }
}

/// Parses an `excludes` list (LXC passes it to `tar --exclude-from`; the public images
/// list `./dev/...` paths): blank lines and `#` comments skipped, leading `./` and `/`
/// dropped.
pub fn parse_excludes(text: &str) -> Vec<Vec<String>> {
    let mut patterns = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<String> = line
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect();
        if parts.is_empty() || parts.iter().any(|p| p == "..") {
            tracing::warn!(
                line,
                "ignoring an exclude pattern that is empty or has `..`"
            );
            continue;
        }
        patterns.push(parts);
    }
    patterns
}

/// Whether the relative path `components` is excluded by one of `patterns`.
pub fn is_excluded(patterns: &[Vec<String>], components: &[&[u8]]) -> bool {
    patterns.iter().any(|pattern| {
        pattern.len() <= components.len()
            && pattern
                .iter()
                .zip(components)
                .all(|(p, c)| wildcard_match(p.as_bytes(), c))
    })
}

/// `*` (any run of bytes) and `?` (one byte) within one path component.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The SHA-256 of everything read from `reader`, in lowercase hex.
pub fn sha256_hex(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = HashAlgorithm::Sha256
        .new_hasher()
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fast copy in the cache entry `dir`, if it is there and matches its recorded
/// SHA-256. A copy that fails its check is removed (with a warning), so that the
/// signed tarball is used instead and the copy is made again.
pub fn fast_copy(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(FAST_NAME);
    let sum_path = dir.join(FAST_SUM);
    let recorded = fs::read_to_string(&sum_path).ok()?;
    let recorded = recorded.split_whitespace().next().unwrap_or("").to_string();
    let actual = File::open(&path).and_then(sha256_hex);
    match actual {
        Ok(actual) if !recorded.is_empty() && actual == recorded => Some(path),
        other => {
            tracing::warn!(
                path = %path.display(),
                recorded,
                actual = ?other,
                "the cached fast copy of the rootfs fails its SHA-256 check; using the signed tarball"
            );
            let _ = fs::remove_file(&sum_path);
            let _ = fs::remove_file(&path);
            None
        }
    }
}

/// Whether `tarball` is a download cache entry's `rootfs.tar.xz`/`rootfs.tar.gz` that
/// has no fast copy yet.
fn wants_fast_copy(tarball: &Path) -> Option<PathBuf> {
    let name = tarball.file_name()?.to_str()?;
    if name != "rootfs.tar.xz" && name != "rootfs.tar.gz" {
        return None;
    }
    let dir = tarball.parent()?;
    if !dir.join(BUILD_ID).is_file() || dir.join(FAST_SUM).exists() {
        return None;
    }
    Some(dir.to_path_buf())
}

/// A fast copy being written: a partial file in the cache entry, removed unless
/// [`FastCopy::commit`] is called with the encoder's successful result.
pub struct FastCopy {
    dir: PathBuf,
    partial: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl FastCopy {
    /// Starts a fast copy for `tarball` if it is a cache entry's tarball without one;
    /// `None` otherwise, or when the partial file cannot be made (not an error: the
    /// copy is an optimisation).
    pub fn plan(tarball: &Path) -> Option<FastCopy> {
        let dir = wants_fast_copy(tarball)?;
        let partial = dir.join(format!(".{FAST_NAME}.{}.partial", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
        {
            Ok(file) => Some(FastCopy {
                dir,
                partial,
                file: Some(file),
                committed: false,
            }),
            Err(e) => {
                tracing::debug!(path = %partial.display(), %e, "no fast copy of the rootfs");
                None
            }
        }
    }

    /// The encoder thread's work: compresses the chunks received (until `None`, the end
    /// of a complete stream) into the partial file; returns the copy's SHA-256. A
    /// closed channel without the end marker is an error (the source did not decode).
    pub fn encode(
        file: File,
        chunks: std::sync::mpsc::Receiver<Option<std::sync::Arc<[u8]>>>,
    ) -> io::Result<String> {
        let mut hasher = HashAlgorithm::Sha256
            .new_hasher()
            .map_err(|e| io::Error::other(e.to_string()))?;
        {
            let sink = HashingWriter {
                inner: io::BufWriter::with_capacity(1 << 20, file),
                update: |data: &[u8]| hasher.update(data),
            };
            let mut encoder = zstd::stream::write::Encoder::new(sink, FAST_LEVEL)?;
            loop {
                match chunks.recv() {
                    Ok(Some(chunk)) => encoder.write_all(&chunk)?,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(io::Error::other("the tarball did not decode to its end"))
                    }
                }
            }
            let mut sink = encoder.finish()?;
            sink.inner.flush()?;
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Takes the partial file for [`FastCopy::encode`].
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Moves the copy into place and records its SHA-256 (last).
    pub fn commit(mut self, sum: &str) -> io::Result<()> {
        let target = self.dir.join(FAST_NAME);
        fs::rename(&self.partial, &target)?;
        let sum_tmp = self
            .dir
            .join(format!(".{FAST_SUM}.{}.partial", std::process::id()));
        fs::write(&sum_tmp, format!("{sum}  {FAST_NAME}\n"))?;
        fs::rename(&sum_tmp, self.dir.join(FAST_SUM))?;
        self.committed = true;
        tracing::debug!(path = %target.display(), sum, "kept a fast copy of the rootfs");
        Ok(())
    }
}

impl Drop for FastCopy {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// A writer that feeds everything written through `update` (a hasher) on its way.
struct HashingWriter<W, F: FnMut(&[u8])> {
    inner: W,
    update: F,
}

impl<W: Write, F: FnMut(&[u8])> Write for HashingWriter<W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.update)(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
