//! The record of a run (versioned, serialisable: the `--json` file and `transcript.json`),
//! its text renderings (the transcript and the end-of-run summary), and the terminal
//! reporter that prints [`Event`]s as they arrive.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use super::event::Event;

/// Version of the JSON form of [`RunReport`]; bumped on incompatible changes.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step passed.
    Passed,
    /// A step did not meet its expectations (or the console showed a kernel problem, or
    /// the scenario's deadline passed).
    Failed {
        /// 1-based index of the failing step (0 when no step was running).
        step: usize,
        /// Why.
        reason: String,
    },
    /// The harness could not set the scenario up: image build, boot, SSH, installing ulxc.
    Infrastructure {
        /// Which stage failed (`image`, `boot`, `install`, ...).
        stage: String,
        /// The error chain.
        error: String,
    },
}

/// Result of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It met its expectations.
    Passed,
    /// It did not; the reason is in [`StepRecord::reason`].
    Failed,
    /// It never ran because an earlier step failed.
    NotRun,
}

/// The transcript entry of one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based index.
    pub index: usize,
    /// Line of the step in the scenario file.
    pub line: usize,
    /// The step's display name.
    pub name: String,
    /// Kind as written (`run`, `wait_until`, ...).
    pub kind: String,
    /// VM it ran on.
    pub vm: String,
    /// Guest user.
    pub user: String,
    /// The command as run (variables substituted), or a description for non-commands.
    pub command: String,
    /// Exit status of the (last) command, if one ran.
    pub exit_status: Option<i32>,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
    /// Wall time of the step.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// How many times the command ran (`wait_until`).
    pub attempts: u32,
    /// Pass or fail.
    pub status: StepStatus,
    /// Why it failed.
    pub reason: Option<String>,
}

/// What one VM was.
#[derive(Debug, Clone, Serialize)]
pub struct VmRecord {
    /// Name in the scenario.
    pub name: String,
    /// Image recipe.
    pub image: String,
    /// Image cache hash.
    pub image_hash: String,
    /// Kernel name.
    pub kernel: String,
    /// `uname -r` of that kernel.
    pub kernel_version: String,
    /// Time from start to SSH-ready.
    #[serde(with = "secs")]
    pub boot: Duration,
    /// Forwarded SSH port on 127.0.0.1.
    pub ssh_port: u16,
}

/// The whole record of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// [`REPORT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub path: PathBuf,
    /// Kernel requested for the run (`None`: each VM's default).
    pub kernel: Option<String>,
    /// Accelerator used.
    pub accel: String,
    /// Timeout multiplier applied (TCG).
    pub timeout_multiplier: f64,
    /// Start time, RFC 3339.
    pub started_at: String,
    /// Wall time.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// VMs booted.
    pub vms: Vec<VmRecord>,
    /// Every step, including those not run.
    pub steps: Vec<StepRecord>,
    /// How it ended.
    pub outcome: Outcome,
    /// Where artifacts were kept (on failure).
    pub artifacts: Option<PathBuf>,
    /// For `--keep`: how to enter and stop each VM left running.
    pub kept: Vec<String>,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn indent(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    for line in text.trim_end().lines() {
        let _ = writeln!(out, "{prefix}{line}");
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        let _ = writeln!(out, "... ({start} lines above)");
    }
    out.push_str(&all[start..].join("\n"));
    out
}

impl RunReport {
    /// Whether the scenario passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// Counts of (passed, failed, not run) steps.
    pub fn counts(&self) -> (usize, usize, usize) {
        let by = |s: StepStatus| self.steps.iter().filter(|r| r.status == s).count();
        (
            by(StepStatus::Passed),
            by(StepStatus::Failed),
            by(StepStatus::NotRun),
        )
    }

    /// One line: `reference-lxc: passed (17 steps, 43.10s)` or why it failed.
    pub fn headline(&self) -> String {
        let (p, f, n) = self.counts();
        match &self.outcome {
            Outcome::Passed => format!(
                "{}: passed ({p} steps, {})",
                self.scenario,
                secs(self.duration)
            ),
            Outcome::Failed { step, reason } => format!(
                "{}: FAILED at step {step}: {reason} ({p} passed, {f} failed, {n} not run, {})",
                self.scenario,
                secs(self.duration)
            ),
            Outcome::Infrastructure { stage, error } => format!(
                "{}: INFRASTRUCTURE FAILURE ({stage}): {error} ({})",
                self.scenario,
                secs(self.duration)
            ),
        }
    }

