//! The mutation options of the cart commands over real sockets (PROTOCOL.md): `REPLY
//! CART|VERSION|NONE` and `FORMAT JSON` in RESP2 and RESP3, repeated and unknown options as
//! syntax errors, `IFVERSION` checks, and `IDEMPOTENCY` retries that replay the original reply.
//! Every test runs its own cartd.
//!
//! The commands themselves are in `cart_add.rs`, `cart_lines.rs`, `cart_get.rs` and
//! `catalog.rs`.

use cartd_tests::{
    cart_add, cmd, exists, expect, fails, json_reply, lines, mutate, ok, resp2_view_to_json,
    resp3_to_json, stored, view, w, Cartd,
};
use redis::Value;

// ---------------------------------------------------------------------------------------------
// Mutation options
// ---------------------------------------------------------------------------------------------

/// `REPLY VERSION` replies the new version as an integer, `REPLY NONE` replies OK, in RESP2
/// and RESP3, options in any case and order; the change happens either way.
#[tokio::test]
async fn reply_version_and_none() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let key = if resp3 { "cart:3" } else { "cart:2" };
        let mut conn = cartd.client(resp3).await;
        let args = [
            "CART.ADD", key, "mug", "blue", "1", "PRICE", "899", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ];
        assert_eq!(ok(&mut conn, &args).await, Value::Int(1));
        let args = ["cart.add", key, "mug", "blue", "1", "reply", "version"];
        assert_eq!(ok(&mut conn, &args).await, Value::Int(2));
        let args = ["CART.SET", key, "mug", "blue", "3", "REPLY", "NONE"];
        assert_eq!(ok(&mut conn, &args).await, Value::Okay);
        let cart = view(&mut conn, key).await;
        assert_eq!(cart["version"], 3);
        assert_eq!(lines(&cart, "items"), expect(&[("mug", "blue", 3)]));
        let args = [
            "CART.SET", key, "mug", "blue", "4", "REPLY", "CART", "FORMAT", "JSON",
        ];
        let reply = ok(&mut conn, &args).await;
        assert!(matches!(reply, Value::BulkString(_)), "{reply:?}");
        assert_eq!(json_reply(&reply)["version"], 4);
        let args = ["CART.SET", key, "mug", "blue", "5", "REPLY", "CART"];
        let reply = ok(&mut conn, &args).await;
        let cart = if resp3 {
            assert!(matches!(reply, Value::Map(_)), "{reply:?}");
            resp3_to_json(&reply)
        } else {
            assert!(matches!(reply, Value::Array(_)), "{reply:?}");
            resp2_view_to_json(&reply)
        };
        assert_eq!(cart["version"], 5);
    }
}

/// Repeating any option (IFVERSION, IDEMPOTENCY, REPLY, FORMAT, PRICE, FROM, NOVALIDATE) is
/// `ERR syntax error` and changes nothing.
#[tokio::test]
async fn repeated_options_are_syntax_errors() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let base = w("CART.ADD cart:1 sku-1 - 1");
    let repeats: [&[&str]; 5] = [
        &["IFVERSION", "1", "IFVERSION", "1"],
        &["IDEMPOTENCY", "a", "IDEMPOTENCY", "a"],
        &["REPLY", "VERSION", "REPLY", "NONE"],
        &["FORMAT", "JSON", "FORMAT", "RESP"],
        &w("PRICE 1 CURRENCY USD PRICE 2 CURRENCY USD"),
    ];
    let mut requests: Vec<Vec<&str>> = repeats
        .iter()
        .map(|options| base.iter().chain(options.iter()).copied().collect())
        .collect();
    requests.push(w("CART.REMOVE cart:1 x - FROM CART FROM SAVED"));
    requests.push(vec!["CART.GET", "cart:1", "NOVALIDATE", "NOVALIDATE"]);
    let mut accepted = Vec::new();
    for request in &requests {
        match cmd(&mut conn, request).await {
            Err(error) if error == "ERR syntax error" => {}
            Err(error) => accepted.push(format!("{request:?} -> {error}")),
            Ok(_) => accepted.push(format!("{request:?} -> accepted and applied")),
        }
    }
    assert!(
        accepted.is_empty(),
        "repeated options must be `ERR syntax error`:\n{}",
        accepted.join("\n")
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// An unknown option, or an unknown value of a known one, is `ERR syntax error` and changes
/// nothing.
#[tokio::test]
async fn unknown_options_are_syntax_errors() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    for args in [
        &w("CART.ADD cart:1 sku-1 - 1 REPLY EVERYTHING")[..],
        &w("CART.ADD cart:1 sku-1 - 1 FORMAT XML"),
        &w("CART.ADD cart:1 sku-1 - 1 COLOR red"),
        &w("CART.SET cart:1 sku-1 - 2 NOVALIDATE"),
        &w("CART.REMOVE cart:1 sku-1 - FROM WISHLIST"),
        &["CART.GET", "cart:1", "VALIDATE"],
    ] {
        assert_eq!(fails(&mut conn, args).await, "ERR syntax error", "{args:?}");
    }
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// `IFVERSION n` applies the mutation only when the cart is at version n, else `VERSION
/// expected n, cart is at m` and nothing changes; `IFVERSION 0` means the cart must not exist.
#[tokio::test]
async fn ifversion_matches_or_refuses() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let create = w("CART.ADD cart:1 sku-1 - 1 PRICE 100 CURRENCY USD IFVERSION 0");
    assert_eq!(mutate(&mut conn, &create).await["version"], 1);
    let error = fails(&mut conn, &create).await;
    assert_eq!(error, "VERSION expected 0, cart is at 1");
    let args = w("CART.SET cart:1 sku-1 - 2 IFVERSION 1");
    assert_eq!(mutate(&mut conn, &args).await["version"], 2);
    let before = stored(&mut conn, "cart:1").await;
    let args = w("CART.SET cart:1 sku-1 - 3 IFVERSION 1");
    assert_eq!(
        fails(&mut conn, &args).await,
        "VERSION expected 1, cart is at 2"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    let args = w("CART.ADD cart:2 sku-1 - 1 PRICE 100 CURRENCY USD IFVERSION 5");
    assert_eq!(
        fails(&mut conn, &args).await,
        "VERSION expected 5, cart is at 0"
    );
    assert_eq!(exists(&mut conn, "cart:2").await, 0);
}

/// A retry with the same token and arguments replies exactly the original reply (byte for
/// byte) and changes nothing; the command name's case does not matter.
#[tokio::test]
async fn idempotent_retry_replays_the_original_reply() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let first = w(
        "CART.ADD cart:guest:7f3a sock - 2 PRICE 300 CURRENCY USD IDEMPOTENCY req-1 FORMAT JSON",
    );
    let original = ok(&mut conn, &first).await;
    assert_eq!(json_reply(&original)["version"], 1);
    assert_eq!(ok(&mut conn, &first).await, original);
    let mut folded = first.clone();
    folded[0] = "cart.add";
    assert_eq!(ok(&mut conn, &folded).await, original);
    let cart = view(&mut conn, "cart:guest:7f3a").await;
    assert_eq!(cart["version"], 1);
    assert_eq!(lines(&cart, "items"), expect(&[("sock", "-", 2)]));
    let version = w("CART.ADD cart:guest:7f3a sock - 1 IDEMPOTENCY req-2 REPLY VERSION");
    assert_eq!(ok(&mut conn, &version).await, Value::Int(2));
    assert_eq!(ok(&mut conn, &version).await, Value::Int(2));
    assert_eq!(view(&mut conn, "cart:guest:7f3a").await["version"], 2);
}

