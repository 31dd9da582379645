//! The HTTP(S) side: which server, a `ureq` agent with the system's trust store plus an
//! optional extra CA, and downloads that resume, check their length and show progress on
//! stderr.

use std::io::{IsTerminal, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::DownloadError;

/// Where the system's CA bundle is looked for (Debian's first), unless `SSL_CERT_FILE` is set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// An image server's base URL, checked: `https://` anywhere, `http://` only on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Parses `HOST[:PORT]` (HTTPS, like LXC) or a full `http(s)://HOST[:PORT][/PREFIX]`.
    pub fn parse(s: &str) -> Result<Self, DownloadError> {
        let bad = |why: &str| DownloadError::Server {
            server: s.to_string(),
            why: why.to_string(),
        };
        let s = s.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_string(), s),
        };
        if scheme != "http" && scheme != "https" {
            return Err(bad("only https:// (or http:// on loopback) is supported"));
        }
        let rest = rest.trim_end_matches('/');
        let host_port = rest.split('/').next().unwrap_or("");
        if host_port.is_empty()
            || rest.contains(['?', '#', '@'])
            || rest.contains(char::is_whitespace)
        {
            return Err(bad("expected HOST[:PORT] or http(s)://HOST[:PORT][/PATH]"));
        }
        let host = host_of(host_port);
        if scheme == "http" && !is_loopback(host) {
            return Err(bad(
                "plain HTTP is only used for a loopback server (127.0.0.1, ::1, localhost); use https://",
            ));
        }
        Ok(ServerUrl(format!("{scheme}://{rest}")))
    }

    /// The URL of `path` (relative, `/`-separated) on this server.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.0, path.trim_start_matches('/'))
    }

    /// The base URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn host_of(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An HTTP client for one server.
pub struct Client {
    agent: ureq::Agent,
    progress: bool,
}

impl Client {
    /// A client for `server` trusting the system's CAs and, if given, the CAs in
    /// `ca_file`. Over HTTPS it follows up to 5 redirects, to HTTPS only; a plain HTTP
    /// (loopback) server's redirects are not followed, so no request leaves loopback.
    pub fn new(server: &ServerUrl, ca_file: Option<&Path>) -> Result<Self, DownloadError> {
        let https = server.as_str().starts_with("https://");
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
            .find(|p| p.is_file());
        if let Some(bundle) = &system {
            certs.extend(read_certs(bundle)?);
        }
        if let Some(extra) = ca_file {
            let extra_certs = read_certs(extra)?;
            if extra_certs.is_empty() {
                return Err(DownloadError::CaFile {
                    path: extra.to_path_buf(),
                    why: "it holds no PEM certificate".into(),
                });
            }
            certs.extend(extra_certs);
        }
        let roots = if certs.is_empty() {
            tracing::warn!("no system CA bundle found; using the built-in Mozilla roots");
            RootCerts::WebPki
        } else {
            RootCerts::Specific(Arc::new(certs))
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .max_redirects(if https { 5 } else { 0 })
            .https_only(https)
            .user_agent(concat!("ulxc/", env!("CARGO_PKG_VERSION"), " compat:7"))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            progress: std::io::stderr().is_terminal(),
        })
    }

    /// GETs a small text file (an index) into memory; `Ok(None)` on 404.
    pub fn get_text(&self, url: &str) -> Result<Option<String>, DownloadError> {
        let Some(resp) = self.get(url, None)? else {
            return Ok(None);
        };
        let mut body = resp.into_body();
        let text = body
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| transport(url, e))?;
        Ok(Some(text))
    }

    /// Downloads `url` to `dest`, resuming a partial `dest`; `Ok(false)` on 404.
    /// `label` names the file in progress lines.
    pub fn download(&self, url: &str, dest: &Path, label: &str) -> Result<bool, DownloadError> {
        let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        let Some(resp) = self.get(url, (have > 0).then_some(have))? else {
            return Ok(false);
        };
        let resumed = resp.status().as_u16() == 206;
        let remaining: Option<u64> = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(dest)
            .map_err(|e| DownloadError::Io {
                what: format!("cannot write {}", dest.display()),
                source: e,
            })?;
        let start = if resumed { have } else { 0 };
        let total = remaining.map(|r| r + start);
        let bar = self.bar(label, total, start, resumed);
        let mut reader = resp.into_body().into_reader();
        let mut got = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(match remaining {
                        Some(expected) => DownloadError::Truncated {
                            url: url.to_string(),
                            got: start + got,
                            expected: start + expected,
                            why: e.to_string(),
                        },
                        None => DownloadError::Transport {
                            url: url.to_string(),
                            why: e.to_string(),
                        },
                    });
                }
            };
            file.write_all(&buf[..n]).map_err(|e| DownloadError::Io {
                what: format!("cannot write {}", dest.display()),
                source: e,
            })?;
            got += n as u64;
            bar.set_position(start + got);
        }
        bar.finish_and_clear();
        if let Some(expected) = remaining {
            if got != expected {
                return Err(DownloadError::Truncated {
                    url: url.to_string(),
                    got: start + got,
                    expected: start + expected,
                    why: "the connection closed early".into(),
                });
            }
        }
        // No fsync: a file damaged by a crash fails its signature check (and a cached
        // one its check before use) and is downloaded again.
        if !self.progress {
            eprintln!("Downloaded {label} ({})", human(start + got));
        }
        Ok(true)
    }

    fn get(
        &self,
        url: &str,
        from: Option<u64>,
    ) -> Result<Option<ureq::http::Response<ureq::Body>>, DownloadError> {
        let mut req = self.agent.get(url);
        if let Some(from) = from {
            req = req.header("Range", &format!("bytes={from}-"));
        }
        match req.call() {
            Ok(resp) => Ok(Some(resp)),
            Err(ureq::Error::StatusCode(404)) => Ok(None),
            Err(ureq::Error::StatusCode(416)) if from.is_some() => {
                // The partial file is not a prefix of this one: start again.
                let dest_len = from.unwrap_or(0);
                tracing::debug!(url, dest_len, "range not satisfiable; downloading again");
                match self.agent.get(url).call() {
                    Ok(resp) => Ok(Some(resp)),
                    Err(ureq::Error::StatusCode(404)) => Ok(None),
                    Err(e) => Err(transport(url, e)),
                }
            }
            Err(e) => Err(transport(url, e)),
        }
    }

    fn bar(
        &self,
        label: &str,
        total: Option<u64>,
        start: u64,
        resumed: bool,
    ) -> indicatif::ProgressBar {
        if !self.progress {
            eprintln!(
                "Downloading {label}{}{}",
                total
                    .map(|t| format!(" ({})", human(t)))
                    .unwrap_or_default(),
                if resumed {
                    format!(", resuming at {}", human(start))
                } else {
                    String::new()
                }
            );
            return indicatif::ProgressBar::hidden();
        }
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("Downloading {label}"));
        bar.set_position(start);
        bar
    }
}

fn read_certs(path: &Path) -> Result<Vec<Certificate<'static>>, DownloadError> {
    let bad = |why: String| DownloadError::CaFile {
        path: path.to_path_buf(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| bad(format!("not a PEM file: {e}")))? {
            PemItem::Certificate(c) => certs.push(c.to_owned()),
            _ => continue,
        }
    }
    Ok(certs)
}

fn transport(url: &str, e: ureq::Error) -> DownloadError {
    match e {
        ureq::Error::StatusCode(code) => DownloadError::Http {
            url: url.to_string(),
            status: code,
        },
        other => DownloadError::Transport {
            url: url.to_string(),
            why: other.to_string(),
        },
    }
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
