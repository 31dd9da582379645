//! `ulxc`: the command-line face of the ulxc library. Parses arguments (also when
//! invoked as `lxc-start`, `lxc-ls`, ...), sets up logging, dispatches to the library
//! and maps the outcome to an exit code. No logic lives here.
//!
//! Exit codes: [`exit::OK`] on success; [`exit::FAILURE`] when the command failed (the
//! one-line reason is on stderr); [`exit::USAGE`] for a malformed command line;
//! `attach` and `execute` end with the command's own exit status.

mod cli;
mod commands;
mod lxc_names;

use clap::Parser;

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The command failed.
    pub const FAILURE: i32 = 1;
    /// The command line was malformed (clap's own code).
    pub const USAGE: i32 = 2;
}

fn main() {
    let args = lxc_names::rewrite(std::env::args_os().collect());
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging(&cli);
    let code = match commands::run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ulxc: error: {}", chain(&e));
            exit::FAILURE
        }
    };
    std::process::exit(code);
}

fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match cli
        .log_priority
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        _ if cli.quiet => "error",
        Some("FATAL" | "ALERT" | "CRIT" | "ERROR") => "error",
        Some("WARN" | "WARNING") => "warn",
        Some("NOTICE" | "INFO") => "info",
        Some("DEBUG") => "debug",
        Some("TRACE") => "trace",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_env("ULXC_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_target(false);
    match &cli.log_file {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            Err(e) => {
                builder.with_writer(std::io::stderr).init();
                tracing::warn!(?path, %e, "cannot open the log file; logging to stderr");
            }
        },
        None => builder.with_writer(std::io::stderr).init(),
    }
}
