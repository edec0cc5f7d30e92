//! What must survive a restart beside the carts, clean or kill -9: catalog entries (a flash
//! sale's MAXQTY), promotions, gift cards and the holds checkouts have on them, idempotency
//! tokens and completed checkout tokens. Each case used to be lost (memory only). Also: a data
//! directory written before this format (segments and snapshots of format 1) still loads.

use std::path::PathBuf;

use cartd_tests::{
    fails, info, info_number, int, mutate, ok, resp3_to_json, w, wait_for_sink, Cartd,
};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value as Json};

/// Every change is synced before it is acknowledged, so a kill -9 loses nothing.
const ALWAYS: &str = "[persistence]\nappendfsync = \"always\"\n";

/// How a test stops cartd before starting it again.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Graceful,
    Kill,
    /// A snapshot first, then more changes, then kill -9: snapshot and log together.
    SnapshotThenKill,
}

const STOPS: [Stop; 3] = [Stop::Graceful, Stop::Kill, Stop::SnapshotThenKill];

async fn restart(cartd: &mut Cartd, stop: Stop) -> MultiplexedConnection {
    match stop {
        Stop::Graceful => assert!(cartd.stop_gracefully().success()),
        Stop::Kill | Stop::SnapshotThenKill => {
            cartd.kill();
        }
    }
    cartd.restart();
    cartd.client(true).await
}

/// Takes a snapshot now when the stop calls for one (its later changes are in the log only).
async fn maybe_snapshot(conn: &mut MultiplexedConnection, stop: Stop) {
    if let Stop::SnapshotThenKill = stop {
        ok(conn, &["SAVE"]).await;
    }
}

async fn json_get(conn: &mut MultiplexedConnection, key: &str) -> Json {
    cartd_tests::json_reply(&ok(conn, &["CART.GET", key, "FORMAT", "JSON"]).await)
}

/// The flash sale's MAXQTY 1 used to be gone after a restart (a cart then reached qty 3). The
/// catalog entry, its price and stock come back, and so does a deleted entry's absence.
#[tokio::test]
async fn catalog_entries_survive_restarts() {
    for stop in STOPS {
        let mut cartd = Cartd::start_async(ALWAYS).await;
        let mut conn = cartd.client(true).await;
        ok(
            &mut conn,
            &w("CATALOG.SET flash-tv - 49900 USD STOCK 10 MAXQTY 1"),
        )
        .await;
        ok(&mut conn, &w("CATALOG.SET gone - 100 USD")).await;
        maybe_snapshot(&mut conn, stop).await;
        ok(&mut conn, &w("STOCK.SET flash-tv - 7")).await;
        ok(&mut conn, &w("CATALOG.DEL gone -")).await;
        mutate(&mut conn, &w("CART.ADD cart:1 flash-tv - 1")).await;
        let mut conn = restart(&mut cartd, stop).await;
        let refused = fails(&mut conn, &w("CART.ADD cart:1 flash-tv - 1")).await;
        assert!(refused.starts_with("LIMIT "), "{stop:?}: {refused}");
        let entry = resp3_to_json(&ok(&mut conn, &w("CATALOG.GET flash-tv -")).await);
        assert_eq!(
            (&entry["price"], &entry["stock"], &entry["max_qty"]),
            (&json!(49900), &json!(7), &json!(1)),
            "{stop:?}"
        );
        assert_eq!(
            ok(&mut conn, &w("CATALOG.GET gone -")).await,
            redis::Value::Nil
        );
        assert_eq!(json_get(&mut conn, "cart:1").await["items"][0]["qty"], 1);
    }
}

