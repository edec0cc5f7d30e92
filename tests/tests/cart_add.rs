//! CART.ADD over real sockets: creating user and guest carts, adding to and repricing lines,
//! catalog prices and currencies, and the refusals (no price, another currency, bad prices,
//! quantities and keys, the per-cart and catalog limits), each leaving the cart as it was.
//! PROTOCOL.md is the specification; every test runs its own cartd.
//!
//! The other cart commands are in `cart_options.rs` (REPLY, FORMAT, IFVERSION, IDEMPOTENCY),
//! `cart_lines.rs` (CART.SET, CART.REMOVE, CART.CLEAR, CART.SAVE, CART.RESTORE), `cart_get.rs`
//! (CART.GET and the view's encodings) and `catalog.rs`; merging and price/stock validation in
//! `cart_merge_validation.rs`.

use cartd_tests::{
    cart_add, exists, expect, fails, item, lines, mutate, ok, stored, w, without_ttl, Cartd, SMALL,
};
use serde_json::{json, Value as Json};

/// `user_ttl_s` by default (30 days), in milliseconds.
const USER_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// `guest_ttl_s` by default (24 hours), in milliseconds.
const GUEST_TTL_MS: i64 = 24 * 3600 * 1000;

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
    let cart = cart_add(&mut conn, "cart:guest:7f3a", "sock", "2", "300").await;
    assert_eq!(cart["kind"], "guest");
    assert_eq!(cart["ttl_ms"], GUEST_TTL_MS);
    let user = cart_add(&mut conn, "cart:guest", "sock", "2", "300").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "2", "500").await;
    let cart = cart_add(&mut conn, "cart:1", "sku-1", "3", "500").await;
    assert_eq!(cart["version"], 2);
    assert_eq!(lines(&cart, "items"), expect(&[("sku-1", "-", 5)]));
    assert_eq!(item(&cart, "sku-1")["line_total"], 2500);
    let cart = cart_add(&mut conn, "cart:1", "sku-2", "1", "120").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "1299").await;
    let cart = cart_add(&mut conn, "cart:1", "sku-1", "1", "1199").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let args = w("CART.ADD cart:1 sku-2 - 1 PRICE 100 CURRENCY eur");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "ERR cart is priced in USD, the price is in EUR");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    ok(&mut conn, &["CART.CLEAR", "cart:1"]).await;
    let cart = mutate(&mut conn, &args).await;
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(lines(&cart, "items"), expect(&[("sku-2", "-", 1)]));

    cart_add(&mut conn, "cart:2", "sku-1", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "2", "100").await;
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
    let cart = cart_add(&mut conn, &longest, "sku-1", "1", "100").await;
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

    cart_add(&mut conn, "cart:1", "a", "5", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    let args = w("CART.ADD cart:1 a - 1 PRICE 100 CURRENCY USD");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "LIMIT quantity 6 is over max_qty_per_line 5");
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    cart_add(&mut conn, "cart:1", "b", "1", "100").await;
    cart_add(&mut conn, "cart:1", "c", "1", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(before["version"], 3);
    let args = w("CART.ADD cart:1 d - 1 PRICE 100 CURRENCY USD");
    let error = fails(&mut conn, &args).await;
    assert_eq!(error, "LIMIT cart has 3 lines, max_lines_per_cart is 3");
    assert_eq!(stored(&mut conn, "cart:1").await, before);
    let cart = cart_add(&mut conn, "cart:1", "c", "4", "100").await;
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
