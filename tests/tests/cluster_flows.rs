//! The cart flow through cluster-aware clients, unchanged, on a local 3-primary, 3-replica
//! cluster (issue 13): redis-py's RedisCluster (RESP2 and RESP3), ioredis's Cluster and
//! node-redis's createCluster add to carts on every primary, view them, merge guest carts
//! that live on other nodes into user carts, check out and complete; reads routed to the
//! replicas (READONLY) see what WAIT 1 acknowledged.

use cartd_tests::cluster::LocalCluster;
use cartd_tests::scripts::{client_libs, run_script};

const PYTHON_FLOW: &str = r#"
import json, sys
from redis.cluster import RedisCluster
port, proto = int(sys.argv[1]), int(sys.argv[2])
rc = RedisCluster(host="127.0.0.1", port=port, protocol=proto, read_from_replicas=True)
def view(key):
    raw = rc.execute_command("CART.GET", key, "FORMAT", "JSON")
    return None if raw is None else json.loads(raw)
# A keyless command goes to one primary; the others get it from it (server-wide data).
rc.execute_command("CATALOG.SET", "p1", "v", "500", "USD", target_nodes=rc.get_default_node())
rc.execute_command("CATALOG.SET", "p2", "v", "300", "USD", target_nodes=rc.get_default_node())
out = {"totals": [], "merged_lines": [], "guest_left": 0, "completed": 0, "replica_exists": 0, "nodes": set()}
for i in range(40):
    user, guest = f"cart:py{proto}-{i}", f"guest:py{proto}-{i}"
    out["nodes"].add(rc.get_node_from_key(user).port != rc.get_node_from_key(guest).port)
    rc.execute_command("CART.ADD", guest, "p1", "v", "1", "PRICE", "500", "CURRENCY", "USD")
    rc.execute_command("CART.ADD", user, "p2", "v", "2", "PRICE", "300", "CURRENCY", "USD")
    rc.execute_command("CART.MERGE", guest, user)
    merged = view(user)
    out["merged_lines"].append(len(merged["items"]))
    out["totals"].append(merged["totals"]["total"])
    if view(guest) is not None:
        out["guest_left"] += 1
    rc.execute_command("CART.CHECKOUT", user)
    frozen = view(user)
    if rc.execute_command("CART.COMPLETE", user, frozen["checkout_token"]) in (b"OK", "OK", True):
        out["completed"] += 1
    rc.execute_command("CART.ADD", user, "p1", "v", "1", "PRICE", "500", "CURRENCY", "USD")
    rc.execute_command("WAIT", "1", "2000", target_nodes=rc.get_node_from_key(user))
    out["replica_exists"] += rc.execute_command("EXISTS", user)
out["nodes"] = sorted(out["nodes"])
print(json.dumps(out))
"#;

const NODE_FLOW: &str = r#"
const port = Number(process.argv[process.argv.length - 1]);
const out = {};
async function flow(name, send) {
  const result = { totals: [], guestLeft: 0, completed: 0 };
  for (let i = 0; i < 30; i++) {
    const user = `cart:${name}-${i}`, guest = `guest:${name}-${i}`;
    await send(guest, ["CART.ADD", guest, "p1", "v", "1", "PRICE", "500", "CURRENCY", "USD"]);
    await send(user, ["CART.ADD", user, "p2", "v", "2", "PRICE", "300", "CURRENCY", "USD"]);
    await send(user, ["CART.MERGE", guest, user]);
    const merged = JSON.parse(await send(user, ["CART.GET", user, "FORMAT", "JSON"]));
    result.totals.push(merged.totals.total);
    if ((await send(guest, ["CART.GET", guest, "FORMAT", "JSON"])) !== null) result.guestLeft++;
    await send(user, ["CART.CHECKOUT", user]);
    const frozen = JSON.parse(await send(user, ["CART.GET", user, "FORMAT", "JSON"]));
    if (String(await send(user, ["CART.COMPLETE", user, frozen.checkout_token])) === "OK") result.completed++;
  }
  result.totals = [...new Set(result.totals)];
  out[name] = result;
}
(async () => {
  const Redis = require("ioredis");
  const io = new Redis.Cluster([{ host: "127.0.0.1", port }]);
  try { await flow("ioredis", (key, args) => io.call(...args)); } catch (error) { out.ioredis = { error: String(error) }; }
  io.disconnect();
  const redis = require("redis5");
  const nr = redis.createCluster({ rootNodes: [{ socket: { host: "127.0.0.1", port } }] });
  nr.on("error", () => {});
  await nr.connect();
  try { await flow("node_redis", (key, args) => nr.sendCommand(key, false, args)); } catch (error) { out.node_redis = { error: String(error) }; }
  await nr.quit();
  console.log(JSON.stringify(out));
  process.exit(0);
})();
"#;