    /// The readable end-of-run report: VMs, one line per step with its time, the failing
    /// step's output, artifact paths and how to enter kept VMs.
    pub fn render_summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} ({}), accel {}",
            self.scenario,
            self.path.display(),
            self.accel
        );
        for vm in &self.vms {
            let _ = writeln!(
                out,
                "  vm {}: image {} ({}), kernel {} {}, ready for ssh in {}",
                vm.name,
                vm.image,
                &vm.image_hash[..vm.image_hash.len().min(12)],
                vm.kernel,
                vm.kernel_version,
                secs(vm.boot)
            );
        }
        for s in &self.steps {
            let mark = match s.status {
                StepStatus::Passed => "ok  ",
                StepStatus::Failed => "FAIL",
                StepStatus::NotRun => "--  ",
            };
            let _ = writeln!(
                out,
                "  {mark} {:>3} {:<60} {:>8}",
                s.index,
                truncate(&s.name, 60),
                secs(s.duration)
            );
            if s.status == StepStatus::Failed {
                let _ = writeln!(
                    out,
                    "         line {} as {} on {}: {}",
                    s.line,
                    s.user,
                    s.vm,
                    s.command.trim()
                );
                if let Some(r) = &s.reason {
                    let _ = writeln!(out, "         why: {r}");
                }
                if !s.stdout.trim().is_empty() {
                    let _ = writeln!(out, "         stdout:");
                    out.push_str(&indent(&tail(&s.stdout, 15), "           "));
                }
                if !s.stderr.trim().is_empty() {
                    let _ = writeln!(out, "         stderr:");
                    out.push_str(&indent(&tail(&s.stderr, 15), "           "));
                }
            }
        }
        let _ = writeln!(out, "{}", self.headline());
        if let Some(a) = &self.artifacts {
            let _ = writeln!(out, "artifacts: {}", a.display());
        }
        for k in &self.kept {
            out.push_str(&indent(k, "kept: "));
        }
        out
    }

    /// The full transcript (`transcript.txt`): every step with command, user, status,
    /// output, duration and verdict.
    pub fn render_transcript(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# ulxc-harness transcript: {} ({})",
            self.scenario,
            self.path.display()
        );
        let _ = writeln!(
            out,
            "# started {}, accel {}, timeout multiplier {}, kernel {}",
            self.started_at,
            self.accel,
            self.timeout_multiplier,
            self.kernel.as_deref().unwrap_or("default")
        );
        for vm in &self.vms {
            let _ = writeln!(
                out,
                "# vm {}: image {} {}, kernel {} {}, ssh-ready in {}, port {}",
                vm.name,
                vm.image,
                vm.image_hash,
                vm.kernel,
                vm.kernel_version,
                secs(vm.boot),
                vm.ssh_port
            );
        }
        for s in &self.steps {
            let _ = writeln!(out, "\n## step {} (line {}): {}", s.index, s.line, s.name);
            let _ = writeln!(out, "kind: {}  vm: {}  as: {}", s.kind, s.vm, s.user);
            if s.status == StepStatus::NotRun {
                let _ = writeln!(out, "result: not run");
                continue;
            }
            let _ = writeln!(out, "command:");
            out.push_str(&indent(&s.command, "    "));
            if let Some(st) = s.exit_status {
                let _ = writeln!(out, "exit status: {st}");
            }
            if s.attempts > 1 {
                let _ = writeln!(out, "attempts: {}", s.attempts);
            }
            let _ = writeln!(out, "duration: {}", secs(s.duration));
            if !s.stdout.is_empty() {
                let _ = writeln!(out, "stdout:");
                out.push_str(&indent(&s.stdout, "    "));
            }
            if !s.stderr.is_empty() {
                let _ = writeln!(out, "stderr:");
                out.push_str(&indent(&s.stderr, "    "));
            }
            match (&s.status, &s.reason) {
                (StepStatus::Failed, Some(r)) => {
                    let _ = writeln!(out, "result: FAILED: {r}");
                }
                (StepStatus::Failed, None) => {
                    let _ = writeln!(out, "result: FAILED");
                }
                _ => {
                    let _ = writeln!(out, "result: passed");
                }
            }
        }
        let _ = writeln!(out, "\n# {}", self.headline());
        out
    }

    /// The JSON form (pretty).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise report: {e}\"}}"))
    }
}

