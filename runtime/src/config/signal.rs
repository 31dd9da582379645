//! Signal names as LXC's `lxc.signal.*` accepts them (`SIGPWR`, `PWR`, `SIGRTMIN+3`, `30`).

/// Classic signal names (without `SIG`) and numbers on Linux.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The signal number for `s`: a name with or without `SIG` (any case), `RTMIN+N`,
/// `RTMAX-N`, or a number from 1 to SIGRTMAX. `None` when it is none of these.
pub fn signal_from_name(s: &str) -> Option<i32> {
    let s = s.trim();
    let max = libc::SIGRTMAX();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=max).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Some(*n);
    }
    let min = libc::SIGRTMIN();
    let rt = |rest: &str, base: i32, sign: i32| -> Option<i32> {
        let n = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().ok()?
        };
        let v = base + sign * n;
        (min..=max).contains(&v).then_some(v)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            Some(r) if !r.is_empty() => rt(r, min, 1),
            _ if rest.is_empty() => Some(min),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(r) if !r.is_empty() => rt(r, max, -1),
            _ if rest.is_empty() => Some(max),
            _ => None,
        };
    }
    None
}
