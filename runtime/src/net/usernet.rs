//! The quota file `/etc/lxc/lxc-usernet`, as LXC's `lxc-user-nic` reads it.
//!
//! Each line is `user type bridge count` or `@group type bridge count`; `#` starts a
//! comment line (and a trailing comment after the four fields); blank lines are
//! ignored. A malformed line yields a warning naming `file:line` and is otherwise
//! ignored. As in LXC, the allowance of a user for a (type, bridge) is the SUM of the
//! counts of every line that names the user or one of the user's groups with that type
//! and bridge.

use std::path::Path;

/// Where the quota file lives.
pub const USERNET_PATH: &str = "/etc/lxc/lxc-usernet";

/// Who a line grants nics to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// A user by login name.
    User(String),
    /// Members of a group (written `@group`).
    Group(String),
}

/// One valid line of the quota file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernetLine {
    /// 1-based line number.
    pub line_number: usize,
    /// The line as written (trimmed).
    pub text: String,
    /// Who is granted.
    pub grantee: Grantee,
    /// The nic type (e.g. `veth`).
    pub nic_type: String,
    /// The bridge (link) name.
    pub bridge: String,
    /// How many nics.
    pub count: u32,
}

/// The parsed quota file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usernet {
    /// The file it came from (for messages).
    pub path: String,
    /// Its valid lines in order.
    pub lines: Vec<UsernetLine>,
    /// One message per malformed line, `file:line: what is wrong`.
    pub warnings: Vec<String>,
}

/// What the quota file allows one user for one (type, bridge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// Sum of the counts of the matching lines.
    pub total: u64,
    /// The matching lines, as `file:line: text`.
    pub matched: Vec<String>,
}

/// Reading the quota file failed.
#[derive(Debug, thiserror::Error)]
pub enum UsernetError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Usernet {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Usernet, UsernetError> {
        let text = std::fs::read(path).map_err(|source| UsernetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Usernet::parse(
            &path.display().to_string(),
            &String::from_utf8_lossy(&text),
        ))
    }

    /// Parses the text of a quota file; `path` is used in warnings.
    pub fn parse(path: &str, text: &str) -> Usernet {
        let mut usernet = Usernet {
            path: path.to_string(),
            ..Usernet::default()
        };
        for (index, raw) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok((grantee, nic_type, bridge, count)) => usernet.lines.push(UsernetLine {
                    line_number,
                    text: line.to_string(),
                    grantee,
                    nic_type,
                    bridge,
                    count,
                }),
                Err(why) => usernet.warnings.push(format!(
                    "{path}:{line_number}: {why} (expected `user type bridge count` or \
                     `@group type bridge count`); line ignored"
                )),
            }
        }
        usernet
    }

    /// The allowance of `user` (member of `groups`) for nics of `nic_type` on `bridge`.
    pub fn allowance(
        &self,
        user: &str,
        groups: &[String],
        nic_type: &str,
        bridge: &str,
    ) -> Allowance {
        let mut allowance = Allowance {
            total: 0,
            matched: Vec::new(),
        };
        for line in &self.lines {
            let names_caller = match &line.grantee {
                Grantee::User(name) => name == user,
                Grantee::Group(name) => groups.iter().any(|g| g == name),
            };
            if names_caller && line.nic_type == nic_type && line.bridge == bridge {
                allowance.total += u64::from(line.count);
                allowance
                    .matched
                    .push(format!("{}:{}: {}", self.path, line.line_number, line.text));
            }
        }
        allowance
    }
}

fn parse_line(line: &str) -> Result<(Grantee, String, String, u32), String> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    if let Some(comment) = fields.iter().position(|f| f.starts_with('#')) {
        fields.truncate(comment);
    }
    if fields.len() != 4 {
        return Err(format!("{} fields instead of 4", fields.len()));
    }
    let grantee = match fields[0].strip_prefix('@') {
        Some("") => return Err("`@` without a group name".into()),
        Some(group) => Grantee::Group(group.to_string()),
        None => Grantee::User(fields[0].to_string()),
    };
    let count: u32 = fields[3]
        .parse()
        .map_err(|_| format!("count `{}` is not a non-negative number", fields[3]))?;
    Ok((grantee, fields[1].to_string(), fields[2].to_string(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# quota
ulxc-test veth lxcbr0 10

@ulxc-nic veth lxcbr0 2   # for the team
@ulxc-nic veth ulxcg0 2
other veth lxcbr0 5
ulxc-test veth lxcbr0
ulxc-test veth lxcbr0 -1
ulxc-test veth lxcbr0 many
@ veth lxcbr0 1
ulxc-test macvlan lxcbr0 1
";

    #[test]
    fn parses_lines_comments_and_blank_lines() {
        let u = Usernet::parse("/etc/lxc/lxc-usernet", SAMPLE);
        assert_eq!(u.lines.len(), 5);
        assert_eq!(u.lines[0].line_number, 2);
        assert_eq!(u.lines[1].grantee, Grantee::Group("ulxc-nic".into()));
        assert_eq!(u.lines[1].count, 2);
        assert_eq!(u.warnings.len(), 4, "{:?}", u.warnings);
        assert!(u.warnings[0].starts_with("/etc/lxc/lxc-usernet:7: 3 fields"));
        assert!(u.warnings[1].starts_with("/etc/lxc/lxc-usernet:8: count `-1`"));
        assert!(u.warnings[3].starts_with("/etc/lxc/lxc-usernet:10: `@` without"));
    }

    #[test]
    fn user_and_group_lines_add_up_like_lxc() {
        let u = Usernet::parse("f", SAMPLE);
        let groups = vec!["ulxc-test".to_string(), "ulxc-nic".to_string()];
        let a = u.allowance("ulxc-test", &groups, "veth", "lxcbr0");
        assert_eq!(a.total, 12);
        assert_eq!(
            a.matched,
            vec![
                "f:2: ulxc-test veth lxcbr0 10",
                "f:4: @ulxc-nic veth lxcbr0 2   # for the team"
            ]
        );
        let g = u.allowance("someone", &groups, "veth", "ulxcg0");
        assert_eq!(g.total, 2);
        let none = u.allowance("ulxc-test", &[], "veth", "ulxcg0");
        assert_eq!(none.total, 0);
        assert!(none.matched.is_empty());
        let t = u.allowance("ulxc-test", &[], "macvlan", "lxcbr0");
        assert_eq!(t.total, 1);
    }

    #[test]
    fn a_zero_count_line_matches_but_grants_nothing() {
        let u = Usernet::parse("f", "ulxc-test veth br0 0\n");
        let a = u.allowance("ulxc-test", &[], "veth", "br0");
        assert_eq!(a.total, 0);
        assert_eq!(a.matched.len(), 1);
    }
}
