//! Runs a [`Scenario`]: builds (or takes from the cache) each VM's image, boots the VMs,
//! installs the freshly built ulxc binaries, runs the steps in order under the scenario's
//! deadline, records a transcript, keeps artifacts on failure and shuts the VMs down (or,
//! with `keep`, leaves a failed scenario's VMs running and says how to enter them).
//!
//! Progress goes out as [`Event`]s over a channel; the end result is a [`RunReport`].
//! Failures are told apart: [`RunError::Scenario`] (a step's expectation, a kernel problem on
//! the console, the deadline) maps to [`exit_codes::SCENARIO_FAILED`],
//! [`RunError::Infrastructure`] (image build, boot, SSH, installing ulxc) to
//! [`exit_codes::INFRASTRUCTURE`].
//!
//! The deadline is the scenario's `timeout` times the timeout multiplier of the accelerator
//! in use (TCG is slower); it covers booting and the steps, not a first image build.

pub mod artifacts;
pub mod event;
pub mod install;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::image;
use crate::scenario::{eval_id, Scenario, Step, StepKind, Vars};
use crate::vm::{self, Accel, Vm, VmSpec};

pub use event::Event;
pub use report::{Outcome, RunReport, StepRecord, StepStatus, VmRecord, REPORT_FORMAT_VERSION};

/// Process exit codes of `ulxc-harness` and their meaning.
pub mod exit_codes {
    /// Every scenario passed (or every file checked clean).
    pub const OK: i32 = 0;
    /// A scenario failed: a step's expectation, a kernel problem on the console, the
    /// scenario's deadline; or `check` found a malformed scenario.
    pub const SCENARIO_FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The harness could not set up: image build, QEMU start, SSH never came, installing ulxc.
    pub const INFRASTRUCTURE: i32 = 3;
    /// Interrupted by SIGINT.
    pub const INTERRUPTED: i32 = 130;
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Leave a failed scenario's VMs running and print how to enter them.
    pub keep: bool,
    /// Kernel name for every VM (overrides the scenario's and the recipe's default).
    pub kernel: Option<String>,
    /// Accelerator (default: [`vm::detect_accel`]).
    pub accel: Option<Accel>,
    /// Image cache and build settings.
    pub build: image::BuildOptions,
    /// Root of the artifact directories (default `<workspace>/target/harness-artifacts`).
    pub artifacts_root: PathBuf,
    /// Where progress events go (none: silent).
    pub events: Option<UnboundedSender<Event>>,
}

impl RunOptions {
    /// Defaults: no keep, default kernel and accelerator, cache from the environment,
    /// artifacts under `<workspace>/target/harness-artifacts`, no events.
    pub fn from_env() -> Self {
        RunOptions {
            keep: false,
            kernel: None,
            accel: None,
            build: image::BuildOptions::from_env(),
            artifacts_root: artifacts::default_root(),
            events: None,
        }
    }
}

/// Why a run did not pass; either way the full report comes along.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario failed (exit code [`exit_codes::SCENARIO_FAILED`]).
    #[error("{}", .0.headline())]
    Scenario(Box<RunReport>),
    /// The harness could not set the scenario up (exit code [`exit_codes::INFRASTRUCTURE`]).
    #[error("{}", .0.headline())]
    Infrastructure(Box<RunReport>),
}

impl RunError {
    /// The report of the failed run.
    pub fn report(&self) -> &RunReport {
        match self {
            RunError::Scenario(r) | RunError::Infrastructure(r) => r,
        }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Scenario(_) => exit_codes::SCENARIO_FAILED,
            RunError::Infrastructure(_) => exit_codes::INFRASTRUCTURE,
        }
    }
}

/// The artifact directory name of a run: the scenario name, plus `-<kernel>` when a
/// kernel was asked for explicitly.
pub fn run_id(scenario: &Scenario, kernel: Option<&str>) -> String {
    match kernel {
        Some(k) => format!("{}-{k}", scenario.name),
        None => scenario.name.clone(),
    }
}

/// A booted VM with what the steps need to know about it.
struct Booted {
    vm: Vm,
    kernel: String,
}

