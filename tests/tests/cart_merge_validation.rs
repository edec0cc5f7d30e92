//! CART.MERGE and price/stock validation over real sockets, against PROTOCOL.md's "CART.MERGE"
//! and "CART.GET and validation" sections. Every test runs its own cartd.

use std::time::Duration;

use cartd_tests::{
    exists, fails, item, json_reply, ok, resp3_to_json, view, w, without_ttl, Cartd, SMALL,
};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Value as Json};

/// A validation cache of one second, so a test can wait it out.
const SHORT_CACHE: &str = "[carts]\nvalidation_cache_s = 1\n";

/// `user_ttl_s` by default (30 days), in milliseconds.
const USER_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

const GUEST: &str = "cart:guest:7f3a";
const USER: &str = "cart:42";

/// Runs a command with `FORMAT JSON` appended; returns the cart view (or null) it replies.
async fn json_cmd(conn: &mut MultiplexedConnection, args: &[&str]) -> Json {
    let mut full = args.to_vec();
    full.extend(["FORMAT", "JSON"]);
    json_reply(&ok(conn, &full).await)
}

/// `CART.ADD key product - qty PRICE price CURRENCY currency`; returns the view.
async fn add(
    conn: &mut MultiplexedConnection,
    key: &str,
    product: &str,
    qty: &str,
    price: &str,
    currency: &str,
) -> Json {
    let args = [
        "CART.ADD", key, product, "-", qty, "PRICE", price, "CURRENCY", currency,
    ];
    json_cmd(conn, &args).await
}

/// `CART.MERGE guest user [extra...] FORMAT JSON`; returns the view.
async fn merge(conn: &mut MultiplexedConnection, extra: &[&str]) -> Json {
    let mut args = vec!["CART.MERGE", GUEST, USER];
    args.extend_from_slice(extra);
    json_cmd(conn, &args).await
}

/// A validating `CART.GET key FORMAT JSON`.
async fn get(conn: &mut MultiplexedConnection, key: &str) -> Json {
    json_cmd(conn, &["CART.GET", key]).await
}

/// The `(product, qty)` of each line in one of a view's lists, in order (every line here has
/// variant `-`, so [`cartd_tests::lines`] without the variant).
fn lines(view: &Json, list: &str) -> Vec<(String, i64)> {
    cartd_tests::lines(view, list)
        .into_iter()
        .map(|(product, _variant, qty)| (product, qty))
        .collect()
}

/// Shorthand for an expected line list.
fn expect(lines: &[(&str, i64)]) -> Vec<(String, i64)> {
    lines
        .iter()
        .map(|(product, qty)| (product.to_string(), *qty))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// CART.MERGE
// ---------------------------------------------------------------------------------------------

/// QTY MAX (the default): a line in both carts takes the higher quantity at the user cart's
/// price; guest-only lines are appended with their own price; the user cart moves on by one
/// version, the reply is validated (`fresh`) and the guest cart is deleted.
#[tokio::test]
async fn merge_max_takes_the_higher_quantity_and_user_prices() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "2", "100", "USD").await;
    add(&mut conn, USER, "b", "3", "200", "USD").await;
    add(&mut conn, GUEST, "a", "4", "150", "USD").await;
    add(&mut conn, GUEST, "b", "1", "250", "USD").await;
    add(&mut conn, GUEST, "c", "2", "300", "USD").await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(merged["id"], USER);
    assert_eq!(merged["kind"], "user");
    assert_eq!(merged["version"], 3);
    assert_eq!(merged["validation"], "fresh");
    assert!(merged["validated_at_ms"].as_i64().is_some(), "{merged}");
    assert_eq!(
        lines(&merged, "items"),
        expect(&[("a", 4), ("b", 3), ("c", 2)])
    );
    assert_eq!(item(&merged, "a")["unit_price"], 100, "user prices win");
    assert_eq!(item(&merged, "b")["unit_price"], 200);
    assert_eq!(item(&merged, "c")["unit_price"], 300);
    assert_eq!(merged["totals"]["subtotal"], 4 * 100 + 3 * 200 + 2 * 300);
    assert_eq!(exists(&mut conn, GUEST).await, 0);
    assert_eq!(
        without_ttl(view(&mut conn, USER).await)["items"],
        merged["items"]
    );
}

