//! Scenario files (`scenarios/*.toml`): the model, the loader and the checker.
//!
//! [`load`] reads a file, rejects unknown keys, checks every step (one kind per step, the
//! fields that kind allows, variables defined before use, owner expressions, regexes,
//! durations, the flaky mark's expiry) and reports every problem with `file:line`. Nothing
//! is booted: `ulxc-harness check` and the `check::<name>` trials are this function.
//! The format is described for authors in `scenarios/README.md`.

mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use template::{eval_id, is_ident, ExprError, Template, UnknownVar, Vars};

/// Where the ulxc binary is installed in the guest.
pub const GUEST_ULXC: &str = "/usr/local/bin/ulxc";
/// Guest directory holding the `lxc-*` links to ulxc (kept out of `PATH`, since Debian's
/// real `lxc-*` live in `/usr/bin` and the reference scenario needs those).
pub const GUEST_LXC_BIN_DIR: &str = "/usr/local/lib/ulxc/lxc-bin";
/// Default user of a step.
pub const DEFAULT_USER: &str = "root";
/// Default name of a scenario's only VM.
pub const DEFAULT_VM: &str = "guest";
/// Default timeout of one `run` step (before the TCG multiplier).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Default scenario timeout (before the TCG multiplier).
pub const DEFAULT_SCENARIO_TIMEOUT: Duration = Duration::from_secs(900);

/// Names of the variables the runner defines for every step.
///
/// - `ulxc`: path of the ulxc binary in the guest; `ulxc_bin_dir`: the guest directory with
///   the `lxc-*` links to ulxc (prepend it to `PATH` to run ulxc under LXC's names);
/// - `scenario`, `vm`, `kernel`, `image`: names of what is running;
/// - `user`, `home`: the step's user and that user's home directory.
pub const BUILTIN_VARS: &[&str] = &[
    "ulxc",
    "ulxc_bin_dir",
    "scenario",
    "vm",
    "kernel",
    "image",
    "user",
    "home",
];

/// A loaded and checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from.
    pub path: PathBuf,
    /// Short name (`reference-lxc`), used in test names and artifact paths.
    pub name: String,
    /// What it checks.
    pub description: String,
    /// Free-form tags (`lxc`, `reference`, `network`, ...).
    pub tags: Vec<String>,
    /// Deadline for the whole scenario, before the TCG multiplier.
    pub timeout: Duration,
    /// Known-flaky mark, if any (never expired: an expired mark fails [`load`]).
    pub flaky: Option<Flaky>,
    /// Whether the freshly built ulxc binaries must be found and installed into the guests
    /// (`needs_ulxc`, default true). When false they are installed if found.
    pub needs_ulxc: bool,
    /// The scenario's `[vars]`.
    pub vars: Vars,
    /// The VMs it needs, the first is the default of every step.
    pub vms: Vec<VmReq>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Things that are allowed but discouraged (`sleep`), with their lines.
    pub warnings: Vec<Problem>,
}

/// A known-flaky mark: a reason, an expiry date and a tracker link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flaky {
    /// Why the scenario is flaky.
    pub reason: String,
    /// After this date the mark is an error.
    pub until: jiff::civil::Date,
    /// Issue tracking the flake.
    pub tracker: String,
}

/// A VM a scenario needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmReq {
    /// Name used by steps' `vm = ...` (default `guest`).
    pub name: String,
    /// Image recipe name or path (`bookworm` means `vm-images/bookworm.toml`).
    pub image: String,
    /// Kernel name from the recipe; `None` means the recipe's first (or `--kernel`).
    pub kernel: Option<String>,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Directories the harness serves over HTTP on 127.0.0.1, reached from the guest
    /// through a QEMU `guestfwd` at a fixed address (`[[vm.serve]]`).
    pub serves: Vec<ServeReq>,
}

/// `[[vm.serve]]`: a directory served to the guest at `guest` (e.g. `10.0.2.100:80`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReq {
    /// Guest-side address in QEMU's user network (10.0.2.0/24).
    pub guest: std::net::SocketAddrV4,
    /// The directory (relative paths are relative to the scenario file).
    pub dir: PathBuf,
}

