//! A small static file server for an image directory (`ulxc-harness serve`): HTTP/1.1
//! `GET`/`HEAD` with single `Range: bytes=` requests, over plain TCP or over TLS with a
//! generated test CA (rcgen + rustls). Binds to loopback by default.
//!
//! Written by hand on std threads instead of hyper/axum: serving files to tests and to a
//! local mirror needs ~200 lines, no async runtime, and no extra crates for CI's 2 cores
//! to compile; one thread per connection is plenty for loopback clients. A request may
//! only name a regular file under the root: `..`, NUL, and symlinks that lead outside
//! (checked on the canonical path) are refused with 403.

mod http;
#[cfg(test)]
mod tests;
mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use http::resolve;
pub use tls::{TestCa, CA_FILE};

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket or file operation failed.
    #[error("cannot {what} {target}: {error}")]
    Io {
        /// The operation.
        what: String,
        /// The address or path.
        target: String,
        /// The underlying error (in the message, not a `source()`: printed once).
        error: std::io::Error,
    },
    /// Making the test CA or the TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A bound server; [`run`](Server::run) serves until the process ends, [`spawn`](Server::spawn) in the background.
pub struct Server {
    listener: TcpListener,
    root: PathBuf,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Binds `addr` to serve `root`, with TLS from `ca` when given.
    pub fn bind(root: &Path, addr: SocketAddr, ca: Option<&TestCa>) -> Result<Self, ServeError> {
        let root = root.canonicalize().map_err(|error| ServeError::Io {
            what: "open root directory".into(),
            target: root.display().to_string(),
            error,
        })?;
        let listener = TcpListener::bind(addr).map_err(|error| ServeError::Io {
            what: "bind".into(),
            target: addr.to_string(),
            error,
        })?;
        let tls = ca.map(TestCa::server_config).transpose()?;
        Ok(Server {
            listener,
            root,
            tls,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The base URL clients use: `http://ADDR/` or `https://ADDR/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr())
    }

    /// Serves connections, one thread each, until stopped.
    pub fn run(&self) {
        for conn in self.listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let root = self.root.clone();
            let tls = self.tls.clone();
            std::thread::spawn(move || {
                let peer = stream.peer_addr().ok();
                if let Err(e) = serve_connection(stream, &root, tls) {
                    tracing::debug!(?peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    /// Serves on a background thread; the returned handle stops it when dropped.
    pub fn spawn(self) -> RunningServer {
        let addr = self.local_addr();
        let url = self.url();
        let stop = self.stop.clone();
        let thread = std::thread::spawn(move || self.run());
        RunningServer {
            addr,
            url,
            stop,
            thread: Some(thread),
        }
    }
}

/// A server running on a background thread (see [`Server::spawn`]).
pub struct RunningServer {
    addr: SocketAddr,
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    root: &Path,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    match tls {
        None => http::handle(stream, root),
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let r = http::handle(&mut tls, root);
            tls.conn.send_close_notify();
            let _ = std::io::Write::flush(&mut tls);
            r
        }
    }
}
