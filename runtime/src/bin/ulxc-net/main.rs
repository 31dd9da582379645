//! `ulxc-net`: the host bridge, DHCP and NAT service (LXC's `lxc-net`), run as root.
//!
//! `ulxc-net [--config FILE]... [--run-dir DIR] start|stop|restart|status [--json]`.
//! The work is in [`ulxc::net::hostnet`]; this file parses arguments, loads the
//! settings, prints results and maps errors to exit codes (0 success, 1 failure, 2 bad
//! usage).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use ulxc::net::hostnet::{self, settings, Settings, StartOutcome};

/// The host bridge, DHCP and NAT for ulxc containers (like LXC's lxc-net).
#[derive(Parser)]
#[command(name = "ulxc-net", version)]
struct Cli {
    /// A settings file to read instead of /etc/default/lxc and /etc/default/lxc-net
    /// (repeatable; read in order, later assignments win).
    #[arg(long = "config", value_name = "FILE", global = true)]
    config: Vec<PathBuf>,
    /// Where the pid, lease and state files live (default: $ULXC_NET_RUN_DIR or
    /// /run/ulxc-net).
    #[arg(long, value_name = "DIR", global = true)]
    run_dir: Option<PathBuf>,
    /// Log detail: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set the bridge, forwarding, rules and dnsmasq up (idempotent).
    Start,
    /// Take them down again (idempotent; the forwarding sysctl is left as it is).
    Stop,
    /// Stop, then start.
    Restart,
    /// Show bridge, dnsmasq, leases, owned rules and settings with their sources.
    Status {
        /// Print the versioned JSON report.
        #[arg(long)]
        json: bool,
    },
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let settings = if cli.config.is_empty() {
        let files: Vec<PathBuf> = settings::DEFAULT_FILES.iter().map(PathBuf::from).collect();
        Settings::load(&files, false)?
    } else {
        Settings::load(&cli.config, true)?
    };
    Ok(settings)
}

fn start(cli: &Cli, run_dir: &std::path::Path) -> anyhow::Result<()> {
    let settings = load_settings(cli)?;
    match hostnet::start(&settings, run_dir)? {
        StartOutcome::Disabled { source } => {
            println!("ulxc-net: the bridge is disabled (USE_LXC_BRIDGE=\"false\" at {source}); nothing started");
        }
        StartOutcome::Up {
            state,
            kept_dnsmasq,
        } => {
            println!(
                "ulxc-net: up: bridge {} ({}) {}/{}, {} rules, dnsmasq pid {}{}",
                state.bridge,
                if state.created_bridge {
                    "created"
                } else {
                    "existing"
                },
                settings.addr,
                settings.prefix,
                state.backend,
                state.dnsmasq_pid.map_or("-".into(), |p| p.to_string()),
                if kept_dnsmasq {
                    " (already running)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

fn stop(run_dir: &std::path::Path) -> anyhow::Result<()> {
    let report = hostnet::stop(run_dir)?;
    let mut parts = Vec::new();
    if let Some(pid) = report.stopped_dnsmasq {
        parts.push(format!("dnsmasq pid {pid} stopped"));
    }
    parts.push("rules removed".into());
    if let Some(bridge) = report.deleted_bridge {
        parts.push(format!("bridge {bridge} deleted"));
    }
    if let Some(bridge) = report.kept_bridge {
        parts.push(format!("bridge {bridge} kept (it existed before start)"));
    }
    if let Some((bridge, ports)) = report.busy_bridge {
        parts.push(format!(
            "bridge {bridge} kept without its address: {} still attached (stop those containers, then `ip link delete {bridge}`)",
            ports.join(", ")
        ));
    }
    println!(
        "ulxc-net: {}: {}",
        if report.was_up { "down" } else { "was not up" },
        parts.join(", ")
    );
    Ok(())
}

fn status(cli: &Cli, run_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(cli)?;
    let status = hostnet::status(&settings, run_dir)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("encoding the status as JSON")?
        );
    } else {
        print!("{}", status.render());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let run_dir = hostnet::run_dir(cli.run_dir.clone());
    let result = match &cli.command {
        Command::Start => start(&cli, &run_dir),
        Command::Stop => stop(&run_dir),
        Command::Restart => stop(&run_dir).and_then(|()| start(&cli, &run_dir)),
        Command::Status { json } => status(&cli, &run_dir, *json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ulxc-net: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
