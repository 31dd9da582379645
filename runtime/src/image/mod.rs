//! Building and removing a container's rootfs: safe unpacking of a rootfs tarball
//! ([`unpack_tarball`]), the busybox template ([`busybox_rootfs`]) and destroy-safe removal
//! ([`remove_tree`]).
//!
//! These are plain in-process functions. The container code calls them inside the
//! container's user namespace, as its root (host uid 100000 for a typical user), so that
//! the files get the container's owners; they also work as an ordinary user or as root in
//! a temporary directory, which is how they are tested. The only syscalls std lacks
//! (`openat`-style walking, `mkfifo`) are in `sys::image`.

pub mod busybox;
pub mod download;
pub mod remove;
pub mod unpack;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use busybox::{busybox_rootfs, check_static, TemplateOutput, DEFAULT_BUSYBOX};
pub use remove::remove_tree;
pub use unpack::{unpack_tarball, Compression, UnpackOptions, UnpackSummary};

/// What went wrong building or removing a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The unpack destination is missing or not a directory.
    #[error(
        "unpack destination {path} is not an existing directory (or is a symlink); create it first"
    )]
    DestNotDir {
        /// The destination.
        path: PathBuf,
    },
    /// The tarball could not be opened or read.
    #[error("cannot open the tarball {path}")]
    Open {
        /// The tarball.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tarball is compressed in a format that is not read.
    #[error("{path} is compressed with {format}, which ulxc does not read; recompress it with xz, zstd or gzip")]
    UnsupportedCompression {
        /// The tarball.
        path: PathBuf,
        /// The compression found.
        format: &'static str,
    },
    /// The file is neither compressed in a known way nor a tar archive.
    #[error(
        "{path} is not a tar archive (plain, gzip, xz or zstd): it starts with bytes {first_bytes}; \
         check that the download is complete and is a rootfs tarball"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its first bytes in hex.
        first_bytes: String,
    },
    /// The archive could not be decoded.
    #[error("{tarball} is corrupt or truncated{entry}; download or build it again")]
    Corrupt {
        /// The tarball.
        tarball: PathBuf,
        /// ` at entry `NAME`` or empty.
        entry: String,
        /// The decoding error.
        #[source]
        source: std::io::Error,
    },
    /// A file's data ended early.
    #[error(
        "{tarball} is truncated: entry `{entry}` has {got} of its {expected} bytes; \
         download or build it again"
    )]
    Truncated {
        /// The tarball.
        tarball: PathBuf,
        /// The entry.
        entry: String,
        /// The size in the header.
        expected: u64,
        /// The bytes read.
        got: u64,
    },
    /// An entry would write outside the rootfs or through a link.
    #[error("refusing to unpack {tarball}: entry `{entry}` {why}")]
    UnsafeEntry {
        /// The tarball.
        tarball: PathBuf,
        /// The entry as named in the archive.
        entry: String,
        /// What is unsafe about it.
        why: String,
    },
    /// Writing an entry failed.
    #[error("cannot write {path} (entry `{entry}`)")]
    Write {
        /// The entry.
        entry: String,
        /// The path written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting an entry's owner failed (typically: the id is not mapped).
    #[error(
        "cannot give entry `{entry}` the owner {uid}:{gid}; is that id mapped in the container \
         (a full rootfs needs 65536 ids, e.g. `lxc.idmap = u 0 100000 65536`)?"
    )]
    Owner {
        /// The entry.
        entry: String,
        /// The uid in the archive.
        uid: u32,
        /// The gid in the archive.
        gid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting an extended attribute failed.
    #[error("cannot set the extended attribute `{name}` of entry `{entry}`")]
    Xattr {
        /// The entry.
        entry: String,
        /// The attribute.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The busybox binary does not exist.
    #[error("busybox not found at {path}; install the busybox-static package or pass the path of a static busybox")]
    BusyboxMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The busybox binary could not be read or run.
    #[error("cannot read or run busybox at {path}")]
    BusyboxRead {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The busybox file is not an ELF executable.
    #[error("{path} is not an ELF executable; pass the path of a static busybox binary (package busybox-static)")]
    BusyboxNotElf {
        /// The file.
        path: PathBuf,
    },
    /// The busybox binary is dynamically linked.
    #[error(
        "{path} is dynamically linked (interpreter {interpreter}) and would not run inside the \
         container; install busybox-static and use /bin/busybox"
    )]
    BusyboxNotStatic {
        /// The binary.
        path: PathBuf,
        /// Its program interpreter.
        interpreter: String,
    },
    /// `busybox --list-full` failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    BusyboxList {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
    /// Writing a template file failed.
    #[error("cannot write {path} of the busybox rootfs")]
    Template {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A template path exists with the wrong type.
    #[error(
        "{path} already exists and is in the way of the busybox rootfs; use an empty directory"
    )]
    TemplateConflict {
        /// The path.
        path: PathBuf,
    },
    /// Removing part of a tree failed.
    #[error("cannot remove {path}")]
    Remove {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory changed while it was being removed.
    #[error(
        "{path} changed while it was being removed; nothing was followed, run the removal again"
    )]
    RemoveChanged {
        /// The directory.
        path: PathBuf,
    },
    /// Directories on other filesystems were left in place.
    #[error(
        "{path} was not removed completely: {} on another filesystem (a mount?) and was left \
         alone; unmount it and remove again",
        describe_left(left)
    )]
    RemoveLeftMounts {
        /// The tree's root.
        path: PathBuf,
        /// The directories left.
        left: Vec<PathBuf>,
    },
}

fn describe_left(left: &[PathBuf]) -> String {
    let names: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
    if names.len() == 1 {
        format!("{} is", names[0])
    } else {
        format!("{} are", names.join(", "))
    }
}
