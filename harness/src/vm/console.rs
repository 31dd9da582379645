//! Serial console watching: the patterns that mean the guest is in trouble (kernel panic,
//! oops, `BUG:`, `WARNING: CPU:`, an emergency shell) and a task that tails the serial log
//! for the whole life of a VM and remembers the first such line.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The substrings that mark a console line as a problem.
pub const PROBLEM_PATTERNS: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG:",
    "WARNING: CPU:",
    "emergency mode",
    "Give root password",
];

/// Whether one console line reports a problem.
pub fn is_problem_line(line: &str) -> bool {
    PROBLEM_PATTERNS.iter().any(|p| line.contains(p))
}

/// The first problem line in a chunk of console text, trimmed.
pub fn first_problem(text: &str) -> Option<String> {
    text.lines()
        .find(|l| is_problem_line(l))
        .map(|l| l.trim_end_matches('\r').trim().to_string())
}

/// The last `n` lines of a file (lossy UTF-8), for error messages.
pub fn tail_lines(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// A background task following a serial log; the first problem line is kept.
#[derive(Debug)]
pub struct ConsoleWatch {
    problem: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsoleWatch {
    /// Starts following `path` from byte `offset` (the file may not exist yet).
    pub fn start(path: PathBuf, offset: u64) -> ConsoleWatch {
        let problem = Arc::new(Mutex::new(None));
        let slot = problem.clone();
        let task = tokio::spawn(async move {
            let mut pos = offset;
            let mut partial = String::new();
            loop {
                if let Ok(mut f) = std::fs::File::open(&path) {
                    let mut buf = Vec::new();
                    if f.seek(SeekFrom::Start(pos)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                        pos += buf.len() as u64;
                        partial.push_str(&String::from_utf8_lossy(&buf));
                        // Check complete lines, keep the unfinished rest.
                        let (complete, rest) = match partial.rfind('\n') {
                            Some(i) => (partial[..i].to_string(), partial[i + 1..].to_string()),
                            None => (String::new(), partial.clone()),
                        };
                        if let Some(line) =
                            first_problem(&complete).or_else(|| first_problem(&rest))
                        {
                            let mut p = slot.lock().unwrap_or_else(|e| e.into_inner());
                            if p.is_none() {
                                tracing::warn!(%line, "problem on the guest serial console");
                                *p = Some(line);
                            }
                        }
                        partial = rest;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ConsoleWatch { problem, task }
    }

    /// The first problem line seen so far.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ConsoleWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_patterns() {
        for line in [
            "[    3.1] Kernel panic - not syncing: VFS: Unable to mount root fs",
            "[    2.0] Oops: 0000 [#1] PREEMPT SMP NOPTI",
            "[    2.0] BUG: kernel NULL pointer dereference, address: 0000",
            "[    9.9] WARNING: CPU: 1 PID: 1 at kernel/foo.c:12 bar+0x1/0x2",
            "You are in emergency mode. After logging in, type \"journalctl -xb\"",
            "Give root password for maintenance",
        ] {
            assert!(is_problem_line(line), "{line}");
        }
        for line in [
            "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.",
            "Debian GNU/Linux 12 vmdev ttyS0",
            "[    0.5] Run /init as init process",
        ] {
            assert!(!is_problem_line(line), "{line}");
        }
    }

    #[test]
    fn first_problem_picks_the_first() {
        let text = "ok\r\nBUG: one\r\nKernel panic - two\n";
        assert_eq!(first_problem(text).as_deref(), Some("BUG: one"));
        assert_eq!(first_problem("all fine\n"), None);
    }

    #[test]
    fn tail_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&p, 2), "c\nd");
        assert_eq!(tail_lines(&dir.path().join("missing"), 2), "");
    }

    #[tokio::test]
    async fn watcher_sees_a_panic_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("serial.log");
        std::fs::write(&p, "booting\n").unwrap();
        let w = ConsoleWatch::start(p.clone(), 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(w.problem(), None);
        std::fs::write(&p, "booting\n[ 1.0] Kernel panic - not syncing: test\n").unwrap();
        for _ in 0..30 {
            if w.problem().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            w.problem().as_deref(),
            Some("[ 1.0] Kernel panic - not syncing: test")
        );
    }
}
