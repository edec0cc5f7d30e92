//! The PostgreSQL stream: carts and events arrive exactly once and equal cartd's; a node
//! that lost its disk restores every cart from PostgreSQL; `restore_on_miss` loads a user
//! cart on first access. Needs the suite's PostgreSQL (`scripts/test`).

use cartd_tests::{info, info_number, int, ok, view, wait_for_sink, Cartd, TestDb};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

fn config(db: &TestDb, extra: &str) -> String {
    format!(
        "[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\n{extra}",
        db.url
    )
}

/// A varied history: adds, a quantity change, a removal, save, a merge, a delete.
async fn history(conn: &mut MultiplexedConnection) {
    let add = |key: &'static str, product: &'static str, qty: &'static str| {
        vec![
            "CART.ADD", key, product, "v1", qty, "PRICE", "1299", "CURRENCY", "USD",
        ]
    };
    for (key, product, qty) in [
        ("cart:1", "mug", "2"),
        ("cart:1", "tea", "1"),
        ("cart:2", "pot", "1"),
        ("cart:guest:g", "cup", "4"),
        ("cart:3", "lid", "1"),
    ] {
        ok(conn, &add(key, product, qty)).await;
    }
    ok(conn, &["CART.SET", "cart:1", "mug", "v1", "5"]).await;
    ok(conn, &["CART.REMOVE", "cart:2", "pot", "v1"]).await;
    ok(conn, &["CART.SAVE", "cart:1", "tea", "v1"]).await;
    ok(conn, &["CART.MERGE", "cart:guest:g", "cart:2"]).await;
    ok(conn, &["DEL", "cart:3"]).await;
}

/// The rows of `carts` as (key, version, items).
async fn rows(db: &TestDb) -> Vec<(String, i64, Json)> {
    sqlx::query_as("SELECT key, version, items FROM carts ORDER BY key")
        .fetch_all(&db.pool)
        .await
        .expect("select carts")
}

/// Every cart row equals cartd's view (items and version); every log record is one event,
/// of the right kind; deleted and merged-away carts have no row.
#[tokio::test]
async fn the_sink_mirrors_carts_and_events_exactly_once() {
    let db = TestDb::create().await;
    let cartd = Cartd::start_async(&config(&db, "")).await;
    let mut conn = cartd.client(false).await;
    history(&mut conn).await;
    let last = wait_for_sink(&mut conn).await;
    let rows = rows(&db).await;
    let keys: Vec<&str> = rows.iter().map(|(key, _, _)| key.as_str()).collect();
    assert_eq!(keys, ["cart:1", "cart:2"]);
    for (key, version, items) in &rows {
        let cart = view(&mut conn, key).await;
        assert_eq!(Some(*version), cart["version"].as_i64(), "{key}");
        let products = |list: &Json| -> Vec<(Json, Json)> {
            let lines = list.as_array().expect("a list");
            lines
                .iter()
                .map(|l| (l["product"].clone(), l["qty"].clone()))
                .collect()
        };
        assert_eq!(products(items), products(&cart["items"]), "{key}");
    }
    // One event per change: the merge is one record of two changes (the user cart's image
    // and the guest cart's tombstone), so it has two events under one LSN.
    let events = db.count("SELECT count(*) FROM cart_events").await;
    let distinct = db
        .count("SELECT count(DISTINCT lsn) FROM cart_events")
        .await;
    assert_eq!((events, distinct), (last as i64 + 1, last as i64));
    let merge_sides = "SELECT count(*) FROM (SELECT lsn FROM cart_events WHERE kind = 'merge' \
                       GROUP BY lsn HAVING count(*) = 2 AND min(seq) = 0 AND max(seq) = 1) AS m";
    assert_eq!(
        db.count(merge_sides).await,
        1,
        "both sides of the merge in one record"
    );
    let kind = |kind: &str| format!("SELECT count(*) FROM cart_events WHERE kind = '{kind}'");
    assert_eq!(db.count(&kind("add")).await, 5);
    assert_eq!(
        db.count(&kind("merge")).await,
        2,
        "user image and guest tombstone"
    );
    assert_eq!(db.count(&kind("delete")).await, 1);
    assert_eq!(db.count(&kind("save")).await, 1);
    // A line's event names the line, the quantity the command gave, and when it happened.
    let detail = |condition: &str| {
        format!("SELECT count(*) FROM cart_events WHERE kind = 'add' AND {condition}")
    };
    let guest_add = "payload->>'product' = 'cup' AND payload->>'variant' = 'v1' \
                     AND (payload->>'qty')::int = 4 AND (payload->>'at_ms')::bigint > 1700000000000";
    assert_eq!(db.count(&detail(guest_add)).await, 1);
    assert_eq!(db.count(&detail("payload ? 'qty'")).await, 5);
}

