//! A local cluster made by `scripts/cluster up` (3 primaries, a replica each): every node
//! answers for the slots it serves and `-MOVED`s the rest before anything runs;
//! `CROSSSLOT` for a request or transaction over several slots; redis-py's RedisCluster,
//! `redis-cli -c` and `redis-cli --cluster check` work unchanged. Before, every cluster client
//! failed on "unknown command CLUSTER".

use std::process::Command;

use cartd_tests::cluster::LocalCluster;
use cartd_tests::redis_cli;
use cartd_tests::scripts::{client_libs, run_script};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

/// Each node serves its own slots and MOVEDs the others to their primary (a replica MOVEDs
/// everything); keys of several slots in one request or one transaction are CROSSSLOT.
#[tokio::test]
async fn nodes_serve_their_slots_and_redirect_the_rest() {
    let cluster = LocalCluster::up(3, 1);
    let mut n1 = cluster.conn(0).await;
    let slot = |reply: String| reply.trim_start_matches(':').trim_end().to_owned();
    // cart:2 is in slot 13807 (n3's), cart:1 in n1's.
    assert_eq!(
        slot(text(n1.call(&["CLUSTER", "KEYSLOT", "cart:2"]).await)),
        "13807"
    );
    let add = |key: &'static str| {
        [
            "CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION",
        ]
    };
    assert_eq!(
        text(n1.call(&add("cart:2")).await),
        format!("-MOVED 13807 127.0.0.1:{}\r\n", cluster.port + 2)
    );
    assert_eq!(text(n1.call(&add("cart:1")).await), ":1\r\n");
    let mut replica = cluster.conn(3).await;
    let moved = text(replica.call(&add("cart:1")).await);
    assert!(
        moved.starts_with("-MOVED ") && moved.ends_with(&format!("127.0.0.1:{}\r\n", cluster.port)),
        "a replica redirects writes to its primary: {moved}"
    );
    assert_eq!(
        text(n1.call(&["DEL", "cart:1", "cart:2"]).await),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // Same slot through a hash tag: allowed.
    assert_eq!(
        text(n1.call(&["EXISTS", "{cart:1}a", "{cart:1}b"]).await),
        ":0\r\n"
    );
    // A transaction over two slots is refused at the second and aborted.
    n1.send(&cartd_tests::encode_command(&["MULTI"])).await;
    n1.send(&cartd_tests::encode_command(&add("cart:1"))).await;
    n1.send(&cartd_tests::encode_command(&["EXISTS", "cart:3"]))
        .await;
    n1.send(&cartd_tests::encode_command(&["EXEC"])).await;
    assert_eq!(text(n1.read_reply().await), "+OK\r\n");
    assert_eq!(text(n1.read_reply().await), "+QUEUED\r\n");
    let third = text(n1.read_reply().await);
    assert!(
        third.starts_with("-CROSSSLOT") || third.starts_with("-MOVED"),
        "{third}"
    );
    assert!(text(n1.read_reply().await).starts_with("-EXECABORT"));
    // Keyless commands run on any node.
    assert_eq!(text(replica.call(&["PING"]).await), "+PONG\r\n");
}

/// The tools and clients a team already uses: `redis-cli --cluster check` reports OK,
/// `redis-cli -c` follows MOVED, redis-py's RedisCluster spreads 300 carts over the three
/// primaries by slot and reads them back.
#[tokio::test]
async fn cluster_clients_work_unchanged() {
    let cluster = LocalCluster::up(3, 1);
    let cli = redis_cli().expect("redis-cli (scripts/test installs redis-tools)");
    let check = Command::new(&cli)
        .args(["--cluster", "check", &format!("127.0.0.1:{}", cluster.port)])
        .output()
        .expect("redis-cli --cluster check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(
        report.contains("[OK] All nodes agree about slots configuration."),
        "{report}"
    );
    assert!(report.contains("[OK] All 16384 slots covered."), "{report}");

    let follow = Command::new(&cli)
        .args(["-c", "-p", &cluster.port.to_string()])
        .args([
            "CART.ADD", "cart:2", "sku", "-", "3", "PRICE", "100", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ])
        .output()
        .expect("redis-cli -c");
    assert_eq!(
        String::from_utf8_lossy(&follow.stdout).trim(),
        "1",
        "redis-cli -c followed MOVED"
    );

    let libs = client_libs().join("python");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test",
        libs.display()
    );
    let script = r#"
