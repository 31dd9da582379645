//! Capabilities: names and numbers, and dropping from the bounding set.

use nix::errno::Errno;

/// Linux capability names (without `CAP_`, lower-case as LXC writes them) by number.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The number of a capability name (`sys_admin`, `CAP_SYS_ADMIN`, `SYS_ADMIN`), if known.
pub fn capability_number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    CAPABILITY_NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|i| u32::try_from(i).ok())
}

/// The highest capability the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops capability `cap` from the bounding set of this process (and so from every
/// program it executes). A capability the kernel does not know is ignored.
pub fn drop_bounding(cap: u32) -> Result<(), Errno> {
    if cap > last_capability() {
        return Ok(());
    }
    // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
