//! Running the Debian tools `ulxc-net` drives (`ip`, `nft`, `iptables`, `dnsmasq`):
//! every failure names the command line and carries the tool's stderr.

use std::io::Write;
use std::process::{Command, Stdio};

/// A tool that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started (usually: not installed).
    #[error("cannot run `{command}` (is it installed and in PATH?)")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
}

impl ToolError {
    /// The tool's stderr when it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ToolError::Failed { stderr, .. } => Some(stderr),
            ToolError::Spawn { .. } => None,
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program args` with `stdin` fed in (when given); returns its stdout.
pub fn run_with_input(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ToolError> {
    let command = command_line(program, args);
    tracing::debug!(%command, "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe; its exit status then tells why.
        let _ = pipe.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| ToolError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ToolError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs `program args`; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, ToolError> {
    run_with_input(program, args, None)
}

/// Whether `program args` runs and succeeds (a probe: failures are not errors).
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `program` is found in `PATH` (or is an existing absolute path).
pub fn in_path(program: &str) -> bool {
    if program.starts_with('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
