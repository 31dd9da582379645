//! SSH client over `russh`: connect with the image's ed25519 key (waiting until the guest
//! answers, under one deadline), run commands collecting stdout, stderr and the exit status,
//! and upload files.
//!
//! The guest's host key is accepted without checking: the peer is our own VM on loopback,
//! reached through a QEMU `hostfwd` we set up (russh's default handler rejects every key).
//! No inactivity timeout is set, so a silent long command is not cut off; each command has
//! its own deadline instead. The channel is read after `Eof` until it closes, because OpenSSH
//! sends the exit status after the end of the output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};

/// What went wrong over SSH.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The private key file could not be loaded.
    #[error("cannot load SSH private key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The parse or I/O error.
        source: russh::keys::Error,
    },
    /// The TCP connection or the SSH handshake failed.
    #[error("SSH connection to {addr} failed: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The protocol error.
        source: russh::Error,
    },
    /// The server refused the key for this user.
    #[error(
        "SSH server at {addr} refused the key for user {user}: check the image's authorized_keys"
    )]
    AuthRejected {
        /// The address dialled.
        addr: SocketAddr,
        /// The login user.
        user: String,
    },
    /// The guest did not answer SSH before the deadline.
    #[error("SSH at {addr} not ready after {waited:?} (last error: {last})")]
    NotReady {
        /// The address dialled.
        addr: SocketAddr,
        /// How long it was tried.
        waited: Duration,
        /// The last connection error.
        last: String,
    },
    /// A channel-level failure while running a command.
    #[error("SSH channel error while running {command:?}: {source}")]
    Channel {
        /// The command.
        command: String,
        /// The protocol error.
        source: russh::Error,
    },
    /// The command ran past its deadline.
    #[error("command {command:?} did not finish within {timeout:?}")]
    Timeout {
        /// The command.
        command: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The channel closed without an exit status or signal.
    #[error("command {command:?} ended without an exit status (connection lost?)")]
    NoExitStatus {
        /// The command.
        command: String,
    },
    /// A local file to upload could not be read.
    #[error("cannot read {path} for upload: {source}")]
    ReadLocal {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The remote side of an upload failed.
    #[error("upload to {remote} failed with status {status}: {stderr}")]
    Upload {
        /// The remote path.
        remote: String,
        /// `cat`/`chmod`'s exit status.
        status: i32,
        /// Their stderr.
        stderr: String,
    },
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; 128 + signal number if killed by a signal.
    pub status: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Wall time of the command.
    pub duration: Duration,
}

impl ExecOutput {
    /// stdout as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// stderr as (lossy) text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The Linux number of a signal named in an SSH `exit-signal` message.
pub fn signal_number(sig: &Sig) -> i32 {
    let name = match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(s) => s.as_str(),
    };
    signal_number_by_name(name)
}

/// The Linux x86-64 number of a signal name without `SIG` (`KILL` → 9); 0 if unknown.
pub fn signal_number_by_name(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "XCPU" => 24,
        "XFSZ" => 25,
        "SYS" => 31,
        _ => 0,
    }
}

struct AcceptOurVm;

impl client::Handler for AcceptOurVm {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Our own VM on 127.0.0.1 through our hostfwd: nothing to verify against.
        Ok(true)
    }
}

/// Loads an OpenSSH private key (unencrypted).
pub fn load_key(path: &Path) -> Result<Arc<PrivateKey>, SshError> {
    russh::keys::load_secret_key(path, None)
        .map(Arc::new)
        .map_err(|source| SshError::Key {
            path: path.to_path_buf(),
            source,
        })
}

/// How often [`Session::connect_with_retry`] opens a new connection while the open ones
/// have not shown sshd's banner yet.
const ATTEMPT_EVERY: Duration = Duration::from_millis(500);
/// At most this many silent connections at once (the oldest is dropped for a new one).
const MAX_IN_FLIGHT: usize = 4;

