//! `ulxc destroy`: removes a stopped container, including the files its mapped ids own,
//! from inside its user namespace, without following links out of its directory.

use super::create::{container_idmap, remove_container_dir};
use super::paths::{Caller, ContainerDir};
use super::state::{self, State};
use super::stop;
use super::ContainerError;
use crate::config;
use crate::idmap::{self, IdMap};

/// Destroys container `dir`; with `force`, a running container is killed first.
pub fn destroy(dir: &ContainerDir, caller: &Caller, force: bool) -> Result<(), ContainerError> {
    if state::observe(dir).state != State::Stopped {
        if !force {
            return Err(ContainerError::Running {
                name: dir.name.clone(),
                extra: ", or destroy it with -f to kill it first".into(),
            });
        }
        stop::stop(dir, 0, true)?;
    }
    // The container's own map if its config still loads; else the user's default one,
    // so that even a container with a corrupt config can be removed.
    let map = match config::load(&dir.config()) {
        Ok(cfg) => container_idmap(&cfg, caller)?,
        Err(e) => {
            tracing::warn!(%e, "the container's config does not load; removing with your default id map");
            let uid = idmap::subuid_ranges(&caller.name, caller.uid)?;
            let gid = idmap::subgid_ranges(&caller.name, caller.uid)?;
            IdMap::from_subids(&uid, &gid)?
        }
    };
    remove_container_dir(dir, &map, caller)
}