/// State of a run in progress; owned by [`run`], never shared.
struct Run<'a> {
    scenario: &'a Scenario,
    opts: &'a RunOptions,
    started: Instant,
    deadline: Instant,
    multiplier: f64,
    report: RunReport,
    vms: Vec<(String, Booted)>,
    /// Work directories of the VMs, removed at the end unless kept.
    work_dirs: Vec<PathBuf>,
    /// The `[[vm.serve]]` servers on 127.0.0.1; they stop when the run ends.
    servers: Vec<crate::serve::RunningServer>,
}

impl Run<'_> {
    fn emit(&self, ev: Event) {
        if let Some(tx) = &self.opts.events {
            // A reporter that went away is not the run's problem.
            let _ = tx.send(ev);
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.multiplier)
    }

    fn vm(&self, name: &str) -> Option<&Booted> {
        self.vms.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }
}

fn infra(stage: &str, error: impl std::fmt::Display) -> Outcome {
    Outcome::Infrastructure {
        stage: stage.to_owned(),
        error: error.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

/// Runs `scenario`; see the module documentation. With `opts.keep`, VMs of a failed run are
/// left running only until this process ends (QEMU dies with its parent): a caller that
/// wants to wait for them uses [`run_keeping`].
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunReport, RunError> {
    run_keeping(scenario, opts).await.0
}

/// [`run`], also returning the VMs left running (`opts.keep` and a failure), so that the
/// caller can wait for them ([`vm::KeptVm::wait`]) and remove their work directories.
pub async fn run_keeping(
    scenario: &Scenario,
    opts: &RunOptions,
) -> (Result<RunReport, RunError>, Vec<vm::KeptVm>) {
    let accel = match opts.accel {
        Some(a) => a,
        None => tokio::task::spawn_blocking(vm::detect_accel)
            .await
            .unwrap_or(Accel::Tcg),
    };
    let timeouts = vm::Timeouts::default();
    // TCG factor times $ULXC_HARNESS_TIMEOUT_MULTIPLIER.
    let multiplier = timeouts.scale(Duration::from_secs(1), accel).as_secs_f64();
    let started = Instant::now();
    let deadline_len = scenario.timeout.mul_f64(multiplier);
    let mut run = Run {
        scenario,
        opts,
        started,
        deadline: started + deadline_len,
        multiplier,
        report: RunReport {
            format_version: REPORT_FORMAT_VERSION,
            scenario: scenario.name.clone(),
            path: scenario.path.clone(),
            kernel: opts.kernel.clone(),
            accel: accel.as_str().to_owned(),
            timeout_multiplier: multiplier,
            started_at: jiff::Timestamp::now().to_string(),
            duration: Duration::ZERO,
            vms: Vec::new(),
            steps: scenario
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| not_run(i + 1, s))
                .collect(),
            outcome: Outcome::Passed,
            artifacts: None,
            kept: Vec::new(),
        },
        vms: Vec::new(),
        work_dirs: Vec::new(),
        servers: Vec::new(),
    };
    let art_dir = opts
        .artifacts_root
        .join(run_id(scenario, opts.kernel.as_deref()));
    if art_dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&art_dir) {
            tracing::warn!(dir = ?art_dir, ?e, "cannot remove stale artifacts");
        }
    }
    run.emit(Event::ScenarioStarted {
        scenario: scenario.name.clone(),
        steps: scenario.steps.len(),
        accel: accel.as_str().to_owned(),
        deadline: deadline_len,
    });
    tracing::info!(scenario = %scenario.name, accel = accel.as_str(), ?deadline_len, "scenario starting");

    let outcome = match setup(&mut run, accel, timeouts).await {
        Err(o) => o,
        Ok(()) => steps(&mut run).await,
    };
    run.report.outcome = outcome;
    finish(run, art_dir).await
}

fn not_run(index: usize, s: &Step) -> StepRecord {
    StepRecord {
        index,
        line: s.line,
        name: s.name.clone(),
        kind: s.kind.kind_name().to_owned(),
        vm: s.vm.clone(),
        user: s.user.clone(),
        command: String::new(),
        exit_status: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
        attempts: 0,
        status: StepStatus::NotRun,
        reason: None,
    }
}