import json, sys
from redis.cluster import RedisCluster
port = int(sys.argv[1])
rc = RedisCluster(host="127.0.0.1", port=port)
for i in range(300):
    rc.execute_command("CART.ADD", f"cart:py{i}", "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD")
versions = [rc.execute_command("CART.ADD", f"cart:py{i}", "sku", "-", "1", "REPLY", "VERSION") for i in range(300)]
per_node = {}
for node in rc.get_primaries():
    per_node[str(node.port)] = rc.execute_command("DBSIZE", target_nodes=node)
print(json.dumps({"versions": sorted(set(versions)), "per_node": per_node}))
"#;
    let out = run_script(
        "python3",
        &["-c", script, &cluster.port.to_string()],
        ("PYTHONPATH", libs),
    );
    assert_eq!(
        out["versions"],
        serde_json::json!([2]),
        "every cart got both adds"
    );
    let per_node = out["per_node"].as_object().expect("DBSIZE per primary");
    assert_eq!(per_node.len(), 3);
    let total: i64 = per_node.values().map(|count| count.as_i64().unwrap()).sum();
    assert_eq!(
        total,
        300 + 1,
        "300 carts and cart:2, each on exactly one node"
    );
    assert!(
        per_node.values().all(|count| count.as_i64().unwrap() > 50),
        "spread over the primaries: {per_node:?}"
    );
}

/// COUNTKEYSINSLOT and GETKEYSINSLOT count and list the carts of one slot this node holds,
/// with Redis's errors for a bad slot or count.
#[tokio::test]
async fn keys_in_a_slot_are_counted_and_listed() {
    let cluster = LocalCluster::up(1, 0);
    let mut node = cluster.conn(0).await;
    for key in ["{a}1", "{a}2", "{a}3", "{b}1"] {
        let add = [
            "CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD",
        ];
        assert!(text(node.call(&add).await).starts_with('*'), "{key}");
    }
    let slot_of = |reply: String| reply.trim_start_matches(':').trim_end().to_owned();
    let a = slot_of(text(node.call(&["CLUSTER", "KEYSLOT", "a"]).await));
    assert_eq!(
        text(node.call(&["CLUSTER", "COUNTKEYSINSLOT", &a]).await),
        ":3\r\n"
    );
    let two = text(node.call(&["CLUSTER", "GETKEYSINSLOT", &a, "2"]).await);
    assert!(two.starts_with("*2\r\n") && !two.contains("{b}"), "{two}");
    assert_eq!(
        text(node.call(&["CLUSTER", "COUNTKEYSINSLOT", "16384"]).await),
        "-ERR Invalid slot\r\n"
    );
    assert_eq!(
        text(node.call(&["CLUSTER", "GETKEYSINSLOT", &a, "-1"]).await),
        "-ERR Invalid slot or number of keys\r\n"
    );
}

