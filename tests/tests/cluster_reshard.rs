//! Resharding with redis-cli (issue 14): `redis-cli --cluster reshard` and `rebalance` move
//! slots between cartd primaries with CLUSTER SETSLOT, GETKEYSINSLOT and MIGRATE, while
//! cluster clients write (following -ASK and -MOVED): no acknowledged write is lost, no cart
//! is doubled, and PostgreSQL ends up equal to the cluster. Before (080cc7c) CLUSTER SETSLOT
//! and MIGRATE did not exist and redis-cli stopped at the first slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cartd_tests::cluster::LocalCluster;
use redis::cluster_async::ClusterConnection;

async fn cluster_client(cluster: &LocalCluster) -> ClusterConnection {
    let ports: Vec<u16> = (0..cluster.nodes).map(|node| cluster.port + node).collect();
    cartd_tests::cluster::cluster_client(&ports).await
}

async fn add(conn: &mut ClusterConnection, key: &str, sku: &str) -> redis::RedisResult<i64> {
    cartd_tests::chaos::load::cart_add(key, sku)
        .query_async(conn)
        .await
}

/// The cart's (version, lines), if the cluster has it.
async fn cart(conn: &mut ClusterConnection, key: &str) -> Option<(i64, usize)> {
    let view: Option<String> = redis::cmd("CART.GET")
        .arg(key)
        .arg("NOVALIDATE")
        .arg("FORMAT")
        .arg("JSON")
        .query_async(conn)
        .await
        .expect("CART.GET");
    let view: serde_json::Value = serde_json::from_str(&view?).expect("JSON");
    let lines = view["items"].as_array().map_or(0, Vec::len);
    Some((view["version"].as_i64()?, lines))
}

/// Runs redis-cli with `args` against the cluster's first node; its output.
fn redis_cli(cluster: &LocalCluster, args: &[&str]) -> String {
    let entry = format!("127.0.0.1:{}", cluster.port);
    let output = std::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg(args[0])
        .arg(&entry)
        .args(&args[1..])
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

/// Sum of DBSIZE over the primaries.
async fn carts_on_primaries(cluster: &LocalCluster, primaries: u16) -> i64 {
    let mut total = 0;
    for node in 0..primaries {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.port + node))
            .expect("a client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let size: i64 = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .expect("DBSIZE");
        total += size;
    }
    total
}

/// Writes to `carts` carts in turn until `stop`, each add a new line; how many adds each
/// cart had acknowledged.
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
        let sku = format!("sku-{at}");
        match add(&mut conn, &key, &sku).await {
            Ok(_) => *acked.entry(key).or_default() += 1,
            Err(error) => panic!("CART.ADD {key} failed during the reshard: {error}"),
        }
        at += 1;
    }
    acked
}

/// 3,000 carts on three primaries with PostgreSQL; `redis-cli --cluster reshard` moves 400
/// slots from n1 to n2 while two clients write, then `rebalance` evens them out again: every
/// cart is there once, every acknowledged add is there once, PostgreSQL agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_reshards_under_writes_losing_and_doubling_nothing() {
    let db = cartd_tests::TestDb::create().await;
    let cluster = LocalCluster::up_with(3, 0, &format!("[postgres]\nurl = \"{}\"\n", db.url));
    let mut conn = cluster_client(&cluster).await;
    for at in 0..3_000 {
        add(&mut conn, &format!("cart:p{at}"), "first")
            .await
            .expect("CART.ADD");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            let stop = stop.clone();
            let conn = conn.clone();
            tokio::spawn(write_load(conn, prefix, 300, stop))
        })
        .collect();
    let reshard = tokio::task::block_in_place(|| {
        redis_cli(
            &cluster,
            &[
                "reshard",
                "--cluster-from",
                "n1",
                "--cluster-to",
                "n2",
                "--cluster-slots",
                "400",
                "--cluster-pipeline",
                "50",
                "--cluster-yes",
            ],
        )
    });
    assert!(reshard.contains("Moving slot"), "{reshard}");
    let rebalance = tokio::task::block_in_place(|| redis_cli(&cluster, &["rebalance"]));
    stop.store(true, Ordering::Release);
    let mut acked = HashMap::new();
    for writer in writers {
        acked.extend(writer.await.expect("the writer"));
    }
    assert!(rebalance.contains("Moving"), "{rebalance}");
    let check = tokio::task::block_in_place(|| redis_cli(&cluster, &["check"]));
    assert!(
        check.contains("All nodes agree about slots configuration"),
        "{check}"
    );
    assert!(
        !check.contains("[WARNING]") && !check.contains("[ERR]"),
        "no slot left open:\n{check}"
    );
    for at in 0..3_000 {
        let key = format!("cart:p{at}");
        assert_eq!(cart(&mut conn, &key).await, Some((1, 1)), "{key}");
    }
    for (key, adds) in &acked {
        let (_, lines) = cart(&mut conn, key)
            .await
            .unwrap_or_else(|| panic!("{key} is lost"));
        assert_eq!(lines, *adds, "{key}: every acknowledged add once");
    }
    let expected = 3_000 + acked.len() as i64;
    assert_eq!(
        carts_on_primaries(&cluster, 3).await,
        expected,
        "no cart on two primaries"
    );
    assert_postgres_agrees(&cluster, &db, expected).await;
}

