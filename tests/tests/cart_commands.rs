//! The cart commands over real sockets: CART.ADD, CART.SET, CART.REMOVE, CART.CLEAR, CART.SAVE,
//! CART.RESTORE and CART.GET, the mutation options (REPLY, FORMAT, IFVERSION, IDEMPOTENCY), the
//! three encodings of the cart view, the catalog commands, and a few of them through
//! `redis-cli`. PROTOCOL.md is the specification; every test runs its own cartd.
//!
//! Merging and price/stock validation are in `cart_merge_validation.rs`.

use cartd_tests::{
    cmd, fails, int, json_reply, ok, resp2_view_to_json, resp3_to_json, view, Cartd,
};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Value as Json};

/// Small per-cart limits, so the limits are reachable in a few commands.
const SMALL: &str =
    "[carts]\nmax_lines_per_cart = 3\nmax_qty_per_line = 5\nmax_saved_per_cart = 2\n";

/// `user_ttl_s` by default (30 days), in milliseconds.
const USER_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// `guest_ttl_s` by default (24 hours), in milliseconds.
const GUEST_TTL_MS: i64 = 24 * 3600 * 1000;

/// A command's words, split on spaces: `w("CART.GET cart:1 NOVALIDATE")`.
fn w(words: &str) -> Vec<&str> {
    words.split_whitespace().collect()
}

/// Runs a mutation with `FORMAT JSON` appended; returns the cart view it replies.
async fn mutate(conn: &mut MultiplexedConnection, args: &[&str]) -> Json {
    let mut full = args.to_vec();
    full.extend(["FORMAT", "JSON"]);
    json_reply(&ok(conn, &full).await)
}

/// `CART.ADD key product variant qty PRICE price CURRENCY USD`; returns the view.
async fn add(
    conn: &mut MultiplexedConnection,
    key: &str,
    product: &str,
    qty: &str,
    price: &str,
) -> Json {
    mutate(
        conn,
        &[
            "CART.ADD", key, product, "-", qty, "PRICE", price, "CURRENCY", "USD",
        ],
    )
    .await
}

/// The cart as stored (fetched with NOVALIDATE), without `ttl_ms`, which moves with time.
async fn stored(conn: &mut MultiplexedConnection, key: &str) -> Json {
    without_ttl(view(conn, key).await)
}

/// A view without its `ttl_ms`.
fn without_ttl(mut view: Json) -> Json {
    if let Some(fields) = view.as_object_mut() {
        fields.remove("ttl_ms");
    }
    view
}

/// The `(product, variant, qty)` of each line in one of a view's lists, in order.
fn lines(view: &Json, list: &str) -> Vec<(String, String, i64)> {
    view[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is an array in {view}"))
        .iter()
        .map(|line| {
            (
                line["product"].as_str().expect("product").to_string(),
                line["variant"].as_str().expect("variant").to_string(),
                line["qty"].as_i64().expect("qty"),
            )
        })
        .collect()
}

/// Shorthand for an expected line list.
fn expect(lines: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    lines
        .iter()
        .map(|(product, variant, qty)| (product.to_string(), variant.to_string(), *qty))
        .collect()
}

/// The line of `product` (variant `-`) in the active items.
fn item<'a>(view: &'a Json, product: &str) -> &'a Json {
    view["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .find(|line| line["product"] == product)
        .unwrap_or_else(|| panic!("no line {product} in {view}"))
}

/// A cart with every kind of line: `mug` repriced (price_changed), `sock`, `hat` saved for
/// later and `pen` out of stock (moved to unavailable by a validating CART.GET).
async fn build_rich_cart(conn: &mut MultiplexedConnection, key: &str) {
    add(conn, key, "mug", "1", "1299").await;
    add(conn, key, "mug", "1", "1199").await;
    add(conn, key, "sock", "3", "300").await;
    add(conn, key, "hat", "1", "2500").await;
    add(conn, key, "pen", "1", "150").await;
    ok(conn, &["CART.SAVE", key, "hat", "-"]).await;
    ok(conn, &w("STOCK.SET pen - 0")).await;
    ok(conn, &["CART.GET", key]).await;
}