const NODE_CLUSTER: &str = r#"
// With `node -e`, the port is the last argument.
const port = Number(process.argv[process.argv.length - 1]);
const out = {};
async function ioredisFlow() {
  const Redis = require("ioredis");
  const cluster = new Redis.Cluster([{ host: "127.0.0.1", port }]);
  const versions = [];
  for (let i = 0; i < 100; i++) {
    await cluster.call("CART.ADD", `cart:io${i}`, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD");
    versions.push(await cluster.call("CART.ADD", `cart:io${i}`, "sku", "-", "1", "REPLY", "VERSION"));
  }
  out.ioredis = [...new Set(versions)];
  cluster.disconnect();
}
async function nodeRedisFlow(major) {
  const redis = require(`redis${major}`);
  const cluster = redis.createCluster({ rootNodes: [{ socket: { host: "127.0.0.1", port } }] });
  cluster.on("error", () => {});
  await cluster.connect();
  const versions = [];
  for (let i = 0; i < 100; i++) {
    const key = `cart:nr${major}-${i}`;
    await cluster.sendCommand(key, false, ["CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD"]);
    versions.push(await cluster.sendCommand(key, false, ["CART.ADD", key, "sku", "-", "1", "REPLY", "VERSION"]));
  }
  out[`node_redis_${major}`] = [...new Set(versions)];
  await cluster.quit();
}
(async () => {
  for (const [name, flow] of [["ioredis", ioredisFlow], ["node_redis_4", () => nodeRedisFlow(4)], ["node_redis_5", () => nodeRedisFlow(5)]]) {
    try { await flow(); } catch (error) { out[name] = { error: String(error) }; }
  }
  console.log(JSON.stringify(out));
  // A cluster client may keep a reconnect timer alive: the answer is printed, so end here.
  process.exit(0);
})();
"#;

/// ioredis's Cluster and node-redis 4 and 5 createCluster route CART.ADDs to the right
/// primaries (following MOVED where they guess): every cart gets both of its adds.
#[tokio::test]
async fn node_cluster_clients_work_unchanged() {
    let cluster = LocalCluster::up(3, 0);
    let libs = client_libs().join("node").join("node_modules");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test",
        libs.display()
    );
    let out = run_script(
        "node",
        &["-e", NODE_CLUSTER, &cluster.port.to_string()],
        ("NODE_PATH", libs),
    );
    for client in ["ioredis", "node_redis_4", "node_redis_5"] {
        assert_eq!(out[client], serde_json::json!([2]), "{client}: {out}");
    }
}

/// CART.MERGE is routed by its user cart (COMMAND GETKEYS names only it): on the user cart's
/// node it merges a guest cart of another slot that node serves, and one of another node (here
/// none: the user cart is replied as it is).
#[tokio::test]
async fn a_merge_is_routed_by_its_user_cart() {
    let cluster = LocalCluster::up(3, 0);
    let mut n1 = cluster.conn(0).await;
    let slot_of =
        |reply: String| -> u16 { reply.trim_start_matches(':').trim_end().parse().unwrap() };
    // Keys on n1 (slots 0-5460) and one elsewhere, found by asking.
    let mut mine = Vec::new();
    let mut elsewhere = None;
    for n in 0..200 {
        let key = format!("cart:guest:{n}");
        let slot = slot_of(text(n1.call(&["CLUSTER", "KEYSLOT", &key]).await));
        if slot <= 5460 {
            mine.push((key, slot));
        } else if elsewhere.is_none() {
            elsewhere = Some(key);
        }
    }
    let (local_guest, guest_slot) = mine[0].clone();
    let mut user = None;
    for n in 1..500 {
        let key = format!("cart:u{n}");
        let slot = slot_of(text(n1.call(&["CLUSTER", "KEYSLOT", &key]).await));
        if slot <= 5460 && slot != guest_slot {
            user = Some(key);
            break;
        }
    }
    let user = user.expect("a user cart on n1 in another slot");
    for key in [&local_guest, &user] {
        let add = [
            "CART.ADD",
            key.as_str(),
            "sku",
            "-",
            "1",
            "PRICE",
            "100",
            "CURRENCY",
            "USD",
        ];
        assert!(text(n1.call(&add).await).starts_with('*'), "{key}");
    }
    let merged = text(
        n1.call(&["CART.MERGE", &local_guest, &user, "REPLY", "VERSION"])
            .await,
    );
    assert_eq!(
        merged, ":2\r\n",
        "a guest cart of another slot on the same node merges"
    );
    let remote = elsewhere.expect("a guest cart on another node");
    // A guest cart of another node is handed off (tests/tests/cluster_merge.rs); none here.
    let merged = text(
        n1.call(&["CART.MERGE", &remote, &user, "REPLY", "VERSION"])
            .await,
    );
    assert_eq!(merged, ":2\r\n", "nothing to take: the user cart as it is");
}