/// Checks one `[[vm.serve]]`: an address of QEMU's user network that is not the
/// gateway (.2), the DNS server (.3) or the guest (.15), with a port; an existing directory.
fn check_serve(scenario: &Path, raw: &RawServe) -> Result<ServeReq, String> {
    let guest: std::net::SocketAddrV4 = raw.guest.parse().map_err(|_| {
        format!(
            "[[vm.serve]] guest = {:?} is not ADDRESS:PORT; use e.g. \"10.0.2.100:80\"",
            raw.guest
        )
    })?;
    let o = guest.ip().octets();
    if o[..3] != [10, 0, 2] || matches!(o[3], 0 | 2 | 3 | 15 | 255) || guest.port() == 0 {
        return Err(format!(
            "[[vm.serve]] guest = {:?} must be an address of QEMU's user network 10.0.2.0/24 other than .2 (gateway), .3 (DNS) and .15 (the guest), with a port; use e.g. \"10.0.2.100:80\"",
            raw.guest
        ));
    }
    let dir = scenario
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&raw.dir);
    if !dir.is_dir() {
        return Err(format!(
            "[[vm.serve]] dir = {:?}: {} is not a directory",
            raw.dir,
            dir.display()
        ));
    }
    Ok(ServeReq { guest, dir })
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of the step's `[[step]]` header in the file.
    pub line: usize,
    /// Display name (default: the step's command or kind).
    pub name: String,
    /// The VM it runs on.
    pub vm: String,
    /// The guest user it runs as (`as = "user"`, default root).
    pub user: String,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Run a command once and check it.
    Run {
        /// The `sh -c` command.
        command: Template,
        /// Expectations on the result.
        expect: Expect,
        /// Variable to store the trimmed stdout in.
        capture: Option<String>,
        /// Timeout of the command (before the TCG multiplier).
        timeout: Duration,
    },
    /// Run a command every `interval` until it meets its expectations or `deadline` passes.
    WaitUntil {
        /// The `sh -c` command.
        command: Template,
        /// What counts as success (default: exit status 0).
        expect: Expect,
        /// Variable to store the trimmed stdout of the successful try in.
        capture: Option<String>,
        /// Give up after this long (before the TCG multiplier).
        deadline: Duration,
        /// Pause between tries.
        interval: Duration,
    },
    /// Check the owner of a guest path.
    ExpectOwner {
        /// The guest path.
        path: Template,
        /// Expected uid, an integer expression.
        uid: Template,
        /// Expected gid, an integer expression, if given.
        gid: Option<Template>,
    },
    /// Copy a host file into the guest.
    Upload {
        /// Host path as written (relative to the scenario file's directory, then the workspace).
        local: PathBuf,
        /// Guest path.
        remote: Template,
        /// Permission bits.
        mode: u32,
        /// `user[:group]` to chown it to afterwards (as root).
        owner: Option<Template>,
    },
    /// Reboot the VM and wait for SSH again.
    Reboot,
    /// Take the VM's NIC link down.
    LinkDown,
    /// Bring the VM's NIC link up.
    LinkUp,
    /// Sleep (discouraged: prefer `wait_until`).
    Sleep(Duration),
}

/// Expected exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusExpect {
    /// Exactly this status.
    Code(i32),
    /// Any non-zero status.
    NonZero,
    /// Whatever.
    Any,
}

impl fmt::Display for StatusExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusExpect::Code(c) => write!(f, "{c}"),
            StatusExpect::NonZero => f.write_str("non-zero"),
            StatusExpect::Any => f.write_str("any"),
        }
    }
}

impl StatusExpect {
    /// Whether `status` satisfies the expectation.
    pub fn matches(&self, status: i32) -> bool {
        match self {
            StatusExpect::Code(c) => *c == status,
            StatusExpect::NonZero => status != 0,
            StatusExpect::Any => true,
        }
    }
}

/// Expectations on one output stream.
#[derive(Debug, Clone, Default)]
pub struct TextExpect {
    /// Each must occur.
    pub contains: Vec<Template>,
    /// None may occur.
    pub not_contains: Vec<Template>,
    /// The whole stream, trimmed of surrounding whitespace, must equal this.
    pub equals: Option<Template>,
    /// Each must match somewhere (multi-line mode: `^`/`$` match at line ends).
    pub regex: Vec<regex::Regex>,
}

