//! The command line: one clap struct per subcommand, with LXC's flags, so that the
//! same parser serves `ulxc start ...` and `lxc-start ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Rootless, LXC-compatible system containers.
#[derive(Debug, Parser)]
#[command(name = "ulxc", version, about, propagate_version = true)]
pub struct Cli {
    /// Log priority (LXC's names: ERROR, WARN, NOTICE, INFO, DEBUG, TRACE).
    #[arg(short = 'l', long = "logpriority", global = true, value_name = "LEVEL")]
    pub log_priority: Option<String>,
    /// Write logs to this file instead of standard error.
    #[arg(short = 'o', long = "logfile", global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Print only errors.
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The container directory and name, shared by most subcommands.
#[derive(Debug, Args)]
pub struct Target {
    /// The container's name.
    #[arg(short = 'n', long = "name")]
    pub name: String,
    /// The container directory (LXC's lxcpath); relative paths are made absolute.
    #[arg(short = 'P', long = "lxcpath", value_name = "DIR")]
    pub lxcpath: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a template (lxc-create).
    Create(CreateArgs),
    /// Start a container (lxc-start).
    Start(StartArgs),
    /// Stop a container (lxc-stop).
    Stop(StopArgs),
    /// Run a command in a running container (lxc-attach).
    Attach(AttachArgs),
    /// List containers (lxc-ls).
    Ls(LsArgs),
    /// Destroy a stopped container (lxc-destroy).
    Destroy(DestroyArgs),
    /// Run a command as an application container (lxc-execute).
    Execute(ExecuteArgs),
    /// Wait for a container to reach a state (lxc-wait).
    Wait(WaitArgs),
    /// Show a container's state, pid, addresses and memory use (lxc-info).
    Info(InfoArgs),
    /// Check that this host can run rootless containers (lxc-checkconfig).
    Checkconfig(CheckconfigArgs),
    /// Run a command in a user namespace with your id mapping (lxc-usernsexec).
    Usernsexec(UsernsexecArgs),
    /// Work on configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show your subordinate id ranges.
    Subid,
}

/// `ulxc create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// The template: busybox, local (-- --rootfs TARBALL [--config FILE]) or download
    /// (-- -d DIST -r RELEASE -a ARCH [--server URL] [--keyring FILE] ...).
    #[arg(short = 't', long = "template")]
    pub template: String,
    /// Start from this config file instead of ~/.config/lxc/default.conf.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Backing store; only `dir` is supported.
    #[arg(short = 'B', long = "bdev", default_value = "dir")]
    pub bdev: String,
    /// Arguments for the template, after `--`.
    #[arg(last = true)]
    pub template_args: Vec<String>,
}

/// `ulxc start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Run in the background and return once init runs (the default).
    #[arg(short = 'd', long = "daemon", conflicts_with = "foreground")]
    pub daemon: bool,
    /// Stay in the foreground, on the container's console.
    #[arg(short = 'F', long = "foreground")]
    pub foreground: bool,
    /// Set a configuration item, KEY=VALUE.
    #[arg(short = 's', long = "define", value_name = "KEY=VALUE")]
    pub define: Vec<String>,
    /// Init's command line instead of /sbin/init, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `ulxc stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Seconds to wait for a clean halt before killing (default 60).
    #[arg(short = 't', long = "timeout", default_value_t = 60)]
    pub timeout: u64,
    /// Kill at once instead of asking init to halt.
    #[arg(short = 'k', long = "kill")]
    pub kill: bool,
    /// Return without waiting (accepted for LXC compatibility; ulxc waits).
    #[arg(short = 'W', long = "nowait")]
    pub nowait: bool,
}

/// `ulxc attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Start from a clean environment (the default).
    #[arg(long = "clear-env", conflicts_with = "keep_env")]
    pub clear_env: bool,
    /// Keep the caller's environment.
    #[arg(long = "keep-env")]
    pub keep_env: bool,
    /// Set a variable, NAME=VALUE.
    #[arg(short = 'v', long = "set-var", value_name = "NAME=VALUE")]
    pub set_var: Vec<String>,
    /// The command, after `--`; default: root's shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `ulxc ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The container directory.
    #[arg(short = 'P', long = "lxcpath", value_name = "DIR")]
    pub lxcpath: Option<PathBuf>,
    /// A table with state, addresses and more.
    #[arg(short = 'f', long = "fancy")]
    pub fancy: bool,
    /// Versioned JSON.
    #[arg(long = "json")]
    pub json: bool,
    /// One name per line.
    #[arg(short = '1', long = "line")]
    pub one_per_line: bool,
    /// Only running containers.
    #[arg(long = "running")]
    pub running: bool,
    /// Only stopped containers.
    #[arg(long = "stopped")]
    pub stopped: bool,
    /// Only names matching this regular expression.
    pub filter: Option<String>,
}

/// `ulxc destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Kill a running container first.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
}

/// `ulxc execute`.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Set a configuration item, KEY=VALUE.
    #[arg(short = 's', long = "define", value_name = "KEY=VALUE")]
    pub define: Vec<String>,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `ulxc wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// The state(s) to wait for, e.g. RUNNING or 'RUNNING|STOPPED'.
    #[arg(short = 's', long = "state")]
    pub state: String,
    /// Give up after this many seconds (-1: never).
    #[arg(short = 't', long = "timeout", default_value_t = -1, allow_negative_numbers = true)]
    pub timeout: i64,
}

/// `ulxc info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Target container.
    #[command(flatten)]
    pub target: Target,
    /// Only the state.
    #[arg(short = 's', long = "state")]
    pub state: bool,
    /// Only the pid.
    #[arg(short = 'p', long = "pid")]
    pub pid: bool,
    /// Only the addresses.
    #[arg(short = 'i', long = "ips")]
    pub ips: bool,
    /// Raw numbers.
    #[arg(short = 'H', long = "no-humanize")]
    pub raw: bool,
    /// Versioned JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// `ulxc checkconfig`.
#[derive(Debug, Args)]
pub struct CheckconfigArgs {
    /// Versioned JSON.
    #[arg(long = "json")]
    pub json: bool,
    /// No colours.
    #[arg(long = "no-color")]
    pub no_color: bool,
}

/// `ulxc usernsexec`.
#[derive(Debug, Args)]
pub struct UsernsexecArgs {
    /// A mapping `u|g|b:NSID:HOSTID:COUNT` (repeatable); default: your subordinate
    /// ranges from id 0 and your own ids just after them.
    #[arg(short = 'm', long = "map", value_name = "MAP")]
    pub maps: Vec<String>,
    /// The command, after `--`; default: your shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `ulxc config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Rewrite LXC 2.x keys in FILE to the current ones, in place.
    Upgrade {
        /// The config file.
        file: PathBuf,
        /// Print the result instead of writing it.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
}
