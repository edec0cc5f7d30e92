//! Adding and removing nodes at run time, as `redis-cli --cluster add-node` and `del-node` do
//! it (docs/CLUSTER.md "Adding and removing nodes"): `CLUSTER MEET`, `CLUSTER FORGET`,
//! `CLUSTER RESET` and `CLUSTER REPLICATE` of another shard group.
//!
//! A node that knows no other and serves no slot joins the cluster of the node it meets: it
//! takes that node's members (`CLUSTER MEMBERS`), records itself in PostgreSQL's
//! `cluster_nodes` when there is one, and tells every node of itself (`CLUSTER MEMBER`,
//! again in the background for one that did not answer). Every node with PostgreSQL follows
//! that table with the leases, so one that was down learns of it too. Each node keeps what
//! it knows in `data_dir/cluster-members`, which stands in for config.toml's nodes.
//!
//! A node changing shard group (an empty primary, or a replica) and a replica reset out of
//! the cluster start over (the process executes itself again, as a demoted primary does) a
//! moment after the reply, their data set aside: a replica's log is its group's.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster::{Layout, Members, NodeConfig};
use protocol::cmd::ClusterCommand;
use protocol::{CommandError, Reply};
use tracing::{info, warn};

use crate::peers::wire::Value;
use crate::server::{now_ms, Server};

/// How long after its reply a node changing group or reset starts over: the client that
/// asked (redis-cli sends CLUSTER FORGET right after CLUSTER REPLICATE) is answered first.
const START_OVER_AFTER_MS: u64 = 1_000;

/// How often a node retries telling another of itself.
const TELL_RETRY_MS: u64 = 1_000;

/// The file that asks the next start to set this node's data aside (its content: `reset`,
/// or `rejoin` for a node changing shard group, which keeps the slot moves it was told of).
const SET_ASIDE_FILE: &str = "set-aside-at-start";

/// Whether `raw` is a CLUSTER subcommand run here (after its pre-step).
pub fn needs_pre_step(raw: &[Bytes]) -> bool {
    raw.get(1).is_some_and(|sub| {
        [&b"MEET"[..], b"FORGET", b"RESET", b"MEMBER", b"REPLICATE"]
            .iter()
            .any(|name| sub.eq_ignore_ascii_case(name))
    })
}

/// Runs a membership subcommand.
pub async fn run(server: &Arc<Server>, command: ClusterCommand) -> Result<Reply, CommandError> {
    if server.cluster.is_none() {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    }
    match command {
        ClusterCommand::Meet(host, port) => {
            meet(server, &String::from_utf8_lossy(&host), port).await
        }
        ClusterCommand::Member(entry) => member(server, &entry).await,
        ClusterCommand::Forget(id) => forget(server, &String::from_utf8_lossy(&id)).await,
        ClusterCommand::Reset => reset(server).await,
        ClusterCommand::Replicate(id) => replicate(server, &String::from_utf8_lossy(&id)).await,
        _ => Err(CommandError::err("not a membership command")),
    }
}

fn layout(server: &Server) -> Arc<Layout> {
    server.layout().expect("cluster mode")
}

fn err(text: impl Into<String>) -> CommandError {
    CommandError::err(text.into())
}

/// This node's entry, as config.toml would have it, in `layout`'s group `replica_of`.
fn my_entry(layout: &Layout, replica_of: Option<String>) -> NodeConfig {
    let me = layout.myself();
    NodeConfig {
        id: me.id.clone(),
        addr: me.addr(),
        slots: Vec::new(),
        replica_of,
        region: me.region.clone(),
    }
}

fn entry_text(entry: &NodeConfig) -> String {
    toml::to_string(entry).expect("an entry is plain TOML")
}

