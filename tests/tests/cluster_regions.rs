//! Two regions (issue 14): two shard groups, each with its primary and one replica in region
//! "east" and a replica in region "west", which reaches the east nodes through delaying
//! proxies (`cluster.reach`: the far link, slow, and cut at will) and replicates
//! asynchronously. A replica in its primary's region takes a lapsed lease before the far one,
//! when it loses nothing that way; the far region takes over when the near one is gone, by
//! itself or by the documented CLUSTER FAILOVER TAKEOVER, and the carts it never received
//! come back from PostgreSQL. Times are printed, not asserted.

use std::time::{Duration, Instant};

use cartd_tests::cluster::{LocalCluster, Setup};
use cartd_tests::info::{info_field, info_number};
use cartd_tests::proxy::TcpProxy;
use cartd_tests::TestDb;
use redis::aio::MultiplexedConnection;
use redis::Value;

/// Lease length: short, so the test is quick.
const LEASE_MS: u64 = 1_000;

/// Delay the far link adds to each chunk either way.
const FAR_DELAY_MS: u64 = 25;

/// Nodes (0-based): n1, n2 primaries; n3, n4 their east replicas; n5, n6 their west ones.
const EAST: [u16; 4] = [0, 1, 2, 3];
const WEST: [u16; 2] = [4, 5];

/// The cluster and what stands between its regions.
struct TwoRegions {
    cluster: LocalCluster,
    /// The proxies the west nodes reach the east ones through (by east node).
    far: Vec<TcpProxy>,
    /// The proxy n3 reaches the east nodes through (a slow replica at home).
    near: Vec<TcpProxy>,
    /// The proxy n1 reaches PostgreSQL through (a slow sink).
    n1_postgres: TcpProxy,
    db: TestDb,
}

impl TwoRegions {
    async fn up() -> TwoRegions {
        let db = TestDb::create().await;
        let mut far = Vec::new();
        let mut near = Vec::new();
        let url = db.url.clone();
        let n1_postgres = TcpProxy::start(postgres_addr(&db.url));
        let n1_url = n1_postgres.url_for(&db.url);
        let mut each = |port: u16| {
            far = EAST.iter().map(|node| proxy_to(port + node)).collect();
            near = EAST.iter().map(|node| proxy_to(port + node)).collect();
            let postgres = format!("[postgres]\nurl = \"{url}\"\n");
            let reach = |proxies: &[TcpProxy]| {
                let mut text = String::from("[cluster.reach]\n");
                for (node, proxy) in EAST.iter().zip(proxies) {
                    text += &format!("n{} = \"{}\"\n", node + 1, proxy.addr);
                }
                text
            };
            let mut toml: Vec<(u16, String)> =
                (0..6).map(|node| (node, postgres.clone())).collect();
            toml[0].1 = format!("[postgres]\nurl = \"{n1_url}\"\n");
            toml[2].1 += &reach(&near);
            for node in WEST {
                toml[usize::from(node)].1 += &reach(&far);
            }
            toml
        };
        let regions = [
            (0, "east"),
            (1, "east"),
            (2, "east"),
            (3, "east"),
            (4, "west"),
            (5, "west"),
        ];
        let mut setup = Setup {
            each: &mut each,
            regions: &regions,
            lease_ms: Some(LEASE_MS),
        };
        let cluster = tokio::task::block_in_place(|| LocalCluster::up_set_up(2, 2, &mut setup));
        for proxy in &far {
            proxy.set_delay_ms(FAR_DELAY_MS);
        }
        TwoRegions {
            cluster,
            far,
            near,
            n1_postgres,
            db,
        }
    }

    fn port(&self, node: u16) -> u16 {
        self.cluster.port + node
    }

    async fn conn(&self, node: u16) -> Option<MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port(node))).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()
    }

    async fn info(&self, node: u16, section: &str) -> String {
        let Some(mut conn) = self.conn(node).await else {
            return String::new();
        };
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await
            .unwrap_or_default()
    }

    async fn role(&self, node: u16) -> Option<String> {
        info_field(&self.info(node, "replication").await, "role")
    }

    /// Waits until one of `candidates` says it is a primary (30 s at most); that one.
    async fn until_primary(&self, candidates: &[u16]) -> u16 {
        let started = Instant::now();
        loop {
            for &node in candidates {
                if self.role(node).await.as_deref() == Some("master") {
                    return node;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "none of {candidates:?} is a primary 30 s on; logs:\n{}",
                candidates
                    .iter()
                    .map(|&node| self.cluster.log(node))
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
                self.cluster.log(node)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `node`'s sink has streamed all its log holds (30 s at most).
    async fn until_streamed(&self, node: u16) {
        let started = Instant::now();
        loop {
            let text = self.info(node, "persistence").await;
            if info_field(&text, "wal_written_lsn").is_some()
                && info_number(&text, "postgres_checkpoint_lsn")
                    >= info_number(&text, "wal_written_lsn")
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "n{}'s sink is behind 30 s on:\n{text}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cart's version on `node`, if it has it.
    async fn version(&self, node: u16, key: &str) -> Option<i64> {
        let mut conn = self.conn(node).await.expect("the node answers");
        let reply: Value = redis::cmd("CART.GET")
            .arg(key)
            .arg("NOVALIDATE")
            .arg("FORMAT")
            .arg("JSON")
            .query_async(&mut conn)
            .await
            .expect("CART.GET");
        let Value::BulkString(json) = reply else {
            return None;
        };
        let view: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        view["version"].as_i64()
    }

    async fn postgres_version(&self, key: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT version FROM carts WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await
            .expect("read the carts table")
    }
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
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

fn proxy_to(port: u16) -> TcpProxy {
    TcpProxy::start(([127, 0, 0, 1], port).into())
}

async fn add(conn: &mut MultiplexedConnection, key: &str, sku: &str) -> redis::RedisResult<i64> {
    redis::cmd("CART.ADD")
        .arg(key)
        .arg(sku)
        .arg("-")
        .arg(1)
        .arg("PRICE")
        .arg(250)
        .arg("CURRENCY")
        .arg("USD")
        .arg("REPLY")
        .arg("VERSION")
        .query_async(conn)
        .await
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

fn key_slot(key: &str) -> u16 {
    u16::try_from(cartd_tests::chaos::router::slot(key)).expect("a slot")
}

/// n1 dies while its east replica n3 is behind (its link cut) and the west one, n5, has
/// every write: n3 still takes over (its region first), as what it lacks PostgreSQL has; the
/// writes n3 never received, each waited for (n5 acknowledged them), come back from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_near_replica_takes_over_before_the_far_one() {
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
    regions.cluster.kill9(0);
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
        regions.cluster.log(4)
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
    regions.cluster.kill9(0);
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
        regions.cluster.kill9(node);
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
