//! Checks a container's `lxc.idmap` lines against what the user may map (the subordinate
//! ranges newuidmap/newgidmap will accept), before anything is started, and describes the
//! user's ranges for `ulxc subid`.

use std::fmt::Write as _;

use super::map::check_overlaps;
use super::{IdMapError, IdMapLine, SubIdKind, SubIdRange};

/// Checks `lines` (each with its location, e.g. `~/.config/lxc/default.conf:3`) against the
/// user's subordinate ranges.
///
/// Every uid range must lie inside the user's subuid ranges (newuidmap also accepts a range
/// that runs across adjacent ranges of the user) or be exactly the caller's own uid with
/// count 1; the same for gids. Container uid 0 and gid 0 must be mapped, and no two lines
/// may overlap.
pub fn check_allowed(
    lines: &[(IdMapLine, String)],
    uid_ranges: &[SubIdRange],
    gid_ranges: &[SubIdRange],
    caller_uid: u32,
    caller_gid: u32,
) -> Result<(), IdMapError> {
    check_overlaps(lines)?;
    for (line, location) in lines {
        if line.maps_uids() {
            check_line(line, location, SubIdKind::Uid, uid_ranges, caller_uid)?;
        }
        if line.maps_gids() {
            check_line(line, location, SubIdKind::Gid, gid_ranges, caller_gid)?;
        }
    }
    for kind in [SubIdKind::Uid, SubIdKind::Gid] {
        let maps_root = lines.iter().any(|(line, _)| {
            let right_kind = match kind {
                SubIdKind::Uid => line.maps_uids(),
                SubIdKind::Gid => line.maps_gids(),
            };
            right_kind && line.ns_start == 0
        });
        if !maps_root {
            let ranges = match kind {
                SubIdKind::Uid => uid_ranges,
                SubIdKind::Gid => gid_ranges,
            };
            return Err(IdMapError::NoRoot {
                kind,
                suggestion: suggest_line(kind, 0, 65536, ranges),
            });
        }
    }
    Ok(())
}

fn check_line(
    line: &IdMapLine,
    location: &str,
    kind: SubIdKind,
    ranges: &[SubIdRange],
    caller_id: u32,
) -> Result<(), IdMapError> {
    if line.count == 1 && line.host_start == caller_id {
        return Ok(());
    }
    if covered(line.host_start, line.count, ranges) {
        return Ok(());
    }
    let last = line.host_start + (line.count - 1);
    let usermod = format!(
        "usermod {} {}-{last} NAME",
        kind.usermod_option(),
        line.host_start
    );
    if ranges.is_empty() {
        return Err(IdMapError::NoSubIds {
            kind,
            needed_by: format!("lxc.idmap {line} ({location})"),
            usermod,
        });
    }
    let owned: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}: {}", r.source, r.usermod_form()))
        .collect();
    Err(IdMapError::OutsideSubIds {
        line: *line,
        location: location.to_string(),
        kind,
        owned: owned.join(", "),
        suggestion: suggest_line(kind, line.ns_start, line.count, ranges),
        usermod,
    })
}

/// Whether host ids `start..start+count` are all inside the union of `ranges`.
fn covered(start: u32, count: u32, ranges: &[SubIdRange]) -> bool {
    let end = u64::from(start) + u64::from(count);
    let mut next = u64::from(start);
    while next < end {
        let Some(range) = ranges
            .iter()
            .find(|r| u64::from(r.start) <= next && next <= u64::from(r.last()))
        else {
            return false;
        };
        next = u64::from(range.last()) + 1;
    }
    true
}

/// A line the user could write instead, e.g. `lxc.idmap = u 0 100000 65536`.
fn suggest_line(kind: SubIdKind, ns_start: u32, count: u32, ranges: &[SubIdRange]) -> String {
    let letter = match kind {
        SubIdKind::Uid => 'u',
        SubIdKind::Gid => 'g',
    };
    match ranges.first() {
        Some(range) => {
            format!(
                "`lxc.idmap = {letter} {ns_start} {} {}`",
                range.start,
                count.min(range.count)
            )
        }
        None => format!("`lxc.idmap = {letter} 0 100000 65536` once you have a {kind} range"),
    }
}

