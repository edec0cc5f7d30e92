//! The connection storm against a cluster (`--cluster --scenario connections`): every
//! connection goes to the primary serving its cart's slot, each primary an even share, and
//! the connections are opened from several client processes (`connections_client.rs`, this
//! program run again), each under its own open-file limit and from source addresses of its
//! own. Once every client has opened its connections and every primary has accepted its
//! share, the parent reads each primary's resident size, names one wall-clock instant for all
//! the clients to add at, holds every connection open until the last answer anywhere, then
//! merges the clients' histograms and tallies. The processes and what they say to each other
//! are `connections_client.rs`'s.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use redis_protocol::resp2::types::BytesFrame;

use super::connections::{
    connections_per_process_max, is_loopback_v4, loopback_sources, sources_wanted,
    CONNECTS_IN_FLIGHT_MAX, SOURCES_MAX,
};
use super::connections_client::{
    unix_now_ns, ClientFound, ClientPlan, ClientReport, Clients, ParentWord,
};
use super::{tally_json, Settings};
use crate::cluster::{key_slot, SlotMap};
use crate::progress::{Progress, Span};
use crate::record::{Outcome, Recorder};
use crate::resp::Conn;
use crate::target::{Model, Target};

/// How long after the go is sent the clients add: time for each to read it.
const GO_DELAY: Duration = Duration::from_millis(250);
/// How long the clients may take to open every connection.
const OPEN_WAIT_MAX: Duration = Duration::from_secs(600);
/// How long the primaries may take to accept what the clients opened.
const ACCEPT_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long to every answer, and then to every client's findings.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(180);
/// Connections of the harness's own a primary keeps room for (INFO, CONFIG GET).
const HARNESS_CONNECTIONS: usize = 8;
/// Shoppers tried per connection before a primary that serves too few slots is given up on.
const SHOPPERS_TRIED_PER_CONNECTION_MAX: usize = 1_024;

/// One primary's part of the storm, as measured.
#[derive(Debug, Default, Clone)]
struct NodeFound {
    pid: u64,
    connections: u64,
    adds: u64,
    rss_before_bytes: u64,
    rss_connected_bytes: u64,
}

impl NodeFound {
    fn bytes_per_connection(&self) -> f64 {
        let grown = self
            .rss_connected_bytes
            .saturating_sub(self.rss_before_bytes);
        grown as f64 / self.connections.max(1) as f64
    }
}

/// Runs the storm against the cluster `target` is a node of.
pub async fn run(
    target: &Target,
    model: &Model,
    map: &SlotMap,
    settings: &Settings,
) -> anyhow::Result<Outcome> {
    let nodes = map.primaries();
    let count = settings.conn_count;
    if count == 0 {
        bail!("--conn-count 0: the storm needs a connection at least");
    }
    let shares: Vec<usize> = (0..nodes.len())
        .map(|node| part(count, nodes.len(), node).len())
        .collect();
    for (addr, share) in nodes.iter().zip(&shares) {
        check_maxclients(*addr, *share).await?;
    }
    let carts = carts_per_node(model, map, &nodes, &shares)?;
    let plans = client_plans(target, model, &nodes, &carts, settings)?;
    let mut found: Vec<NodeFound> = Vec::with_capacity(nodes.len());
    for addr in &nodes {
        let (pid, rss_before_bytes) = node_memory(*addr).await?;
        found.push(NodeFound {
            pid,
            rss_before_bytes,
            ..NodeFound::default()
        });
    }
    let processes = plans.len();
    let sources: usize = plans.iter().map(|plan| plan.sources.len()).sum();
    let label = format!("cluster/connections {}", target.kind.as_str());
    let progress = Progress::start(&label, Span::Count(count as u64));
    let storm = storm(plans, &nodes, &mut found, progress.counter()).await?;
    progress.finish();
    let outcome = Outcome::new("cluster/connections", target, &storm.rec, storm.after_go)
        .with("connections_asked", count)
        .with("client_processes", processes)
        .with("source_addresses", sources)
        .with("connect_s_per_process", storm.connect_s_per_process);
    Ok(describe(
        outcome,
        &nodes,
        &found,
        &storm.errors_by_kind,
        storm.connect_time,
    ))
}

