//! Unit tests of the configuration module: syntax, includes, legacy keys, grammars, upgrade.

use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<ContainerConfig, ConfigError> {
    ContainerConfig::from_raw(&parse_raw_str(text, Path::new("/cfg/test.conf"))?)
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn line_syntax_comments_and_spacing() {
    let raw = parse_raw_str(
        "# comment\n\n  lxc.uts.name=box\nlxc.arch   =   x86_64   \n\tlxc.tty.max = 4 # four ttys\nlxc.mount.entry = /a#b mnt none bind 0 0\n",
        Path::new("/cfg/a.conf"),
    )
    .unwrap();
    let kv: Vec<(&str, &str)> = raw
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.value.as_str()))
        .collect();
    assert_eq!(
        kv,
        [
            ("lxc.uts.name", "box"),
            ("lxc.arch", "x86_64"),
            ("lxc.tty.max", "4"),
            ("lxc.mount.entry", "/a#b mnt none bind 0 0"),
        ]
    );
    assert_eq!(raw.items[2].at, Location::new("/cfg/a.conf", 5));
    let e = parse_raw_str("lxc.uts.name box\n", Path::new("/cfg/a.conf")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/cfg/a.conf:1: `lxc.uts.name box` is not a `key = value` line"),
        "{e}"
    );
}

#[test]
fn location_shows_home_as_tilde() {
    let home = std::env::var("HOME").unwrap_or_default();
    if !home.is_empty() && home != "/" {
        let at = Location::new(Path::new(&home).join(".config/lxc/default.conf"), 2);
        assert_eq!(at.to_string(), "~/.config/lxc/default.conf:2");
    }
    assert_eq!(
        Location::new("/etc/lxc/default.conf", 7).to_string(),
        "/etc/lxc/default.conf:7"
    );
}

#[test]
fn unknown_key_with_suggestion() {
    let e = err("lxc.uts.nmae = x\n");
    assert_eq!(
        e,
        "/cfg/test.conf:1: unknown key lxc.uts.nmae; did you mean lxc.uts.name?"
    );
    let e = err("\nlxc.net.2.hwadr = 00:16:3e:00:00:01\n");
    assert_eq!(
        e,
        "/cfg/test.conf:2: unknown key lxc.net.2.hwadr; did you mean lxc.net.2.hwaddr?"
    );
    let e = err("lxc.totally.bogus.setting.here = 1\n");
    assert!(
        e.contains("unknown key lxc.totally.bogus.setting.here; see man"),
        "{e}"
    );
    assert!(err("lxc.hook.prestart = /bin/true\n").contains("did you mean lxc.hook.pre-start?"));
    assert!(err("lxc.prlimit.nofiles = 10\n").contains("did you mean lxc.prlimit.nofile?"));
}

#[test]
fn includes_file_directory_missing_and_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "inc/10-b.conf", "lxc.group = b\n");
    write(d, "inc/02-a.conf", "lxc.group = a\n");
    write(d, "inc/ignored.txt", "lxc.group = never\n");
    write(d, "one.conf", "lxc.uts.name = one\n");
    let main = write(
        d,
        "main.conf",
        "lxc.include = one.conf\nlxc.include = inc\nlxc.group = c\n",
    );
    let raw = read_raw(&main).unwrap();
    let keys: Vec<(&str, &str)> = raw
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("lxc.uts.name", "one"),
            ("lxc.group", "a"),
            ("lxc.group", "b"),
            ("lxc.group", "c")
        ]
    );
    assert_eq!(raw.items[1].at, Location::new(d.join("inc/02-a.conf"), 1));
    let cfg = ContainerConfig::from_raw(&raw).unwrap();
    assert_eq!(cfg.groups, ["a", "b", "c"]);

    let missing = write(d, "missing.conf", "# x\nlxc.include = nothere.conf\n");
    let e = read_raw(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:2: included file {}",
            missing.display(),
            d.join("nothere.conf").display()
        )),
        "{e}"
    );

    write(d, "c1.conf", "lxc.include = c2.conf\n");
    write(d, "c2.conf", "lxc.arch = x86_64\nlxc.include = c1.conf\n");
    let e = read_raw(&d.join("c1.conf")).unwrap_err();
    let ConfigError::IncludeCycle { at, chain } = &e else {
        panic!("{e}")
    };
    assert_eq!(at.line, 2);
    let c1 = std::fs::canonicalize(d.join("c1.conf")).unwrap();
    let c2 = std::fs::canonicalize(d.join("c2.conf")).unwrap();
    assert_eq!(
        *chain,
        format!("{} -> {} -> {}", c1.display(), c2.display(), c1.display())
    );

    write(d, "self.conf", "lxc.include = self.conf\n");
    assert!(matches!(
        read_raw(&d.join("self.conf")),
        Err(ConfigError::IncludeCycle { .. })
    ));
    // the same file twice (not a cycle) is fine
    // a directory include written with a trailing slash may be absent (Debian's userns.conf)
    let slash = write(
        d,
        "slash.conf",
        "lxc.include = absent.d/\nlxc.arch = amd64\n",
    );
    assert_eq!(read_raw(&slash).unwrap().items.len(), 1);
    let twice = write(
        d,
        "twice.conf",
        "lxc.include = one.conf\nlxc.include = one.conf\n",
    );
    assert_eq!(read_raw(&twice).unwrap().items.len(), 2);
}

