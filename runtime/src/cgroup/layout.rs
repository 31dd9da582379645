//! Which cgroup hierarchies are mounted where (from `/proc/self/mountinfo`) and which
//! cgroup a process is in (from `/proc/PID/cgroup`).
//!
//! Both files are parsed by hand: each is a few whitespace- or colon-separated fields per
//! line, and the parsers take text so that unit tests can feed fixtures. (The `procfs`
//! crate parses mountinfo too, but pulls in a large dependency tree for two small
//! formats and reads from the live /proc only.)

use std::path::{Path, PathBuf};

/// How the cgroup hierarchies of this host are arranged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2: one hierarchy holds every controller (Debian 11 and later).
    Unified {
        /// Where the cgroup2 file system is mounted, normally `/sys/fs/cgroup`.
        mount: PathBuf,
    },
    /// v1 controller hierarchies plus a cgroup2 hierarchy that holds the controllers no
    /// v1 hierarchy took (systemd's "hybrid" mode, or a hand-made mount).
    Hybrid {
        /// Where the cgroup2 file system is mounted, e.g. `/sys/fs/cgroup/unified`.
        /// Always present when detected: without a cgroup2 mount the layout is `Legacy`;
        /// an `Option` so that callers can treat `Hybrid` and `Legacy` alike.
        unified: Option<PathBuf>,
        /// The v1 hierarchies: (comma-separated controllers or `name=...`, mount point).
        v1: Vec<(String, PathBuf)>,
    },
    /// Only v1 hierarchies.
    Legacy {
        /// The v1 hierarchies: (comma-separated controllers or `name=...`, mount point).
        v1: Vec<(String, PathBuf)>,
    },
}

impl Layout {
    /// Where the cgroup2 hierarchy is mounted, if it is.
    pub fn unified_mount(&self) -> Option<&Path> {
        match self {
            Layout::Unified { mount } => Some(mount),
            Layout::Hybrid { unified, .. } => unified.as_deref(),
            Layout::Legacy { .. } => None,
        }
    }

    /// The v1 hierarchies (empty for a pure v2 host).
    pub fn v1(&self) -> &[(String, PathBuf)] {
        match self {
            Layout::Unified { .. } => &[],
            Layout::Hybrid { v1, .. } | Layout::Legacy { v1 } => v1,
        }
    }

    /// The mount point of the v1 hierarchy that holds `controller`, if one does.
    pub fn v1_mount_of(&self, controller: &str) -> Option<&Path> {
        self.v1()
            .iter()
            .find(|(ctrls, _)| ctrls.split(',').any(|c| c == controller))
            .map(|(_, p)| p.as_path())
    }

    /// A short word for reports: `v2`, `hybrid` or `v1`.
    pub fn kind(&self) -> &'static str {
        match self {
            Layout::Unified { .. } => "v2",
            Layout::Hybrid { .. } => "hybrid",
            Layout::Legacy { .. } => "v1",
        }
    }
}

/// One cgroup mount read from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The mount point.
    pub mount_point: PathBuf,
    /// The root of the mount inside the hierarchy (field 4), `/` unless a subtree is
    /// bind-mounted or the mount was made inside a cgroup namespace.
    pub root: String,
    /// `true` for cgroup2, `false` for a v1 hierarchy.
    pub v2: bool,
    /// For v1: the controllers (and `name=...`) from the super options, comma-joined.
    pub controllers: String,
}

