//! Reading config text into [`RawConfig`]: line syntax, `lxc.include`, legacy renaming.

use std::path::{Path, PathBuf};

use super::keys::{self, Legacy};
use super::{tilde, ConfigError, Location, RawConfig, RawItem};

/// One line of config text, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Line<'a> {
    /// Blank or a `#` comment line.
    Skip,
    /// `key = value`; `comment` is the byte offset of a stripped trailing ` # comment`.
    Pair {
        key: &'a str,
        value: &'a str,
        comment: Option<usize>,
    },
}

/// Split one line; `None` when it is not blank, a comment, or `key = value`.
pub(super) fn split_line(line: &str) -> Option<Line<'_>> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Some(Line::Skip);
    }
    let eq = line.find('=')?;
    let key = line[..eq].trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    let mut rest = &line[eq + 1..];
    let mut comment = None;
    let bytes = rest.as_bytes();
    if let Some(i) =
        (1..bytes.len()).find(|&i| bytes[i] == b'#' && bytes[i - 1].is_ascii_whitespace())
    {
        comment = Some(eq + 1 + i);
        rest = &rest[..i];
    }
    Some(Line::Pair {
        key,
        value: rest.trim(),
        comment,
    })
}

/// Parser state shared across included files.
#[derive(Debug, Default)]
pub(super) struct Parser {
    pub(super) items: Vec<RawItem>,
    /// Files being read, outermost first (for cycle detection).
    stack: Vec<PathBuf>,
    /// Highest `lxc.net.N` index in use.
    net_max: Option<u32>,
    /// The interface that legacy `lxc.network.*` keys currently apply to.
    legacy_cur: Option<u32>,
    /// For the outermost text: (line, old key, new key) of each renamed legacy key.
    pub(super) top_renames: Vec<(usize, String, String)>,
}

fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Parser {
    /// Parse `text` read from `origin` (already pushed on the stack by the caller).
    pub(super) fn parse_text(&mut self, text: &str, origin: &Path) -> Result<(), ConfigError> {
        let top = self.stack.len() <= 1;
        for (i, line) in text.lines().enumerate() {
            let at = Location::new(origin, i + 1);
            let (key, value) = match split_line(line) {
                Some(Line::Skip) => continue,
                Some(Line::Pair { key, value, .. }) => (key, value),
                None => {
                    return Err(ConfigError::Syntax {
                        at,
                        line: line.trim().to_string(),
                    })
                }
            };
            if key == "lxc.include" {
                if !value.is_empty() {
                    self.include(value, origin, &at)?;
                }
                continue;
            }
            let (new_key, legacy_of) = self.translate(key, &at)?;
            if top {
                if let Some(old) = &legacy_of {
                    self.top_renames.push((i + 1, old.clone(), new_key.clone()));
                }
            }
            self.items.push(RawItem {
                key: new_key,
                value: value.to_string(),
                at,
                legacy_of,
            });
        }
        Ok(())
    }

    /// The current spelling of `key` and, when it was a legacy key, the legacy key.
    pub(super) fn translate(
        &mut self,
        key: &str,
        at: &Location,
    ) -> Result<(String, Option<String>), ConfigError> {
        if key == keys::DROPPED_LEGACY {
            return Ok((key.to_string(), Some(key.to_string())));
        }
        if keys::classify(key).is_some() {
            if key == "lxc.net" {
                self.net_max = None;
                self.legacy_cur = None;
            } else if let Some((n, _)) = keys::split_net_key(key) {
                self.net_max = Some(self.net_max.map_or(n, |m| m.max(n)));
            }
            return Ok((key.to_string(), None));
        }
        let unknown = || ConfigError::UnknownKey {
            at: at.clone(),
            key: key.to_string(),
            suggestion: keys::suggest(key),
        };
        match keys::legacy(key) {
            None => Err(unknown()),
            Some(Legacy::Rename(new)) => {
                if keys::classify(&new).is_none() {
                    return Err(unknown());
                }
                Ok((new, Some(key.to_string())))
            }
            Some(Legacy::Network(sub)) if sub.is_empty() => {
                self.net_max = None;
                self.legacy_cur = None;
                Ok(("lxc.net".to_string(), Some(key.to_string())))
            }
            Some(Legacy::Network(sub)) => {
                if !keys::NET_SUBKEYS.contains(&sub.as_str()) {
                    return Err(unknown());
                }
                let index = if sub == "type" {
                    let n = self.net_max.map_or(0, |m| m + 1);
                    self.net_max = Some(n);
                    self.legacy_cur = Some(n);
                    n
                } else {
                    self.legacy_cur
                        .ok_or_else(|| ConfigError::LegacyNetworkWithoutType {
                            at: at.clone(),
                            key: key.to_string(),
                        })?
                };
                Ok((format!("lxc.net.{index}.{sub}"), Some(key.to_string())))
            }
        }
    }

    fn include(&mut self, value: &str, origin: &Path, at: &Location) -> Result<(), ConfigError> {
        let mut path = PathBuf::from(value);
        if path.is_relative() {
            if let Some(dir) = origin.parent() {
                path = dir.join(path);
            }
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            // LXC treats `lxc.include = DIR/` as a directory include and skips an absent
            // one (Debian's userns.conf includes a userns.conf.d/ it does not ship)
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && value.ends_with('/') => {
                tracing::debug!(dir = ?path, at = %at, "included directory is absent; skipped");
                return Ok(());
            }
            Err(source) => {
                return Err(ConfigError::Include {
                    at: at.clone(),
                    path,
                    source,
                })
            }
        };
        if meta.is_dir() {
            let rd = std::fs::read_dir(&path).map_err(|source| ConfigError::Include {
                at: at.clone(),
                path: path.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
                .collect();
            files.sort();
            tracing::debug!(dir = ?path, count = files.len(), "including config directory");
            for f in files {
                self.include_file(&f, at)?;
            }
            Ok(())
        } else {
            self.include_file(&path, at)
        }
    }

    fn include_file(&mut self, path: &Path, at: &Location) -> Result<(), ConfigError> {
        let id = identity(path);
        if let Some(pos) = self.stack.iter().position(|p| *p == id) {
            let mut chain: Vec<String> = self.stack[pos..].iter().map(|p| tilde(p)).collect();
            chain.push(tilde(&id));
            return Err(ConfigError::IncludeCycle {
                at: at.clone(),
                chain: chain.join(" -> "),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Include {
            at: at.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        tracing::trace!(file = ?path, "including config file");
        self.stack.push(id);
        let r = self.parse_text(&text, path);
        self.stack.pop();
        r
    }

    /// Parse a whole outermost text.
    pub(super) fn run(text: &str, origin: &Path) -> Result<Parser, ConfigError> {
        let mut p = Parser::default();
        p.stack.push(identity(origin));
        p.parse_text(text, origin)?;
        Ok(p)
    }
}

/// Read the configuration file at `path`, includes expanded and legacy keys renamed.
pub fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_raw_str(&text, path)
}

/// Parse config `text`; `origin` names it in [`Location`]s and anchors relative includes.
pub fn parse_raw_str(text: &str, origin: &Path) -> Result<RawConfig, ConfigError> {
    Ok(RawConfig {
        items: Parser::run(text, origin)?.items,
    })
}

/// The legacy-key warning for `item`, if it used a legacy key.
pub(super) fn legacy_warning(item: &RawItem) -> Option<String> {
    let old = item.legacy_of.as_ref()?;
    let file = tilde(&item.at.file);
    Some(if *old == item.key {
        format!(
            "{}: legacy key {old} has no effect since LXC 3, remove it (run: ulxc config upgrade {file})",
            item.at
        )
    } else {
        format!(
            "{}: legacy key {old}, use {} (run: ulxc config upgrade {file})",
            item.at, item.key
        )
    })
}