impl TextExpect {
    fn is_empty(&self) -> bool {
        self.contains.is_empty()
            && self.not_contains.is_empty()
            && self.equals.is_none()
            && self.regex.is_empty()
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.contains
            .iter()
            .chain(&self.not_contains)
            .chain(&self.equals)
    }

    /// Checks `text`; returns why it does not meet the expectations.
    pub fn check(&self, stream: &str, text: &str, vars: &Vars) -> Result<(), String> {
        for c in &self.contains {
            let want = c.render(vars).map_err(|e| e.to_string())?;
            if !text.contains(&want) {
                return Err(format!("{stream} does not contain {want:?}"));
            }
        }
        for c in &self.not_contains {
            let bad = c.render(vars).map_err(|e| e.to_string())?;
            if text.contains(&bad) {
                return Err(format!("{stream} contains {bad:?}, which it must not"));
            }
        }
        if let Some(eq) = &self.equals {
            let want = eq.render(vars).map_err(|e| e.to_string())?;
            if text.trim() != want.trim() {
                return Err(format!(
                    "{stream} is {:?}, expected {:?}",
                    text.trim(),
                    want.trim()
                ));
            }
        }
        for re in &self.regex {
            if !re.is_match(text) {
                return Err(format!("{stream} does not match regex {:?}", re.as_str()));
            }
        }
        Ok(())
    }
}

/// Expectations on a command's result.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Exit status (default 0).
    pub status: StatusExpect,
    /// On stdout.
    pub stdout: TextExpect,
    /// On stderr.
    pub stderr: TextExpect,
}

impl Expect {
    /// Checks a result; `Err` says what was wrong.
    pub fn check(
        &self,
        status: i32,
        stdout: &str,
        stderr: &str,
        vars: &Vars,
    ) -> Result<(), String> {
        if !self.status.matches(status) {
            return Err(format!("exit status {status}, expected {}", self.status));
        }
        self.stdout.check("stdout", stdout, vars)?;
        self.stderr.check("stderr", stderr, vars)
    }
}

/// A problem (or warning) at a line of a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the format (unknown key, wrong type).
    #[error("{path}:{line}:{column}: {message}; see scenarios/README.md for the format")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file parsed but its content is wrong; every problem found is listed.
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems, in file order.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.line, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads and checks a scenario file, with today's date (UTC) for the flaky mark's expiry.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    load_at(path, today)
}

/// [`load`] with an explicit "today", for tests.
pub fn load_at(path: &Path, today: jiff::civil::Date) -> Result<Scenario, ScenarioError> {
    let src = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&src, path, today)
}

