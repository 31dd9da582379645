//! `ulxc ls` and `ulxc info`: what containers there are and how they are doing, as LXC
//! shows it (and as versioned JSON).

use std::path::Path;

use nix::unistd::Pid;
use serde::Serialize;

use super::paths::ContainerDir;
use super::state::{self, State};
use crate::config;
use crate::sys;

/// One container as `ls` shows it. Serialized as `ls --json` (format version 1).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listing {
    /// Name.
    pub name: String,
    /// State (`RUNNING`, `STOPPED`, ...).
    pub state: State,
    /// `lxc.start.auto`.
    pub autostart: bool,
    /// `lxc.group` values.
    pub groups: Vec<String>,
    /// Global IPv4 addresses inside the container (not `lo`).
    pub ipv4: Vec<String>,
    /// Global IPv6 addresses inside the container.
    pub ipv6: Vec<String>,
    /// Whether the container maps its ids (always, for ulxc's containers).
    pub unprivileged: bool,
    /// Init's pid when running.
    pub pid: Option<i32>,
}

/// Lists the containers under `lxcpath` (directories holding a `config`), by name.
pub fn list(lxcpath: &Path) -> Vec<Listing> {
    let Ok(entries) = std::fs::read_dir(lxcpath) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("config").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| describe(&ContainerDir::new(lxcpath, n)))
        .collect()
}

/// Describes one container.
pub fn describe(dir: &ContainerDir) -> Listing {
    let observed = state::observe(dir);
    let cfg = config::load(&dir.config()).ok();
    let pid = observed.run.as_ref().map(|r| r.init_pid);
    let (ipv4, ipv6) = match pid {
        Some(p) => addresses(Pid::from_raw(p)),
        None => (Vec::new(), Vec::new()),
    };
    Listing {
        name: dir.name.clone(),
        state: observed.state,
        autostart: cfg.as_ref().is_some_and(|c| c.start_auto),
        groups: cfg.as_ref().map(|c| c.groups.clone()).unwrap_or_default(),
        ipv4,
        ipv6,
        unprivileged: cfg.as_ref().is_none_or(|c| !c.idmaps.is_empty()),
        pid,
    }
}

/// The global addresses in the network namespace of `pid`, skipping `lo` and
/// link-local IPv6, read from `/proc/PID/net` (no need to enter the namespace).
pub fn addresses(pid: Pid) -> (Vec<String>, Vec<String>) {
    let base = format!("/proc/{}/net", pid.as_raw());
    let v4 = std::fs::read_to_string(format!("{base}/fib_trie"))
        .map(|t| parse_fib_trie_locals(&t))
        .unwrap_or_default();
    let v6 = std::fs::read_to_string(format!("{base}/if_inet6"))
        .map(|t| parse_if_inet6(&t))
        .unwrap_or_default();
    (v4, v6)
}

/// The local (`/32 host LOCAL`) addresses of `/proc/net/fib_trie`, without loopback.
pub fn parse_fib_trie_locals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last_addr: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last_addr = Some(rest.trim());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last_addr {
                if !a.starts_with("127.") && !out.iter().any(|x| x == a) {
                    out.push(a.to_string());
                }
            }
        }
    }
    out
}

/// Global IPv6 addresses of `/proc/net/if_inet6` (scope 00), not on `lo`.
pub fn parse_if_inet6(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] == "lo" || f[3] != "00" || f[0].len() != 32 {
                return None;
            }
            let groups: Vec<String> = (0..8).map(|i| f[0][i * 4..i * 4 + 4].to_string()).collect();
            let addr: std::net::Ipv6Addr = groups.join(":").parse().ok()?;
            Some(addr.to_string())
        })
        .collect()
}

