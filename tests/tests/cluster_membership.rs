//! Growing and shrinking the cluster with redis-cli (issue 14): `redis-cli --cluster
//! add-node` brings in a node that knows only itself (`CLUSTER MEET`), `--cluster-slave`
//! makes one a replica of it (`CLUSTER REPLICATE` of another shard group), `rebalance` moves
//! slots onto it while clients write, and `del-node` takes both out again (`CLUSTER FORGET`
//! on every other node, `CLUSTER RESET SOFT` on the removed one). With PostgreSQL the change
//! is recorded there (a node that lost its own record learns it back); without, it is pushed
//! to every node and each keeps it in `data_dir/cluster-members` across restarts. Before
//! (92b3aa8) CLUSTER MEET, FORGET and RESET were not implemented and add-node stopped there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cartd_tests::cluster::{cluster_client, LocalCluster, LoneNode};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;

async fn direct(port: u16) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
}

/// One command to the node at `port`; its reply as text, or the error reply (or why it could
/// not be asked: a node starting over is not there for a moment).
async fn ask(port: u16, args: &[&str]) -> Result<String, String> {
    let mut conn = direct(port).await.map_err(|error| error.to_string())?;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let reply = tokio::time::timeout(
        Duration::from_secs(30),
        command.query_async::<redis::Value>(&mut conn),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply to {args:?} from {port} within 30 s"));
    match reply {
        Ok(redis::Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(redis::Value::VerbatimString { text, .. }) => Ok(text),
        Ok(redis::Value::SimpleString(text)) => Ok(text),
        Ok(redis::Value::Okay) => Ok("OK".into()),
        Ok(redis::Value::Int(n)) => Ok(n.to_string()),
        Ok(other) => Ok(format!("{other:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// CLUSTER NODES at `port`: each node's id, its flags, the primary it follows and its slots.
async fn nodes_seen(port: u16) -> HashMap<String, (String, String, String)> {
    let text = ask(port, &["CLUSTER", "NODES"])
        .await
        .expect("CLUSTER NODES");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields[2].replace("myself,", "");
            (
                fields[0].to_owned(),
                (flags, fields[3].to_owned(), fields[8..].join(" ")),
            )
        })
        .collect()
}

/// Runs `redis-cli --cluster` with `args`; its output, which must say it succeeded.
fn redis_cli(args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .output()
        .expect("run redis-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "redis-cli --cluster {args:?}:\n{text}"
    );
    text
}

async fn add(conn: &mut ClusterConnection, key: &str, sku: &str) -> redis::RedisResult<i64> {
    cartd_tests::chaos::load::cart_add(key, sku)
        .query_async(conn)
        .await
}

/// How many lines the cart has, if the cluster has it.
async fn lines(conn: &mut ClusterConnection, key: &str) -> Option<usize> {
    let mut command = redis::cmd("CART.GET");
    command.arg(key).arg("NOVALIDATE").arg("FORMAT").arg("JSON");
    let get = command.query_async::<Option<String>>(conn);
    let view = tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .unwrap_or_else(|_| panic!("no reply to CART.GET {key} within 10 s"))
        .expect("CART.GET");
    let view: serde_json::Value = serde_json::from_str(&view?).expect("JSON");
    Some(view["items"].as_array().map_or(0, Vec::len))
}

/// Adds a line to one of `carts` carts after another until `stop`; the adds each cart had
/// acknowledged.
async fn write_load(
    mut conn: ClusterConnection,
    prefix: &'static str,
    carts: usize,
    stop: Arc<AtomicBool>,
) -> HashMap<String, usize> {
    let mut acked: HashMap<String, usize> = HashMap::new();
    let mut at = 0usize;
    while !stop.load(Ordering::Acquire) {
        let key = format!("cart:{prefix}{}", at % carts);
        match add(&mut conn, &key, &format!("sku-{at}")).await {
            Ok(_) => *acked.entry(key).or_default() += 1,
            Err(error) => panic!("CART.ADD {key} failed while the cluster changed: {error}"),
        }
        at += 1;
    }
    acked
}

/// Waits until every node at `ports` sees `expected` nodes.
async fn wait_until_all_see(ports: &[u16], expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in ports {
        loop {
            let seen = nodes_seen(port).await.len();
            if seen == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the node on {port} sees {seen} nodes, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until every node at `ports` lists the same nodes, roles and slots.
async fn wait_until_agreed(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let first = nodes_seen(ports[0]).await;
        let mut differing = None;
        for &port in &ports[1..] {
            let seen = nodes_seen(port).await;
            if seen != first {
                differing = Some((port, seen));
                break;
            }
        }
        let Some((port, seen)) = differing else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "the nodes disagree: {} sees {first:?}, {port} sees {seen:?}",
            ports[0]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `redis-cli --cluster add-node` of `n4` and of `n5` as its replica; the ports of every node.
async fn add_primary_and_replica(cluster: &LocalCluster, n4: &LoneNode, n5: &LoneNode) -> Vec<u16> {
    let seeds: Vec<u16> = (0..3).map(|node| cluster.port + node).collect();
    let entry = format!("127.0.0.1:{}", cluster.port);
    let added = tokio::task::block_in_place(|| redis_cli(&["add-node", &n4.addr(), &entry]));
    assert!(added.contains("New node added correctly"), "{added}");
    let mut all: Vec<u16> = seeds.clone();
    all.push(n4.port);
    wait_until_all_see(&all, 4).await;
    for &port in &all {
        let info = ask(port, &["CLUSTER", "INFO"]).await.unwrap();
        assert!(info.contains("cluster_known_nodes:4\r\n"), "{port}: {info}");
    }
    let replica = tokio::task::block_in_place(|| {
        redis_cli(&[
            "add-node",
            &n5.addr(),
            &entry,
            "--cluster-slave",
            "--cluster-master-id",
            "n4",
        ])
    });
    assert!(replica.contains("New node added correctly"), "{replica}");
    all.push(n5.port);
    wait_until_all_see(&all, 5).await;
    for &port in &all {
        let (flags, primary, _) = nodes_seen(port).await["n5"].clone();
        assert_eq!(
            (flags.as_str(), primary.as_str()),
            ("slave", "n4"),
            "seen from {port}"
        );
    }

    all
}

/// `del-node` of `n5` and `n4` (serving no slots); both end alone, the rest agreeing.
async fn remove_both(cluster: &LocalCluster, n4: &LoneNode, n5: &LoneNode) {
    let seeds: Vec<u16> = (0..3).map(|node| cluster.port + node).collect();
    let entry = format!("127.0.0.1:{}", cluster.port);
    // A node serving slots is not forgotten.
    assert!(ask(cluster.port, &["CLUSTER", "FORGET", "n2"])
        .await
        .unwrap_err()
        .contains("serves"));
    let removed = tokio::task::block_in_place(|| redis_cli(&["del-node", &entry, "n5"]));
    assert!(removed.contains("CLUSTER RESET SOFT"), "{removed}");
    let removed = tokio::task::block_in_place(|| redis_cli(&["del-node", &entry, "n4"]));
    assert!(removed.contains("CLUSTER RESET SOFT"), "{removed}");
    wait_until_all_see(&seeds, 3).await;
    wait_until_agreed(&seeds).await;
    let check = tokio::task::block_in_place(|| redis_cli(&["check", &entry]));
    assert!(
        check.contains("All nodes agree about slots configuration"),
        "{check}"
    );
    assert!(check.contains("All 16384 slots covered"), "{check}");
    // n5 starts over alone, its copy of n4's carts set aside; n4 is alone with none.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alone = ask(n5.port, &["CLUSTER", "INFO"])
            .await
            .is_ok_and(|info| info.contains("cluster_known_nodes:1\r\n"));
        if alone && ask(n5.port, &["DBSIZE"]).await.as_deref() == Ok("0") {
            break;
        }
        assert!(Instant::now() < deadline, "n5 is not reset: {}", n5.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(nodes_seen(n4.port).await.len(), 1);
    assert_eq!(ask(n4.port, &["DBSIZE"]).await.as_deref(), Ok("0"));
}

/// The `first` carts (one line each) and every acknowledged add of `acked` are there once,
/// and the primaries at `seeds` hold each cart once.
async fn assert_every_add_once(seeds: &[u16], first: usize, acked: &HashMap<String, usize>) {
    let mut conn = cluster_client(seeds).await;
    for at in 0..first {
        let key = format!("cart:p{at}");
        assert_eq!(lines(&mut conn, &key).await, Some(1), "{key}");
    }
    for (key, adds) in acked {
        assert_eq!(
            lines(&mut conn, key).await,
            Some(*adds),
            "{key}: every acknowledged add once"
        );
    }
    let mut on_primaries = 0i64;
    for &port in seeds {
        on_primaries += ask(port, &["DBSIZE"])
            .await
            .unwrap()
            .parse::<i64>()
            .unwrap();
    }
    assert_eq!(
        on_primaries,
        (first + acked.len()) as i64,
        "no cart on two primaries, none lost"
    );
}

/// Waits until the node at `replica` is a replica holding as many carts as `primary`.
async fn wait_until_following(replica: u16, primary: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let role = ask(replica, &["ROLE"]).await.unwrap();
        let copies: i64 = ask(replica, &["DBSIZE"]).await.unwrap().parse().unwrap();
        let carts: i64 = ask(primary, &["DBSIZE"]).await.unwrap().parse().unwrap();
        if role.contains("slave") && copies == carts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{replica} does not follow {primary}: {role}, {copies} carts of {carts}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the nodes refuse, each naming why: n1 at `n1`, n4 (serving 300 slots) at `n4`.
async fn assert_refusals(n1: u16, n4: u16) {
    let forget_self = ask(n1, &["CLUSTER", "FORGET", "n1"]).await.unwrap_err();
    assert!(forget_self.contains("can't forget myself"), "{forget_self}");
    let busy = ask(n1, &["CLUSTER", "FORGET", "n4"]).await.unwrap_err();
    assert!(busy.contains("serves 300 slot"), "{busy}");
    let unknown = ask(n1, &["CLUSTER", "FORGET", "n9"]).await.unwrap_err();
    assert!(unknown.contains("Unknown node n9"), "{unknown}");
    let with_slots = ask(n4, &["CLUSTER", "REPLICATE", "n1"]).await.unwrap_err();
    assert!(with_slots.contains("must be empty"), "{with_slots}");
    let reset = ask(n4, &["CLUSTER", "RESET", "SOFT"]).await.unwrap_err();
    assert!(reset.contains("serves slots"), "{reset}");
    let port = ask(n1, &["CLUSTER", "MEET", "127.0.0.1", "0"])
        .await
        .unwrap_err();
    assert!(port.contains("Invalid base port"), "{port}");
}

/// Three primaries with PostgreSQL. n4 (knowing only itself) is added with redis-cli, n5 as
/// its replica; `rebalance` gives n4 slots while two clients write; n3, its own record of the
/// members lost, learns them back from PostgreSQL; then `rebalance` empties n4 and `del-node`
/// removes n5 and n4: every acknowledged add is there once and no cart is on two primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_adds_a_primary_and_its_replica_rebalances_and_removes_them() {
    let db = cartd_tests::TestDb::create().await;
    let postgres = format!("[postgres]\nurl = \"{}\"\n", db.url);
    let cluster = LocalCluster::up_with(3, 0, &postgres);
    let seeds: Vec<u16> = (0..3).map(|node| cluster.port + node).collect();
    let entry = format!("127.0.0.1:{}", cluster.port);
    let n4 = LoneNode::start("n4", &postgres);
    let n5 = LoneNode::start("n5", &postgres);
    let info = ask(n4.port, &["CLUSTER", "INFO"]).await.unwrap();
    assert!(info.contains("cluster_known_nodes:1\r\n"), "{info}");
    let mut conn = cluster_client(&seeds).await;
    for at in 0..300 {
        add(&mut conn, &format!("cart:p{at}"), "first")
            .await
            .expect("CART.ADD");
    }

    let all = add_primary_and_replica(&cluster, &n4, &n5).await;

    // n3 loses its record of the members and starts again: PostgreSQL has them.
    cluster.kill9(2);
    std::fs::remove_file(cluster.node_dir(2).join("data/cluster-members"))
        .expect("n3 kept its members");
    cluster.restart(2);
    wait_until_all_see(&[cluster.port + 2], 5).await;
    wait_until_agreed(&all).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| tokio::spawn(write_load(conn.clone(), prefix, 200, stop.clone())))
        .collect();
    let rebalance = tokio::task::block_in_place(|| {
        redis_cli(&[
            "rebalance",
            &entry,
            "--cluster-use-empty-masters",
            "--cluster-weight",
            "n4=0.1",
            "--cluster-pipeline",
            "50",
        ])
    });
    assert!(rebalance.contains("to 127.0.0.1"), "{rebalance}");
    let (_, _, n4_slots) = nodes_seen(cluster.port).await["n4"].clone();
    assert!(!n4_slots.is_empty(), "n4 serves slots after the rebalance");
    let n4_carts: i64 = ask(n4.port, &["DBSIZE"]).await.unwrap().parse().unwrap();
    assert!(n4_carts > 0, "n4 holds the carts of its slots");
    // n5 follows n4 and has its carts.
    wait_until_following(n5.port, n4.port).await;

    wait_until_agreed(&all).await;
    let emptied = tokio::task::block_in_place(|| {
        redis_cli(&[
            "rebalance",
            &entry,
            "--cluster-weight",
            "n4=0",
            "--cluster-pipeline",
            "50",
        ])
    });
    assert!(emptied.contains("from 127.0.0.1"), "{emptied}");
    stop.store(true, Ordering::Release);
    let mut acked = HashMap::new();
    for writer in writers {
        acked.extend(writer.await.expect("the writer"));
    }
    remove_both(&cluster, &n4, &n5).await;
    assert_every_add_once(&seeds, 300, &acked).await;
    let forgotten = db
        .count("SELECT count(*) FROM cluster_nodes WHERE forgotten AND node IN ('n4', 'n5')")
        .await;
    assert_eq!(forgotten, 2, "PostgreSQL records both as forgotten");
}

/// Without PostgreSQL: add-node pushes n4 to every node; a reshard gives it slots; n2 and n4
/// restarted still know each other and agree on the slots. The refusals name what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_postgres_a_met_node_is_pushed_to_every_node_and_kept_across_restarts() {
    let cluster = LocalCluster::up(3, 0);
    let seeds: Vec<u16> = (0..3).map(|node| cluster.port + node).collect();
    let entry = format!("127.0.0.1:{}", cluster.port);
    let n4 = LoneNode::start("n4", "");
    let mut conn = cluster_client(&seeds).await;
    for at in 0..200 {
        add(&mut conn, &format!("cart:q{at}"), "first")
            .await
            .expect("CART.ADD");
    }
    let added = tokio::task::block_in_place(|| redis_cli(&["add-node", &n4.addr(), &entry]));
    assert!(added.contains("New node added correctly"), "{added}");
    let mut all = seeds.clone();
    all.push(n4.port);
    wait_until_all_see(&all, 4).await;
    let reshard = tokio::task::block_in_place(|| {
        redis_cli(&[
            "reshard",
            &entry,
            "--cluster-from",
            "n1",
            "--cluster-to",
            "n4",
            "--cluster-slots",
            "300",
            "--cluster-yes",
        ])
    });
    assert!(reshard.contains("Moving slot"), "{reshard}");
    let n4_carts: i64 = ask(n4.port, &["DBSIZE"]).await.unwrap().parse().unwrap();
    assert!(n4_carts > 0, "n4 holds the carts of its slots");

    cluster.kill9(1);
    cluster.restart(1);
    n4.kill9();
    n4.restart();
    wait_until_all_see(&all, 4).await;
    let check = tokio::task::block_in_place(|| redis_cli(&["check", &entry]));
    assert!(
        check.contains("All nodes agree about slots configuration"),
        "{check}"
    );
    assert!(check.contains("All 16384 slots covered"), "{check}");
    assert_eq!(
        ask(n4.port, &["DBSIZE"])
            .await
            .unwrap()
            .parse::<i64>()
            .unwrap(),
        n4_carts
    );
    let mut conn = cluster_client(&all).await;
    for at in 0..200 {
        let key = format!("cart:q{at}");
        assert_eq!(lines(&mut conn, &key).await, Some(1), "{key}");
    }

    // Refusals.
    assert_refusals(cluster.port, n4.port).await;
    // CLUSTER MEET on a member with the address of a node that knows no other: that node
    // joins; again, and nothing changes.
    let other = LoneNode::start("m1", "");
    let other_port = other.port.to_string();
    let meet = ask(
        cluster.port + 2,
        &["CLUSTER", "MEET", "127.0.0.1", &other_port],
    )
    .await;
    assert_eq!(meet.as_deref(), Ok("OK"), "{}", other.log());
    all.push(other.port);
    wait_until_all_see(&all, 5).await;
    let again = ask(cluster.port, &["CLUSTER", "MEET", "127.0.0.1", &other_port]).await;
    assert_eq!(again.as_deref(), Ok("OK"));
    assert_eq!(nodes_seen(cluster.port).await.len(), 5);
}

/// Waits until the node on `port` is a primary (`ROLE` says master), 30 s at most.
async fn wait_until_primary(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ask(port, &["ROLE"])
        .await
        .is_ok_and(|role| role.contains("master"))
    {
        assert!(Instant::now() < deadline, "{port} is not promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A dead primary whose replica took over is removed as del-node does it (`CLUSTER FORGET`
/// on every other node), though its shard group is named after it: the group goes on under
/// that name with its lease and slots, on n4 restarted with its members file and again
/// without (config.toml and PostgreSQL), and every cart is there. Fails on 3b8446f:
/// FORGET refused a node whose name its group carries while the group had members, so a dead
/// old primary could never be removed. A FORGET arriving once the node is forgotten already
/// is OK: on 39ab11d it was "Unknown node", which failed redis-cli del-node whenever
/// PostgreSQL's row reached a node before redis-cli's FORGET did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_old_primary_is_forgotten_and_its_shard_group_goes_on() {
    let db = cartd_tests::TestDb::create().await;
    let postgres = format!("[postgres]\nurl = \"{}\"\n", db.url);
    // n1 and n2 serve the slots; n3 replicates n1, n4 replicates n2.
    let cluster = LocalCluster::up_with(2, 1, &postgres);
    let ports: Vec<u16> = (0..4).map(|node| cluster.port + node).collect();
    let live = &ports[1..];
    let mut conn = cluster_client(&ports[..2]).await;
    for at in 0..60 {
        add(&mut conn, &format!("cart:d{at}"), "first")
            .await
            .expect("CART.ADD");
    }
    wait_until_following(ports[2], ports[0]).await;
    cluster.kill9(0);
    wait_until_primary(ports[2]).await;
    // Every live node follows the lease to n3.
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in live {
        while nodes_seen(port).await["n3"].0 != "master" {
            assert!(Instant::now() < deadline, "{port} does not see n3 promoted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for &port in live {
        assert_eq!(
            ask(port, &["CLUSTER", "FORGET", "n1"]).await,
            Ok("OK".to_owned()),
            "FORGET n1 on {port}"
        );
    }
    wait_until_all_see(live, 3).await;
    wait_until_agreed(live).await;
    let (flags, _, slots) = nodes_seen(ports[1]).await["n3"].clone();
    assert_eq!((flags.as_str(), slots.as_str()), ("master", "0-8191"));
    // n4 restarts on its members file, then without one (config.toml and PostgreSQL).
    cluster.kill9(3);
    cluster.restart(3);
    wait_until_all_see(live, 3).await;
    wait_until_agreed(live).await;
    cluster.kill9(3);
    std::fs::remove_file(cluster.node_dir(3).join("data/cluster-members"))
        .expect("n4 kept its members");
    cluster.restart(3);
    wait_until_all_see(live, 3).await;
    wait_until_agreed(live).await;
    // A FORGET that arrives after PostgreSQL brought the node's forgetting is done already:
    // OK, not "Unknown node" (del-node sends FORGET to each node in turn).
    for &port in live {
        assert_eq!(
            ask(port, &["CLUSTER", "FORGET", "n1"]).await,
            Ok("OK".to_owned()),
            "FORGET n1 again on {port}"
        );
    }
    let entry = format!("127.0.0.1:{}", ports[1]);
    let check = tokio::task::block_in_place(|| redis_cli(&["check", &entry]));
    assert!(check.contains("All 16384 slots covered"), "{check}");
    assert!(!check.contains("n1"), "n1 is listed nowhere: {check}");
    let mut conn = cluster_client(live).await;
    for at in 0..60 {
        let key = format!("cart:d{at}");
        assert_eq!(lines(&mut conn, &key).await, Some(1), "{key}");
    }
    let lease = db
        .count("SELECT count(*) FROM cluster_leases WHERE shard_group = 'n1' AND holder = 'n3'")
        .await;
    assert_eq!(lease, 1, "the group keeps its name and its lease");
    let forgotten = db
        .count("SELECT count(*) FROM cluster_nodes WHERE forgotten AND node = 'n1'")
        .await;
    assert_eq!(forgotten, 1);
}
