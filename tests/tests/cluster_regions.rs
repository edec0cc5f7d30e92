//! Two regions (issue 14) over network namespaces: two shard groups, each with its primary
//! and one replica in region "east" and a replica in region "west", every node in a host of
//! its own and PostgreSQL in another ([`NetnsCluster`]). A gateway host between the regions
//! runs the relays ([`TcpProxy::start_in`], delaying: this kernel has no netem): blackhole
//! routes between every east host and every west host leave it the only way across, and each
//! node's `[cluster.reach]` names the gateway's relay for every node of the other region (the
//! far link, slow, cut at will). The west replicas replicate asynchronously. A replica in its
//! primary's region takes a lapsed lease before the far one, when it loses nothing that way;
//! the far region takes over when the near one is gone, by itself or by the documented
//! CLUSTER FAILOVER TAKEOVER, and the carts it never received come back from PostgreSQL.
//! Times are printed, not asserted. The tests take turns (one cluster at a time).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cartd_tests::chaos::load::{cart_add, cart_version};
use cartd_tests::chaos::{router, ChaosCluster, Nodes};
use cartd_tests::info::{info_field, info_number};
use cartd_tests::netns::cluster::{NetnsSetup, NodeSetup};
use cartd_tests::netns::NetnsCluster;
use cartd_tests::proxy::TcpProxy;
use redis::aio::MultiplexedConnection;

/// One cluster at a time: nine namespaces, six debug nodes and a PostgreSQL on two cores,
/// with leases of a second.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Lease length: short, so the test is quick.
const LEASE_MS: u64 = 1_000;

/// Delay the far link adds to each chunk either way.
const FAR_DELAY_MS: u64 = 25;

/// Nodes in all.
const NODES: u16 = 6;

/// The east nodes (0-based): n1, n2, the primaries, and n3, n4, their replicas.
const EAST: [u16; 4] = [0, 1, 2, 3];
/// The west nodes (the passive region): n5, n6, replicas of n1 and n2.
const WEST: [u16; 2] = [4, 5];

/// n3, the east replica of n1, whose own link to the other east nodes is slow, or cut.
const N3: u16 = 2;

/// The gateway between the regions: the cluster's extra host 0.
const GATEWAY: usize = 0;

/// The cluster and what stands between its regions; the relays drop (stop) first.
struct TwoRegions {
    /// The gateway's relays to each node (by node), which the other region's nodes reach it
    /// through.
    far: Vec<TcpProxy>,
    /// The gateway's relays n3 reaches the other east nodes through (a slow replica at home).
    near: Vec<TcpProxy>,
    /// The gateway's relay n1 reaches PostgreSQL through (a slow sink).
    n1_postgres: TcpProxy,
    /// The nodes, PostgreSQL and the network.
    chaos: ChaosCluster<NetnsCluster>,
}

impl TwoRegions {
    /// The hosts, PostgreSQL, the gateway's relays, the routes between the regions, then the
    /// nodes; the far link's delay once every replica holds its snapshot.
    async fn up() -> TwoRegions {
        let setup = NetnsSetup {
            primaries: 2,
            replicas: 2,
            lease_ms: LEASE_MS,
            extra_hosts: vec!["gw".to_owned()],
        };
        let cluster = NetnsCluster::prepare(&setup).await;
        let gateway = cluster.extra_host(GATEWAY).clone();
        let relay_to = |target: SocketAddr| TcpProxy::start_in(&gateway, target);
        let far: Vec<TcpProxy> = (0..NODES)
            .map(|node| relay_to(cluster.addr(node)))
            .collect();
        let near: Vec<TcpProxy> = near_peers()
            .map(|node| relay_to(cluster.addr(node)))
            .collect();
        let n1_postgres = relay_to(cluster.postgres.addr);
        let nodes: Vec<NodeSetup> = (0..NODES)
            .map(|node| node_setup(node, &far, &near, &n1_postgres))
            .collect();
        separate_regions(&cluster);
        let chaos = cluster.start(&nodes);
        for proxy in &far {
            proxy.set_delay_ms(FAR_DELAY_MS);
        }
        TwoRegions {
            far,
            near,
            n1_postgres,
            chaos,
        }
    }