/// Options of a v1 cgroup mount that are not controller names.
const V1_NON_CONTROLLER_OPTS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let text = String::from_utf8_lossy(oct);
                if let Ok(v) = u8::from_str_radix(&text, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts in mountinfo text, in file order. Lines that are not cgroup mounts
/// or are malformed are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        if pre.len() < 6 || post.len() < 2 {
            continue;
        }
        let fstype = post[0];
        let super_opts = post.get(2).copied().unwrap_or("");
        let (v2, controllers) = match fstype {
            "cgroup2" => (true, String::new()),
            "cgroup" => {
                let ctrls: Vec<&str> = super_opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .filter(|o| !V1_NON_CONTROLLER_OPTS.contains(o))
                    .filter(|o| !o.starts_with("release_agent="))
                    .collect();
                (false, ctrls.join(","))
            }
            _ => continue,
        };
        mounts.push(CgroupMount {
            mount_point: PathBuf::from(unescape(pre[4])),
            root: unescape(pre[3]),
            v2,
            controllers,
        });
    }
    mounts
}

/// The layout from the cgroup mounts, or `None` when no cgroup file system is mounted.
///
/// Of several cgroup2 mounts the one with root `/` at `/sys/fs/cgroup` or
/// `/sys/fs/cgroup/unified` is preferred, then any with root `/`, then the first. v1
/// hierarchies mounted twice are listed once (the first mount).
pub fn layout_from_mounts(mounts: &[CgroupMount]) -> Option<Layout> {
    let v2: Vec<&CgroupMount> = mounts.iter().filter(|m| m.v2).collect();
    let preferred = |m: &&&CgroupMount| {
        m.root == "/"
            && (m.mount_point == Path::new("/sys/fs/cgroup")
                || m.mount_point == Path::new("/sys/fs/cgroup/unified"))
    };
    let unified = v2
        .iter()
        .find(preferred)
        .or_else(|| v2.iter().find(|m| m.root == "/"))
        .or_else(|| v2.first())
        .map(|m| m.mount_point.clone());
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for m in mounts.iter().filter(|m| !m.v2 && !m.controllers.is_empty()) {
        if !v1.iter().any(|(c, _)| *c == m.controllers) {
            v1.push((m.controllers.clone(), m.mount_point.clone()));
        }
    }
    match (unified, v1.is_empty()) {
        (Some(mount), true) => Some(Layout::Unified { mount }),
        (Some(mount), false) => Some(Layout::Hybrid {
            unified: Some(mount),
            v1,
        }),
        (None, false) => Some(Layout::Legacy { v1 }),
        (None, true) => None,
    }
}

/// The root field of the cgroup2 mount at `mount_point` (`/` when not found).
pub fn mount_root<'a>(mounts: &'a [CgroupMount], mount_point: &Path) -> &'a str {
    mounts
        .iter()
        .find(|m| m.mount_point == mount_point)
        .map(|m| m.root.as_str())
        .unwrap_or("/")
}

/// The cgroups of one process, from `/proc/PID/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroups {
    /// The v2 path (the `0::PATH` line), relative to the root of the reader's cgroup
    /// namespace (on a hybrid host: relative to the root of the unified hierarchy).
    pub v2: Option<String>,
    /// The v1 entries: (comma-separated controllers or `name=...`, path).
    pub v1: Vec<(String, String)>,
}

impl ProcCgroups {
    /// The v1 path of the hierarchy that holds `controller`.
    pub fn v1_path_of(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == controller))
            .map(|(_, p)| p.as_str())
    }
}

/// Parses `/proc/PID/cgroup` text: `ID:CONTROLLERS:PATH` per line. On a pure v2 host only
/// the `0::PATH` line exists; v1 lines have a non-zero id and a controller list. Malformed
/// lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> ProcCgroups {
    let mut out = ProcCgroups::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path).to_string();
        if id == "0" && ctrls.is_empty() {
            out.v2 = Some(path);
        } else if !ctrls.is_empty() {
            out.v1.push((ctrls.to_string(), path));
        }
    }
    out
}