#[test]
fn legacy_keys_renamed_with_warnings() {
    let text = "lxc.id_map = u 0 100000 65536\nlxc.utsname = old\nlxc.rootfs = /var/lib/lxc/c/rootfs\nlxc.pts = 1024\nlxc.tty = 4\nlxc.aa_profile = unconfined\nlxc.haltsignal = SIGRTMIN+3\nlxc.init_cmd = /sbin/init\nlxc.limit.nofile = 1024:2048\nlxc.loglevel = debug\nlxc.mount = /etc/fstab.c\nlxc.rootfs.backend = dir\n";
    let raw = parse_raw_str(text, Path::new("/cfg/old.conf")).unwrap();
    let keys: Vec<&str> = raw.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lxc.idmap",
            "lxc.uts.name",
            "lxc.rootfs.path",
            "lxc.pty.max",
            "lxc.tty.max",
            "lxc.apparmor.profile",
            "lxc.signal.halt",
            "lxc.init.cmd",
            "lxc.prlimit.nofile",
            "lxc.log.level",
            "lxc.mount.fstab",
            "lxc.rootfs.backend",
        ]
    );
    assert_eq!(raw.items[0].legacy_of.as_deref(), Some("lxc.id_map"));
    let cfg = ContainerConfig::from_raw(&raw).unwrap();
    assert_eq!(cfg.warnings.len(), 12);
    assert_eq!(
        cfg.warnings[0],
        "/cfg/old.conf:1: legacy key lxc.id_map, use lxc.idmap (run: ulxc config upgrade /cfg/old.conf)"
    );
    assert!(cfg.warnings[11].contains("lxc.rootfs.backend has no effect since LXC 3"));
    assert_eq!(cfg.uts_name.as_deref(), Some("old"));
    assert_eq!(cfg.pty_max, Some(1024));
    assert_eq!(cfg.tty_max, 4);
    assert_eq!(cfg.signal_halt, Some(libc::SIGRTMIN() + 3));
    assert_eq!(
        cfg.prlimits,
        [("nofile".to_string(), "1024:2048".to_string())]
    );
    assert_eq!(
        cfg.mount_fstab.unwrap().value,
        PathBuf::from("/etc/fstab.c")
    );
    let ignored: Vec<&str> = cfg.ignored.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(ignored, ["lxc.apparmor.profile", "lxc.rootfs.backend"]);
    assert_eq!(raw.warnings(), cfg.warnings);
}

#[test]
fn legacy_network_blocks_become_numbered() {
    let text = "lxc.network.type = veth\nlxc.network.link = lxcbr0\nlxc.network.flags = up\nlxc.network.ipv4 = 10.0.3.5/24\nlxc.network.type = empty\nlxc.network.type = macvlan\nlxc.network.link = eth0\nlxc.network.macvlan.mode = bridge\n";
    let raw = parse_raw_str(text, Path::new("/cfg/n.conf")).unwrap();
    let keys: Vec<&str> = raw.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lxc.net.0.type",
            "lxc.net.0.link",
            "lxc.net.0.flags",
            "lxc.net.0.ipv4.address",
            "lxc.net.1.type",
            "lxc.net.2.type",
            "lxc.net.2.link",
            "lxc.net.2.macvlan.mode",
        ]
    );
    let cfg = ContainerConfig::from_raw(&raw).unwrap();
    assert_eq!(cfg.net.len(), 3);
    assert_eq!(cfg.net[0].kind, NetType::Veth);
    assert_eq!(cfg.net[0].link.as_deref(), Some("lxcbr0"));
    assert!(cfg.net[0].flags_up);
    assert_eq!(cfg.net[0].ipv4, ["10.0.3.5/24"]);
    assert_eq!(cfg.net[1].kind, NetType::Empty);
    assert_eq!(cfg.net[2].kind, NetType::Macvlan);
    assert_eq!(
        cfg.net[2].extra,
        [("macvlan.mode".to_string(), "bridge".to_string())]
    );
    assert_eq!(cfg.net[2].at, Location::new("/cfg/n.conf", 6));
    assert_eq!(cfg.warnings[1], "/cfg/n.conf:2: legacy key lxc.network.link, use lxc.net.0.link (run: ulxc config upgrade /cfg/n.conf)");

    // counts up from the highest index in use; `lxc.network =` clears
    let raw = parse_raw_str(
        "lxc.net.3.type = veth\nlxc.network.type = phys\nlxc.network.link = eth1\n",
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(raw.items[1].key, "lxc.net.4.type");
    assert_eq!(raw.items[2].key, "lxc.net.4.link");
    let cfg = parse("lxc.network.type = veth\nlxc.network =\nlxc.network.type = empty\n").unwrap();
    assert_eq!(cfg.net.len(), 1);
    assert_eq!((cfg.net[0].index, cfg.net[0].kind), (0, NetType::Empty));

    let e = err("lxc.network.link = lxcbr0\n");
    assert!(
        e.starts_with(
            "/cfg/test.conf:1: legacy key lxc.network.link comes before any lxc.network.type"
        ),
        "{e}"
    );
    assert!(err("lxc.network.type = veth\nlxc.network.bogus = 1\n")
        .contains("/cfg/test.conf:2: unknown key lxc.network.bogus"));
}