async fn exists(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    int(&ok(conn, &["EXISTS", key]).await)
}

// ---------------------------------------------------------------------------------------------
// CART.ADD
// ---------------------------------------------------------------------------------------------

/// The first CART.ADD creates a user cart at version 1 with the line, its totals, the currency
/// upper-cased, the user TTL, and every other field of the view in its documented shape.
#[tokio::test]
async fn add_creates_a_user_cart_at_version_one() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let args = w("CART.ADD cart:42 mug blue 2 PRICE 899 CURRENCY usd");
    let cart = mutate(&mut conn, &args).await;
    assert_eq!(cart["id"], "cart:42");
    assert_eq!(cart["kind"], "user");
    assert_eq!(cart["version"], 1);
    assert_eq!(cart["status"], "active");
    assert_eq!(cart["currency"], "USD");
    assert_eq!(cart["ttl_ms"], USER_TTL_MS);
    assert_eq!(cart["created_at_ms"], cart["updated_at_ms"]);
    let line = &cart["items"][0];
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(line["product"], "mug");
    assert_eq!(line["variant"], "blue");
    assert_eq!(line["qty"], 2);
    assert_eq!(line["unit_price"], 899);
    assert_eq!(line["price_at_add"], 899);
    assert_eq!(line["price_changed"], false);
    assert_eq!(line["line_total"], 1798);
    assert_eq!(line["added_at_ms"], cart["created_at_ms"]);
    for empty in w("unavailable saved promo_codes gift_cards discounts") {
        assert_eq!(cart[empty], json!([]), "{empty}");
    }
    assert_eq!(
        cart["totals"],
        json!({"item_count": 2, "subtotal": 1798, "discount": 0, "gift_card": 0, "total": 1798})
    );
    assert_eq!(cart["validation"], "skipped");
    assert_eq!(cart["validated_at_ms"], Json::Null);
    assert_eq!(stored(&mut conn, "cart:42").await, without_ttl(cart));
}

/// A key starting with `cart:guest:` makes a guest cart, which lives the guest TTL.
#[tokio::test]
async fn add_to_a_guest_key_makes_a_guest_cart() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let cart = add(&mut conn, "cart:guest:7f3a", "sock", "2", "300").await;
    assert_eq!(cart["kind"], "guest");
    assert_eq!(cart["ttl_ms"], GUEST_TTL_MS);
    let user = add(&mut conn, "cart:guest", "sock", "2", "300").await;
    assert_eq!(
        user["kind"], "user",
        "the prefix is `cart:guest:`, colon included"
    );
}

/// Adding to an existing line adds the quantities and moves the version on by one; another
/// product becomes a second line after the first; totals follow.
#[tokio::test]
async fn add_to_an_existing_line_adds_the_quantity() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "2", "500").await;
    let cart = add(&mut conn, "cart:1", "sku-1", "3", "500").await;
    assert_eq!(cart["version"], 2);
    assert_eq!(lines(&cart, "items"), expect(&[("sku-1", "-", 5)]));
    assert_eq!(item(&cart, "sku-1")["line_total"], 2500);
    let cart = add(&mut conn, "cart:1", "sku-2", "1", "120").await;
    assert_eq!(cart["version"], 3);
    assert_eq!(
        lines(&cart, "items"),
        expect(&[("sku-1", "-", 5), ("sku-2", "-", 1)])
    );
    assert_eq!(cart["totals"]["item_count"], 6);
    assert_eq!(cart["totals"]["subtotal"], 2620);
    assert_eq!(cart["totals"]["total"], 2620);
    let variant = mutate(
        &mut conn,
        &w("CART.ADD cart:1 sku-1 red 1 PRICE 500 CURRENCY USD"),
    )
    .await;
    assert_eq!(
        lines(&variant, "items"),
        expect(&[("sku-1", "-", 5), ("sku-2", "-", 1), ("sku-1", "red", 1)]),
        "another variant of the same product is another line"
    );
}