/// Disk loss: the data directory is wiped; restarted with PostgreSQL, cartd restores every
/// cart (same items and version) before it serves, and numbers new records after the old.
#[tokio::test]
async fn a_wiped_node_restores_every_cart_from_postgres() {
    let db = TestDb::create().await;
    let mut cartd = Cartd::start_async(&config(&db, "")).await;
    let mut conn = cartd.client(false).await;
    history(&mut conn).await;
    let last = wait_for_sink(&mut conn).await;
    let events_before = db.count("SELECT count(*) FROM cart_events").await;
    let before = [
        view(&mut conn, "cart:1").await,
        view(&mut conn, "cart:2").await,
    ];
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    std::fs::remove_dir_all(cartd.data_dir()).expect("wipe the data directory");
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 2);
    for want in &before {
        let key = want["id"].as_str().expect("id");
        let got = view(&mut conn, key).await;
        assert_eq!(got["items"], want["items"], "{key}");
        assert_eq!(got["saved"], want["saved"], "{key}");
        assert_eq!(got["version"], want["version"], "{key}");
    }
    let text = info(&mut conn, &["persistence"]).await;
    assert_eq!(info_number(&text, "loaded_postgres_carts"), 2, "{text}");
    ok(
        &mut conn,
        &[
            "CART.ADD", "cart:1", "new", "-", "1", "PRICE", "1", "CURRENCY", "USD",
        ],
    )
    .await;
    assert_eq!(
        wait_for_sink(&mut conn).await,
        last + 1,
        "LSNs go on after the old ones"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM cart_events").await,
        events_before + 1
    );
}

/// restore_on_miss: a node with data of its own that has never seen `cart:1` loads it from
/// PostgreSQL when a command first touches it; guest carts are not looked up.
#[tokio::test]
async fn restore_on_miss_loads_a_user_cart_on_first_access() {
    let db = TestDb::create().await;
    let writer = Cartd::start_async(&config(&db, "node = \"writer\"\n")).await;
    let mut conn = writer.client(false).await;
    history(&mut conn).await;
    wait_for_sink(&mut conn).await;
    let want = view(&mut conn, "cart:1").await;
    drop(conn);
    drop(writer);
    let mut reader = Cartd::start_async("").await;
    let mut conn = reader.client(false).await;
    ok(
        &mut conn,
        &[
            "CART.ADD", "cart:9", "own", "-", "1", "PRICE", "1", "CURRENCY", "USD",
        ],
    )
    .await;
    drop(conn);
    assert!(reader.stop_gracefully().success());
    let extra = "node = \"reader\"\nrestore_on_miss = true\n";
    std::fs::write(reader.config_path(), config(&db, extra)).expect("rewrite the config");
    reader.restart();
    let mut conn = reader.client(false).await;
    assert_eq!(
        int(&ok(&mut conn, &["DBSIZE"]).await),
        1,
        "no full restore: data is local"
    );
    let got = view(&mut conn, "cart:1").await;
    assert_eq!(got["items"], want["items"]);
    assert_eq!(got["version"], want["version"]);
    assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 2);
}

/// One add of the storm: 40 carts, 9 products.
async fn storm_add(conn: &mut MultiplexedConnection, i: usize) {
    let (key, product) = (format!("cart:{}", i % 40), format!("p{}", i % 9));
    let line = [
        "CART.ADD", &key, &product, "-", "1", "PRICE", "7", "CURRENCY", "USD",
    ];
    ok(conn, &line).await;
}