/// The text of `ulxc subid`: the user's ranges as the files store them (`START:COUNT`, with
/// `file:line`) and as `usermod --add-subuids FIRST-LAST` / `--add-subgids` take them.
pub fn describe_for_cli(
    user: &str,
    uid_ranges: &[SubIdRange],
    gid_ranges: &[SubIdRange],
) -> String {
    let mut out = String::new();
    let system = super::SubIdFiles::system();
    for (kind, ranges) in [(SubIdKind::Uid, uid_ranges), (SubIdKind::Gid, gid_ranges)] {
        let path = system.path(kind).display().to_string();
        if ranges.is_empty() {
            let _ = writeln!(
                out,
                "{kind}: none for {user} in {path}; an administrator can add a range no other \
                 user has, e.g.: usermod {} 100000-165535 {user}",
                kind.usermod_option()
            );
            continue;
        }
        let _ = writeln!(out, "{kind} ranges of {user}:");
        for range in ranges {
            let _ = writeln!(
                out,
                "  {user}:{:<20} ({})   usermod {} {} {user}",
                range.file_form(),
                range.source,
                kind.usermod_option(),
                range.usermod_form()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(source: &str, start: u32, count: u32) -> SubIdRange {
        SubIdRange {
            start,
            count,
            source: source.into(),
        }
    }

    fn located(texts: &[&str]) -> Vec<(IdMapLine, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    t.parse().unwrap(),
                    format!("~/.config/lxc/default.conf:{}", i + 1),
                )
            })
            .collect()
    }

    fn uids() -> Vec<SubIdRange> {
        vec![sub("/etc/subuid:1", 100000, 65536)]
    }

    fn gids() -> Vec<SubIdRange> {
        vec![sub("/etc/subgid:1", 100000, 65536)]
    }

    #[test]
    fn accepts_the_usual_map_and_the_caller_id() {
        let lines = located(&["u 0 100000 65536", "g 0 100000 65536"]);
        check_allowed(&lines, &uids(), &gids(), 1001, 1001).unwrap();
        let lines = located(&["b 0 100000 1000", "b 1000 1001 1", "b 1001 101001 64535"]);
        check_allowed(&lines, &uids(), &gids(), 1001, 1001).unwrap();
        // a range across two adjacent subordinate ranges, as newuidmap allows
        let two = vec![
            sub("/etc/subuid:1", 100000, 10),
            sub("/etc/subuid:2", 100010, 10),
        ];
        check_allowed(&located(&["b 0 100000 20"]), &two, &two, 1, 1).unwrap();
    }

    #[test]
    fn outside_range_names_line_location_ranges_and_fixes() {
        let lines = vec![
            (
                "g 0 100000 65536".parse().unwrap(),
                "~/.config/lxc/default.conf:1".to_string(),
            ),
            (
                "u 0 200000 65536".parse().unwrap(),
                "~/.config/lxc/default.conf:3".to_string(),
            ),
        ];
        let err = check_allowed(&lines, &uids(), &gids(), 1001, 1001).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lxc.idmap u 0 200000 65536 (~/.config/lxc/default.conf:3) is outside your subuid \
             ranges (/etc/subuid:1: 100000-165535); use `lxc.idmap = u 0 100000 65536` or ask \
             your administrator: usermod --add-subuids 200000-265535 NAME"
        );
        // one id past the end
        let err =
            check_allowed(&located(&["b 0 100001 65536"]), &uids(), &gids(), 1, 1).unwrap_err();
        assert!(
            err.to_string().contains("outside your subuid ranges"),
            "{err}"
        );
        // gid side of a `b` line
        let err = check_allowed(
            &located(&["b 0 100000 65536"]),
            &uids(),
            &[sub("/etc/subgid:4", 300000, 65536)],
            1,
            1,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("outside your subgid ranges (/etc/subgid:4: 300000-365535)"),
            "{err}"
        );
        assert!(
            err.to_string().contains("--add-subgids 100000-165535"),
            "{err}"
        );
        // the caller's id with a count above 1 is not the single-id exception
        let err = check_allowed(
            &located(&["b 0 100000 65536", "u 65536 1001 2"]),
            &uids(),
            &gids(),
            1001,
            1001,
        )
        .unwrap_err();
        assert!(err.to_string().contains("u 65536 1001 2"), "{err}");
    }

    #[test]
    fn no_ranges_at_all_says_so() {
        let err = check_allowed(
            &located(&["u 0 100000 65536", "g 0 100000 65536"]),
            &[],
            &gids(),
            1,
            1,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("you have no subuid range"), "{message}");
        assert!(
            message.contains("usermod --add-subuids 100000-165535 NAME"),
            "{message}"
        );
    }

    #[test]
    fn a_root_mapping_is_required() {
        let err = check_allowed(
            &located(&["u 1 100000 65535", "g 0 100000 65536"]),
            &uids(),
            &gids(),
            1,
            1,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("no lxc.idmap line maps container uid 0"),
            "{message}"
        );
        assert!(
            message.contains("lxc.idmap = u 0 100000 65536"),
            "{message}"
        );
        let err =
            check_allowed(&located(&["u 0 100000 65536"]), &uids(), &gids(), 1, 1).unwrap_err();
        assert!(err.to_string().contains("container gid 0"), "{err}");
    }

    #[test]
    fn overlaps_are_reported_with_locations() {
        let lines = located(&["b 0 100000 65536", "u 0 100000 1"]);
        let err = check_allowed(&lines, &uids(), &gids(), 1, 1).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("default.conf:1") && message.contains("default.conf:2"),
            "{message}"
        );
    }

    #[test]
    fn describes_ranges_in_both_forms() {
        let text = describe_for_cli("alice", &uids(), &[]);
        assert!(text.contains("subuid ranges of alice:"), "{text}");
        assert!(text.contains("alice:100000:65536"), "{text}");
        assert!(text.contains("(/etc/subuid:1)"), "{text}");
        assert!(
            text.contains("usermod --add-subuids 100000-165535 alice"),
            "{text}"
        );
        assert!(
            text.contains("subgid: none for alice in /etc/subgid"),
            "{text}"
        );
        assert!(
            text.contains("usermod --add-subgids 100000-165535 alice"),
            "{text}"
        );
    }
}
