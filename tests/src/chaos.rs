//! The chaos harness (issue 14): a cluster of primaries and replicas with PostgreSQL; a steady
//! write load from cluster-aware clients ([`load`]); faults ([`faults`]: kill -9 of a primary,
//! of a primary and then of the replica that took over, PostgreSQL cut off from every node,
//! every node killed and started again, on separate hosts a primary partitioned); and the checks after a fault ([`check`]): every
//! waited write is there, every cart is on one primary, PostgreSQL holds what the cluster
//! holds, how long each shard group had no primary, and whether two primaries of a group
//! ever overlapped. The nodes are a [`Nodes`]: [`LocalNodes`] on 127.0.0.1, each reaching
//! PostgreSQL through a [`TcpProxy`] of its own (tests/tests/cluster_chaos.rs; `scripts/chaos`,
//! tests/src/bin/chaos.rs, runs the faults at random for minutes), or
//! [`crate::netns::NetnsCluster`], each node in a network namespace of its own
//! (tests/tests/cluster_partition.rs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::Value;
use sqlx::PgPool;

use crate::cluster::LocalCluster;
use crate::info::{info_field, info_number};
use crate::proxy::TcpProxy;
use crate::TestDb;

pub mod check;
pub mod faults;
pub mod load;
pub mod router;

use router::{connect, Router, SLOTS};

/// The longest the harness waits for the cluster to do anything (a take-over, a restart, the
/// sink catching up): an upper bound on a hang, not a measure.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The shard groups of a cluster laid out as `scripts/cluster up` does: group `g` is named
/// after its first primary `n{g+1}` and serves an even share of the slots; its replicas are
/// the nodes `primaries + g`, `2 * primaries + g`, ...
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    /// Primaries (shard groups).
    pub primaries: u16,
    /// Nodes in all.
    pub nodes: u16,
}

impl Groups {
    /// The group serving `slot` (as `scripts/cluster` splits the slots).
    pub fn of_slot(&self, slot: usize) -> usize {
        let primaries = usize::from(self.primaries);
        (0..primaries)
            .rev()
            .find(|group| group * SLOTS / primaries <= slot)
            .expect("group 0 starts at slot 0")
    }

    /// The group's name (its `shard_group` in PostgreSQL).
    pub fn name(&self, group: usize) -> String {
        format!("n{}", group + 1)
    }

    /// The group's nodes (0-based).
    pub fn members(&self, group: usize) -> Vec<u16> {
        (0..self.nodes)
            .filter(|node| usize::from(node % self.primaries) == group)
            .collect()
    }

    /// The group a node belongs to.
    pub fn of_node(&self, node: u16) -> usize {
        usize::from(node % self.primaries)
    }

    /// A key of the group's slots for probing writes.
    pub fn probe_key(&self, group: usize) -> String {
        (0..)
            .map(|at| format!("chaos-probe:{at}"))
            .find(|key| self.of_slot(router::slot(key)) == group)
            .expect("some key hashes into every group")
    }
}

/// The nodes of a chaos cluster and the PostgreSQL they share: where each node listens, how
/// it is killed and started again, and how PostgreSQL is cut off from every node. The
/// blocking calls ([`Nodes::kill9`], [`Nodes::spawn`], [`Nodes::wait_ready`]) may sleep:
/// [`ChaosCluster`] makes them inside `block_in_place`, so the load's clients go on.
pub trait Nodes: Send + Sync {
    /// Where node `node` (0-based) takes clients.
    fn addr(&self, node: u16) -> SocketAddr;
    /// SIGKILLs node `node` and waits until it is gone.
    fn kill9(&self, node: u16);
    /// Starts node `node` again on its configuration and data, not waiting for it.
    fn spawn(&self, node: u16);
    /// Waits until node `node` answers PING (30 s at most, else panics with its log).
    fn wait_ready(&self, node: u16);
    /// Node `node`'s log so far.
    fn log(&self, node: u16) -> String;
    /// A pool on the database every node's `[postgres] url` names.
    fn pool(&self) -> &PgPool;
    /// Cuts every node off PostgreSQL (the test process still reaches it).
    fn cut_postgres(&self);
    /// Lets every node reach PostgreSQL again.
    fn mend_postgres(&self);
    /// Whether [`Nodes::partition`] can cut one node off: the nodes are hosts of their own.
    const PARTITIONS: bool = false;
    /// Cuts `node` off PostgreSQL and off `peers` (clients still reach it), or mends that.
    fn partition(&self, node: u16, peers: &[u16], cut: bool) {
        let _ = (peers, cut);
        panic!(
            "the nodes share one host: n{} cannot be partitioned",
            node + 1
        );
    }
}

