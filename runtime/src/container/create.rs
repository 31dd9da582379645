//! `ulxc create`: makes a container directory with a config and a rootfs built by a
//! template, the rootfs owned by the container's mapped ids. On any failure nothing is
//! left behind.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::paths::{self, Caller, ContainerDir};
use super::{io_err, name, ContainerError};
use crate::config::{self, ContainerConfig};
use crate::idmap::{self, IdMap, IdMapLine};
use crate::image;
use crate::userns::{self, Identity};

/// Where a rootfs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// A small rootfs around the host's static busybox.
    Busybox {
        /// The busybox binary (default `/bin/busybox`).
        busybox: PathBuf,
    },
    /// A rootfs tarball (`.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`), with optional extra
    /// config lines from a file.
    Local {
        /// The tarball.
        rootfs: PathBuf,
        /// Extra configuration to append.
        config: Option<PathBuf>,
    },
    /// An image from an LXC image server (index, signed rootfs, cache), see
    /// [`image::download`].
    Download(Box<image::download::Request>),
}

impl Template {
    /// Parses `-t NAME -- ARGS...` as LXC passes template arguments.
    pub fn parse(name: &str, args: &[String]) -> Result<Self, ContainerError> {
        let usage = |m: String| ContainerError::Usage(m);
        let mut it = args.iter();
        let take = |flag: &str, it: &mut std::slice::Iter<'_, String>| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("template option {flag} needs a value")))
        };
        match name {
            "busybox" => {
                let mut busybox = PathBuf::from("/bin/busybox");
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "--busybox-path" | "--busybox" => busybox = PathBuf::from(take(a, &mut it)?),
                        other => return Err(usage(format!("unknown option {other} for the busybox template; it takes --busybox-path PATH"))),
                    }
                }
                Ok(Template::Busybox { busybox })
            }
            "local" => {
                let mut rootfs = None;
                let mut config = None;
                while let Some(a) = it.next() {
                    match a.as_str() {
                        "--rootfs" | "--fstree" => rootfs = Some(PathBuf::from(take(a, &mut it)?)),
                        "--config" | "--metadata" => config = Some(PathBuf::from(take(a, &mut it)?)),
                        other => return Err(usage(format!("unknown option {other} for the local template; it takes --rootfs TARBALL [--config FILE]"))),
                    }
                }
                let rootfs = rootfs.ok_or_else(|| usage("the local template needs --rootfs TARBALL (after `--`)".into()))?;
                let rootfs = std::path::absolute(&rootfs).unwrap_or(rootfs);
                Ok(Template::Local { rootfs, config })
            }
            "download" => image::download::Request::parse(args)
                .map(|r| Template::Download(Box::new(r)))
                .map_err(usage),
            other => Err(usage(format!("unknown template {other}; available: busybox, local (-t local -- --rootfs TARBALL), download ({})", image::download::USAGE))),
        }
    }
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    /// The new container.
    pub dir: ContainerDir,
    /// Lines to tell the user (warnings from the config, the unpack summary).
    pub notes: Vec<String>,
    /// The closing message of a downloaded image (LXC prints it after `---`).
    pub message: Option<String>,
}

/// The id map of a container: its `lxc.idmap` lines checked against the user's
/// subordinate ranges.
pub fn container_idmap(cfg: &ContainerConfig, caller: &Caller) -> Result<IdMap, ContainerError> {
    let uid_ranges = idmap::subuid_ranges(&caller.name, caller.uid)?;
    let gid_ranges = idmap::subgid_ranges(&caller.name, caller.uid)?;
    if cfg.idmaps.is_empty() {
        return Err(ContainerError::Unsupported(format!(
            "the configuration has no lxc.idmap lines; an unprivileged container needs them, e.g.\n  lxc.idmap = u 0 {0} {1}\n  lxc.idmap = g 0 {2} {3}\nin {4}",
            uid_ranges.first().map_or(100000, |r| r.start),
            uid_ranges.first().map_or(65536, |r| r.count),
            gid_ranges.first().map_or(100000, |r| r.start),
            gid_ranges.first().map_or(65536, |r| r.count),
            caller.tilde(&config::default_user_config_path()),
        )));
    }
    let lines: Vec<(IdMapLine, String)> = cfg
        .idmaps
        .iter()
        .map(|l| (l.value, l.at.to_string()))
        .collect();
    idmap::check_allowed(&lines, &uid_ranges, &gid_ranges, caller.uid, caller.gid)?;
    let plain: Vec<IdMapLine> = lines.iter().map(|(l, _)| *l).collect();
    Ok(IdMap::from_lines(&plain)?)
}

/// The map used for work on a container's files from the host side: the container's
/// map plus the caller's own ids.
pub fn helper_map(map: &IdMap, caller: &Caller) -> IdMap {
    map.clone().with_caller(caller.uid, caller.gid)
}

/// Runs `inside` in a user namespace with `map` (as the caller, see [`Identity::Caller`]).
pub fn in_helper_ns<F>(map: &IdMap, inside: F) -> Result<(), ContainerError>
where
    F: FnOnce() -> Result<i32, String>,
{
    match userns::run_mapped(map, Identity::Caller, inside)? {
        0 => Ok(()),
        code => Err(ContainerError::Io {
            what: "the helper in the user namespace failed".into(),
            source: std::io::Error::other(format!("exit status {code}")),
        }),
    }
}