#[test]
fn walkthrough_default_conf() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "etc-default.conf", "lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n\nlxc.apparmor.profile = generated\nlxc.apparmor.allow_nesting = 1\n");
    let text = format!(
        "lxc.include = {}\nlxc.id_map = u 0 100000 65536        # legacy spelling of lxc.idmap\nlxc.id_map = g 0 100000 65536\nlxc.mount.auto = proc:mixed sys:ro cgroup:mixed\nlxc.network.type = veth               # legacy spelling of lxc.net.0.type\nlxc.network.link = lxcbr0\nlxc.network.flags = up\n#lxc.network.hwaddr = 00:16:3e:xx:xx:xx   (x = random, generated when absent)\n",
        base.display()
    );
    let user = write(dir.path(), "default.conf", &text);
    let cfg = load(&user).unwrap();
    assert_eq!(cfg.idmaps.len(), 2);
    assert_eq!(cfg.idmaps[0].value.to_string(), "u 0 100000 65536");
    assert_eq!(cfg.idmaps[1].value.kind, IdKind::Gid);
    assert_eq!(cfg.idmaps[0].at, Location::new(&user, 2));
    assert_eq!(
        cfg.mount_auto,
        MountAuto {
            proc: Some(ProcMount::Mixed),
            sys: Some(SysMount::Ro),
            cgroup: Some(CgroupMount::Mixed),
            cgroup_force: false,
            shmounts: None
        }
    );
    // the included file has net.0, so the legacy block becomes net.1, as LXC 2 did
    assert_eq!(cfg.net.len(), 2);
    assert_eq!(cfg.net[1].index, 1);
    assert_eq!(cfg.net[1].kind, NetType::Veth);
    assert_eq!(cfg.net[1].link.as_deref(), Some("lxcbr0"));
    assert_eq!(cfg.warnings.len(), 5);
    assert!(
        cfg.warnings[2].ends_with(
            &("legacy key lxc.network.type, use lxc.net.1.type (run: ulxc config upgrade "
                .to_string()
                + &tilde(&user)
                + ")")
        ),
        "{}",
        cfg.warnings[2]
    );
    assert_eq!(cfg.ignored.len(), 2);
}

#[test]
fn debian_system_configs_parse() {
    // the lxc package is installed on the development and CI hosts (see .ci/host-setup)
    for p in [
        "/etc/lxc/default.conf",
        "/usr/share/lxc/config/common.conf",
        "/usr/share/lxc/config/userns.conf",
        "/usr/share/lxc/config/debian.common.conf",
        "/usr/share/lxc/config/debian.userns.conf",
    ] {
        let path = Path::new(p);
        assert!(
            path.exists(),
            "{p} is missing: install the lxc package (.ci/host-setup)"
        );
        let cfg = load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.warnings.is_empty(), "{p}: {:?}", cfg.warnings);
    }
    let dir = tempfile::tempdir().unwrap();
    let c = write(dir.path(), "c.conf", "lxc.include = /usr/share/lxc/config/common.conf\nlxc.include = /usr/share/lxc/config/userns.conf\nlxc.idmap = u 0 100000 65536\nlxc.idmap = g 0 100000 65536\n");
    let raw = read_raw(&c).unwrap();
    // common.conf includes common.conf.d/*.conf (lxcfs hooks)
    assert!(raw
        .items
        .iter()
        .any(|i| i.at.file.starts_with("/usr/share/lxc/config/common.conf.d")));
    let cfg = ContainerConfig::from_raw(&raw).unwrap();
    // userns.conf clears what common.conf set for privileged containers, as in LXC
    assert!(cfg.cap_drop.is_empty(), "{:?}", cfg.cap_drop);
    assert!(cfg.cgroup1.is_empty() && cfg.cgroup2.is_empty());
    assert_eq!(cfg.pty_max, Some(1024));
    assert_eq!(cfg.tty_max, 4);
    assert_eq!(
        (
            cfg.mount_auto.proc,
            cfg.mount_auto.sys,
            cfg.mount_auto.cgroup
        ),
        (
            Some(ProcMount::Mixed),
            Some(SysMount::Rw),
            Some(CgroupMount::Mixed)
        )
    );
    let common = load(Path::new("/usr/share/lxc/config/common.conf")).unwrap();
    assert_eq!(
        common.cap_drop,
        [
            "mac_admin",
            "mac_override",
            "sys_time",
            "sys_module",
            "sys_rawio"
        ]
    );
    assert_eq!(common.cgroup2.len(), 13);
    assert_eq!(
        common
            .ignored
            .iter()
            .map(|i| i.value.as_str())
            .collect::<Vec<_>>(),
        ["lxc.tty.dir", "lxc.seccomp.profile"]
    );
    assert!(!cfg.mount_entries.is_empty());
    assert!(cfg.hooks.iter().any(|h| h.value.0 == "mount"));
    assert_eq!(cfg.idmaps.len(), 2);
}

