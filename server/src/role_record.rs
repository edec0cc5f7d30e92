//! The role a cluster node with leases last had, kept in `data_dir/cluster-role` (its shard
//! group's primary then, and that lease's term), so that a node starting while PostgreSQL
//! cannot be reached starts in it instead of waiting (docs/CLUSTER.md "Starting without
//! PostgreSQL").
//!
//! Nothing here grants writes: a primary started this way takes them only under failsafe,
//! while every replica of its group echoes its pings (so none was promoted meanwhile: a
//! promoted one follows nobody), and once PostgreSQL answers the lease says again who holds
//! it (a primary whose lease is another's starts over as its replica).

use std::path::Path;

use tracing::warn;

use crate::server::Server;

/// The file in the data directory.
const ROLE_FILE: &str = "cluster-role";

/// A recorded role: the id of the node that held this node's group's lease, and its term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The group's primary.
    pub holder: String,
    /// Its lease's term.
    pub term: u64,
}

impl Role {
    fn text(&self) -> String {
        format!("{} {}\n", self.holder, self.term)
    }
}

/// The role recorded in `data_dir`, if any (and readable).
pub fn read(data_dir: &Path) -> Option<Role> {
    let text = std::fs::read_to_string(data_dir.join(ROLE_FILE)).ok()?;
    let (holder, term) = text.trim().split_once(' ')?;
    Some(Role {
        holder: holder.to_owned(),
        term: term.parse().ok()?,
    })
}

/// Records `role` (written whole and synced) unless it is what the file says already.
pub fn record(data_dir: &Path, role: &Role) {
    if read(data_dir).as_ref() == Some(role) {
        return;
    }
    if let Err(error) = crate::durability::replace_file(&data_dir.join(ROLE_FILE), role.text()) {
        warn!(%error, holder = %role.holder, term = role.term, "cannot record this node's role");
    }
}

/// Records the role the layout in force gives this node's group.
pub fn record_current(server: &Server) {
    let Some(layout) = server.layout() else {
        return;
    };
    let holder = layout.primary_of_group(layout.myself().group);
    let role = Role {
        holder: layout.nodes[holder].id.clone(),
        term: layout.nodes[holder].epoch,
    };
    record(&server.config.server.data_dir, &role);
}

/// Whether `data_dir` holds data of its own (a log or a snapshot): a node without any must
/// wait for PostgreSQL, which restores it.
pub fn has_local_data(data_dir: &Path) -> bool {
    ["wal", "snapshots"].iter().any(|dir| {
        std::fs::read_dir(data_dir.join(dir)).is_ok_and(|mut entries| entries.next().is_some())
    })
}

/// The role to start in if PostgreSQL cannot be reached: the recorded one, for a cluster
/// node with leases and data of its own.
pub fn fallback(server: &Server) -> Option<Role> {
    let data_dir = &server.config.server.data_dir;
    if server.cluster.is_none() || !has_local_data(data_dir) {
        return None;
    }
    read(data_dir)
}
