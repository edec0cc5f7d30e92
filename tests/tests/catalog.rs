//! The catalog commands over real sockets (PROTOCOL.md): CATALOG.SET and CATALOG.GET in RESP2
//! and RESP3, refused values, STOCK.SET and CATALOG.DEL, and the same through `redis-cli`.
//! Every test runs its own cartd.
//!
//! How CART.ADD uses catalog prices is in `cart_add.rs`; how validation uses price and stock in
//! `cart_merge_validation.rs`.

use cartd_tests::{fails, ok, resp3_to_json, w, Cartd};
use redis::Value;
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------------
// Catalog commands
// ---------------------------------------------------------------------------------------------

/// CATALOG.SET replies OK; CATALOG.GET replies price, currency, stock, max_qty, updated_at_ms
/// (a map in RESP3, flattened in RESP2), null for an unknown variant; STOCK and MAXQTY keep
/// their values when left out and `MAXQTY 0` removes the limit.
#[tokio::test]
async fn catalog_set_and_get() {
    let cartd = Cartd::start_default();
    let mut resp3 = cartd.client(true).await;
    let mut resp2 = cartd.client(false).await;
    assert_eq!(
        ok(&mut resp3, &["CATALOG.GET", "mug", "blue"]).await,
        Value::Nil
    );
    assert_eq!(
        ok(&mut resp2, &["CATALOG.GET", "mug", "blue"]).await,
        Value::Nil
    );
    let set = w("CATALOG.SET mug blue 899 usd STOCK 12 MAXQTY 4");
    assert_eq!(ok(&mut resp3, &set).await, Value::Okay);
    let entry = resp3_to_json(&ok(&mut resp3, &["CATALOG.GET", "mug", "blue"]).await);
    assert_eq!(entry["price"], 899);
    assert_eq!(entry["currency"], "USD");
    assert_eq!(entry["stock"], 12);
    assert_eq!(entry["max_qty"], 4);
    assert!(
        entry["updated_at_ms"].as_i64().is_some_and(|at| at > 0),
        "{entry}"
    );
    let Value::Array(flat) = ok(&mut resp2, &["CATALOG.GET", "mug", "blue"]).await else {
        panic!("RESP2 CATALOG.GET is a flat array")
    };
    let flat: Vec<Json> = flat.iter().map(resp3_to_json).collect();
    assert_eq!(flat.len(), 10, "{flat:?}");
    assert_eq!(
        flat[..9].to_vec(),
        [
            json!("price"),
            json!(899),
            json!("currency"),
            json!("USD"),
            json!("stock"),
            json!(12),
            json!("max_qty"),
            json!(4),
            json!("updated_at_ms"),
        ]
    );
    assert_eq!(flat[9], entry["updated_at_ms"]);

    ok(&mut resp3, &w("CATALOG.SET mug blue 799 USD")).await;
    let entry = resp3_to_json(&ok(&mut resp3, &["CATALOG.GET", "mug", "blue"]).await);
    assert_eq!(entry["price"], 799);
    assert_eq!(entry["stock"], 12, "STOCK left out keeps its value");
    assert_eq!(entry["max_qty"], 4, "MAXQTY left out keeps its value");
    let clear = w("CATALOG.SET mug blue 799 USD MAXQTY 0");
    ok(&mut resp3, &clear).await;
    let entry = resp3_to_json(&ok(&mut resp3, &["CATALOG.GET", "mug", "blue"]).await);
    assert_eq!(entry["max_qty"], Json::Null);
    assert_eq!(
        ok(&mut resp3, &["CATALOG.GET", "mug", "red"]).await,
        Value::Nil
    );
    ok(&mut resp3, &w("CATALOG.SET hat - 1500 GBP")).await;
    let entry = resp3_to_json(&ok(&mut resp3, &["CATALOG.GET", "hat", "-"]).await);
    assert_eq!(entry["stock"], Json::Null, "never given: null");
    assert_eq!(entry["max_qty"], Json::Null, "never given: null");
}