/// PostgreSQL stopped in the middle of a write storm: writes go on, INFO shows the sink
/// failing and lagging; when PostgreSQL is back, every cart row equals cartd's and every
/// record is one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_during_a_storm_catches_up_exactly_once() {
    let cluster = tokio::task::spawn_blocking(cartd_tests::PgCluster::start)
        .await
        .expect("cluster");
    let url = cluster.url();
    let cartd =
        Cartd::start_async(&format!("[postgres]\nurl = \"{url}\"\ncoalesce_ms = 10\n")).await;
    let mut conn = cartd.client(false).await;
    for i in 0..200 {
        storm_add(&mut conn, i).await;
    }
    wait_for_sink(&mut conn).await;
    tokio::task::block_in_place(|| cluster.down());
    for i in 200..1200 {
        storm_add(&mut conn, i).await;
    }
    let text = info(&mut conn, &["persistence"]).await;
    assert!(info_number(&text, "postgres_lag_records") > 0, "{text}");
    tokio::task::block_in_place(|| cluster.up());
    let last = wait_for_sink(&mut conn).await;
    assert_eq!(last, 1200);
    let db_pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let count = |sql: &'static str| {
        let pool = db_pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .expect(sql)
        }
    };
    assert_eq!(count("SELECT count(*) FROM cart_events").await, 1200);
    assert_eq!(
        count("SELECT count(DISTINCT lsn) FROM cart_events").await,
        1200
    );
    assert_eq!(count("SELECT count(*) FROM carts").await, 40);
    let versions: Vec<(String, i64)> = sqlx::query_as("SELECT key, version FROM carts")
        .fetch_all(&db_pool)
        .await
        .expect("select");
    for (key, version) in versions {
        assert_eq!(
            Some(version),
            view(&mut conn, &key).await["version"].as_i64(),
            "{key}"
        );
    }
}

/// CART.COMPLETE reaches PostgreSQL as a `checkout` event carrying the order id, the totals
/// and what each discount and gift card took, and the cart's row goes; a frozen cart's row carries its codes and checkout in `metadata`.
#[tokio::test]
async fn a_completed_checkout_is_an_event_with_its_order_id() {
    let db = TestDb::create().await;
    let cartd = Cartd::start_async(&config(&db, "")).await;
    let mut conn = cartd.client(false).await;
    let promo = r#"{"kind":"fixed","amount":299,"currency":"USD"}"#;
    ok(&mut conn, &["PROMO.SET", "OFF", promo]).await;
    ok(
        &mut conn,
        &[
            "CART.ADD", "cart:9", "mug", "-", "2", "PRICE", "1299", "CURRENCY", "USD",
        ],
    )
    .await;
    ok(&mut conn, &["CART.PROMO", "cart:9", "ADD", "OFF"]).await;
    ok(&mut conn, &["GIFTCARD.SET", "GC", "1000", "USD"]).await;
    ok(&mut conn, &["CART.GIFTCARD", "cart:9", "ADD", "GC"]).await;
    let frozen = cartd_tests::json_reply(
        &ok(&mut conn, &["CART.CHECKOUT", "cart:9", "FORMAT", "JSON"]).await,
    );
    let token = frozen["checkout_token"]
        .as_str()
        .expect("a token")
        .to_string();
    wait_for_sink(&mut conn).await;
    let (metadata,): (Json,) = sqlx::query_as("SELECT metadata FROM carts WHERE key = 'cart:9'")
        .fetch_one(&db.pool)
        .await
        .expect("the frozen cart's row");
    assert_eq!(metadata["promo_codes"], serde_json::json!(["OFF"]));
    assert_eq!(metadata["checkout"]["token"], token.as_str());
    ok(
        &mut conn,
        &["CART.COMPLETE", "cart:9", &token, "ORDER", "order-77"],
    )
    .await;
    wait_for_sink(&mut conn).await;
    let (payload,): (Json,) = sqlx::query_as(
        "SELECT payload FROM cart_events WHERE cart_key = 'cart:9' AND kind = 'checkout'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("one checkout event");
    assert_eq!(payload["order_id"], "order-77", "{payload}");
    assert_eq!(payload["token"], token.as_str());
    assert_eq!(payload["total"], 2 * 1299 - 299 - 1000);
    assert_eq!(
        payload["gift_cards"],
        serde_json::json!([{"code": "GC", "amount": 1000}])
    );
    assert_eq!(
        payload["discounts"],
        serde_json::json!([{"source": "code:OFF", "amount": 299}])
    );
    assert_eq!(
        db.count("SELECT count(*) FROM carts WHERE key = 'cart:9'")
            .await,
        0
    );
}
