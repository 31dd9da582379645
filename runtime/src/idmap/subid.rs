//! Subordinate id files (`/etc/subuid`, `/etc/subgid`): which host id ranges a user may
//! map into a user namespace through newuidmap/newgidmap.
//!
//! Each line is `OWNER:START:COUNT` where OWNER is a user name or a numeric uid; a user may
//! have several lines. Blank lines and `#` comments are ignored. A malformed line that could
//! belong to the user asked about is an error naming `file:line`; malformed lines of other
//! users are logged and skipped, as newuidmap itself does not stop at them either.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::IdMapError;

/// Which kind of subordinate id a range or file is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubIdKind {
    /// `/etc/subuid`: subordinate user ids.
    Uid,
    /// `/etc/subgid`: subordinate group ids.
    Gid,
}

impl SubIdKind {
    /// The file's base name: `subuid` or `subgid`.
    pub fn file_word(self) -> &'static str {
        match self {
            SubIdKind::Uid => "subuid",
            SubIdKind::Gid => "subgid",
        }
    }

    /// The usermod option that adds such a range: `--add-subuids` or `--add-subgids`.
    pub fn usermod_option(self) -> &'static str {
        match self {
            SubIdKind::Uid => "--add-subuids",
            SubIdKind::Gid => "--add-subgids",
        }
    }
}

impl fmt::Display for SubIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_word())
    }
}

/// One range of subordinate ids that a user owns, with where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubIdRange {
    /// First host id of the range.
    pub start: u32,
    /// Number of ids in the range (at least 1).
    pub count: u32,
    /// Where the range was read, `file:line`, e.g. `/etc/subuid:3`.
    pub source: String,
}

impl SubIdRange {
    /// The last host id of the range (inclusive).
    pub fn last(&self) -> u32 {
        self.start + (self.count - 1)
    }

    /// Whether `id` lies in the range.
    pub fn contains(&self, id: u32) -> bool {
        id >= self.start && id <= self.last()
    }

    /// The range as `usermod --add-subuids` takes it: `FIRST-LAST`, e.g. `100000-165535`.
    pub fn usermod_form(&self) -> String {
        format!("{}-{}", self.start, self.last())
    }

    /// The range as the files store it: `START:COUNT`, e.g. `100000:65536`.
    pub fn file_form(&self) -> String {
        format!("{}:{}", self.start, self.count)
    }
}

/// Where the subordinate id files are read from (overridable for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdFiles {
    /// The subuid file, normally `/etc/subuid`.
    pub uid_path: PathBuf,
    /// The subgid file, normally `/etc/subgid`.
    pub gid_path: PathBuf,
}

impl SubIdFiles {
    /// The system's files: `/etc/subuid` and `/etc/subgid`.
    pub fn system() -> SubIdFiles {
        SubIdFiles {
            uid_path: PathBuf::from("/etc/subuid"),
            gid_path: PathBuf::from("/etc/subgid"),
        }
    }

    /// The file of one kind.
    pub fn path(&self, kind: SubIdKind) -> &Path {
        match kind {
            SubIdKind::Uid => &self.uid_path,
            SubIdKind::Gid => &self.gid_path,
        }
    }

    /// The subuid ranges of the user `user_name` (whose uid is `uid`), in file order.
    pub fn subuid_ranges(&self, user_name: &str, uid: u32) -> Result<Vec<SubIdRange>, IdMapError> {
        read_ranges(&self.uid_path, SubIdKind::Uid, user_name, uid)
    }

    /// The subgid ranges of the user `user_name` (whose uid is `uid`), in file order.
    ///
    /// Like newgidmap, the owner field is matched against the user's name and uid.
    pub fn subgid_ranges(&self, user_name: &str, uid: u32) -> Result<Vec<SubIdRange>, IdMapError> {
        read_ranges(&self.gid_path, SubIdKind::Gid, user_name, uid)
    }
}

impl Default for SubIdFiles {
    fn default() -> Self {
        SubIdFiles::system()
    }
}

/// The subuid ranges of `user_name` (uid `uid`) from `/etc/subuid`.
pub fn subuid_ranges(user_name: &str, uid: u32) -> Result<Vec<SubIdRange>, IdMapError> {
    SubIdFiles::system().subuid_ranges(user_name, uid)
}

/// The subgid ranges of `user_name` (uid `uid`) from `/etc/subgid`.
pub fn subgid_ranges(user_name: &str, uid: u32) -> Result<Vec<SubIdRange>, IdMapError> {
    SubIdFiles::system().subgid_ranges(user_name, uid)
}

fn read_ranges(
    path: &Path,
    kind: SubIdKind,
    user_name: &str,
    uid: u32,
) -> Result<Vec<SubIdRange>, IdMapError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(?path, "no {kind} file: the user has no subordinate {kind}s");
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(IdMapError::ReadSubIds {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_ranges(&text, path, user_name, uid)
}

/// Parses the text of a subuid/subgid file `path` and returns the ranges owned by
/// `user_name` or by the numeric `uid`, in file order.
pub fn parse_ranges(
    text: &str,
    path: &Path,
    user_name: &str,
    uid: u32,
) -> Result<Vec<SubIdRange>, IdMapError> {
    let uid_text = uid.to_string();
    let is_ours = |owner: &str| owner == user_name || owner == uid_text;
    let mut ranges = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let location = format!("{}:{}", path.display(), index + 1);
        let owner = line.split(':').next().unwrap_or("").trim();
        match parse_line(line) {
            Ok((owner, start, count)) => {
                if is_ours(owner) {
                    ranges.push(SubIdRange {
                        start,
                        count,
                        source: location,
                    });
                }
            }
            Err(why) if is_ours(owner) => {
                return Err(IdMapError::SubIdLine {
                    location,
                    text: line.to_string(),
                    why,
                });
            }
            Err(why) => {
                tracing::warn!(%location, line, why, "skipping a malformed line of another user");
            }
        }
    }
    Ok(ranges)
}

