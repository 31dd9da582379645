//! Finds the Debian mirror that the host's apt sources name.
//!
//! Reads deb822 files (`/etc/apt/sources.list.d/*.sources`, field `URIs:`) and the
//! one-line format (`/etc/apt/sources.list`, `/etc/apt/sources.list.d/*.list`), skips
//! disabled entries, source-only entries and the security archive, and prefers an entry
//! that carries the wanted suite. No mirror host is ever written into the code:
//! `ULXC_HARNESS_MIRROR` overrides the detection.

use std::path::{Path, PathBuf};

use super::ImageError;

/// One `deb` source entry of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Archive URI, e.g. `http://deb.debian.org/debian`.
    pub uri: String,
    /// Suites of the entry.
    pub suites: Vec<String>,
    /// Components of the entry.
    pub components: Vec<String>,
    /// File the entry came from.
    pub file: PathBuf,
}

/// Returns the mirror URI for `suite`: `$ULXC_HARNESS_MIRROR` if set, else the host's
/// apt sources under `root` (`/` on a real host).
pub fn detect_mirror(root: &Path, suite: &str) -> Result<String, ImageError> {
    if let Ok(m) = std::env::var("ULXC_HARNESS_MIRROR") {
        if !m.trim().is_empty() {
            return Ok(m.trim().trim_end_matches('/').to_owned());
        }
    }
    let entries = read_sources(root)?;
    pick_mirror(&entries, suite).ok_or_else(|| ImageError::NoMirror {
        searched: root.join("etc/apt"),
        suite: suite.to_owned(),
    })
}

/// Chooses the main archive among the entries: not the security archive, a `deb` entry
/// with component `main`, preferring one that lists `suite`.
pub fn pick_mirror(entries: &[SourceEntry], suite: &str) -> Option<String> {
    let usable: Vec<&SourceEntry> = entries
        .iter()
        .filter(|e| {
            !e.uri.contains("security")
                && !e
                    .suites
                    .iter()
                    .any(|s| s.ends_with("-security") || s.ends_with("/updates"))
                && e.components.iter().any(|c| c == "main")
        })
        .collect();
    usable
        .iter()
        .find(|e| e.suites.iter().any(|s| s == suite))
        .or_else(|| usable.first())
        .map(|e| e.uri.trim_end_matches('/').to_owned())
}

/// Reads every `deb` entry of the apt sources under `root`.
pub fn read_sources(root: &Path) -> Result<Vec<SourceEntry>, ImageError> {
    let mut entries = Vec::new();
    let list = root.join("etc/apt/sources.list");
    if list.exists() {
        entries.extend(parse_one_line(&read(&list)?, &list));
    }
    let dir = root.join("etc/apt/sources.list.d");
    if dir.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| ImageError::Io {
                what: "list apt sources".into(),
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&read(&f)?, &f)),
                Some("list") => entries.extend(parse_one_line(&read(&f)?, &f)),
                _ => {}
            }
        }
    }
    Ok(entries)
}

fn read(path: &Path) -> Result<String, ImageError> {
    std::fs::read_to_string(path).map_err(|source| ImageError::Io {
        what: "read apt sources".into(),
        path: path.to_owned(),
        source,
    })
}

/// Parses the one-line format: `deb [options] URI SUITE COMPONENT...`.
pub fn parse_one_line(text: &str, file: &Path) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut rest = match line.strip_prefix("deb ") {
            Some(r) => r.trim_start(),
            None => continue,
        };
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(SourceEntry {
            uri: uri.to_owned(),
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
            file: file.to_owned(),
        });
    }
    out
}

/// Parses deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`).
pub fn parse_deb822(text: &str, file: &Path) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        let mut current: Option<String> = None;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = if line.starts_with([' ', '\t']) {
                match &current {
                    Some(k) => (k.clone(), line.trim()),
                    None => continue,
                }
            } else if let Some((k, v)) = line.split_once(':') {
                current = Some(k.trim().to_ascii_lowercase());
                (k.trim().to_ascii_lowercase(), v.trim())
            } else {
                continue;
            };
            let words = value.split_whitespace().map(str::to_owned);
            match key.as_str() {
                "types" => types.extend(words),
                "uris" => uris.extend(words),
                "suites" => suites.extend(words),
                "components" => components.extend(words),
                "enabled" => enabled = !value.eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in uris {
            out.push(SourceEntry {
                uri,
                suites: suites.clone(),
                components: components.clone(),
                file: file.to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# http://snapshot.example/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n";

    const ONE_LINE: &str = "# comment\ndeb http://sec.example/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://line.example/debian/ bookworm main contrib\ndeb-src http://line.example/debian bookworm main\n";

    #[test]
    fn deb822_main_archive_is_found() {
        let e = parse_deb822(DEB822, Path::new("debian.sources"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            pick_mirror(&e, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options_is_found() {
        let e = parse_one_line(ONE_LINE, Path::new("sources.list"));
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].components, vec!["main", "contrib"]);
        assert_eq!(
            pick_mirror(&e, "bookworm").as_deref(),
            Some("http://line.example/debian")
        );
    }

    #[test]
    fn fixture_tree_is_read_and_the_suite_preferred() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/apt/sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            dir.path().join("etc/apt/sources.list"),
            "deb http://old.example/debian bullseye main\n",
        )
        .unwrap();
        std::fs::write(d.join("debian.sources"), DEB822).unwrap();
        std::fs::write(
            d.join("ignored.list.disabled"),
            "deb http://no.example/ bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            detect_mirror(dir.path(), "bookworm").unwrap(),
            "http://mirror.example/debian"
        );
        assert_eq!(
            detect_mirror(dir.path(), "trixie").unwrap(),
            "http://old.example/debian"
        );
    }

    #[test]
    fn no_sources_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect_mirror(dir.path(), "bookworm")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no debian mirror"), "{err}");
    }
}
