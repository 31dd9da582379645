//! LXC's image index `meta/1.0/index-system`: one image a line, `dist;release;arch;variant;build;path`.

use std::path::Path;

use super::PublishError;

/// The index's path relative to the server root (LXC's download template first tries it
/// with a `.7` compat suffix, then as is; only the plain name is written).
pub const INDEX_PATH: &str = "meta/1.0/index-system";

/// The same index as LXC fetches it for unprivileged users.
pub const USER_INDEX_PATH: &str = "meta/1.0/index-user";

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Distribution.
    pub dist: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// Variant.
    pub variant: String,
    /// Build id.
    pub build: String,
    /// Directory of the image's files on the server, e.g. `/images/debian/.../BUILD/`.
    pub path: String,
}

/// Parses an index; blank lines are skipped, every other line must have six non-empty fields.
pub fn parse_index(text: &str, path: &Path) -> Result<Vec<IndexEntry>, PublishError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(';').collect();
        if f.len() < 6 || f[..6].iter().any(|s| s.is_empty()) {
            return Err(PublishError::Index {
                path: path.to_path_buf(),
                line: n + 1,
                message: format!(
                    "expected six non-empty fields dist;release;arch;variant;build;path, got `{line}`"
                ),
            });
        }
        out.push(IndexEntry {
            dist: f[0].into(),
            release: f[1].into(),
            arch: f[2].into(),
            variant: f[3].into(),
            build: f[4].into(),
            path: f[5].into(),
        });
    }
    Ok(out)
}

/// Replaces the entry of the same dist/release/arch/variant, or appends `new`.
pub fn upsert(entries: &mut Vec<IndexEntry>, new: IndexEntry) {
    let same = |e: &IndexEntry| {
        e.dist == new.dist
            && e.release == new.release
            && e.arch == new.arch
            && e.variant == new.variant
    };
    match entries.iter_mut().find(|e| same(e)) {
        Some(e) => *e = new,
        None => entries.push(new),
    }
}

/// The index text, one line per entry in order.
pub fn render_index(entries: &[IndexEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{};{};{};{};{};{}\n",
                e.dist, e.release, e.arch, e.variant, e.build, e.path
            )
        })
        .collect()
}
