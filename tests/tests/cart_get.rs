//! CART.GET and the cart view over real sockets (PROTOCOL.md, "Cart view" and "CART.GET and
//! validation"): null for a missing cart, the validation states (skipped, fresh, cached), the
//! three encodings of the view (RESP3 map, flat RESP2 array, FORMAT JSON) agreeing field for
//! field and in order down to the wire bytes, and the cart commands through `redis-cli`.
//! Every test runs its own cartd.
//!
//! Validation against price and stock changes is covered further in
//! `cart_merge_validation.rs`.

use cartd_tests::{
    cart_add, expect, int, item, json_reply, lines, ok, resp2_view_to_json, resp3_to_json, view, w,
    without_ttl, Cartd,
};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;

/// A cart with every kind of line: `mug` repriced (price_changed), `sock`, `hat` saved for
/// later and `pen` out of stock (moved to unavailable by a validating CART.GET).
async fn build_rich_cart(conn: &mut MultiplexedConnection, key: &str) {
    cart_add(conn, key, "mug", "1", "1299").await;
    cart_add(conn, key, "mug", "1", "1199").await;
    cart_add(conn, key, "sock", "3", "300").await;
    cart_add(conn, key, "hat", "1", "2500").await;
    cart_add(conn, key, "pen", "1", "150").await;
    ok(conn, &["CART.SAVE", key, "hat", "-"]).await;
    ok(conn, &w("STOCK.SET pen - 0")).await;
    ok(conn, &["CART.GET", key]).await;
}

// ---------------------------------------------------------------------------------------------
// CART.GET and the view's encodings
// ---------------------------------------------------------------------------------------------

/// CART.GET of a missing cart is null: `$-1` in RESP2 and `_` in RESP3 on the wire, nil for
/// the redis crate, whatever the options; it never creates an empty cart.
#[tokio::test]
async fn get_of_a_missing_cart_is_null() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"$-1\r\n");
    let args = w("CART.GET cart:none NOVALIDATE FORMAT JSON");
    assert_eq!(raw.call(&args).await, b"$-1\r\n");
    let hello = raw.call(&["HELLO", "3"]).await;
    assert_eq!(hello.first(), Some(&b'%'), "HELLO 3 replies a map");
    assert_eq!(raw.call(&["CART.GET", "cart:none"]).await, b"_\r\n");
    assert_eq!(raw.call(&args).await, b"_\r\n");
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        assert_eq!(ok(&mut conn, &["CART.GET", "cart:none"]).await, Value::Nil);
        assert_eq!(int(&ok(&mut conn, &["EXISTS", "cart:none"]).await), 0);
        assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 0);
    }
}

/// CART.GET NOVALIDATE reports `skipped`; a plain CART.GET validates (`fresh`, with
/// validated_at_ms); the next within the cache window is `cached`, even after a catalog
/// change, until a mutation drops the validation.
#[tokio::test]
async fn get_reports_skipped_fresh_then_cached() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "sku-1", "2", "1299").await;
    let skipped = view(&mut conn, "cart:1").await;
    assert_eq!(skipped["validation"], "skipped");
    assert_eq!(skipped["validated_at_ms"], Json::Null);
    let get = ["CART.GET", "cart:1", "FORMAT", "JSON"];
    let fresh = json_reply(&ok(&mut conn, &get).await);
    assert_eq!(fresh["validation"], "fresh");
    assert!(fresh["validated_at_ms"].as_i64().is_some(), "{fresh}");
    assert_eq!(fresh["version"], 1, "nothing to change: the version stays");
    let cached = json_reply(&ok(&mut conn, &get).await);
    assert_eq!(cached["validation"], "cached");
    assert_eq!(cached["validated_at_ms"], fresh["validated_at_ms"]);
    let skipped = view(&mut conn, "cart:1").await;
    assert_eq!(skipped["validation"], "skipped");
    assert_eq!(skipped["validated_at_ms"], fresh["validated_at_ms"]);

    ok(&mut conn, &w("CATALOG.SET sku-1 - 999 USD")).await;
    let cached = json_reply(&ok(&mut conn, &get).await);
    assert_eq!(
        cached["validation"], "cached",
        "a catalog change keeps the cache"
    );
    assert_eq!(item(&cached, "sku-1")["unit_price"], 1299);

    let changed = cart_add(&mut conn, "cart:1", "sku-2", "1", "100").await;
    assert_eq!(changed["validated_at_ms"], Json::Null);
    assert_eq!(changed["validation"], "skipped");
    let fresh = json_reply(&ok(&mut conn, &get).await);
    assert_eq!(fresh["validation"], "fresh");
    assert_eq!(item(&fresh, "sku-1")["unit_price"], 999);
    assert_eq!(item(&fresh, "sku-1")["price_changed"], true);
    assert_eq!(fresh["version"], 3, "re-pricing is a change");
}