/// What the clients found, merged.
struct StormFound {
    rec: Recorder,
    errors_by_kind: std::collections::BTreeMap<String, u64>,
    connect_time: Duration,
    connect_s_per_process: Vec<f64>,
    after_go: Duration,
}

/// Starts the clients, opens, reads memory, names the go, releases, merges.
async fn storm(
    plans: Vec<ClientPlan>,
    nodes: &[SocketAddr],
    found: &mut [NodeFound],
    counter: std::sync::Arc<AtomicU64>,
) -> anyhow::Result<StormFound> {
    let count: usize = plans.iter().map(ClientPlan::connections).sum();
    let started = Instant::now();
    let mut clients = Clients::spawn(plans).await?;
    let opened = clients
        .gather("opening", OPEN_WAIT_MAX, &counter, |report| match report {
            ClientReport::Opened {
                connected_per_node,
                connect_us,
            } => Some((connected_per_node, connect_us)),
            _ => None,
        })
        .await?;
    let connect_time = started.elapsed();
    for (connected_per_node, _) in &opened {
        for (node, connected) in found.iter_mut().zip(connected_per_node) {
            node.connections += connected;
        }
    }
    // What each primary holds per idle connection, once it has accepted them all.
    for (addr, node) in nodes.iter().zip(found.iter_mut()) {
        wait_accepted(*addr, node.connections).await?;
        node.rss_connected_bytes = node_memory(*addr).await?.1;
    }
    counter.store(0, Ordering::Relaxed);
    let at_unix_ns = unix_now_ns() + u64::try_from(GO_DELAY.as_nanos()).unwrap_or(u64::MAX);
    clients.tell(&ParentWord::Go { at_unix_ns }).await?;
    let answered = clients
        .gather("adding", ANSWER_WAIT_MAX, &counter, |report| match report {
            ClientReport::Answered { after_go_us } => Some(after_go_us),
            _ => None,
        })
        .await?;
    // Every connection has its answer; the closing stage sends no more progress.
    counter.store(count as u64, Ordering::Relaxed);
    clients.tell(&ParentWord::Release).await?;
    let findings: Vec<ClientFound> = clients
        .gather(
            "closing",
            ANSWER_WAIT_MAX,
            &counter,
            |report| match report {
                ClientReport::Done(found) => Some(found),
                _ => None,
            },
        )
        .await?;
    clients.wait_exit().await?;
    let mut merged = StormFound {
        rec: Recorder::default(),
        errors_by_kind: Default::default(),
        connect_time,
        connect_s_per_process: opened
            .iter()
            .map(|(_, connect_us)| *connect_us as f64 / 1e6)
            .collect(),
        after_go: Duration::from_micros(answered.into_iter().max().unwrap_or(0)),
    };
    for client in &findings {
        merged.rec.merge(&client.recorder()?);
        for (kind, times) in &client.errors_by_kind {
            *merged.errors_by_kind.entry(kind.clone()).or_default() += times;
        }
        for (node, adds) in found.iter_mut().zip(&client.added_per_node) {
            node.adds += adds;
        }
    }
    Ok(merged)
}

/// Adds to the outcome what each primary held and took.
fn describe(
    outcome: Outcome,
    nodes: &[SocketAddr],
    found: &[NodeFound],
    errors_by_kind: &std::collections::BTreeMap<String, u64>,
    connect_time: Duration,
) -> Outcome {
    let connected: u64 = found.iter().map(|node| node.connections).sum();
    let grown: u64 = found
        .iter()
        .map(|node| {
            node.rss_connected_bytes
                .saturating_sub(node.rss_before_bytes)
        })
        .sum();
    let per_node: Vec<serde_json::Value> = nodes
        .iter()
        .zip(found)
        .map(|(addr, node)| {
            serde_json::json!({
                "addr": addr.to_string(),
                "pid": node.pid,
                "connections": node.connections,
                "adds": node.adds,
                "rss_before_bytes": node.rss_before_bytes,
                "rss_connected_bytes": node.rss_connected_bytes,
                "bytes_per_connection": node.bytes_per_connection().round(),
            })
        })
        .collect();
    let adds_per_primary: serde_json::Map<String, serde_json::Value> = nodes
        .iter()
        .zip(found)
        .map(|(addr, node)| (addr.to_string(), node.adds.into()))
        .collect();
    outcome
        .with("primaries", nodes.len())
        .with("connected", connected)
        .with("connect_s", connect_time.as_secs_f64())
        .with(
            "server_bytes_per_connection",
            (grown as f64 / connected.max(1) as f64).round(),
        )
        .with("adds_per_primary", adds_per_primary)
        .with("nodes", per_node)
        .with("errors_by_kind", tally_json(errors_by_kind))
}