/// Lists `*.toml` files of a directory, sorted (the scenario set of `scenarios/`).
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The workspace root (the directory holding the top `Cargo.toml`): `$ULXC_WORKSPACE` if
/// set, else the one this crate was built in.
pub fn workspace_root() -> PathBuf {
    if let Some(p) = std::env::var_os("ULXC_WORKSPACE") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

// ---- raw (serde) form ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    timeout: Option<Spanned<String>>,
    flaky: Option<Spanned<RawFlaky>>,
    needs_ulxc: Option<bool>,
    #[serde(default)]
    vars: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    vm: Vec<Spanned<RawVm>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlaky {
    reason: String,
    until: Spanned<String>,
    tracker: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: Option<String>,
    image: String,
    kernel: Option<String>,
    memory: Option<u32>,
    cpus: Option<u32>,
    #[serde(default)]
    serve: Vec<RawServe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    guest: String,
    dir: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    vm: Option<String>,
    #[serde(rename = "as")]
    user: Option<String>,
    // kinds
    run: Option<Spanned<String>>,
    wait_until: Option<Spanned<String>>,
    expect_owner: Option<Spanned<String>>,
    upload: Option<Spanned<String>>,
    reboot: Option<bool>,
    link_down: Option<bool>,
    link_up: Option<bool>,
    sleep: Option<Spanned<String>>,
    // run / wait_until
    status: Option<Spanned<toml::Value>>,
    stdout_contains: Option<OneOrMany>,
    stdout_not_contains: Option<OneOrMany>,
    stdout_equals: Option<String>,
    stdout_regex: Option<Spanned<OneOrMany>>,
    stderr_contains: Option<OneOrMany>,
    stderr_not_contains: Option<OneOrMany>,
    stderr_equals: Option<String>,
    stderr_regex: Option<Spanned<OneOrMany>>,
    capture: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    // expect_owner / upload
    owner: Option<Spanned<String>>,
    to: Option<String>,
    mode: Option<Spanned<toml::Value>>,
}

/// Line (1-based) and column (1-based) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

struct Checker<'a> {
    src: &'a str,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_col(self.src, span.start).0
    }
    fn err(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }
    fn duration(&mut self, s: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(s.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                let line = self.line(s.span());
                self.err(line, format!("{what} must be longer than zero"));
                None
            }
            Err(e) => {
                let line = self.line(s.span());
                self.err(
                    line,
                    format!("{what} {:?} is not a duration ({e}); write e.g. \"90s\", \"5m\" or \"1m 30s\"", s.get_ref()),
                );
                None
            }
        }
    }
    fn template(&mut self, line: usize, raw: &str, known: &BTreeSet<String>) -> Template {
        let t = Template::parse(raw);
        if let Err(e) = t.check(known) {
            self.err(line, e.to_string());
        }
        t
    }
    fn id_expr(&mut self, line: usize, raw: &str, known: &BTreeSet<String>) -> Template {
        let t = self.template(line, raw, known);
        // Syntax check with every variable standing for 1.
        let probe: Vars = t.vars().map(|v| (v.to_owned(), "1".to_owned())).collect();
        if let Ok(expr) = t.render(&probe) {
            if let Err(e) = eval_id(&expr) {
                if !matches!(e, ExprError::OutOfRange { .. }) || t.vars().next().is_none() {
                    self.err(line, format!("owner {raw:?}: {e}"));
                }
            }
        }
        t
    }
}

