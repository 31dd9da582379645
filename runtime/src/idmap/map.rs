//! A container's id map: the uid and gid ranges that are written to `/proc/PID/uid_map`
//! and `gid_map`, built from `lxc.idmap` lines or from the user's subordinate ids, with
//! lookups between container and host ids.

use std::fmt;

use super::{IdMapError, IdMapLine, SubIdKind, SubIdRange};

/// How many ids the default map gives a container: uid 0 to 65535, like LXC's examples.
pub const DEFAULT_MAP_SIZE: u32 = 65536;

/// One contiguous range: container ids `ns_start..ns_start+count` are host ids
/// `host_start..host_start+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    /// First id inside the container.
    pub ns_start: u32,
    /// First id on the host.
    pub host_start: u32,
    /// Number of ids (at least 1).
    pub count: u32,
}

impl IdRange {
    /// The host id of container id `ns`, if this range maps it.
    pub fn to_host(&self, ns: u32) -> Option<u32> {
        let offset = ns.checked_sub(self.ns_start)?;
        (offset < self.count).then(|| self.host_start + offset)
    }

    /// The container id of host id `host`, if this range maps it.
    pub fn to_ns(&self, host: u32) -> Option<u32> {
        let offset = host.checked_sub(self.host_start)?;
        (offset < self.count).then(|| self.ns_start + offset)
    }

    /// One past the last container id, as u64 so that it cannot overflow.
    pub fn ns_end(&self) -> u64 {
        u64::from(self.ns_start) + u64::from(self.count)
    }

    /// One past the last host id, as u64 so that it cannot overflow.
    pub fn host_end(&self) -> u64 {
        u64::from(self.host_start) + u64::from(self.count)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.ns_start, self.host_start, self.count)
    }
}

/// The uid and gid maps of one user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// Uid ranges, in the order they are written to `uid_map`.
    pub uid: Vec<IdRange>,
    /// Gid ranges, in the order they are written to `gid_map`.
    pub gid: Vec<IdRange>,
}

impl IdMap {
    /// Builds the map from `lxc.idmap` lines (a `b` line counts for uids and gids).
    ///
    /// Two lines that map overlapping container or host ranges are an error.
    pub fn from_lines(lines: &[IdMapLine]) -> Result<IdMap, IdMapError> {
        let labelled: Vec<(IdMapLine, String)> = lines
            .iter()
            .map(|line| (*line, format!("lxc.idmap = {line}")))
            .collect();
        check_overlaps(&labelled)?;
        let range = |line: &IdMapLine| IdRange {
            ns_start: line.ns_start,
            host_start: line.host_start,
            count: line.count,
        };
        Ok(IdMap {
            uid: lines.iter().filter(|l| l.maps_uids()).map(range).collect(),
            gid: lines.iter().filter(|l| l.maps_gids()).map(range).collect(),
        })
    }

    /// The default map of a user: container id 0 onwards is mapped to the user's first
    /// subordinate range, continued with the next ranges if the first holds fewer than
    /// [`DEFAULT_MAP_SIZE`] ids, up to that many ids in all.
    pub fn from_subids(
        uid_ranges: &[SubIdRange],
        gid_ranges: &[SubIdRange],
    ) -> Result<IdMap, IdMapError> {
        Ok(IdMap {
            uid: default_ranges(uid_ranges, SubIdKind::Uid)?,
            gid: default_ranges(gid_ranges, SubIdKind::Gid)?,
        })
    }

    /// The same map with the caller's own host uid and gid also mapped, each at the first
    /// free container id just past the highest mapped one (so that container root can write
    /// into directories the caller owns). newuidmap allows this single-id mapping without a
    /// subordinate range. If the caller's id is already mapped, or no container id is left,
    /// the map is returned unchanged; [`IdMap::caller_ns_ids`] tells where it landed.
    pub fn with_caller(mut self, caller_uid: u32, caller_gid: u32) -> IdMap {
        add_single(&mut self.uid, caller_uid, "uid");
        add_single(&mut self.gid, caller_gid, "gid");
        self
    }

    /// The container uid and gid at which the caller's host uid and gid are mapped, if both
    /// are (see [`IdMap::with_caller`]).
    pub fn caller_ns_ids(&self, caller_uid: u32, caller_gid: u32) -> Option<(u32, u32)> {
        Some((self.to_ns_uid(caller_uid)?, self.to_ns_gid(caller_gid)?))
    }

    /// The host uid of container uid `ns`.
    pub fn to_host_uid(&self, ns: u32) -> Option<u32> {
        self.uid.iter().find_map(|r| r.to_host(ns))
    }