/// `CLUSTER MEET host port`.
async fn meet(server: &Arc<Server>, host: &str, port: u16) -> Result<Reply, CommandError> {
    let addr = format!("{host}:{port}");
    let known = layout(server);
    if known.known().any(|at| {
        let node = &known.nodes[at];
        node.addr() == addr || node.dial_addr() == addr
    }) {
        return Ok(Reply::ok());
    }
    let theirs = fetch_members(&addr).await?;
    let they_are_alone = theirs.nodes.len() == 1 && theirs.nodes[0].slots.is_empty();
    if known.alone() && known.myself().ranges.is_empty() {
        join(server, theirs).await?;
        return Ok(Reply::ok());
    }
    if they_are_alone {
        // The other way round: that node joins this one's cluster.
        let me = known.myself();
        let port = me.port.to_string();
        let reply = crate::peers::link::call_once(
            &addr,
            &[b"CLUSTER", b"MEET", me.host.as_bytes(), port.as_bytes()],
        )
        .await
        .map_err(|why| err(format!("cannot reach {addr}: {why}")))?;
        return match reply {
            Value::Error(error) => Err(err(error.trim_start_matches("ERR ").to_owned())),
            _ => Ok(Reply::ok()),
        };
    }
    Err(err(format!(
        "this node and {addr} both belong to clusters (or serve slots): only a node that knows \
         no other and serves no slot joins a cluster"
    )))
}

/// What the node at `addr` knows (`CLUSTER MEMBERS`).
async fn fetch_members(addr: &str) -> Result<Members, CommandError> {
    let reply = crate::peers::link::call_once(addr, &[b"CLUSTER", b"MEMBERS"])
        .await
        .map_err(|why| err(format!("cannot reach {addr}: {why}")))?;
    match reply {
        Value::Bulk(Some(text)) => Members::parse(&String::from_utf8_lossy(&text))
            .map_err(|why| err(format!("{addr} sent members that do not parse: {why}"))),
        Value::Error(error) => Err(err(format!("{addr} is no cartd cluster node: {error}"))),
        other => Err(err(format!(
            "{addr} answered CLUSTER MEMBERS with {other:?}"
        ))),
    }
}

/// This node, alone, joins the cluster whose members are `theirs`.
async fn join(server: &Arc<Server>, mut theirs: Members) -> Result<(), CommandError> {
    let known = layout(server);
    let entry = my_entry(&known, None);
    if theirs.nodes.iter().any(|node| node.id == entry.id) {
        return Err(err(format!(
            "that cluster has a node named {} already: give this node another node_id",
            entry.id
        )));
    }
    theirs.nodes.push(entry.clone());
    let joined = theirs
        .layout(&server.config.cluster)
        .map_err(|why| err(format!("cannot join that cluster: {why}")))?;
    let text = entry_text(&entry);
    if let Ok(pool) = crate::failover::pool_of(server) {
        persistence::sink::lease::record_member(&pool, &entry.id, &text, false)
            .await
            .map_err(|why| err(format!("cannot record this node in PostgreSQL: {why}")))?;
    }
    let topology = server.cluster.as_ref().expect("cluster mode");
    topology.update(|_| Some(joined));
    save(server)?;
    if let Ok(pool) = crate::failover::pool_of(server) {
        if let Ok(leases) = persistence::sink::lease::leases(&pool).await {
            crate::failover::apply_leases(server, &leases, true);
        }
    }
    follow(server);
    let layout = layout(server);
    let count = layout.known().count();
    info!(nodes = count, "this node joined the cluster (CLUSTER MEET)");
    tell_everyone(server, &layout, text).await;
    Ok(())
}

/// Tells every other node of `layout` this node's entry `text`; a node that does not take it
/// now is told again in the background until it does (or is no longer known).
async fn tell_everyone(server: &Arc<Server>, layout: &Layout, text: String) {
    let others: Vec<String> = layout
        .known()
        .filter(|&at| at != layout.me)
        .map(|at| layout.nodes[at].id.clone())
        .collect();
    let tries = others.iter().map(|id| tell(server, id, &text));
    let told = futures_util::future::join_all(tries).await;
    for (id, told) in others.into_iter().zip(told) {
        if told {
            continue;
        }
        warn!(node = %id, "a node did not take this node's entry; telling it again in the background");
        let server = server.clone();
        let text = text.clone();
        server.tasks.clone().spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(TELL_RETRY_MS)) => {}
                    () = server.shutdown.cancelled() => return,
                }
                if tell(&server, &id, &text).await {
                    return;
                }
            }
        });
    }
}