/// Once every primary's sink has caught up, PostgreSQL holds each cart once.
async fn assert_postgres_agrees(cluster: &LocalCluster, db: &cartd_tests::TestDb, expected: i64) {
    for node in 0..3 {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.port + node))
            .expect("a client");
        let mut direct = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        cartd_tests::wait_for_sink(&mut direct).await;
    }
    let started = std::time::Instant::now();
    loop {
        let rows = db.count("SELECT count(*) FROM carts").await;
        if rows == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "PostgreSQL has {rows} carts, the cluster {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A key of a slot below `below`.
fn key_in_low_slot(below: usize) -> (String, usize) {
    (0..)
        .map(|at| format!("cart:low{at}"))
        .map(|key| {
            let slot = cartd_tests::chaos::router::slot(&key);
            (key, slot)
        })
        .find(|(_, slot)| *slot < below)
        .expect("some key hashes low")
}

async fn node_conn(cluster: &LocalCluster, node: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.port + node))
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn digest(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    let digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query_async(conn)
        .await
        .expect("DEBUG DIGEST-VALUE");
    digests.into_iter().next().expect("one digest")
}

/// Moves `key` (of `slot`, on n1) to n2 with MIGRATE COPY, then sets the slot stable on both:
/// a move that stopped halfway, the cart on both nodes.
async fn leave_a_copy(cluster: &LocalCluster, key: &str, slot: usize) {
    let mut n1 = node_conn(cluster, 0).await;
    let mut n2 = node_conn(cluster, 1).await;
    let setslot = |conn: &mut redis::aio::MultiplexedConnection, args: Vec<String>| {
        let mut command = redis::cmd("CLUSTER");
        command.arg("SETSLOT").arg(slot).arg(args);
        let conn = conn.clone();
        async move {
            let mut conn = conn;
            let reply: String = command.query_async(&mut conn).await.expect("SETSLOT");
            assert_eq!(reply, "OK");
        }
    };
    setslot(&mut n2, vec!["IMPORTING".into(), "n1".into()]).await;
    setslot(&mut n1, vec!["MIGRATING".into(), "n2".into()]).await;
    let migrated: String = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.port + 1)
        .arg(key)
        .arg(0)
        .arg(5_000)
        .arg("COPY")
        .query_async(&mut n1)
        .await
        .expect("MIGRATE COPY");
    assert_eq!(migrated, "OK");
    setslot(&mut n1, vec!["STABLE".into()]).await;
    setslot(&mut n2, vec!["STABLE".into()]).await;
}

