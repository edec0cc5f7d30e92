//! `CLUSTER`: what a cluster-aware client or `redis-cli` asks first, in Redis's formats.
//! Without `[cluster] enabled`, every subcommand gets Redis's answer for a server without
//! cluster support. Routing, replicas and the other subcommands come with the cluster work.

use protocol::cmd::ClusterCommand;
use protocol::{CommandError, Reply};

use crate::server::Server;

/// Runs a CLUSTER subcommand.
pub fn run(command: ClusterCommand, server: &Server) -> Result<Reply, CommandError> {
    let Some(layout) = &server.cluster else {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    };
    Ok(match command {
        ClusterCommand::KeySlot(key) => Reply::Integer(i64::from(cluster::key_slot(&key))),
        ClusterCommand::MyId => Reply::text(layout.myself().id.clone()),
        ClusterCommand::Info => Reply::text(info(layout)),
        ClusterCommand::Help => super::introspection::help_reply(HELP),
        ClusterCommand::NotYet(sub) => {
            return Err(CommandError::err(format!(
                "CLUSTER {} is not implemented yet; CLUSTER HELP lists what is",
                sub.to_ascii_uppercase()
            )))
        }
    })
}

/// `CLUSTER INFO`, Redis's fields. The state is `ok` when every slot has a primary (Redis's
/// cluster-require-full-coverage); epochs are 0 until the layout can change at run time.
fn info(layout: &cluster::Layout) -> String {
    let assigned = layout.assigned_slots();
    let state = if assigned == usize::from(cluster::SLOTS) {
        "ok"
    } else {
        "fail"
    };
    let size = layout
        .nodes
        .iter()
        .filter(|node| !node.ranges.is_empty())
        .count();
    let lines = [
        "cluster_enabled:1".to_owned(),
        format!("cluster_state:{state}"),
        format!("cluster_slots_assigned:{assigned}"),
        format!("cluster_slots_ok:{assigned}"),
        "cluster_slots_pfail:0".to_owned(),
        "cluster_slots_fail:0".to_owned(),
        format!("cluster_known_nodes:{}", layout.nodes.len()),
        format!("cluster_size:{size}"),
        "cluster_current_epoch:0".to_owned(),
        "cluster_my_epoch:0".to_owned(),
        "cluster_stats_messages_sent:0".to_owned(),
        "cluster_stats_messages_received:0".to_owned(),
        "total_cluster_links_buffer_limit_exceeded:0".to_owned(),
    ];
    lines.join("\r\n") + "\r\n"
}

/// CLUSTER HELP.
const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "HELP",
    "    Print this help.",
];