/// A promo code on a cart used to read `unknown` after a restart and the total jumped; the
/// promotion comes back, a deleted one stays deleted.
#[tokio::test]
async fn promotions_survive_restarts() {
    for stop in STOPS {
        let mut cartd = Cartd::start_async(ALWAYS).await;
        let mut conn = cartd.client(true).await;
        ok(
            &mut conn,
            &w(r#"PROMO.SET TEN {"kind":"percent","percent":10}"#),
        )
        .await;
        ok(
            &mut conn,
            &w(r#"PROMO.SET OLD {"kind":"percent","percent":50}"#),
        )
        .await;
        maybe_snapshot(&mut conn, stop).await;
        ok(&mut conn, &w("PROMO.DEL OLD")).await;
        mutate(
            &mut conn,
            &w("CART.ADD cart:1 mug - 2 PRICE 1000 CURRENCY USD"),
        )
        .await;
        let before = mutate(&mut conn, &w("CART.PROMO cart:1 ADD TEN")).await;
        assert_eq!(before["totals"]["total"], 1800);
        let mut conn = restart(&mut cartd, stop).await;
        let after = json_get(&mut conn, "cart:1").await;
        assert_eq!(after["promotions"][0]["applied"], true, "{stop:?}: {after}");
        assert_eq!(after["totals"], before["totals"], "{stop:?}");
        assert_eq!(ok(&mut conn, &w("PROMO.GET OLD")).await, redis::Value::Nil);
    }
}

/// An IDEMPOTENCY retry after a restart used to be applied twice; it replays instead, and a
/// retried COMPLETE used to get NOCART; it succeeds again.
#[tokio::test]
async fn tokens_survive_restarts() {
    for stop in STOPS {
        let mut cartd = Cartd::start_async(ALWAYS).await;
        let mut conn = cartd.client(true).await;
        let add =
            w("CART.ADD cart:1 mug - 1 PRICE 500 CURRENCY USD IDEMPOTENCY add-1 REPLY VERSION");
        assert_eq!(int(&ok(&mut conn, &add).await), 1);
        mutate(
            &mut conn,
            &w("CART.ADD cart:2 tea - 1 PRICE 300 CURRENCY USD"),
        )
        .await;
        maybe_snapshot(&mut conn, stop).await;
        let checkout = mutate(&mut conn, &w("CART.CHECKOUT cart:2")).await;
        let token = checkout["checkout_token"].as_str().unwrap().to_owned();
        ok(&mut conn, &["CART.COMPLETE", "cart:2", &token]).await;
        let set = w("CART.SET cart:1 mug - 4 IDEMPOTENCY set-1 REPLY VERSION");
        assert_eq!(int(&ok(&mut conn, &set).await), 2);
        let mut conn = restart(&mut cartd, stop).await;
        assert_eq!(int(&ok(&mut conn, &add).await), 1, "{stop:?}: replayed");
        assert_eq!(int(&ok(&mut conn, &set).await), 2, "{stop:?}: replayed");
        let cart = json_get(&mut conn, "cart:1").await;
        assert_eq!(
            (&cart["version"], &cart["items"][0]["qty"]),
            (&json!(2), &json!(4))
        );
        let other = w("CART.ADD cart:1 mug - 9 PRICE 500 CURRENCY USD IDEMPOTENCY add-1");
        assert!(fails(&mut conn, &other).await.starts_with("IDEMPOTENCY "));
        let again = ok(&mut conn, &["CART.COMPLETE", "cart:2", &token]).await;
        assert_eq!(
            again,
            redis::Value::Okay,
            "{stop:?}: a retried COMPLETE succeeds"
        );
    }
}

/// Re-pushing a gift card after a restart used to let a frozen cart and a new one both spend
/// its balance. Balances are durable and the frozen checkout's hold is rebuilt: the new cart
/// gets nothing from the card, the frozen one completes with exactly its hold, and the card
/// ends at 0, having paid exactly its balance once.
#[tokio::test]
async fn gift_card_balances_and_holds_survive_restarts() {
    for stop in STOPS {
        let mut cartd = Cartd::start_async(ALWAYS).await;
        let mut conn = cartd.client(true).await;
        ok(&mut conn, &w("GIFTCARD.SET G1 10000 USD")).await;
        ok(&mut conn, &w("GIFTCARD.SET SPENT 800 USD")).await;
        maybe_snapshot(&mut conn, stop).await;
        // cart:b holds the card too, from before the balance was reserved.
        mutate(
            &mut conn,
            &w("CART.ADD cart:b tv - 1 PRICE 12000 CURRENCY USD"),
        )
        .await;
        mutate(&mut conn, &w("CART.GIFTCARD cart:b ADD G1")).await;
        mutate(
            &mut conn,
            &w("CART.ADD cart:a tv - 1 PRICE 12000 CURRENCY USD"),
        )
        .await;
        mutate(&mut conn, &w("CART.GIFTCARD cart:a ADD G1")).await;
        let frozen = mutate(&mut conn, &w("CART.CHECKOUT cart:a")).await;
        assert_eq!(frozen["totals"]["gift_card"], 10000);
        let token = frozen["checkout_token"].as_str().unwrap().to_owned();
        mutate(
            &mut conn,
            &w("CART.ADD cart:s mug - 1 PRICE 500 CURRENCY USD"),
        )
        .await;
        mutate(&mut conn, &w("CART.GIFTCARD cart:s ADD SPENT")).await;
        let spent = mutate(&mut conn, &w("CART.CHECKOUT cart:s")).await;
        let spent_token = spent["checkout_token"].as_str().unwrap().to_owned();
        ok(&mut conn, &["CART.COMPLETE", "cart:s", &spent_token]).await;

        let mut conn = restart(&mut cartd, stop).await;
        let card = resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET G1")).await);
        assert_eq!(
            (&card["balance"], &card["held"]),
            (&json!(10000), &json!(10000)),
            "{stop:?}: the balance and the frozen checkout's hold came back"
        );
        let spent_card = resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET SPENT")).await);
        assert_eq!(
            spent_card["balance"], 300,
            "{stop:?}: what was spent stays spent"
        );
        ok(&mut conn, &w("GIFTCARD.SET G1 10000 USD")).await; // the owning system re-pushes
        mutate(
            &mut conn,
            &w("CART.ADD cart:c tv - 1 PRICE 12000 CURRENCY USD"),
        )
        .await;
        let refused = fails(&mut conn, &w("CART.GIFTCARD cart:c ADD G1")).await;
        assert!(refused.contains("no balance left"), "{stop:?}: {refused}");
        let other = mutate(&mut conn, &w("CART.CHECKOUT cart:b")).await;
        assert_eq!(other["gift_cards"][0]["applied"], 0, "{stop:?}: {other}");
        assert_eq!(other["gift_cards"][0]["reason"], "no_balance");
        ok(&mut conn, &["CART.COMPLETE", "cart:a", &token]).await;
        let card = resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET G1")).await);
        assert_eq!(
            (&card["balance"], &card["held"]),
            (&json!(0), &json!(0)),
            "{stop:?}"
        );
    }
}

/// A data directory written before records held several changes (format-1 segments and
/// snapshot, `tests/fixtures/format-1`) loads: snapshot, then the log after it.
#[tokio::test]
async fn a_format_1_data_directory_still_loads() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/format-1");
    let cartd = Cartd::start_with_data("", &fixture);
    let mut conn = cartd.client(true).await;
    assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 3);
    let cart = json_get(&mut conn, "cart:1").await;
    assert_eq!(
        (&cart["version"], &cart["items"][0]["qty"]),
        (&json!(4), &json!(5))
    );
    assert_eq!(cart["saved"][0]["product"], "tea");
    let merged = json_get(&mut conn, "cart:2").await;
    let products: Vec<&Json> = merged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["product"])
        .collect();
    assert_eq!(products, [&json!("pot"), &json!("cup")]);
    assert_eq!(json_get(&mut conn, "cart:4").await["currency"], "EUR");
    assert!(json_get(&mut conn, "cart:guest:g1").await.is_null());
    assert!(json_get(&mut conn, "cart:3").await.is_null());
    let text = info(&mut conn, &["persistence"]).await;
    assert_eq!(info_number(&text, "loaded_snapshot_carts"), 3, "{text}");
    // New changes go to a format-2 log after the old one, and all of it reloads again.
    mutate(&mut conn, &w("CART.ADD cart:4 tv - 1")).await;
    ok(&mut conn, &["SAVE"]).await;
    drop(conn);
    let mut cartd = cartd;
    assert!(cartd.stop_gracefully().success());
    cartd.restart();
    let mut conn = cartd.client(true).await;
    assert_eq!(json_get(&mut conn, "cart:4").await["items"][0]["qty"], 2);
    assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 3);
}