/// A MIGRATE that stopped halfway (COPY here) left a cart on the importing node too. DEBUG
/// DIGEST-VALUE (what redis-cli compares two copies of a key with) gives both copies one
/// digest, a changed cart another, no cart 40 zeros; a later `redis-cli --cluster reshard` of
/// the slot replaces the copy (a cart of a migrating slot is the source's) and leaves the cart
/// on one primary. Fails on c6b86d9: cartd had no DEBUG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_left_on_the_target_is_compared_by_digest_and_replaced() {
    let cluster = LocalCluster::up(2, 0);
    let (key, slot) = key_in_low_slot(20);
    let mut n1 = node_conn(&cluster, 0).await;
    let mut n2 = node_conn(&cluster, 1).await;
    let mut conn = cluster_client(&cluster).await;
    add(&mut conn, &key, "first").await.expect("CART.ADD");
    let none = digest(&mut n2, &key).await;
    assert_eq!(none, "0".repeat(40), "no cart: 40 zeros");
    leave_a_copy(&cluster, &key, slot).await;
    let on_n1 = digest(&mut n1, &key).await;
    assert_eq!(on_n1.len(), 40);
    assert_eq!(
        digest(&mut n2, &key).await,
        on_n1,
        "the copy digests as the cart"
    );
    let reshard = tokio::task::block_in_place(|| {
        redis_cli(
            &cluster,
            &[
                "reshard",
                "--cluster-from",
                "n1",
                "--cluster-to",
                "n2",
                "--cluster-slots",
                "20",
                "--cluster-yes",
            ],
        )
    });
    assert!(
        reshard.contains(&format!("Moving slot {slot} ")),
        "{reshard}"
    );
    assert_eq!(
        cart(&mut conn, &key).await,
        Some((1, 1)),
        "moved once:\n{reshard}"
    );
    assert_eq!(carts_on_primaries(&cluster, 2).await, 1, "on one primary");
    add(&mut conn, &key, "more")
        .await
        .expect("CART.ADD after the move");
    assert_ne!(
        digest(&mut n2, &key).await,
        on_n1,
        "a changed cart digests otherwise"
    );
}

/// `CART.GET key NOVALIDATE` on one node (after `ASKING` if `asking`): the reply, or the
/// error's text.
async fn get_on(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    asking: bool,
) -> Result<Option<String>, String> {
    let mut pipe = redis::pipe();
    if asking {
        pipe.cmd("ASKING").ignore();
    }
    pipe.cmd("CART.GET")
        .arg(key)
        .arg("NOVALIDATE")
        .arg("FORMAT")
        .arg("JSON");
    pipe.query_async::<(Option<String>,)>(conn)
        .await
        .map(|(view,)| view)
        .map_err(|error| error.to_string())
}

/// `CLUSTER SETSLOT slot args...` on `node`, which must answer OK.
async fn setslot_on(cluster: &LocalCluster, node: u16, slot: usize, args: &[&str]) {
    let mut conn = node_conn(cluster, node).await;
    let reply: String = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(args)
        .query_async(&mut conn)
        .await
        .expect("SETSLOT");
    assert_eq!(reply, "OK");
}

/// `MIGRATE` of `key` from node `from` to node `to`, which must answer OK.
async fn migrate_one(cluster: &LocalCluster, (from, to): (u16, u16), key: &str) {
    let mut conn = node_conn(cluster, from).await;
    let reply: String = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.port + to)
        .arg(key)
        .arg(0)
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .expect("MIGRATE");
    assert_eq!(reply, "OK");
}

/// Both nodes of a slot move are killed and started again midway: the source still answers
/// `-ASK` for the cart it moved (not "no cart"), the target still takes it after `ASKING`, and
/// the move then finishes with both carts on the target. Fails on 7d28347: the slot states
/// were memory only, and after the restart the source said the moved cart did not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_move_survives_restarts_of_both_nodes() {
    let cluster = LocalCluster::up(2, 0);
    let (moved, kept) = ("cart:{mv}a", "cart:{mv}b");
    let slot = cartd_tests::chaos::router::slot("mv");
    let (source, target) = if slot < 8_192 { (0, 1) } else { (1, 0) };
    let mut conn = cluster_client(&cluster).await;
    for key in [moved, kept] {
        add(&mut conn, key, "first").await.expect("CART.ADD");
    }
    let name = |node: u16| format!("n{}", node + 1);
    setslot_on(&cluster, target, slot, &["IMPORTING", &name(source)]).await;
    setslot_on(&cluster, source, slot, &["MIGRATING", &name(target)]).await;
    migrate_one(&cluster, (source, target), moved).await;
    for node in [source, target] {
        tokio::task::block_in_place(|| {
            cluster.kill9(node);
            cluster.restart(node);
        });
    }
    let mut on_source = node_conn(&cluster, source).await;
    let asked = get_on(&mut on_source, moved, false).await;
    let target_addr = format!("127.0.0.1:{}", cluster.port + target);
    assert!(
        asked.as_ref().is_err_and(
            |error| error.to_uppercase().contains("ASK") && error.contains(&target_addr)
        ),
        "the source sends the moved cart's readers on: {asked:?}"
    );
    let here = get_on(&mut on_source, kept, false).await;
    assert!(
        matches!(here, Ok(Some(_))),
        "the source serves the cart it kept: {here:?}"
    );
    let mut on_target = node_conn(&cluster, target).await;
    let taken = get_on(&mut on_target, moved, true).await;
    assert!(
        matches!(taken, Ok(Some(_))),
        "the target serves it after ASKING: {taken:?}"
    );
    migrate_one(&cluster, (source, target), kept).await;
    for node in [target, source] {
        setslot_on(&cluster, node, slot, &["NODE", &name(target)]).await;
    }
    let mut conn = cluster_client(&cluster).await;
    for key in [moved, kept] {
        assert_eq!(cart(&mut conn, key).await, Some((1, 1)), "{key}");
    }
    assert_eq!(carts_on_primaries(&cluster, 2).await, 2);
}

