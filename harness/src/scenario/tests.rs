//! Unit tests of the scenario loader: every step kind, every error with its line number,
//! variables, owner expressions and the flaky mark's expiry.

use super::*;

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 29)
}

fn parse_ok(src: &str) -> Scenario {
    match parse(src, Path::new("t.toml"), today()) {
        Ok(s) => s,
        Err(e) => panic!("expected to parse, got:\n{e}"),
    }
}

fn parse_err(src: &str) -> String {
    match parse(src, Path::new("t.toml"), today()) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "name = \"x\"\n[[vm]]\nimage = \"bookworm\"\n";

#[test]
fn every_step_kind_parses() {
    let src = format!(
        "{HEAD}{}",
        r#"
[vars]
subuid_start = 100000
[[step]]
run = "id -u"
as = "user"
stdout_equals = "1000"
stderr_not_contains = ["error", "warn"]
stdout_regex = '^\d+$'
timeout = "30s"
[[step]]
run = "grep _apt /etc/passwd | cut -d: -f3"
capture = "apt_uid"
status = 0
[[step]]
wait_until = "systemctl is-system-running"
stdout_regex = "running|degraded"
status = "any"
deadline = "2m"
interval = "2s"
[[step]]
expect_owner = "/home/user/x"
owner = "{subuid_start} + {apt_uid}:{subuid_start}"
[[step]]
upload = "Cargo.toml"
to = "/tmp/c"
mode = "0755"
owner = "user:user"
[[step]]
reboot = true
[[step]]
link_down = true
[[step]]
link_up = true
[[step]]
sleep = "1s"
[[step]]
run = "false"
status = "nonzero"
name = "fails on purpose"
"#
    );
    let s = parse_ok(&src);
    let kinds: Vec<_> = s.steps.iter().map(|s| s.kind.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "run",
            "run",
            "wait_until",
            "expect_owner",
            "upload",
            "reboot",
            "link_down",
            "link_up",
            "sleep",
            "run"
        ]
    );
    assert_eq!(s.steps[0].user, "user");
    assert_eq!(s.steps[1].user, "root");
    assert_eq!(s.steps[0].name, "id -u");
    assert_eq!(s.steps[9].name, "fails on purpose");
    assert_eq!(s.steps[0].line, 7);
    assert_eq!(s.vars["subuid_start"], "100000");
    assert_eq!(s.vms[0].name, "guest");
    assert_eq!(s.vms[0].memory_mib, 1024);
    match &s.steps[0].kind {
        StepKind::Run {
            timeout, expect, ..
        } => {
            assert_eq!(*timeout, Duration::from_secs(30));
            assert!(expect.check(0, "1000\n", "", &Vars::new()).is_ok());
            assert!(expect
                .check(0, "1000\n", "a warning", &Vars::new())
                .unwrap_err()
                .contains("stderr contains"));
            assert!(expect
                .check(1, "1000\n", "", &Vars::new())
                .unwrap_err()
                .contains("exit status 1"));
        }
        k => panic!("{k:?}"),
    }
    match &s.steps[2].kind {
        StepKind::WaitUntil {
            deadline,
            interval,
            expect,
            ..
        } => {
            assert_eq!(*deadline, Duration::from_secs(120));
            assert_eq!(*interval, Duration::from_secs(2));
            assert_eq!(expect.status, StatusExpect::Any);
            assert!(expect.check(3, "degraded\n", "", &Vars::new()).is_ok());
            assert!(expect.check(0, "starting\n", "", &Vars::new()).is_err());
        }
        k => panic!("{k:?}"),
    }
    match &s.steps[3].kind {
        StepKind::ExpectOwner { uid, gid, .. } => {
            let vars: Vars = [("subuid_start", "100000"), ("apt_uid", "42")]
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            assert_eq!(eval_id(&uid.render(&vars).unwrap()), Ok(100042));
            assert_eq!(
                eval_id(&gid.as_ref().unwrap().render(&vars).unwrap()),
                Ok(100000)
            );
        }
        k => panic!("{k:?}"),
    }
    match &s.steps[4].kind {
        StepKind::Upload { mode, .. } => assert_eq!(*mode, 0o755),
        k => panic!("{k:?}"),
    }
    match &s.steps[9].kind {
        StepKind::Run { expect, .. } => assert_eq!(expect.status, StatusExpect::NonZero),
        k => panic!("{k:?}"),
    }
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].message.contains("discouraged"));
    assert_eq!(s.warnings[0].line, 38);
}

