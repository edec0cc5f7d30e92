//! Moving and removing cart lines over real sockets (PROTOCOL.md): CART.SET (0 removes the
//! line), CART.REMOVE from the cart, saved or unavailable list, CART.CLEAR, and CART.SAVE and
//! CART.RESTORE between the cart and saved-for-later, with their versions, errors and limits.
//! Every test runs its own cartd.
//!
//! CART.ADD is in `cart_add.rs`; the mutation options in `cart_options.rs`.

use cartd_tests::{
    cart_add, exists, expect, fails, item, json_reply, lines, mutate, ok, stored, w, without_ttl,
    Cartd, SMALL,
};
use redis::Value;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// CART.SET, CART.REMOVE, CART.CLEAR
// ---------------------------------------------------------------------------------------------

/// CART.SET sets the quantity (version + 1); the quantity the line already has keeps the
/// version; 0 removes the line (version + 1) and the empty cart stays.
#[tokio::test]
async fn set_changes_the_quantity_and_zero_removes_the_line() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "sku-1", "2", "999").await;
    cart_add(&mut conn, "cart:1", "sku-2", "1", "100").await;
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
    cart_add(&mut conn, "cart:1", "sku-1", "2", "100").await;
    cart_add(&mut conn, "cart:1", "saved", "1", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "saved", "-"]).await;
    ok(&mut conn, &w("CATALOG.SET capped - 100 USD MAXQTY 2")).await;
    cart_add(&mut conn, "cart:1", "capped", "1", "100").await;
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
        cart_add(&mut conn, "cart:1", product, "1", "100").await;
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
        cart_add(&mut conn, "cart:1", product, "2", "100").await;
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
    cart_add(&mut conn, "cart:1", "mug", "1", "1299").await;
    let priced = cart_add(&mut conn, "cart:1", "mug", "2", "1199").await;
    cart_add(&mut conn, "cart:1", "sock", "1", "300").await;
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
    cart_add(&mut conn, "cart:1", "a", "1", "100").await;
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
        cart_add(&mut conn, "cart:1", product, "4", "100").await;
    }
    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "b", "-"]).await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.SAVE", "cart:1", "c", "-"]).await,
        "LIMIT cart has 2 saved lines, max_saved_per_cart is 2"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    cart_add(&mut conn, "cart:1", "a", "3", "100").await;
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
    cart_add(&mut conn, "cart:1", "a", "2", "100").await;
    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    cart_add(&mut conn, "cart:1", "a", "2", "100").await;
    let cart = mutate(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await;
    assert_eq!(lines(&cart, "items"), expect(&[("a", "-", 4)]));
    assert_eq!(cart["saved"], json!([]));

    ok(&mut conn, &["CART.SAVE", "cart:1", "a", "-"]).await;
    cart_add(&mut conn, "cart:1", "a", "2", "100").await;
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await,
        "LIMIT quantity 6 is over max_qty_per_line 5"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);

    ok(&mut conn, &w("CART.SET cart:1 a - 0")).await;
    for product in ["x", "y", "z"] {
        cart_add(&mut conn, "cart:1", product, "1", "100").await;
    }
    let before = stored(&mut conn, "cart:1").await;
    assert_eq!(
        fails(&mut conn, &["CART.RESTORE", "cart:1", "a", "-"]).await,
        "LIMIT cart has 3 lines, max_lines_per_cart is 3"
    );
    assert_eq!(stored(&mut conn, "cart:1").await, before);
}