fn parse(src: &str, path: &Path, today: jiff::civil::Date) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = toml::from_str(src).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(src, s.start));
        ScenarioError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim_end_matches('.').to_owned(),
        }
    })?;
    let mut ck = Checker {
        src,
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    let name_line = ck.line(raw.name.span());
    let name = raw.name.into_inner();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        ck.err(
            name_line,
            format!("scenario name {name:?} must be non-empty and use only letters, digits, - and _ (it names tests and artifact directories)"),
        );
    }
    let timeout = match &raw.timeout {
        Some(t) => ck
            .duration(t, "timeout")
            .unwrap_or(DEFAULT_SCENARIO_TIMEOUT),
        None => DEFAULT_SCENARIO_TIMEOUT,
    };

    let flaky = raw.flaky.map(|f| {
        let line = ck.line(f.span());
        let f = f.into_inner();
        let until_line = ck.line(f.until.span());
        let until = match f.until.get_ref().parse::<jiff::civil::Date>() {
            Ok(d) => d,
            Err(e) => {
                ck.err(until_line, format!("flaky.until {:?} is not a date ({e}); write YYYY-MM-DD", f.until.get_ref()));
                today
            }
        };
        if until < today {
            ck.err(
                until_line,
                format!(
                    "flaky mark expired on {until} (reason: {}; tracker: {}); fix the flake and remove the [flaky] table, or renew it with a new date",
                    f.reason, f.tracker
                ),
            );
        } else {
            ck.warnings.push(Problem {
                line,
                message: format!("marked flaky until {until}: {} ({})", f.reason, f.tracker),
            });
        }
        if f.reason.trim().is_empty() || f.tracker.trim().is_empty() {
            ck.err(line, "a flaky mark needs a non-empty reason and tracker link");
        }
        Flaky {
            reason: f.reason,
            until,
            tracker: f.tracker,
        }
    });

    let mut known: BTreeSet<String> = BUILTIN_VARS.iter().map(|s| (*s).to_owned()).collect();
    let mut vars = Vars::new();
    for (k, v) in raw.vars {
        let line = ck.line(v.span());
        if !is_ident(&k) {
            ck.err(
                line,
                format!(
                    "variable name {k:?} must be letters, digits and _ and not start with a digit"
                ),
            );
        }
        if BUILTIN_VARS.contains(&k.as_str()) {
            ck.err(
                line,
                format!(
                    "variable {k:?} is a built-in and cannot be redefined; choose another name"
                ),
            );
        }
        let value = match v.into_inner() {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                ck.err(
                    line,
                    format!(
                        "variable {k:?} must be a string, integer or boolean, not {}",
                        other.type_str()
                    ),
                );
                continue;
            }
        };
        known.insert(k.clone());
        vars.insert(k, value);
    }

    let mut vms = Vec::new();
    for v in raw.vm {
        let line = ck.line(v.span());
        let v = v.into_inner();
        let name = v.name.unwrap_or_else(|| DEFAULT_VM.to_owned());
        if vms.iter().any(|o: &VmReq| o.name == name) {
            ck.err(
                line,
                format!("two VMs are named {name:?}; give each [[vm]] a distinct name"),
            );
        }
        let memory_mib = v.memory.unwrap_or(1024);
        let cpus = v.cpus.unwrap_or(2);
        if memory_mib < 128 || cpus == 0 {
            ck.err(line, "a VM needs memory >= 128 (MiB) and cpus >= 1");
        }
        let mut serves = Vec::new();
        for sv in v.serve {
            match check_serve(path, &sv) {
                Ok(req) if serves.iter().any(|o: &ServeReq| o.guest == req.guest) => ck.err(
                    line,
                    format!(
                        "two [[vm.serve]] entries use {}; give each its own address",
                        req.guest
                    ),
                ),
                Ok(req) => serves.push(req),
                Err(why) => ck.err(line, why),
            }
        }
        vms.push(VmReq {
            name,
            image: v.image,
            kernel: v.kernel,
            memory_mib,
            cpus,
            serves,
        });
    }
    if vms.is_empty() {
        ck.err(name_line, "the scenario needs at least one [[vm]] with an image, e.g. [[vm]] image = \"bookworm\"");
    }

    let mut steps = Vec::new();
    for s in raw.step {
        let line = ck.line(s.span());
        let s = s.into_inner();
        if let Some(step) = check_step(&mut ck, line, s, &vms, &mut known) {
            steps.push(step);
        }
    }
    if steps.is_empty() && ck.problems.is_empty() {
        ck.err(name_line, "the scenario has no [[step]]");
    }

    if !ck.problems.is_empty() {
        ck.problems.sort_by_key(|p| p.line);
        return Err(ScenarioError::Invalid {
            path: path.to_owned(),
            problems: ck.problems,
        });
    }
    Ok(Scenario {
        path: path.to_owned(),
        name,
        description: raw.description,
        tags: raw.tags,
        timeout,
        flaky,
        needs_ulxc: raw.needs_ulxc.unwrap_or(true),
        vars,
        vms,
        steps,
        warnings: ck.warnings,
    })
}

fn text_expect(
    ck: &mut Checker<'_>,
    line: usize,
    known: &BTreeSet<String>,
    contains: Option<OneOrMany>,
    not_contains: Option<OneOrMany>,
    equals: Option<String>,
    regex: Option<Spanned<OneOrMany>>,
) -> TextExpect {
    let mut t = TextExpect::default();
    for c in contains.map(OneOrMany::into_vec).unwrap_or_default() {
        t.contains.push(ck.template(line, &c, known));
    }
    for c in not_contains.map(OneOrMany::into_vec).unwrap_or_default() {
        t.not_contains.push(ck.template(line, &c, known));
    }
    t.equals = equals.map(|e| ck.template(line, &e, known));
    if let Some(r) = regex {
        let rline = ck.line(r.span());
        for pat in r.into_inner().into_vec() {
            match regex::RegexBuilder::new(&pat).multi_line(true).build() {
                Ok(re) => t.regex.push(re),
                Err(e) => ck.err(rline, format!("regex {pat:?} does not compile: {e}")),
            }
        }
    }
    t
}