/// The same cart read as a RESP3 map, as a flat RESP2 array (booleans 0/1) and as FORMAT JSON
/// over either protocol is the same structure.
#[tokio::test]
async fn views_agree_across_resp2_resp3_and_json() {
    let cartd = Cartd::start_default();
    let mut resp2 = cartd.client(false).await;
    let mut resp3 = cartd.client(true).await;
    build_rich_cart(&mut resp2, "cart:1").await;
    let get = w("CART.GET cart:1 NOVALIDATE");
    let from_resp2 = without_ttl(resp2_view_to_json(&ok(&mut resp2, &get).await));
    let from_resp3 = without_ttl(resp3_to_json(&ok(&mut resp3, &get).await));
    let json2 = view(&mut resp2, "cart:1").await;
    let json3 = view(&mut resp3, "cart:1").await;
    assert_eq!(from_resp2, from_resp3);
    assert_eq!(from_resp3, without_ttl(json2.clone()));
    assert_eq!(from_resp3, without_ttl(json3));
    assert_eq!(item(&json2, "mug")["price_changed"], true);
    assert_eq!(item(&json2, "sock")["price_changed"], false);
    assert_eq!(lines(&json2, "saved"), expect(&[("hat", "-", 1)]));
    assert_eq!(lines(&json2, "unavailable"), expect(&[("pen", "-", 1)]));
    assert_eq!(json2["validation"], "skipped");
    assert!(json2["validated_at_ms"].as_i64().is_some(), "{json2}");
}

/// The RESP view keeps the documented field order (the RESP3 map, the flat RESP2 array, and
/// each line), RESP3 booleans are booleans, and FORMAT JSON sorts the keys.
#[tokio::test]
async fn view_fields_come_in_the_documented_order() {
    let cartd = Cartd::start_default();
    let mut resp2 = cartd.client(false).await;
    let mut resp3 = cartd.client(true).await;
    build_rich_cart(&mut resp2, "cart:1").await;
    let order: Vec<Json> = w(
        "id kind version status currency created_at_ms updated_at_ms \
                              ttl_ms items unavailable saved promo_codes promotions gift_cards discounts \
                              totals validation validated_at_ms",
    )
    .into_iter()
    .map(Json::from)
    .collect();
    let get = w("CART.GET cart:1 NOVALIDATE");
    let map = ok(&mut resp3, &get).await;
    let Value::Map(pairs) = &map else {
        panic!("RESP3 view is a map: {map:?}")
    };
    let keys: Vec<Json> = pairs.iter().map(|(key, _)| resp3_to_json(key)).collect();
    assert_eq!(keys, order);
    let flat = ok(&mut resp2, &get).await;
    let Value::Array(flat) = &flat else {
        panic!("RESP2 view is an array: {flat:?}")
    };
    let flat_keys: Vec<Json> = flat.iter().step_by(2).map(resp3_to_json).collect();
    assert_eq!(flat_keys, order);

    let Some(Value::Array(items)) = pairs
        .iter()
        .find(|(key, _)| resp3_to_json(key) == "items")
        .map(|(_, items)| items)
    else {
        panic!("items is an array: {map:?}")
    };
    let Value::Map(mug) = &items[0] else {
        panic!("a line is a map: {:?}", items[0])
    };
    let line_keys: Vec<Json> = mug.iter().map(|(key, _)| resp3_to_json(key)).collect();
    let line_order: Vec<Json> = w(
        "product variant qty unit_price price_at_add price_changed line_total discount added_at_ms",
    )
    .into_iter()
    .map(Json::from)
    .collect();
    assert_eq!(line_keys, line_order);
    assert_eq!(mug[5].1, Value::Boolean(true), "{mug:?}");

    let reply = ok(&mut resp2, &w("CART.GET cart:1 FORMAT JSON")).await;
    let Value::BulkString(text) = reply else {
        panic!("FORMAT JSON is a bulk string: {reply:?}")
    };
    let text = String::from_utf8(text).expect("JSON is UTF-8");
    assert!(
        text.starts_with("{\"created_at_ms\":"),
        "sorted keys: {text}"
    );
}

