//! One HTTP/1.1 request per connection: parse the head, map the path into the root,
//! answer with the file (whole or one byte range), then close.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a request path is not served, as an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not an absolute path, bad percent-encoding, NUL.
    BadRequest,
    /// 403: escapes the root (`..`, or a symlink leading outside).
    Forbidden,
    /// 404: no such regular file.
    NotFound,
}

impl Refusal {
    fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest => (400, "Bad Request"),
            Refusal::Forbidden => (403, "Forbidden"),
            Refusal::NotFound => (404, "Not Found"),
        }
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Maps a request target such as `/meta/1.0/index-system?x` to a regular file under the
/// canonical `root`, refusing anything that would leave it.
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, Refusal> {
    use std::os::unix::ffi::OsStrExt;
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    let decoded = percent_decode(path).ok_or(Refusal::BadRequest)?;
    if decoded.contains(&0) {
        return Err(Refusal::BadRequest);
    }
    let mut rel = PathBuf::new();
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => return Err(Refusal::Forbidden),
            s => rel.push(std::ffi::OsStr::from_bytes(s)),
        }
    }
    let full = root.join(&rel);
    let canonical = full.canonicalize().map_err(|_| Refusal::NotFound)?;
    if !canonical.starts_with(root) {
        return Err(Refusal::Forbidden);
    }
    if !canonical.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(canonical)
}

/// Parses `Range: bytes=A-B` / `bytes=A-` / `bytes=-N` for a file of `len` bytes into an
/// inclusive range; `None` for no or an unsupported (multi-)range, `Some(Err)` if unsatisfiable.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || start > end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(r))
}

fn respond_status<S: Write>(
    s: &mut S,
    code: u16,
    reason: &str,
    extra: &str,
) -> std::io::Result<()> {
    let body = format!("{code} {reason}\n");
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

/// Serves one request on `stream` from the canonical `root`.
pub fn handle<S: Read + Write>(mut stream: S, root: &Path) -> std::io::Result<()> {
    let mut head = Vec::new();
    {
        let mut reader = BufReader::new((&mut stream).take(16 * 1024));
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let end = line == b"\r\n" || line == b"\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_owned());
    if method != "GET" && method != "HEAD" {
        return respond_status(
            &mut stream,
            405,
            "Method Not Allowed",
            "Allow: GET, HEAD\r\n",
        );
    }
    let path = match resolve(root, target) {
        Ok(p) => p,
        Err(r) => {
            let (code, reason) = r.status();
            tracing::debug!(%target, code, "refused");
            return respond_status(&mut stream, code, reason, "");
        }
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return respond_status(&mut stream, 403, "Forbidden", ""),
    };
    let len = file.metadata()?.len();
    let (code, reason, start, count, extra) =
        match range.as_deref().and_then(|r| parse_range(r, len)) {
            None => (200, "OK", 0, len, String::new()),
            Some(Ok((a, b))) => (
                206,
                "Partial Content",
                a,
                b - a + 1,
                format!("Content-Range: bytes {a}-{b}/{len}\r\n"),
            ),
            Some(Err(())) => {
                return respond_status(
                    &mut stream,
                    416,
                    "Range Not Satisfiable",
                    &format!("Content-Range: bytes */{len}\r\n"),
                )
            }
        };
    tracing::debug!(%target, code, count, "serving");
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n"
    )?;
    if method == "GET" {
        file.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut file.take(count), &mut stream)?;
    }
    stream.flush()
}

#[cfg(test)]
mod range_tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
