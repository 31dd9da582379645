//! Running build tools with their output appended to the build log and their exit status
//! checked: a failure carries the tail of what the tool printed and the log's path.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::ImageError;

/// Lines of tool output quoted in an error.
const TAIL_LINES: usize = 25;

/// The build log, shared by every tool of one build.
#[derive(Debug)]
pub struct BuildLog {
    path: PathBuf,
    tmpdir: Option<PathBuf>,
}

impl BuildLog {
    /// Creates (truncates) the log file.
    pub fn create(path: &Path) -> Result<Self, ImageError> {
        std::fs::write(path, "").map_err(|source| ImageError::Io {
            what: "create build log".into(),
            path: path.to_owned(),
            source,
        })?;
        Ok(BuildLog {
            path: path.to_owned(),
            tmpdir: None,
        })
    }

    /// Sets `TMPDIR` for every tool run from now on (mmdebstrap makes its temporary
    /// chroots there; keeping them inside the build directory keeps any mount that a killed
    /// build leaves behind where the cache's mount check sees it).
    pub fn set_tmpdir(&mut self, dir: &Path) {
        self.tmpdir = Some(dir.to_owned());
    }

    fn command(&self, program: &str, args: &[OsString]) -> duct::Expression {
        let e = duct::cmd(program, args).stdin_null();
        match &self.tmpdir {
            Some(t) => e.env("TMPDIR", t),
            None => e,
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the log (its path changes with it).
    pub fn rename(&mut self, to: &Path) -> Result<(), ImageError> {
        std::fs::rename(&self.path, to).map_err(|source| ImageError::Io {
            what: "move build log to".into(),
            path: to.to_owned(),
            source,
        })?;
        self.path = to.to_owned();
        Ok(())
    }

    /// Appends a line.
    pub fn note(&self, line: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.path) {
            let _ = writeln!(f, "{line}");
        }
    }

    fn open_append(&self) -> Result<std::fs::File, ImageError> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| ImageError::Io {
                what: "open build log".into(),
                path: self.path.clone(),
                source,
            })
    }

    /// Runs `program args` with stdout and stderr appended to the log; a non-zero exit is
    /// an error quoting the output's last lines. `package` names the Debian package to
    /// install when the program is missing.
    pub fn run<I, S>(&self, program: &str, package: &str, args: I) -> Result<(), ImageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let shown = format!(
            "{program} {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.note(&format!("\n$ {shown}"));
        tracing::debug!(command = %shown, "running build tool");
        let file = self.open_append()?;
        let start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let out = self
            .command(program, &args)
            .stderr_to_stdout()
            .stdout_file(file)
            .unchecked()
            .run()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ImageError::ToolMissing {
                        tool: program.to_owned(),
                        package: package.to_owned(),
                    }
                } else {
                    ImageError::Io {
                        what: format!("run {program} (log)"),
                        path: self.path.clone(),
                        source,
                    }
                }
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut short: String = shown.chars().take(160).collect();
        if short.len() < shown.len() {
            short.push_str(" ...");
        }
        Err(ImageError::ToolFailed {
            tool: short,
            status: out.status.to_string(),
            tail: self.tail_since(start),
            log: self.path.clone(),
        })
    }

    /// Runs a command and returns its stdout (stderr goes to the log); checked like [`run`](Self::run).
    pub fn output<I, S>(&self, program: &str, package: &str, args: I) -> Result<String, ImageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let shown = format!(
            "{program} {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.note(&format!("\n$ {shown}   (stdout captured)"));
        let file = self.open_append()?;
        let start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let out = self
            .command(program, &args)
            .stderr_file(file)
            .stdout_capture()
            .unchecked()
            .run()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ImageError::ToolMissing {
                        tool: program.to_owned(),
                        package: package.to_owned(),
                    }
                } else {
                    ImageError::Io {
                        what: format!("run {program} (log)"),
                        path: self.path.clone(),
                        source,
                    }
                }
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(ImageError::ToolFailed {
            tool: shown.chars().take(160).collect(),
            status: out.status.to_string(),
            tail: self.tail_since(start),
            log: self.path.clone(),
        })
    }

    fn tail_since(&self, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            let _ = f.seek(SeekFrom::Start(start));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
        tail(&text, TAIL_LINES)
    }
}

/// The last `n` non-empty lines of `text`, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_tool_error_has_status_tail_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = BuildLog::create(&dir.path().join("build.log")).unwrap();
        log.run("sh", "dash", ["-c", "echo fine"]).unwrap();
        let err = log
            .run("sh", "dash", ["-c", "echo one; echo two >&2; exit 3"])
            .unwrap_err();
        let s = err.to_string();
        assert!(s.contains("exit status: 3"), "{s}");
        assert!(s.contains("  one\n  two"), "{s}");
        assert!(!s.contains("fine"), "only this command's output: {s}");
        assert!(s.contains("build.log"), "{s}");
        let all = std::fs::read_to_string(log.path()).unwrap();
        assert!(all.contains("fine") && all.contains("$ sh -c"), "{all}");
    }

    #[test]
    fn missing_tool_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let log = BuildLog::create(&dir.path().join("build.log")).unwrap();
        let err = log
            .run("ulxc-no-such-tool", "mmdebstrap", ["x"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("install the Debian package mmdebstrap"),
            "{err}"
        );
    }

    #[test]
    fn output_captures_stdout_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = BuildLog::create(&dir.path().join("build.log")).unwrap();
        let out = log
            .output("sh", "dash", ["-c", "echo out; echo err >&2"])
            .unwrap();
        assert_eq!(out, "out\n");
        assert!(std::fs::read_to_string(log.path()).unwrap().contains("err"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "  b\n  c");
    }
}