/// A local cluster by `scripts/cluster` on 127.0.0.1 whose every node reaches PostgreSQL
/// through its own proxy, so PostgreSQL can be cut off from every node while the suite's
/// server stays up. Fields drop in order: the nodes go down before their proxies and their
/// database.
pub struct LocalNodes {
    /// The nodes.
    pub cluster: LocalCluster,
    proxies: Vec<TcpProxy>,
    /// The cluster's own database.
    pub db: TestDb,
}

impl Nodes for LocalNodes {
    fn addr(&self, node: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.cluster.port + node))
    }

    fn kill9(&self, node: u16) {
        self.cluster.kill9(node);
    }

    fn spawn(&self, node: u16) {
        self.cluster.spawn(node);
    }

    fn wait_ready(&self, node: u16) {
        self.cluster.wait_ready(node);
    }

    fn log(&self, node: u16) -> String {
        self.cluster.log(node)
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    fn cut_postgres(&self) {
        for proxy in &self.proxies {
            proxy.cut();
        }
    }

    fn mend_postgres(&self) {
        for proxy in &self.proxies {
            proxy.mend();
        }
    }
}

/// A cluster with PostgreSQL for chaos: its nodes (by default [`LocalNodes`]) and its shard
/// groups, with the waits and questions every fault and check needs.
pub struct ChaosCluster<N: Nodes = LocalNodes> {
    /// The nodes.
    pub nodes: N,
    /// Its shard groups.
    pub groups: Groups,
}

impl ChaosCluster<LocalNodes> {
    /// `primaries` primaries with `replicas` replicas each on 127.0.0.1, `[postgres]` on a new
    /// database of the suite's server, each node through a proxy of its own.
    pub async fn up(primaries: u16, replicas: u16) -> ChaosCluster<LocalNodes> {
        let db = TestDb::create().await;
        let nodes = primaries * (1 + replicas);
        let target = postgres_addr(&db.url);
        let proxies: Vec<TcpProxy> = (0..nodes).map(|_| TcpProxy::start(target)).collect();
        let each: Vec<(u16, String)> = proxies
            .iter()
            .enumerate()
            .map(|(node, proxy)| {
                let url = proxy.url_for(&db.url);
                (node as u16, format!("[postgres]\nurl = \"{url}\"\n"))
            })
            .collect();
        let cluster = tokio::task::block_in_place(|| {
            LocalCluster::up_with_each(primaries, replicas, "", &each)
        });
        ChaosCluster {
            nodes: LocalNodes {
                cluster,
                proxies,
                db,
            },
            groups: Groups { primaries, nodes },
        }
    }

    /// The proxy between `node` and PostgreSQL (to cut that node alone off).
    pub fn proxy(&self, node: u16) -> &TcpProxy {
        &self.nodes.proxies[usize::from(node)]
    }
}

impl<N: Nodes> ChaosCluster<N> {
    /// A chaos cluster of `nodes`, laid out in `groups`.
    pub fn new(nodes: N, groups: Groups) -> ChaosCluster<N> {
        ChaosCluster { nodes, groups }
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        (0..self.groups.nodes).map(|node| self.addr(node)).collect()
    }

    /// Where `node` takes clients.
    pub fn addr(&self, node: u16) -> SocketAddr {
        self.nodes.addr(node)
    }

    /// The node at `addr`.
    pub fn node_of_addr(&self, addr: SocketAddr) -> u16 {
        (0..self.groups.nodes)
            .find(|&node| self.addr(node) == addr)
            .unwrap_or_else(|| panic!("{addr} is none of the cluster's nodes"))
    }

    /// `node`'s log so far.
    pub fn log(&self, node: u16) -> String {
        self.nodes.log(node)
    }

    /// The pool on the cluster's database.
    pub fn pool(&self) -> &PgPool {
        self.nodes.pool()
    }

    /// The cart's version in PostgreSQL's `carts` table, if it has a row.
    pub async fn postgres_version(&self, key: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT version FROM carts WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .expect("read the carts table")
    }

    /// kill -9 of `node`.
    pub fn kill9(&self, node: u16) {
        tokio::task::block_in_place(|| self.nodes.kill9(node));
    }

    /// Starts `node` again and waits until it answers PING.
    pub fn restart(&self, node: u16) {
        tokio::task::block_in_place(|| {
            self.nodes.spawn(node);
            self.nodes.wait_ready(node);
        });
    }

