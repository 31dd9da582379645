//! Build progress: an indicatif spinner with the phase name on a terminal, plain lines on
//! stderr otherwise (printing is this module's job), and a `tracing` event per phase.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Shows which build phase runs and how long each took.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
    phase: Option<(String, Instant)>,
}

impl Progress {
    /// A progress display for building `label`; `enabled = false` only logs through tracing.
    pub fn new(label: &str, enabled: bool) -> Self {
        let terminal = enabled && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            plain: enabled && !terminal,
            label: label.to_owned(),
            phase: None,
        }
    }

    /// Starts a phase (ending the previous one).
    pub fn phase(&mut self, name: &str, detail: &str) {
        self.end_phase();
        tracing::debug!(image = %self.label, phase = name, detail, "build phase");
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{name}: {detail}"));
        } else if self.plain {
            eprintln!("image {}: {name}: {detail}", self.label);
        }
        self.phase = Some((name.to_owned(), Instant::now()));
    }

    fn end_phase(&mut self) {
        if let Some((name, t)) = self.phase.take() {
            tracing::debug!(image = %self.label, phase = %name, secs = t.elapsed().as_secs_f64(), "phase done");
        }
    }

    /// Ends the display with a final message.
    pub fn finish(&mut self, message: &str) {
        self.end_phase();
        if let Some(bar) = self.bar.take() {
            bar.finish_with_message(message.to_owned());
        } else if self.plain {
            eprintln!("image {}: {message}", self.label);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