/// The file-system path of the cgroup `cg_path` (as written in `/proc/PID/cgroup`) in a
/// hierarchy mounted at `mount_point` whose mount root is `mount_root`.
///
/// Returns `None` when the cgroup lies outside the mounted subtree.
pub fn fs_path(mount_point: &Path, mount_root: &str, cg_path: &str) -> Option<PathBuf> {
    let root = mount_root.trim_end_matches('/');
    let rel = cg_path.strip_prefix(root)?;
    if !rel.is_empty() && !rel.starts_with('/') {
        return None;
    }
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        mount_point.to_path_buf()
    } else {
        mount_point.join(rel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids
37 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
22 1 8:1 / / rw - ext4 /dev/sda1 rw
";

    const PURE_V2: &str = "\
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_layout_is_detected() {
        let mounts = parse_mountinfo(HYBRID);
        let layout = layout_from_mounts(&mounts).unwrap();
        assert_eq!(layout.kind(), "hybrid");
        assert_eq!(
            layout.unified_mount(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            layout.v1_mount_of("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            layout.v1_mount_of("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert!(layout.v1().iter().any(|(c, _)| c == "name=systemd"));
        assert_eq!(layout.v1_mount_of("io"), None);
    }

    #[test]
    fn pure_v2_layout_is_detected() {
        let layout = layout_from_mounts(&parse_mountinfo(PURE_V2)).unwrap();
        assert_eq!(
            layout,
            Layout::Unified {
                mount: PathBuf::from("/sys/fs/cgroup")
            }
        );
        assert!(layout.v1().is_empty());
    }

    #[test]
    fn legacy_and_none() {
        let legacy = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>();
        let layout = layout_from_mounts(&parse_mountinfo(&legacy.join("\n"))).unwrap();
        assert_eq!(layout.kind(), "v1");
        assert_eq!(layout.unified_mount(), None);
        assert_eq!(
            layout_from_mounts(&parse_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw")),
            None
        );
    }

    #[test]
    fn escaped_mount_points_and_roots() {
        let text = "30 23 0:26 /user.slice /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/cg two"));
        assert_eq!(m[0].root, "/user.slice");
        assert_eq!(mount_root(&m, Path::new("/mnt/cg two")), "/user.slice");
    }

    #[test]
    fn proc_cgroup_hybrid() {
        let text = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ac48\n1:cpu,cpuacct:/a\n0::/ulxc-test.delegated\n";
        let p = parse_proc_cgroup(text);
        assert_eq!(p.v2.as_deref(), Some("/ulxc-test.delegated"));
        assert_eq!(p.v1_path_of("memory"), Some("/process_api/ac48"));
        assert_eq!(p.v1_path_of("cpuacct"), Some("/a"));
        assert_eq!(p.v1_path_of("name=systemd"), Some("/"));
        assert_eq!(p.v1_path_of("io"), None);
    }

    #[test]
    fn proc_cgroup_v2_and_v1_only() {
        let p = parse_proc_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n");
        assert_eq!(
            p.v2.as_deref(),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert!(p.v1.is_empty());
        let p = parse_proc_cgroup("3:memory:/x\n2:pids:/y\n");
        assert_eq!(p.v2, None);
        assert_eq!(p.v1.len(), 2);
        let p = parse_proc_cgroup("0::/gone (deleted)\ngarbage\n");
        assert_eq!(p.v2.as_deref(), Some("/gone"));
    }

    #[test]
    fn fs_paths_respect_the_mount_root() {
        let m = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(fs_path(m, "/", "/"), Some(m.to_path_buf()));
        assert_eq!(fs_path(m, "/", "/a/b"), Some(m.join("a/b")));
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(
            fs_path(m, "/user.slice", "/user.slice/u"),
            Some(m.join("u"))
        );
        assert_eq!(
            fs_path(m, "/user.slice", "/user.slice"),
            Some(m.to_path_buf())
        );
        assert_eq!(fs_path(m, "/user.slice", "/user.slicex/u"), None);
        assert_eq!(fs_path(m, "/user.slice", "/system.slice"), None);
        assert_eq!(fs_path(m, "/", "/../etc"), None);
    }
}
