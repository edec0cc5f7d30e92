//! Real client libraries against a real cartd: redis-py (RESP2 and RESP3, including its INFO
//! parser and the CLIENT SETINFO it sends on connect) and ioredis (its ready check reads INFO).
//! `scripts/test` installs both under `target/client-libs`.

use cartd_tests::{client_libs, run_script, Cartd};
use serde_json::Value as Json;

const REDIS_PY: &str = r#"
import json, sys, redis
port = int(sys.argv[1])
out = {}
for proto in (2, 3):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=proto, decode_responses=True)
    out[f"ping{proto}"] = r.ping()
    r.execute_command("CART.ADD", f"cart:py{proto}", "sku-1", "-", "2", "PRICE", "999", "CURRENCY", "USD")
    view = r.execute_command("CART.GET", f"cart:py{proto}", "NOVALIDATE")
    out[f"view{proto}"] = view if isinstance(view, dict) else dict(zip(view[::2], view[1::2]))
    out[f"json{proto}"] = json.loads(r.execute_command("CART.GET", f"cart:py{proto}", "FORMAT", "JSON"))
    info = r.info()
    out[f"info{proto}"] = {k: info[k] for k in ("redis_version", "connected_clients", "loading", "db0") if k in info}
    stats = r.info("commandstats")
    out[f"cmdstat{proto}"] = stats.get("cmdstat_cart.add", {}).get("calls", 0)
    latency = r.info("latencystats")
    out[f"latency{proto}"] = sorted(latency.get("latency_percentiles_usec_cart.add", {}).keys())
    out[f"clients{proto}"] = [c.get("lib-name", "") for c in r.client_list()]
    out[f"config{proto}"] = r.config_get("maxclients")
    out[f"scan{proto}"] = sorted(r.scan_iter(match="cart:py*", count=10))
    out[f"missing{proto}"] = r.execute_command("CART.GET", "cart:nobody")
print(json.dumps(out))
"#;

/// redis-py works unchanged in both protocols: its handshake, INFO parser (including
/// commandstats and latencystats), CLIENT LIST parser, CONFIG GET and SCAN iterator.
#[tokio::test]
async fn redis_py_works_unchanged() {
    let cartd = Cartd::start_default();
    let libs = client_libs().join("python");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test, which installs redis-py",
        libs.display()
    );
    let port = cartd.port().to_string();
    let out = run_script("python3", &["-c", REDIS_PY, &port], ("PYTHONPATH", libs));
    for proto in [2, 3] {
        assert_eq!(out[format!("ping{proto}")], true);
        let view = &out[format!("view{proto}")];
        assert_eq!(view["id"], format!("cart:py{proto}"));
        assert_eq!(view["version"], 1);
        assert_eq!(out[format!("json{proto}")]["items"][0]["qty"], 2);
        assert_eq!(out[format!("info{proto}")]["redis_version"], "7.4.0");
        assert_eq!(out[format!("info{proto}")]["loading"], 0);
        assert!(out[format!("cmdstat{proto}")].as_i64().unwrap() >= 1);
        assert_eq!(
            out[format!("latency{proto}")],
            serde_json::json!(["p50", "p99", "p99.9"])
        );
        assert!(out[format!("clients{proto}")]
            .as_array()
            .unwrap()
            .iter()
            .any(|name| name == "redis-py"));
        assert_eq!(out[format!("config{proto}")]["maxclients"], "10000");
        assert_eq!(out[format!("missing{proto}")], Json::Null);
    }
    assert_eq!(out["scan3"], serde_json::json!(["cart:py2", "cart:py3"]));
    // RESP3 gives redis-py a real map; booleans arrive as booleans there and as 0/1 in RESP2.
    assert_eq!(out["view3"]["items"][0]["price_changed"], false);
    assert_eq!(out["view2"]["kind"], "user");
}

const IOREDIS: &str = r#"
const Redis = require("ioredis");
const port = Number(process.argv[1]);
(async () => {
  const redis = new Redis({ host: "127.0.0.1", port, enableReadyCheck: true, lazyConnect: false });
  await new Promise((resolve, reject) => { redis.once("ready", resolve); redis.once("error", reject); });
  const version = await redis.call("CART.ADD", "cart:io", "sku-1", "-", "3", "PRICE", "150", "CURRENCY", "USD", "REPLY", "VERSION");
  const view = JSON.parse(await redis.call("CART.GET", "cart:io", "FORMAT", "JSON"));
  const pipeline = redis.pipeline();
  for (let i = 0; i < 100; i++) pipeline.call("CART.ADD", "cart:io", "sku-2", "-", "1", "PRICE", "5", "CURRENCY", "USD", "REPLY", "VERSION");
  const results = await pipeline.exec();
  let error = null;
  try { await redis.call("CART.SET", "cart:io", "nope", "-", "1"); } catch (e) { error = e.message; }
  const info = await redis.info("server");
  const serverVersion = (info.match(/^redis_version:(.*)\r$/m) || [])[1];
  console.log(JSON.stringify({ status: redis.status, version, qty: view.items[0].qty, last: results[99][1], error, serverVersion }));
  redis.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// ioredis passes its INFO-based ready check, runs custom commands, pipelines, and surfaces
/// cartd's own error codes.
#[tokio::test]
async fn ioredis_works_unchanged() {
    let cartd = Cartd::start_default();
    let modules = client_libs().join("node").join("node_modules");
    assert!(
        modules.join("ioredis").exists(),
        "{} missing: run scripts/test, which installs ioredis",
        modules.display()
    );
    let port = cartd.port().to_string();
    let out = run_script("node", &["-e", IOREDIS, &port], ("NODE_PATH", modules));
    assert_eq!(out["status"], "ready");
    assert_eq!(out["version"], 1);
    assert_eq!(out["qty"], 3);
    assert_eq!(out["last"], 101);
    assert_eq!(out["error"], "NOITEM no such line in the cart");
    assert_eq!(out["serverVersion"], "7.4.0");
}