    /// The host gid of container gid `ns`.
    pub fn to_host_gid(&self, ns: u32) -> Option<u32> {
        self.gid.iter().find_map(|r| r.to_host(ns))
    }

    /// The container uid of host uid `host`.
    pub fn to_ns_uid(&self, host: u32) -> Option<u32> {
        self.uid.iter().find_map(|r| r.to_ns(host))
    }

    /// The container gid of host gid `host`.
    pub fn to_ns_gid(&self, host: u32) -> Option<u32> {
        self.gid.iter().find_map(|r| r.to_ns(host))
    }

    /// The host uid of container root (uid 0), e.g. 100000.
    pub fn root_uid(&self) -> Option<u32> {
        self.to_host_uid(0)
    }

    /// The host gid of container root (gid 0), e.g. 100000.
    pub fn root_gid(&self) -> Option<u32> {
        self.to_host_gid(0)
    }

    /// The map as `lxc.idmap` lines (`u ...` then `g ...`).
    pub fn to_lines(&self) -> Vec<IdMapLine> {
        let line = |kind, r: &IdRange| IdMapLine {
            kind,
            ns_start: r.ns_start,
            host_start: r.host_start,
            count: r.count,
        };
        let uids = self.uid.iter().map(|r| line(super::IdKind::Uid, r));
        uids.chain(self.gid.iter().map(|r| line(super::IdKind::Gid, r)))
            .collect()
    }
}

fn default_ranges(ranges: &[SubIdRange], kind: SubIdKind) -> Result<Vec<IdRange>, IdMapError> {
    if ranges.is_empty() {
        return Err(IdMapError::NoSubIds {
            kind,
            needed_by: "the default id map".to_string(),
            usermod: format!("usermod {} 100000-165535 NAME", kind.usermod_option()),
        });
    }
    let mut out: Vec<IdRange> = Vec::new();
    let mut next_ns: u32 = 0;
    for range in ranges {
        let left = DEFAULT_MAP_SIZE - next_ns;
        if left == 0 {
            break;
        }
        // the same host ids listed twice (or overlapping lines) are used once
        let overlaps = out.iter().any(|r| {
            u64::from(range.start) < r.host_end()
                && u64::from(r.host_start) < u64::from(range.last()) + 1
        });
        if overlaps {
            tracing::debug!(source = %range.source, "skipping a subordinate range that overlaps an earlier one");
            continue;
        }
        let count = range.count.min(left);
        out.push(IdRange {
            ns_start: next_ns,
            host_start: range.start,
            count,
        });
        next_ns += count;
    }
    Ok(out)
}

fn add_single(ranges: &mut Vec<IdRange>, host: u32, what: &str) {
    if ranges.iter().any(|r| r.to_ns(host).is_some()) {
        return;
    }
    let next = ranges.iter().map(IdRange::ns_end).max().unwrap_or(0);
    // u32::MAX is (uid_t)-1, which is never a valid id
    match u32::try_from(next) {
        Ok(ns) if ns < u32::MAX => ranges.push(IdRange {
            ns_start: ns,
            host_start: host,
            count: 1,
        }),
        _ => tracing::warn!(
            host,
            "no free container {what} is left to map the caller's {what}"
        ),
    }
}