fn parse_line(line: &str) -> Result<(&str, u32, u32), String> {
    let fields: Vec<&str> = line.split(':').map(str::trim).collect();
    if fields.len() != 3 {
        return Err(format!("{} fields instead of 3", fields.len()));
    }
    if fields[0].is_empty() {
        return Err("the owner is empty".to_string());
    }
    let number = |name: &str, text: &str| {
        text.parse::<u32>()
            .map_err(|_| format!("{name} `{text}` is not a number from 0 to 4294967295"))
    };
    let start = number("START", fields[1])?;
    let count = number("COUNT", fields[2])?;
    if count == 0 {
        return Err("COUNT is 0".to_string());
    }
    if start.checked_add(count - 1).is_none() {
        return Err("the range runs past 4294967295".to_string());
    }
    Ok((fields[0], start, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, uid_text: &str, gid_text: &str) -> SubIdFiles {
        let files = SubIdFiles {
            uid_path: dir.join("subuid"),
            gid_path: dir.join("subgid"),
        };
        std::fs::write(&files.uid_path, uid_text).unwrap();
        std::fs::write(&files.gid_path, gid_text).unwrap();
        files
    }

    #[test]
    fn reads_ranges_by_name_and_uid_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# comment\n\nalice:100000:65536\nbob:165536:65536\n1000:300000:10\n  alice : 400000 : 1 \n";
        let files = files(dir.path(), text, "alice:200000:65536\n");
        let uids = files.subuid_ranges("alice", 1000).unwrap();
        let path = dir.path().join("subuid").display().to_string();
        assert_eq!(
            uids,
            vec![
                SubIdRange {
                    start: 100000,
                    count: 65536,
                    source: format!("{path}:3")
                },
                SubIdRange {
                    start: 300000,
                    count: 10,
                    source: format!("{path}:5")
                },
                SubIdRange {
                    start: 400000,
                    count: 1,
                    source: format!("{path}:6")
                },
            ]
        );
        assert_eq!(uids[0].last(), 165535);
        assert_eq!(uids[0].usermod_form(), "100000-165535");
        assert_eq!(uids[0].file_form(), "100000:65536");
        assert!(uids[0].contains(100000) && uids[0].contains(165535) && !uids[0].contains(165536));
        let gids = files.subgid_ranges("alice", 1000).unwrap();
        assert_eq!(gids.len(), 1);
        assert_eq!(gids[0].start, 200000);
        assert!(files.subuid_ranges("carol", 1002).unwrap().is_empty());
    }

    #[test]
    fn malformed_line_of_the_user_is_an_error_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), "alice:100000:65536\nalice:100000\n", "");
        let err = files.subuid_ranges("alice", 1000).unwrap_err();
        let message = err.to_string();
        let path = dir.path().join("subuid").display().to_string();
        assert!(message.contains(&format!("{path}:2")), "{message}");
        assert!(message.contains("2 fields instead of 3"), "{message}");
        assert!(message.contains("NAME:START:COUNT"), "{message}");
    }

    #[test]
    fn malformed_lines_of_other_users_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let text = "bob:x:65536\nbob:1:0\n:5:5\ncarol:4294967295:2\nalice:100000:65536\n";
        let files = files(dir.path(), text, "");
        let uids = files.subuid_ranges("alice", 1000).unwrap();
        assert_eq!(uids.len(), 1);
        assert_eq!(uids[0].start, 100000);
    }

    #[test]
    fn each_kind_of_malformed_line_is_named() {
        for (line, why) in [
            ("alice:abc:65536", "START `abc` is not a number"),
            ("alice:1:-5", "COUNT `-5` is not a number"),
            ("alice:1:0", "COUNT is 0"),
            ("alice:4294967295:2", "runs past 4294967295"),
            ("alice:1:2:3", "4 fields instead of 3"),
        ] {
            let err = parse_ranges(line, Path::new("/x"), "alice", 7).unwrap_err();
            assert!(err.to_string().contains(why), "{line}: {err}");
            assert!(err.to_string().contains("/x:1"), "{line}: {err}");
        }
    }

    #[test]
    fn missing_file_means_no_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let files = SubIdFiles {
            uid_path: dir.path().join("none"),
            gid_path: dir.path().join("none2"),
        };
        assert!(files.subuid_ranges("alice", 1000).unwrap().is_empty());
        assert!(files.subgid_ranges("alice", 1000).unwrap().is_empty());
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // a directory cannot be read as text, whoever runs the test
        let files = SubIdFiles {
            uid_path: dir.path().to_path_buf(),
            gid_path: dir.path().into(),
        };
        let err = files.subuid_ranges("alice", 1000).unwrap_err();
        assert!(matches!(err, IdMapError::ReadSubIds { .. }), "{err}");
    }
}