/// A replica says what it is, in Redis's fields, once its link to its primary is up: ROLE
/// `slave host port connected offset`, INFO replication `role:slave` with its primary and
/// `master_link_status:up`; a primary stays `master`.
#[tokio::test]
async fn a_replica_names_its_primary_in_role_and_info() {
    let cluster = LocalCluster::up(1, 1);
    let mut replica = cluster.conn(1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let role = loop {
        let role = text(replica.call(&["ROLE"]).await);
        if role.contains("connected") || std::time::Instant::now() > deadline {
            break role;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        role,
        format!(
            "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:{}\r\n$9\r\nconnected\r\n:0\r\n",
            cluster.port
        )
    );
    let info = text(replica.call(&["INFO", "replication"]).await);
    for field in [
        "role:slave\r\n".to_owned(),
        "master_host:127.0.0.1\r\n".to_owned(),
        format!("master_port:{}\r\n", cluster.port),
        "master_link_status:up\r\n".to_owned(),
    ] {
        assert!(info.contains(&field), "{field:?} in {info:?}");
    }
    let mut primary = cluster.conn(0).await;
    let info = text(primary.call(&["INFO", "replication"]).await);
    assert!(
        info.contains("role:master\r\n") && info.contains("master_repl_offset:"),
        "{info}"
    );
}

async fn count_in_slot(conn: &mut redis::aio::MultiplexedConnection, slot: i64) -> usize {
    let count: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(conn)
        .await
        .expect("COUNTKEYSINSLOT");
    usize::try_from(count).expect("a count")
}

async fn keys_in_slot(
    conn: &mut redis::aio::MultiplexedConnection,
    slot: i64,
    count: usize,
) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(count)
        .query_async(conn)
        .await
        .expect("GETKEYSINSLOT");
    keys.sort();
    keys
}

/// Every key SCAN returns, checking none comes twice.
async fn scan_all(
    conn: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashSet<String> {
    let mut scanned = std::collections::HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await
            .expect("SCAN");
        for key in batch {
            assert!(scanned.insert(key.clone()), "{key} twice");
        }
        if next == 0 {
            return scanned;
        }
        cursor = next;
    }
}

/// With carts ordered by slot, every cart is counted in its own slot and nowhere else: the
/// counts of all the slots add up to DBSIZE, GETKEYSINSLOT lists exactly the carts whose
/// KEYSLOT is that slot (and no more than asked), and SCAN still returns every cart once.
#[tokio::test]
async fn every_cart_is_counted_in_its_own_slot() {
    let cluster = LocalCluster::up(1, 0);
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.port)).expect("a client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = (0..3000).map(|n| format!("cart:{n}")).collect();
    for chunk in keys.chunks(250) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("CART.ADD")
                .arg(key)
                .arg(&["sku", "-", "1", "PRICE", "100", "CURRENCY", "USD"][..])
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("adds");
    }
    let mut by_slot: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
    for key in &keys {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("KEYSLOT");
        by_slot.entry(slot).or_default().push(key.clone());
    }
    let mut counted = 0;
    for (slot, expected) in &mut by_slot {
        expected.sort();
        assert_eq!(
            keys_in_slot(&mut conn, *slot, 100).await,
            *expected,
            "slot {slot}"
        );
        counted += count_in_slot(&mut conn, *slot).await;
    }
    let empty = (0..16384)
        .find(|slot| !by_slot.contains_key(slot))
        .expect("a slot without carts");
    assert_eq!(count_in_slot(&mut conn, empty).await, 0);
    let dbsize: usize = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert_eq!((counted, dbsize), (3000, 3000));
    let (slot, crowded) = by_slot
        .iter()
        .max_by_key(|(_, keys)| keys.len())
        .expect("a slot");
    assert!(crowded.len() >= 2, "3000 carts share some slots");
    assert_eq!(keys_in_slot(&mut conn, *slot, 1).await.len(), 1);
    assert_eq!(scan_all(&mut conn).await.len(), 3000);
}