/// QTY SUM adds the quantities of a line in both carts, capped by max_qty_per_line and by the
/// product's MAXQTY (guest-only lines too).
#[tokio::test]
async fn merge_sum_adds_quantities_within_the_caps() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, USER, "b", "3", "100", "USD").await;
    add(&mut conn, USER, "c", "2", "100", "USD").await;
    add(&mut conn, GUEST, "a", "2", "100", "USD").await;
    add(&mut conn, GUEST, "b", "4", "100", "USD").await;
    add(&mut conn, GUEST, "c", "2", "100", "USD").await;
    ok(&mut conn, &w("CATALOG.SET c - 100 USD MAXQTY 3")).await;
    let merged = merge(&mut conn, &["QTY", "SUM"]).await;
    assert_eq!(
        lines(&merged, "items"),
        expect(&[("a", 3), ("b", 5), ("c", 3)]),
        "1+2; 3+4 capped at max_qty_per_line 5; 2+2 capped at MAXQTY 3"
    );
    assert_eq!(merged["version"], 4);
}

/// QTY MAX is capped by MAXQTY too: a guest line above the product's limit comes in at the
/// limit, whether the user cart has the line or not.
#[tokio::test]
async fn merge_max_respects_the_catalog_maxqty() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "a", "8", "100", "USD").await;
    add(&mut conn, GUEST, "b", "9", "100", "USD").await;
    ok(&mut conn, &w("CATALOG.SET a - 100 USD MAXQTY 4")).await;
    ok(&mut conn, &w("CATALOG.SET b - 100 USD MAXQTY 2")).await;
    let merged = merge(&mut conn, &["QTY", "MAX"]).await;
    assert_eq!(lines(&merged, "items"), expect(&[("a", 4), ("b", 2)]));
}

/// Guest-only lines beyond max_lines_per_cart go to saved-for-later while it has room, and
/// saved lines are united (the user's line stays, with the higher quantity).
#[tokio::test]
async fn merge_overflow_goes_to_saved_and_saved_lines_are_united() {
    let cartd = Cartd::start(SMALL);
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "u1", "1", "100", "USD").await;
    add(&mut conn, USER, "u2", "1", "100", "USD").await;
    add(&mut conn, GUEST, "g1", "1", "100", "USD").await;
    add(&mut conn, GUEST, "g2", "2", "100", "USD").await;
    add(&mut conn, GUEST, "g3", "3", "100", "USD").await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(
        lines(&merged, "items"),
        expect(&[("u1", 1), ("u2", 1), ("g1", 1)])
    );
    assert_eq!(lines(&merged, "saved"), expect(&[("g2", 2), ("g3", 3)]));
    assert_eq!(exists(&mut conn, GUEST).await, 0);

    let other = "cart:7";
    add(&mut conn, other, "s", "2", "100", "USD").await;
    ok(&mut conn, &["CART.SAVE", other, "s", "-"]).await;
    add(&mut conn, GUEST, "s", "4", "100", "USD").await;
    add(&mut conn, GUEST, "t", "1", "100", "USD").await;
    ok(&mut conn, &["CART.SAVE", GUEST, "s", "-"]).await;
    ok(&mut conn, &["CART.SAVE", GUEST, "t", "-"]).await;
    let merged = json_cmd(&mut conn, &["CART.MERGE", GUEST, other]).await;
    assert_eq!(lines(&merged, "saved"), expect(&[("s", 4), ("t", 1)]));
    assert_eq!(merged["items"], json!([]));
}

/// Different currencies: the user cart keeps its currency and lines, and the guest's lines go
/// to `unavailable`.
#[tokio::test]
async fn merge_with_another_currency_moves_guest_lines_to_unavailable() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "a", "5", "90", "EUR").await;
    add(&mut conn, GUEST, "b", "2", "80", "EUR").await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(merged["currency"], "USD");
    assert_eq!(lines(&merged, "items"), expect(&[("a", 1)]));
    assert_eq!(item(&merged, "a")["unit_price"], 100);
    assert_eq!(lines(&merged, "unavailable"), expect(&[("a", 5), ("b", 2)]));
    assert_eq!(merged["totals"]["subtotal"], 100);
    assert_eq!(exists(&mut conn, GUEST).await, 0);
}