/// A RESP3 connection to node `node` (not cluster-aware).
async fn resp3_conn(cluster: &LocalCluster, node: u16) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://127.0.0.1:{}/?protocol=resp3", cluster.port + node);
    redis::Client::open(url)
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// The first `{prefix}{n}` whose slot `wanted` accepts, and its slot.
fn named_where(prefix: &str, wanted: impl Fn(usize) -> bool) -> (String, usize) {
    (0..)
        .map(|at| format!("{prefix}{at}"))
        .map(|name| {
            let slot = cartd_tests::chaos::router::slot(&name);
            (name, slot)
        })
        .find(|(_, slot)| wanted(*slot))
        .expect("some name hashes there")
}

/// A one-line cart of `price` paying with gift card `code`, checked out on `conn`: its token.
async fn check_out_with(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    price: i64,
    code: &str,
) -> String {
    let price = price.to_string();
    let add = [
        "CART.ADD", key, "item", "-", "1", "PRICE", &price, "CURRENCY", "USD",
    ];
    cartd_tests::ok(conn, &add).await;
    cartd_tests::ok(conn, &["CART.GIFTCARD", key, "ADD", code]).await;
    let view = cartd_tests::resp3_to_json(&cartd_tests::ok(conn, &["CART.CHECKOUT", key]).await);
    assert_eq!(
        view["totals"]["gift_card"],
        price.parse::<i64>().unwrap(),
        "{view}"
    );
    view["checkout_token"].as_str().expect("a token").to_owned()
}

/// `GIFTCARD.GET code` on `node`: (balance, held).
async fn card_on(cluster: &LocalCluster, node: u16, code: &str) -> (i64, i64) {
    let mut conn = resp3_conn(cluster, node).await;
    let card = cartd_tests::ok(&mut conn, &["GIFTCARD.GET", code]).await;
    let card = cartd_tests::resp3_to_json(&card);
    let number = |field: &str| card[field].as_i64().unwrap_or_else(|| panic!("{card}"));
    (number("balance"), number("held"))
}

/// Moves `slot` from node `from` to node `to` as redis-cli does it (no carts in it): IMPORTING
/// on the target, MIGRATING on the source, then NODE on the target first, the source, the rest.
async fn move_empty_slot(cluster: &LocalCluster, slot: usize, (from, to): (u16, u16)) {
    let name = |node: u16| format!("n{}", node + 1);
    setslot_on(cluster, to, slot, &["IMPORTING", &name(from)]).await;
    setslot_on(cluster, from, slot, &["MIGRATING", &name(to)]).await;
    let rest = (0..cluster.nodes).filter(|node| ![from, to].contains(node));
    for node in [to, from].into_iter().chain(rest) {
        setslot_on(cluster, node, slot, &["NODE", &name(to)]).await;
    }
}

