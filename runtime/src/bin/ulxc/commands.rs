//! One function per subcommand: turn parsed arguments into library calls and print
//! what the library returns.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{self, Command, ConfigCommand};
use crate::exit;
use ulxc::attach::{self, AttachOptions};
use ulxc::container::{
    self, create, destroy, info, paths, start, stop, Caller, ContainerDir, State,
};
use ulxc::{checkconfig, config, idmap, userns};

/// Runs one subcommand; returns the exit code.
pub fn run(command: Command) -> Result<i32> {
    let caller = Caller::current();
    match command {
        Command::Create(a) => create_cmd(a, &caller),
        Command::Start(a) => start_cmd(a, &caller),
        Command::Stop(a) => stop_cmd(a, &caller),
        Command::Attach(a) => attach_cmd(a, &caller),
        Command::Ls(a) => ls_cmd(a, &caller),
        Command::Destroy(a) => destroy_cmd(a, &caller),
        Command::Execute(a) => execute_cmd(a, &caller),
        Command::Wait(a) => wait_cmd(a, &caller),
        Command::Info(a) => info_cmd(a, &caller),
        Command::Checkconfig(a) => checkconfig_cmd(a),
        Command::Usernsexec(a) => usernsexec_cmd(a, &caller),
        Command::Config(ConfigCommand::Upgrade { file, dry_run }) => upgrade_cmd(&file, dry_run),
        Command::Subid => subid_cmd(&caller),
    }
}

fn lxcpath(arg: Option<&Path>, caller: &Caller) -> Result<std::path::PathBuf> {
    Ok(paths::resolve_lxcpath(arg, caller)?)
}

fn existing(target: &cli::Target, caller: &Caller) -> Result<ContainerDir> {
    let lxcpath = lxcpath(target.lxcpath.as_deref(), caller)?;
    Ok(container::existing(&lxcpath, &target.name, caller)?)
}

fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => bail!("{what} `{s}` is not KEY=VALUE"),
        })
        .collect()
}

fn create_cmd(a: cli::CreateArgs, caller: &Caller) -> Result<i32> {
    if a.bdev != "dir" {
        bail!(
            "backing store {} is not supported; ulxc keeps rootfs directories (-B dir)",
            a.bdev
        );
    }
    let lxcpath = lxcpath(a.target.lxcpath.as_deref(), caller)?;
    let mut template = create::Template::parse(&a.template, &a.template_args)?;
    if let create::Template::Download(req) = &mut template {
        if (req.list || !req.missing().is_empty()) && !download_index(req)? {
            return Ok(exit::OK);
        }
    }
    let created = create::create(
        &lxcpath,
        &a.target.name,
        &template,
        a.config.as_deref(),
        caller,
    )?;
    for note in &created.notes {
        eprintln!("ulxc: {note}");
    }
    println!(
        "Created container {} in {} (rootfs owned by your mapped ids).\nStart it with: ulxc start -n {}{}",
        created.dir.name,
        caller.tilde(&lxcpath),
        created.dir.name,
        p_flag(&lxcpath, caller),
    );
    if let Some(message) = &created.message {
        println!("\n---\n{}", message.trim_end());
    }
    Ok(exit::OK)
}

/// `-t download` with `--list` or without `-d/-r/-a`: prints the index as LXC does, then
/// asks for what is missing on a terminal. Returns whether to go on creating.
fn download_index(req: &mut ulxc::image::download::Request) -> Result<bool> {
    use std::io::IsTerminal;
    use ulxc::image::download as dl;
    let settings = dl::Settings::resolve(req)?;
    let client = dl::Client::new(&settings.server, settings.ca_file.as_deref())?;
    eprintln!("Downloading the image index");
    let entries = dl::fetch_index(&client, &settings.server)?;
    print!("{}", dl::index::table(&entries, &req.filter()));
    std::io::stdout().flush()?;
    if req.list {
        return Ok(false);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the download template needs {} (no terminal to ask on); e.g. -t download -- -d debian -r bookworm -a amd64",
            req.missing().join(" ")
        );
    }
    println!();
    dl::ask_missing(req, &mut std::io::stdin().lock(), &mut std::io::stdout())?;
    if !req.missing().is_empty() {
        bail!("the download template needs {}", req.missing().join(" "));
    }
    Ok(true)
}

fn p_flag(lxcpath: &Path, caller: &Caller) -> String {
    if lxcpath == caller.default_lxcpath() {
        String::new()
    } else {
        format!(" -P {}", lxcpath.display())
    }
}

fn start_cmd(a: cli::StartArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    let opts = start::StartOptions {
        daemonize: !a.foreground,
        command: (!a.command.is_empty()).then(|| a.command.clone()),
        application: false,
        overrides: key_values(&a.define, "-s")?,
    };
    Ok(start::start(&dir, caller, &opts)?)
}

fn execute_cmd(a: cli::ExecuteArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    let opts = start::StartOptions {
        daemonize: false,
        command: Some(a.command.clone()),
        application: true,
        overrides: key_values(&a.define, "-s")?,
    };
    Ok(start::start(&dir, caller, &opts)?)
}

fn stop_cmd(a: cli::StopArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    match stop::stop(&dir, a.timeout, a.kill)? {
        stop::Stopped::WasStopped => {
            eprintln!("ulxc: {} is not running", dir.name);
            Ok(2)
        }
        stop::Stopped::Halted | stop::Stopped::Killed => Ok(exit::OK),
    }
}

fn attach_cmd(a: cli::AttachArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    let opts = AttachOptions {
        command: a.command,
        extra_env: key_values(&a.set_var, "--set-var")?,
        keep_env: a.keep_env,
    };
    Ok(attach::attach(&dir, &opts)?)
}