#[test]
fn unknown_key_has_its_line() {
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"true\"\nstdot_contains = \"x\"\n"
    ));
    assert!(e.starts_with("t.toml:6:"), "{e}");
    assert!(e.contains("stdot_contains"), "{e}");
}

#[test]
fn unknown_top_level_key_and_bad_toml() {
    let e = parse_err("name = \"x\"\ntimout = \"1m\"\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
    let e = parse_err("name = \"x\"\n[[vm]\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
    let e = parse_err("description = \"no name\"\n");
    assert!(e.contains("name"), "{e}");
}

#[test]
fn unknown_variable_has_the_command_line() {
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nname = \"n\"\nrun = \"ls {{nope}}\"\n"
    ));
    assert!(e.starts_with("t.toml:6: unknown variable {nope}"), "{e}");
}

#[test]
fn capture_is_known_only_after_its_step() {
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"echo {{later}}\"\n[[step]]\nrun = \"echo 1\"\ncapture = \"later\"\n"
    ));
    assert!(e.starts_with("t.toml:5: unknown variable {later}"), "{e}");
    parse_ok(&format!(
        "{HEAD}[[step]]\nrun = \"echo 1\"\ncapture = \"later\"\n[[step]]\nrun = \"echo {{later}} {{home}} {{ulxc}}\"\n"
    ));
}

#[test]
fn step_kind_errors() {
    let e = parse_err(&format!("{HEAD}[[step]]\nname = \"nothing\"\n"));
    assert!(e.starts_with("t.toml:4: step has no action"), "{e}");
    let e = parse_err(&format!("{HEAD}[[step]]\nrun = \"a\"\nreboot = true\n"));
    assert!(
        e.starts_with("t.toml:4: step has several actions (run, reboot)"),
        "{e}"
    );
    let e = parse_err(&format!("{HEAD}[[step]]\nreboot = true\nstatus = 1\n"));
    assert!(
        e.contains("t.toml:4: status is not allowed in a reboot step"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nexpect_owner = \"/x\"\nstdout_contains = \"a\"\n"
    ));
    assert!(
        e.contains("t.toml:4: stdout_* expectations is not allowed in a expect_owner step"),
        "{e}"
    );
    assert!(e.contains("expect_owner needs owner"), "{e}");
    let e = parse_err(&format!("{HEAD}[[step]]\nwait_until = \"true\"\n"));
    assert!(e.contains("t.toml:4: wait_until needs a deadline"), "{e}");
    let e = parse_err(&format!("{HEAD}[[step]]\nrun = \"true\"\nvm = \"other\"\n"));
    assert!(e.contains("t.toml:4: step names vm \"other\""), "{e}");
    let e = parse_err(&format!("{HEAD}[[step]]\nlink_up = false\n"));
    assert!(e.contains("link_up = false does nothing"), "{e}");
}

#[test]
fn value_errors_point_at_their_line() {
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"true\"\n\ntimeout = \"soon\"\n"
    ));
    assert!(
        e.starts_with("t.toml:7: timeout \"soon\" is not a duration"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"true\"\nstatus = \"sometimes\"\n"
    ));
    assert!(
        e.starts_with("t.toml:6: status = \"sometimes\" is not valid"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"true\"\nstdout_regex = \"(\"\n"
    ));
    assert!(
        e.starts_with("t.toml:6: regex \"(\" does not compile"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"true\"\ncapture = \"9x\"\n"
    ));
    assert!(e.starts_with("t.toml:6: capture name \"9x\""), "{e}");
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nupload = \"a\"\nto = \"/b\"\nmode = 755\n"
    ));
    assert!(
        e.starts_with("t.toml:7: mode = 755 must be an octal string"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nexpect_owner = \"/x\"\nowner = \"1000 1\"\n"
    ));
    assert!(e.starts_with("t.toml:6: owner \"1000 1\""), "{e}");
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nexpect_owner = \"/x\"\nowner = \"1000:root\"\n"
    ));
    assert!(e.starts_with("t.toml:6: owner \"root\""), "{e}");
    let e = parse_err(&format!(
        "{HEAD}[vars]\nulxc = \"x\"\n[[step]]\nrun = \"true\"\n"
    ));
    assert!(
        e.starts_with("t.toml:5: variable \"ulxc\" is a built-in"),
        "{e}"
    );
    let e = parse_err("name = \"bad name\"\n[[vm]]\nimage = \"b\"\n[[step]]\nreboot = true\n");
    assert!(e.starts_with("t.toml:1: scenario name \"bad name\""), "{e}");
}