#[test]
fn idmap_grammar_errors_carry_location() {
    let e = err("lxc.idmap = u 0 100000\n");
    assert!(
        e.starts_with("/cfg/test.conf:1: bad id map `u 0 100000`: 3 fields instead of 4"),
        "{e}"
    );
    assert!(err("lxc.idmap = x 0 1 1\n").contains("kind `x`"));
    assert!(err("lxc.idmap = u 0 1 0\n").contains("COUNT is 0"));
    assert!(err("lxc.idmap = u 0 4294967295 2\n").contains("runs past"));
    assert!(err("lxc.idmap = u 0 99999999999 1\n").contains("not a number"));
    let cfg = parse("lxc.idmap = u 0 1 1\nlxc.idmap =\nlxc.idmap = b 0 100000 10\n").unwrap();
    assert_eq!(cfg.idmaps.len(), 1);
    assert_eq!(cfg.idmaps[0].at.line, 3);
}

#[test]
fn mount_auto_tokens() {
    let m = |t: &str| {
        parse(&format!("lxc.mount.auto = {t}\n"))
            .unwrap()
            .mount_auto
    };
    assert_eq!(m("proc").proc, Some(ProcMount::Mixed));
    assert_eq!(m("proc:rw").proc, Some(ProcMount::Rw));
    assert_eq!(m("sys").sys, Some(SysMount::Mixed));
    assert_eq!(m("sys:rw").sys, Some(SysMount::Rw));
    assert_eq!(m("sys:mixed").sys, Some(SysMount::Mixed));
    assert_eq!(m("cgroup:ro").cgroup, Some(CgroupMount::Ro));
    assert_eq!(m("cgroup:rw").cgroup, Some(CgroupMount::Rw));
    assert_eq!(m("cgroup-full:ro").cgroup, Some(CgroupMount::FullRo));
    assert_eq!(m("cgroup-full:mixed").cgroup, Some(CgroupMount::FullMixed));
    let f = m("cgroup-full:rw:force");
    assert_eq!(
        (f.cgroup, f.cgroup_force),
        (Some(CgroupMount::FullRw), true)
    );
    let f = m("cgroup:mixed:force");
    assert_eq!((f.cgroup, f.cgroup_force), (Some(CgroupMount::Mixed), true));
    // bare cgroup: rw with CAP_SYS_ADMIN, mixed without (as LXC)
    assert_eq!(m("cgroup").cgroup, Some(CgroupMount::Rw));
    let f = m("cgroup:force");
    assert_eq!((f.cgroup, f.cgroup_force), (Some(CgroupMount::Rw), true));
    let cfg = parse("lxc.cap.drop = sys_admin\nlxc.mount.auto = cgroup cgroup-full\n").unwrap();
    assert_eq!(cfg.mount_auto.cgroup, Some(CgroupMount::FullMixed));
    let cfg = parse("lxc.cap.drop = SYS_ADMIN\nlxc.mount.auto = cgroup\n").unwrap();
    assert_eq!(cfg.mount_auto.cgroup, Some(CgroupMount::Mixed));
    assert_eq!(
        m("shmounts:/run/sh").shmounts,
        Some(("/run/sh".into(), "/dev/.lxc-mounts".into()))
    );
    assert_eq!(
        m("shmounts:/a:/b").shmounts,
        Some(("/a".into(), "/b".into()))
    );
    // lines accumulate, later tokens win, empty clears
    let cfg = parse("lxc.mount.auto = proc:rw sys:ro\nlxc.mount.auto = proc:mixed\n").unwrap();
    assert_eq!(
        (cfg.mount_auto.proc, cfg.mount_auto.sys),
        (Some(ProcMount::Mixed), Some(SysMount::Ro))
    );
    let cfg = parse("lxc.mount.auto = proc:rw sys:ro\nlxc.mount.auto =\n").unwrap();
    assert_eq!(cfg.mount_auto, MountAuto::default());
    let e = err("\n\nlxc.mount.auto = proc:mixed sys:bogus\n");
    assert!(e.starts_with("/cfg/test.conf:3: bad value `proc:mixed sys:bogus` for lxc.mount.auto: expected space-separated tokens"), "{e}");
    assert!(e.ends_with("`sys:bogus` is not one"), "{e}");
    for bad in ["cgroup:xx", "cgroup-full:force:ro", "shmounts:", "proc:ro"] {
        err(&format!("lxc.mount.auto = {bad}\n"));
    }
}

