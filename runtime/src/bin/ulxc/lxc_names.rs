//! Answering to LXC's command names: `lxc-start -n c1 -d` is `ulxc start -n c1 -d`.

use std::ffi::OsString;
use std::path::Path;

/// The LXC commands ulxc answers to, with the subcommand each becomes.
pub const LXC_COMMANDS: [(&str, &str); 11] = [
    ("lxc-create", "create"),
    ("lxc-start", "start"),
    ("lxc-stop", "stop"),
    ("lxc-attach", "attach"),
    ("lxc-ls", "ls"),
    ("lxc-destroy", "destroy"),
    ("lxc-execute", "execute"),
    ("lxc-wait", "wait"),
    ("lxc-info", "info"),
    ("lxc-checkconfig", "checkconfig"),
    ("lxc-usernsexec", "usernsexec"),
];

/// Rewrites the argument vector when the program was invoked under an LXC name.
pub fn rewrite(args: Vec<OsString>) -> Vec<OsString> {
    let Some(first) = args.first() else {
        return args;
    };
    let program = Path::new(first)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match LXC_COMMANDS.iter().find(|(lxc, _)| *lxc == program) {
        Some((lxc, sub)) => {
            let mut out = vec![OsString::from("ulxc"), OsString::from(*sub)];
            out.extend(args.into_iter().skip(1));
            let _ = lxc;
            out
        }
        None => args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn lxc_names_become_subcommands() {
        assert_eq!(
            rewrite(os(&["/usr/bin/lxc-start", "-n", "c1", "-d"])),
            os(&["ulxc", "start", "-n", "c1", "-d"])
        );
        assert_eq!(
            rewrite(os(&["lxc-ls", "--fancy"])),
            os(&["ulxc", "ls", "--fancy"])
        );
        assert_eq!(rewrite(os(&["ulxc", "ls"])), os(&["ulxc", "ls"]));
    }
}