/// The catalog, promotions and gift cards reach their PostgreSQL tables, and a node whose data
/// directory is lost gets them back with its carts: a checkout in progress comes back frozen
/// (the row keeps the cart's image), its gift card hold is rebuilt from it, and it completes.
#[tokio::test]
async fn reference_data_and_checkouts_come_back_from_postgres() {
    let db = cartd_tests::TestDb::create().await;
    let config = format!("[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\n", db.url);
    let mut cartd = Cartd::start_async(&config).await;
    let mut conn = cartd.client(true).await;
    ok(
        &mut conn,
        &w("CATALOG.SET flash-tv - 49900 USD STOCK 10 MAXQTY 1"),
    )
    .await;
    ok(
        &mut conn,
        &w(r#"PROMO.SET TEN {"kind":"percent","percent":10}"#),
    )
    .await;
    ok(&mut conn, &w("GIFTCARD.SET G1 10000 USD")).await;
    mutate(&mut conn, &w("CART.ADD cart:a flash-tv - 1")).await;
    mutate(&mut conn, &w("CART.PROMO cart:a ADD TEN")).await;
    mutate(&mut conn, &w("CART.GIFTCARD cart:a ADD G1")).await;
    let frozen = mutate(&mut conn, &w("CART.CHECKOUT cart:a")).await;
    assert_eq!(frozen["totals"]["gift_card"], 10000);
    let token = frozen["checkout_token"].as_str().unwrap().to_owned();
    wait_for_sink(&mut conn).await;
    let row: (i64, i32, i64) =
        sqlx::query_as("SELECT price, max_qty, stock FROM catalog WHERE product = 'flash-tv'")
            .fetch_one(&db.pool)
            .await
            .expect("the catalog row");
    assert_eq!(row, (49900, 1, 10));
    assert_eq!(
        db.count("SELECT balance FROM gift_cards WHERE code = 'G1'")
            .await,
        10000
    );
    assert_eq!(
        db.count("SELECT count(*) FROM promotions WHERE code = 'TEN'")
            .await,
        1
    );
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    std::fs::remove_dir_all(cartd.data_dir()).expect("wipe the data directory");

    cartd.restart();
    let mut conn = cartd.client(true).await;
    let text = info(&mut conn, &["persistence"]).await;
    assert_eq!(info_number(&text, "loaded_postgres_reference"), 3, "{text}");
    let cart = json_get(&mut conn, "cart:a").await;
    assert_eq!(cart["status"], "checkout", "{cart}");
    assert_eq!(cart["checkout_token"], frozen["checkout_token"]);
    assert_eq!(cart["totals"], frozen["totals"]);
    let card = resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET G1")).await);
    assert_eq!(
        (&card["balance"], &card["held"]),
        (&json!(10000), &json!(10000))
    );
    let promo = ok(&mut conn, &w("PROMO.GET TEN")).await;
    assert!(matches!(promo, redis::Value::BulkString(_)), "{promo:?}");
    mutate(&mut conn, &w("CART.ADD cart:b flash-tv - 1")).await;
    assert!(fails(&mut conn, &w("CART.ADD cart:b flash-tv - 1"))
        .await
        .starts_with("LIMIT "));
    ok(&mut conn, &["CART.COMPLETE", "cart:a", &token]).await;
    let card = resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET G1")).await);
    assert_eq!((&card["balance"], &card["held"]), (&json!(0), &json!(0)));
    wait_for_sink(&mut conn).await;
    assert_eq!(
        db.count("SELECT balance FROM gift_cards WHERE code = 'G1'")
            .await,
        0
    );
}