/// Guest lines in another currency, saved ones included, wait in `unavailable` with reason
/// `currency`; RESTORE refuses one without a catalog price in the cart's currency and
/// otherwise brings it back at that price, never at the foreign one.
#[tokio::test]
async fn foreign_currency_lines_are_repriced_on_restore() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "b", "2", "80", "EUR").await;
    add(&mut conn, GUEST, "s", "3", "70", "EUR").await;
    ok(&mut conn, &["CART.SAVE", GUEST, "s", "-"]).await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(lines(&merged, "unavailable"), expect(&[("b", 2), ("s", 3)]));
    assert_eq!(lines(&merged, "saved"), expect(&[]));
    for line in merged["unavailable"].as_array().expect("unavailable") {
        assert_eq!(line["reason"], "currency", "{line}");
    }
    let restore_b = ["CART.RESTORE", USER, "b", "-"];
    let error = fails(&mut conn, &restore_b).await;
    assert!(error.starts_with("NOPRICE"), "{error}");
    assert_eq!(lines(&get(&mut conn, USER).await, "unavailable").len(), 2);
    ok(&mut conn, &w("CATALOG.SET b - 95 EUR")).await;
    let error = fails(&mut conn, &restore_b).await;
    assert!(error.starts_with("NOPRICE"), "{error}");
    ok(&mut conn, &w("CATALOG.SET b - 120 USD")).await;
    let restored = json_cmd(&mut conn, &restore_b).await;
    assert_eq!(lines(&restored, "items"), expect(&[("a", 1), ("b", 2)]));
    assert_eq!(item(&restored, "b")["unit_price"], 120);
    assert_eq!(item(&restored, "b")["price_at_add"], 120);
    assert_eq!(restored["totals"]["subtotal"], 100 + 2 * 120);
    assert_eq!(lines(&restored, "unavailable"), expect(&[("s", 3)]));
}

/// A user cart with no lines at all takes the guest cart's currency, and the guest's lines.
#[tokio::test]
async fn merge_into_an_empty_user_cart_takes_the_guest_currency() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    ok(&mut conn, &["CART.CLEAR", USER]).await;
    add(&mut conn, GUEST, "b", "2", "80", "EUR").await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(merged["currency"], "EUR");
    assert_eq!(lines(&merged, "items"), expect(&[("b", 2)]));
    assert_eq!(merged["unavailable"], json!([]));
    assert_eq!(merged["version"], 3);
}

/// A missing guest cart leaves the user cart as it is: the reply is the user cart, unchanged,
/// at the same version (so a retried merge is safe).
#[tokio::test]
async fn merge_of_a_missing_guest_replies_the_user_cart_unchanged() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "2", "100", "USD").await;
    let before = without_ttl(view(&mut conn, USER).await);
    let merged = without_ttl(merge(&mut conn, &[]).await);
    assert_eq!(merged["version"], 1);
    assert_eq!(merged["items"], before["items"]);
    assert_eq!(merged["updated_at_ms"], before["updated_at_ms"]);
    assert_eq!(without_ttl(view(&mut conn, USER).await), before);
}

/// A missing user cart: the guest cart becomes the user cart (kind `user`, user TTL, version
/// + 1, same lines) and the guest key is gone.
#[tokio::test]
async fn merge_into_a_missing_user_cart_moves_the_guest_cart() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, GUEST, "a", "2", "100", "USD").await;
    let guest = add(&mut conn, GUEST, "b", "1", "300", "USD").await;
    assert_eq!(guest["kind"], "guest");
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(merged["id"], USER);
    assert_eq!(merged["kind"], "user");
    assert_eq!(merged["version"], 3);
    assert_eq!(merged["ttl_ms"], USER_TTL_MS);
    assert_eq!(merged["validation"], "fresh");
    assert_eq!(merged["items"], guest["items"]);
    assert_eq!(merged["created_at_ms"], guest["created_at_ms"]);
    assert_eq!(exists(&mut conn, GUEST).await, 0);
    assert_eq!(view(&mut conn, USER).await["kind"], "user");
}

/// Neither cart exists: the reply is null and nothing is created; merging a cart into itself
/// is `ERR`.
#[tokio::test]
async fn merge_of_two_missing_carts_is_null_and_into_itself_is_an_error() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    assert_eq!(
        ok(&mut conn, &["CART.MERGE", GUEST, USER]).await,
        Value::Nil
    );
    assert_eq!(exists(&mut conn, USER).await, 0);
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    let error = fails(&mut conn, &["CART.MERGE", USER, USER]).await;
    assert!(error.starts_with("ERR "), "{error}");
    assert_eq!(view(&mut conn, USER).await["version"], 1);
}

