//! The QEMU command line, built by a pure function from a [`VmSpec`], the decided
//! accelerator, the chosen host port and the VM's file paths — unit-tested without QEMU.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use super::{Accel, GuestFwd, VmSpec};

/// The QEMU binary the harness runs.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Id of the virtio NIC device (the name QMP `set_link` takes).
pub const NIC_ID: &str = "nic0";

/// Everything besides the spec that the command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPaths {
    /// The per-VM qcow2 overlay over the read-only base.
    pub overlay: PathBuf,
    /// Serial console log file.
    pub serial_log: PathBuf,
    /// QMP unix socket.
    pub qmp_socket: PathBuf,
}

/// How this launch starts the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// Direct kernel boot.
    Cold,
    /// Wait for `migrate-incoming` over QMP (`-incoming defer`): a restore.
    Incoming,
}

/// Adds `panic=-1` to a kernel command line unless a `panic=` is already there.
pub fn kernel_cmdline(cmdline: &str) -> String {
    let mut out = cmdline.trim().to_string();
    if !out.split_whitespace().any(|w| w.starts_with("panic=")) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("panic=-1");
    }
    out
}

/// The `-netdev user,...` value: restricted user networking, SSH forwarded from
/// `127.0.0.1:ssh_port`, plus one `guestfwd` per entry. Each guest connection starts its
/// own `busybox nc` to the host service (`-cmd:`): a `tcp:` target would be one chardev
/// connection opened when QEMU starts, good for a single guest connection only.
pub fn netdev_arg(ssh_port: u16, guestfwds: &[GuestFwd]) -> String {
    let mut s = format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22");
    for fwd in guestfwds {
        let g: SocketAddrV4 = fwd.guest_addr;
        s.push_str(&format!(
            ",guestfwd=tcp:{}:{}-cmd:busybox nc {} {}",
            g.ip(),
            g.port(),
            fwd.host.ip(),
            fwd.host.port()
        ));
    }
    s
}

/// Escapes a value for a QEMU option list (a comma is doubled).
fn opt_escape(path: &std::path::Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Builds QEMU's argv (without the binary name).
pub fn build_args(
    spec: &VmSpec,
    accel: Accel,
    ssh_port: u16,
    paths: &LaunchPaths,
    mode: BootMode,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-name", &spec.name]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-machine", "q35,vmport=off,smbus=off,sata=off"]);
    match accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => push(&["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]),
    }
    push(&["-smp", &spec.cpus.max(1).to_string()]);
    push(&["-m", &format!("{}M", spec.memory_mib.max(128))]);
    push(&["-kernel", &spec.kernel.to_string_lossy()]);
    if let Some(initrd) = &spec.initrd {
        push(&["-initrd", &initrd.to_string_lossy()]);
    }
    push(&["-append", &kernel_cmdline(&spec.cmdline), "-no-reboot"]);
    push(&[
        "-drive",
        &format!(
            "file={},if=none,id=disk0,format=qcow2,cache=unsafe,discard=unmap",
            opt_escape(&paths.overlay)
        ),
        "-device",
        "virtio-blk-pci,drive=disk0",
    ]);
    push(&["-netdev", &netdev_arg(ssh_port, &spec.guestfwds)]);
    push(&[
        "-device",
        &format!("virtio-net-pci,netdev=net0,id={NIC_ID}"),
    ]);
    push(&["-device", "virtio-rng-pci"]);
    push(&[
        "-chardev",
        &format!(
            "file,id=serial0,path={},append=on",
            opt_escape(&paths.serial_log)
        ),
        "-serial",
        "chardev:serial0",
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", opt_escape(&paths.qmp_socket)),
    ]);
    if mode == BootMode::Incoming {
        push(&["-incoming", "defer"]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::Timeouts;
    use std::net::{Ipv4Addr, SocketAddr};

    fn spec() -> VmSpec {
        VmSpec {
            name: "t1".into(),
            disk_base: "/img/disk.qcow2".into(),
            kernel: "/img/vmlinuz".into(),
            initrd: Some("/img/initrd.img".into()),
            cmdline: "root=/dev/vda console=ttyS0".into(),
            memory_mib: 1024,
            cpus: 2,
            accel: None,
            guestfwds: vec![GuestFwd {
                guest_addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 80),
                host: SocketAddr::from(([127, 0, 0, 1], 8123)),
            }],
            work_dir: "/w".into(),
            ssh_private_key: "/img/id".into(),
            snapshot_cache: None,
            timeouts: Timeouts::default(),
        }
    }

    fn paths() -> LaunchPaths {
        LaunchPaths {
            overlay: "/w/overlay.qcow2".into(),
            serial_log: "/w/serial.log".into(),
            qmp_socket: "/w/qmp.sock".into(),
        }
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn tcg_command_line() {
        let args = build_args(&spec(), Accel::Tcg, 2222, &paths(), BootMode::Cold);
        assert_eq!(value_of(&args, "-name"), ["t1"]);
        assert_eq!(value_of(&args, "-accel"), ["tcg,thread=multi,tb-size=256"]);
        assert_eq!(value_of(&args, "-cpu"), ["max"]);
        assert_eq!(value_of(&args, "-m"), ["1024M"]);
        assert_eq!(value_of(&args, "-smp"), ["2"]);
        assert_eq!(value_of(&args, "-kernel"), ["/img/vmlinuz"]);
        assert_eq!(value_of(&args, "-initrd"), ["/img/initrd.img"]);
        assert_eq!(
            value_of(&args, "-append"),
            ["root=/dev/vda console=ttyS0 panic=-1"]
        );
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(args.iter().any(|a| a == "-nodefaults"));
        assert_eq!(
            value_of(&args, "-netdev"),
            ["user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd=tcp:10.0.2.100:80-cmd:busybox nc 127.0.0.1 8123"]
        );
        assert_eq!(
            value_of(&args, "-qmp"),
            ["unix:/w/qmp.sock,server=on,wait=off"]
        );
        assert!(value_of(&args, "-drive")[0].starts_with("file=/w/overlay.qcow2,"));
        assert_eq!(
            value_of(&args, "-chardev"),
            ["file,id=serial0,path=/w/serial.log,append=on"]
        );
        assert!(value_of(&args, "-device").contains(&"virtio-net-pci,netdev=net0,id=nic0"));
        assert!(!args.iter().any(|a| a == "-incoming"));
    }

    #[test]
    fn kvm_and_incoming() {
        let mut s = spec();
        s.initrd = None;
        s.guestfwds.clear();
        let args = build_args(&s, Accel::Kvm, 40000, &paths(), BootMode::Incoming);
        assert_eq!(value_of(&args, "-accel"), ["kvm"]);
        assert_eq!(value_of(&args, "-cpu"), ["host"]);
        assert!(value_of(&args, "-initrd").is_empty());
        assert_eq!(value_of(&args, "-incoming"), ["defer"]);
        assert_eq!(
            value_of(&args, "-netdev"),
            ["user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40000-:22"]
        );
    }

    #[test]
    fn cmdline_keeps_an_explicit_panic_setting() {
        assert_eq!(kernel_cmdline("quiet panic=10"), "quiet panic=10");
        assert_eq!(kernel_cmdline(""), "panic=-1");
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let mut p = paths();
        p.overlay = "/w,x/overlay.qcow2".into();
        let args = build_args(&spec(), Accel::Tcg, 1, &p, BootMode::Cold);
        assert!(value_of(&args, "-drive")[0].starts_with("file=/w,,x/overlay.qcow2,"));
    }
}