/// Part `index` of `len` things split into `parts` as evenly as can be (the first ones one
/// longer when it does not divide).
fn part(len: usize, parts: usize, index: usize) -> Range<usize> {
    assert!(index < parts);
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    start..start + base + usize::from(index < extra)
}

/// For each primary, `shares[node]` shoppers whose cart (`fc{n}`) is in a slot it serves.
fn carts_per_node(
    model: &Model,
    map: &SlotMap,
    nodes: &[SocketAddr],
    shares: &[usize],
) -> anyhow::Result<Vec<Vec<u64>>> {
    let mut carts: Vec<Vec<u64>> = shares
        .iter()
        .map(|share| Vec::with_capacity(*share))
        .collect();
    let mut missing: usize = shares.iter().sum();
    let tried_max = (missing * SHOPPERS_TRIED_PER_CONNECTION_MAX) as u64;
    let mut shopper = 0u64;
    while missing > 0 {
        if shopper >= tried_max {
            bail!(
                "after {tried_max} shoppers some primary still lacks carts of its own: one \
                 serves too few slots for an even share of the connections"
            );
        }
        let slot = key_slot(model.routing_key(&format!("fc{shopper}")).as_bytes());
        if let Some(owner) = map.owner(slot) {
            let node = nodes
                .iter()
                .position(|addr| *addr == owner)
                .expect("every owner is among the primaries");
            if carts[node].len() < shares[node] {
                carts[node].push(shopper);
                missing -= 1;
            }
        }
        shopper += 1;
    }
    Ok(carts)
}

/// Splits the storm into client processes, each with a part of every primary's carts and
/// source addresses of its own; refuses a split a process cannot hold.
fn client_plans(
    target: &Target,
    model: &Model,
    nodes: &[SocketAddr],
    carts: &[Vec<u64>],
    settings: &Settings,
) -> anyhow::Result<Vec<ClientPlan>> {
    let count: usize = carts.iter().map(Vec::len).sum();
    let per_process_max = connections_per_process_max()?;
    let processes = match settings.client_processes {
        0 => count.div_ceil(per_process_max.max(1)),
        given => given,
    }
    .clamp(1, count);
    // Each primary sees about CONNECTS_IN_FLIGHT_MAX connects at once, whatever the split.
    let in_flight =
        (CONNECTS_IN_FLIGHT_MAX * nodes.len() / processes).clamp(32, CONNECTS_IN_FLIGHT_MAX);
    let mut plans = Vec::with_capacity(processes);
    let mut sources_given = 0;
    for process in 0..processes {
        let carts_per_node: Vec<Vec<u64>> = carts
            .iter()
            .map(|carts| carts[part(carts.len(), processes, process)].to_vec())
            .collect();
        let connections: usize = carts_per_node.iter().map(Vec::len).sum();
        if connections > per_process_max {
            bail!(
                "{count} connections over {processes} client processes is {connections} for one, \
                 but a process may hold {per_process_max} (its open-file limit, less what it \
                 keeps): use --client-processes {} or more",
                count.div_ceil(per_process_max)
            );
        }
        let sources = match (is_loopback_v4(target.addr), settings.conn_sources) {
            (false, _) => Vec::new(),
            (true, 0) => {
                let wanted = sources_wanted(connections, 0).max(1);
                if sources_given + wanted > SOURCES_MAX {
                    bail!("the storm needs more than {SOURCES_MAX} loopback source addresses");
                }
                sources_given += wanted;
                loopback_sources(sources_given - wanted, wanted)
            }
            (true, asked) => {
                let wanted = asked.div_ceil(processes).max(1);
                if sources_given + wanted > SOURCES_MAX {
                    bail!("--conn-sources {asked}: at most {SOURCES_MAX}, {wanted} a process");
                }
                sources_given += wanted;
                loopback_sources(sources_given - wanted, wanted)
            }
        };
        plans.push(ClientPlan {
            model: model.clone(),
            nodes: nodes.to_vec(),
            sources,
            carts_per_node,
            in_flight,
        });
    }
    Ok(plans)
}

