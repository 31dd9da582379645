//! `ulxc-harness`: the command line of the VM test harness. Thin: it parses arguments,
//! calls the library (`scenario`, `runner`, `image`, `vm`) and maps results to exit codes.
//!
//! ```text
//! ulxc-harness run SCENARIO... [--keep] [--kernel NAME] [--accel kvm|tcg] [--json FILE]
//! ulxc-harness check FILE...
//! ulxc-harness ssh SCENARIO-or-RECIPE [--user U] [--kernel NAME] [--accel kvm|tcg]
//! ulxc-harness image build RECIPE... | image list | image prune [--keep HASH...]
//! ulxc-harness image container RECIPE --out DIR --key KEYFILE [--rootfs TARBALL --build ID]
//! ulxc-harness image keygen --out DIR
//! ulxc-harness serve DIR [--bind 127.0.0.1:PORT] [--tls] [--tls-dir DIR]
//! ```
//!
//! Exit codes (see `ulxc_harness::runner::exit_codes`): 0 all passed; 1 a scenario failed
//! or `check` found a malformed file; 2 usage error; 3 infrastructure failure (image build,
//! boot, SSH, installing ulxc); 130/143 interrupted by SIGINT/SIGTERM.
//!
//! Logs (`RUST_LOG`): to stderr (default level `warn`) when stderr is not a terminal; when
//! it is (the progress lines own it), to `<target>/harness-artifacts/ulxc-harness.log`
//! (default `info` for this crate).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use ulxc_harness::runner::{self, exit_codes, RunError, RunOptions};
use ulxc_harness::{image, publish, scenario, serve, vm};