fn dash_join(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

/// LXC's `ls --fancy` table: NAME STATE AUTOSTART GROUPS IPV4 IPV6 UNPRIVILEGED.
pub fn render_fancy(rows: &[Listing]) -> String {
    let header = [
        "NAME",
        "STATE",
        "AUTOSTART",
        "GROUPS",
        "IPV4",
        "IPV6",
        "UNPRIVILEGED",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.state.as_str().to_string(),
                if r.autostart { "1" } else { "0" }.to_string(),
                dash_join(&r.groups),
                dash_join(&r.ipv4),
                dash_join(&r.ipv6),
                r.unprivileged.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cols: Vec<&str>| -> String {
        cols.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$} "))
            .collect::<String>()
            .trim_end()
            .to_string()
            + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The versioned JSON document of `ls --json`.
pub fn render_json(rows: &[Listing]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        containers: &'a [Listing],
    }
    serde_json::to_string_pretty(&Doc {
        version: 1,
        containers: rows,
    })
    .unwrap_or_default()
}

/// What `ulxc info` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The listing fields.
    #[serde(flatten)]
    pub listing: Listing,
    /// Memory in use, bytes (from the cgroup, or the sum of the processes' RSS).
    pub memory_bytes: Option<u64>,
}

/// Gathers `info` for a container.
pub fn info(dir: &ContainerDir) -> Info {
    let listing = describe(dir);
    let run = state::observe(dir).run;
    let memory_bytes = run.as_ref().and_then(|r| {
        let from_cgroup = r
            .cgroup
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p.join("memory.current")).ok())
            .and_then(|s| s.trim().parse().ok());
        from_cgroup.or_else(|| rss_of_pidns(Pid::from_raw(r.init_pid)))
    });
    Info {
        listing,
        memory_bytes,
    }
}

fn rss_of_pidns(init: Pid) -> Option<u64> {
    let ns = sys::ns::namespace_id(init, "pid")?;
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let pid = Pid::from_raw(pid);
        if sys::ns::namespace_id(pid, "pid") != Some(ns) {
            continue;
        }
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw())).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            total += kb * 1024;
        }
    }
    Some(total)
}

/// Renders `info` as `lxc-info` does.
pub fn render_info(info: &Info) -> String {
    let l = &info.listing;
    let mut out = format!(
        "{:<16}{}\n{:<16}{}\n",
        "Name:",
        l.name,
        "State:",
        l.state.as_str()
    );
    if let Some(pid) = l.pid {
        out.push_str(&format!("{:<16}{pid}\n", "PID:"));
    }
    for ip in l.ipv4.iter().chain(&l.ipv6) {
        out.push_str(&format!("{:<16}{ip}\n", "IP:"));
    }
    if let Some(m) = info.memory_bytes {
        out.push_str(&format!(
            "{:<16}{:.2} MiB\n",
            "Memory use:",
            m as f64 / 1048576.0
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fancy_has_lxc_columns_and_dashes() {
        let rows = vec![Listing {
            name: "stretch".into(),
            state: State::Running,
            autostart: false,
            groups: vec![],
            ipv4: vec!["10.0.3.5".into(), "10.0.3.6".into()],
            ipv6: vec![],
            unprivileged: true,
            pid: Some(1),
        }];
        let text = render_fancy(&rows);
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            [
                "NAME",
                "STATE",
                "AUTOSTART",
                "GROUPS",
                "IPV4",
                "IPV6",
                "UNPRIVILEGED"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("stretch RUNNING"), "{row}");
        assert!(row.contains("10.0.3.5, 10.0.3.6"), "{row}");
        assert!(row.contains(" - "), "{row}");
        assert!(row.ends_with("true"), "{row}");
    }

    #[test]
    fn fib_trie_locals_skip_loopback() {
        let text = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.3.5\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\nLocal:\n     |-- 10.0.3.5\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie_locals(text), vec!["10.0.3.5".to_string()]);
    }

    #[test]
    fn if_inet6_keeps_global_only() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000216 02 40 20 80 eth0\n20010db8000000000000000000000005 02 40 00 80     eth0\n";
        assert_eq!(parse_if_inet6(text), vec!["2001:db8::5".to_string()]);
    }
}