/// The whole flow with redis-py's RedisCluster, RESP2 and RESP3: each merged cart holds both
/// lines (5.00 + 2 x 3.00), no guest cart is left, every checkout completes, and the replica
/// of the cart's primary, read through READONLY, has the cart WAIT 1 acknowledged.
#[tokio::test]
async fn python_cluster_clients_run_the_cart_flow() {
    let cluster = LocalCluster::up(3, 1);
    let libs = client_libs().join("python");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test",
        libs.display()
    );
    for proto in ["2", "3"] {
        let out = run_script(
            "python3",
            &["-c", PYTHON_FLOW, &cluster.port.to_string(), proto],
            ("PYTHONPATH", libs.clone()),
        );
        assert_eq!(
            out["nodes"],
            serde_json::json!([false, true]),
            "RESP{proto}: some merges across nodes, some not: {out}"
        );
        let totals: Vec<i64> = serde_json::from_value(out["totals"].clone()).expect("totals");
        assert!(
            totals.iter().all(|total| *total == 1100),
            "RESP{proto}: {out}"
        );
        assert_eq!(totals.len(), 40);
        let lines: Vec<i64> = serde_json::from_value(out["merged_lines"].clone()).expect("lines");
        assert!(lines.iter().all(|count| *count == 2), "RESP{proto}: {out}");
        assert_eq!(out["guest_left"], 0, "RESP{proto}: {out}");
        assert_eq!(out["completed"], 40, "RESP{proto}: {out}");
        assert_eq!(out["replica_exists"], 40, "RESP{proto}: {out}");
    }
}

/// The same flow with ioredis's Cluster and node-redis 5's createCluster.
#[tokio::test]
async fn node_cluster_clients_run_the_cart_flow() {
    let cluster = LocalCluster::up(3, 1);
    let libs = client_libs().join("node").join("node_modules");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test",
        libs.display()
    );
    let mut seed = cluster.conn(0).await;
    for (product, price) in [("p1", "500"), ("p2", "300")] {
        let set = seed
            .call(&["CATALOG.SET", product, "v", price, "USD"])
            .await;
        assert_eq!(set, b"+OK\r\n");
    }
    let out = run_script(
        "node",
        &["-e", NODE_FLOW, &cluster.port.to_string()],
        ("NODE_PATH", libs),
    );
    for client in ["ioredis", "node_redis"] {
        assert_eq!(
            out[client]["totals"],
            serde_json::json!([1100]),
            "{client}: {out}"
        );
        assert_eq!(out[client]["guestLeft"], 0, "{client}: {out}");
        assert_eq!(out[client]["completed"], 30, "{client}: {out}");
    }
    // INFO cluster: both peer links up; every handoff confirmed before long.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = String::from_utf8(seed.call(&["INFO", "cluster"]).await).expect("text");
        let field = |name: &str| cartd_tests::info_field(&info, name);
        assert_eq!(field("cluster_peer_links").as_deref(), Some("2"), "{info}");
        let settled = field("cluster_peer_links_up").as_deref() == Some("2")
            && field("cluster_handoffs_given").as_deref() == Some("0")
            && field("cluster_handoffs_received").as_deref() == Some("0");
        if settled {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