/// Tells node `id` this node's entry `text`; whether it took it (or is no longer known).
async fn tell(server: &Server, id: &str, text: &str) -> bool {
    let layout = layout(server);
    let Some(at) = layout.index_of(id) else {
        return true;
    };
    let addr = layout.nodes[at].dial_addr();
    match crate::peers::link::call_once(&addr, &[b"CLUSTER", b"MEMBER", text.as_bytes()]).await {
        Ok(Value::Simple(_)) => true,
        Ok(other) => {
            warn!(node = %id, reply = ?other, "a node refused this node's entry");
            false
        }
        Err(_) => false,
    }
}

/// `CLUSTER MEMBER entry`: another node joined or changed.
async fn member(server: &Arc<Server>, entry: &[u8]) -> Result<Reply, CommandError> {
    let entry: NodeConfig = toml::from_str(&String::from_utf8_lossy(entry))
        .map_err(|why| err(format!("the member entry does not parse: {why}")))?;
    if entry.id == layout(server).myself().id {
        return Ok(Reply::ok());
    }
    put_member(server, &entry).map_err(err)?;
    Ok(Reply::ok())
}

/// Puts `entry` in this node's layout, its file and its links; whether it changed anything.
fn put_member(server: &Arc<Server>, entry: &NodeConfig) -> Result<bool, String> {
    let changed = change_layout(server, |layout| {
        layout.with_member(entry).map_err(|why| why.to_string())
    })?;
    if changed {
        info!(node = %entry.id, addr = %entry.addr, replica_of = ?entry.replica_of, "a cluster member joined or changed");
    }
    Ok(changed)
}

/// Puts in force what `change` makes of the layout (nothing for `Ok(None)`), then this
/// node's file and links follow; whether it changed.
fn change_layout(
    server: &Arc<Server>,
    change: impl FnOnce(&Layout) -> Result<Option<Layout>, String>,
) -> Result<bool, String> {
    let topology = server.cluster.as_ref().expect("cluster mode");
    let mut refused = None;
    let changed = topology.update(|layout| match change(layout) {
        Ok(next) => next,
        Err(why) => {
            refused = Some(why);
            None
        }
    });
    if let Some(why) = refused {
        return Err(why);
    }
    if changed {
        save(server).map_err(|error| error.message)?;
        follow(server);
    }
    Ok(changed)
}

/// `CLUSTER FORGET id`.
async fn forget(server: &Arc<Server>, id: &str) -> Result<Reply, CommandError> {
    let known = layout(server);
    let Some(at) = known.index_of(id) else {
        // Forgotten already: another node's FORGET reached this one first through PostgreSQL
        // (del-node sends FORGET to every node in turn). Done, as asked.
        if forgotten_already(server, &known, id).await {
            return Ok(Reply::ok());
        }
        return Err(err(format!("Unknown node {id}")));
    };
    known.without_member(id).map_err(err)?;
    let node = &known.nodes[at];
    let entry = NodeConfig {
        id: node.id.clone(),
        addr: node.addr(),
        slots: Vec::new(),
        replica_of: None,
        region: node.region.clone(),
    };
    if let Ok(pool) = crate::failover::pool_of(server) {
        persistence::sink::lease::record_member(&pool, id, &entry_text(&entry), true)
            .await
            .map_err(|why| err(format!("cannot record the forgetting in PostgreSQL: {why}")))?;
    }
    forget_here(server, id).map_err(err)?;
    Ok(Reply::ok())
}

