//! cartd-bench cannot rot: every scenario runs briefly against both targets (compare starts a
//! real cartd and a real redis-server), the files it writes hold what they promise, and the
//! work it reports was really done: the carts it filled and merged are checked afterwards.
//! No timing is asserted (the machine is shared); only counts, errors and contents.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cartd_tests::cluster::LocalCluster;
use cartd_tests::{cartd_bin, cmd, parse_reply, Cartd};
use redis::Value;
use serde_json::Value as Json;

/// cartd-bench, built beside cartd.
fn bench_bin() -> PathBuf {
    let bin = cartd_bin().with_file_name("cartd-bench");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

fn bench(args: &[&str]) -> Output {
    Command::new(bench_bin())
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("cartd-bench starts")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).expect("the JSON file was written");
    serde_json::from_str(&text).expect("the JSON file parses")
}

/// The phases every full run reports, for each target.
const PHASES: [&str; 10] = [
    "steady",
    "flash-sale/closed",
    "flash-sale/open",
    "connections",
    "merge-storm",
    "memory",
    "pubsub/fanout",
    "pubsub/adds-alone",
    "pubsub/adds-beside-subscribers",
    "pubsub/adds-alone-after",
];

/// Settings small enough for a debug build to run every scenario in seconds.
const TINY: [&str; 28] = [
    "--duration-s",
    "1",
    "--connections",
    "4",
    "--open-connections",
    "2",
    "--rate",
    "2000",
    "--shoppers",
    "500",
    "--users",
    "200",
    "--conn-count",
    "300",
    "--logins",
    "300",
    "--login-connections",
    "8",
    "--carts",
    "2000",
    "--pipeline",
    "16",
    "--subscribers",
    "50",
    "--fanout-rounds",
    "2",
    "--idle-subscribers",
    "20",
];

/// `compare` with tiny settings: every phase against both servers, no errors, the ratios, the
/// machine, the full percentile distributions and the chart.
#[test]
fn compare_runs_every_scenario_against_both_targets() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let json = dir.path().join("results.json");
    let plot = dir.path().join("latency.svg");
    let cartd = cartd_bin();
    let files = [
        "--cartd",
        cartd.to_str().expect("a UTF-8 path"),
        "--json",
        json.to_str().expect("a UTF-8 path"),
        "--plot",
        plot.to_str().expect("a UTF-8 path"),
    ];
    let output = bench(&[&["compare"][..], &TINY, &files].concat());
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("machine: "),
        "the run states the machine: {stdout}"
    );
    assert!(
        stdout.contains("throughput cartd/redis"),
        "ratios are printed: {stdout}"
    );

    let report = read_json(&json);
    assert!(report["machine"]["cores"]
        .as_u64()
        .is_some_and(|cores| cores >= 1));
    assert_eq!(report["settings"]["conn_count"], 300);
    for phase in PHASES {
        for target in ["cartd", "redis"] {
            check_phase(&report, phase, target);
        }
    }
    let ratios = report["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), PHASES.len(), "{ratios:?}");
    assert!(ratios
        .iter()
        .any(|ratio| ratio["memory_redis_over_cartd"].as_f64().is_some()));

    let svg = std::fs::read_to_string(&plot).expect("the chart was written");
    assert!(svg.starts_with("<svg"), "an SVG document");
    for phase in PHASES {
        assert!(svg.contains(phase), "the chart has a panel for {phase}");
    }
}