/// MERGE validates the result under its locks: catalog prices apply to the merged lines, an
/// out-of-stock line goes to `unavailable`, and the next CART.GET reuses that validation.
#[tokio::test]
async fn merge_reply_is_validated() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "b", "1", "200", "USD").await;
    add(&mut conn, GUEST, "c", "1", "300", "USD").await;
    ok(&mut conn, &w("CATALOG.SET b - 180 USD")).await;
    ok(&mut conn, &["STOCK.SET", "c", "-", "0"]).await;
    let merged = merge(&mut conn, &[]).await;
    assert_eq!(merged["validation"], "fresh");
    assert_eq!(lines(&merged, "items"), expect(&[("a", 1), ("b", 1)]));
    assert_eq!(item(&merged, "b")["unit_price"], 180);
    assert_eq!(item(&merged, "b")["price_changed"], true);
    assert_eq!(lines(&merged, "unavailable"), expect(&[("c", 1)]));
    let cached = get(&mut conn, USER).await;
    assert_eq!(cached["validation"], "cached");
    assert_eq!(cached["version"], merged["version"]);
    assert_eq!(cached["items"], merged["items"]);
}

/// IFVERSION applies to the user cart: a mismatch is `VERSION` and both carts stay; a match
/// merges.
#[tokio::test]
async fn merge_ifversion_applies_to_the_user_cart() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "b", "1", "100", "USD").await;
    add(&mut conn, GUEST, "c", "1", "100", "USD").await;
    let error = fails(&mut conn, &["CART.MERGE", GUEST, USER, "IFVERSION", "2"]).await;
    assert_eq!(error, "VERSION expected 2, cart is at 1");
    assert_eq!(exists(&mut conn, GUEST).await, 1);
    assert_eq!(view(&mut conn, GUEST).await["version"], 2);
    assert_eq!(view(&mut conn, USER).await["version"], 1);
    let merged = merge(&mut conn, &["IFVERSION", "1"]).await;
    assert_eq!(merged["version"], 2);
    assert_eq!(
        lines(&merged, "items"),
        expect(&[("a", 1), ("b", 1), ("c", 1)])
    );
}

/// A merge retried with the same IDEMPOTENCY token replays the original reply byte for byte
/// (the guest cart is gone by then) and changes nothing; other arguments with that token are
/// `IDEMPOTENCY`.
#[tokio::test]
async fn merge_is_idempotent() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    add(&mut conn, GUEST, "a", "3", "100", "USD").await;
    let args = [
        "CART.MERGE",
        GUEST,
        USER,
        "QTY",
        "SUM",
        "IDEMPOTENCY",
        "login-1",
        "FORMAT",
        "JSON",
    ];
    let original = ok(&mut conn, &args).await;
    assert_eq!(json_reply(&original)["version"], 2);
    assert_eq!(lines(&json_reply(&original), "items"), expect(&[("a", 4)]));
    assert_eq!(ok(&mut conn, &args).await, original);
    assert_eq!(view(&mut conn, USER).await["version"], 2);
    let mut other = args;
    other[4] = "MAX";
    let error = fails(&mut conn, &other).await;
    assert_eq!(error, "IDEMPOTENCY token reused with different arguments");
    assert_eq!(view(&mut conn, USER).await["version"], 2);
}

// ---------------------------------------------------------------------------------------------
// Validation on CART.GET
// ---------------------------------------------------------------------------------------------

/// A catalog price change shows up once the validation cache expires: `unit_price` becomes
/// the catalog's, `price_changed` turns true, totals follow and the version moves on by one.
#[tokio::test]
async fn catalog_price_change_shows_after_the_cache_expires() {
    let cartd = Cartd::start(SHORT_CACHE);
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "sku-1", "2", "1299", "USD").await;
    let fresh = get(&mut conn, USER).await;
    assert_eq!(fresh["validation"], "fresh");
    assert_eq!(fresh["version"], 1);
    ok(&mut conn, &w("CATALOG.SET sku-1 - 1199 USD")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let repriced = get(&mut conn, USER).await;
    assert_eq!(repriced["validation"], "fresh");
    assert_eq!(repriced["version"], 2);
    let line = item(&repriced, "sku-1");
    assert_eq!(line["unit_price"], 1199);
    assert_eq!(line["price_at_add"], 1299);
    assert_eq!(line["price_changed"], true);
    assert_eq!(line["line_total"], 2398);
    assert_eq!(repriced["totals"]["total"], 2398);
    assert!(
        repriced["validated_at_ms"].as_i64() > fresh["validated_at_ms"].as_i64(),
        "{repriced}"
    );
    let stored = view(&mut conn, USER).await;
    assert_eq!(
        item(&stored, "sku-1")["unit_price"],
        1199,
        "the new price is kept"
    );
}