/// Opens a TCP connection and waits until the server has sent something (sshd's banner),
/// without reading it.
async fn dial_until_banner(addr: SocketAddr) -> Result<tokio::net::TcpStream, SshError> {
    let err = |e: std::io::Error| SshError::Connect {
        addr,
        source: e.into(),
    };
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(err)?;
    let mut buf = [0u8; 4];
    match stream.peek(&mut buf).await.map_err(err)? {
        0 => Err(err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before the SSH banner",
        ))),
        _ => Ok(stream),
    }
}

/// One authenticated SSH connection as one user.
pub struct Session {
    handle: client::Handle<AcceptOurVm>,
    addr: SocketAddr,
    user: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    })
}

impl Session {
    /// Connects once and authenticates `user` with `key`.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        key: Arc<PrivateKey>,
    ) -> Result<Session, SshError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| SshError::Connect {
                addr,
                source: e.into(),
            })?;
        Session::login(stream, addr, user, key).await
    }

    /// The SSH handshake and public-key login of `user` over a connected `stream`.
    async fn login(
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
        user: &str,
        key: Arc<PrivateKey>,
    ) -> Result<Session, SshError> {
        let _ = stream.set_nodelay(true);
        let mut handle = client::connect_stream(config(), stream, AcceptOurVm)
            .await
            .map_err(|source| SshError::Connect { addr, source })?;
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, None))
            .await
            .map_err(|source| SshError::Connect { addr, source })?;
        if !auth.success() {
            return Err(SshError::AuthRejected {
                addr,
                user: user.to_string(),
            });
        }
        Ok(Session {
            handle,
            addr,
            user: user.to_string(),
        })
    }

    /// Connects with retries until `deadline` has passed; `alive` is asked before each try and
    /// stops the wait early with its error (e.g. QEMU exited, kernel panic).
    ///
    /// QEMU's user network accepts the TCP connection at once and then retries its SYN to the
    /// guest with a growing back-off until the guest answers, so a connection made while the
    /// guest boots can stay silent for seconds after sshd is up (cold boots were ready at
    /// ~10.3 s, right after the old 10 s attempt bound). So while no connection has shown
    /// sshd's banner, a new one is opened every [`ATTEMPT_EVERY`] (the newest
    /// [`MAX_IN_FLIGHT`] are kept); the first to show the banner is used for the login and
    /// the silent ones are dropped, so logins never compete for the guest's CPU.
    pub async fn connect_with_retry<E>(
        addr: SocketAddr,
        user: &str,
        key: Arc<PrivateKey>,
        deadline: Duration,
        mut alive: impl FnMut() -> Result<(), E>,
    ) -> Result<Result<Session, SshError>, E> {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        let mut delay = Duration::from_millis(20);
        let mut dials = tokio::task::JoinSet::new();
        let mut silent: std::collections::VecDeque<tokio::task::AbortHandle> = Default::default();
        let mut next_dial = Instant::now();
        loop {
            alive()?;
            let remaining = deadline.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Ok(Err(SshError::NotReady {
                    addr,
                    waited: start.elapsed(),
                    last,
                }));
            }
            if Instant::now() >= next_dial {
                // Keep the newest few: an old silent one waits for the network's back-off.
                while silent.len() >= MAX_IN_FLIGHT {
                    if let Some(h) = silent.pop_front() {
                        h.abort();
                    }
                }
                silent.push_back(dials.spawn(dial_until_banner(addr)));
                next_dial = Instant::now() + ATTEMPT_EVERY;
            }
            let wake = next_dial
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(5))
                .min(remaining);
            let stream = tokio::select! {
                Some(done) = dials.join_next() => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        last = e.to_string();
                        next_dial = next_dial.min(Instant::now() + delay);
                        delay = (delay * 2).min(Duration::from_millis(250));
                        continue;
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                },
                _ = tokio::time::sleep(wake) => continue,
            };
            dials.abort_all();
            silent.clear();
            // The login may still be slow under TCG (a cold sshd): bound it.
            let bound = remaining.min(Duration::from_secs(10));
            match tokio::time::timeout(bound, Session::login(stream, addr, user, key.clone())).await
            {
                Ok(Ok(s)) => {
                    tracing::debug!(%addr, user, waited = ?start.elapsed(), "SSH ready");
                    return Ok(Ok(s));
                }
                Ok(Err(e @ SshError::AuthRejected { .. })) => return Ok(Err(e)),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("handshake took longer than {bound:?}"),
            }
            next_dial = Instant::now() + delay;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// The login user of this session.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs a shell command line (the login shell's `-c`), feeding `stdin` if given, and
    /// collects its output and exit status within `timeout`.
    pub async fn exec_with_input(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let start = Instant::now();
        let chan_err = |source| SshError::Channel {
            command: command.to_string(),
            source,
        };
        let run = async {
            let mut ch = self.handle.channel_open_session().await.map_err(chan_err)?;
            ch.exec(true, command).await.map_err(chan_err)?;
            if let Some(data) = stdin {
                ch.data(data).await.map_err(chan_err)?;
            }
            if stdin.is_some() {
                ch.eof().await.map_err(chan_err)?;
            }
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let mut status = None;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX));
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(128 + signal_number(&signal_name));
                    }
                    ChannelMsg::Failure => {
                        return Err(SshError::NoExitStatus {
                            command: command.to_string(),
                        })
                    }
                    // Eof comes before the exit status: keep reading until the channel closes.
                    _ => {}
                }
            }
            let status = status.ok_or_else(|| SshError::NoExitStatus {
                command: command.to_string(),
            })?;
            Ok(ExecOutput {
                status,
                stdout,
                stderr,
                duration: start.elapsed(),
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout {
                command: command.to_string(),
                timeout,
            }),
        }
    }

    /// Runs a shell command line and collects its output and exit status within `timeout`.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SshError> {
        self.exec_with_input(command, None, timeout).await
    }

    /// Writes `data` to `remote` (through `cat`) and sets its mode.
    pub async fn upload_bytes(
        &self,
        data: &[u8],
        remote: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let q = shlex::try_quote(remote).map_err(|_| SshError::Upload {
            remote: remote.to_string(),
            status: -1,
            stderr: "the remote path contains a NUL byte".into(),
        })?;
        let cmd = format!("cat > {q} && chmod {mode:o} {q}");
        let out = self.exec_with_input(&cmd, Some(data), timeout).await?;
        if out.status != 0 {
            return Err(SshError::Upload {
                remote: remote.to_string(),
                status: out.status,
                stderr: out.stderr_text(),
            });
        }
        Ok(())
    }

    /// Copies a local file to `remote` and sets its mode.
    pub async fn upload(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let data = tokio::fs::read(local)
            .await
            .map_err(|source| SshError::ReadLocal {
                path: local.to_path_buf(),
                source,
            })?;
        self.upload_bytes(&data, remote, mode, timeout).await
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_numbers() {
        assert_eq!(128 + signal_number(&Sig::KILL), 137);
        assert_eq!(signal_number(&Sig::TERM), 15);
        assert_eq!(signal_number(&Sig::Custom("USR2".into())), 12);
        assert_eq!(signal_number_by_name("SIGSEGV"), 11);
        assert_eq!(signal_number_by_name("NOPE"), 0);
    }

    #[test]
    fn output_text() {
        let o = ExecOutput {
            status: 0,
            stdout: b"a\xffb".to_vec(),
            stderr: b"err".to_vec(),
            duration: Duration::ZERO,
        };
        assert_eq!(o.stdout_text(), "a\u{fffd}b");
        assert_eq!(o.stderr_text(), "err");
    }

    #[test]
    fn a_missing_key_is_a_clear_error() {
        let err = load_key(Path::new("/nonexistent/key")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key"), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_times_out_with_the_last_error() {
        // A port nobody listens on: bind then drop to get one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        let key = load_key(&path).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let r = Session::connect_with_retry(addr, "root", key, Duration::from_millis(300), || {
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
        match r {
            Err(SshError::NotReady { last, .. }) => assert!(!last.is_empty()),
            other => panic!("expected NotReady, got {other:?}"),
        }
    }
}
