//! Containers: the on-disk layout, names, run state, and the lifecycle commands
//! (`create`, `start`, `stop`, `destroy`, `ls`, `info`, `wait`, `execute`).

pub mod create;
pub mod destroy;
pub mod info;
pub mod name;
pub mod paths;
pub mod setup;
pub mod start;
pub mod state;
pub mod stop;

pub use paths::{Caller, ContainerDir};
pub use state::State;

/// Everything that can go wrong with a container command.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The command line was wrong.
    #[error("{0}")]
    Usage(String),
    /// A bad container name.
    #[error(transparent)]
    Name(#[from] name::NameError),
    /// The container directory (`-P`) cannot be used.
    #[error("cannot use the container directory {path}: {why}; {hint}")]
    Lxcpath {
        /// The directory, `~` for home.
        path: String,
        /// Why not.
        why: String,
        /// What to do.
        hint: String,
    },
    /// No such container.
    #[error("container {name} does not exist in {lxcpath}{hint}")]
    NotFound {
        /// The name.
        name: String,
        /// Where it was looked for.
        lxcpath: String,
        /// Where it was found instead, if anywhere.
        hint: String,
    },
    /// The container exists already.
    #[error(
        "container {name} already exists in {lxcpath}; destroy it first or choose another name"
    )]
    Exists {
        /// The name.
        name: String,
        /// Where.
        lxcpath: String,
    },
    /// The container must be stopped for this.
    #[error("container {name} is running; stop it first (ulxc stop -n {name}){extra}")]
    Running {
        /// The name.
        name: String,
        /// More advice.
        extra: String,
    },
    /// The container must run for this.
    #[error("container {name} is not running; start it first (ulxc start -n {name})")]
    NotRunning {
        /// The name.
        name: String,
    },
    /// Another start of the container is under way or it runs.
    #[error("container {name} is already being started or running (its monitor holds {lock})")]
    Busy {
        /// The name.
        name: String,
        /// The lock file.
        lock: String,
    },
    /// The configuration is wrong.
    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
    /// The id mapping is wrong or cannot be written.
    #[error(transparent)]
    IdMap(Box<crate::idmap::IdMapError>),
    /// Building or removing a rootfs failed.
    #[error(transparent)]
    Image(Box<crate::image::ImageError>),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(Box<crate::cgroup::CgroupError>),
    /// The container's network could not be set up.
    #[error(transparent)]
    Net(Box<crate::net::NetError>),
    /// The download template failed (index, transfer, signature, cache).
    #[error(transparent)]
    Download(Box<crate::image::download::DownloadError>),
    /// Running in a user namespace failed.
    #[error(transparent)]
    Userns(Box<crate::userns::UsernsError>),
    /// The container could not be started.
    #[error("cannot start container {name}: {why}")]
    Start {
        /// The name.
        name: String,
        /// Why.
        why: String,
    },
    /// Something the configuration asks for is not available.
    #[error("{0}")]
    Unsupported(String),
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A wait ran out of time.
    #[error("{0}")]
    Timeout(String),
}

/// Builds a [`ContainerError::Io`] with context.
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Resolves `-P`/`-n` into a container directory that must exist; when it does not, the
/// error says where else the user has containers of that name.
pub fn existing(
    lxcpath: &std::path::Path,
    name_arg: &str,
    caller: &Caller,
) -> Result<ContainerDir, ContainerError> {
    name::validate(name_arg)?;
    let dir = ContainerDir::new(lxcpath, name_arg);
    if dir.exists() {
        return Ok(dir);
    }
    let elsewhere: Vec<String> = paths::known_lxcpaths(caller)
        .into_iter()
        .filter(|p| p.as_path() != lxcpath && ContainerDir::new(p, name_arg).exists())
        .map(|p| caller.tilde(&p))
        .collect();
    if elsewhere.is_empty() && !lxcpath.is_dir() {
        paths::check_lxcpath(lxcpath, caller, false)?;
    }
    let hint = if elsewhere.is_empty() {
        "; `ulxc ls` lists the containers there".to_string()
    } else {
        format!(
            "; it exists in {}: add -P {}",
            elsewhere.join(", "),
            elsewhere[0]
        )
    };
    Err(ContainerError::NotFound {
        name: name_arg.to_string(),
        lxcpath: caller.tilde(lxcpath),
        hint,
    })
}

impl From<crate::config::ConfigError> for ContainerError {
    fn from(e: crate::config::ConfigError) -> Self {
        ContainerError::Config(Box::new(e))
    }
}

impl From<crate::idmap::IdMapError> for ContainerError {
    fn from(e: crate::idmap::IdMapError) -> Self {
        ContainerError::IdMap(Box::new(e))
    }
}

impl From<crate::image::ImageError> for ContainerError {
    fn from(e: crate::image::ImageError) -> Self {
        ContainerError::Image(Box::new(e))
    }
}

impl From<crate::cgroup::CgroupError> for ContainerError {
    fn from(e: crate::cgroup::CgroupError) -> Self {
        ContainerError::Cgroup(Box::new(e))
    }
}

impl From<crate::net::NetError> for ContainerError {
    fn from(e: crate::net::NetError) -> Self {
        ContainerError::Net(Box::new(e))
    }
}

impl From<crate::userns::UsernsError> for ContainerError {
    fn from(e: crate::userns::UsernsError) -> Self {
        ContainerError::Userns(Box::new(e))
    }
}

impl From<crate::image::download::DownloadError> for ContainerError {
    fn from(e: crate::image::download::DownloadError) -> Self {
        ContainerError::Download(Box::new(e))
    }
}