#[derive(Parser)]
#[command(
    name = "ulxc-harness",
    version,
    about = "Boots Debian VMs in QEMU and drives ulxc scenarios in them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files in VMs and report.
    Run {
        /// Scenario files (`scenarios/NAME.toml`) or names (`NAME`).
        #[arg(required = true)]
        scenarios: Vec<String>,
        /// On failure leave the VMs running and print how to enter and stop them.
        #[arg(long)]
        keep: bool,
        /// Kernel name from the image recipe (default: the scenario's, else the recipe's first).
        #[arg(long)]
        kernel: Option<String>,
        /// Accelerator (default: detected; KVM only where it can really run a guest).
        #[arg(long, value_name = "kvm|tcg")]
        accel: Option<String>,
        /// Also write the reports as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Check scenario files without booting anything.
    Check {
        /// Scenario files (default: every `scenarios/*.toml`).
        files: Vec<PathBuf>,
    },
    /// Boot a scenario's (first) VM or a recipe's VM and open an interactive ssh session.
    Ssh {
        /// A scenario file/name or an image recipe name/path.
        target: String,
        /// Guest user to log in as.
        #[arg(long, default_value = "root")]
        user: String,
        /// Kernel name from the image recipe.
        #[arg(long)]
        kernel: Option<String>,
        /// Accelerator.
        #[arg(long, value_name = "kvm|tcg")]
        accel: Option<String>,
    },
    /// Build, list and prune guest images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Serve a directory (e.g. published container images) over HTTP, or HTTPS with a
    /// generated test CA (`--tls`; the CA file is printed as `ca: PATH`).
    Serve {
        /// Directory to serve.
        dir: PathBuf,
        /// Address to listen on (port 0 picks a free port; printed as `url: ...`).
        #[arg(long, default_value = "127.0.0.1:8443")]
        bind: std::net::SocketAddr,
        /// Serve HTTPS with a newly generated test CA and server certificate.
        #[arg(long)]
        tls: bool,
        /// Where `--tls` writes `ca.pem` (default: `<cache>/serve-tls`).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build (or find in the cache) the images of recipes (`bookworm` or a path).
    Build {
        /// Recipe names or paths.
        #[arg(required = true)]
        recipes: Vec<String>,
    },
    /// List cached images.
    List,
    /// Build (or find in the cache) a container image from `vm-images/containers/RECIPE.toml`,
    /// sign it and add it to `DIR/meta/1.0/index-system` (LXC's download layout).
    Container {
        /// Container recipe name (`bookworm`) or path.
        recipe: String,
        /// Directory to publish into (served as is by any static web server).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Armored OpenPGP secret key that signs the files (see `image keygen`).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Publish this root filesystem tarball (.tar.xz/.tar.zst/.tar.gz) instead of
        /// building one; the recipe still names dist/release/arch/variant.
        #[arg(long, value_name = "TARBALL")]
        rootfs: Option<PathBuf>,
        /// Build id in the index (default: the build's UTC time, `YYYYMMDD_HH:MM`).
        #[arg(long, value_name = "ID")]
        build: Option<String>,
    },
    /// Generate a signing key: `DIR/signing.key` (secret) and `DIR/trusted.asc` (the
    /// public key clients trust, e.g. `ulxc create -t download -- --keyring DIR/trusted.asc`).
    Keygen {
        /// Directory for the two files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Remove cached images except those named.
    Prune {
        /// Hashes to keep (default: the current build of every recipe in vm-images/).
        #[arg(long = "keep", value_name = "HASH")]
        keep: Vec<String>,
    },
}

fn init_logging() -> Option<PathBuf> {
    use tracing_subscriber::EnvFilter;
    // On stderr the progress lines already tell the story: only warnings by default.
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    if std::io::stderr().is_terminal() {
        let path = runner::artifacts::default_root().join("ulxc-harness.log");
        let file = path
            .parent()
            .map(std::fs::create_dir_all)
            .and_then(Result::ok)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .ok()
            });
        if let Some(file) = file {
            tracing_subscriber::fmt()
                .with_env_filter(filter("ulxc_harness=info,warn"))
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
            return Some(path);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .init();
    None
}

fn parse_accel(a: Option<&str>) -> anyhow::Result<Option<vm::Accel>> {
    a.map(|s| {
        s.parse::<vm::Accel>()
            .map_err(|e| anyhow::anyhow!("--accel {s}: {e}"))
    })
    .transpose()
}

/// `NAME` means `scenarios/NAME.toml` in the workspace; anything else is a path.
fn scenario_path(arg: &str) -> PathBuf {
    let p = Path::new(arg);
    if p.exists() || arg.contains('/') || arg.ends_with(".toml") {
        p.to_owned()
    } else {
        scenario::workspace_root()
            .join("scenarios")
            .join(format!("{arg}.toml"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = init_logging();
    vm::install_signal_cleanup();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ulxc-harness: error: {e:#}");
            exit_codes::INFRASTRUCTURE
        }
    };
    if code != exit_codes::OK {
        if let Some(log) = log {
            eprintln!("log: {}", log.display());
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check { files } => Ok(check(files)),
        Command::Run {
            scenarios,
            keep,
            kernel,
            accel,
            json,
        } => {
            let accel = parse_accel(accel.as_deref())?;
            tokio_runtime()?.block_on(run(scenarios, keep, kernel, accel, json))
        }
        Command::Ssh {
            target,
            user,
            kernel,
            accel,
        } => {
            let accel = parse_accel(accel.as_deref())?;
            tokio_runtime()?.block_on(ssh(&target, &user, kernel, accel))
        }
        Command::Image { command } => image_cmd(command),
        Command::Serve {
            dir,
            bind,
            tls,
            tls_dir,
        } => serve_cmd(&dir, bind, tls, tls_dir),
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn check(files: Vec<PathBuf>) -> i32 {
    let files = if files.is_empty() {
        let dir = scenario::workspace_root().join("scenarios");
        match scenario::discover(&dir) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("ulxc-harness: cannot list {}: {e}", dir.display());
                return exit_codes::SCENARIO_FAILED;
            }
        }
    } else {
        files
    };
    let mut code = exit_codes::OK;
    for f in files {
        match scenario::load(&f) {
            Ok(s) => {
                for w in &s.warnings {
                    eprintln!("{}:{}: warning: {}", f.display(), w.line, w.message);
                }
                println!("{}: ok ({}, {} steps)", f.display(), s.name, s.steps.len());
            }
            Err(e) => {
                eprintln!("{e}");
                code = exit_codes::SCENARIO_FAILED;
            }
        }
    }
    code
}

async fn run(
    scenarios: Vec<String>,
    keep: bool,
    kernel: Option<String>,
    accel: Option<vm::Accel>,
    json: Option<PathBuf>,
) -> anyhow::Result<i32> {
    // Check every file before booting anything.
    let mut loaded = Vec::new();
    let mut bad = false;
    for s in &scenarios {
        match scenario::load(&scenario_path(s)) {
            Ok(sc) => loaded.push(sc),
            Err(e) => {
                eprintln!("{e}");
                bad = true;
            }
        }
    }
    if bad {
        return Ok(exit_codes::SCENARIO_FAILED);
    }
    let mut code = exit_codes::OK;
    let mut reports = Vec::new();
    let mut kept = Vec::new();
    for sc in &loaded {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(runner::report::terminal_reporter(rx));
        let opts = RunOptions {
            keep,
            kernel: kernel.clone(),
            accel,
            events: Some(tx),
            ..RunOptions::from_env()
        };
        let (result, kept_now) = runner::run_keeping(sc, &opts).await;
        drop(opts);
        // The reporter ends once the run's sender is gone.
        let _ = printer.await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                code = code.max(e.exit_code());
                match e {
                    RunError::Scenario(r) | RunError::Infrastructure(r) => *r,
                }
            }
        };
        eprintln!();
        eprint!("{}", report.render_summary());
        reports.push(report);
        if !kept_now.is_empty() {
            // Stop at the first failure whose VMs are kept: they are what to look at.
            kept = kept_now;
            break;
        }
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "format_version": runner::REPORT_FORMAT_VERSION,
            "runs": reports,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write the JSON report {}", path.display()))?;
    }
    if reports.len() > 1 {
        eprintln!("\nsummary:");
        for r in &reports {
            eprintln!("  {}", r.headline());
        }
    }
    wait_for_kept(kept).await;
    Ok(code)
}

/// QEMU ends with this process: stay until every kept VM is stopped (or Ctrl-C, which the
/// signal cleanup turns into killing them), then remove their work directories.
async fn wait_for_kept(kept: Vec<vm::KeptVm>) {
    if kept.is_empty() {
        return;
    }
    eprintln!(
        "\nulxc-harness stays up while the kept VMs run: stop them with the kill commands above, or press Ctrl-C"
    );
    for k in kept {
        let dir = k.work_dir.clone();
        match k.wait().await {
            Ok(status) => eprintln!("kept VM ended ({status:?})"),
            Err(e) => eprintln!("waiting for a kept VM failed: {e}"),
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(?dir, ?e, "cannot remove a kept VM's work directory");
        }
    }
}

async fn ssh(
    target: &str,
    user: &str,
    kernel: Option<String>,
    accel: Option<vm::Accel>,
) -> anyhow::Result<i32> {
    // A scenario names its image; otherwise the target is a recipe.
    let sp = scenario_path(target);
    let (recipe_arg, memory_mib, cpus, pinned) = match scenario::load(&sp) {
        Ok(sc) => {
            let v = sc.vms.first().context("the scenario has no VM")?;
            (v.image.clone(), v.memory_mib, v.cpus, v.kernel.clone())
        }
        Err(_) if image::recipe_path(target).exists() => (target.to_owned(), 1024, 2, None),
        Err(e) => bail!("{target} is neither a loadable scenario nor an image recipe: {e}"),
    };
    let build_opts = image::BuildOptions::from_env();
    let rp = image::recipe_path(&recipe_arg);
    let built = tokio::task::spawn_blocking(move || -> anyhow::Result<image::BuiltImage> {
        let recipe = image::load_recipe(&rp)?;
        Ok(image::build(&recipe, &build_opts)?)
    })
    .await??;
    let want = kernel.as_deref().or(pinned.as_deref());
    let k = built
        .kernel(want)
        .with_context(|| format!("image {recipe_arg} has no kernel {want:?}"))?
        .clone();
    let accel = match accel {
        Some(a) => a,
        None => tokio::task::spawn_blocking(vm::detect_accel).await?,
    };
    let work = tempfile::Builder::new()
        .prefix("ulxc-harness-ssh-")
        .tempdir()?;
    let spec = vm::VmSpec {
        name: format!("ssh-{recipe_arg}"),
        disk_base: built.disk.clone(),
        kernel: k.vmlinuz.clone(),
        initrd: k.initrd.clone(),
        cmdline: k.cmdline.clone(),
        memory_mib,
        cpus,
        accel: Some(accel),
        guestfwds: Vec::new(),
        work_dir: work.path().to_owned(),
        ssh_private_key: built.ssh_private_key.clone(),
        snapshot_cache: Some(built.dir.join("snapshots").join(&k.name)),
        timeouts: vm::Timeouts::default(),
    };
    eprintln!("booting {recipe_arg} (kernel {}, {accel})...", k.name);
    let vm = vm::Vm::start(spec)
        .await
        .context("the VM did not come up")?;
    let line = vm.ssh_command(user);
    eprintln!("{line}");
    let words = shlex::split(&line).context("cannot split the ssh command")?;
    let (prog, args) = words.split_first().context("empty ssh command")?;
    let status = tokio::process::Command::new(prog).args(args).status().await;
    vm.shutdown().await.context("shutting the VM down")?;
    let status = status.with_context(|| format!("cannot run {prog}"))?;
    Ok(status.code().unwrap_or(exit_codes::SCENARIO_FAILED))
}

fn image_cmd(cmd: ImageCommand) -> anyhow::Result<i32> {
    let opts = image::BuildOptions::from_env();
    match cmd {
        ImageCommand::Build { recipes } => {
            for r in recipes {
                let path = image::recipe_path(&r);
                let recipe = image::load_recipe(&path)?;
                let built =
                    image::build(&recipe, &opts).with_context(|| format!("building image {r}"))?;
                println!("{} {} {}", built.recipe, built.hash, built.dir.display());
                for k in &built.kernels {
                    println!("  kernel {} {} {}", k.name, k.version, k.vmlinuz.display());
                }
            }
        }
        ImageCommand::List => {
            for b in image::list(&opts)? {
                let kernels: Vec<String> = b
                    .kernels
                    .iter()
                    .map(|k| format!("{}={}", k.name, k.version))
                    .collect();
                println!(
                    "{:<12} {} {} [{}]",
                    b.recipe,
                    b.hash,
                    b.dir.display(),
                    kernels.join(", ")
                );
            }
        }
        ImageCommand::Container {
            recipe,
            out,
            key,
            rootfs,
            build,
        } => {
            let path = publish::container_recipe_path(&recipe);
            let recipe = publish::load_container_recipe(&path)?;
            let key = publish::load_secret_key(&key)?;
            let (mut spec, tarball) = match rootfs {
                Some(t) => (
                    publish::ImageSpec {
                        dist: recipe.dist.clone(),
                        release: recipe.release.clone(),
                        arch: recipe.arch.clone(),
                        variant: recipe.variant.clone(),
                        build: jiff::Timestamp::now().strftime("%Y%m%d_%H:%M").to_string(),
                    },
                    t,
                ),
                None => publish::build_rootfs(&recipe, &opts)
                    .with_context(|| format!("building container image {}", path.display()))?,
            };
            if let Some(b) = build {
                spec.build = b;
            }
            let dir = publish::publish(&out, &spec, &tarball, &key)?;
            println!(
                "{};{};{};{};{} {}",
                spec.dist,
                spec.release,
                spec.arch,
                spec.variant,
                spec.build,
                dir.display()
            );
        }
        ImageCommand::Keygen { out } => {
            let (secret, public) = publish::keygen(&out, "ulxc-harness image signing key")?;
            println!("secret: {}", secret.display());
            println!("public: {}", public.display());
        }
        ImageCommand::Prune { keep } => {
            let keep = if keep.is_empty() {
                current_hashes()?
            } else {
                keep
            };
            for p in image::prune(&opts, &keep)? {
                println!("removed {}", p.display());
            }
        }
    }
    Ok(exit_codes::OK)
}

/// `serve`: binds, prints `url: ...` (and `ca: PATH` with `--tls`), serves until killed.
fn serve_cmd(
    dir: &Path,
    bind: std::net::SocketAddr,
    tls: bool,
    tls_dir: Option<PathBuf>,
) -> anyhow::Result<i32> {
    use std::io::Write as _;
    if !bind.ip().is_loopback() {
        eprintln!(
            "ulxc-harness: warning: serving {} on non-loopback {bind}",
            dir.display()
        );
    }
    let ca = if tls {
        let state =
            tls_dir.unwrap_or_else(|| image::BuildOptions::from_env().cache_dir.join("serve-tls"));
        Some(serve::TestCa::generate(&state, &[bind.ip().to_string()])?)
    } else {
        None
    };
    let server = serve::Server::bind(dir, bind, ca.as_ref())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "url: {}", server.url())?;
    if let Some(ca) = &ca {
        writeln!(out, "ca: {}", ca.ca_path.display())?;
    }
    out.flush()?;
    drop(out);
    server.run();
    Ok(exit_codes::OK)
}

/// Hashes of the current recipes in `vm-images/`, kept by `image prune` by default.
fn current_hashes() -> anyhow::Result<Vec<String>> {
    let dir = image::vm_images_dir();
    let mut out = Vec::new();
    for f in scenario::discover(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        out.push(image::load_recipe(&f)?.hash());
    }
    Ok(out)
}