fn check_step(
    ck: &mut Checker<'_>,
    line: usize,
    s: RawStep,
    vms: &[VmReq],
    known: &mut BTreeSet<String>,
) -> Option<Step> {
    let mut kinds = Vec::new();
    for (present, k) in [
        (s.run.is_some(), "run"),
        (s.wait_until.is_some(), "wait_until"),
        (s.expect_owner.is_some(), "expect_owner"),
        (s.upload.is_some(), "upload"),
        (s.reboot.is_some(), "reboot"),
        (s.link_down.is_some(), "link_down"),
        (s.link_up.is_some(), "link_up"),
        (s.sleep.is_some(), "sleep"),
    ] {
        if present {
            kinds.push(k);
        }
    }
    let kind = match kinds.as_slice() {
        [k] => *k,
        [] => {
            ck.err(line, "step has no action; give it one of run, wait_until, expect_owner, upload, reboot, link_down, link_up, sleep");
            return None;
        }
        many => {
            ck.err(
                line,
                format!(
                    "step has several actions ({}); split it into one [[step]] per action",
                    many.join(", ")
                ),
            );
            return None;
        }
    };

    // Fields each kind allows, beyond name/vm/as.
    let allowed: &[&str] = match kind {
        "run" => &["status", "stdout", "stderr", "capture", "timeout"],
        "wait_until" => &[
            "status", "stdout", "stderr", "capture", "deadline", "interval",
        ],
        "expect_owner" => &["owner"],
        "upload" => &["to", "mode", "owner"],
        _ => &[],
    };
    let present: Vec<(&str, bool)> = vec![
        ("status", s.status.is_some()),
        (
            "stdout",
            s.stdout_contains.is_some()
                || s.stdout_not_contains.is_some()
                || s.stdout_equals.is_some()
                || s.stdout_regex.is_some(),
        ),
        (
            "stderr",
            s.stderr_contains.is_some()
                || s.stderr_not_contains.is_some()
                || s.stderr_equals.is_some()
                || s.stderr_regex.is_some(),
        ),
        ("capture", s.capture.is_some()),
        ("timeout", s.timeout.is_some()),
        ("deadline", s.deadline.is_some()),
        ("interval", s.interval.is_some()),
        ("owner", s.owner.is_some()),
        ("to", s.to.is_some()),
        ("mode", s.mode.is_some()),
    ];
    for (field, here) in present {
        if here && !allowed.contains(&field) {
            let shown = match field {
                "stdout" | "stderr" => format!("{field}_* expectations"),
                f => f.to_owned(),
            };
            ck.err(line, format!("{shown} is not allowed in a {kind} step"));
        }
    }
    for (flag, v) in [
        ("reboot", s.reboot),
        ("link_down", s.link_down),
        ("link_up", s.link_up),
    ] {
        if v == Some(false) {
            ck.err(
                line,
                format!("{flag} = false does nothing; write {flag} = true or remove the step"),
            );
        }
    }

    let vm = match s.vm {
        Some(v) => {
            if !vms.iter().any(|m| m.name == v) {
                ck.err(
                    line,
                    format!(
                        "step names vm {v:?}, but the scenario's VMs are: {}",
                        vms.iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            v
        }
        None => vms
            .first()
            .map_or_else(|| DEFAULT_VM.to_owned(), |m| m.name.clone()),
    };
    let user = s.user.unwrap_or_else(|| DEFAULT_USER.to_owned());
    if user.is_empty() || user.contains(char::is_whitespace) {
        ck.err(line, format!("as = {user:?} is not a user name"));
    }

    let status = match &s.status {
        None => StatusExpect::Code(0),
        Some(v) => {
            let sl = ck.line(v.span());
            match v.get_ref() {
                toml::Value::Integer(i) if (0..=255).contains(i) => {
                    StatusExpect::Code(i32::try_from(*i).unwrap_or(0))
                }
                toml::Value::String(s) if s == "any" => StatusExpect::Any,
                toml::Value::String(s) if s == "nonzero" => StatusExpect::NonZero,
                other => {
                    ck.err(sl, format!("status = {other} is not valid; write an integer 0..=255, \"nonzero\" or \"any\""));
                    StatusExpect::Code(0)
                }
            }
        }
    };
    let stdout = text_expect(
        ck,
        line,
        known,
        s.stdout_contains,
        s.stdout_not_contains,
        s.stdout_equals,
        s.stdout_regex,
    );
    let stderr = text_expect(
        ck,
        line,
        known,
        s.stderr_contains,
        s.stderr_not_contains,
        s.stderr_equals,
        s.stderr_regex,
    );
    let expect = Expect {
        status,
        stdout,
        stderr,
    };
    let timeout = s.timeout.as_ref().and_then(|t| ck.duration(t, "timeout"));

    let capture = s.capture.map(|c| {
        let cl = ck.line(c.span());
        let c = c.into_inner();
        if !is_ident(&c) {
            ck.err(
                cl,
                format!(
                    "capture name {c:?} must be letters, digits and _ and not start with a digit"
                ),
            );
        } else if BUILTIN_VARS.contains(&c.as_str()) {
            ck.err(
                cl,
                format!("capture {c:?} would overwrite a built-in variable; choose another name"),
            );
        }
        c
    });

    let (kind, default_name) = match kind {
        "run" | "wait_until" => {
            let cmd = if kind == "run" { s.run } else { s.wait_until }?;
            let cl = ck.line(cmd.span());
            let command = ck.template(cl, cmd.get_ref(), known);
            if command.raw().trim().is_empty() {
                ck.err(cl, format!("{kind} command is empty"));
            }
            let name = command.raw().to_owned();
            let k = if kind == "run" {
                StepKind::Run {
                    command,
                    expect,
                    capture: capture.clone(),
                    timeout: timeout.unwrap_or(DEFAULT_STEP_TIMEOUT),
                }
            } else {
                let deadline = match &s.deadline {
                    Some(d) => ck.duration(d, "deadline").unwrap_or(DEFAULT_STEP_TIMEOUT),
                    None => {
                        ck.err(line, "wait_until needs a deadline, e.g. deadline = \"60s\"");
                        DEFAULT_STEP_TIMEOUT
                    }
                };
                let interval = s
                    .interval
                    .as_ref()
                    .and_then(|i| ck.duration(i, "interval"))
                    .unwrap_or(Duration::from_secs(1));
                if interval >= deadline {
                    ck.err(line, "interval must be shorter than deadline");
                }
                StepKind::WaitUntil {
                    command,
                    expect,
                    capture: capture.clone(),
                    deadline,
                    interval,
                }
            };
            (k, name)
        }
        "expect_owner" => {
            let p = s.expect_owner?;
            let pl = ck.line(p.span());
            let path = ck.template(pl, p.get_ref(), known);
            let (uid, gid) = match &s.owner {
                None => {
                    ck.err(line, "expect_owner needs owner = \"UID[:GID]\", e.g. owner = \"100000:100000\" or owner = \"{subuid_start} + {apt_uid}\"");
                    (Template::parse("0"), None)
                }
                Some(o) => {
                    let ol = ck.line(o.span());
                    let (u, g) = match o.get_ref().split_once(':') {
                        Some((u, g)) => (u, Some(g)),
                        None => (o.get_ref().as_str(), None),
                    };
                    let uid = ck.id_expr(ol, u, known);
                    let gid = g.map(|g| ck.id_expr(ol, g, known));
                    (uid, gid)
                }
            };
            let name = format!(
                "owner of {} is {}",
                p.get_ref(),
                s.owner.as_ref().map_or("?", |o| o.get_ref().as_str())
            );
            (StepKind::ExpectOwner { path, uid, gid }, name)
        }
        "upload" => {
            let l = s.upload?;
            let ll = ck.line(l.span());
            let local = PathBuf::from(l.get_ref());
            let remote = match &s.to {
                Some(t) => ck.template(line, t, known),
                None => {
                    ck.err(ll, "upload needs to = \"/guest/path\"");
                    Template::parse("")
                }
            };
            let mode = match &s.mode {
                None => 0o644,
                Some(m) => {
                    let ml = ck.line(m.span());
                    match m.get_ref() {
                        toml::Value::String(t) => {
                            match u32::from_str_radix(t.trim_start_matches("0o"), 8) {
                                Ok(v) if v <= 0o7777 => v,
                                _ => {
                                    ck.err(
                                        ml,
                                        format!(
                                            "mode {t:?} is not an octal permission like \"0755\""
                                        ),
                                    );
                                    0o644
                                }
                            }
                        }
                        other => {
                            ck.err(ml, format!("mode = {other} must be an octal string like \"0755\" (a TOML integer would be read as decimal)"));
                            0o644
                        }
                    }
                }
            };
            let owner = s.owner.as_ref().map(|o| {
                let ol = ck.line(o.span());
                ck.template(ol, o.get_ref(), known)
            });
            let name = format!(
                "upload {} to {}",
                l.get_ref(),
                s.to.as_deref().unwrap_or("?")
            );
            (
                StepKind::Upload {
                    local,
                    remote,
                    mode,
                    owner,
                },
                name,
            )
        }
        "reboot" => (StepKind::Reboot, "reboot".to_owned()),
        "link_down" => (StepKind::LinkDown, "link down".to_owned()),
        "link_up" => (StepKind::LinkUp, "link up".to_owned()),
        "sleep" => {
            let d = s.sleep?;
            let dur = ck.duration(&d, "sleep").unwrap_or(Duration::from_secs(1));
            ck.warnings.push(Problem {
                line,
                message: format!("sleep {} is discouraged: wait_until a condition instead, sleeps are slow and flaky", d.get_ref()),
            });
            (StepKind::Sleep(dur), format!("sleep {}", d.get_ref()))
        }
        _ => return None,
    };
    // The capture is defined for the steps that follow.
    if let Some(c) = &capture {
        known.insert(c.clone());
    }
    Some(Step {
        line,
        name: s.name.unwrap_or(default_name),
        vm,
        user,
        kind,
    })
}

impl Scenario {
    /// The kernel names this scenario pins per VM, if any (a `kernel = ...` in `[[vm]]`).
    pub fn pinned_kernel(&self) -> Option<&str> {
        self.vms.first().and_then(|v| v.kernel.as_deref())
    }

    /// Variables for a step: built-ins, `[vars]` and `captures` (captures win).
    pub fn vars_for(&self, step: &Step, kernel: &str, captures: &Vars) -> Vars {
        let mut v = self.vars.clone();
        let image = self
            .vms
            .iter()
            .find(|m| m.name == step.vm)
            .map(|m| m.image.clone())
            .unwrap_or_default();
        let home = if step.user == "root" {
            "/root".to_owned()
        } else {
            format!("/home/{}", step.user)
        };
        for (k, val) in [
            ("ulxc", GUEST_ULXC.to_owned()),
            ("ulxc_bin_dir", GUEST_LXC_BIN_DIR.to_owned()),
            ("scenario", self.name.clone()),
            ("vm", step.vm.clone()),
            ("kernel", kernel.to_owned()),
            ("image", image),
            ("user", step.user.clone()),
            ("home", home),
        ] {
            v.insert(k.to_owned(), val);
        }
        v.extend(captures.iter().map(|(k, val)| (k.clone(), val.clone())));
        v
    }

    /// Resolves an upload's host path: relative to the scenario file's directory if it
    /// exists there, else to the workspace root.
    pub fn resolve_local(&self, local: &Path) -> PathBuf {
        if local.is_absolute() {
            return local.to_owned();
        }
        if let Some(dir) = self.path.parent() {
            let p = dir.join(local);
            if p.exists() {
                return p;
            }
        }
        workspace_root().join(local)
    }
}

impl StepKind {
    /// Short kind name as written in the file (`run`, `wait_until`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            StepKind::Run { .. } => "run",
            StepKind::WaitUntil { .. } => "wait_until",
            StepKind::ExpectOwner { .. } => "expect_owner",
            StepKind::Upload { .. } => "upload",
            StepKind::Reboot => "reboot",
            StepKind::LinkDown => "link_down",
            StepKind::LinkUp => "link_up",
            StepKind::Sleep(_) => "sleep",
        }
    }
}

impl Expect {
    /// Every template used by the expectations (for listing their variables).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.stdout.templates().chain(self.stderr.templates())
    }

    /// Whether only the exit status is checked.
    pub fn status_only(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty()
    }
}

#[cfg(test)]
mod tests;
