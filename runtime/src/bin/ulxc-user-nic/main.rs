//! `ulxc-user-nic`: the setuid-root helper that puts a veth pair between a host bridge
//! and a container's network namespace, within the quota of `/etc/lxc/lxc-usernet`.
//!
//! Deliberately tiny: argv parsed by hand, no environment variable read or changed, no
//! process spawned, no logging set up. All logic is in `ulxc::net::usernic`.
//! Exit status: 0 success, 1 refused or failed, 2 usage error.

use std::io::Write;

use ulxc::net::usernic::{self, Command, Privileges};

const EXIT_REFUSED: i32 = 1;
const EXIT_USAGE: i32 = 2;

fn fail(code: i32, message: &str) -> i32 {
    let _ = writeln!(std::io::stderr(), "ulxc-user-nic: {message}");
    code
}

fn run() -> i32 {
    // First of all: act with the caller's uid (the saved uid keeps root for later).
    let privileges = match Privileges::enter() {
        Ok(p) => p,
        Err(e) => return fail(EXIT_REFUSED, &e.to_string()),
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match usernic::parse_args(&args, usernic::read_pid_max()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    let mut warnings = Vec::new();
    let mut warn = |w: &str| warnings.push(w.to_string());
    let result = match &command {
        Command::Help => Ok(format!("{}\n", usernic::USAGE)),
        Command::Version => Ok(format!("ulxc-user-nic {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Create(request) => {
            usernic::create(&privileges, request, &mut warn).map(|line| format!("{line}\n"))
        }
        Command::List => usernic::list(&privileges, &mut warn),
    };
    // Drop for good before printing anything.
    if let Err(e) = privileges.drop_for_good() {
        return fail(EXIT_REFUSED, &e.to_string());
    }
    for warning in &warnings {
        let _ = writeln!(std::io::stderr(), "ulxc-user-nic: warning: {warning}");
    }
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return EXIT_REFUSED;
            }
            0
        }
        Err(e) => fail(EXIT_REFUSED, &e.to_string()),
    }
}

fn main() -> std::process::ExitCode {
    // A panic prints one fixed line; the default hook would read RUST_BACKTRACE.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "ulxc-user-nic: internal error: {info}");
    }));
    std::process::ExitCode::from(u8::try_from(run()).unwrap_or(1))
}