/// A PRICE on an existing line updates its unit_price; price_at_add stays, price_changed
/// turns true; an add without PRICE and without a catalog price keeps the line's price.
#[tokio::test]
async fn add_with_price_reprices_an_existing_line() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "1", "1299").await;
    let cart = add(&mut conn, "cart:1", "sku-1", "1", "1199").await;
    let line = item(&cart, "sku-1");
    assert_eq!(line["qty"], 2);
    assert_eq!(line["unit_price"], 1199);
    assert_eq!(line["price_at_add"], 1299);
    assert_eq!(line["price_changed"], true);
    assert_eq!(line["line_total"], 2398);
    let cart = mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 1")).await;
    let line = item(&cart, "sku-1");
    assert_eq!(line["qty"], 3);
    assert_eq!(
        line["unit_price"], 1199,
        "no price anywhere: the line keeps its own"
    );
    assert_eq!(cart["version"], 3);
}

/// Without PRICE, a new line (and a new cart) takes the catalog's price and currency; PRICE
/// wins over the catalog; and a catalog price wins over an existing line's own price.
#[tokio::test]
async fn add_takes_the_catalog_price_when_no_price_is_given() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(&mut conn, &w("CATALOG.SET sku-1 - 1299 EUR")).await;
    ok(&mut conn, &w("CATALOG.SET sku-2 - 500 EUR")).await;
    let cart = mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 2")).await;
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(item(&cart, "sku-1")["unit_price"], 1299);
    assert_eq!(item(&cart, "sku-1")["price_at_add"], 1299);
    let args = w("CART.ADD cart:1 sku-2 - 1 PRICE 450 CURRENCY EUR");
    let cart = mutate(&mut conn, &args).await;
    assert_eq!(item(&cart, "sku-2")["unit_price"], 450, "PRICE wins");
    ok(&mut conn, &w("CATALOG.SET sku-1 - 1199 EUR")).await;
    let cart = mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 1")).await;
    let line = item(&cart, "sku-1");
    assert_eq!(line["qty"], 3);
    assert_eq!(
        line["unit_price"], 1199,
        "the catalog's price before the line's own"
    );
    assert_eq!(line["price_at_add"], 1299);
    assert_eq!(line["price_changed"], true);
}

/// A new line with no PRICE and no catalog price is `NOPRICE`: no cart is created, and an
/// existing cart stays as it was.
#[tokio::test]
async fn add_without_any_price_is_noprice() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-1 - 1")).await;
    assert!(error.starts_with("NOPRICE "), "{error}");
    assert_eq!(exists(&mut conn, "cart:1").await, 0);
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-2 - 1")).await;
    assert!(error.starts_with("NOPRICE "), "{error}");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// A catalog price in another currency than the cart's is ignored: a new line without PRICE
/// is `NOPRICE`, and an existing line keeps its price.
#[tokio::test]
async fn add_ignores_a_catalog_price_in_another_currency() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    ok(&mut conn, &w("CATALOG.SET sku-1 - 90 EUR")).await;
    ok(&mut conn, &w("CATALOG.SET sku-2 - 80 EUR")).await;
    let cart = mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 1")).await;
    assert_eq!(item(&cart, "sku-1")["unit_price"], 100);
    assert_eq!(cart["currency"], "USD");
    let before = stored(&mut conn, "cart:1").await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-2 - 1")).await;
    assert!(error.starts_with("NOPRICE "), "{error}");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// A cart whose only line is saved for later still has lines, so it keeps its currency: a
/// catalog price in another currency is ignored (`NOPRICE`), as for any other cart.
#[tokio::test]
async fn add_ignores_a_foreign_catalog_price_when_only_saved_lines_remain() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "sku-1", "-"]).await;
    ok(&mut conn, &w("CATALOG.SET sku-2 - 80 EUR")).await;
    let before = stored(&mut conn, "cart:1").await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-2 - 1")).await;
    assert!(error.starts_with("NOPRICE "), "{error}");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// A PRICE in another currency is refused with `ERR cart is priced in USD, the price is in