fn ls_cmd(a: cli::LsArgs, caller: &Caller) -> Result<i32> {
    let lxcpath = lxcpath(a.lxcpath.as_deref(), caller)?;
    if lxcpath.exists() {
        paths::check_lxcpath(&lxcpath, caller, false)?;
    }
    let filter = a
        .filter
        .as_deref()
        .map(|f| {
            regex::Regex::new(f)
                .with_context(|| format!("filter `{f}` is not a regular expression"))
        })
        .transpose()?;
    let rows: Vec<info::Listing> = info::list(&lxcpath)
        .into_iter()
        .filter(|r| !a.running || r.state == State::Running)
        .filter(|r| !a.stopped || r.state == State::Stopped)
        .filter(|r| filter.as_ref().is_none_or(|f| f.is_match(&r.name)))
        .collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", info::render_json(&rows))?;
    } else if a.fancy {
        write!(out, "{}", info::render_fancy(&rows))?;
    } else if a.one_per_line {
        for r in &rows {
            writeln!(out, "{}", r.name)?;
        }
    } else if !rows.is_empty() {
        writeln!(
            out,
            "{}",
            rows.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join("  ")
        )?;
    }
    Ok(exit::OK)
}

fn destroy_cmd(a: cli::DestroyArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    destroy::destroy(&dir, caller, a.force)?;
    Ok(exit::OK)
}

fn wait_cmd(a: cli::WaitArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    let states = a
        .state
        .split('|')
        .map(|s| {
            State::parse(s).with_context(|| {
                format!("unknown state `{s}`; use RUNNING, STOPPED, STARTING or STOPPING")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let timeout = u64::try_from(a.timeout).ok().map(Duration::from_secs);
    stop::wait(&dir, &states, timeout)?;
    Ok(exit::OK)
}

fn info_cmd(a: cli::InfoArgs, caller: &Caller) -> Result<i32> {
    let dir = existing(&a.target, caller)?;
    let i = info::info(&dir);
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"version": 1, "info": i}))?
        )?;
    } else if a.state || a.pid || a.ips {
        // As lxc-info: with -H (no humanize) the values alone, one a line, for scripts.
        let mut line = |label: &str, value: &dyn std::fmt::Display| {
            if a.raw {
                writeln!(out, "{value}")
            } else {
                writeln!(out, "{label:<16}{value}")
            }
        };
        if a.state {
            line("State:", &i.listing.state.as_str())?;
        }
        if a.pid {
            if let Some(pid) = i.listing.pid {
                line("PID:", &pid)?;
            }
        }
        if a.ips {
            for ip in i.listing.ipv4.iter().chain(&i.listing.ipv6) {
                line("IP:", ip)?;
            }
        }
    } else if a.raw {
        write!(out, "{}", info::render_info(&i).replace(" MiB", ""))?;
    } else {
        write!(out, "{}", info::render_info(&i))?;
    }
    Ok(exit::OK)
}

fn checkconfig_cmd(a: cli::CheckconfigArgs) -> Result<i32> {
    let report = checkconfig::run_checks();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        use std::io::IsTerminal;
        print!(
            "{}",
            report.render_text(!a.no_color && std::io::stdout().is_terminal())
        );
    }
    Ok(if report.ok() { exit::OK } else { exit::FAILURE })
}

fn usernsexec_cmd(a: cli::UsernsexecArgs, caller: &Caller) -> Result<i32> {
    let map = if a.maps.is_empty() {
        let uid = idmap::subuid_ranges(&caller.name, caller.uid)?;
        let gid = idmap::subgid_ranges(&caller.name, caller.uid)?;
        idmap::IdMap::from_subids(&uid, &gid)?.with_caller(caller.uid, caller.gid)
    } else {
        let mut lines = Vec::new();
        for m in &a.maps {
            let text = m.replace(':', " ");
            let line: idmap::IdMapLine = text.parse().with_context(|| format!("-m {m}"))?;
            lines.push((line, format!("-m {m}")));
        }
        let uid = idmap::subuid_ranges(&caller.name, caller.uid)?;
        let gid = idmap::subgid_ranges(&caller.name, caller.uid)?;
        idmap::check_allowed(&lines, &uid, &gid, caller.uid, caller.gid)?;
        let plain: Vec<idmap::IdMapLine> = lines.iter().map(|(l, _)| *l).collect();
        idmap::IdMap::from_lines(&plain)?
    };
    let argv = if a.command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        a.command
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let code = userns::run_mapped(&map, userns::Identity::Root, move || {
        let e = ulxc::sys::process::exec_with_env(&argv, &env);
        Err(format!("cannot execute {}: {e}", argv.join(" ")))
    })?;
    Ok(code)
}

fn upgrade_cmd(file: &Path, dry_run: bool) -> Result<i32> {
    if dry_run {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let (new, changes) = config::upgrade_text(&text, file)?;
        print!("{new}");
        for c in changes {
            eprintln!("{c}");
        }
        return Ok(exit::OK);
    }
    let changes = config::upgrade_file(file)?;
    if changes.is_empty() {
        println!("{}: no legacy keys", file.display());
    }
    for c in changes {
        println!("{c}");
    }
    Ok(exit::OK)
}

fn subid_cmd(caller: &Caller) -> Result<i32> {
    let uid = idmap::subuid_ranges(&caller.name, caller.uid)?;
    let gid = idmap::subgid_ranges(&caller.name, caller.uid)?;
    print!("{}", idmap::describe_for_cli(&caller.name, &uid, &gid));
    Ok(if uid.is_empty() || gid.is_empty() {
        exit::FAILURE
    } else {
        exit::OK
    })
}
