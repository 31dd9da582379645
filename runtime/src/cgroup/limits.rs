//! `lxc.cgroup2.KEY = VALUE` and `lxc.cgroup.KEY = VALUE` limit keys: which hierarchy they
//! address and which file they name, validated so that a key can never leave the
//! container's cgroup directory.

/// A validated limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// A cgroup v2 file (`lxc.cgroup2.memory.max`, or the bare `memory.max`).
    V2 {
        /// The file name inside the cgroup, e.g. `memory.max`.
        file: String,
        /// The controller the file belongs to, e.g. `memory` (`cgroup` for core files).
        controller: String,
    },
    /// A cgroup v1 file (`lxc.cgroup.memory.limit_in_bytes`).
    V1 {
        /// The file name inside the cgroup, e.g. `memory.limit_in_bytes`.
        file: String,
        /// The controller (and thus the v1 hierarchy), e.g. `memory`.
        controller: String,
    },
}

impl LimitKey {
    /// The file name the key writes.
    pub fn file(&self) -> &str {
        match self {
            LimitKey::V2 { file, .. } | LimitKey::V1 { file, .. } => file,
        }
    }

    /// The controller the key belongs to.
    pub fn controller(&self) -> &str {
        match self {
            LimitKey::V2 { controller, .. } | LimitKey::V1 { controller, .. } => controller,
        }
    }
}

/// Parses a limit key: `lxc.cgroup2.FILE`, `lxc.cgroup.FILE` or a bare `FILE` (taken as
/// v2, the form the config module stores after the `lxc.cgroup2.` prefix).
///
/// FILE must be `CONTROLLER.SETTING` made of letters, digits, `_`, `-` and `.`, with no
/// `/`, no `..` and no leading dot. On error returns why, for the caller's message.
pub fn parse_limit_key(key: &str) -> Result<LimitKey, String> {
    let (v2, file) = if let Some(rest) = key.strip_prefix("lxc.cgroup2.") {
        (true, rest)
    } else if let Some(rest) = key.strip_prefix("lxc.cgroup.") {
        (false, rest)
    } else if key.starts_with("lxc.") {
        return Err("only lxc.cgroup2.* and lxc.cgroup.* keys set cgroup limits".to_string());
    } else {
        (true, key)
    };
    if file.is_empty() {
        return Err("the key names no cgroup file".to_string());
    }
    if file.contains('/') || file.split('.').any(|p| p.is_empty()) {
        return Err(format!(
            "`{file}` is not a plain file name in the cgroup (no `/`, no empty or `..` parts)"
        ));
    }
    if let Some(bad) = file
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
    {
        return Err(format!(
            "`{file}` contains `{bad}`, which no cgroup file name has"
        ));
    }
    let Some((controller, _)) = file.split_once('.') else {
        return Err(format!(
            "`{file}` is not a controller file (expected CONTROLLER.SETTING, e.g. memory.max)"
        ));
    };
    let controller = controller.to_string();
    let file = file.to_string();
    Ok(if v2 {
        LimitKey::V2 { file, controller }
    } else {
        LimitKey::V1 { file, controller }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_keys() {
        let k = parse_limit_key("lxc.cgroup2.memory.max").unwrap();
        assert_eq!(
            k,
            LimitKey::V2 {
                file: "memory.max".into(),
                controller: "memory".into()
            }
        );
        let k = parse_limit_key("pids.max").unwrap();
        assert_eq!(k.file(), "pids.max");
        assert_eq!(k.controller(), "pids");
        let k = parse_limit_key("lxc.cgroup2.cpuset.cpus.partition").unwrap();
        assert_eq!(k.controller(), "cpuset");
        assert_eq!(
            parse_limit_key("cgroup.max.descendants")
                .unwrap()
                .controller(),
            "cgroup"
        );
    }

    #[test]
    fn v1_keys() {
        let k = parse_limit_key("lxc.cgroup.memory.limit_in_bytes").unwrap();
        assert_eq!(
            k,
            LimitKey::V1 {
                file: "memory.limit_in_bytes".into(),
                controller: "memory".into()
            }
        );
        assert_eq!(
            parse_limit_key("lxc.cgroup.devices.allow")
                .unwrap()
                .controller(),
            "devices"
        );
    }

    #[test]
    fn escaping_and_malformed_keys_are_refused() {
        for bad in [
            "lxc.cgroup2.../../etc/passwd",
            "lxc.cgroup2.memory/../../x",
            "lxc.cgroup2..hidden",
            "lxc.cgroup2.memory..max",
            "lxc.cgroup2.",
            "lxc.cgroup2.memory",
            "lxc.cgroup.dir",
            "lxc.cgroup2.memory.max ",
            "lxc.cgroup2.memory.m\0x",
            "lxc.net.0.type",
            "..",
            "",
        ] {
            assert!(parse_limit_key(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