/// Refuses a share a primary cannot take (its `maxclients`, which a server lowers to what its
/// open-file limit holds).
async fn check_maxclients(addr: SocketAddr, share: usize) -> anyhow::Result<()> {
    let mut conn = Conn::connect(addr, None)
        .await
        .with_context(|| format!("cannot connect to the primary {addr}"))?;
    let reply = conn.call(&[b"CONFIG", b"GET", b"maxclients"]).await?;
    let value = match &reply.frame {
        BytesFrame::Array(fields) => match fields.get(1) {
            Some(BytesFrame::BulkString(value)) => String::from_utf8_lossy(value).parse().ok(),
            _ => None,
        },
        _ => None,
    };
    let maxclients: usize =
        value.ok_or_else(|| anyhow!("{addr}: CONFIG GET maxclients answered {:?}", reply.frame))?;
    if share + HARNESS_CONNECTIONS > maxclients {
        bail!(
            "the primary {addr} takes {maxclients} clients (maxclients; a server lowers it to \
             what its open-file limit holds) but its share of the storm is {share}: raise its \
             maxclients, or use more primaries or a smaller --conn-count"
        );
    }
    Ok(())
}

/// A primary's pid (`INFO server`) and resident size: the pid's VmRSS from /proc when it is
/// on this machine, else `INFO memory`'s `used_memory_rss` (which Redis refreshes only every
/// 100 ms).
async fn node_memory(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let mut conn = Conn::connect(addr, None).await?;
    let pid = info(&mut conn, b"server", "process_id").await?.unwrap_or(0);
    let reported = info(&mut conn, b"memory", "used_memory_rss").await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let vm_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    let rss = match (addr.ip().is_loopback() && pid > 0, vm_rss_kib) {
        (true, Some(kib)) => kib * 1024,
        _ => reported.ok_or_else(|| anyhow!("{addr}: INFO memory has no used_memory_rss"))?,
    };
    Ok((pid, rss))
}

/// The number `name` of `INFO section`.
async fn info(conn: &mut Conn, section: &[u8], name: &str) -> anyhow::Result<Option<u64>> {
    let reply = conn.call(&[b"INFO", section]).await?;
    let text = reply
        .text()
        .ok_or_else(|| anyhow!("INFO failed: {:?}", reply.error()))?;
    Ok(info_field(&text, name))
}

fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until the primary has accepted `connections` clients besides this one: a connect
/// completes in the kernel's accept queue, before the server has taken the connection.
async fn wait_accepted(addr: SocketAddr, connections: u64) -> anyhow::Result<()> {
    let mut conn = Conn::connect(addr, None).await?;
    let started = Instant::now();
    loop {
        let clients = info(&mut conn, b"clients", "connected_clients")
            .await?
            .ok_or_else(|| anyhow!("{addr}: INFO clients has no connected_clients"))?;
        if clients > connections {
            return Ok(());
        }
        if started.elapsed() > ACCEPT_WAIT_MAX {
            bail!(
                "{addr} has {clients} clients after {ACCEPT_WAIT_MAX:?}, not {connections} and \
                 this one: it closed what the clients opened (a Redis in protected mode refuses \
                 sources other than 127.0.0.1)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_everything_once() {
        let parts: Vec<Range<usize>> = (0..3).map(|index| part(10, 3, index)).collect();
        assert_eq!(parts, vec![0..4, 4..7, 7..10]);
        assert_eq!(part(2, 3, 2), 2..2);
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Clients\r\nconnected_clients:17\r\nclient_recent_max_input_buffer:0\r\n";
        assert_eq!(info_field(info, "connected_clients"), Some(17));
        assert_eq!(info_field(info, "connected"), None);
    }
}