/// Whether node `id` was a member and is forgotten: in this process's layout, or in
/// PostgreSQL's `cluster_nodes`.
async fn forgotten_already(server: &Arc<Server>, known: &Layout, id: &str) -> bool {
    if known
        .nodes
        .iter()
        .any(|node| node.id == id && node.forgotten)
    {
        return true;
    }
    let Ok(pool) = crate::failover::pool_of(server) else {
        return false;
    };
    persistence::sink::lease::member_rows(&pool)
        .await
        .is_ok_and(|rows| {
            rows.iter()
                .any(|(node, _, forgotten)| node == id && *forgotten)
        })
}

/// Forgets node `id` in this node's layout, file and links.
fn forget_here(server: &Arc<Server>, id: &str) -> Result<bool, String> {
    let changed = change_layout(server, |layout| layout.without_member(id))?;
    if changed {
        info!(node = %id, "a cluster member is forgotten");
    }
    Ok(changed)
}

/// `CLUSTER RESET [SOFT|HARD]`.
async fn reset(server: &Arc<Server>) -> Result<Reply, CommandError> {
    let known = layout(server);
    let me = known.myself();
    if known.alone() && me.ranges.is_empty() {
        return Ok(Reply::ok());
    }
    if !me.ranges.is_empty() {
        return Err(err(
            "this node serves slots: move them to another primary first (redis-cli --cluster \
             reshard), then reset it",
        ));
    }
    let replica = me.replica_of.is_some();
    if !replica && !server.store.is_empty() {
        return Err(err(
            "CLUSTER RESET can't be called with master nodes containing keys",
        ));
    }
    if let Ok(pool) = crate::failover::pool_of(server) {
        let entry = my_entry(&known, None);
        persistence::sink::lease::record_member(&pool, &me.id, &entry_text(&entry), true)
            .await
            .map_err(|why| err(format!("cannot record the reset in PostgreSQL: {why}")))?;
    }
    let alone = known.reset();
    if replica {
        // Its data is its group's: set aside at the next start, and it starts over alone.
        write_members(server, &alone)?;
        ask_set_aside(server, "reset")?;
        start_over_soon(server, "CLUSTER RESET");
    } else {
        let topology = server.cluster.as_ref().expect("cluster mode");
        topology.update(|_| Some(alone));
        save(server)?;
        follow(server);
    }
    info!("this node is reset: it knows no other node");
    Ok(Reply::ok())
}

/// `CLUSTER REPLICATE id`: its own group's primary (nothing changes), or another group's
/// for a node that serves no slots and holds no carts of its own.
async fn replicate(server: &Arc<Server>, id: &str) -> Result<Reply, CommandError> {
    let known = layout(server);
    let Some(target) = known.index_of(id) else {
        return Err(err(format!("Unknown node {id}")));
    };
    let me = known.myself();
    if target == known.me {
        return Err(err("Can't replicate myself"));
    }
    if known.nodes[target].replica_of.is_some() {
        return Err(err("I can only replicate a master, not a replica."));
    }
    let empty_error = "To set a master the node must be empty and without assigned slots.";
    if known.nodes[target].group == me.group {
        if me.replica_of.is_none() {
            return Err(err(empty_error));
        }
        return Ok(Reply::ok());
    }
    if !me.ranges.is_empty() || (me.replica_of.is_none() && !server.store.is_empty()) {
        return Err(err(empty_error));
    }
    let group = known.group_name(known.nodes[target].group).to_owned();
    let entry = my_entry(&known, Some(group.clone()));
    let next = known
        .with_member(&entry)
        .map_err(|why| err(why.to_string()))?
        .unwrap_or_else(|| (*known).clone());
    let text = entry_text(&entry);
    if let Ok(pool) = crate::failover::pool_of(server) {
        persistence::sink::lease::record_member(&pool, &me.id, &text, false)
            .await
            .map_err(|why| err(format!("cannot record the change in PostgreSQL: {why}")))?;
    }
    // No more lease renewals or reports of this node's own log until it starts over.
    server
        .failover
        .start_over_pending
        .store(true, Ordering::Release);
    write_members(server, &next)?;
    ask_set_aside(server, "rejoin")?;
    server
        .cluster
        .as_ref()
        .expect("cluster mode")
        .update(|_| Some(next.clone()));
    tell_everyone(server, &next, text).await;
    info!(%group, "this node becomes a replica of another shard group: starting over");
    start_over_soon(server, "CLUSTER REPLICATE");
    Ok(Reply::ok())
}