/// CATALOG.SET refuses a bad price, currency, STOCK or MAXQTY, a repeated or unknown option,
/// with `ERR`, and keeps the entry as it was.
#[tokio::test]
async fn catalog_set_refuses_bad_values() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("CATALOG.SET mug - 899 USD STOCK 3")).await;
    let before = resp3_to_json(&ok(&mut conn, &["CATALOG.GET", "mug", "-"]).await);
    let bad: [&[&str]; 6] = [
        &w("CATALOG.SET mug - -1 USD"),
        &w("CATALOG.SET mug - 1 DOLLARS"),
        &w("CATALOG.SET mug - 1 USD STOCK -1"),
        &w("CATALOG.SET mug - 1 USD MAXQTY -1"),
        &w("CATALOG.SET mug - 1 USD STOCK 1 STOCK 2"),
        &w("CATALOG.SET mug - 1 USD COLOR red"),
    ];
    for args in bad {
        let error = fails(&mut conn, args).await;
        assert!(error.starts_with("ERR "), "{args:?}: {error}");
    }
    let after = resp3_to_json(&ok(&mut conn, &["CATALOG.GET", "mug", "-"]).await);
    assert_eq!(after, before);
}

/// STOCK.SET replies OK and gives an unknown variant a price-less entry (price, currency and
/// max_qty null); it keeps a known variant's price; CATALOG.DEL replies 1 for a known variant
/// and 0 after.
#[tokio::test]
async fn stock_set_and_catalog_del() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    assert_eq!(
        ok(&mut conn, &["STOCK.SET", "sock", "-", "7"]).await,
        Value::Okay
    );
    let entry = resp3_to_json(&ok(&mut conn, &["CATALOG.GET", "sock", "-"]).await);
    assert_eq!(entry["price"], Json::Null);
    assert_eq!(entry["currency"], Json::Null);
    assert_eq!(entry["stock"], 7);
    assert_eq!(entry["max_qty"], Json::Null);
    let error = fails(&mut conn, &w("CART.ADD cart:1 sock - 1")).await;
    assert!(
        error.starts_with("NOPRICE "),
        "a price-less entry has no price: {error}"
    );
    ok(&mut conn, &w("CATALOG.SET sock - 300 EUR")).await;
    ok(&mut conn, &["STOCK.SET", "sock", "-", "0"]).await;
    let entry = resp3_to_json(&ok(&mut conn, &["CATALOG.GET", "sock", "-"]).await);
    assert_eq!(entry["price"], 300);
    assert_eq!(entry["currency"], "EUR");
    assert_eq!(entry["stock"], 0);
    assert_eq!(
        ok(&mut conn, &["CATALOG.DEL", "sock", "-"]).await,
        Value::Int(1)
    );
    assert_eq!(
        ok(&mut conn, &["CATALOG.DEL", "sock", "-"]).await,
        Value::Int(0)
    );
    assert_eq!(
        ok(&mut conn, &["CATALOG.DEL", "never", "seen"]).await,
        Value::Int(0)
    );
    assert_eq!(
        ok(&mut conn, &["CATALOG.GET", "sock", "-"]).await,
        Value::Nil
    );
    let error = fails(&mut conn, &["STOCK.SET", "sock", "-", "-1"]).await;
    assert_eq!(error, "ERR value is not an integer or out of range");
}

// ---------------------------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------------------------

/// Through redis-cli: CATALOG.SET prints OK, CATALOG.GET prints a map under `-3` and the same
/// names and values flattened under RESP2, and CATALOG.DEL prints `(integer) 1`, then 0.
#[tokio::test]
async fn redis_cli_talks_to_the_catalog_commands() {
    let cartd = Cartd::start_default();
    let set = w("CATALOG.SET mug blue 899 usd STOCK 3");
    assert_eq!(cartd.redis_cli(&set), "OK\n");
    let output = cartd.redis_cli(&w("-3 --no-raw CATALOG.GET mug blue"));
    let text: Vec<&str> = output.lines().collect();
    assert_eq!(
        text[..4],
        [
            "1# \"price\" => (integer) 899",
            "2# \"currency\" => \"USD\"",
            "3# \"stock\" => (integer) 3",
            "4# \"max_qty\" => (nil)",
        ],
        "{output}"
    );
    assert!(
        text[4].starts_with("5# \"updated_at_ms\" => (integer) "),
        "{output}"
    );
    let output = cartd.redis_cli(&["--no-raw", "CATALOG.GET", "mug", "blue"]);
    let text: Vec<&str> = output.lines().take(8).collect();
    assert_eq!(
        text,
        [
            " 1) \"price\"",
            " 2) (integer) 899",
            " 3) \"currency\"",
            " 4) \"USD\"",
            " 5) \"stock\"",
            " 6) (integer) 3",
            " 7) \"max_qty\"",
            " 8) (nil)",
        ],
        "{output}"
    );
    let del = ["--no-raw", "CATALOG.DEL", "mug", "blue"];
    assert_eq!(cartd.redis_cli(&del), "(integer) 1\n");
    assert_eq!(cartd.redis_cli(&del), "(integer) 0\n");
}