/// Validation ignores a catalog price in another currency: the line keeps its price and the
/// cart its version.
#[tokio::test]
async fn validation_ignores_a_catalog_price_in_another_currency() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "sku-1", "1", "1299", "USD").await;
    ok(&mut conn, &w("CATALOG.SET sku-1 - 999 EUR")).await;
    let validated = get(&mut conn, USER).await;
    assert_eq!(validated["validation"], "fresh");
    assert_eq!(validated["version"], 1);
    assert_eq!(item(&validated, "sku-1")["unit_price"], 1299);
    assert_eq!(item(&validated, "sku-1")["price_changed"], false);
}

/// STOCK.SET 0 moves the line to `unavailable` at the next validation (version + 1, out of
/// the totals); stock above 0 but below the quantity does not; CART.RESTORE brings it back.
#[tokio::test]
async fn out_of_stock_lines_move_to_unavailable_and_restore_brings_them_back() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "mug", "3", "899", "USD").await;
    add(&mut conn, USER, "sock", "5", "300", "USD").await;
    ok(&mut conn, &["STOCK.SET", "mug", "-", "0"]).await;
    ok(&mut conn, &["STOCK.SET", "sock", "-", "2"]).await;
    let validated = get(&mut conn, USER).await;
    assert_eq!(validated["version"], 3);
    assert_eq!(lines(&validated, "items"), expect(&[("sock", 5)]));
    assert_eq!(lines(&validated, "unavailable"), expect(&[("mug", 3)]));
    let unavailable = &validated["unavailable"][0];
    assert_eq!(unavailable["unit_price"], 899);
    assert_eq!(unavailable["line_total"], 2697);
    assert_eq!(validated["totals"]["item_count"], 5);
    assert_eq!(validated["totals"]["total"], 1500);

    ok(&mut conn, &["STOCK.SET", "mug", "-", "10"]).await;
    let restored = json_cmd(&mut conn, &["CART.RESTORE", USER, "mug", "-"]).await;
    assert_eq!(restored["version"], 4);
    assert_eq!(restored["unavailable"], json!([]));
    assert_eq!(
        lines(&restored, "items"),
        expect(&[("sock", 5), ("mug", 3)])
    );
    let validated = get(&mut conn, USER).await;
    assert_eq!(validated["validation"], "fresh");
    assert_eq!(
        lines(&validated, "items"),
        expect(&[("sock", 5), ("mug", 3)])
    );
    assert_eq!(validated["version"], 4);
}

/// CART.RESTORE takes a variant from saved-for-later first, and from unavailable only when it
/// is not saved; each time the quantities add to the line in the cart.
#[tokio::test]
async fn restore_prefers_saved_over_unavailable() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, USER, "mug", "2", "899", "USD").await;
    ok(&mut conn, &["CART.SAVE", USER, "mug", "-"]).await;
    add(&mut conn, USER, "mug", "3", "899", "USD").await;
    ok(&mut conn, &["STOCK.SET", "mug", "-", "0"]).await;
    let validated = get(&mut conn, USER).await;
    assert_eq!(validated["items"], json!([]));
    assert_eq!(lines(&validated, "saved"), expect(&[("mug", 2)]));
    assert_eq!(lines(&validated, "unavailable"), expect(&[("mug", 3)]));
    ok(&mut conn, &["STOCK.SET", "mug", "-", "50"]).await;
    let restored = json_cmd(&mut conn, &["CART.RESTORE", USER, "mug", "-"]).await;
    assert_eq!(lines(&restored, "items"), expect(&[("mug", 2)]));
    assert_eq!(restored["saved"], json!([]));
    assert_eq!(lines(&restored, "unavailable"), expect(&[("mug", 3)]));
    let restored = json_cmd(&mut conn, &["CART.RESTORE", USER, "mug", "-"]).await;
    assert_eq!(lines(&restored, "items"), expect(&[("mug", 5)]));
    assert_eq!(restored["unavailable"], json!([]));
}

/// RESP3 CART.GET validates too: the map's `validation` reads `fresh`, then `cached`.
#[tokio::test]
async fn resp3_get_reports_validation() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    add(&mut conn, USER, "a", "1", "100", "USD").await;
    let fresh = resp3_to_json(&ok(&mut conn, &["CART.GET", USER]).await);
    assert_eq!(fresh["validation"], "fresh");
    let cached = resp3_to_json(&ok(&mut conn, &["CART.GET", USER]).await);
    assert_eq!(cached["validation"], "cached");
    assert_eq!(cached["validated_at_ms"], fresh["validated_at_ms"]);
}