fn truncate(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() <= max && !s.contains('\n') {
        first.to_owned()
    } else {
        let cut: String = first.chars().take(max.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

/// Prints events to stderr as they arrive, one line each; ends when every sender is gone.
///
/// This is the module whose job is printing, so it prints (to stderr: stdout stays free for
/// `--json -`-style uses and libtest's own output).
pub async fn terminal_reporter(mut rx: UnboundedReceiver<Event>) {
    while let Some(ev) = rx.recv().await {
        if let Some(line) = ev.render_line() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: usize, status: StepStatus) -> StepRecord {
        StepRecord {
            index,
            line: 10 + index,
            name: format!("step {index}"),
            kind: "run".into(),
            vm: "guest".into(),
            user: "user".into(),
            command: "lxc-ls --fancy".into(),
            exit_status: (status != StepStatus::NotRun)
                .then_some(if status == StepStatus::Failed { 1 } else { 0 }),
            stdout: if status == StepStatus::Failed {
                "NAME STATE\nref STOPPED\n".into()
            } else {
                String::new()
            },
            stderr: String::new(),
            duration: Duration::from_millis(1500),
            attempts: 1,
            reason: (status == StepStatus::Failed)
                .then(|| "stdout does not match regex \"^ref\\\\s+RUNNING\"".into()),
            status,
        }
    }

    fn report(outcome: Outcome) -> RunReport {
        RunReport {
            format_version: REPORT_FORMAT_VERSION,
            scenario: "reference-lxc".into(),
            path: "scenarios/reference-lxc.toml".into(),
            kernel: None,
            accel: "tcg".into(),
            timeout_multiplier: 3.0,
            started_at: "2026-11-29T02:00:00Z".into(),
            duration: Duration::from_secs(42),
            vms: vec![VmRecord {
                name: "guest".into(),
                image: "bookworm".into(),
                image_hash: "0123456789abcdef0123".into(),
                kernel: "cloud".into(),
                kernel_version: "6.1.0-28-cloud-amd64".into(),
                boot: Duration::from_millis(9800),
                ssh_port: 40000,
            }],
            steps: vec![
                step(1, StepStatus::Passed),
                step(2, StepStatus::Failed),
                step(3, StepStatus::NotRun),
            ],
            outcome,
            artifacts: Some("target/harness-artifacts/reference-lxc".into()),
            kept: vec![],
        }
    }

    #[test]
    fn summary_shows_steps_times_failure_and_artifacts() {
        let r = report(Outcome::Failed {
            step: 2,
            reason: "stdout does not match".into(),
        });
        let s = r.render_summary();
        assert!(s.contains("ok     1 step 1"), "{s}");
        assert!(s.contains("FAIL   2 step 2"), "{s}");
        assert!(s.contains("--     3 step 3"), "{s}");
        assert!(s.contains("1.50s"), "{s}");
        assert!(s.contains("why: stdout does not match regex"), "{s}");
        assert!(s.contains("ref STOPPED"), "{s}");
        assert!(s.contains("ready for ssh in 9.80s"), "{s}");
        assert!(s.contains("FAILED at step 2"), "{s}");
        assert!(s.contains("1 passed, 1 failed, 1 not run"), "{s}");
        assert!(
            s.contains("artifacts: target/harness-artifacts/reference-lxc"),
            "{s}"
        );
        assert!(!r.passed());
    }

    #[test]
    fn transcript_has_every_step() {
        let r = report(Outcome::Failed {
            step: 2,
            reason: "x".into(),
        });
        let t = r.render_transcript();
        assert!(t.contains("## step 1 (line 11): step 1"), "{t}");
        assert!(t.contains("## step 2 (line 12): step 2"), "{t}");
        assert!(t.contains("exit status: 1"), "{t}");
        assert!(t.contains("    ref STOPPED"), "{t}");
        assert!(t.contains("result: FAILED: stdout does not match"), "{t}");
        assert!(
            t.contains(
                "## step 3 (line 13): step 3\nkind: run  vm: guest  as: user\nresult: not run"
            ),
            "{t}"
        );
        assert!(t.contains("kernel cloud 6.1.0-28-cloud-amd64"), "{t}");
    }

    #[test]
    fn json_is_versioned_and_tagged() {
        let r = report(Outcome::Infrastructure {
            stage: "boot".into(),
            error: "ssh never answered".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["outcome"]["result"], "infrastructure");
        assert_eq!(v["outcome"]["stage"], "boot");
        assert_eq!(v["steps"][1]["status"], "failed");
        assert_eq!(v["steps"][0]["duration"], 1.5);
        assert_eq!(v["vms"][0]["ssh_port"], 40000);
        assert!(r.headline().contains("INFRASTRUCTURE FAILURE (boot)"));
    }

    #[test]
    fn passed_headline() {
        let mut r = report(Outcome::Passed);
        r.steps.truncate(1);
        assert_eq!(r.headline(), "reference-lxc: passed (1 steps, 42.00s)");
        assert!(r.passed());
    }

    #[test]
    fn long_names_are_cut() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("line1\nline2", 10), "line1...");
        assert_eq!(truncate(&"x".repeat(20), 10), "xxxxxxx...");
    }
}
