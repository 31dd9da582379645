//! Scenario files as tests (libtest-mimic, `harness = false`).
//!
//! Trials, for every `scenarios/*.toml`:
//! - `check::<name>`: loads and checks the file (fast, no VM; runs by default);
//! - `scenario::<name>`: runs it for real in VMs on the recipe's default kernel, and
//!   `scenario::<name>::<kernel>` for each further kernel the recipe lists (ignored by
//!   default: run with `--ignored`).
//!
//! Plus `harness::failing_scenario_keeps_artifacts` (ignored): runs
//! `tests/data/failing.toml` for real and checks the artifacts a failed run leaves.
//!
//! `--list` only reads the scenario and recipe files: it builds and boots nothing and prints
//! nothing but the list. Each trial can run alone in its own process (nextest's model).
//! Build the ulxc binaries first (`cargo build -p ulxc`) for scenarios that need them.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use ulxc_harness::runner::{self, RunError, RunOptions};
use ulxc_harness::{image, scenario, vm};

fn scenarios_dir() -> PathBuf {
    scenario::workspace_root().join("scenarios")
}

/// Kernel names to run `s` on, the default first; empty when the recipe cannot be read (the
/// scenario trial then fails with the reason instead of disappearing).
fn kernels(s: &scenario::Scenario) -> Result<Vec<String>, String> {
    if let Some(k) = s.pinned_kernel() {
        return Ok(vec![k.to_owned()]);
    }
    let vm = s.vms.first().ok_or("no vm")?;
    let recipe = image::load_recipe(&image::recipe_path(&vm.image)).map_err(|e| e.to_string())?;
    Ok(recipe.kernels.iter().map(|k| k.name.clone()).collect())
}

fn run_for_real(
    path: &Path,
    kernel: Option<String>,
) -> Result<Result<runner::RunReport, RunError>, Failed> {
    let s = scenario::load(path).map_err(|e| Failed::from(e.to_string()))?;
    vm::install_signal_cleanup();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    Ok(rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(runner::report::terminal_reporter(rx));
        let opts = RunOptions {
            kernel,
            events: Some(tx),
            ..RunOptions::from_env()
        };
        let r = runner::run(&s, &opts).await;
        drop(opts);
        let _ = printer.await;
        r
    }))
}

fn scenario_trial(path: PathBuf, kernel: Option<String>) -> Result<(), Failed> {
    let report =
        run_for_real(&path, kernel)?.map_err(|e| Failed::from(e.report().render_summary()))?;
    eprint!("{}", report.render_summary());
    no_qemu_left()
}

/// Every QEMU the run started is gone.
fn no_qemu_left() -> Result<(), Failed> {
    let left: Vec<u32> = vm::lifetime::live_pids()
        .into_iter()
        .filter(|p| vm::lifetime::pid_alive(*p))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("QEMU processes of this run are still alive: {left:?}").into())
    }
}

fn failing_scenario_keeps_artifacts() -> Result<(), Failed> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/failing.toml");
    let err = match run_for_real(&path, None)? {
        Ok(_) => return Err("the failing scenario passed".into()),
        Err(e) => e,
    };
    let RunError::Scenario(report) = &err else {
        return Err(format!(
            "expected a scenario failure, got: {}",
            err.report().render_summary()
        )
        .into());
    };
    if err.exit_code() != runner::exit_codes::SCENARIO_FAILED {
        return Err("wrong exit code for a scenario failure".into());
    }
    let runner::Outcome::Failed { step, reason } = &report.outcome else {
        return Err("outcome is not Failed".into());
    };
    if *step != 2 || !reason.contains("exit status 7") {
        return Err(format!(
            "failed at step {step} ({reason}), expected step 2 with exit status 7"
        )
        .into());
    }
    let dir = report
        .artifacts
        .clone()
        .ok_or("no artifact directory recorded")?;
    let expect_nonempty = |name: &str, needle: &str| -> Result<(), Failed> {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if !text.contains(needle) {
            return Err(format!(
                "{} does not contain {needle:?}:\n{}",
                p.display(),
                text.chars().take(2000).collect::<String>()
            )
            .into());
        }
        Ok(())
    };
    let [serial, journal, dmesg] = runner::artifacts::vm_files("guest");
    // Written to /dev/kmsg by the scenario's first step: on the console whether the VM
    // booted cold or was restored.
    expect_nonempty(&serial, "ulxc-harness-serial-marker")?;
    expect_nonempty(&journal, "ulxc-harness-serial-marker")?;
    expect_nonempty(&dmesg, "Linux version")?;
    expect_nonempty("transcript.txt", "expected-marker")?;
    expect_nonempty("transcript.txt", "to-stderr")?;
    expect_nonempty("transcript.txt", "exit status: 7")?;
    expect_nonempty("transcript.txt", "result: not run")?;
    expect_nonempty("transcript.json", "\"result\": \"failed\"")?;
    expect_nonempty("failing.toml", "harness-failing")?;
    no_qemu_left()
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let files = match scenario::discover(&scenarios_dir()) {
        Ok(f) => f,
        Err(e) => {
            // Not a silent empty list: a trial that says what went wrong.
            let dir = scenarios_dir();
            trials.push(Trial::test("check::scenarios-directory", move || {
                Err(Failed::from(format!("cannot list {}: {e}", dir.display())))
            }));
            Vec::new()
        }
    };
    for path in files {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = scenario::load(&path);
        let name = loaded
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|_| stem.clone());
        {
            let path = path.clone();
            trials.push(Trial::test(format!("check::{name}"), move || {
                scenario::load(&path)
                    .map(|_| ())
                    .map_err(|e| Failed::from(e.to_string()))
            }));
        }
        let Ok(s) = loaded else { continue };
        match kernels(&s) {
            Ok(ks) => {
                for (i, k) in ks.iter().enumerate() {
                    let (tname, kernel) = if i == 0 {
                        (
                            format!("scenario::{name}"),
                            s.pinned_kernel().map(str::to_owned),
                        )
                    } else {
                        (format!("scenario::{name}::{k}"), Some(k.clone()))
                    };
                    let path = path.clone();
                    trials.push(
                        Trial::test(tname, move || scenario_trial(path, kernel))
                            .with_ignored_flag(true),
                    );
                }
            }
            Err(why) => {
                trials.push(
                    Trial::test(format!("scenario::{name}"), move || {
                        Err(Failed::from(format!(
                            "cannot read the scenario's image recipe: {why}"
                        )))
                    })
                    .with_ignored_flag(true),
                );
            }
        }
    }
    trials.push(
        Trial::test(
            "harness::failing_scenario_keeps_artifacts",
            failing_scenario_keeps_artifacts,
        )
        .with_ignored_flag(true),
    );
    libtest_mimic::run(&args, trials).exit();
}