/// A gift card moves with its hash slot, whole: `CLUSTER SETSLOT slot NODE` on the target
/// takes it from the source with its balance and every hold (the source's own checkout's, two
/// other nodes', and that of a cart that left the source in checkout), so each of those
/// checkouts completes once, at the new owner, after the new owner's restart too; the source
/// given the slot first refuses it (it still holds the card); PostgreSQL ends with the new
/// balance. A cart moved in checkout keeps its hold at the card's node across that node's
/// restart. Fails on 4ec20f2: SETSLOT MIGRATING refused a slot holding a gift card (and a
/// moved frozen cart's hold was a local one, lost at the restart and refused to a SPEND).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moves_with_its_gift_cards_and_every_hold_on_them() {
    let db = cartd_tests::TestDb::create().await;
    let cluster = LocalCluster::up_with(3, 0, &format!("[postgres]\nurl = \"{}\"\n", db.url));
    let (code, card_slot) = named_where("G", |slot| slot < 5_000);
    let (moved_cart, moved_slot) = named_where("cart:d", |slot| slot < 5_000 && slot != card_slot);
    let low = |slot: usize| slot < 5_000 && ![card_slot, moved_slot].contains(&slot);
    let carts = [
        (0, named_where("cart:a", low).0, 1_000),
        (0, moved_cart.clone(), 500),
        (
            1,
            named_where("cart:c", |slot| (6_000..10_000).contains(&slot)).0,
            3_000,
        ),
        (2, named_where("cart:b", |slot| slot > 11_000).0, 2_000),
    ];
    let mut n1 = resp3_conn(&cluster, 0).await;
    cartd_tests::ok(&mut n1, &["GIFTCARD.SET", &code, "10000", "USD"]).await;
    let mut tokens = Vec::new();
    for (node, key, price) in &carts {
        let mut conn = resp3_conn(&cluster, *node).await;
        let token = check_out_with(&mut conn, key, *price, &code).await;
        tokens.push((key.clone(), token));
    }
    assert_card_everywhere(&cluster, &code, (10_000, 6_500), "held").await;

    // The cart in checkout leaves n1 for n3; n1 restarts and still holds for it.
    move_slot_of(&cluster, moved_slot, &moved_cart, (0, 2)).await;
    kill_and_restart(&cluster, 0);
    assert_card_everywhere(&cluster, &code, (10_000, 6_500), "n1 restarted").await;

    // The source told first refuses to give the card's slot away.
    setslot_on(&cluster, 1, card_slot, &["IMPORTING", "n1"]).await;
    setslot_on(&cluster, 0, card_slot, &["MIGRATING", "n2"]).await;
    let mut n1 = resp3_conn(&cluster, 0).await;
    let slot_text = card_slot.to_string();
    let given = ["CLUSTER", "SETSLOT", &slot_text, "NODE", "n2"];
    let refused = cartd_tests::fails(&mut n1, &given).await;
    assert!(refused.contains("gift card"), "{refused}");
    move_empty_slot(&cluster, card_slot, (0, 1)).await;
    assert_card_everywhere(&cluster, &code, (10_000, 6_500), "moved").await;
    kill_and_restart(&cluster, 1);
    assert_card_everywhere(&cluster, &code, (10_000, 6_500), "n2 restarted").await;

    complete_twice(&cluster, &tokens).await;
    assert_card_everywhere(&cluster, &code, (3_500, 0), "spent once").await;
    let mut n1 = resp3_conn(&cluster, 0).await;
    let (late, _) = named_where("cart:e", low);
    let add = [
        "CART.ADD", &late, "item", "-", "1", "PRICE", "5000", "CURRENCY", "USD",
    ];
    cartd_tests::ok(&mut n1, &add).await;
    cartd_tests::ok(&mut n1, &["CART.GIFTCARD", &late, "ADD", &code]).await;
    let view = cartd_tests::ok(&mut n1, &["CART.CHECKOUT", &late]).await;
    let view = cartd_tests::resp3_to_json(&view);
    assert_eq!(view["totals"]["gift_card"], 3_500, "what is left: {view}");
    wait_postgres_balance(&cluster, &db, &code, 3_500).await;
}

/// Two primaries with PostgreSQL, a gift card of 10,000 on n1, and its slot opened to move
/// to n2 (IMPORTING on n2, MIGRATING on n1): the database, the cluster, the card, its slot.
async fn a_card_moving_from_n1_to_n2() -> (cartd_tests::TestDb, LocalCluster, String, usize) {
    let db = cartd_tests::TestDb::create().await;
    let cluster = LocalCluster::up_with(2, 0, &format!("[postgres]\nurl = \"{}\"\n", db.url));
    let (code, slot) = named_where("G", |slot| slot < 5_000);
    let mut n1 = resp3_conn(&cluster, 0).await;
    cartd_tests::ok(&mut n1, &["GIFTCARD.SET", &code, "10000", "USD"]).await;
    setslot_on(&cluster, 1, slot, &["IMPORTING", "n1"]).await;
    setslot_on(&cluster, 0, slot, &["MIGRATING", "n2"]).await;
    (db, cluster, code, slot)
}

