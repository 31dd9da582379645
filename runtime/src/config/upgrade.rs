//! `ulxc config upgrade`: rewrite legacy LXC 2.x keys in place, and [`render`] items as text.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::keys;
use super::parse::{split_line, Line, Parser};
use super::{ConfigError, Location};

/// Rewrite the legacy keys of `text` (only its own lines; includes are read to number
/// `lxc.network` interfaces as the parser does, never changed). Comments, blank lines and
/// order are kept; a trailing ` # comment` (which LXC would read as part of the value) moves
/// to its own line above. Returns the new text and one line per change,
/// `file:line: old -> new`.
pub fn upgrade_text(text: &str, origin: &Path) -> Result<(String, Vec<String>), ConfigError> {
    let parser = Parser::run(text, origin)?;
    let renames: HashMap<usize, (String, String)> = parser
        .top_renames
        .into_iter()
        .map(|(line, old, new)| (line, (old, new)))
        .collect();
    let mut out = String::with_capacity(text.len() + 64);
    let mut changes = Vec::new();
    for (i, raw_line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let at = Location::new(origin, n);
        let body = raw_line.trim_end_matches(['\n', '\r']);
        let ending = &raw_line[body.len()..];
        let Some(Line::Pair { key, comment, .. }) = split_line(body) else {
            out.push_str(raw_line);
            continue;
        };
        let indent = &body[..body.len() - body.trim_start().len()];
        let mut line = body.to_string();
        if let Some(off) = comment {
            out.push_str(indent);
            out.push_str(body[off..].trim());
            out.push_str(if ending.is_empty() { "\n" } else { ending });
            line = body[..off].trim_end().to_string();
            changes.push(format!("{at}: trailing comment moved to its own line"));
        }
        if let Some((old, new)) = renames.get(&n) {
            let start = line.find(key).unwrap_or(indent.len());
            if old == keys::DROPPED_LEGACY {
                line = format!(
                    "{indent}# {} (removed: unused since LXC 3)",
                    line.trim_start()
                );
                changes.push(format!("{at}: {old} -> (commented out)"));
            } else {
                line = format!("{}{new}{}", &line[..start], &line[start + key.len()..]);
                changes.push(format!("{at}: {old} -> {new}"));
            }
        }
        out.push_str(&line);
        out.push_str(ending);
    }
    Ok((out, changes))
}

/// Upgrade the file at `path` in place (see [`upgrade_text`]); written atomically through a
/// temporary file in the same directory and a rename, keeping the file's mode. Nothing is
/// written when nothing changes.
pub fn upgrade_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (new_text, changes) = upgrade_text(&text, path)?;
    if changes.is_empty() {
        return Ok(changes);
    }
    let werr = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let perms = std::fs::metadata(path).map_err(werr)?.permissions();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.ulxc-upgrade.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(new_text.as_bytes())?;
        f.set_permissions(perms)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    tracing::debug!(file = ?path, changes = changes.len(), "config upgraded");
    Ok(changes)
}

/// Write `items` as config text, one `key = value` line each, legacy keys in current spelling
/// (`lxc.network.*` numbered as the parser would). Unknown keys are written as given.
pub fn render(items: &[(String, String)]) -> String {
    let mut parser = Parser::default();
    let at = Location::new("<render>", 0);
    let mut out = String::new();
    for (key, value) in items {
        let key = parser
            .translate(key, &at)
            .map_or_else(|_| key.clone(), |(k, _)| k);
        let value = value.trim();
        if value.is_empty() {
            out.push_str(&format!("{key} =\n"));
        } else {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out
}