/// EUR` and changes nothing, also when the cart's only line is saved for later; a cart with no
/// lines at all takes the new currency.
#[tokio::test]
async fn add_refuses_a_price_in_another_currency() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let args = w("CART.ADD cart:1 sku-2 - 1 PRICE 100 CURRENCY eur");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "ERR cart is priced in USD, the price is in EUR");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    ok(&mut conn, &["CART.CLEAR", "cart:1"]).await;
    let cart = mutate(&mut conn, &args).await;
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(lines(&cart, "items"), expect(&[("sku-2", "-", 1)]));

    add(&mut conn, "cart:2", "sku-1", "1", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:2", "sku-1", "-"]).await;
    let before = stored(&mut conn, "cart:2").await;
    let args = w("CART.ADD cart:2 sku-2 - 1 PRICE 100 CURRENCY EUR");
    assert_eq!(
        fails(&mut conn, &args).await,
        "ERR cart is priced in USD, the price is in EUR",
        "a saved line still counts as a line"
    );
    assert_eq!(stored(&mut conn, "cart:2").await, before);
}

/// A bad PRICE or CURRENCY (negative or over 10^12, PRICE without CURRENCY, a code that is not
/// three letters) is an `ERR` and changes nothing; 10^12 itself is a valid price.
#[tokio::test]
async fn add_refuses_bad_prices_and_currencies() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let base = w("CART.ADD cart:1 sku-1 - 1");
    let bad: [&[&str]; 6] = [
        &["PRICE", "-1", "CURRENCY", "USD"],
        &["PRICE", "1000000000001", "CURRENCY", "USD"],
        &["PRICE", "1.5", "CURRENCY", "USD"],
        &["PRICE", "100", "USD"],
        &["PRICE", "100", "CURRENCY", "US"],
        &["PRICE", "100", "CURRENCY", "U$D"],
    ];
    for options in bad {
        let args: Vec<&str> = base.iter().chain(options).copied().collect();
        let error = fails(&mut conn, &args).await;
        assert!(error.starts_with("ERR "), "{args:?}: {error}");
    }
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    let largest = w("CART.ADD cart:1 sku-1 - 1 PRICE 1000000000000 CURRENCY USD");
    let cart = mutate(&mut conn, &largest).await;
    assert_eq!(item(&cart, "sku-1")["unit_price"], 1_000_000_000_000_i64);
}

/// A quantity that is 0, negative or not an integer is an `ERR`; no cart is created and an
/// existing one is unchanged.
#[tokio::test]
async fn add_refuses_bad_quantities() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for bad in w("0 -1 1.5 two +1") {
        let args = [
            "CART.ADD", "cart:new", "sku-1", "-", bad, "PRICE", "100", "CURRENCY", "USD",
        ];
        let error = fails(&mut conn, &args).await;
        assert!(error.starts_with("ERR "), "{bad}: {error}");
    }
    assert_eq!(exists(&mut conn, "cart:new").await, 0);
    add(&mut conn, "cart:1", "sku-1", "2", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-1 - 0")).await;
    assert_eq!(error, "ERR quantity must be at least 1, got 0");
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-1 - 1.5")).await;
    assert_eq!(error, "ERR value is not an integer or out of range");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// Keys are 1..=256 bytes: 256 works, 257 is `LIMIT` and creates nothing; a product id over
/// 64 bytes is `LIMIT` too.
#[tokio::test]
async fn add_refuses_a_key_over_256_bytes() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let longest = format!("cart:{}", "k".repeat(251));
    assert_eq!(longest.len(), 256);
    let cart = add(&mut conn, &longest, "sku-1", "1", "100").await;
    assert_eq!(cart["id"], longest.as_str());
    let too_long = format!("{longest}k");
    let args = [
        "CART.ADD", &too_long, "sku-1", "-", "1", "PRICE", "100", "CURRENCY", "USD",
    ];
    let error = fails(&mut conn, &args).await;
    assert!(error.starts_with("LIMIT "), "{error}");
    assert_eq!(exists(&mut conn, &too_long).await, 0);
    let product = "p".repeat(65);
    let args = [
        "CART.ADD", "cart:1", &product, "-", "1", "PRICE", "100", "CURRENCY", "USD",
    ];
    let error = fails(&mut conn, &args).await;
    assert!(error.starts_with("LIMIT "), "{error}");
    assert_eq!(exists(&mut conn, "cart:1").await, 0);
}

