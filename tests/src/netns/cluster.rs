//! [`NetnsCluster`]: a cartd cluster with PostgreSQL where every node and the PostgreSQL
//! server run in hosts of their own on a [`Network`]: host 0 is PostgreSQL, host `1 + i` node
//! `n{i+1}`, then any extra hosts the test asks for ([`NetnsSetup`]: a gateway running relays
//! between regions, say). The layout is `scripts/cluster`'s (the primaries first with an even
//! share of the slots, then their replicas in turn), each node bound to its host's address (so
//! `protected_mode = false`: cartd refuses a non-loopback bind without a password otherwise),
//! all on one port; a node's [`NodeSetup`] adds its region, its `[cluster.reach]`, where it
//! reaches PostgreSQL, and TOML of its own. Nodes are killed and started again by pid; their
//! logs and data stay in a temp dir, printed (and the dir kept) when the test panics. The
//! chaos harness drives it as a [`Nodes`].

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::postgres::{url_at, NetnsPostgres};
use super::{Host, Network};
use crate::cartd_bin;
use crate::chaos::router::SLOTS;
use crate::chaos::{ChaosCluster, Groups, Nodes};

/// The port every node listens on, each on its host's address.
pub const NODE_PORT: u16 = 7000;

/// The host PostgreSQL runs in.
pub const POSTGRES_HOST: usize = 0;

/// How long a node may take to answer PING after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// The cluster; its nodes are killed when it drops, then PostgreSQL stops, then the network
/// goes (the fields drop in that order).
pub struct NetnsCluster {
    /// Each node's process while it runs.
    children: Vec<Mutex<Option<Child>>>,
    /// Its shard groups (as `scripts/cluster` lays them out).
    groups: Groups,
    /// `cluster.lease_ms` of every node.
    lease_ms: u64,
    /// `n1/`, `n2/`, ...: each node's config.toml, data and log.
    dir: tempfile::TempDir,
    /// PostgreSQL, in host [`POSTGRES_HOST`].
    pub postgres: NetnsPostgres,
    /// The network: PostgreSQL, one host per node, then [`NetnsSetup::extra_hosts`].
    pub net: Network,
}

/// The shape of a [`NetnsCluster`]: its groups, its lease, and hosts of the test's own.
#[derive(Debug, Clone)]
pub struct NetnsSetup {
    /// Primaries (shard groups).
    pub primaries: u16,
    /// Replicas of each primary.
    pub replicas: u16,
    /// `cluster.lease_ms` of every node.
    pub lease_ms: u64,
    /// Hosts made after the nodes' (host `1 + nodes + i` is `extra_hosts[i]`), running no
    /// node: a gateway between regions, say, its relays the test's ([`NetnsCluster::extra_host`]).
    pub extra_hosts: Vec<String>,
}

/// What one node's config.toml has beyond the layout and the settings every node shares
/// (the default: nothing).
#[derive(Debug, Clone, Default)]
pub struct NodeSetup {
    /// Its region: `region` of its `[[cluster.nodes]]` entry, in every node's layout.
    pub region: Option<String>,
    /// Its `[cluster.reach]`: where it connects to these nodes (0-based) instead of their
    /// address (a relay); clients are still told the address.
    pub reach: Vec<(u16, SocketAddr)>,
    /// Where it connects to PostgreSQL, when not the server's own address (a relay).
    pub postgres: Option<SocketAddr>,
    /// TOML appended to its config.toml, after `[postgres]`.
    pub extra_toml: String,
}

impl NetnsCluster {
    /// `primaries` primaries with `replicas` replicas each and PostgreSQL, in namespaces,
    /// with leases of `lease_ms`; returns once every node answers PING (a replica answers
    /// only once it holds its primary's snapshot).
    pub async fn up(primaries: u16, replicas: u16, lease_ms: u64) -> ChaosCluster<NetnsCluster> {
        let setup = NetnsSetup {
            primaries,
            replicas,
            lease_ms,
            extra_hosts: Vec::new(),
        };
        NetnsCluster::prepare(&setup).await.start(&[])
    }