/// On the wire, RESP2 flattens the view into an array of bulk-string names and values with
/// booleans as `:0`/`:1` and null as `$-1`; RESP3 sends a map (`%18`), booleans as `#f`/`#t`
/// and null as `_`.
#[tokio::test]
async fn view_wire_bytes_in_resp2_and_resp3() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:42", "mug", "1", "899").await;
    let mut raw = cartd.raw().await;
    let get = ["CART.GET", "cart:42", "NOVALIDATE"];
    let resp2 = String::from_utf8(raw.call(&get).await).expect("UTF-8");
    let head = "*36\r\n$2\r\nid\r\n$7\r\ncart:42\r\n$4\r\nkind\r\n$4\r\nuser\r\n\
                $7\r\nversion\r\n:1\r\n$6\r\nstatus\r\n$6\r\nactive\r\n";
    assert!(resp2.starts_with(head), "{resp2:?}");
    let items = "$5\r\nitems\r\n*1\r\n*18\r\n$7\r\nproduct\r\n$3\r\nmug\r\n";
    assert!(resp2.contains(items), "{resp2:?}");
    assert!(
        resp2.contains("$13\r\nprice_changed\r\n:0\r\n"),
        "{resp2:?}"
    );
    assert!(
        resp2.ends_with("$15\r\nvalidated_at_ms\r\n$-1\r\n"),
        "{resp2:?}"
    );

    raw.call(&["HELLO", "3"]).await;
    let resp3 = String::from_utf8(raw.call(&get).await).expect("UTF-8");
    assert!(
        resp3.starts_with("%18\r\n$2\r\nid\r\n$7\r\ncart:42\r\n"),
        "{resp3:?}"
    );
    let items = "$5\r\nitems\r\n*1\r\n%9\r\n$7\r\nproduct\r\n$3\r\nmug\r\n";
    assert!(resp3.contains(items), "{resp3:?}");
    assert!(
        resp3.contains("$13\r\nprice_changed\r\n#f\r\n"),
        "{resp3:?}"
    );
    assert!(
        resp3.ends_with("$15\r\nvalidated_at_ms\r\n_\r\n"),
        "{resp3:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------------------------

/// Through redis-cli: CART.ADD with REPLY VERSION prints `(integer) 1`, a currency mismatch
/// prints the `(error) ERR ...` sentence, REPLY NONE prints OK, CART.GET FORMAT JSON prints
/// the JSON view, and a missing cart prints `(nil)`.
#[tokio::test]
async fn redis_cli_talks_to_the_cart_commands() {
    let cartd = Cartd::start_default();
    let add = w("--no-raw CART.ADD cart:cli mug blue 1 PRICE 899 CURRENCY USD REPLY VERSION");
    assert_eq!(cartd.redis_cli(&add), "(integer) 1\n");
    let mismatch = w("--no-raw CART.ADD cart:cli mug blue 1 PRICE 899 CURRENCY EUR");
    assert_eq!(
        cartd.redis_cli(&mismatch),
        "(error) ERR cart is priced in USD, the price is in EUR\n"
    );
    let set = w("CART.SET cart:cli mug blue 3 REPLY NONE");
    assert_eq!(cartd.redis_cli(&set), "OK\n");
    let stale = w("--no-raw CART.SET cart:cli mug blue 2 IFVERSION 1");
    assert_eq!(
        cartd.redis_cli(&stale),
        "(error) VERSION expected 1, cart is at 2\n"
    );
    let output = cartd.redis_cli(&["CART.GET", "cart:cli", "FORMAT", "JSON"]);
    let cart: Json = serde_json::from_str(output.trim_end()).expect("redis-cli prints the JSON");
    assert_eq!(cart["version"], 2);
    assert_eq!(cart["validation"], "fresh");
    assert_eq!(lines(&cart, "items"), expect(&[("mug", "blue", 3)]));
    let output = cartd.redis_cli(&["--no-raw", "CART.GET", "cart:none"]);
    assert_eq!(output, "(nil)\n");
    let output = cartd.redis_cli(&w("-3 --no-raw CATALOG.GET mug blue"));
    assert_eq!(output, "(nil)\n");
    let output = cartd.redis_cli(&["--no-raw", "CART.GET", "cart:cli", "NOVALIDATE"]);
    let text: Vec<&str> = output.lines().take(6).collect();
    assert_eq!(
        text,
        [
            " 1) \"id\"",
            " 2) \"cart:cli\"",
            " 3) \"kind\"",
            " 4) \"user\"",
            " 5) \"version\"",
            " 6) (integer) 2",
        ],
        "RESP2 flattens the view into names and values:\n{output}"
    );
}