/// `max_qty_per_line` bounds the resulting quantity of a line and `max_lines_per_cart` the
/// number of lines; both are `LIMIT` and leave the cart unchanged.
#[tokio::test]
async fn add_respects_the_per_cart_limits() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    let args = w("CART.ADD cart:new a - 6 PRICE 100 CURRENCY USD");
    let error = fails(&mut conn, &args).await;
    assert!(error.starts_with("LIMIT "), "{error}");
    assert_eq!(exists(&mut conn, "cart:new").await, 0);

    add(&mut conn, "cart:1", "a", "5", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let args = w("CART.ADD cart:1 a - 1 PRICE 100 CURRENCY USD");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "LIMIT quantity 6 is over max_qty_per_line 5");
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    add(&mut conn, "cart:1", "b", "1", "100").await;
    add(&mut conn, "cart:1", "c", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(before["version"], 3);
    let args = w("CART.ADD cart:1 d - 1 PRICE 100 CURRENCY USD");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "LIMIT cart has 3 lines, max_lines_per_cart is 3");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    let cart = add(&mut conn, "cart:1", "c", "4", "100").await;
    assert_eq!(
        item(&cart, "c")["qty"],
        5,
        "a full cart still takes more of a line it has"
    );
}

/// The catalog's MAXQTY bounds a line's quantity (`LIMIT`, cart unchanged); `MAXQTY 0`
/// removes the limit.
#[tokio::test]
async fn add_respects_the_catalog_maxqty() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let set = w("CATALOG.SET sku-1 - 899 USD MAXQTY 3");
    ok(&mut conn, &set).await;
    mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 2")).await;
    let before = stored(&mut conn, "cart:1").await;
    let error = fails(&mut conn, &w("CART.ADD cart:1 sku-1 - 2")).await;
    assert_eq!(
        error,
        "LIMIT quantity 4 is over this product's limit of 3 per cart"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    ok(&mut conn, &w("CATALOG.SET sku-1 - 899 USD MAXQTY 0")).await;
    let cart = mutate(&mut conn, &w("CART.ADD cart:1 sku-1 - 2")).await;
    assert_eq!(item(&cart, "sku-1")["qty"], 4);
    assert_eq!(cart["version"], 2);
}

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
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let args = w("CART.SET cart:1 sku-1 - 4 IFVERSION 1 IDEMPOTENCY t-1 REPLY VERSION");
    assert_eq!(ok(&mut conn, &args).await, Value::Int(2));
    assert_eq!(ok(&mut conn, &args).await, Value::Int(2));
    assert_eq!(view(&mut conn, "cart:1").await["version"], 2);
}

// ---------------------------------------------------------------------------------------------
// CART.SET, CART.REMOVE, CART.CLEAR
// ---------------------------------------------------------------------------------------------

/// CART.SET sets the quantity (version + 1); the quantity the line already has keeps the
/// version; 0 removes the line (version + 1) and the empty cart stays.
#[tokio::test]
async fn set_changes_the_quantity_and_zero_removes_the_line() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "sku-1", "2", "999").await;
    add(&mut conn, "cart:1", "sku-2", "1", "100").await;
    let cart = mutate(&mut conn, &w("CART.SET cart:1 sku-1 - 4")).await;
    assert_eq!(cart["version"], 3);
    assert_eq!(item(&cart, "sku-1")["qty"], 4);
    assert_eq!(item(&cart, "sku-1")["line_total"], 3996);
    let same = mutate(&mut conn, &w("CART.SET cart:1 sku-1 - 4")).await;
    assert_eq!(
        same["version"], 3,
        "an unchanged quantity keeps the version"
    );
    assert_eq!(same["updated_at_ms"], cart["updated_at_ms"]);
    let cart = mutate(&mut conn, &w("CART.SET cart:1 sku-1 - 0")).await;
    assert_eq!(cart["version"], 4);
    assert_eq!(lines(&cart, "items"), expect(&[("sku-2", "-", 1)]));
    let cart = mutate(&mut conn, &w("CART.SET cart:1 sku-2 - 0")).await;
    assert_eq!(cart["version"], 5);
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["totals"]["total"], 0);
    assert_eq!(exists(&mut conn, "cart:1").await, 1);
}