/// Creates container `name` under `lxcpath` from `template`, starting from the config
/// file `base` (default: the user's `~/.config/lxc/default.conf` when it exists).
pub fn create(
    lxcpath: &Path,
    name_arg: &str,
    template: &Template,
    base: Option<&Path>,
    caller: &Caller,
) -> Result<Created, ContainerError> {
    name::validate(name_arg)?;
    paths::check_lxcpath(lxcpath, caller, true)?;
    let dir = ContainerDir::new(lxcpath, name_arg);
    if std::fs::symlink_metadata(&dir.dir).is_ok() {
        return Err(ContainerError::Exists {
            name: name_arg.into(),
            lxcpath: caller.tilde(lxcpath),
        });
    }

    // Everything that can be checked is checked before anything is made.
    let default_conf = config::default_user_config_path();
    let base_path: Option<PathBuf> = match base {
        Some(p) => Some(p.to_path_buf()),
        None if default_conf.is_file() => Some(default_conf),
        None => None,
    };
    let mut notes = Vec::new();
    let base_text = match &base_path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(io_err(format!("cannot read {}", caller.tilde(p))))?,
        None => String::new(),
    };
    let origin = base_path.clone().unwrap_or_else(|| dir.config());
    let (mut text, upgrades) = config::upgrade_text(&base_text, &origin)?;
    notes.extend(upgrades.into_iter().map(|u| format!("config: {u}")));
    let probe = config::ContainerConfig::from_raw(&config::parse_raw_str(&text, &origin)?)?;
    if probe.idmaps.is_empty() {
        let uid = idmap::subuid_ranges(&caller.name, caller.uid)?;
        let gid = idmap::subgid_ranges(&caller.name, caller.uid)?;
        let map = IdMap::from_subids(&uid, &gid)?;
        let mut added = String::from("# id map from /etc/subuid and /etc/subgid\n");
        for line in map.to_lines() {
            added.push_str(&format!("lxc.idmap = {line}\n"));
        }
        notes.push("no lxc.idmap configured: using your subordinate id ranges".to_string());
        text.push_str(&added);
    }
    let cfg = config::ContainerConfig::from_raw(&config::parse_raw_str(&text, &origin)?)?;
    let map = container_idmap(&cfg, caller)?;
    let mut effective = template.clone();
    let mut message = None;
    let mut template_header = "# from --config";
    let mut fill: Vec<String> = Vec::new();
    let template_text = match template {
        Template::Download(req) => {
            // Downloaded and verified before the container directory exists.
            let img = image::download::prepare(req).map_err(ContainerError::from)?;
            let rootfs = dir.rootfs();
            let text = img.meta.config(name_arg, &dir.dir, &rootfs);
            config::parse_raw_str(&text, &img.dir.join("meta.tar.xz:config"))?;
            notes.extend(img.notes.iter().map(|n| format!("image: {n}")));
            message = Some(
                img.meta
                    .create_message(name_arg, &dir.dir, &rootfs)
                    .unwrap_or_else(|| {
                        format!(
                            "You just created a {} {} {} ({}) container.\n\n\
                     No user accounts and no root password are set up in it.\n\
                     Enter it with: ulxc attach -n {name_arg}\n",
                            img.entry.dist, img.entry.release, img.entry.arch, img.entry.build
                        )
                    }),
            );
            template_header = "# Distribution configuration";
            fill = img.meta.templates();
            effective = Template::Local {
                rootfs: img.rootfs.clone(),
                config: None,
            };
            eprintln!("Unpacking the rootfs");
            Some(text)
        }
        Template::Local {
            rootfs,
            config: extra,
        } => {
            std::fs::File::open(rootfs).map_err(io_err(format!(
                "cannot open the rootfs tarball {}",
                rootfs.display()
            )))?;
            match extra {
                Some(p) => {
                    let t = std::fs::read_to_string(p)
                        .map_err(io_err(format!("cannot read {}", p.display())))?;
                    config::parse_raw_str(&t, p)?;
                    Some(t)
                }
                None => None,
            }
        }
        Template::Busybox { busybox } => {
            std::fs::metadata(busybox).map_err(io_err(format!(
                "cannot find busybox at {} (install busybox-static, or give --busybox-path)",
                busybox.display()
            )))?;
            None
        }
    };

    if let Some(p) = &base_path {
        text = format!("# from {}\n{text}", caller.tilde(p));
    }
    std::fs::create_dir(&dir.dir)
        .map_err(io_err(format!("cannot create {}", dir.dir.display())))?;
    match build(
        &dir,
        &effective,
        (template_header, fill),
        template_text,
        text,
        &map,
        caller,
    ) {
        Ok(more) => {
            notes.extend(more);
            paths::remember_lxcpath(caller, lxcpath);
            Ok(Created {
                dir,
                notes,
                message,
            })
        }
        Err(e) => {
            if let Err(cleanup) = remove_container_dir(&dir, &map, caller) {
                // The helper namespace itself may be what failed (newuidmap refused):
                // what the caller made alone it can remove alone (no links followed).
                if let Err(plain) = std::fs::remove_dir_all(&dir.dir) {
                    tracing::error!(%cleanup, %plain, dir = ?dir.dir, "cannot remove the half-made container");
                }
            }
            Err(e)
        }
    }
}