/// One phase's result against one target: work done, no errors, a distribution, and the
/// counts the tiny settings promise.
fn check_phase(report: &Json, phase: &str, target: &str) {
    let results = report["results"].as_array().expect("results is a list");
    let result = results
        .iter()
        .find(|result| result["scenario"] == phase && result["target"] == target)
        .unwrap_or_else(|| panic!("no {phase} result for {target}: {report}"));
    assert!(
        result["ops"].as_u64().unwrap() > 0,
        "{phase} {target} did work"
    );
    assert_eq!(result["errors"], 0, "{phase} {target}: {result}");
    let percentiles = result["percentiles"].as_array().expect("percentiles");
    assert!(percentiles.len() > 3, "{phase} {target} has a distribution");
    assert!(result["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    match phase {
        "connections" => assert_eq!(result["extra"]["connected"], 300),
        "merge-storm" => assert_eq!(result["ops"], 300),
        "memory" => {
            assert_eq!(result["ops"], 2000 * 4, "4 lines per cart");
            let per_cart = result["extra"]["bytes_per_cart"].as_f64();
            assert!(
                per_cart.is_some_and(|bytes| bytes > 0.0),
                "{target} memory measured"
            );
        }
        "pubsub/fanout" => {
            assert_eq!(
                result["ops"],
                2 * 50,
                "every subscriber got each of 2 changes"
            );
            assert_eq!(
                result["extra"]["to_last_subscriber_ms"]
                    .as_array()
                    .map(Vec::len),
                Some(2)
            );
        }
        "pubsub/adds-beside-subscribers" => {
            assert_eq!(result["extra"]["idle_subscribers"], 20);
            assert!(result["extra"]["throughput_ratio_to_alone"]
                .as_f64()
                .is_some_and(|ratio| ratio > 0.0));
        }
        "flash-sale/open" => {
            assert_eq!(
                result["ops"], 2000,
                "1 s at 2,000/s, every request answered"
            );
        }
        _ => {}
    }
}

/// Every acknowledged flash-sale add is in a cart: the quantities over all shoppers' carts sum
/// to the operations the run reports.
#[tokio::test]
async fn flash_sale_adds_are_all_in_the_carts() {
    let cartd = Cartd::start_async("").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let json = dir.path().join("flash.json");
    let target = format!("cartd://{}", cartd.addr());
    let shoppers = 200;
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--scenario",
        "flash-sale",
        "--flash-mode",
        "closed",
        "--duration-s",
        "1",
        "--connections",
        "4",
        "--pipeline",
        "8",
        "--shoppers",
        &shoppers.to_string(),
        "--json",
        json.to_str().expect("a UTF-8 path"),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report = read_json(&json);
    let result = &report["results"][0];
    assert_eq!(result["scenario"], "flash-sale/closed");
    assert_eq!(result["errors"], 0, "{result}");
    let ops = result["ops"].as_u64().expect("ops");
    assert!(ops > 0);

    let mut client = cartd.client(false).await;
    let mut total = 0;
    for shopper in 0..shoppers {
        let key = format!("cart:fs{shopper}");
        let json = cmd(
            &mut client,
            &["CART.GET", &key, "NOVALIDATE", "FORMAT", "JSON"],
        )
        .await
        .expect("CART.GET works");
        let Value::BulkString(bytes) = json else {
            assert!(
                ops < shoppers,
                "shopper {shopper} has no cart after {ops} adds"
            );
            continue;
        };
        let cart: Json = serde_json::from_slice(&bytes).expect("the view is JSON");
        let lines = cart["items"].as_array().expect("items");
        assert_eq!(lines.len(), 1, "one product per flash-sale cart: {cart}");
        assert_eq!(lines[0]["product"], "flash-tv-55");
        total += lines[0]["qty"].as_u64().expect("qty");
    }
    assert_eq!(
        total, ops,
        "every acknowledged add is in a cart, none twice"
    );
}

/// The cluster target sends each add to the primary serving its cart's slot: against a real
/// 3-primary cartd cluster every primary gets adds, none is MOVED or fails, and every
/// acknowledged add is in its cart on exactly the node that serves it (the others answer
#[tokio::test]
async fn the_cluster_target_spreads_adds_over_every_primary() {
    let cluster = LocalCluster::up(3, 0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let json = dir.path().join("cluster.json");
    let seed = format!("cartd://127.0.0.1:{}", cluster.port + 1);
    let shoppers = 200u64;
    let args = [
        "run",
        "--cluster",
        "--target",
        &seed,
        "--scenario",
        "cluster-adds",
    ];
    let output = bench(
        &[
            &args[..],
            &["--duration-s", "1", "--connections", "4", "--pipeline", "8"],
            &["--shoppers", &shoppers.to_string()],
            &["--json", json.to_str().expect("a UTF-8 path")],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let result = read_json(&json)["results"][0].clone();
    assert_eq!(result["scenario"], "cluster/adds");
    assert_eq!(result["errors"], 0, "{result}");
    assert_eq!(result["extra"]["primaries"], 3, "{result}");
    assert_eq!(
        result["extra"]["redirects"], 0,
        "routed right the first time: {result}"
    );
    let ops = result["ops"].as_u64().expect("ops");
    assert!(
        ops >= shoppers,
        "one second does every shopper at least once: {result}"
    );
    let per_primary = result["extra"]["adds_per_primary"]
        .as_object()
        .expect("adds per primary");
    assert_eq!(per_primary.len(), 3, "{result}");
    for node in 0..3 {
        let addr = format!("127.0.0.1:{}", cluster.port + node);
        let adds = per_primary.get(&addr).and_then(Json::as_u64);
        assert!(
            adds.is_some_and(|adds| adds > 0),
            "{addr} got adds: {result}"
        );
    }
    assert_eq!(
        per_primary.values().filter_map(Json::as_u64).sum::<u64>(),
        ops
    );

    let total = flash_quantities_in(&cluster, shoppers).await;
    assert_eq!(
        total, ops,
        "every acknowledged add is in a cart, none twice"
    );
}

/// The connection storm against a cluster, from several client processes: 600 connections
/// from 2 processes over 3 primaries all open and all answered, each primary given its share
/// (200 connections, 200 adds, 200 carts in DBSIZE) and measured by its own pid, each process
/// from a source address of its own. A storm a primary's maxclients cannot take is refused.
#[tokio::test]
async fn the_cluster_connection_storm_spreads_over_processes_and_primaries() {
    let cluster = LocalCluster::up(3, 0);
    let dir = tempfile::tempdir().expect("a temp dir");
    let json = dir.path().join("storm.json");
    let seed = format!("cartd://127.0.0.1:{}", cluster.port);
    let args = [
        "run",
        "--cluster",
        "--target",
        &seed,
        "--scenario",
        "connections",
    ];
    let output = bench(
        &[
            &args[..],
            &["--conn-count", "600", "--client-processes", "2"],
            &["--json", json.to_str().expect("a UTF-8 path")],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let result = read_json(&json)["results"][0].clone();
    assert_eq!(result["scenario"], "cluster/connections");
    assert_eq!(result["ops"], 600, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    let extra = &result["extra"];
    assert_eq!(extra["connected"], 600, "{result}");
    assert_eq!(extra["client_processes"], 2, "{result}");
    assert_eq!(extra["source_addresses"], 2, "one source each: {result}");
    assert_eq!(extra["primaries"], 3, "{result}");
    assert_eq!(extra["errors_by_kind"], serde_json::json!({}), "{result}");
    assert_eq!(
        extra["connect_s_per_process"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(result["latency_ms"]["max"]
        .as_f64()
        .is_some_and(|max| max > 0.0));
    let nodes = extra["nodes"].as_array().expect("a figure per primary");
    assert_eq!(nodes.len(), 3, "{result}");
    for (node, found) in (0..3u16).zip(nodes) {
        assert_eq!(found["addr"], format!("127.0.0.1:{}", cluster.port + node));
        assert_eq!(found["pid"].as_u64(), cluster.pid(node).map(u64::from));
        assert_eq!(found["connections"], 200, "{found}");
        assert_eq!(found["adds"], 200, "{found}");
        assert!(found["bytes_per_connection"].as_f64().is_some(), "{found}");
        let mut conn = cluster.conn(node).await;
        let carts = parse_reply(&conn.call(&["DBSIZE"]).await);
        assert_eq!(
            carts,
            Value::Int(200),
            "node {node} holds its share of carts"
        );
    }
    let adds = extra["adds_per_primary"]
        .as_object()
        .expect("adds per primary");
    assert_eq!(adds.values().filter_map(Json::as_u64).sum::<u64>(), 600);

    // 40,000 over 3 primaries is 13,334 each, past cartd's default maxclients of 10,000.
    let output = bench(&[&args[..], &["--conn-count", "40000"]].concat());
    assert!(!output.status.success());
    assert!(text(&output).contains("maxclients"), "{}", text(&output));
}

/// The flash-sale quantities in shoppers `0..shoppers`'s carts, each asked of every node of a
/// 3-primary cluster: the one serving it has it, the others answer MOVED.
async fn flash_quantities_in(cluster: &LocalCluster, shoppers: u64) -> u64 {
    let mut total = 0;
    let mut conns = Vec::new();
    for node in 0..3 {
        conns.push(cluster.conn(node).await);
    }
    for shopper in 0..shoppers {
        let key = format!("cart:fs{shopper}");
        let mut served_by = 0;
        for conn in &mut conns {
            let args = ["CART.GET", &key, "NOVALIDATE", "FORMAT", "JSON"];
            match parse_reply(&conn.call(&args).await) {
                Value::BulkString(bytes) => {
                    served_by += 1;
                    let cart: Json = serde_json::from_slice(&bytes).expect("the view is JSON");
                    assert_eq!(cart["items"][0]["product"], "flash-tv-55", "{cart}");
                    total += cart["items"][0]["qty"].as_u64().expect("qty");
                }
                Value::ServerError(error) => {
                    assert_eq!(error.code(), "MOVED", "{key}: {error:?}");
                }
                other => panic!("{key} is missing on the node that serves it: {other:?}"),
            }
        }
        assert_eq!(served_by, 1, "{key} is served by one node");
    }
    total
}

/// `--wait 1` follows each batch with WAIT 1 1000 on every primary written to and reports
/// what the WAITs answered; an add whose WAIT answered less than 1 is an error. With a
/// replica per primary, every WAIT answers 1 (before replication, 0 after its second).
#[test]
fn cluster_adds_with_wait_report_the_replies() {
    let cluster = LocalCluster::up(3, 1);
    let dir = tempfile::tempdir().expect("a temp dir");
    let json = dir.path().join("wait.json");
    let seed = format!("cartd://127.0.0.1:{}", cluster.port);
    let args = [
        "run",
        "--cluster",
        "--target",
        &seed,
        "--scenario",
        "cluster-adds",
    ];
    let output = bench(
        &[
            &args[..],
            &["--duration-s", "1", "--connections", "2", "--pipeline", "8"],
            &[
                "--wait",
                "1",
                "--json",
                json.to_str().expect("a UTF-8 path"),
            ],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let result = read_json(&json)["results"][0].clone();
    assert_eq!(result["scenario"], "cluster/adds+wait1");
    assert_eq!(result["extra"]["wait"], 1);
    assert_eq!(result["extra"]["replicas_per_primary"], 1, "{result}");
    let replies = result["extra"]["wait_replies"]
        .as_object()
        .expect("WAIT replies");
    let waits: u64 = replies.values().filter_map(Json::as_u64).sum();
    assert!(waits > 0, "the WAITs ran: {result}");
    let ops = result["ops"].as_u64().expect("ops");
    assert!(ops > 0, "{result}");
    // Every primary has a replica that follows it: every WAIT answers 1, no add fails.
    assert!(replies.keys().all(|reply| reply == "1"), "{result}");
    assert_eq!(
        result["errors"], 0,
        "every add acknowledged by a replica: {result}"
    );
}

/// The merge storm merges what it loaded: afterwards no guest cart is left and every user cart
/// holds the union of both carts' lines (4 + 4 with 2 in common = 6).
#[tokio::test]
async fn merge_storm_merges_every_guest_cart() {
    let cartd = Cartd::start_async("").await;
    let target = format!("cartd://{}", cartd.addr());
    let logins = 150;
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--scenario",
        "merge-storm",
        "--logins",
        &logins.to_string(),
        "--login-connections",
        "6",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let mut client = cartd.client(false).await;
    for login in 0..logins {
        let guest = format!("cart:guest:ms{login}");
        let exists = cmd(&mut client, &["EXISTS", &guest]).await.expect("EXISTS");
        assert_eq!(exists, Value::Int(0), "{guest} was merged away");
        let user = format!("cart:msu{login}");
        let view = cmd(
            &mut client,
            &["CART.GET", &user, "NOVALIDATE", "FORMAT", "JSON"],
        )
        .await
        .expect("CART.GET works");
        let Value::BulkString(bytes) = view else {
            panic!("{user} is missing after the storm: {view:?}");
        };
        let cart: Json = serde_json::from_slice(&bytes).expect("the view is JSON");
        let lines = cart["items"].as_array().expect("items");
        assert_eq!(lines.len(), 6, "{user}: {cart}");
    }
}

/// Bad targets and impossible sizes are refused with a sentence that says what is wrong.
#[test]
fn bad_targets_and_impossible_sizes_are_refused_clearly() {
    let output = bench(&["run", "--target", "memcached://127.0.0.1:1"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("unknown scheme"),
        "{}",
        text(&output)
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    let target = format!("cartd://127.0.0.1:{port}");
    let output = bench(&["run", "--target", &target, "--scenario", "steady"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("cannot connect"),
        "{}",
        text(&output)
    );

    let cartd = Cartd::start_default();
    let target = format!("cartd://{}", cartd.addr());
    let args = ["run", "--target", &target, "--scenario", "connections"];
    let output = bench(&[&args[..], &["--conn-count", "100000000"]].concat());
    assert!(!output.status.success());
    assert!(text(&output).contains("open files"), "{}", text(&output));
}
