//! Events the runner emits while a scenario runs. Reporters (the terminal, the libtest-mimic
//! trial, the JSON file) consume them or the final [`RunReport`](super::RunReport); the
//! runner keeps no shared mutable state with them.

use std::path::PathBuf;
use std::time::Duration;

use super::report::{Outcome, StepRecord, StepStatus};

/// Something that happened during a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The run began.
    ScenarioStarted {
        /// Scenario name.
        scenario: String,
        /// Number of steps.
        steps: usize,
        /// Accelerator.
        accel: String,
        /// Deadline after the multiplier.
        deadline: Duration,
    },
    /// An image is being built or taken from the cache.
    ImageBuilding {
        /// VM name.
        vm: String,
        /// Recipe.
        recipe: String,
    },
    /// The image is ready.
    ImageReady {
        /// VM name.
        vm: String,
        /// Cache hash.
        hash: String,
        /// Time it took.
        duration: Duration,
    },
    /// QEMU is starting.
    VmStarting {
        /// VM name.
        vm: String,
        /// Kernel name.
        kernel: String,
    },
    /// SSH answers.
    VmReady {
        /// VM name.
        vm: String,
        /// Start to SSH-ready.
        duration: Duration,
        /// `ssh ...` command line to enter it.
        ssh: String,
    },
    /// The ulxc binaries were copied in.
    UlxcInstalled {
        /// VM name.
        vm: String,
        /// Host directory they came from.
        from: PathBuf,
    },
    /// The ulxc binaries were not found and the scenario does not need them.
    UlxcSkipped {
        /// Why.
        reason: String,
    },
    /// A step began.
    StepStarted {
        /// 1-based index.
        index: usize,
        /// Number of steps.
        total: usize,
        /// Display name.
        name: String,
    },
    /// A step ended.
    StepFinished(Box<StepRecord>),
    /// Artifacts were written.
    ArtifactsSaved {
        /// The directory.
        dir: PathBuf,
    },
    /// A VM was left running (`--keep`).
    VmKept {
        /// What to print: ssh command, pid, how to stop it.
        how: String,
    },
    /// The run ended.
    ScenarioFinished {
        /// Scenario name.
        scenario: String,
        /// How.
        outcome: Outcome,
        /// Wall time.
        duration: Duration,
    },
}

impl Event {
    /// One human line for the terminal reporter (`None` for events it does not show).
    pub fn render_line(&self) -> Option<String> {
        Some(match self {
            Event::ScenarioStarted {
                scenario,
                steps,
                accel,
                deadline,
            } => format!(
                "==> {scenario}: {steps} steps, accel {accel}, deadline {}",
                humantime::format_duration(*deadline)
            ),
            Event::ImageBuilding { vm, recipe } => {
                format!("    [{vm}] image {recipe}: building or taking from cache")
            }
            Event::ImageReady { vm, hash, duration } => format!(
                "    [{vm}] image ready ({}) in {:.1}s",
                &hash[..hash.len().min(12)],
                duration.as_secs_f64()
            ),
            Event::VmStarting { vm, kernel } => {
                format!("    [{vm}] starting qemu, kernel {kernel}")
            }
            Event::VmReady { vm, duration, ssh } => {
                format!(
                    "    [{vm}] ready for ssh in {:.1}s: {ssh}",
                    duration.as_secs_f64()
                )
            }
            Event::UlxcInstalled { vm, from } => {
                format!("    [{vm}] installed ulxc from {}", from.display())
            }
            Event::UlxcSkipped { reason } => format!("    ulxc not installed: {reason}"),
            Event::StepStarted { index, total, name } => {
                format!(
                    "    [{index}/{total}] {}",
                    name.lines().next().unwrap_or("")
                )
            }
            Event::StepFinished(r) => match r.status {
                StepStatus::Passed => format!("          ok ({:.2}s)", r.duration.as_secs_f64()),
                StepStatus::Failed => format!(
                    "          FAILED ({:.2}s): {}",
                    r.duration.as_secs_f64(),
                    r.reason.as_deref().unwrap_or("")
                ),
                StepStatus::NotRun => return None,
            },
            Event::ArtifactsSaved { dir } => format!("    artifacts kept in {}", dir.display()),
            Event::VmKept { how } => format!("    VM left running:\n{how}"),
            Event::ScenarioFinished {
                scenario,
                outcome,
                duration,
            } => {
                let verdict = match outcome {
                    Outcome::Passed => "passed".to_owned(),
                    Outcome::Failed { step, .. } => format!("FAILED at step {step}"),
                    Outcome::Infrastructure { stage, .. } => {
                        format!("INFRASTRUCTURE FAILURE ({stage})")
                    }
                };
                format!(
                    "<== {scenario}: {verdict} in {:.1}s",
                    duration.as_secs_f64()
                )
            }
        })
    }
}
