//! The `lxc.idmap = KIND NSID HOSTID COUNT` line: its type, parser and display form.

use std::fmt;
use std::str::FromStr;

/// Which ids an `lxc.idmap` line maps: `u` (uids), `g` (gids) or `b` (both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IdKind {
    /// `u`: user ids.
    Uid,
    /// `g`: group ids.
    Gid,
    /// `b`: both user and group ids.
    Both,
}

/// One `lxc.idmap = KIND NSID HOSTID COUNT` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IdMapLine {
    /// Which ids the line maps.
    pub kind: IdKind,
    /// First id inside the container.
    pub ns_start: u32,
    /// First id on the host.
    pub host_start: u32,
    /// How many ids are mapped.
    pub count: u32,
}

/// Why an `lxc.idmap` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad id map `{text}`: {why}; expected `u|g|b NSID HOSTID COUNT`, e.g. `u 0 100000 65536`")]
pub struct IdMapLineError {
    /// The text that was parsed.
    pub text: String,
    /// What was wrong with it.
    pub why: String,
}

impl FromStr for IdMapLine {
    type Err = IdMapLineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| IdMapLineError {
            text: s.to_string(),
            why: why.to_string(),
        };
        let fields: Vec<&str> = s.split_whitespace().collect();
        if fields.len() != 4 {
            return Err(err(&format!("{} fields instead of 4", fields.len())));
        }
        let kind = match fields[0] {
            "u" => IdKind::Uid,
            "g" => IdKind::Gid,
            "b" => IdKind::Both,
            other => return Err(err(&format!("kind `{other}` is not u, g or b"))),
        };
        let number = |name: &str, text: &str| {
            text.parse::<u32>().map_err(|_| {
                err(&format!(
                    "{name} `{text}` is not a number from 0 to 4294967295"
                ))
            })
        };
        let ns_start = number("NSID", fields[1])?;
        let host_start = number("HOSTID", fields[2])?;
        let count = number("COUNT", fields[3])?;
        if count == 0 {
            return Err(err("COUNT is 0"));
        }
        if ns_start.checked_add(count - 1).is_none() || host_start.checked_add(count - 1).is_none()
        {
            return Err(err("the range runs past 4294967295"));
        }
        Ok(IdMapLine {
            kind,
            ns_start,
            host_start,
            count,
        })
    }
}

impl fmt::Display for IdMapLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            IdKind::Uid => "u",
            IdKind::Gid => "g",
            IdKind::Both => "b",
        };
        write!(
            f,
            "{kind} {} {} {}",
            self.ns_start, self.host_start, self.count
        )
    }
}

impl IdMapLine {
    /// Whether the line maps user ids (`u` or `b`).
    pub fn maps_uids(&self) -> bool {
        matches!(self.kind, IdKind::Uid | IdKind::Both)
    }

    /// Whether the line maps group ids (`g` or `b`).
    pub fn maps_gids(&self) -> bool {
        matches!(self.kind, IdKind::Gid | IdKind::Both)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_each_kind() {
        for (text, kind) in [
            ("u 0 100000 65536", IdKind::Uid),
            ("g 0 100000 65536", IdKind::Gid),
            ("b 0 100000 65536", IdKind::Both),
        ] {
            let line: IdMapLine = text.parse().unwrap();
            assert_eq!(line.kind, kind);
            assert_eq!(line.ns_start, 0);
            assert_eq!(line.host_start, 100000);
            assert_eq!(line.count, 65536);
            assert_eq!(line.to_string(), text);
        }
        let spaced: IdMapLine = "  u\t1000  1000   1 ".parse().unwrap();
        assert_eq!(spaced.to_string(), "u 1000 1000 1");
        assert!(spaced.maps_uids() && !spaced.maps_gids());
    }

    #[test]
    fn rejects_bad_lines_with_the_reason() {
        let cases = [
            ("u 0 100000", "3 fields instead of 4"),
            ("x 0 100000 65536", "kind `x` is not u, g or b"),
            ("u -1 100000 65536", "NSID `-1` is not a number"),
            ("u 0 100000 0", "COUNT is 0"),
            ("u 4294967295 0 2", "runs past 4294967295"),
        ];
        for (text, why) in cases {
            let err = text.parse::<IdMapLine>().unwrap_err();
            assert_eq!(err.text, text);
            assert!(err.why.contains(why), "{text}: {}", err.why);
            assert!(err
                .to_string()
                .contains("expected `u|g|b NSID HOSTID COUNT`"));
        }
    }
}
