//! The only home of raw syscalls and `unsafe` in the runtime.
//!
//! Everything above this module calls small, safe functions from here. Each `unsafe`
//! block carries a `// SAFETY:` comment (enforced by `clippy::undocumented_unsafe_blocks`).
//! The submodules are grouped by concept: processes, namespaces, mounts, capabilities,
//! terminals and unix-socket credentials.

pub mod caps;
pub mod image;
pub mod mount;
pub mod netns;
pub mod ns;
pub mod process;
pub mod pty;
pub mod socket;

pub use nix::errno::Errno;
