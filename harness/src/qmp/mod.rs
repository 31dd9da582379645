//! QMP client over the `qapi` crate (tokio, unix socket).
//!
//! Only the commands the harness needs are used, each tested against the real QEMU 10:
//! `qmp_capabilities` (negotiation), `query-status`, `system_powerdown`, `quit`, `set_link`,
//! `stop`, `cont`, `migrate-set-capabilities`, `migrate`, `migrate-incoming` and
//! `query-migrate`. The connection is split with `into_parts()` (not `spawn_tokio()`, which
//! drops events) and a task reads the events, keeping the names of those seen (SHUTDOWN,
//! RESET, STOP, ...).
//!
//! qapi 0.15 carries QEMU 9.1's schema. An event or reply that does not deserialize ends the
//! event stream in `tokio_util`'s framing (the decoder error is final), after which no reply
//! arrives: every command therefore runs under a deadline and reports a closed connection as
//! [`QmpError::Closed`] instead of hanging.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::watch;

/// Per-command deadline (QMP answers in milliseconds; a missing answer is a broken link).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected or the greeting/negotiation failed.
    #[error("cannot connect to QMP socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU answered a command with an error.
    #[error("QMP command {command} failed: {message}")]
    Command {
        /// The QMP command name.
        command: &'static str,
        /// QEMU's error description.
        message: String,
    },
    /// No answer within the deadline.
    #[error("QMP command {command} got no answer within {timeout:?}: is QEMU hung?")]
    Timeout {
        /// The QMP command name.
        command: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// The connection is gone (QEMU exited, or a message could not be decoded).
    #[error("QMP connection closed while running {command} (QEMU exited, or sent a message this qapi schema cannot decode)")]
    Closed {
        /// The QMP command name.
        command: &'static str,
    },
    /// A migration ended in a state other than `completed`.
    #[error("migration {status}: {detail}")]
    Migration {
        /// The final status (`failed`, `cancelled`, ...).
        status: String,
        /// QEMU's error description, if any.
        detail: String,
    },
}

type Writer = QmpStreamTokio<WriteHalf<UnixStream>>;

/// A connected QMP session.
pub struct Qmp {
    service: QapiService<Writer>,
    events: Arc<Mutex<Vec<String>>>,
    closed: watch::Receiver<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("events", &self.events_seen())
            .finish_non_exhaustive()
    }
}

fn event_name(ev: &qmp::Event) -> String {
    // The serde tag is the QMP event name.
    serde_json::to_value(ev)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

impl Qmp {
    /// Connects to QEMU's QMP socket and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let err = |source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let negotiation = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let s = QmpStreamTokio::open_uds(path).await?;
            s.negotiate().await
        })
        .await
        .map_err(|_| err(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
        .map_err(err)?;
        let (service, mut stream) = negotiation.into_parts();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        let name = event_name(&ev);
                        tracing::debug!(event = %name, "QMP event");
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(name);
                    }
                    Err(err) => {
                        tracing::warn!(%err, "QMP stream error (message not decodable?)");
                        break;
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        Ok(Qmp {
            service,
            events,
            closed,
            reader,
        })
    }

    async fn run<C>(&self, command: C) -> Result<C::Ok, QmpError>
    where
        C: qapi::Command + qmp::QmpCommand + serde::Serialize + Send + 'static,
    {
        let name = C::NAME;
        let mut closed = self.closed.clone();
        if *closed.borrow() {
            return Err(QmpError::Closed { command: name });
        }
        let fut = self.service.execute(command);
        tokio::select! {
            r = tokio::time::timeout(COMMAND_TIMEOUT, fut) => match r {
                Err(_) => Err(QmpError::Timeout { command: name, timeout: COMMAND_TIMEOUT }),
                Ok(Ok(v)) => Ok(v),
                Ok(Err(qapi::ExecuteError::Qapi(e))) => Err(QmpError::Command { command: name, message: e.desc }),
                Ok(Err(qapi::ExecuteError::Io(_))) => Err(QmpError::Closed { command: name }),
            },
            _ = closed.wait_for(|c| *c) => Err(QmpError::Closed { command: name }),
        }
    }

    /// The names of the events seen so far, oldest first.
    pub fn events_seen(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// `query-status`: the run state name (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    pub async fn query_status(&self) -> Result<String, QmpError> {
        let info = self.run(qmp::query_status {}).await?;
        Ok(serde_json::to_value(info.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default())
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.run(qmp::system_powerdown {}).await.map(|_| ())
    }

    /// `quit`: QEMU exits at once. The connection closing before the answer counts as success.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.run(qmp::quit {}).await {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `set_link`: sets the link of a NIC (by device id) up or down.
    pub async fn set_link(&self, name: &str, up: bool) -> Result<(), QmpError> {
        self.run(qmp::set_link {
            name: name.to_string(),
            up,
        })
        .await
        .map(|_| ())
    }

    /// `stop`: pauses the guest CPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.run(qmp::stop {}).await.map(|_| ())
    }

    /// `cont`: resumes the guest CPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.run(qmp::cont {}).await.map(|_| ())
    }

    /// `migrate-set-capabilities` with `mapped-ram` on (a bounded file, parallel loads); must
    /// be set identically on the saving and the restoring side.
    pub async fn enable_mapped_ram(&self) -> Result<(), QmpError> {
        self.run(qmp::migrate_set_capabilities {
            capabilities: vec![qmp::MigrationCapabilityStatus {
                capability: qmp::MigrationCapability::mapped_ram,
                state: true,
            }],
        })
        .await
        .map(|_| ())
    }

    /// `migrate` to `file:PATH` (returns once started; see [`Qmp::wait_migration`]).
    pub async fn migrate_to_file(&self, path: &Path) -> Result<(), QmpError> {
        self.run(qmp::migrate {
            uri: Some(format!("file:{}", path.display())),
            channels: None,
            detach: None,
            resume: None,
        })
        .await
        .map(|_| ())
    }

    /// `migrate-incoming` from `file:PATH` (QEMU started with `-incoming defer`).
    pub async fn migrate_incoming_file(&self, path: &Path) -> Result<(), QmpError> {
        self.run(qmp::migrate_incoming {
            uri: Some(format!("file:{}", path.display())),
            channels: None,
            exit_on_error: Some(false),
        })
        .await
        .map(|_| ())
    }

    /// `query-migrate`: the migration status name and error description.
    pub async fn query_migrate(&self) -> Result<(String, Option<String>), QmpError> {
        let info = self.run(qmp::query_migrate {}).await?;
        let status = info
            .status
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "none".to_string());
        Ok((status, info.error_desc))
    }

    /// Polls `query-migrate` until the migration is `completed` (Ok) or ends otherwise (Err),
    /// within `deadline`.
    pub async fn wait_migration(&self, deadline: Duration) -> Result<(), QmpError> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let (status, err) = self.query_migrate().await?;
            match status.as_str() {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(QmpError::Migration {
                        status,
                        detail: err.unwrap_or_default(),
                    })
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= end {
                return Err(QmpError::Timeout {
                    command: "query-migrate",
                    timeout: deadline,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