    /// The network and PostgreSQL of a cluster shaped as `setup` says, its nodes not written
    /// nor started yet: what a node's [`NodeSetup`] names (a relay in an extra host to a
    /// node's address) can be made first; then [`NetnsCluster::start`].
    pub async fn prepare(setup: &NetnsSetup) -> NetnsCluster {
        let groups = Groups {
            primaries: setup.primaries,
            nodes: setup.primaries * (1 + setup.replicas),
        };
        let names: Vec<String> = std::iter::once("pg".to_owned())
            .chain((1..=groups.nodes).map(|node| format!("n{node}")))
            .chain(setup.extra_hosts.iter().cloned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let net = tokio::task::block_in_place(|| Network::new(&names));
        let postgres = NetnsPostgres::start(&net, POSTGRES_HOST).await;
        NetnsCluster {
            children: (0..groups.nodes).map(|_| Mutex::new(None)).collect(),
            groups,
            lease_ms: setup.lease_ms,
            dir: tempfile::tempdir().expect("a temp dir"),
            postgres,
            net,
        }
    }

    /// Writes every node's config.toml (node `i` with `nodes[i]`, if given; the default
    /// otherwise), starts them all, and returns once every one answers PING.
    pub fn start(self, nodes: &[NodeSetup]) -> ChaosCluster<NetnsCluster> {
        assert!(
            nodes.len() <= usize::from(self.groups.nodes),
            "a NodeSetup for each of {} nodes at most",
            self.groups.nodes
        );
        let plain = NodeSetup::default();
        let setup_of = |node: u16| nodes.get(usize::from(node)).unwrap_or(&plain);
        for node in 0..self.groups.nodes {
            self.write_config(node, setup_of(node), |peer| {
                setup_of(peer).region.as_deref()
            });
        }
        tokio::task::block_in_place(|| {
            for node in 0..self.groups.nodes {
                self.spawn(node);
            }
            for node in 0..self.groups.nodes {
                self.wait_ready(node);
            }
        });
        let groups = self.groups;
        ChaosCluster::new(self, groups)
    }

    /// The host node `node` runs in.
    pub fn host_of(&self, node: u16) -> usize {
        usize::from(node) + 1
    }

    /// Node `node`'s address on the network.
    fn ip_of(&self, node: u16) -> Ipv4Addr {
        self.net.host(self.host_of(node)).ip
    }

    /// Node `node`'s own directory.
    pub fn node_dir(&self, node: u16) -> PathBuf {
        self.dir.path().join(format!("n{}", node + 1))
    }

    /// Extra host `index` of [`NetnsSetup::extra_hosts`] (its index in the network is
    /// [`NetnsCluster::extra_host_index`]).
    pub fn extra_host(&self, index: usize) -> &Host {
        self.net.host(self.extra_host_index(index))
    }

    /// The network's index of extra host `index`: after PostgreSQL's and the nodes'.
    pub fn extra_host_index(&self, index: usize) -> usize {
        1 + usize::from(self.groups.nodes) + index
    }

    /// Writes node `node`'s config.toml: the layout (with each node's `region_of`), its own
    /// address, its `setup`.
    fn write_config<'a>(
        &self,
        node: u16,
        setup: &NodeSetup,
        region_of: impl Fn(u16) -> Option<&'a str>,
    ) {
        let dir = self.node_dir(node);
        std::fs::create_dir_all(&dir).expect("make the node's directory");
        let layout = layout_toml(
            self.groups,
            |peer| SocketAddr::from((self.ip_of(peer), NODE_PORT)),
            region_of,
        );
        let mut reach = String::new();
        if !setup.reach.is_empty() {
            reach.push_str("\n[cluster.reach]\n");
            for (peer, addr) in &setup.reach {
                reach.push_str(&format!("n{} = \"{addr}\"\n", peer + 1));
            }
        }
        let postgres = url_at(setup.postgres.unwrap_or(self.postgres.addr));
        let config = format!(
            "[server]\nbind = \"{ip}\"\nport = {NODE_PORT}\ndata_dir = \"{data}\"\n\
             protected_mode = false\n\n\
             [cluster]\nenabled = true\nnode_id = \"n{id}\"\nlease_ms = {lease_ms}\n{layout}{reach}\n\
             [postgres]\nurl = \"{postgres}\"\n{extra}",
            ip = self.ip_of(node),
            data = dir.join("data").display(),
            id = node + 1,
            lease_ms = self.lease_ms,
            extra = setup.extra_toml,
        );
        std::fs::write(dir.join("config.toml"), config).expect("write config.toml");
    }

    /// Node `node`'s process slot.
    fn child(&self, node: u16) -> MutexGuard<'_, Option<Child>> {
        self.children[usize::from(node)]
            .lock()
            .expect("no panic while a child is held")
    }

    /// Prints the tail of every node's log and PostgreSQL's, and keeps the directories.
    fn print_logs(&mut self) {
        for node in 0..self.children.len() as u16 {
            eprintln!(
                "---- n{} ({}), last {LOG_TAIL_LINES} lines of {} ----\n{}",
                node + 1,
                self.ip_of(node),
                self.node_dir(node).join("log").display(),
                tail(&self.log(node), LOG_TAIL_LINES)
            );
        }
        eprintln!(
            "---- PostgreSQL ({}), last {LOG_TAIL_LINES} lines ----\n{}",
            self.postgres.addr,
            tail(&self.postgres.log(), LOG_TAIL_LINES)
        );
        self.dir.disable_cleanup(true);
        self.postgres.keep_dir();
        eprintln!(
            "kept {} and {}",
            self.dir.path().display(),
            self.postgres.dir().display()
        );
    }
}