/// PostgreSQL's `cluster_nodes` rows (read with the leases), put in this node's layout.
/// A node that knows no other (new, or reset) joins only by CLUSTER MEET, and a row about
/// this node itself is its own business.
pub fn apply_rows(server: &Arc<Server>, rows: &[persistence::sink::lease::MemberRow]) {
    for (node, entry, forgotten) in rows {
        let known = layout(server);
        if known.alone() || *node == known.myself().id {
            continue;
        }
        if *forgotten {
            if known.index_of(node).is_some() {
                if let Err(why) = forget_here(server, node) {
                    tracing::debug!(%node, %why, "a node PostgreSQL has as forgotten stays known here");
                }
            }
            continue;
        }
        match toml::from_str::<NodeConfig>(entry) {
            Ok(entry) => {
                if let Err(why) = put_member(server, &entry) {
                    tracing::debug!(%node, %why, "a member PostgreSQL has is not taken here");
                }
            }
            Err(why) => warn!(%node, %why, "a cluster_nodes row does not parse"),
        }
    }
}

/// Writes what this node knows now to its file.
fn save(server: &Server) -> Result<(), CommandError> {
    write_members(server, &layout(server))
}

fn write_members(server: &Server, layout: &Layout) -> Result<(), CommandError> {
    let path = server
        .config
        .server
        .data_dir
        .join(cluster::members::MEMBERS_FILE);
    crate::durability::replace_file(&path, Members::of(layout).to_text())
        .map_err(|error| err(format!("cannot write {}: {error}", path.display())))
}

fn ask_set_aside(server: &Server, why: &str) -> Result<(), CommandError> {
    let path = server.config.server.data_dir.join(SET_ASIDE_FILE);
    crate::durability::replace_file(&path, why)
        .map_err(|error| err(format!("cannot write {}: {error}", path.display())))
}

/// The links to the other groups follow the layout.
fn follow(server: &Arc<Server>) {
    if let Some(peers) = &server.peers {
        peers.follow_layout(server);
    }
}

/// Starts this process over a moment from now (after the reply), its log synced first.
fn start_over_soon(server: &Arc<Server>, why: &'static str) {
    let server = server.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(START_OVER_AFTER_MS)).await;
        warn!(%why, "starting over in the new role");
        if let Some(durability) = server.durability.get() {
            durability.wal.write_queued();
            let _ = durability.wal.sync();
        }
        crate::replication::start_over()
    });
}

/// At the start, before anything is read: the data a reset or rejoining node asked to set
/// aside goes to `data_dir/set-aside/<why>-<ms>/`, all but the cluster files (a rejoining
/// node keeps the slot moves it was told of). Each step can be done again after a crash.
pub fn set_aside_if_asked(data_dir: &Path) -> std::io::Result<()> {
    let marker = data_dir.join(SET_ASIDE_FILE);
    let Ok(why) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let why = why.trim().to_owned();
    let keep: &[&str] = if why == "rejoin" {
        &[
            cluster::members::MEMBERS_FILE,
            "cluster-layout",
            "slot-moves",
            "set-aside",
            SET_ASIDE_FILE,
        ]
    } else {
        &[
            cluster::members::MEMBERS_FILE,
            "cluster-layout",
            "set-aside",
            SET_ASIDE_FILE,
        ]
    };
    let target = data_dir
        .join("set-aside")
        .join(format!("{why}-{}", now_ms()));
    std::fs::create_dir_all(&target)?;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if keep.iter().any(|kept| name == std::ffi::OsStr::new(kept)) {
            continue;
        }
        std::fs::rename(entry.path(), target.join(&name))?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    std::fs::remove_file(&marker)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    warn!(dir = %target.display(), %why, "this node's data is set aside: it starts over empty");
    Ok(())
}
