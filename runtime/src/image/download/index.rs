//! LXC's image index (`meta/1.0/index-system`): one image a line,
//! `dist;release;arch;variant;build;path`, and the table LXC prints from it.

use super::DownloadError;

/// One image offered by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Distribution (`debian`).
    pub dist: String,
    /// Release (`bookworm`).
    pub release: String,
    /// Architecture (`amd64`).
    pub arch: String,
    /// Variant (`default`).
    pub variant: String,
    /// Build id (`20240101_05:24`).
    pub build: String,
    /// Directory of the image relative to the server root, without leading or trailing `/`.
    pub path: String,
}

/// Parses an index; `source` names it in errors. Empty lines and `#` comments are
/// skipped; every other line must have six non-empty fields and a `path` that stays
/// inside the server's root.
pub fn parse(text: &str, source: &str) -> Result<Vec<IndexEntry>, DownloadError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| DownloadError::Index {
            source_name: source.to_string(),
            line: n + 1,
            why,
        };
        let fields: Vec<&str> = line.split(';').collect();
        if fields.len() < 6 {
            return Err(bad(format!(
                "`{line}` has {} fields; an index line is dist;release;arch;variant;build;path",
                fields.len()
            )));
        }
        if let Some(i) = fields[..6].iter().position(|f| f.trim().is_empty()) {
            let names = ["dist", "release", "arch", "variant", "build", "path"];
            return Err(bad(format!("`{line}` has an empty {} field", names[i])));
        }
        for (i, f) in fields[..5].iter().enumerate() {
            if f.contains('/') || *f == "." || *f == ".." {
                let names = ["dist", "release", "arch", "variant", "build"];
                return Err(bad(format!(
                    "the {} field `{f}` is not a plain name (it names a cache directory)",
                    names[i]
                )));
            }
        }
        let path =
            clean_path(fields[5]).map_err(|why| bad(format!("path `{}` {why}", fields[5])))?;
        entries.push(IndexEntry {
            dist: fields[0].to_string(),
            release: fields[1].to_string(),
            arch: fields[2].to_string(),
            variant: fields[3].to_string(),
            build: fields[4].to_string(),
            path,
        });
    }
    Ok(entries)
}

/// Normalises an index `path` to `a/b/c`, refusing one that leaves the server's root
/// (`..`), names another host (`//host`, `scheme:`) or carries a query or fragment.
fn clean_path(path: &str) -> Result<String, String> {
    if path.contains("://") || path.starts_with("//") {
        return Err("names another server; it must be a path on this server".into());
    }
    if path.contains(['?', '#', '\\', '%']) || path.chars().any(char::is_control) {
        return Err(
            "contains characters not allowed in an image path (? # \\ % or control)".into(),
        );
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("escapes the server's root (`..`)".into()),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("names the server's root, not an image directory".into());
    }
    Ok(parts.join("/"))
}

/// A filter on the index: empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Distribution.
    pub dist: Option<&'a str>,
    /// Release.
    pub release: Option<&'a str>,
    /// Architecture.
    pub arch: Option<&'a str>,
    /// Variant.
    pub variant: Option<&'a str>,
}

impl Filter<'_> {
    /// Whether `e` passes.
    pub fn matches(&self, e: &IndexEntry) -> bool {
        let ok = |want: Option<&str>, have: &str| want.is_none_or(|w| w == have);
        ok(self.dist, &e.dist)
            && ok(self.release, &e.release)
            && ok(self.arch, &e.arch)
            && ok(self.variant, &e.variant)
    }
}

/// The table LXC's download template prints (tab-separated between `---` rulers).
pub fn table(entries: &[IndexEntry], filter: &Filter<'_>) -> String {
    let mut out = String::from("\n---\nDIST\tRELEASE\tARCH\tVARIANT\tBUILD\n---\n");
    for e in entries.iter().filter(|e| filter.matches(e)) {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            e.dist, e.release, e.arch, e.variant, e.build
        ));
    }
    out.push_str("---\n");
    out
}