/// Checks that no two lines map overlapping container or host ranges, for uids and gids
/// separately. Each line comes with a label used in the error (e.g. its location).
pub(crate) fn check_overlaps(lines: &[(IdMapLine, String)]) -> Result<(), IdMapError> {
    for (i, (a, a_label)) in lines.iter().enumerate() {
        for (b, b_label) in &lines[i + 1..] {
            let shared_kinds = [
                ("uid", a.maps_uids() && b.maps_uids()),
                ("gid", a.maps_gids() && b.maps_gids()),
            ];
            for (kind, shared) in shared_kinds {
                if !shared {
                    continue;
                }
                let sides = [
                    ("container", a.ns_start, b.ns_start),
                    ("host", a.host_start, b.host_start),
                ];
                for (side, a_start, b_start) in sides {
                    if let Some((low, high)) = intersect(a_start, a.count, b_start, b.count) {
                        return Err(IdMapError::Overlap {
                            first: a_label.clone(),
                            second: b_label.clone(),
                            side,
                            kind,
                            low,
                            high,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn intersect(a_start: u32, a_count: u32, b_start: u32, b_count: u32) -> Option<(u32, u32)> {
    let low = a_start.max(b_start);
    let a_last = a_start + (a_count - 1);
    let b_last = b_start + (b_count - 1);
    let high = a_last.min(b_last);
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<IdMapLine> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn sub(start: u32, count: u32) -> SubIdRange {
        SubIdRange {
            start,
            count,
            source: "/etc/subuid:1".into(),
        }
    }

    #[test]
    fn builds_from_lines_with_both_kind() {
        let map = IdMap::from_lines(&lines(&[
            "b 0 100000 1000",
            "u 1000 1000 1",
            "g 1000 1000 1",
        ]))
        .unwrap();
        assert_eq!(map.uid.len(), 2);
        assert_eq!(map.gid.len(), 2);
        assert_eq!(map.root_uid(), Some(100000));
        assert_eq!(map.root_gid(), Some(100000));
        assert_eq!(map.to_host_uid(999), Some(100999));
        assert_eq!(map.to_host_uid(1000), Some(1000));
        assert_eq!(map.to_host_uid(1001), None);
        assert_eq!(map.to_ns_gid(100005), Some(5));
        assert_eq!(map.to_ns_gid(99999), None);
        let text: Vec<String> = map.to_lines().iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "u 0 100000 1000",
                "u 1000 1000 1",
                "g 0 100000 1000",
                "g 1000 1000 1"
            ]
        );
    }

    #[test]
    fn overlapping_lines_are_errors() {
        let err = IdMap::from_lines(&lines(&["u 0 100000 65536", "u 100 300000 10"])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("container uids 100-109"), "{message}");
        assert!(message.contains("u 0 100000 65536") && message.contains("u 100 300000 10"));

        let err = IdMap::from_lines(&lines(&["g 0 100000 65536", "b 70000 165535 5"])).unwrap_err();
        assert!(err.to_string().contains("host gids 165535-165535"), "{err}");

        // the same numbers for uids and gids do not collide with each other
        IdMap::from_lines(&lines(&["u 0 100000 65536", "g 0 100000 65536"])).unwrap();
        // adjacent ranges do not overlap
        IdMap::from_lines(&lines(&["u 0 100000 10", "u 10 100010 10"])).unwrap();
    }

    #[test]
    fn default_map_from_subids() {
        let map = IdMap::from_subids(&[sub(100000, 65536)], &[sub(200000, 65536)]).unwrap();
        assert_eq!(
            map.uid,
            vec![IdRange {
                ns_start: 0,
                host_start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            map.gid,
            vec![IdRange {
                ns_start: 0,
                host_start: 200000,
                count: 65536
            }]
        );

        // a big range is cut to 65536 ids, a small one is continued with the next
        let map = IdMap::from_subids(
            &[sub(100000, 1_000_000)],
            &[sub(5000, 1000), sub(9000, 1000000)],
        )
        .unwrap();
        assert_eq!(
            map.uid,
            vec![IdRange {
                ns_start: 0,
                host_start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            map.gid,
            vec![
                IdRange {
                    ns_start: 0,
                    host_start: 5000,
                    count: 1000
                },
                IdRange {
                    ns_start: 1000,
                    host_start: 9000,
                    count: 64536
                },
            ]
        );
        // a duplicated range is used once
        let map = IdMap::from_subids(&[sub(100000, 100), sub(100000, 100)], &[sub(1, 1)]).unwrap();
        assert_eq!(map.uid.len(), 1);

        let err = IdMap::from_subids(&[], &[sub(1, 1)]).unwrap_err();
        assert!(err.to_string().contains("no subuid range"), "{err}");
    }

    #[test]
    fn caller_is_mapped_past_the_highest_id() {
        let map = IdMap::from_lines(&lines(&["u 0 100000 65536", "g 0 100000 1000"]))
            .unwrap()
            .with_caller(1001, 1002);
        assert_eq!(
            map.uid[1],
            IdRange {
                ns_start: 65536,
                host_start: 1001,
                count: 1
            }
        );
        assert_eq!(
            map.gid[1],
            IdRange {
                ns_start: 1000,
                host_start: 1002,
                count: 1
            }
        );
        assert_eq!(map.caller_ns_ids(1001, 1002), Some((65536, 1000)));
        assert_eq!(map.to_host_uid(65536), Some(1001));

        // already mapped: unchanged
        let map = IdMap::from_lines(&lines(&[
            "u 0 100000 65536",
            "u 70000 1001 1",
            "g 0 1002 1",
        ]))
        .unwrap();
        assert_eq!(map.clone().with_caller(1001, 1002), map);
        assert_eq!(map.caller_ns_ids(1001, 1002), Some((70000, 0)));

        // no container id left
        let map = IdMap::from_lines(&lines(&["b 1 1 4294967294"]))
            .unwrap()
            .with_caller(0, 0);
        assert_eq!(map.uid.len(), 1);
        assert_eq!(map.caller_ns_ids(0, 0), None);
    }
}