    /// kill -9 of every node, then every node started again at once.
    pub fn restart_all(&self) {
        tokio::task::block_in_place(|| {
            for node in 0..self.groups.nodes {
                self.nodes.kill9(node);
            }
            for node in 0..self.groups.nodes {
                self.nodes.spawn(node);
            }
            for node in 0..self.groups.nodes {
                self.nodes.wait_ready(node);
            }
        });
    }

    /// Cuts every node off PostgreSQL.
    pub fn cut_postgres(&self) {
        tokio::task::block_in_place(|| self.nodes.cut_postgres());
    }

    /// Lets every node reach PostgreSQL again.
    pub fn mend_postgres(&self) {
        tokio::task::block_in_place(|| self.nodes.mend_postgres());
    }

    /// Cuts `node` off PostgreSQL and off `peers`, or mends that ([`Nodes::partition`]).
    pub fn partition(&self, node: u16, peers: &[u16], cut: bool) {
        tokio::task::block_in_place(|| self.nodes.partition(node, peers, cut));
    }

    /// `node`'s `ROLE` (`master`, `slave`), if it answers.
    pub async fn role(&self, node: u16) -> Option<String> {
        let mut conn = connect(self.addr(node)).await.ok()?;
        let reply: Value = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
        match reply {
            Value::Array(fields) => match fields.first()? {
                Value::BulkString(role) => Some(String::from_utf8_lossy(role).into_owned()),
                Value::SimpleString(role) => Some(role.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The nodes that say they are primaries.
    pub async fn masters(&self) -> Vec<u16> {
        let mut masters = Vec::new();
        for node in 0..self.groups.nodes {
            if self.role(node).await.as_deref() == Some("master") {
                masters.push(node);
            }
        }
        masters
    }

    /// The one member of `group` that says it is a primary (30 s at most).
    pub async fn primary_of(&self, group: usize) -> u16 {
        let started = Instant::now();
        loop {
            let mut masters = Vec::new();
            for node in self.groups.members(group) {
                if self.role(node).await.as_deref() == Some("master") {
                    masters.push(node);
                }
            }
            if let [primary] = masters[..] {
                return primary;
            }
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "group {} has primaries {masters:?} after 30 s",
                self.groups.name(group)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a write to `group`'s slots is taken by a node other than `not` (30 s at
    /// most); that node.
    pub async fn until_writable(&self, group: usize, not: Option<u16>) -> u16 {
        let key = self.groups.probe_key(group);
        let mut router = Router::new(self.addrs());
        let started = Instant::now();
        loop {
            let last = match router.send(&key, &load::cart_add(&key, "probe")).await {
                Ok(replied) if Some(self.node_of_addr(replied.from)) != not => {
                    return self.node_of_addr(replied.from);
                }
                Ok(replied) => format!("still taken by the node at {}", replied.from),
                Err(error) => error,
            };
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "group {} takes no write 30 s on: {last}",
                self.groups.name(group)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `node` follows a primary with its link up (30 s at most).
    pub async fn until_following(&self, node: u16) {
        let started = Instant::now();
        loop {
            let text = self.info(node, "replication").await.unwrap_or_default();
            if info_field(&text, "role").as_deref() == Some("slave")
                && info_field(&text, "master_link_status").as_deref() == Some("up")
            {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_TIMEOUT,
                "node n{} does not follow a primary 30 s on:\n{text}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `INFO section` of `node`, if it answers.
    pub async fn info(&self, node: u16, section: &str) -> Option<String> {
        let mut conn = connect(self.addr(node)).await.ok()?;
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .ok()
    }

    /// Waits until `node`'s sink has written to PostgreSQL all its log file holds (30 s at
    /// most): every acknowledged write, which is written before its reply. Not up to
    /// `wal_last_lsn`: the TTL renewal a read logs stays queued, unwritten, until the next
    /// write (seen at the end of `scripts/chaos`, whose last check reads every cart again).
    pub async fn until_sink_caught_up(&self, node: u16) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let text = self.info(node, "persistence").await.unwrap_or_default();
            if info_field(&text, "wal_written_lsn").is_some()
                && info_number(&text, "postgres_checkpoint_lsn")
                    >= info_number(&text, "wal_written_lsn")
            {
                return Ok(());
            }
            if started.elapsed() > SETTLE_TIMEOUT {
                return Err(format!(
                    "n{}'s sink did not catch up in 30 s:\n{text}",
                    node + 1
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The address of the PostgreSQL server in `url` (`postgres://user@host:port/db`).
fn postgres_addr(url: &str) -> SocketAddr {
    let authority = url.split_once("://").expect("a URL").1;
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let host_port = host_port.split('/').next().expect("host:port");
    std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .expect("the database's address")
        .next()
        .expect("an address")
}
