//! Writing a process's uid and gid maps through the system's setuid `newuidmap` and
//! `newgidmap` (Debian package uidmap), which check the ranges against /etc/subuid and
//! /etc/subgid. Their exit status is checked and their stderr carried in the error.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{IdMap, IdMapError, IdRange};

/// The two helper programs, found in PATH (or given explicitly, for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTools {
    /// Path of `newuidmap`.
    pub newuidmap: PathBuf,
    /// Path of `newgidmap`.
    pub newgidmap: PathBuf,
}

impl MapTools {
    /// Finds `newuidmap` and `newgidmap` in PATH (then in /usr/bin and /bin).
    pub fn find() -> Result<MapTools, IdMapError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        Ok(MapTools {
            newuidmap: find_in_path("newuidmap", &path)?,
            newgidmap: find_in_path("newgidmap", &path)?,
        })
    }

    /// Runs `newuidmap PID NS HOST COUNT ...` and `newgidmap PID ...` for `map`. The two
    /// are independent (one writes uid_map, the other gid_map), so they run at the same
    /// time; the first failure is reported.
    pub fn write(&self, pid: u32, map: &IdMap) -> Result<(), IdMapError> {
        if map.uid.is_empty() || map.gid.is_empty() {
            let which = if map.uid.is_empty() { "uid" } else { "gid" };
            return Err(IdMapError::EmptyMap { which });
        }
        let uid = spawn_tool(&self.newuidmap, pid, &map.uid)?;
        let gid = spawn_tool(&self.newgidmap, pid, &map.gid);
        let uid_result = finish_tool(uid);
        let gid_result = gid.and_then(finish_tool);
        uid_result?;
        gid_result?;
        tracing::debug!(pid, ?map, "wrote the uid and gid maps");
        Ok(())
    }
}

/// Writes the uid and gid maps of process `pid` (which must be in a new user namespace and
/// not yet have maps) with the system's newuidmap and newgidmap.
pub fn write_maps(pid: u32, map: &IdMap) -> Result<(), IdMapError> {
    MapTools::find()?.write(pid, map)
}

/// The arguments of newuidmap/newgidmap: `PID NS HOST COUNT [NS HOST COUNT ...]`.
pub fn tool_args(pid: u32, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec![pid.to_string()];
    for r in ranges {
        args.extend([
            r.ns_start.to_string(),
            r.host_start.to_string(),
            r.count.to_string(),
        ]);
    }
    args
}

/// A started newuidmap/newgidmap and its command line (for messages).
struct Running {
    child: std::process::Child,
    command: String,
}

fn spawn_tool(tool: &Path, pid: u32, ranges: &[IdRange]) -> Result<Running, IdMapError> {
    let args = tool_args(pid, ranges);
    let command = format!("{} {}", tool.display(), args.join(" "));
    tracing::debug!(%command, "writing an id map");
    // std's Command rather than duct: no reader threads, which matters in the monitor
    // (it forks after this and must stay single-threaded).
    let child = std::process::Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| IdMapError::Spawn {
            command: command.clone(),
            source,
        })?;
    Ok(Running { child, command })
}

fn finish_tool(running: Running) -> Result<(), IdMapError> {
    let Running { child, command } = running;
    let output = child
        .wait_with_output()
        .map_err(|source| IdMapError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let message = stderr;
    Err(IdMapError::ToolFailed {
        command,
        status: output.status.to_string(),
        stderr: if message.is_empty() {
            "(no output)".to_string()
        } else {
            message
        },
    })
}

fn find_in_path(name: &'static str, path: &std::ffi::OsStr) -> Result<PathBuf, IdMapError> {
    let fallback: [OsString; 2] = ["/usr/bin".into(), "/bin".into()];
    let dirs = std::env::split_paths(path).chain(fallback.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(IdMapError::ToolMissing { tool: name })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn map() -> IdMap {
        IdMap::from_lines(&[
            "u 0 100000 65536".parse().unwrap(),
            "g 0 100000 1000".parse().unwrap(),
            "g 1000 1001 1".parse().unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn runs_both_tools_with_the_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let body = format!("echo \"$(basename $0) $*\" >> {}", log.display());
        let tools = MapTools {
            newuidmap: script(dir.path(), "newuidmap", &body),
            newgidmap: script(dir.path(), "newgidmap", &body),
        };
        tools.write(4242, &map()).unwrap();
        let mut lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "newgidmap 4242 0 100000 1000 1000 1001 1",
                "newuidmap 4242 0 100000 65536"
            ]
        );
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let tools = MapTools {
            newuidmap: script(
                dir.path(),
                "newuidmap",
                "echo 'newuidmap: uid range [0-65536) -> [200000-265536) not allowed' >&2; exit 1",
            ),
            newgidmap: script(dir.path(), "newgidmap", &format!("touch {}", log.display())),
        };
        let err = tools.write(7, &map()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("newuidmap 7 0 100000 65536"), "{message}");
        assert!(message.contains("exit status: 1"), "{message}");
        assert!(message.contains("[200000-265536) not allowed"), "{message}");
    }

    #[test]
    fn missing_tool_says_which_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_in_path("ulxc-no-such-tool", dir.path().as_os_str()).unwrap_err();
        assert!(
            err.to_string().contains("install the uidmap package"),
            "{err}"
        );
        let found = find_in_path("newuidmap", std::ffi::OsStr::new("")).unwrap();
        assert!(found.ends_with("newuidmap"));
    }

    #[test]
    fn an_empty_map_is_refused() {
        let tools = MapTools {
            newuidmap: "/bin/true".into(),
            newgidmap: "/bin/true".into(),
        };
        let err = tools.write(1, &IdMap::default()).unwrap_err();
        assert!(err.to_string().contains("no uid range"), "{err}");
    }
}