/// The old owner of a gift card's slot killed right after the new owner took the card and
/// recorded the move (before it dropped its sealed copy): started again, it holds no card of
/// a slot another group serves; the new owner deletes the card, the slot moves back, and the
/// card does not come back from the old owner's copy. Fails on e876e54: the seal lived in
/// memory only, the restarted n1 kept its copy (and the move back kept it too, the new
/// owner's answer holding no card).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_copy_left_by_a_killed_old_owner_does_not_come_back() {
    let (db, cluster, code, slot) = a_card_moving_from_n1_to_n2().await;
    setslot_on(&cluster, 1, slot, &["NODE", "n2"]).await;
    kill_and_restart(&cluster, 0);

    let mut n1 = resp3_conn(&cluster, 0).await;
    let memory = cartd_tests::info(&mut n1, &["memory"]).await;
    let kept = cartd_tests::info_number(&memory, "gift_cards");
    assert_eq!(kept, 0, "n1 keeps no card of n2's slot:\n{memory}");
    assert_card_everywhere(&cluster, &code, (10_000, 0), "at n2").await;
    let mut n2 = resp3_conn(&cluster, 1).await;
    let deleted = cartd_tests::ok(&mut n2, &["GIFTCARD.DEL", &code]).await;
    assert_eq!(deleted, redis::Value::Int(1));

    move_empty_slot(&cluster, slot, (1, 0)).await;
    for node in 0..cluster.nodes {
        let mut conn = resp3_conn(&cluster, node).await;
        let card = cartd_tests::ok(&mut conn, &["GIFTCARD.GET", &code]).await;
        assert_eq!(card, redis::Value::Nil, "deleted, on n{}", node + 1);
    }
    wait_postgres_balance(&cluster, &db, &code, -1).await;
}

