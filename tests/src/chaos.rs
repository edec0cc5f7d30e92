//! The chaos harness (issue 14): a cluster of primaries and replicas with PostgreSQL, each node
//! reaching PostgreSQL through a [`TcpProxy`] of its own; a steady write load from
//! cluster-aware clients ([`load`]); faults ([`faults`]: kill -9 of a primary, of a primary and
//! then of the replica that took over, PostgreSQL cut off from every node, every node killed
//! and started again); and the checks after a fault ([`check`]): every waited write is there,
//! every cart is on one primary, PostgreSQL holds what the cluster holds, and how long each
//! shard group had no primary. tests/tests/cluster_chaos.rs runs each fault once;
//! `scripts/chaos` (tests/src/bin/chaos.rs) runs them at random for minutes.

use std::time::{Duration, Instant};

use redis::Value;

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

/// The shard groups of a cluster made by `scripts/cluster up`: group `g` is named after its
/// first primary `n{g+1}` and serves an even share of the slots; its replicas are the nodes
/// `primaries + g`, `2 * primaries + g`, ...
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

/// A local cluster with PostgreSQL for chaos: every node reaches PostgreSQL through its own
/// proxy, so PostgreSQL can be cut off from every node while the suite's server stays up.
/// Fields drop in order: the nodes go down before their proxies and their database.
pub struct ChaosCluster {
    /// The nodes.
    pub cluster: LocalCluster,
    proxies: Vec<TcpProxy>,
    /// The cluster's own database.
    pub db: TestDb,
    /// Its shard groups.
    pub groups: Groups,
}

impl ChaosCluster {
    /// `primaries` primaries with `replicas` replicas each, `[postgres]` on a new database.
    pub async fn up(primaries: u16, replicas: u16) -> ChaosCluster {
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
            cluster,
            proxies,
            db,
            groups: Groups { primaries, nodes },
        }
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        (0..self.groups.nodes)
            .map(|node| self.cluster.port + node)
            .collect()
    }

    /// The node on `port`.
    pub fn node_of_port(&self, port: u16) -> u16 {
        port - self.cluster.port
    }

    /// kill -9 of `node`.
    pub fn kill9(&self, node: u16) {
        tokio::task::block_in_place(|| self.cluster.kill9(node));
    }

    /// Starts `node` again and waits until it answers PING.
    pub fn restart(&self, node: u16) {
        tokio::task::block_in_place(|| self.cluster.restart(node));
    }

    /// kill -9 of every node, then every node started again at once.
    pub fn restart_all(&self) {
        tokio::task::block_in_place(|| {
            for node in 0..self.groups.nodes {
                self.cluster.kill9(node);
            }
            for node in 0..self.groups.nodes {
                self.cluster.spawn(node);
            }
            for node in 0..self.groups.nodes {
                self.cluster.wait_ready(node);
            }
        });
    }

    /// Cuts every node off PostgreSQL.
    pub fn cut_postgres(&self) {
        for proxy in &self.proxies {
            proxy.cut();
        }
    }

    /// The proxy between `node` and PostgreSQL (to cut that node alone off).
    pub fn proxy(&self, node: u16) -> &TcpProxy {
        &self.proxies[usize::from(node)]
    }

    /// Lets every node reach PostgreSQL again.
    pub fn mend_postgres(&self) {
        for proxy in &self.proxies {
            proxy.mend();
        }
    }

    /// `node`'s `ROLE` (`master`, `slave`), if it answers.
    pub async fn role(&self, node: u16) -> Option<String> {
        let mut conn = connect(self.cluster.port + node).await.ok()?;
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
        let mut router = Router::new(self.ports());
        let started = Instant::now();
        loop {
            let last = match router.send(&key, &load::cart_add(&key, "probe")).await {
                Ok((_, port)) if Some(self.node_of_port(port)) != not => {
                    return self.node_of_port(port);
                }
                Ok((_, port)) => format!("still taken by node on port {port}"),
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
        let mut conn = connect(self.cluster.port + node).await.ok()?;
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
fn postgres_addr(url: &str) -> std::net::SocketAddr {
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