    /// A connection to `node`, if it answers (a reply may take 10 s: a `WAIT` of 5 s).
    async fn conn(&self, node: u16) -> Option<MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://{}/", self.chaos.addr(node))).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()
    }

    /// `INFO section` of `node`; empty when it does not answer.
    async fn info(&self, node: u16, section: &str) -> String {
        self.chaos.info(node, section).await.unwrap_or_default()
    }

    /// `node`'s log so far.
    fn log(&self, node: u16) -> String {
        self.chaos.log(node)
    }

    /// Waits until one of `candidates` says it is a primary (30 s at most); that one.
    async fn until_primary(&self, candidates: &[u16]) -> u16 {
        let started = Instant::now();
        loop {
            for &node in candidates {
                if self.chaos.role(node).await.as_deref() == Some("master") {
                    return node;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "none of {candidates:?} is a primary 30 s on; logs:\n{}",
                candidates
                    .iter()
                    .map(|&node| self.log(node))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `node` takes a write to `key` (30 s at most).
    async fn until_writable(&self, node: u16, key: &str) {
        let started = Instant::now();
        loop {
            if let Some(mut conn) = self.conn(node).await {
                if add(&mut conn, key, "probe").await.is_ok() {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "n{} takes no write 30 s on:\n{}",
                node + 1,
                self.log(node)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `node`'s sink has streamed all its log holds (30 s at most).
    async fn until_streamed(&self, node: u16) {
        if let Err(error) = self.chaos.until_sink_caught_up(node).await {
            panic!("{error}");
        }
    }

    /// The cart's version on `node`, if it has it.
    async fn version(&self, node: u16, key: &str) -> Option<i64> {
        let mut conn = self.conn(node).await.expect("the node answers");
        cart_version(&mut conn, key).await
    }

    /// The cart's version in PostgreSQL's `carts` table, if it has a row.
    async fn postgres_version(&self, key: &str) -> Option<i64> {
        self.chaos.postgres_version(key).await
    }
}

/// `node`'s region.
fn region_of(node: u16) -> &'static str {
    if WEST.contains(&node) {
        "west"
    } else {
        "east"
    }
}

/// The east nodes n3 reaches through the gateway's `near` relays: all but itself.
fn near_peers() -> impl Iterator<Item = u16> {
    EAST.into_iter().filter(|&node| node != N3)
}

/// `node`'s region and `[cluster.reach]`: every node of the other region through its `far`
/// relay, and for n3 the other east nodes through the `near` ones; n1 reaches PostgreSQL
/// through `n1_postgres`.
fn node_setup(node: u16, far: &[TcpProxy], near: &[TcpProxy], n1_postgres: &TcpProxy) -> NodeSetup {
    let mut reach: Vec<(u16, SocketAddr)> = (0..NODES)
        .filter(|&peer| region_of(peer) != region_of(node))
        .map(|peer| (peer, far[usize::from(peer)].addr))
        .collect();
    if node == N3 {
        reach.extend(
            near_peers()
                .zip(near)
                .map(|(peer, relay)| (peer, relay.addr)),
        );
    }
    NodeSetup {
        region: Some(region_of(node).to_owned()),
        reach,
        postgres: (node == 0).then_some(n1_postgres.addr),
        extra_toml: String::new(),
    }
}

/// Blackhole routes both ways between every east host and every west host: the gateway is
/// the only way across (a `[cluster.reach]` left out would show as a link that never comes
/// up). PostgreSQL, the gateway and the test process reach every host.
fn separate_regions(cluster: &NetnsCluster) {
    let hosts =
        |nodes: &[u16]| -> Vec<usize> { nodes.iter().map(|&node| cluster.host_of(node)).collect() };
    for east in hosts(&EAST) {
        cluster.net.partition(east, &hosts(&WEST));
    }
    for west in hosts(&WEST) {
        cluster.net.partition(west, &hosts(&EAST));
    }
}

/// `CART.ADD key sku - 1 PRICE 250 CURRENCY USD REPLY VERSION`: the cart's new version.
async fn add(conn: &mut MultiplexedConnection, key: &str, sku: &str) -> redis::RedisResult<i64> {
    cart_add(key, sku).query_async(conn).await
}

/// A `WAIT 1` after a write on `conn`: how many replicas had it within 5 s.
async fn wait_one(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(conn)
        .await
        .expect("WAIT")
}

/// `count` keys whose slots group `group` serves (n1: 0-8191, n2: 8192-16383).
fn keys_of_group(prefix: &str, group: u16, count: usize) -> Vec<String> {
    (0..)
        .map(|at| format!("{prefix}:{at}"))
        .filter(|key| u16::from(key_slot(key) >= 8_192) == group)
        .take(count)
        .collect()
}

/// The key's cluster slot.
fn key_slot(key: &str) -> u16 {
    u16::try_from(router::slot(key)).expect("a slot")
}

/// n1 dies while its east replica n3 is behind (its link cut) and the west one, n5, has
/// every write: n3 still takes over (its region first), as what it lacks PostgreSQL has; the
/// writes n3 never received, each waited for (n5 acknowledged them), come back from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_near_replica_takes_over_before_the_far_one() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let regions = TwoRegions::up().await;
    let mut n1 = regions.conn(0).await.expect("n1");
    for proxy in &regions.near {
        proxy.cut();
    }
    let keys = keys_of_group("cart:near", 0, 20);
    for key in &keys {
        add(&mut n1, key, "s1").await.expect("CART.ADD on n1");
        assert_eq!(wait_one(&mut n1).await, 1, "n5 acknowledged {key}");
    }
    regions.until_streamed(0).await;
    regions.chaos.kill9(0);
    let killed = Instant::now();
    let primary = regions.until_primary(&[2, 4]).await;
    println!(
        "n1 killed; n{} took over in {} ms",
        primary + 1,
        killed.elapsed().as_millis()
    );
    assert_eq!(
        primary,
        2,
        "n3 (east, like n1) takes over, not n5 (west); n5's log:\n{}",
        regions.log(4)
    );
    regions.until_writable(2, &keys[0]).await;
    for key in &keys[1..] {
        assert_eq!(
            regions.version(2, key).await,
            Some(1),
            "{key} (waited; n3 never received it) came back from PostgreSQL"
        );
    }
}

/// The same, but n1's sink is slow (PostgreSQL far from it): when n1 dies, PostgreSQL lacks
/// its last writes, which only n5 (west) acknowledged. n3 taking over would lose them, so n5
/// does; whoever takes over, every waited write is on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_far_replica_with_writes_nobody_else_has_takes_over() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let regions = TwoRegions::up().await;
    let mut n1 = regions.conn(0).await.expect("n1");
    for proxy in &regions.near {
        proxy.cut();
    }
    regions.n1_postgres.set_delay_ms(150);
    let keys = keys_of_group("cart:slow", 0, 10);
    for key in &keys {
        add(&mut n1, key, "s1").await.expect("CART.ADD on n1");
        assert_eq!(wait_one(&mut n1).await, 1, "n5 acknowledged {key}");
    }
    let streamed = info_number(
        &regions.info(0, "persistence").await,
        "postgres_checkpoint_lsn",
    );
    let written = info_number(&regions.info(0, "persistence").await, "wal_written_lsn");
    regions.chaos.kill9(0);
    let primary = regions.until_primary(&[2, 4]).await;
    println!(
        "PostgreSQL had n1's log to LSN {streamed} of {written} when n1 died; n{} took over",
        primary + 1
    );
    if streamed < written {
        assert_eq!(primary, 4, "n5 has writes that n3 and PostgreSQL lack");
    }
    regions.until_writable(primary, &keys[0]).await;
    for key in &keys[1..] {
        assert_eq!(
            regions.version(primary, key).await,
            Some(1),
            "{key} was waited for; n{} has it",
            primary + 1
        );
    }
}

/// Every east node dies; the west replicas had none of the last writes (the far link cut).
/// n6 is promoted by the documented command (CLUSTER FAILOVER TAKEOVER), n5 by itself once
/// no east member is left; both take the carts they lack back from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_far_region_takes_over_when_the_near_one_is_gone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let regions = TwoRegions::up().await;
    for proxy in &regions.far {
        proxy.cut();
    }
    let mut written = Vec::new();
    for (group, primary) in [(0u16, 0u16), (1, 1)] {
        let mut conn = regions.conn(primary).await.expect("a primary");
        for key in keys_of_group("cart:far", group, 20) {
            let version = add(&mut conn, &key, "s1").await.expect("CART.ADD");
            written.push((key, version));
        }
        regions.until_streamed(primary).await;
    }
    for node in EAST {
        regions.chaos.kill9(node);
    }
    let killed = Instant::now();
    for proxy in &regions.far {
        proxy.mend();
    }
    let mut n6 = regions.conn(5).await.expect("n6");
    let reply: String = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .arg("TAKEOVER")
        .query_async(&mut n6)
        .await
        .expect("CLUSTER FAILOVER TAKEOVER on n6");
    assert_eq!(reply, "OK");
    regions
        .until_writable(5, &keys_of_group("cart:probe", 1, 1)[0])
        .await;
    println!(
        "n6 writable {} ms after the east region died (CLUSTER FAILOVER TAKEOVER)",
        killed.elapsed().as_millis()
    );
    regions
        .until_writable(4, &keys_of_group("cart:probe", 0, 1)[0])
        .await;
    println!(
        "n5 writable {} ms after the east region died (by itself)",
        killed.elapsed().as_millis()
    );
    for (key, version) in &written {
        let owner = if key_slot(key) < 8_192 { 4 } else { 5 };
        assert_eq!(
            regions.version(owner, key).await,
            Some(*version),
            "{key} came back from PostgreSQL on n{}",
            owner + 1
        );
        assert_eq!(regions.postgres_version(key).await, Some(*version));
    }
    for node in WEST {
        let text = regions.info(node, "cluster").await;
        assert!(
            info_number(&text, "cluster_last_promotion_reloaded_carts") >= 20,
            "n{} took its carts back from PostgreSQL:\n{text}",
            node + 1
        );
        assert_eq!(info_field(&text, "cluster_region").as_deref(), Some("west"));
    }
}