/// The `[[cluster.nodes]]` entries `scripts/cluster up` writes, for nodes at `addr(node)`,
/// each in `region_of(node)` if any: the primaries first, each with an even share of the
/// slots, then the replicas of each in turn.
pub fn layout_toml<'a>(
    groups: Groups,
    addr: impl Fn(u16) -> SocketAddr,
    region_of: impl Fn(u16) -> Option<&'a str>,
) -> String {
    let primaries = usize::from(groups.primaries);
    let mut layout = String::new();
    for node in 0..groups.nodes {
        let group = groups.of_node(node);
        layout.push_str(&format!(
            "\n[[cluster.nodes]]\nid = \"n{}\"\naddr = \"{}\"\n",
            node + 1,
            addr(node)
        ));
        if let Some(region) = region_of(node) {
            layout.push_str(&format!("region = \"{region}\"\n"));
        }
        if node < groups.primaries {
            let start = group * SLOTS / primaries;
            let end = (group + 1) * SLOTS / primaries - 1;
            layout.push_str(&format!("slots = [\"{start}-{end}\"]\n"));
        } else {
            layout.push_str(&format!("replica_of = \"n{}\"\n", group + 1));
        }
    }
    layout
}

impl Nodes for NetnsCluster {
    fn addr(&self, node: u16) -> SocketAddr {
        SocketAddr::from((self.ip_of(node), NODE_PORT))
    }

    fn kill9(&self, node: u16) {
        if let Some(mut child) = self.child(node).take() {
            let _ = child.kill();
            // Reaped only once every thread is gone: the port is free after.
            let _ = child.wait();
        }
    }

    fn spawn(&self, node: u16) {
        let mut slot = self.child(node);
        assert!(slot.is_none(), "n{} is running already", node + 1);
        let command = self.net.command(self.host_of(node), cartd_bin());
        let child = crate::cluster::start_cartd(command, &self.node_dir(node))
            .expect("start the node in its namespace");
        *slot = Some(child);
    }

    fn wait_ready(&self, node: u16) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addr(node);
        while !answers_ping(addr) {
            let exited = self
                .child(node)
                .as_mut()
                .map(|child| child.try_wait().ok().flatten());
            if let Some(Some(status)) = exited {
                panic!(
                    "n{} exited ({status}) before answering; its log:\n{}",
                    node + 1,
                    self.log(node)
                );
            }
            assert!(
                Instant::now() < deadline,
                "n{} at {addr} does not answer after 30 s; its log:\n{}",
                node + 1,
                self.log(node)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self, node: u16) -> String {
        std::fs::read_to_string(self.node_dir(node).join("log")).unwrap_or_default()
    }

    fn pool(&self) -> &PgPool {
        &self.postgres.pool
    }

    fn cut_postgres(&self) {
        for node in 0..self.children.len() as u16 {
            self.net.partition(self.host_of(node), &[POSTGRES_HOST]);
        }
    }

    fn mend_postgres(&self) {
        for node in 0..self.children.len() as u16 {
            self.net.mend(self.host_of(node), &[POSTGRES_HOST]);
        }
    }

    const PARTITIONS: bool = true;

    fn partition(&self, node: u16, peers: &[u16], cut: bool) {
        let hosts: Vec<usize> = std::iter::once(POSTGRES_HOST)
            .chain(peers.iter().map(|&peer| self.host_of(peer)))
            .collect();
        if cut {
            self.net.partition(self.host_of(node), &hosts);
        } else {
            self.net.mend(self.host_of(node), &hosts);
        }
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        for node in 0..self.children.len() as u16 {
            if let Ok(mut slot) = self.children[usize::from(node)].lock() {
                if let Some(mut child) = slot.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

/// Whether the node at `addr` answers `PING` with `+PONG` (2 s at most).
fn answers_ping(addr: SocketAddr) -> bool {
    let timeout = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let mut reply = [0u8; 7];
    stream.set_read_timeout(Some(timeout)).is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> &str {
    let starts: Vec<usize> = text.match_indices('\n').map(|(at, _)| at + 1).collect();
    match starts.len().checked_sub(lines) {
        Some(first) if first > 0 => &text[starts[first - 1]..],
        _ => text,
    }
}
