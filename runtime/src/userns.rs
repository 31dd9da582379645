//! Running code inside a user namespace with a given id mapping.
//!
//! Creating a rootfs, removing one and handing a cgroup to a container's root all need
//! a process that is privileged over the *mapped* ids (100000, 100000+N, ...) although
//! the caller is an ordinary user. This module forks a child, lets it create a user
//! namespace, has the parent write the child's maps (through newuidmap/newgidmap, by
//! the function it is given), then runs the given code in the child and reports its
//! result. `ulxc usernsexec` is the command-line face of the same mechanism.

use std::io::{Read, Write};

use nix::unistd::Pid;

use crate::sys;
use crate::sys::process::Cloned;

/// Why running in a user namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// `fork`/`clone3` failed.
    #[error("cannot fork a child for the user namespace: {0}")]
    Fork(#[source] sys::Errno),
    /// A pipe could not be made.
    #[error("cannot create a pipe: {0}")]
    Pipe(#[source] sys::Errno),
    /// The child could not create its user namespace.
    #[error("cannot create a user namespace: {0}; check `ulxc checkconfig`")]
    Unshare(String),
    /// Writing the id maps failed.
    #[error("cannot map ids into the user namespace: {0}")]
    Map(String),
    /// The code run inside the namespace failed.
    #[error("{0}")]
    Inside(String),
    /// The child died without reporting.
    #[error("the helper process in the user namespace died ({0})")]
    Died(String),
}

/// How the child should behave inside the namespace before running the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Keep the caller's own ids (mapped somewhere in the namespace): path lookups work
    /// as for the caller, and the namespace's capabilities still apply to every file
    /// owned by a mapped id. Used for rootfs creation and removal.
    Caller,
    /// Become uid 0 / gid 0 of the namespace (usernsexec).
    Root,
}

/// Forks, creates a user namespace in the child, lets `write_maps` map it (called in the
/// parent with the child's pid), then runs `inside` in the child as `identity`.
/// `inside`'s error text is carried back. Returns the child's exit status when `inside`
/// returns `Ok(code)` (it may also never return, e.g. after `exec`).
pub fn run<M, F>(write_maps: M, identity: Identity, inside: F) -> Result<i32, UsernsError>
where
    M: FnOnce(Pid) -> Result<(), String>,
    F: FnOnce() -> Result<i32, String>,
{
    let (ready_r, ready_w) = sys::socket::pipe_cloexec().map_err(UsernsError::Pipe)?;
    let (go_r, go_w) = sys::socket::pipe_cloexec().map_err(UsernsError::Pipe)?;
    let (err_r, err_w) = sys::socket::pipe_cloexec().map_err(UsernsError::Pipe)?;
    match sys::process::fork_with_pidfd().map_err(UsernsError::Fork)? {
        Cloned::Child => {
            drop(ready_r);
            drop(go_w);
            drop(err_r);
            let mut ready = std::fs::File::from(ready_w);
            let mut err = std::fs::File::from(err_w);
            let fail = |err: &mut std::fs::File, code: u8, msg: String| -> ! {
                let _ = err.write_all(&[code]);
                let _ = err.write_all(msg.as_bytes());
                sys::process::exit_now(121)
            };
            if let Err(e) = sys::ns::unshare_user() {
                fail(&mut err, b'U', e.to_string());
            }
            let _ = ready.write_all(b"1");
            drop(ready);
            let mut go = [0u8; 1];
            let mut go_file = std::fs::File::from(go_r);
            if !matches!(go_file.read(&mut go), Ok(1)) {
                sys::process::exit_now(122);
            }
            if identity == Identity::Root {
                if let Err(e) = sys::ns::become_root() {
                    fail(
                        &mut err,
                        b'I',
                        format!("cannot become root in the namespace: {e}"),
                    );
                }
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(inside));
            match outcome {
                Ok(Ok(code)) => sys::process::exit_now(code),
                Ok(Err(msg)) => fail(&mut err, b'I', msg),
                Err(_) => fail(&mut err, b'I', "panicked".to_string()),
            }
        }
        Cloned::Parent { pid, pidfd: _pidfd } => {
            drop(ready_w);
            drop(go_r);
            drop(err_w);
            let mut ready = [0u8; 1];
            let got_ready = matches!(std::fs::File::from(ready_r).read(&mut ready), Ok(1));
            let mut go = std::fs::File::from(go_w);
            let map_result = if got_ready { write_maps(pid) } else { Ok(()) };
            if got_ready && map_result.is_ok() {
                let _ = go.write_all(b"1");
            }
            drop(go);
            let status = sys::process::wait_exit_code(pid);
            let mut report = Vec::new();
            let _ = std::fs::File::from(err_r).read_to_end(&mut report);
            if let Err(msg) = map_result {
                return Err(UsernsError::Map(msg));
            }
            if let Some((&kind, msg)) = report.split_first() {
                let msg = String::from_utf8_lossy(msg).into_owned();
                return Err(match kind {
                    b'U' => UsernsError::Unshare(msg),
                    _ => UsernsError::Inside(msg),
                });
            }
            match status {
                Ok(code) => Ok(code),
                Err(why) => Err(UsernsError::Died(why)),
            }
        }
    }
}

/// [`run`] with the maps written by the system's newuidmap/newgidmap for `map`.
pub fn run_mapped<F>(
    map: &crate::idmap::IdMap,
    identity: Identity,
    inside: F,
) -> Result<i32, UsernsError>
where
    F: FnOnce() -> Result<i32, String>,
{
    let write = |pid: Pid| {
        crate::idmap::write_maps(u32::try_from(pid.as_raw()).unwrap_or(0), map)
            .map_err(|e| e.to_string())
    };
    run(write, identity, inside)
}