/// CART.SET errors: `NOCART` for a missing cart, `NOITEM` for a line the cart does not hold
/// (a saved line included), `LIMIT` over max_qty_per_line or MAXQTY, `ERR` for a negative
/// quantity; each leaves the cart as it was.
#[tokio::test]
async fn set_errors_leave_the_cart_unchanged() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    let error = fails(&mut conn, &w("CART.SET cart:none sku-1 - 1")).await;
    assert_eq!(error, "NOCART no such cart");
    assert_eq!(exists(&mut conn, "cart:none").await, 0);
    add(&mut conn, "cart:1", "sku-1", "2", "100").await;
    add(&mut conn, "cart:1", "saved", "1", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "saved", "-"]).await;
    ok(&mut conn, &w("CATALOG.SET capped - 100 USD MAXQTY 2")).await;
    add(&mut conn, "cart:1", "capped", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    for (args, code) in [
        (
            &w("CART.SET cart:1 other - 1")[..],
            "NOITEM no such line in the cart",
        ),
        (
            &w("CART.SET cart:1 never-seen-id x 1"),
            "NOITEM no such line in the cart",
        ),
        (
            &w("CART.SET cart:1 saved - 1"),
            "NOITEM no such line in the cart",
        ),
        (
            &w("CART.SET cart:1 sku-1 - 6"),
            "LIMIT quantity 6 is over max_qty_per_line 5",
        ),
        (
            &w("CART.SET cart:1 capped - 3"),
            "LIMIT quantity 3 is over this product's limit of 2 per cart",
        ),
        (
            &w("CART.SET cart:1 sku-1 - -1"),
            "ERR quantity must be at least 0, got -1",
        ),
    ] {
        assert_eq!(fails(&mut conn, args).await, code, "{args:?}");
    }
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// CART.REMOVE takes a line out of the cart, saved or unavailable list (version + 1); an
/// absent line is a no-op that keeps the version and still replies the cart; a missing cart
/// is `NOCART`.
#[tokio::test]
async fn remove_from_each_list() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let error = fails(&mut conn, &["CART.REMOVE", "cart:none", "a", "-"]).await;
    assert_eq!(error, "NOCART no such cart");
    for product in ["a", "b", "c", "d"] {
        add(&mut conn, "cart:1", product, "1", "100").await;
    }
    ok(&mut conn, &["CART.SAVE", "cart:1", "b", "-"]).await;
    ok(&mut conn, &["STOCK.SET", "c", "-", "0"]).await;
    let validated = json_reply(&ok(&mut conn, &["CART.GET", "cart:1", "FORMAT", "JSON"]).await);
    assert_eq!(lines(&validated, "unavailable"), expect(&[("c", "-", 1)]));
    let version = validated["version"].as_i64().expect("version");

    let cart = mutate(&mut conn, &["CART.REMOVE", "cart:1", "a", "-"]).await;
    assert_eq!(cart["version"], version + 1);
    assert_eq!(lines(&cart, "items"), expect(&[("d", "-", 1)]));
    let same = mutate(&mut conn, &["CART.REMOVE", "cart:1", "a", "-"]).await;
    assert_eq!(
        same["version"],
        version + 1,
        "removing an absent line keeps the version"
    );
    assert_eq!(without_ttl(same), without_ttl(cart));
    let args = w("CART.REMOVE cart:1 b - FROM CART");
    let same = mutate(&mut conn, &args).await;
    assert_eq!(same["version"], version + 1, "b is saved, not in the cart");
    assert_eq!(lines(&same, "saved"), expect(&[("b", "-", 1)]));

    let cart = mutate(&mut conn, &w("CART.REMOVE cart:1 b - FROM SAVED")).await;
    assert_eq!(cart["version"], version + 2);
    assert_eq!(cart["saved"], json!([]));
    let args = w("CART.REMOVE cart:1 c - from unavailable");
    let cart = mutate(&mut conn, &args).await;
    assert_eq!(cart["version"], version + 3);
    assert_eq!(cart["unavailable"], json!([]));
    assert_eq!(lines(&cart, "items"), expect(&[("d", "-", 1)]));
    let args = w("CART.REMOVE cart:1 never-seen - REPLY VERSION");
    assert_eq!(ok(&mut conn, &args).await, Value::Int(version + 3));
}