/// Builds images, boots VMs, installs ulxc. `Err` is the outcome to report.
async fn setup(run: &mut Run<'_>, accel: Accel, timeouts: vm::Timeouts) -> Result<(), Outcome> {
    let bins = match install::find_binaries() {
        Ok(b) => Some(b),
        Err(e) if run.scenario.needs_ulxc => return Err(infra("install", e)),
        Err(e) => {
            run.emit(Event::UlxcSkipped {
                reason: e.to_string(),
            });
            None
        }
    };
    for req in &run.scenario.vms {
        run.emit(Event::ImageBuilding {
            vm: req.name.clone(),
            recipe: req.image.clone(),
        });
        let t0 = Instant::now();
        let recipe_path = image::recipe_path(&req.image);
        let build_opts = run.opts.build.clone();
        let built = tokio::task::spawn_blocking(move || {
            let recipe = image::load_recipe(&recipe_path)?;
            image::build(&recipe, &build_opts)
        })
        .await
        .map_err(|e| infra("image", format!("image build task failed: {e}")))?
        .map_err(|e| infra("image", error_chain(&e)))?;
        run.emit(Event::ImageReady {
            vm: req.name.clone(),
            hash: built.hash.clone(),
            duration: t0.elapsed(),
        });
        let want = run.opts.kernel.as_deref().or(req.kernel.as_deref());
        let kernel = built.kernel(want).cloned().ok_or_else(|| {
            infra(
                "image",
                format!(
                    "image {} has no kernel {:?}; it has: {}",
                    req.image,
                    want.unwrap_or("(default)"),
                    built
                        .kernels
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let work_dir = tempfile::Builder::new()
            .prefix(&format!("ulxc-harness-{}-", req.name))
            .tempdir()
            .map_err(|e| infra("boot", format!("cannot create a VM work directory: {e}")))?
            .keep();
        run.work_dirs.push(work_dir.clone());
        let mut guestfwds = Vec::new();
        for serve in &req.serves {
            let server = crate::serve::Server::bind(
                &serve.dir,
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                None,
            )
            .map_err(|e| infra("boot", format!("cannot serve {}: {e}", serve.dir.display())))?
            .spawn();
            tracing::info!(guest = %serve.guest, host = %server.addr(), dir = ?serve.dir, "serving a directory to the guest");
            guestfwds.push(vm::GuestFwd {
                guest_addr: serve.guest,
                host: server.addr(),
            });
            run.servers.push(server);
        }
        let spec = VmSpec {
            name: format!("{}-{}", run.scenario.name, req.name),
            disk_base: built.disk.clone(),
            kernel: kernel.vmlinuz.clone(),
            initrd: kernel.initrd.clone(),
            cmdline: kernel.cmdline.clone(),
            memory_mib: req.memory_mib,
            cpus: req.cpus,
            accel: Some(accel),
            guestfwds,
            work_dir,
            ssh_private_key: built.ssh_private_key.clone(),
            snapshot_cache: Some(built.dir.join("snapshots").join(&kernel.name)),
            timeouts,
        };
        run.emit(Event::VmStarting {
            vm: req.name.clone(),
            kernel: kernel.name.clone(),
        });
        let t0 = Instant::now();
        let remaining = run.remaining();
        let vm = match tokio::time::timeout(remaining, Vm::start(spec)).await {
            Ok(Ok(vm)) => vm,
            Ok(Err(e)) => return Err(infra("boot", error_chain(&e))),
            Err(_) => {
                return Err(infra(
                    "boot",
                    format!(
                        "the scenario's deadline passed while vm {} was booting",
                        req.name
                    ),
                ))
            }
        };
        let boot = t0.elapsed();
        run.emit(Event::VmReady {
            vm: req.name.clone(),
            duration: boot,
            ssh: vm.ssh_command("root"),
        });
        run.report.vms.push(VmRecord {
            name: req.name.clone(),
            image: req.image.clone(),
            image_hash: built.hash.clone(),
            kernel: kernel.name.clone(),
            kernel_version: kernel.version.clone(),
            boot,
            ssh_port: vm.ssh_port(),
        });
        run.vms.push((
            req.name.clone(),
            Booted {
                vm,
                kernel: kernel.name.clone(),
            },
        ));
    }
    if let Some(bins) = bins {
        let t = run.scaled(Duration::from_secs(60));
        for (name, b) in &run.vms {
            install::install(&b.vm, &bins, t)
                .await
                .map_err(|e| infra("install", e))?;
            run.emit(Event::UlxcInstalled {
                vm: name.clone(),
                from: bins.dir.clone(),
            });
        }
    }
    Ok(())
}

/// Runs the steps; returns the outcome.
async fn steps(run: &mut Run<'_>) -> Outcome {
    let mut captures = Vars::new();
    let total = run.scenario.steps.len();
    for (i, step) in run.scenario.steps.iter().enumerate() {
        let index = i + 1;
        let mut rec = not_run(index, step);
        rec.name = display_name(run, step, &captures);
        run.emit(Event::StepStarted {
            index,
            total,
            name: rec.name.clone(),
        });
        let t0 = Instant::now();
        let remaining = run.remaining();
        let result =
            match tokio::time::timeout(remaining, exec_step(run, step, &mut captures, &mut rec))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "the scenario's deadline ({} x {} = {}) passed during this step",
                    humantime::format_duration(run.scenario.timeout),
                    run.multiplier,
                    humantime::format_duration(run.scenario.timeout.mul_f64(run.multiplier))
                )),
            };
        // A kernel problem on any console fails the step, whatever its own result.
        let result = result.and_then(|()| {
            for (name, b) in &run.vms {
                if let Some(line) = b.vm.console_problem() {
                    return Err(format!(
                        "vm {name}'s console shows a kernel problem: {line}"
                    ));
                }
            }
            Ok(())
        });
        rec.duration = t0.elapsed();
        match &result {
            Ok(()) => rec.status = StepStatus::Passed,
            Err(why) => {
                rec.status = StepStatus::Failed;
                rec.reason = Some(why.clone());
            }
        }
        tracing::info!(step = index, name = %step.name, status = ?rec.status, reason = ?rec.reason, "step finished");
        run.emit(Event::StepFinished(Box::new(rec.clone())));
        run.report.steps[i] = rec;
        if let Err(reason) = result {
            return Outcome::Failed {
                step: index,
                reason,
            };
        }
    }
    Outcome::Passed
}

/// The step's name with its variables substituted (as written if one is undefined).
fn display_name(run: &Run<'_>, step: &Step, captures: &Vars) -> String {
    let kernel = run
        .vm(&step.vm)
        .map(|b| b.kernel.as_str())
        .unwrap_or_default();
    let vars = run.scenario.vars_for(step, kernel, captures);
    crate::scenario::Template::parse(&step.name)
        .render(&vars)
        .unwrap_or_else(|_| step.name.clone())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs one step, filling `rec`; `Err` says why it failed.
async fn exec_step(
    run: &mut Run<'_>,
    step: &Step,
    captures: &mut Vars,
    rec: &mut StepRecord,
) -> Result<(), String> {
    let kernel = run
        .vm(&step.vm)
        .map(|b| b.kernel.clone())
        .unwrap_or_default();
    let vars = run.scenario.vars_for(step, &kernel, captures);
    let render = |t: &crate::scenario::Template| t.render(&vars).map_err(|e| e.to_string());
    let vm_missing = || format!("vm {} is not running", step.vm);
    match &step.kind {
        StepKind::Run {
            command,
            expect,
            capture,
            timeout,
        } => {
            let cmd = render(command)?;
            rec.command = cmd.clone();
            let b = run.vm(&step.vm).ok_or_else(vm_missing)?;
            rec.attempts = 1;
            let out =
                b.vm.exec(&step.user, &cmd, run.scaled(*timeout))
                    .await
                    .map_err(|e| format!("command could not run: {}", error_chain(&e)))?;
            rec.exit_status = Some(out.status);
            rec.stdout = lossy(&out.stdout);
            rec.stderr = lossy(&out.stderr);
            expect.check(out.status, &rec.stdout, &rec.stderr, &vars)?;
            if let Some(c) = capture {
                captures.insert(c.clone(), rec.stdout.trim().to_owned());
            }
            Ok(())
        }
        StepKind::WaitUntil {
            command,
            expect,
            capture,
            deadline,
            interval,
        } => {
            let cmd = render(command)?;
            rec.command = cmd.clone();
            let b = run.vm(&step.vm).ok_or_else(vm_missing)?;
            let until = Instant::now() + run.scaled(*deadline);
            loop {
                rec.attempts += 1;
                let left = until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                let last = match b.vm.exec(&step.user, &cmd, left).await {
                    Ok(out) => {
                        rec.exit_status = Some(out.status);
                        rec.stdout = lossy(&out.stdout);
                        rec.stderr = lossy(&out.stderr);
                        match expect.check(out.status, &rec.stdout, &rec.stderr, &vars) {
                            Ok(()) => {
                                if let Some(c) = capture {
                                    captures.insert(c.clone(), rec.stdout.trim().to_owned());
                                }
                                return Ok(());
                            }
                            Err(why) => why,
                        }
                    }
                    Err(e) => format!("command could not run: {}", error_chain(&e)),
                };
                if Instant::now() + *interval >= until {
                    return Err(format!(
                        "not true after {} tries in {}; last try: {last}",
                        rec.attempts,
                        humantime::format_duration(run.scaled(*deadline))
                    ));
                }
                tokio::time::sleep(*interval).await;
            }
        }
        StepKind::ExpectOwner { path, uid, gid } => {
            let p = render(path)?;
            let quoted =
                shlex::try_quote(&p).map_err(|e| format!("path {p:?} cannot be quoted: {e}"))?;
            let cmd = format!("stat -c '%u:%g' -- {quoted}");
            rec.command = cmd.clone();
            let want_uid = eval_id(&render(uid)?).map_err(|e| e.to_string())?;
            let want_gid = match gid {
                Some(g) => Some(eval_id(&render(g)?).map_err(|e| e.to_string())?),
                None => None,
            };
            let b = run.vm(&step.vm).ok_or_else(vm_missing)?;
            rec.attempts = 1;
            let out =
                b.vm.exec(&step.user, &cmd, run.scaled(Duration::from_secs(30)))
                    .await
                    .map_err(|e| format!("stat could not run: {}", error_chain(&e)))?;
            rec.exit_status = Some(out.status);
            rec.stdout = lossy(&out.stdout);
            rec.stderr = lossy(&out.stderr);
            if out.status != 0 {
                return Err(format!("stat {p} failed: {}", rec.stderr.trim()));
            }
            let (u, g) = rec
                .stdout
                .trim()
                .split_once(':')
                .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
                .ok_or_else(|| format!("unexpected stat output {:?}", rec.stdout.trim()))?;
            let want = match want_gid {
                Some(g) => format!("{want_uid}:{g}"),
                None => want_uid.to_string(),
            };
            if u != want_uid || want_gid.is_some_and(|wg| wg != g) {
                return Err(format!("{p} is owned by {u}:{g}, expected {want}"));
            }
            Ok(())
        }
        StepKind::Upload {
            local,
            remote,
            mode,
            owner,
        } => {
            let remote = render(remote)?;
            let local = run.scenario.resolve_local(local);
            rec.command = format!("upload {} -> {remote} (mode {mode:o})", local.display());
            let b = run.vm(&step.vm).ok_or_else(vm_missing)?;
            b.vm.upload(&step.user, &local, &remote, *mode)
                .await
                .map_err(|e| format!("upload failed: {}", error_chain(&e)))?;
            if let Some(o) = owner {
                let o = render(o)?;
                let cmd = format!(
                    "chown {} {}",
                    shlex::try_quote(&o).map_err(|e| e.to_string())?,
                    shlex::try_quote(&remote).map_err(|e| e.to_string())?
                );
                rec.command.push_str(&format!("; {cmd}"));
                let out =
                    b.vm.exec("root", &cmd, run.scaled(Duration::from_secs(30)))
                        .await
                        .map_err(|e| format!("chown could not run: {}", error_chain(&e)))?;
                rec.exit_status = Some(out.status);
                rec.stderr = lossy(&out.stderr);
                if out.status != 0 {
                    return Err(format!("chown failed: {}", rec.stderr.trim()));
                }
            }
            Ok(())
        }
        StepKind::Reboot => {
            rec.command = "reboot".into();
            let b = run
                .vms
                .iter_mut()
                .find(|(n, _)| *n == step.vm)
                .map(|(_, b)| b)
                .ok_or_else(vm_missing)?;
            b.vm.reboot()
                .await
                .map_err(|e| format!("reboot failed: {}", error_chain(&e)))
        }
        StepKind::LinkDown | StepKind::LinkUp => {
            let up = matches!(step.kind, StepKind::LinkUp);
            rec.command = format!("set_link {}", if up { "up" } else { "down" });
            let b = run.vm(&step.vm).ok_or_else(vm_missing)?;
            b.vm.set_link(up)
                .await
                .map_err(|e| format!("set_link failed: {}", error_chain(&e)))
        }
        StepKind::Sleep(d) => {
            rec.command = format!("sleep {}", humantime::format_duration(*d));
            tokio::time::sleep(*d).await;
            Ok(())
        }
    }
}

/// Saves artifacts on failure, keeps or shuts down the VMs, and produces the result.
async fn finish(
    mut run: Run<'_>,
    art_dir: PathBuf,
) -> (Result<RunReport, RunError>, Vec<vm::KeptVm>) {
    let failed = run.report.outcome != Outcome::Passed;
    if failed {
        run.report.duration = run.started.elapsed();
        let vms: Vec<(&str, &Vm)> = run.vms.iter().map(|(n, b)| (n.as_str(), &b.vm)).collect();
        let timeout = Duration::from_secs(30).mul_f64(run.multiplier);
        match artifacts::save(&art_dir, &run.report, run.scenario, &vms, timeout).await {
            Ok(()) => {
                run.report.artifacts = Some(art_dir.clone());
                run.emit(Event::ArtifactsSaved {
                    dir: art_dir.clone(),
                });
            }
            Err(e) => tracing::error!(dir = ?art_dir, ?e, "cannot save artifacts"),
        }
    }
    let keep = failed && run.opts.keep;
    let vms = std::mem::take(&mut run.vms);
    let mut kept_vms = Vec::new();
    for (name, b) in vms {
        if keep {
            let kept = b.vm.keep();
            let how = format!("vm {name}: {kept}");
            run.emit(Event::VmKept { how: how.clone() });
            run.report.kept.push(how);
            kept_vms.push(kept);
        } else if let Err(e) = b.vm.shutdown().await {
            tracing::warn!(vm = %name, ?e, "shutdown reported an error");
        }
    }
    for d in &run.work_dirs {
        let is_kept = kept_vms.iter().any(|k| &k.work_dir == d);
        if !is_kept && d.exists() {
            if let Err(e) = std::fs::remove_dir_all(d) {
                tracing::warn!(dir = ?d, ?e, "cannot remove VM work directory");
            }
        }
    }
    run.report.duration = run.started.elapsed();
    if failed {
        // Rewrite the transcript with the final duration and the kept VMs.
        if run.report.artifacts.is_some() {
            if let Err(e) = artifacts::write_transcripts(&art_dir, &run.report) {
                tracing::warn!(dir = ?art_dir, ?e, "cannot rewrite transcript");
            }
        }
    }
    run.emit(Event::ScenarioFinished {
        scenario: run.scenario.name.clone(),
        outcome: run.report.outcome.clone(),
        duration: run.report.duration,
    });
    let result = match &run.report.outcome {
        Outcome::Passed => Ok(run.report),
        Outcome::Failed { .. } => Err(RunError::Scenario(Box::new(run.report))),
        Outcome::Infrastructure { .. } => Err(RunError::Infrastructure(Box::new(run.report))),
    };
    (result, kept_vms)
}