#[test]
fn all_problems_are_reported_in_line_order() {
    let e = parse_err(&format!(
        "{HEAD}[[step]]\nrun = \"{{a}}\"\n[[step]]\nrun = \"{{b}}\"\n"
    ));
    let lines: Vec<_> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(
        lines[0].starts_with("t.toml:5:") && lines[1].starts_with("t.toml:7:"),
        "{e}"
    );
}

#[test]
fn needs_a_vm_and_a_step() {
    let e = parse_err("name = \"x\"\n[[step]]\nreboot = true\n");
    assert!(e.contains("at least one [[vm]]"), "{e}");
    let e = parse_err(HEAD);
    assert!(e.contains("has no [[step]]"), "{e}");
}

#[test]
fn flaky_mark_and_expiry() {
    let ok = format!(
        "{HEAD}[flaky]\nreason = \"races\"\nuntil = \"2027-01-31\"\ntracker = \"https://example.invalid/1\"\n[[step]]\nreboot = true\n"
    );
    let s = parse_ok(&ok);
    assert_eq!(
        s.flaky.as_ref().unwrap().until,
        jiff::civil::date(2027, 1, 31)
    );
    assert!(s
        .warnings
        .iter()
        .any(|w| w.message.contains("marked flaky until 2027-01-31")));
    let expired = ok.replace("2027-01-31", "2026-11-28");
    let e = parse_err(&expired);
    assert!(
        e.starts_with("t.toml:6: flaky mark expired on 2026-11-28"),
        "{e}"
    );
    // The last day itself is still fine.
    parse_ok(&ok.replace("2027-01-31", "2026-11-29"));
    let bad = ok.replace("2027-01-31", "next year");
    let e = parse_err(&bad);
    assert!(
        e.starts_with("t.toml:6: flaky.until \"next year\" is not a date"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{HEAD}[flaky]\nreason = \"r\"\n[[step]]\nreboot = true\n"
    ));
    assert!(e.contains("until"), "{e}");
}

#[test]
fn vars_for_a_step() {
    let s = parse_ok(&format!(
        "{HEAD}[vars]\na = \"A\"\n[[step]]\nrun = \"true\"\nas = \"user\"\n"
    ));
    let mut caps = Vars::new();
    caps.insert("c".into(), "C".into());
    let v = s.vars_for(&s.steps[0], "cloud", &caps);
    assert_eq!(v["a"], "A");
    assert_eq!(v["c"], "C");
    assert_eq!(v["home"], "/home/user");
    assert_eq!(v["kernel"], "cloud");
    assert_eq!(v["image"], "bookworm");
    assert_eq!(v["ulxc_bin_dir"], GUEST_LXC_BIN_DIR);
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 3), (2, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
}

#[test]
fn shipped_scenarios_check() {
    let dir = workspace_root().join("scenarios");
    let files = discover(&dir).expect("scenarios/ is readable");
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    for f in files {
        if let Err(e) = load(&f) {
            panic!("{e}");
        }
    }
}

#[test]
fn served_directories_are_checked() {
    let vm = "name = \"x\"\n[[vm]]\nimage = \"bookworm\"\n";
    let step = "[[step]]\nrun = \"true\"\n";
    let ok = parse_ok(&format!(
        "{vm}[[vm.serve]]\nguest = \"10.0.2.100:80\"\ndir = \"/tmp\"\n{step}"
    ));
    assert_eq!(ok.vms[0].serves.len(), 1);
    assert_eq!(ok.vms[0].serves[0].guest.to_string(), "10.0.2.100:80");
    for (guest, dir, expect) in [
        ("10.0.2.100", "/tmp", "is not ADDRESS:PORT"),
        ("10.0.2.2:80", "/tmp", "other than .2"),
        ("192.168.1.1:80", "/tmp", "10.0.2.0/24"),
        (
            "10.0.2.100:80",
            "/nonexistent-ulxc-dir",
            "is not a directory",
        ),
    ] {
        let e = parse_err(&format!(
            "{vm}[[vm.serve]]\nguest = \"{guest}\"\ndir = \"{dir}\"\n{step}"
        ));
        assert!(e.starts_with("t.toml:2:"), "{guest} {dir}: {e}");
        assert!(e.contains(expect), "{guest} {dir}: {e}");
    }
    let e = parse_err(&format!(
        "{vm}[[vm.serve]]\nguest = \"10.0.2.100:80\"\ndir = \"/tmp\"\n[[vm.serve]]\nguest = \"10.0.2.100:80\"\ndir = \"/tmp\"\n{step}"
    ));
    assert!(e.contains("two [[vm.serve]] entries"), "{e}");
}
