//! Shared set-up of the runtime's integration tests: the real `ulxc` binary run as a
//! real unprivileged user with subordinate id ranges.
//!
//! Run as root (as CI does), the tests make sure the dedicated test user exists (the
//! idempotent `.ci/host-setup`), move themselves into that user's delegated cgroup,
//! and run every `ulxc` command as that user. Run as an ordinary user, they use that
//! user as they are. They never pass by skipping: a missing prerequisite fails them
//! with the reason.
#![allow(dead_code)]

pub mod netns;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged user the tests act as.
pub struct Env {
    /// Login name.
    pub user: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Whether the tests run as root and switch to `user` for each command.
    pub switch: bool,
    /// First subordinate uid of the user (container root on the host).
    pub subuid: u32,
    /// First subordinate gid.
    pub subgid: u32,
    /// The `ulxc` binary.
    pub bin: PathBuf,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn first_range(file: &str, user: &str, uid: u32) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() == 3 && (f[0] == user || f[0] == uid.to_string()) {
                f[1].parse().ok()
            } else {
                None
            }
        })
        .next()
        .unwrap_or_else(|| panic!("{user} has no range in {file}: run .ci/host-setup as root"))
}

fn passwd_entry(name: &str) -> Option<(u32, u32, PathBuf)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || f[0] != name {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5])))
    })
}

/// The test environment, set up once per test binary.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_ulxc"));
        let euid = nix::unistd::geteuid().as_raw();
        if euid == 0 {
            let user = std::env::var("ULXC_TEST_USER").unwrap_or_else(|_| "ulxc-test".into());
            let setup = workspace().join(".ci/host-setup");
            let deleg = delegated_cgroup(&user);
            if passwd_entry(&user).is_none() || deleg.as_ref().is_none_or(|d| !d.exists()) {
                let out = Command::new(&setup)
                    .env("ULXC_TEST_USER", &user)
                    .output()
                    .expect("run .ci/host-setup");
                assert!(
                    out.status.success(),
                    "{} failed: {}",
                    setup.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            if let Some(d) = delegated_cgroup(&user) {
                // Like `systemd-run --user --scope -p Delegate=yes`: the test process and
                // everything it starts live in the user's delegated cgroup.
                std::fs::write(d.join("cgroup.procs"), std::process::id().to_string())
                    .unwrap_or_else(|e| panic!("cannot enter {}: {e}", d.display()));
            }
            let (uid, gid, home) = passwd_entry(&user).expect("test user exists after host-setup");
            Env {
                subuid: first_range("/etc/subuid", &user, uid),
                subgid: first_range("/etc/subgid", &user, uid),
                user,
                uid,
                gid,
                home,
                switch: true,
                bin,
            }
        } else {
            let uid = euid;
            let gid = nix::unistd::getegid().as_raw();
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
                .expect("own passwd entry");
            let home = PathBuf::from(std::env::var("HOME").expect("HOME"));
            Env {
                subuid: first_range("/etc/subuid", &user, uid),
                subgid: first_range("/etc/subgid", &user, uid),
                user,
                uid,
                gid,
                home,
                switch: false,
                bin,
            }
        }
    })
}

fn delegated_cgroup(user: &str) -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(Path::new)
        .find(|base| base.join("cgroup.controllers").exists())
        .map(|base| base.join(format!("{user}.delegated")))
}

impl Env {
    /// A command running `program` as the test user with a clean environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        self.user_environment(&mut cmd);
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Runs `ulxc ARGS...` as the test user.
    pub fn ulxc(&self, args: &[&str]) -> Output {
        self.command(&self.bin)
            .args(args)
            .output()
            .expect("run ulxc")
    }

    /// A command running `program` as the test user inside the network namespace
    /// `netns` (a path such as `/run/netns/NAME`): root enters it with `nsenter`, then
    /// drops to the user with `setpriv`. Needs the tests to run as root.
    pub fn command_in_netns(&self, netns: &Path, program: &Path) -> Command {
        assert!(
            self.switch,
            "network tests must run as root: they build their host side in network namespaces of their own"
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns.display()))
            .args([
                "--",
                "setpriv",
                &format!("--reuid={}", self.uid),
                &format!("--regid={}", self.gid),
                "--init-groups",
                "--",
            ])
            .arg(program);
        self.user_environment(&mut cmd);
        cmd
    }

    /// A clean environment of the test user's (PATH, HOME, USER, LOGNAME, and ULXC_LOG
    /// when set), working in the user's home.
    fn user_environment(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &self.home)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user)
            .current_dir(&self.home);
        if let Ok(log) = std::env::var("ULXC_LOG") {
            cmd.env("ULXC_LOG", log);
        }
    }

    /// Runs `ulxc SUBCOMMAND -P lxcpath ARGS...` as the test user inside `netns`.
    pub fn ulxc_in_netns(&self, netns: &Path, lxcpath: &Path, args: &[&str]) -> Output {
        let mut full: Vec<&str> = vec![args[0], "-P", lxcpath.to_str().unwrap()];
        full.extend_from_slice(&args[1..]);
        self.command_in_netns(netns, &self.bin)
            .args(&full)
            .output()
            .expect("run ulxc in a network namespace")
    }

    /// Runs `ulxc` with `-P lxcpath` inserted after the subcommand.
    pub fn ulxc_in(&self, lxcpath: &Path, args: &[&str]) -> Output {
        let mut full: Vec<&str> = vec![args[0], "-P", lxcpath.to_str().unwrap()];
        full.extend_from_slice(&args[1..]);
        self.ulxc(&full)
    }

    /// A fresh container directory for one test, under the test user's home; removed
    /// (through `ulxc destroy`) by the guard.
    pub fn lxcpath(&'static self, test: &str) -> Lxcpath {
        let dir = self
            .home
            .join("ulxc-tests")
            .join(format!("{test}-{}", std::process::id()));
        let out = self
            .command(Path::new("/bin/mkdir"))
            .args(["-p"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkdir {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Lxcpath {
            path: dir,
            env: self,
        }
    }

    /// Writes a container config file at `path`: the test user's id map, then `extra`
    /// (more `key = value` lines).
    pub fn write_config(&self, path: &Path, extra: &str) {
        let text = format!(
            "lxc.idmap = u 0 {} 65536\nlxc.idmap = g 0 {} 65536\n{extra}",
            self.subuid, self.subgid
        );
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// The Debian bookworm rootfs tarball (built once by `.ci/test-rootfs`, as root).
    pub fn debian_rootfs(&self) -> PathBuf {
        let script = workspace().join(".ci/test-rootfs");
        let out = Command::new(&script).output().expect("run .ci/test-rootfs");
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }
}

/// A test's container directory; on drop every container in it is killed and destroyed.
pub struct Lxcpath {
    /// The directory.
    pub path: PathBuf,
    env: &'static Env,
}

impl Drop for Lxcpath {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().join("config").exists() {
                    let _ = self
                        .env
                        .ulxc_in(&self.path, &["destroy", "-n", &name, "-f"]);
                }
            }
        }
        let _ = self
            .env
            .command(Path::new("/bin/rm"))
            .args(["-rf"])
            .arg(&self.path)
            .output();
    }
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command unexpectedly succeeded:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Host owner (uid, gid) of a path, without following links.
pub fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

/// Retries `f` until it returns `Some`, or panics with `what` after `limit`.
#[track_caller]
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
