//! `CLUSTER`: what a cluster-aware client or `redis-cli` asks first, in Redis's formats.
//! Without `[cluster] enabled`, every subcommand gets Redis's answer for a server without
//! cluster support. Routing, replicas and the other subcommands come with the cluster work.

use std::fmt::Write as _;

use protocol::cmd::ClusterCommand;
use protocol::{CommandError, Reply};

use crate::server::Server;

/// Runs a CLUSTER subcommand.
pub fn run(command: ClusterCommand, server: &Server) -> Result<Reply, CommandError> {
    let Some(layout) = server.layout() else {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    };
    Ok(match command {
        ClusterCommand::KeySlot(key) => Reply::Integer(i64::from(cluster::key_slot(&key))),
        ClusterCommand::MyId => Reply::text(layout.myself().id.clone()),
        ClusterCommand::Info => Reply::text(info(&layout)),
        ClusterCommand::Slots => slots(&layout),
        ClusterCommand::Shards => shards(&layout, server),
        ClusterCommand::Nodes => Reply::text(nodes(&layout, &server.slots)),
        ClusterCommand::CountKeysInSlot(slot) => {
            Reply::Integer(keys_in_slot(server, slot, u64::MAX).len() as i64)
        }
        ClusterCommand::GetKeysInSlot(slot, count) => Reply::Array(
            keys_in_slot(server, slot, count)
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
        ClusterCommand::Failover(mode) => manual_failover(server, &layout, mode)?,
        ClusterCommand::Members => Reply::text(cluster::Members::of(&layout).to_text()),
        ClusterCommand::Handover(id) => handover(server, &layout, &id)?,
        // Run by their pre-step (crate::migration, crate::membership), which cmd::run
        // replies for.
        ClusterCommand::SetSlot(..)
        | ClusterCommand::Meet(..)
        | ClusterCommand::Forget(_)
        | ClusterCommand::Reset
        | ClusterCommand::Member(_)
        | ClusterCommand::Replicate(_) => {
            return Err(CommandError::err(
                "this CLUSTER subcommand ran without its step",
            ))
        }
        ClusterCommand::Help => super::introspection::help_reply(HELP),
        ClusterCommand::NotYet(sub) => {
            return Err(CommandError::err(format!(
                "CLUSTER {} is not implemented yet; CLUSTER HELP lists what is",
                sub.to_ascii_uppercase()
            )))
        }
    })
}

/// `CLUSTER FAILOVER [FORCE|TAKEOVER]` on a replica: the failover job does it; the reply is
/// `+OK` at once, as Redis's (ROLE and INFO show when it is done).
fn manual_failover(
    server: &Server,
    layout: &cluster::Layout,
    mode: protocol::cmd::FailoverMode,
) -> Result<Reply, CommandError> {
    if layout.myself().replica_of.is_none() {
        return Err(CommandError::err(
            "You should send CLUSTER FAILOVER to a replica",
        ));
    }
    if !server.failover.leased() {
        return Err(CommandError::err(
            "CLUSTER FAILOVER needs the shard groups' leases: configure [postgres] on every node",
        ));
    }
    server.failover.ask(crate::failover::Manual::Failover(mode));
    Ok(Reply::ok())
}

/// `CLUSTER HANDOVER node-id` (cartd's own, from a replica running CLUSTER FAILOVER): stops
/// writes here at once; the failover job waits for that replica to hold every record, hands
/// it the lease and starts this node over as its replica.
fn handover(server: &Server, layout: &cluster::Layout, id: &[u8]) -> Result<Reply, CommandError> {
    let id = String::from_utf8_lossy(id).into_owned();
    let replica = layout
        .index_of(&id)
        .filter(|&at| layout.nodes[at].replica_of == Some(layout.me));
    if replica.is_none() {
        return Err(CommandError::err(format!(
            "{id} is not a replica of this node"
        )));
    }
    if !server.failover.leased() {
        return Err(CommandError::err(
            "CLUSTER HANDOVER needs the shard groups' leases: configure [postgres]",
        ));
    }
    server.failover.ask(crate::failover::Manual::Handover(id));
    Ok(Reply::ok())
}

/// `CLUSTER INFO`, Redis's fields. The state is `ok` when every slot has a primary (Redis's
/// cluster-require-full-coverage); the epochs are the lease terms (0 without PostgreSQL).
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
        format!("cluster_known_nodes:{}", layout.known().count()),
        format!("cluster_size:{size}"),
        format!("cluster_current_epoch:{}", layout.current_epoch()),
        format!("cluster_my_epoch:{}", layout.myself().epoch),
        "cluster_stats_messages_sent:0".to_owned(),
        "cluster_stats_messages_received:0".to_owned(),
        "total_cluster_links_buffer_limit_exceeded:0".to_owned(),
    ];
    lines.join("\r\n") + "\r\n"
}

/// Up to `count` carts of `slot` held here: in cluster mode the store keeps carts ordered by
/// slot, so this reads that slot's carts only.
fn keys_in_slot(server: &Server, slot: u16, count: u64) -> Vec<bytes::Bytes> {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    server
        .store
        .keys_in_slot(slot, count, crate::server::now_ms())
}

/// A node as CLUSTER SLOTS lists it: ip, port, id, and its (empty) metadata.
fn slots_node(node: &cluster::Node) -> Reply {
    Reply::Array(vec![
        Reply::text(node.host.clone()),
        Reply::Integer(i64::from(node.port)),
        Reply::text(node.id.clone()),
        Reply::Array(Vec::new()),
    ])
}