/// CART.CLEAR removes every active line (version + 1) but keeps saved and unavailable lines;
/// clearing an empty cart keeps the version; a missing cart is `NOCART`.
#[tokio::test]
async fn clear_keeps_saved_and_unavailable_lines() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert_eq!(
        fails(&mut conn, &["CART.CLEAR", "cart:none"]).await,
        "NOCART no such cart"
    );
    for product in ["a", "b", "c", "d"] {
        add(&mut conn, "cart:1", product, "2", "100").await;
    }
    let saved = mutate(&mut conn, &["CART.SAVE", "cart:1", "b", "-"]).await;
    assert_eq!(saved["version"], 5);
    ok(&mut conn, &["STOCK.SET", "d", "-", "0"]).await;
    let validated = json_reply(&ok(&mut conn, &["CART.GET", "cart:1", "FORMAT", "JSON"]).await);
    assert_eq!(validated["version"], 6);
    assert_eq!(lines(&validated, "unavailable"), expect(&[("d", "-", 2)]));
    let cart = mutate(&mut conn, &["CART.CLEAR", "cart:1"]).await;
    assert_eq!(cart["version"], 7);
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["totals"]["item_count"], 0);
    assert_eq!(cart["totals"]["subtotal"], 0);
    assert_eq!(lines(&cart, "saved"), expect(&[("b", "-", 2)]));
    assert_eq!(lines(&cart, "unavailable"), expect(&[("d", "-", 2)]));
    assert_eq!(cart["currency"], "USD");
    let again = mutate(&mut conn, &["CART.CLEAR", "cart:1"]).await;
    assert_eq!(
        again["version"], 7,
        "clearing an empty cart changes nothing"
    );
    assert_eq!(lines(&again, "saved"), expect(&[("b", "-", 2)]));
}

// ---------------------------------------------------------------------------------------------
// CART.SAVE and CART.RESTORE
// ---------------------------------------------------------------------------------------------

/// CART.SAVE moves a line to saved-for-later (product, variant, qty, saved_at_ms) and
/// CART.RESTORE moves it back with its prices; each moves the version on by one.
#[tokio::test]
async fn save_and_restore_move_a_line_between_lists() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "mug", "1", "1299").await;
    let priced = add(&mut conn, "cart:1", "mug", "2", "1199").await;
    add(&mut conn, "cart:1", "sock", "1", "300").await;
    let cart = mutate(&mut conn, &["CART.SAVE", "cart:1", "mug", "-"]).await;
    assert_eq!(cart["version"], 4);
    assert_eq!(lines(&cart, "items"), expect(&[("sock", "-", 1)]));
    let saved = &cart["saved"][0];
    assert_eq!(saved["product"], "mug");
    assert_eq!(saved["variant"], "-");
    assert_eq!(saved["qty"], 3);
    assert_eq!(saved["saved_at_ms"], cart["updated_at_ms"]);
    assert_eq!(
        saved.as_object().map(|fields| fields.len()),
        Some(4),
        "a saved line has product, variant, qty, saved_at_ms: {saved}"
    );
    assert_eq!(cart["totals"]["subtotal"], 300);

    let cart = mutate(&mut conn, &["CART.RESTORE", "cart:1", "mug", "-"]).await;
    assert_eq!(cart["version"], 5);
    assert_eq!(cart["saved"], json!([]));
    assert_eq!(
        lines(&cart, "items"),
        expect(&[("sock", "-", 1), ("mug", "-", 3)])
    );
    let mug = item(&cart, "mug");
    assert_eq!(mug["unit_price"], 1199);
    assert_eq!(mug["price_at_add"], 1299);
    assert_eq!(mug["added_at_ms"], item(&priced, "mug")["added_at_ms"]);
    assert_eq!(cart["totals"]["subtotal"], 300 + 3 * 1199);
}