/// The same token with different arguments is `IDEMPOTENCY token reused with different
/// arguments` and changes nothing; the same token on another cart is another request.
#[tokio::test]
async fn idempotency_token_reused_with_other_arguments_is_refused() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let first =
        w("CART.ADD cart:1 sock - 2 PRICE 300 CURRENCY USD IDEMPOTENCY req-1 REPLY VERSION");
    let other_qty =
        w("CART.ADD cart:1 sock - 3 PRICE 300 CURRENCY USD IDEMPOTENCY req-1 REPLY VERSION");
    assert_eq!(ok(&mut conn, &first).await, Value::Int(1));
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &other_qty).await,
        "IDEMPOTENCY token reused with different arguments"
    );
    let other_option =
        w("CART.ADD cart:1 sock - 2 PRICE 300 CURRENCY USD IDEMPOTENCY req-1 REPLY NONE");
    assert!(fails(&mut conn, &other_option)
        .await
        .starts_with("IDEMPOTENCY "));
    let other_command = w("CART.SET cart:1 sock - 2 IDEMPOTENCY req-1 REPLY VERSION");
    let error = fails(&mut conn, &other_command).await;
    assert!(error.starts_with("IDEMPOTENCY "), "{error}");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    let other_cart =
        w("CART.ADD cart:2 sock - 3 PRICE 300 CURRENCY USD IDEMPOTENCY req-1 REPLY VERSION");
    assert_eq!(ok(&mut conn, &other_cart).await, Value::Int(1));
    assert_eq!(
        lines(&view(&mut conn, "cart:2").await, "items"),
        expect(&[("sock", "-", 3)])
    );
}

/// Only successful replies are remembered: a request that failed runs again on retry.
#[tokio::test]
async fn idempotency_forgets_failed_requests() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let args = w("CART.ADD cart:1 sku-1 - 1 IDEMPOTENCY req-1 REPLY VERSION");
    assert!(fails(&mut conn, &args).await.starts_with("NOPRICE "));
    ok(&mut conn, &w("CATALOG.SET sku-1 - 100 USD")).await;
    assert_eq!(ok(&mut conn, &args).await, Value::Int(1));
    assert_eq!(ok(&mut conn, &args).await, Value::Int(1));
    assert_eq!(view(&mut conn, "cart:1").await["items"][0]["qty"], 1);
}

/// An idempotent retry of a request that carried IFVERSION replays the original reply instead
/// of failing on the version the request itself moved on.
#[tokio::test]
async fn idempotent_retry_replays_even_past_its_ifversion() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let args = w("CART.SET cart:1 sku-1 - 4 IFVERSION 1 IDEMPOTENCY t-1 REPLY VERSION");
    assert_eq!(ok(&mut conn, &args).await, Value::Int(2));
    assert_eq!(ok(&mut conn, &args).await, Value::Int(2));
    assert_eq!(view(&mut conn, "cart:1").await["version"], 2);
}