#[test]
fn signals() {
    assert_eq!(signal_from_name("SIGPWR"), Some(libc::SIGPWR));
    assert_eq!(signal_from_name("PWR"), Some(libc::SIGPWR));
    assert_eq!(signal_from_name("sigterm"), Some(libc::SIGTERM));
    assert_eq!(signal_from_name("9"), Some(9));
    assert_eq!(signal_from_name("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
    assert_eq!(signal_from_name("RTMIN"), Some(libc::SIGRTMIN()));
    assert_eq!(signal_from_name("SIGRTMAX-1"), Some(libc::SIGRTMAX() - 1));
    for bad in [
        "",
        "SIGFOO",
        "0",
        "-1",
        "65",
        "SIGRTMIN+99",
        "RTMIN+",
        "RTMIN-1",
        "RTMAX+1",
    ] {
        assert_eq!(signal_from_name(bad), None, "{bad}");
    }
    let cfg =
        parse("lxc.signal.halt = SIGPWR\nlxc.signal.reboot = SIGRTMIN+5\nlxc.signal.stop = 9\n")
            .unwrap();
    assert_eq!(
        (cfg.signal_halt, cfg.signal_reboot, cfg.signal_stop),
        (Some(libc::SIGPWR), Some(libc::SIGRTMIN() + 5), Some(9))
    );
    let e = err("lxc.signal.halt = SIGNOPE\n");
    assert_eq!(e, "/cfg/test.conf:1: bad value `SIGNOPE` for lxc.signal.halt: expected a signal name or number, e.g. SIGPWR, PWR, SIGRTMIN+3 or 30");
}

#[test]
fn network_values() {
    let cfg = parse(
        "lxc.net.1.type = pasta\nlxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.0.mtu = 1500\nlxc.net.0.name = eth0\nlxc.net.0.veth.pair = vethA\nlxc.net.0.ipv4.address = 10.0.3.5/24 10.0.3.255\nlxc.net.0.ipv4.gateway = auto\nlxc.net.0.ipv6.address = fd00::5/64\nlxc.net.0.ipv6.gateway = fd00::1\nlxc.net.0.vlan.id = 10\nlxc.net.0.script.up = /bin/true\n",
    )
    .unwrap();
    assert_eq!(cfg.net.iter().map(|n| n.index).collect::<Vec<_>>(), [0, 1]);
    let n = &cfg.net[0];
    assert_eq!(n.hwaddr.as_deref(), Some("00:16:3e:xx:xx:xx"));
    assert_eq!(n.mtu, Some(1500));
    assert_eq!(n.name.as_deref(), Some("eth0"));
    assert_eq!(n.veth_pair.as_deref(), Some("vethA"));
    assert_eq!(n.ipv4_gateway.as_deref(), Some("auto"));
    assert_eq!(n.ipv6, ["fd00::5/64"]);
    assert_eq!(n.ipv6_gateway.as_deref(), Some("fd00::1"));
    assert_eq!(n.extra.len(), 2);
    assert_eq!(cfg.net[1].kind, NetType::Pasta);
    for (line, want) in [
        ("lxc.net.0.type = tap", "expected one of veth, empty, none"),
        ("lxc.net.0.hwaddr = 00:16:3e:zz:00:00", "a MAC address"),
        ("lxc.net.0.hwaddr = 00:16:3e:00:00", "a MAC address"),
        ("lxc.net.0.mtu = big", "an MTU"),
        ("lxc.net.0.flags = down", "`up` or nothing"),
        ("lxc.net.0.ipv4.address = 10.0.3.300/24", "an IPv4 address"),
        ("lxc.net.0.ipv4.address = 10.0.3.3/33", "an IPv4 address"),
        ("lxc.net.0.ipv6.address = fd00::zz", "an IPv6 address"),
        (
            "lxc.net.0.ipv4.gateway = fd00::1",
            "an address, `auto` or `dev`",
        ),
        ("lxc.net.0.vlan.id = 5000", "a VLAN id"),
        (
            "lxc.net.0.macvlan.mode = sideways",
            "one of private, vepa, bridge, passthru",
        ),
        ("lxc.net.0.name = averyveryverylongname", "at most 15"),
    ] {
        let e = err(&format!("lxc.net.0.type = veth\n{line}\n"));
        assert!(e.starts_with("/cfg/test.conf:"), "{e}");
        assert!(e.contains(want), "{line}: {e}");
    }
    let e = err("lxc.net.0.link = br0\n");
    assert!(
        e.starts_with("/cfg/test.conf:1: network interface lxc.net.0 has no lxc.net.0.type"),
        "{e}"
    );
    // clearing
    assert!(
        parse("lxc.net.0.type = veth\nlxc.net.1.type = veth\nlxc.net =\n")
            .unwrap()
            .net
            .is_empty()
    );
    let cfg = parse("lxc.net.0.type = veth\nlxc.net.1.type = empty\nlxc.net.0 =\n").unwrap();
    assert_eq!(cfg.net.len(), 1);
    assert_eq!(cfg.net[0].index, 1);
    let cfg = parse(
        "lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.2/24\nlxc.net.0.ipv4.address =\n",
    )
    .unwrap();
    assert!(cfg.net[0].ipv4.is_empty());
}

#[test]
fn lists_numbers_booleans_and_rootfs() {
    let cfg = parse(concat!(
        "lxc.cap.drop = mac_admin CAP_SYS_MODULE\n",
        "lxc.cap.drop =\n",
        "lxc.cap.drop = sys_time\n",
        "lxc.cap.keep = none\n",
        "lxc.rootfs.path = dir:/srv/c/rootfs\n",
        "lxc.init.cmd = /sbin/init 'a b' \"c\\\"d\"\n",
        "lxc.init.uid = 1000\nlxc.init.gid = 1000\nlxc.init.cwd = /root\n",
        "lxc.environment = A=1\nlxc.environment = B=x=y\n",
        "lxc.start.auto = 1\nlxc.start.delay = 5\nlxc.start.order = -2\n",
        "lxc.group = web db\nlxc.autodev = 0\nlxc.no_new_privs = 1\n",
        "lxc.cgroup2.memory.max = 1G\nlxc.cgroup.devices.allow = c 1:3 rwm\n",
        "lxc.sysctl.net.ipv4.ip_forward = 1\nlxc.sysctl.net.ipv4.ip_forward = 0\n",
        "lxc.prlimit.nofile = unlimited\nlxc.log.level = DEBUG\nlxc.log.file = /tmp/l\n",
        "lxc.console.path = none\nlxc.console.logfile = /tmp/c\nlxc.pty.max = 10\n",
        "lxc.hook.pre-start = /bin/true\nlxc.hook.post-stop = /bin/false\nlxc.hook.pre-start =\n",
        "lxc.seccomp.profile = /x\nlxc.selinux.context = y\nlxc.namespace.share.net = other\n",
        "lxc.cgroup.dir = foo\nlxc.mount.entry = proc proc proc nodev 0 0\nlxc.mount.fstab = /f\n",
    ))
    .unwrap();
    assert_eq!(cfg.cap_drop, ["sys_time"]);
    assert_eq!(cfg.cap_keep, ["none"]);
    assert_eq!(
        cfg.rootfs_path.as_ref().unwrap().value,
        PathBuf::from("/srv/c/rootfs")
    );
    assert_eq!(
        cfg.init_cmd.as_deref().unwrap(),
        ["/sbin/init", "a b", "c\"d"]
    );
    assert_eq!((cfg.init_uid, cfg.init_gid), (Some(1000), Some(1000)));
    assert_eq!(cfg.init_cwd, Some(PathBuf::from("/root")));
    assert_eq!(
        cfg.environment,
        [("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    assert!(cfg.start_auto && cfg.no_new_privs && !cfg.autodev);
    assert_eq!((cfg.start_delay, cfg.start_order), (5, -2));
    assert_eq!(cfg.groups, ["web", "db"]);
    assert_eq!(cfg.cgroup2[0].value, ("memory.max".into(), "1G".into()));
    assert_eq!(
        cfg.cgroup1[0].value,
        ("devices.allow".into(), "c 1:3 rwm".into())
    );
    assert_eq!(cfg.sysctls, [("net.ipv4.ip_forward".into(), "0".into())]);
    assert_eq!(cfg.prlimits, [("nofile".into(), "unlimited".into())]);
    assert_eq!(cfg.log_level.as_deref(), Some("debug"));
    assert_eq!(cfg.hooks.len(), 1);
    assert_eq!(cfg.hooks[0].value.0, "post-stop");
    assert_eq!(cfg.pty_max, Some(10));
    let ignored: Vec<&str> = cfg.ignored.iter().map(|i| i.value.as_str()).collect();
    assert_eq!(
        ignored,
        [
            "lxc.seccomp.profile",
            "lxc.selinux.context",
            "lxc.namespace.share.net",
            "lxc.cgroup.dir"
        ]
    );
    assert!(ignored_reason("lxc.seccomp.profile")
        .unwrap()
        .contains("seccomp"));
    assert_eq!(ignored_reason("lxc.uts.name"), None);
    assert_eq!(cfg.mount_entries[0].at.line, 35);

    for (line, want) in [
        ("lxc.rootfs.path = btrfs:/x", "rootfs backend `btrfs`"),
        ("lxc.rootfs.path = zfs:pool/c", "rootfs backend `zfs`"),
        ("lxc.cap.drop = sys_admn", "`sys_admn` is not one"),
        ("lxc.autodev = yes", "expected 0 or 1"),
        ("lxc.tty.max = -1", "a number of ttys"),
        ("lxc.init.uid = 4294967296", "a uid"),
        ("lxc.init.cwd = relative", "an absolute path"),
        ("lxc.init.cmd = /bin/sh 'oops", "matched quotes"),
        ("lxc.prlimit.nofile = lots", "SOFT or SOFT:HARD"),
        ("lxc.log.level = loud", "a number 0-8"),
        ("lxc.arch = vax", "one of arm"),
        ("lxc.mount.entry = onlyone", "an fstab line"),
        ("lxc.environment = =x", "NAME=VALUE"),
    ] {
        let e = err(&format!("# first\n{line}\n"));
        assert!(e.starts_with("/cfg/test.conf:2: "), "{e}");
        assert!(e.contains(want), "{line}: {e}");
    }
}

#[test]
fn init_cmd_word_splitting() {
    let s = super::model::split_words_for_test;
    assert_eq!(s("  a  b ").unwrap(), ["a", "b"]);
    assert_eq!(s("a '' b").unwrap(), ["a", "", "b"]);
    assert_eq!(s(r"a\ b 'c\d'").unwrap(), ["a b", r"c\d"]);
    assert_eq!(s("\"unclosed"), None);
}

#[test]
fn upgrade_text_rewrites_and_round_trips() {
    let text = "# my container\nlxc.utsname = old\n\n  lxc.id_map = u 0 100000 65536        # legacy spelling\nlxc.network.type = veth\nlxc.network.link = lxcbr0\nlxc.network.ipv4 = 10.0.3.9/24\nlxc.network.type = empty\nlxc.rootfs.backend = dir\nlxc.arch = x86_64\n";
    let origin = Path::new("/cfg/u.conf");
    let (new, changes) = upgrade_text(text, origin).unwrap();
    assert_eq!(
        new,
        "# my container\nlxc.uts.name = old\n\n  # legacy spelling\n  lxc.idmap = u 0 100000 65536\nlxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.ipv4.address = 10.0.3.9/24\nlxc.net.1.type = empty\n# lxc.rootfs.backend = dir (removed: unused since LXC 3)\nlxc.arch = x86_64\n"
    );
    assert_eq!(
        changes,
        [
            "/cfg/u.conf:2: lxc.utsname -> lxc.uts.name",
            "/cfg/u.conf:4: trailing comment moved to its own line",
            "/cfg/u.conf:4: lxc.id_map -> lxc.idmap",
            "/cfg/u.conf:5: lxc.network.type -> lxc.net.0.type",
            "/cfg/u.conf:6: lxc.network.link -> lxc.net.0.link",
            "/cfg/u.conf:7: lxc.network.ipv4 -> lxc.net.0.ipv4.address",
            "/cfg/u.conf:8: lxc.network.type -> lxc.net.1.type",
            "/cfg/u.conf:9: lxc.rootfs.backend -> (commented out)",
        ]
    );
    // same meaning before and after, no warnings after, and a second upgrade changes nothing
    let before = ContainerConfig::from_raw(&parse_raw_str(text, origin).unwrap()).unwrap();
    let after = ContainerConfig::from_raw(&parse_raw_str(&new, origin).unwrap()).unwrap();
    assert!(after.warnings.is_empty());
    assert_eq!(before.idmaps.len(), after.idmaps.len());
    assert_eq!(
        before
            .net
            .iter()
            .map(|n| (n.index, n.kind, n.link.clone(), n.ipv4.clone()))
            .collect::<Vec<_>>(),
        after
            .net
            .iter()
            .map(|n| (n.index, n.kind, n.link.clone(), n.ipv4.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(before.uts_name, after.uts_name);
    let (again, none) = upgrade_text(&new, origin).unwrap();
    assert_eq!(again, new);
    assert!(none.is_empty());
    // no trailing newline, CRLF kept
    let (t, _) = upgrade_text("lxc.tty = 2", origin).unwrap();
    assert_eq!(t, "lxc.tty.max = 2");
    let (t, _) = upgrade_text("lxc.tty = 2\r\nlxc.pts = 1\r\n", origin).unwrap();
    assert_eq!(t, "lxc.tty.max = 2\r\nlxc.pty.max = 1\r\n");
    // errors surface with their location
    assert!(upgrade_text("lxc.bogus = 1\n", origin)
        .unwrap_err()
        .to_string()
        .starts_with("/cfg/u.conf:1: unknown key"));
}

#[test]
fn upgrade_numbers_after_included_interfaces_and_leaves_includes() {
    let dir = tempfile::tempdir().unwrap();
    let inc_text = "lxc.network.type = veth\nlxc.network.link = br0\n";
    let inc = write(dir.path(), "inc.conf", inc_text);
    let main_text = format!(
        "lxc.include = {}\nlxc.network.type = empty\n",
        inc.display()
    );
    let main = write(dir.path(), "main.conf", &main_text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o640)).unwrap();
    let changes = upgrade_file(&main).unwrap();
    assert_eq!(
        changes,
        [format!(
            "{}:2: lxc.network.type -> lxc.net.1.type",
            tilde(&main)
        )]
    );
    assert_eq!(
        std::fs::read_to_string(&main).unwrap(),
        format!("lxc.include = {}\nlxc.net.1.type = empty\n", inc.display())
    );
    assert_eq!(std::fs::read_to_string(&inc).unwrap(), inc_text);
    assert_eq!(
        std::fs::metadata(&main).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // no temporary left behind; nothing to do the second time
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    assert!(upgrade_file(&main).unwrap().is_empty());
    assert!(matches!(
        upgrade_file(&dir.path().join("nope.conf")),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn render_writes_current_spelling() {
    let items: Vec<(String, String)> = [
        ("lxc.utsname", "c1"),
        ("lxc.network.type", "veth"),
        ("lxc.network.link", "lxcbr0"),
        ("lxc.idmap", "u 0 100000 65536"),
        ("lxc.cap.drop", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = render(&items);
    assert_eq!(text, "lxc.uts.name = c1\nlxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.idmap = u 0 100000 65536\nlxc.cap.drop =\n");
    let cfg = parse(&text).unwrap();
    assert!(cfg.warnings.is_empty());
    assert_eq!(cfg.net[0].link.as_deref(), Some("lxcbr0"));
}

#[test]
fn default_user_config_path_follows_xdg() {
    let p = default_user_config_path();
    assert!(p.ends_with("lxc/default.conf"), "{}", p.display());
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if Path::new(&x).is_absolute() => {
            assert_eq!(p, Path::new(&x).join("lxc/default.conf"))
        }
        _ => assert!(p.ends_with(".config/lxc/default.conf")),
    }
}

#[test]
fn every_lxc5_table_key_is_known() {
    // keys of LXC 5's config_jump_table (src/lxc/confile.c), with an index/suffix filled in
    let keys = [
        "lxc.arch",
        "lxc.apparmor.profile",
        "lxc.apparmor.allow_incomplete",
        "lxc.apparmor.allow_nesting",
        "lxc.apparmor.raw",
        "lxc.autodev",
        "lxc.autodev.tmpfs.size",
        "lxc.cap.drop",
        "lxc.cap.keep",
        "lxc.cgroup2.memory.max",
        "lxc.cgroup.memory.limit_in_bytes",
        "lxc.cgroup.dir",
        "lxc.cgroup.dir.container",
        "lxc.cgroup.dir.container.inner",
        "lxc.cgroup.dir.monitor",
        "lxc.cgroup.dir.monitor.pivot",
        "lxc.cgroup.relative",
        "lxc.console.buffer.size",
        "lxc.console.logfile",
        "lxc.console.path",
        "lxc.console.rotate",
        "lxc.console.size",
        "lxc.environment",
        "lxc.ephemeral",
        "lxc.execute.cmd",
        "lxc.group",
        "lxc.hook.autodev",
        "lxc.hook.clone",
        "lxc.hook.destroy",
        "lxc.hook.mount",
        "lxc.hook.post-stop",
        "lxc.hook.pre-mount",
        "lxc.hook.pre-start",
        "lxc.hook.start",
        "lxc.hook.start-host",
        "lxc.hook.stop",
        "lxc.hook.version",
        "lxc.hook",
        "lxc.idmap",
        "lxc.include",
        "lxc.init.cmd",
        "lxc.init.cwd",
        "lxc.init.gid",
        "lxc.init.groups",
        "lxc.init.uid",
        "lxc.keyring.session",
        "lxc.log.file",
        "lxc.log.level",
        "lxc.log.syslog",
        "lxc.monitor.signal.pdeath",
        "lxc.monitor.unshare",
        "lxc.mount.auto",
        "lxc.mount.entry",
        "lxc.mount.fstab",
        "lxc.namespace.clone",
        "lxc.namespace.keep",
        "lxc.namespace.share.net",
        "lxc.net",
        "lxc.net.0",
        "lxc.net.0.type",
        "lxc.net.0.flags",
        "lxc.net.0.link",
        "lxc.net.0.l2proxy",
        "lxc.net.0.name",
        "lxc.net.0.hwaddr",
        "lxc.net.0.mtu",
        "lxc.net.0.script.up",
        "lxc.net.0.script.down",
        "lxc.net.0.veth.pair",
        "lxc.net.0.veth.mode",
        "lxc.net.0.veth.ipv4.route",
        "lxc.net.0.veth.ipv6.route",
        "lxc.net.0.veth.vlan.id",
        "lxc.net.0.veth.vlan.tagged.id",
        "lxc.net.0.macvlan.mode",
        "lxc.net.0.ipvlan.mode",
        "lxc.net.0.ipvlan.isolation",
        "lxc.net.0.vlan.id",
        "lxc.net.0.ipv4.address",
        "lxc.net.0.ipv4.gateway",
        "lxc.net.0.ipv6.address",
        "lxc.net.0.ipv6.gateway",
        "lxc.no_new_privs",
        "lxc.prlimit.nofile",
        "lxc.proc.oom_score_adj",
        "lxc.pty.max",
        "lxc.rootfs.managed",
        "lxc.rootfs.mount",
        "lxc.rootfs.options",
        "lxc.rootfs.path",
        "lxc.sched.core",
        "lxc.seccomp.allow_nesting",
        "lxc.seccomp.notify.cookie",
        "lxc.seccomp.notify.proxy",
        "lxc.seccomp.profile",
        "lxc.selinux.context",
        "lxc.selinux.context.keyring",
        "lxc.signal.halt",
        "lxc.signal.reboot",
        "lxc.signal.stop",
        "lxc.start.auto",
        "lxc.start.delay",
        "lxc.start.order",
        "lxc.sysctl.net.ipv4.ip_forward",
        "lxc.tty.dir",
        "lxc.tty.max",
        "lxc.uts.name",
        "lxc.time.offset.boot",
        "lxc.time.offset.monotonic",
    ];
    for k in keys {
        assert!(keys::classify(k).is_some(), "{k} should be known");
    }
    for k in [
        "lxc.cgroup.memory",
        "lxc.cgroup2.",
        "lxc.net.x.type",
        "lxc.hook.nothing",
        "lxc.prlimit.bogus",
        "lxc.network.type",
        "lxc.id_map",
    ] {
        assert!(
            keys::classify(k).is_none(),
            "{k} should not be a current key"
        );
    }
}