/// CART.SAVE and CART.RESTORE errors: `NOCART` for a missing cart, `NOITEM` for a line that
/// is not there to move; the cart stays as it was.
#[tokio::test]
async fn save_and_restore_of_absent_lines_fail() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for command in ["CART.SAVE", "CART.RESTORE"] {
        let error = fails(&mut conn, &[command, "cart:none", "a", "-"]).await;
        assert_eq!(error, "NOCART no such cart", "{command}");
    }
    add(&mut conn, "cart:1", "a", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    for args in [
        ["CART.SAVE", "cart:1", "b", "-"],
        ["CART.SAVE", "cart:1", "never-seen", "-"],
        ["CART.RESTORE", "cart:1", "a", "-"],
        ["CART.RESTORE", "cart:1", "never-seen", "-"],
    ] {
        let error = fails(&mut conn, &args).await;
        assert_eq!(error, "NOITEM no such line in the cart", "{args:?}");
    }
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}

/// At most `max_saved_per_cart` lines are saved (`LIMIT`, cart unchanged); saving a variant
/// that is already saved adds the quantities, capped at `max_qty_per_line`.
#[tokio::test]
async fn save_respects_max_saved_per_cart() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    for product in ["a", "b", "c"] {
        add(&mut conn, "cart:1", product, "4", "100").await;
    }
    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "b", "-"]).await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.SAVE", "cart:1", "c", "-"]).await,
        "LIMIT cart has 2 saved lines, max_saved_per_cart is 2"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    add(&mut conn, "cart:1", "a", "3", "100").await;
    let cart = mutate(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    assert_eq!(
        lines(&cart, "saved"),
        expect(&[("a", "-", 5), ("b", "-", 4)]),
        "4 + 3 saved, capped at 5"
    );
    assert_eq!(lines(&cart, "items"), expect(&[("c", "-", 4)]));
}

/// CART.RESTORE of a line the cart has already adds the quantities; over max_qty_per_line,
/// or a new line into a full cart, it is `LIMIT` and the cart stays as it was.
#[tokio::test]
async fn restore_adds_to_an_existing_line_within_the_limits() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:1", "a", "2", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    add(&mut conn, "cart:1", "a", "2", "100").await;
    let cart = mutate(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await;
    assert_eq!(lines(&cart, "items"), expect(&[("a", "-", 4)]));
    assert_eq!(cart["saved"], json!([]));

    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    add(&mut conn, "cart:1", "a", "2", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await,
        "LIMIT quantity 6 is over max_qty_per_line 5"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    ok(&mut conn, &w("CART.SET cart:1 a - 0")).await;
    for product in ["x", "y", "z"] {
        add(&mut conn, "cart:1", product, "1", "100").await;
    }
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await,
        "LIMIT cart has 3 lines, max_lines_per_cart is 3"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);
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
    add(&mut conn, "cart:1", "sku-1", "2", "1299").await;
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

    let changed = add(&mut conn, "cart:1", "sku-2", "1", "100").await;
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
                              ttl_ms items unavailable saved promo_codes gift_cards discounts \
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
    let line_order: Vec<Json> =
        w("product variant qty unit_price price_at_add price_changed line_total added_at_ms")
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
/// booleans as `:0`/`:1` and null as `$-1`; RESP3 sends a map (`%17`), booleans as `#f`/`#t`
/// and null as `_`.
#[tokio::test]
async fn view_wire_bytes_in_resp2_and_resp3() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:42", "mug", "1", "899").await;
    let mut raw = cartd.raw().await;
    let get = ["CART.GET", "cart:42", "NOVALIDATE"];
    let resp2 = String::from_utf8(raw.call(&get).await).expect("UTF-8");
    let head = "*34\r\n$2\r\nid\r\n$7\r\ncart:42\r\n$4\r\nkind\r\n$4\r\nuser\r\n\
                $7\r\nversion\r\n:1\r\n$6\r\nstatus\r\n$6\r\nactive\r\n";
    assert!(resp2.starts_with(head), "{resp2:?}");
    let items = "$5\r\nitems\r\n*1\r\n*16\r\n$7\r\nproduct\r\n$3\r\nmug\r\n";
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
        resp3.starts_with("%17\r\n$2\r\nid\r\n$7\r\ncart:42\r\n"),
        "{resp3:?}"
    );
    let items = "$5\r\nitems\r\n*1\r\n%8\r\n$7\r\nproduct\r\n$3\r\nmug\r\n";
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
