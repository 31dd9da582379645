//! Building an image: mmdebstrap the guest, bake in container root filesystems, configure
//! boot, network, sshd and users, copy the kernels out, make the ext4 disk and convert it
//! to qcow2 — in a temporary directory renamed into the cache only when complete.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cache::{self, CacheLock, COMPLETE_MARKER};
use super::manifest::{Manifest, ManifestContainerRootfs, ManifestKernel};
use super::mirror::detect_mirror;
use super::progress::Progress;
use super::recipe::{Recipe, BUILD_FORMAT_VERSION, GUEST_ROOTFS_DIR};
use super::tool::BuildLog;
use super::{BuildOptions, BuiltImage, ImageError};

/// File name of the qcow2 base disk in an image directory.
pub const DISK_FILE: &str = "disk.qcow2";
/// File name of the harness's SSH private key in an image directory.
pub const KEY_FILE: &str = "id_ed25519";

/// Builds `recipe` into the cache, or returns the cached image at once.
///
/// Blocking (minutes for a fresh build; call it from `spawn_blocking`). Two processes
/// building the same recipe share one build through a file lock. Needs root for a fresh
/// build; a cached image is returned to any user who can read the cache.
pub fn build(recipe: &Recipe, opts: &BuildOptions) -> Result<BuiltImage, ImageError> {
    let dir = opts.images_dir().join(recipe.cache_name());
    if cache::is_complete(&dir) {
        tracing::debug!(?dir, "image cached");
        return BuiltImage::from_dir(&dir);
    }
    let mut progress = Progress::new(&recipe.cache_name(), opts.progress);
    let _lock = match CacheLock::try_acquire(&dir)? {
        Some(lock) => lock,
        None => {
            progress.phase("waiting", "another process is building this image");
            CacheLock::acquire(&dir)?
        }
    };
    if cache::is_complete(&dir) {
        tracing::info!(?dir, "image was built by another process meanwhile");
        progress.finish("built by another process");
        return BuiltImage::from_dir(&dir);
    }
    if !is_root() {
        return Err(ImageError::NotRoot {
            recipe: recipe.name.clone(),
        });
    }
    // Leftovers of an interrupted build: an incomplete directory, a stale temp dir.
    cache::remove_tree(&dir)?;
    let tmp = cache::tmp_path(&dir);
    cache::remove_tree(&tmp)?;
    mkdir(&tmp)?;
    let mut log = BuildLog::create(&cache::log_path(&dir))?;
    let tools_tmp = tmp.join("tmp");
    mkdir(&tools_tmp)?;
    log.set_tmpdir(&tools_tmp);
    let started = Instant::now();
    let result = build_into(recipe, &tmp, &log, &mut progress, started);
    match result {
        Ok(manifest) => {
            cache::remove_tree(&tools_tmp)?;
            log.rename(&tmp.join("build.log"))?;
            std::fs::write(
                tmp.join(COMPLETE_MARKER),
                format!("{}\n", manifest.built_at),
            )
            .map_err(|source| io("write", &tmp.join(COMPLETE_MARKER), source))?;
            std::fs::rename(&tmp, &dir).map_err(|source| io("rename into place", &dir, source))?;
            progress.finish(&format!(
                "built in {:.0} s: {}",
                manifest.build_seconds,
                dir.display()
            ));
            Ok(BuiltImage::from_manifest(&dir, manifest))
        }
        Err(err) => {
            progress.finish(&format!("build failed; log: {}", log.path().display()));
            log.note(&format!("\nbuild failed: {err}"));
            if let Err(cleanup) = cache::remove_tree(&tmp) {
                tracing::error!(%cleanup, "could not remove the temporary build directory");
            }
            Err(err)
        }
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn build_into(
    recipe: &Recipe,
    tmp: &Path,
    log: &BuildLog,
    progress: &mut Progress,
    started: Instant,
) -> Result<Manifest, ImageError> {
    progress.phase("mirror", "reading the host's apt sources");
    preflight(recipe)?;
    let mirror = detect_mirror(Path::new("/"), &recipe.suite)?;
    log.note(&format!("recipe {} hash {}", recipe.name, recipe.hash()));
    log.note(&format!("mirror {mirror}"));
    let rootfs = tmp.join("rootfs");

    progress.phase("mmdebstrap", &format!("{} from {mirror}", recipe.suite));
    let stage = tmp.join("stage");
    write_initramfs_stage(recipe, &stage)?;
    log.run(
        "mmdebstrap",
        "mmdebstrap",
        mmdebstrap_args(recipe, &mirror, &stage, &rootfs),
    )?;

    let mut rootfs_entries = Vec::new();
    for c in &recipe.container_rootfs {
        progress.phase("container rootfs", &format!("{} ({})", c.name, c.suite));
        let out = guest(&rootfs, &c.guest_path());
        mkdir(out.parent().unwrap_or(&rootfs))?;
        let mut args: Vec<OsString> = vec![
            "--mode=root".into(),
            format!("--variant={}", c.variant).into(),
            "--aptopt=Acquire::Languages \"none\"".into(),
        ];
        if !c.packages.is_empty() {
            args.push(format!("--include={}", c.packages.join(",")).into());
        }
        args.extend([
            OsString::from(&c.suite),
            out.clone().into(),
            format!("deb {mirror} {} main", c.suite).into(),
        ]);
        log.run("mmdebstrap", "mmdebstrap", args)?;
        rootfs_entries.push(ManifestContainerRootfs {
            name: c.name.clone(),
            guest_path: c.guest_path(),
            size: std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
        });
    }

    progress.phase("configure", "network, sshd, users, keys");
    let public_key = configure(recipe, &rootfs, tmp, log)?;

    progress.phase("kernel", "copying kernels and initrds");
    let kernels = copy_kernels(recipe, &rootfs, tmp, log)?;
    let packages = installed_packages(&rootfs, log)?;

    progress.phase("mkfs", &format!("ext4 {} MiB", recipe.disk_size >> 20));
    let raw = tmp.join("disk.raw");
    let f = std::fs::File::create(&raw).map_err(|s| io("create", &raw, s))?;
    f.set_len(recipe.disk_size)
        .map_err(|s| io("size", &raw, s))?;
    drop(f);
    log.run(
        "mkfs.ext4",
        "e2fsprogs",
        [
            OsString::from("-q"),
            "-F".into(),
            "-L".into(),
            "root".into(),
            "-E".into(),
            "nodiscard".into(),
            "-d".into(),
            rootfs.clone().into(),
            raw.clone().into(),
        ],
    )?;
    cache::remove_tree(&rootfs)?;
    cache::remove_tree(&stage)?;

    progress.phase("qcow2", "converting the disk");
    let disk = tmp.join(DISK_FILE);
    log.run(
        "qemu-img",
        "qemu-utils",
        [
            OsString::from("convert"),
            "-f".into(),
            "raw".into(),
            "-O".into(),
            "qcow2".into(),
            raw.clone().into(),
            disk.clone().into(),
        ],
    )?;
    std::fs::remove_file(&raw).map_err(|s| io("remove", &raw, s))?;
    set_mode(&disk, 0o444)?;

    let manifest = Manifest {
        format_version: BUILD_FORMAT_VERSION,
        recipe_name: recipe.name.clone(),
        recipe_hash: recipe.hash(),
        recipe: recipe.clone(),
        built_at: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        build_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        mirror,
        disk: DISK_FILE.into(),
        disk_size: recipe.disk_size,
        kernels,
        ssh_private_key: KEY_FILE.into(),
        ssh_public_key: public_key,
        users: recipe.login_users(),
        container_rootfs: rootfs_entries,
        packages,
    };
    manifest.write(tmp)?;
    Ok(manifest)
}

/// Fails early, naming the Debian package, when a tool the build needs is missing.
fn preflight(recipe: &Recipe) -> Result<(), ImageError> {
    let mut needed = vec![
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
        ("chroot", "coreutils"),
    ];
    if !recipe.container_rootfs.is_empty() {
        needed.push(("zstd", "zstd"));
    }
    for (tool, package) in needed {
        if find_in_path(tool).is_none() {
            return Err(ImageError::ToolMissing {
                tool: tool.into(),
                package: package.into(),
            });
        }
    }
    Ok(())
}

/// The first executable `name` in `$PATH` (plus the sbin directories root has).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The mmdebstrap command line for the guest root filesystem.
pub fn mmdebstrap_args(
    recipe: &Recipe,
    mirror: &str,
    stage: &Path,
    rootfs: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--mode=root".into(),
        format!("--variant={}", recipe.variant).into(),
        "--components=main".into(),
        "--aptopt=Acquire::Languages \"none\"".into(),
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
        "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
        "--dpkgopt=path-exclude=/usr/share/info/*".into(),
        format!("--include={}", recipe.all_packages().join(",")).into(),
        format!("--essential-hook=sync-in {} /", stage.display()).into(),
        OsString::from(&recipe.suite),
        rootfs.into(),
        format!("deb {mirror} {} main", recipe.suite).into(),
    ];
    for s in recipe.extra_suites() {
        args.push(format!("deb {mirror} {s} main").into());
    }
    args
}

/// Files synced into the guest before the kernels are installed: a small initrd
/// (`MODULES=list`) when a kernel names its initrd modules.
fn write_initramfs_stage(recipe: &Recipe, stage: &Path) -> Result<(), ImageError> {
    mkdir(stage)?;
    let mut modules: Vec<&str> = Vec::new();
    for k in recipe.kernels.iter().filter(|k| k.initrd) {
        for m in &k.initrd_modules {
            if !modules.contains(&m.as_str()) {
                modules.push(m);
            }
        }
    }
    if !modules.is_empty() {
        write(
            &stage.join("etc/initramfs-tools/conf.d/ulxc-harness.conf"),
            "# written by ulxc-harness: only the modules the VM needs to mount its root\nMODULES=list\n",
        )?;
        write(
            &stage.join("usr/share/initramfs-tools/modules.d/ulxc-harness"),
            &(modules.join("\n") + "\n"),
        )?;
    }
    Ok(())
}

/// Configures the guest root filesystem; returns the harness's SSH public key line.
fn configure(
    recipe: &Recipe,
    rootfs: &Path,
    tmp: &Path,
    log: &BuildLog,
) -> Result<String, ImageError> {
    let chroot = |args: &[&str]| {
        let mut v: Vec<OsString> = vec![rootfs.into()];
        v.extend(args.iter().map(OsString::from));
        log.run("chroot", "coreutils", v)
    };
    let h = &recipe.hostname;
    write(&guest(rootfs, "/etc/hostname"), &format!("{h}\n"))?;
    write(
        &guest(rootfs, "/etc/hosts"),
        &format!("127.0.0.1 localhost\n127.0.1.1 {h}\n::1 localhost ip6-localhost ip6-loopback\n"),
    )?;
    write(
        &guest(rootfs, "/etc/fstab"),
        "# written by ulxc-harness\n/dev/vda / ext4 defaults 0 1\n",
    )?;
    // A fixed machine id: an empty one makes every boot a "first boot" (slow presets).
    write(
        &guest(rootfs, "/etc/machine-id"),
        &format!("{}\n", &recipe.hash()[..32]),
    )?;
    write(
        &guest(rootfs, "/etc/systemd/network/20-ulxc-harness.network"),
        "# written by ulxc-harness: DHCP on the first NIC (QEMU user net gives 10.0.2.15)\n\
         [Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )?;
    write(
        &guest(rootfs, "/etc/systemd/journald.conf.d/ulxc-harness.conf"),
        "[Journal]\nStorage=volatile\nForwardToConsole=no\n",
    )?;
    write(
        &guest(rootfs, "/etc/ssh/sshd_config.d/ulxc-harness.conf"),
        "# written by ulxc-harness\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nPrintMotd no\nPrintLastLog no\n",
    )?;
    // Every login under TCG pays for each process it starts: no motd scripts (`uname`), no
    // mail check; and sshd serves each connection from a fork of itself instead of
    // re-executing (`-r`: no dynamic linking and crypto set-up per login).
    let pam_sshd = guest(rootfs, "/etc/pam.d/sshd");
    if pam_sshd.exists() {
        write(&pam_sshd, &lean_pam_sshd(&read(&pam_sshd)?))?;
    }
    // Root's SSH logins (the harness's readiness check, clock set and most steps) skip
    // pam_systemd: no logind session and D-Bus round trips per login; `user` keeps its
    // session (XDG_RUNTIME_DIR, `systemd-run --user`).
    let common_session = guest(rootfs, "/etc/pam.d/common-session");
    if common_session.exists() {
        write(
            &common_session,
            &root_ssh_skips_pam_systemd(&read(&common_session)?),
        )?;
    }
    write(
        &guest(rootfs, "/etc/default/ssh"),
        "# written by ulxc-harness: no re-exec per connection (faster logins under TCG)\nSSHD_OPTS=-r\n",
    )?;
    chroot(&["systemctl", "enable", "systemd-networkd.service"])?;
    if recipe.sshd_early {
        let packaged = read(&guest(rootfs, "/lib/systemd/system/ssh.service"))?;
        write(
            &guest(rootfs, "/etc/systemd/system/ssh.service"),
            &early_sshd_unit(&packaged),
        )?;
    }
    if !recipe.blacklist_modules.is_empty() {
        let text: String = recipe
            .blacklist_modules
            .iter()
            .map(|m| format!("blacklist {m}\n"))
            .collect();
        write(
            &guest(rootfs, "/etc/modprobe.d/ulxc-harness-blacklist.conf"),
            &format!("# written by ulxc-harness: not needed in a test VM, slow to load under TCG\n{text}"),
        )?;
    }
    if !recipe.mask_units.is_empty() {
        let mut args = vec!["systemctl", "mask"];
        args.extend(recipe.mask_units.iter().map(String::as_str));
        chroot(&args)?;
    }
    if !guest(rootfs, "/etc/ssh/ssh_host_ed25519_key").exists() {
        chroot(&["ssh-keygen", "-A"])?;
    }
    chroot(&["passwd", "--lock", "root"])?;

    // The harness's client key, generated with the guest's own ssh-keygen.
    let inside = "/root/ulxc-harness-key";
    chroot(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "ulxc-harness",
        "-f",
        inside,
    ])?;
    let private = tmp.join(KEY_FILE);
    let public = tmp.join(format!("{KEY_FILE}.pub"));
    move_file(&guest(rootfs, inside), &private)?;
    move_file(&guest(rootfs, &format!("{inside}.pub")), &public)?;
    set_mode(&private, 0o600)?;
    let public_key = read(&public)?.trim().to_owned();

    install_authorized_key(rootfs, "/root", 0, 0, &public_key)?;
    let mut subuid = String::new();
    for u in &recipe.users {
        chroot(&["useradd", "--create-home", "--shell", &u.shell, &u.name])?;
        let (uid, gid, home) =
            passwd_entry(rootfs, &u.name)?.ok_or_else(|| ImageError::BadRootfs {
                message: format!(
                    "user {} is missing from the guest's /etc/passwd after useradd",
                    u.name
                ),
                log: log.path().to_owned(),
            })?;
        set_mode(&guest(rootfs, &home), 0o755)?;
        install_authorized_key(rootfs, &home, uid, gid, &public_key)?;
        if let Some(r) = u.subids {
            subuid.push_str(&format!("{}:{}:{}\n", u.name, r.start, r.count));
        }
        if u.linger {
            write(
                &guest(rootfs, &format!("/var/lib/systemd/linger/{}", u.name)),
                "",
            )?;
        }
    }
    // useradd may have added its own ranges: the recipe's ranges are the whole truth.
    for f in ["/etc/subuid", "/etc/subgid"] {
        write(&guest(rootfs, f), &subuid)?;
        set_mode(&guest(rootfs, f), 0o644)?;
    }
    mkdir(&guest(rootfs, GUEST_ROOTFS_DIR))?;
    Ok(public_key)
}

/// Debian's `/etc/pam.d/sshd` without `pam_motd` and `pam_mail`.
fn lean_pam_sshd(packaged: &str) -> String {
    packaged
        .lines()
        .filter(|l| !(l.contains("pam_motd.so") || l.contains("pam_mail.so")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Debian's `/etc/pam.d/common-session` with `pam_systemd` skipped for root over sshd.
fn root_ssh_skips_pam_systemd(packaged: &str) -> String {
    let mut out = String::new();
    for line in packaged.lines() {
        if line.starts_with("session") && line.contains("pam_systemd.so") {
            out.push_str("# ulxc-harness: no logind session for root over SSH (faster logins)\n");
            out.push_str(
                "session [success=1 default=ignore] pam_succeed_if.so quiet service = sshd uid eq 0\n",
            );
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Debian's `ssh.service` minus the `network.target` ordering and the `sshd -t` check.
fn early_sshd_unit(packaged: &str) -> String {
    let mut out = String::from(
        "# written by ulxc-harness from /lib/systemd/system/ssh.service: started without\n\
         # waiting for network.target and without the sshd -t pre-check (faster boot)\n",
    );
    for line in packaged.lines() {
        if line.starts_with("ExecStartPre=") {
            continue;
        }
        if let Some(units) = line.strip_prefix("After=") {
            let kept: Vec<&str> = units
                .split_whitespace()
                .filter(|u| *u != "network.target")
                .collect();
            if !kept.is_empty() {
                out.push_str(&format!("After={}\n", kept.join(" ")));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn install_authorized_key(
    rootfs: &Path,
    home: &str,
    uid: u32,
    gid: u32,
    key: &str,
) -> Result<(), ImageError> {
    let ssh = guest(rootfs, &format!("{home}/.ssh"));
    mkdir(&ssh)?;
    let keys = ssh.join("authorized_keys");
    write(&keys, &format!("{key}\n"))?;
    set_mode(&ssh, 0o700)?;
    set_mode(&keys, 0o600)?;
    for p in [&ssh, &keys] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|s| io("chown", p, s))?;
    }
    Ok(())
}

/// uid, gid and home of `name` in the guest's /etc/passwd.
fn passwd_entry(rootfs: &Path, name: &str) -> Result<Option<(u32, u32, String)>, ImageError> {
    let text = read(&guest(rootfs, "/etc/passwd"))?;
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 6 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_owned()))
        } else {
            None
        }
    }))
}

/// Finds each recipe kernel's release and copies vmlinuz and initrd out of /boot.
fn copy_kernels(
    recipe: &Recipe,
    rootfs: &Path,
    tmp: &Path,
    log: &BuildLog,
) -> Result<Vec<ManifestKernel>, ImageError> {
    let mut out = Vec::new();
    for k in &recipe.kernels {
        let (image_package, version) = resolve_kernel(rootfs, &k.package, log, 0)?.ok_or_else(|| {
            ImageError::BadRootfs {
                message: format!(
                    "kernel {}: package {} installed no /boot/vmlinuz-* (directly or through a linux-image-* dependency)",
                    k.name, k.package
                ),
                log: log.path().to_owned(),
            }
        })?;
        let kdir = tmp.join("kernels").join(&k.name);
        mkdir(&kdir)?;
        let vmlinuz_rel = PathBuf::from(format!("kernels/{}/vmlinuz", k.name));
        copy(
            &guest(rootfs, &format!("/boot/vmlinuz-{version}")),
            &tmp.join(&vmlinuz_rel),
        )?;
        let initrd_rel = if k.initrd {
            let rel = PathBuf::from(format!("kernels/{}/initrd.img", k.name));
            let src = guest(rootfs, &format!("/boot/initrd.img-{version}"));
            if !src.exists() {
                return Err(ImageError::BadRootfs {
                    message: format!(
                        "kernel {}: {} is missing; is initramfs-tools installed? (or set initrd = false)",
                        k.name,
                        src.display()
                    ),
                    log: log.path().to_owned(),
                });
            }
            copy(&src, &tmp.join(&rel))?;
            Some(rel)
        } else {
            None
        };
        out.push(ManifestKernel {
            name: k.name.clone(),
            package: k.package.clone(),
            image_package,
            version,
            vmlinuz: vmlinuz_rel,
            initrd: initrd_rel,
            cmdline: format!("root=/dev/vda {}", k.cmdline),
        });
    }
    Ok(out)
}

/// Follows a kernel (meta) package to the package that owns `/boot/vmlinuz-<release>`.
fn resolve_kernel(
    rootfs: &Path,
    package: &str,
    log: &BuildLog,
    depth: u32,
) -> Result<Option<(String, String)>, ImageError> {
    let package = package.split('/').next().unwrap_or(package);
    let root = OsString::from(rootfs);
    let files = log.output(
        "chroot",
        "coreutils",
        [
            root.clone(),
            "dpkg-query".into(),
            "-L".into(),
            package.into(),
        ],
    )?;
    if let Some(v) = files.lines().find_map(|l| l.strip_prefix("/boot/vmlinuz-")) {
        return Ok(Some((package.to_owned(), v.to_owned())));
    }
    if depth >= 3 {
        return Ok(None);
    }
    let depends = log.output(
        "chroot",
        "coreutils",
        [
            root,
            "dpkg-query".into(),
            "-W".into(),
            "-f=${Depends}".into(),
            package.into(),
        ],
    )?;
    for dep in depends.split([',', '|']) {
        let name = dep.split_whitespace().next().unwrap_or("");
        if name.starts_with("linux-image-") && name != package {
            if let Some(found) = resolve_kernel(rootfs, name, log, depth + 1)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

fn installed_packages(
    rootfs: &Path,
    log: &BuildLog,
) -> Result<BTreeMap<String, String>, ImageError> {
    let text = log.output(
        "chroot",
        "coreutils",
        [
            OsString::from(rootfs),
            "dpkg-query".into(),
            "-W".into(),
            "-f=${Package}\t${Version}\n".into(),
        ],
    )?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, v)| (p.to_owned(), v.to_owned()))
        .collect())
}

/// `rootfs` + an absolute guest path.
fn guest(rootfs: &Path, path: &str) -> PathBuf {
    rootfs.join(path.trim_start_matches('/'))
}

fn io(what: &str, path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        what: what.into(),
        path: path.to_owned(),
        source,
    }
}

fn mkdir(p: &Path) -> Result<(), ImageError> {
    std::fs::create_dir_all(p).map_err(|s| io("create directory", p, s))
}

fn write(p: &Path, text: &str) -> Result<(), ImageError> {
    if let Some(parent) = p.parent() {
        mkdir(parent)?;
    }
    // Never write through a symlink planted in the guest tree (e.g. /etc/resolv.conf style).
    if std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        std::fs::remove_file(p).map_err(|s| io("remove symlink", p, s))?;
    }
    std::fs::write(p, text).map_err(|s| io("write", p, s))
}

fn read(p: &Path) -> Result<String, ImageError> {
    std::fs::read_to_string(p).map_err(|s| io("read", p, s))
}

fn copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to).map_err(|s| io("copy", from, s))?;
    set_mode(to, 0o644)
}