/// A move stopped after the target took the gift cards (its sink wrote their rows under its
/// raised term) but before it recorded the move: here PostgreSQL refuses the record (the test
/// holds `cluster_slots` locked and ends the target's waiting session), and the operator sets
/// the slot STABLE on both. The old owner keeps deciding the card, and its later change
/// reaches PostgreSQL (a restore from there must not find the target's stale balance).
/// Fails on d064b8e: the old owner's row writes were under a lower term than the target's,
/// so PostgreSQL kept 10,000 after the card was set to 4,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stopped_after_the_cards_were_taken_leaves_postgres_the_old_owners() {
    let (db, cluster, code, slot) = a_card_moving_from_n1_to_n2().await;

    let mut lock = db.pool.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE cluster_slots IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("the lock");
    let mut n2 = resp3_conn(&cluster, 1).await;
    let slot_text = slot.to_string();
    let setting = tokio::spawn(async move {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(&slot_text)
            .arg("NODE")
            .arg("n2")
            .query_async::<redis::Value>(&mut n2)
            .await
    });
    let taken = format!(
        "SELECT count(*) FROM gift_cards g JOIN cluster_leases l ON l.shard_group = 'n2' \
         AND g.term = l.term WHERE g.code = '{code}'"
    );
    let waiting = "SELECT coalesce(max(pid), 0)::int8 FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO cluster_slots%'";
    let started = std::time::Instant::now();
    let pid = loop {
        let pid = db.count(waiting).await;
        if pid > 0 && db.count(&taken).await == 1 {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "n2 took the card and waits to record the move"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    db.count(&format!("SELECT pg_terminate_backend({pid})::int::int8"))
        .await;
    lock.rollback().await.expect("the lock released");
    let refused = setting.await.expect("the SETSLOT task");
    assert!(refused.is_err(), "the move is not recorded: {refused:?}");

    setslot_on(&cluster, 0, slot, &["STABLE"]).await;
    setslot_on(&cluster, 1, slot, &["STABLE"]).await;
    let mut n1 = resp3_conn(&cluster, 0).await;
    cartd_tests::ok(&mut n1, &["GIFTCARD.SET", &code, "4000", "USD"]).await;
    assert_card_everywhere(&cluster, &code, (4_000, 0), "still n1's").await;
    wait_postgres_balance(&cluster, &db, &code, 4_000).await;
}

/// With `requirepass` on every node, MIGRATE authenticates at its target with its `AUTH` or
/// `AUTH2` (as `redis-cli --cluster reshard -a` sends them), and without either with the
/// password the nodes share; a wrong one is refused with the target's answer and the cart
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_authenticates_at_a_password_protected_target() {
    let cluster = LocalCluster::up_with_password(2, 0, "s3cret");
    let conn = |node: u16| async move {
        let url = format!("redis://:s3cret@127.0.0.1:{}/", cluster.port + node);
        let client = redis::Client::open(url).expect("a client");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    };
    let (slot, keys) = {
        let (first, slot) = named_where("cart:p", |slot| slot < 5_000);
        let rest = (0..).map(|at| format!("{{{first}}}:{at}")).take(3);
        (
            slot,
            std::iter::once(first.clone())
                .chain(rest)
                .collect::<Vec<_>>(),
        )
    };
    let mut n1 = conn(0).await;
    for key in &keys {
        let add = [
            "CART.ADD", key, "item", "-", "1", "PRICE", "500", "CURRENCY", "USD",
        ];
        cartd_tests::ok(&mut n1, &add).await;
    }
    let mut n2 = conn(1).await;
    let slot_text = slot.to_string();
    for (node, args) in [
        (&mut n2, ["IMPORTING", "n1"]),
        (&mut n1, ["MIGRATING", "n2"]),
    ] {
        let mut words = vec!["CLUSTER", "SETSLOT", &slot_text];
        words.extend(args);
        cartd_tests::ok(node, &words).await;
    }
    let port = (cluster.port + 1).to_string();
    let migrate = |key: &str, auth: &[&str]| {
        let mut words = vec!["MIGRATE", "127.0.0.1", &port, key, "0", "5000"];
        words.extend(auth);
        words
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let words = migrate(&keys[0], &["AUTH", "nope"]);
    let refused = cartd_tests::fails(&mut n1, &strs(&words)).await;
    assert!(refused.contains("WRONGPASS"), "{refused}");
    for (key, auth) in [
        (&keys[0], &["AUTH", "s3cret"][..]),
        (&keys[1], &["AUTH2", "default", "s3cret"][..]),
        (&keys[2], &[][..]),
    ] {
        let words = migrate(key, auth);
        let moved = cartd_tests::ok(&mut n1, &strs(&words)).await;
        assert_eq!(moved, redis::Value::Okay, "{words:?}");
    }
    let asking = |key: &String| {
        let mut pipe = redis::pipe();
        pipe.cmd("ASKING").ignore().cmd("EXISTS").arg(key);
        pipe
    };
    for (at, key) in keys.iter().enumerate() {
        let (on_n2,): (i64,) = asking(key).query_async(&mut n2).await.expect("EXISTS");
        assert_eq!(on_n2, i64::from(at < 3), "{key} on n2");
    }
}

/// The words of a request as `&str`s.
fn strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

fn kill_and_restart(cluster: &LocalCluster, node: u16) {
    tokio::task::block_in_place(|| {
        cluster.kill9(node);
        cluster.restart(node);
    });
}

/// Every node answers `GIFTCARD.GET code` with (balance, held) `expected`.
async fn assert_card_everywhere(
    cluster: &LocalCluster,
    code: &str,
    expected: (i64, i64),
    why: &str,
) {
    for node in 0..cluster.nodes {
        let card = card_on(cluster, node, code).await;
        assert_eq!(card, expected, "{why}: on n{}", node + 1);
    }
}

/// Moves `slot`, holding only `key`, from node `from` to node `to`, as redis-cli does.
async fn move_slot_of(cluster: &LocalCluster, slot: usize, key: &str, (from, to): (u16, u16)) {
    let name = |node: u16| format!("n{}", node + 1);
    setslot_on(cluster, to, slot, &["IMPORTING", &name(from)]).await;
    setslot_on(cluster, from, slot, &["MIGRATING", &name(to)]).await;
    migrate_one(cluster, (from, to), key).await;
    let rest = (0..cluster.nodes).filter(|node| ![from, to].contains(node));
    for node in [to, from].into_iter().chain(rest) {
        setslot_on(cluster, node, slot, &["NODE", &name(to)]).await;
    }
}

/// `CART.COMPLETE key token` of each, twice, through a cluster client: OK each time.
async fn complete_twice(cluster: &LocalCluster, tokens: &[(String, String)]) {
    let mut conn = cluster_client(cluster).await;
    for (key, token) in tokens {
        for _ in 0..2 {
            let done: String = redis::cmd("CART.COMPLETE")
                .arg(key)
                .arg(token)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|error| panic!("CART.COMPLETE {key}: {error}"));
            assert_eq!(done, "OK");
        }
    }
}

/// Once every sink has caught up, PostgreSQL's row of card `code` has `balance`.
async fn wait_postgres_balance(
    cluster: &LocalCluster,
    db: &cartd_tests::TestDb,
    code: &str,
    balance: i64,
) {
    for node in 0..cluster.nodes {
        cartd_tests::wait_for_sink(&mut node_conn(cluster, node).await).await;
    }
    let sql =
        format!("SELECT coalesce(sum(balance), -1)::int8 FROM gift_cards WHERE code = '{code}'");
    let started = std::time::Instant::now();
    loop {
        let rows = db.count(&sql).await;
        if rows == balance {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "PostgreSQL has {rows} for {code}, the cluster {balance}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A write routed to the source while its cart was still there, run after MIGRATE took the
/// cart away (here: queued in MULTI before the move, EXEC after it), is not applied to a new
/// cart on the source: that cart would be a second, stale copy, which the next MIGRATE of the
/// slot sends over the one the target has, losing every line the target had. The source
/// redirects the EXEC (`-ASK`, as Redis) and holds nothing of the slot; the move finishes
/// with the cart whole. Fails on 596e677: EXEC made a one-line cart on the source, GETKEYSINSLOT listed it
/// and SETSLOT NODE refused to give the slot away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_run_after_its_cart_moved_is_sent_on_not_made_again_on_the_source() {
    let cluster = LocalCluster::up(2, 0);
    let key = "cart:{late}a";
    let slot = cartd_tests::chaos::router::slot("late");
    let (source, target) = if slot < 8_192 { (0, 1) } else { (1, 0) };
    let mut conn = cluster_client(&cluster).await;
    for sku in ["one", "two", "three"] {
        add(&mut conn, key, sku).await.expect("CART.ADD");
    }
    let mut late = node_conn(&cluster, source).await;
    let _: () = redis::cmd("MULTI")
        .query_async(&mut late)
        .await
        .expect("MULTI");
    let queued: String = cartd_tests::chaos::load::cart_add(key, "late")
        .query_async(&mut late)
        .await
        .expect("CART.ADD queued");
    assert_eq!(queued, "QUEUED");

    let name = |node: u16| format!("n{}", node + 1);
    setslot_on(&cluster, target, slot, &["IMPORTING", &name(source)]).await;
    setslot_on(&cluster, source, slot, &["MIGRATING", &name(target)]).await;
    migrate_one(&cluster, (source, target), key).await;
    let ran = redis::cmd("EXEC")
        .query_async::<redis::Value>(&mut late)
        .await;
    let target_addr = format!("127.0.0.1:{}", cluster.port + target);
    // As Redis does: the EXEC itself is redirected and its transaction discarded.
    assert!(
        ran.as_ref().is_err_and(|error| {
            let text = error.to_string();
            text.to_uppercase().contains("ASK") && text.contains(&target_addr)
        }),
        "the late write is sent on to the target: {ran:?}"
    );
    let mut on_source = node_conn(&cluster, source).await;
    let left: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(10)
        .query_async(&mut on_source)
        .await
        .expect("GETKEYSINSLOT");
    assert!(
        left.is_empty(),
        "the source holds no cart of the slot: {left:?}"
    );
    for node in [target, source] {
        setslot_on(&cluster, node, slot, &["NODE", &name(target)]).await;
    }
    let mut conn = cluster_client(&cluster).await;
    assert_eq!(
        cart(&mut conn, key).await,
        Some((3, 3)),
        "the cart is whole"
    );
    assert_eq!(carts_on_primaries(&cluster, 2).await, 1);
}