fn build(
    dir: &ContainerDir,
    template: &Template,
    (template_header, fill): (&str, Vec<String>),
    template_text: Option<String>,
    base_text: String,
    map: &IdMap,
    caller: &Caller,
) -> Result<Vec<String>, ContainerError> {
    let helper = helper_map(map, caller);
    let (caller_ns_uid, caller_ns_gid) = helper
        .caller_ns_ids(caller.uid, caller.gid)
        .unwrap_or((0, 0));
    let rootfs = dir.rootfs();
    let summary_path = dir.dir.join(".create-summary");
    let tpl = template.clone();
    let rootfs_in = rootfs.clone();
    let summary_in = summary_path.clone();
    let (fill_name, fill_dir, fill_rootfs) = (dir.name.clone(), dir.dir.clone(), rootfs.clone());
    in_helper_ns(&helper, move || {
        std::fs::create_dir(&rootfs_in)
            .map_err(|e| format!("cannot create {}: {e}", rootfs_in.display()))?;
        let mut template_lines = Vec::new();
        let mut summary = String::new();
        match &tpl {
            Template::Local {
                rootfs: tarball, ..
            } => {
                let s = image::unpack_tarball(
                    tarball,
                    &rootfs_in,
                    &image::UnpackOptions {
                        preserve_owners: true,
                    },
                )
                .map_err(|e| e.to_string())?;
                if let Some(line) = s.skipped_devices_line() {
                    summary = line;
                }
                image::download::meta::fill_templates(
                    &rootfs_in,
                    &fill,
                    &fill_name,
                    &fill_dir,
                    &fill_rootfs,
                )?;
            }
            Template::Download(_) => {
                return Err("the download template must be resolved to its tarball first".into())
            }
            Template::Busybox { busybox } => {
                let out = image::busybox_rootfs(&rootfs_in, busybox).map_err(|e| e.to_string())?;
                template_lines = out.config_lines;
            }
        }
        chown_tree_from(&rootfs_in, caller_ns_uid, caller_ns_gid)
            .map_err(|e| format!("cannot hand the rootfs to the container's root: {e}"))?;
        let mut out = summary;
        out.push('\u{1}');
        for (k, v) in template_lines {
            out.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::write(&summary_in, out).map_err(|e| e.to_string())?;
        Ok(0)
    })?;
    let written = std::fs::read_to_string(&summary_path).unwrap_or_default();
    let _ = std::fs::remove_file(&summary_path);
    let (summary, template_lines) = written.split_once('\u{1}').unwrap_or(("", ""));
    let mut config_text = base_text;
    if !template_lines.is_empty() {
        config_text.push_str("\n# from the template\n");
        config_text.push_str(template_lines);
    }
    if let Some(extra) = template_text {
        config_text.push_str(&format!("\n{template_header}\n"));
        config_text.push_str(&extra);
        config_text.push('\n');
    }
    config_text.push_str(&format!(
        "\n# the container\nlxc.rootfs.path = dir:{}\nlxc.uts.name = {}\n",
        rootfs.display(),
        dir.name
    ));
    std::fs::write(dir.config(), &config_text)
        .map_err(io_err(format!("cannot write {}", dir.config().display())))?;
    // The written config must load, or the container is useless.
    config::load(&dir.config())?;
    let mut notes = Vec::new();
    if !summary.is_empty() {
        notes.push(summary.to_string());
    }
    Ok(notes)
}

/// Hands every file under `root` that the helper created as the caller (container ids
/// `uid`/`gid`, see [`IdMap::with_caller`]) to the container's root (0:0), without
/// following links.
fn chown_tree_from(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.uid() == uid || meta.gid() == gid {
            let new_uid = if meta.uid() == uid { 0 } else { meta.uid() };
            let new_gid = if meta.gid() == gid { 0 } else { meta.gid() };
            std::os::unix::fs::lchown(&path, Some(new_uid), Some(new_gid))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Removes a container's directory from inside its mapped namespace, so that files of
/// every mapped id can go; never follows links, never leaves the file system.
pub fn remove_container_dir(
    dir: &ContainerDir,
    map: &IdMap,
    caller: &Caller,
) -> Result<(), ContainerError> {
    let meta = match std::fs::symlink_metadata(&dir.dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("cannot examine {}", dir.dir.display()))(e)),
    };
    if !meta.is_dir() {
        return Err(ContainerError::Unsupported(format!(
            "{} is not a directory (a symbolic link?); refusing to remove it",
            dir.dir.display()
        )));
    }
    let helper = helper_map(map, caller);
    let target = dir.dir.clone();
    in_helper_ns(&helper, move || {
        image::remove_tree(&target)
            .map(|()| 0)
            .map_err(|e| e.to_string())
    })
}