fn move_file(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to).map_err(|s| io("copy", from, s))?;
    std::fs::remove_file(from).map_err(|s| io("remove", from, s))
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ImageError> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|s| io("chmod", p, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::parse_recipe;

    fn recipe(extra: &str) -> Recipe {
        parse_recipe(
            &format!(
                "packages = [\"systemd\"]\n[[kernels]]\nname = \"cloud\"\npackage = \"linux-image-cloud-amd64\"\ninitrd_modules = [\"virtio_pci\", \"virtio_blk\"]\n{extra}"
            ),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn mmdebstrap_gets_mirror_suites_and_packages() {
        let r = recipe("[[kernels]]\nname = \"bpo\"\npackage = \"linux-image-amd64\"\nsuite = \"bookworm-backports\"\n");
        let args: Vec<String> = mmdebstrap_args(
            &r,
            "http://m.example/debian",
            Path::new("/s"),
            Path::new("/r"),
        )
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
        assert!(
            args.contains(
                &"--include=systemd,linux-image-cloud-amd64,linux-image-amd64/bookworm-backports"
                    .to_owned()
            ),
            "{args:?}"
        );
        assert!(args.contains(&"deb http://m.example/debian bookworm main".to_owned()));
        assert!(args.contains(&"deb http://m.example/debian bookworm-backports main".to_owned()));
        assert!(args.contains(&"--essential-hook=sync-in /s /".to_owned()));
        let suite_at = args.iter().position(|a| a == "bookworm").unwrap();
        assert_eq!(args[suite_at + 1], "/r");
    }

    #[test]
    fn small_initrd_is_staged_only_when_modules_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_initramfs_stage(&recipe(""), dir.path()).unwrap();
        let list = std::fs::read_to_string(
            dir.path()
                .join("usr/share/initramfs-tools/modules.d/ulxc-harness"),
        )
        .unwrap();
        assert_eq!(list, "virtio_pci\nvirtio_blk\n");
        let empty = tempfile::tempdir().unwrap();
        let r = parse_recipe(
            "[[kernels]]\nname = \"k\"\npackage = \"p\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        write_initramfs_stage(&r, empty.path()).unwrap();
        assert!(!empty.path().join("etc/initramfs-tools").exists());
    }

    #[test]
    fn lean_pam_sshd_drops_motd_and_mail() {
        let pam = "@include common-auth\nsession    optional     pam_motd.so  motd=/run/motd.dynamic\nsession    optional     pam_motd.so noupdate\nsession    optional     pam_mail.so standard noenv # [1]\n@include common-session\n";
        assert_eq!(
            lean_pam_sshd(pam),
            "@include common-auth\n@include common-session\n"
        );
    }

    #[test]
    fn root_over_ssh_skips_only_pam_systemd() {
        let pam = "session required pam_unix.so\nsession optional pam_systemd.so\n";
        assert_eq!(
            root_ssh_skips_pam_systemd(pam),
            "session required pam_unix.so\n# ulxc-harness: no logind session for root over SSH (faster logins)\nsession [success=1 default=ignore] pam_succeed_if.so quiet service = sshd uid eq 0\nsession optional pam_systemd.so\n"
        );
    }

    #[test]
    fn early_sshd_drops_network_ordering_and_precheck() {
        let unit = "[Unit]\nDescription=OpenBSD Secure Shell server\nAfter=network.target auditd.service\n\n[Service]\nExecStartPre=/usr/sbin/sshd -t\nExecStart=/usr/sbin/sshd -D $SSHD_OPTS\n\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n";
        let early = early_sshd_unit(unit);
        assert!(early.contains("After=auditd.service\n"), "{early}");
        assert!(!early.contains("network.target") || early.starts_with("# written"));
        assert!(!early.contains("ExecStartPre"), "{early}");
        assert!(early.contains("ExecStart=/usr/sbin/sshd -D $SSHD_OPTS\n"));
        assert!(early.contains("Alias=sshd.service\n"));
    }

    #[test]
    fn tools_are_found_in_path() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("ulxc-no-such-tool").is_none());
    }

    #[test]
    fn passwd_entries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n",
        )
        .unwrap();
        assert_eq!(
            passwd_entry(dir.path(), "user").unwrap(),
            Some((1000, 1000, "/home/user".into()))
        );
        assert_eq!(passwd_entry(dir.path(), "nobody").unwrap(), None);
    }

    #[test]
    fn write_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let link = dir.path().join("rootfs/etc/hostname");
        mkdir(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        write(&link, "vm\n").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "vm\n");
    }

    #[test]
    fn cached_image_is_returned_without_building() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            cache_dir: tmp.path().to_owned(),
            progress: false,
        };
        let r = recipe("");
        let dir = opts.images_dir().join(r.cache_name());
        let mut m = crate::image::manifest::tests::sample();
        m.recipe_hash = r.hash();
        std::fs::create_dir_all(&dir).unwrap();
        m.write(&dir).unwrap();
        std::fs::write(dir.join(COMPLETE_MARKER), "").unwrap();
        let t = Instant::now();
        let img = build(&r, &opts).unwrap();
        assert!(t.elapsed().as_millis() < 500);
        assert_eq!(img.hash, r.hash());
        assert_eq!(img.dir, dir);
    }

    /// Builds the real workspace image into the default cache (root, network to the
    /// host's Debian mirror, several minutes): run on purpose with
    /// `cargo test -p ulxc-harness --lib image::build::tests::real_bookworm_image -- --ignored --nocapture`.
    #[test]
    #[ignore = "builds the real Debian image: needs root and the host's Debian mirror"]
    fn real_bookworm_image() {
        let r = crate::image::load_recipe(&crate::image::recipe_path("bookworm")).unwrap();
        let opts = BuildOptions::from_env();
        let img = build(&r, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(cache::is_complete(&img.dir));
        assert!(img.disk.metadata().unwrap().len() > 1 << 20);
        let k = img.kernel(Some("cloud")).unwrap();
        assert!(k.vmlinuz.metadata().unwrap().len() > 1 << 20);
        assert!(k.initrd.as_ref().unwrap().exists());
        assert!(k.cmdline.starts_with("root=/dev/vda ") && k.cmdline.contains("console=ttyS0"));
        assert_eq!(
            img.ssh_private_key.metadata().unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(img.users, vec!["root", "user"]);
        for p in [
            "lxc",
            "busybox-static",
            "openssh-server",
            "uidmap",
            "systemd-sysv",
        ] {
            assert!(
                img.manifest.packages.contains_key(p),
                "{p} missing from the image"
            );
        }
        assert_eq!(
            img.manifest.container_rootfs[0].guest_path,
            "/var/lib/ulxc-harness/rootfs/bookworm.tar.zst"
        );
        assert!(img.manifest.container_rootfs[0].size > 1 << 20);
        // A second build is the cache.
        let t = Instant::now();
        assert_eq!(build(&r, &opts).unwrap().hash, img.hash);
        assert!(t.elapsed().as_millis() < 500);
        eprintln!(
            "image {} kernel {} in {:.0} s",
            img.dir.display(),
            k.version,
            img.manifest.build_seconds
        );
    }
}
