//! Mounts: bind mounts, pseudo file systems, propagation, `pivot_root`.
//!
//! Paths given here are usually relative to the current directory: the container
//! setup `chdir`s into the rootfs while it can still reach it, and works from there,
//! so that no ancestor directory of the rootfs has to be searchable by the container's
//! root (LXC's lxc#3669).

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Mount flags used by the container setup.
pub use nix::mount::MsFlags as Flags;

/// `mount(2)` with optional source, fs type and data.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(source, target, fstype, flags, data)
}

/// Makes every mount below `/` private, so nothing propagates back to the host.
pub fn make_rprivate_root() -> Result<(), Errno> {
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
}

/// Bind-mounts `source` onto `target` (recursively when `recursive`).
pub fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), Errno> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(source), target, None::<&str>, flags, None::<&str>)
}

/// Remounts an existing bind mount read-only, keeping the flags that a user
/// namespace may not clear (nosuid, nodev, noexec are locked when inherited).
pub fn remount_bind_readonly(target: &Path, extra: MsFlags) -> Result<(), Errno> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra;
    match nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
        Err(Errno::EPERM) => {
            // Locked flags: retry carrying the ones the kernel insists on.
            let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | locked,
                None::<&str>,
            )
        }
        other => other,
    }
}

/// Makes the current directory the root: `pivot_root(".", ".")` then detaches the old
/// root stacked on top of it, and returns to the new `/`.
pub fn pivot_to_cwd() -> Result<(), Errno> {
    nix::unistd::pivot_root(".", ".")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")
}

/// Opens `path` with `O_PATH`: a handle for mounting from, needing no permission on
/// the file itself (only search permission on its directories).
pub fn open_path(path: &Path) -> Result<std::fs::File, Errno> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Lazily unmounts `target`.
pub fn detach(target: &Path) -> Result<(), Errno> {
    nix::mount::umount2(target, MntFlags::MNT_DETACH)
}