/// `CLUSTER SLOTS`: each range of slots with its primary, then its replicas.
fn slots(layout: &cluster::Layout) -> Reply {
    let mut ranges: Vec<(u16, u16, usize)> = layout
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(at, node)| {
            node.ranges
                .iter()
                .map(move |range| (*range.start(), *range.end(), at))
        })
        .collect();
    ranges.sort_unstable();
    let entries = ranges
        .into_iter()
        .map(|(start, end, at)| {
            let mut entry = vec![
                Reply::Integer(i64::from(start)),
                Reply::Integer(i64::from(end)),
                slots_node(&layout.nodes[at]),
            ];
            entry.extend(
                layout
                    .replicas_of(at)
                    .map(|replica| slots_node(&layout.nodes[replica])),
            );
            Reply::Array(entry)
        })
        .collect();
    Reply::Array(entries)
}

/// `CLUSTER SHARDS`: each primary with its slots, then the nodes of its shard (itself and
/// its replicas) with their role, offset and health.
fn shards(layout: &cluster::Layout, server: &Server) -> Reply {
    let my_offset = server
        .durability
        .get()
        .map_or(0, |durability| durability.wal.last_lsn());
    let followers = server.replication.followers();
    let describe = |at: usize, role: &'static str| {
        let node = &layout.nodes[at];
        // Known here: this node's own LSN, and what its replicas acknowledged.
        let offset = if at == layout.me {
            my_offset
        } else if node.replica_of == Some(layout.me) {
            followers
                .iter()
                .find(|follower| follower.port == node.port)
                .map_or(0, |follower| follower.acked_lsn)
        } else {
            0
        };
        Reply::Map(vec![
            (Reply::from_static("id"), Reply::text(node.id.clone())),
            (
                Reply::from_static("port"),
                Reply::Integer(i64::from(node.port)),
            ),
            (Reply::from_static("ip"), Reply::text(node.host.clone())),
            (
                Reply::from_static("endpoint"),
                Reply::text(node.host.clone()),
            ),
            (Reply::from_static("role"), Reply::from_static(role)),
            (
                Reply::from_static("replication-offset"),
                Reply::Integer(i64::try_from(offset).unwrap_or(i64::MAX)),
            ),
            (Reply::from_static("health"), Reply::from_static("online")),
        ])
    };
    let shards = layout
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.replica_of.is_none() && !node.forgotten)
        .map(|(at, node)| {
            let slots = node
                .ranges
                .iter()
                .flat_map(|range| {
                    [
                        Reply::Integer(i64::from(*range.start())),
                        Reply::Integer(i64::from(*range.end())),
                    ]
                })
                .collect();
            let mut members = vec![describe(at, "master")];
            members.extend(
                layout
                    .replicas_of(at)
                    .map(|replica| describe(replica, "replica")),
            );
            Reply::Map(vec![
                (Reply::from_static("slots"), Reply::Array(slots)),
                (Reply::from_static("nodes"), Reply::Array(members)),
            ])
        })
        .collect();
    Reply::Array(shards)
}

/// `CLUSTER NODES`: a line per node, Redis's fields (`id ip:port@busport flags primary
/// ping-sent pong-recv epoch link slots...`, the epoch its group's lease term); the bus port
/// is Redis's convention, port + 10000 (cartd has no cluster bus).
fn nodes(layout: &cluster::Layout, slots: &crate::migration::Slots) -> String {
    let mut out = String::new();
    for (at, node) in layout.nodes.iter().enumerate() {
        if node.forgotten {
            continue;
        }
        let role = if node.replica_of.is_some() {
            "slave"
        } else {
            "master"
        };
        let flags = if at == layout.me {
            format!("myself,{role}")
        } else {
            role.to_owned()
        };
        let primary = node.replica_of.map_or_else(
            || "-".to_owned(),
            |primary| layout.nodes[primary].id.clone(),
        );
        let bus_port = u32::from(node.port) + 10_000;
        let _ = write!(
            out,
            "{} {}:{}@{bus_port} {flags} {primary} 0 0 {} connected",
            node.id, node.host, node.port, node.epoch
        );
        for range in &node.ranges {
            if range.start() == range.end() {
                let _ = write!(out, " {}", range.start());
            } else {
                let _ = write!(out, " {}-{}", range.start(), range.end());
            }
        }
        if at == layout.me {
            // Slots being moved, as Redis shows them on the node moving them.
            for (slot, open) in slots.open_slots() {
                let _ = match open {
                    crate::migration::Open::Migrating(to) => {
                        write!(out, " [{slot}->-{}]", layout.nodes[to].id)
                    }
                    crate::migration::Open::Importing(from) => {
                        write!(out, " [{slot}-<-{}]", layout.nodes[from].id)
                    }
                };
            }
        }
        out.push('\n');
    }
    out
}

/// CLUSTER HELP.
const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "FAILOVER [FORCE|TAKEOVER]",
    "    On a replica: take over its shard group's slots (planned: with the primary, losing",
    "    nothing; FORCE: without it, once its lease lapses; TAKEOVER: at once, writes waiting",
    "    out one lease).",
    "HANDOVER <node-id>",
    "    On a primary (sent by a replica's CLUSTER FAILOVER): stop writes, hand the lease over.",
    "INFO",
    "    Return information about the cluster.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "MEET <ip> <port> [<bus-port>]",
    "    Join the node at <ip>:<port> and this one into one cluster (the one knowing no other",
    "    node joins the other's).",
    "FORGET <node-id>",
    "    Remove <node-id> (serving no slots) from the nodes this node knows.",
    "RESET [HARD|SOFT]",
    "    Forget every other node and serve no slot (a node holding carts of its own refuses).",
    "REPLICATE <node-id>",
    "    Follow <node-id>'s shard group: its own group's primary (nothing changes), or another",
    "    group's, for a node serving no slots (it starts over as that group's replica).",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "HELP",
    "    Print this help.",
];
