//! Promotions, purchase limits and gift cards over real sockets (PROTOCOL.md "Promotion
//! documents", docs/PROMOTIONS.md): each promotion kind with hand-computed amounts, stacking,
//! expiry, currency, codes that stop applying, MERGE keeping the better code, MAXQTY, and gift
//! cards split across a total. Every test runs its own cartd. The checkout handoff is in
//! `checkout.rs`; the pricing engine's properties are unit-tested in `server/src/pricing/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cartd_tests::{fails, mutate, ok, view, w, Cartd};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Value as Json};

const CART: &str = "cart:42";
const GUEST: &str = "cart:guest:1";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

async fn promo_set(conn: &mut MultiplexedConnection, code: &str, document: Json) {
    let document = document.to_string();
    assert_eq!(
        ok(conn, &["PROMO.SET", code, &document]).await,
        Value::Okay,
        "{code}"
    );
}

/// `CART.ADD key product - qty PRICE price CURRENCY USD`.
async fn add(conn: &mut MultiplexedConnection, key: &str, product: &str, qty: u32, price: i64) {
    let (qty, price) = (qty.to_string(), price.to_string());
    let args = [
        "CART.ADD", key, product, "-", &qty, "PRICE", &price, "CURRENCY", "USD",
    ];
    mutate(conn, &args).await;
}

fn totals(view: &Json) -> (i64, i64, i64, i64) {
    let totals = &view["totals"];
    let get = |name: &str| totals[name].as_i64().expect("totals are integers");
    (
        get("subtotal"),
        get("discount"),
        get("gift_card"),
        get("total"),
    )
}

fn line_discount(view: &Json, product: &str) -> i64 {
    view["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|line| line["product"] == product)
        .unwrap_or_else(|| panic!("no line {product} in {view}"))["discount"]
        .as_i64()
        .expect("a line discount")
}

fn discounts(view: &Json) -> Vec<(String, i64)> {
    view["discounts"]
        .as_array()
        .expect("discounts")
        .iter()
        .map(|d| {
            (
                d["source"].as_str().unwrap().to_string(),
                d["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The `promotions` entry for `code`: (applied, discount, reason).
fn promotion(view: &Json, code: &str) -> (bool, i64, Option<String>) {
    let entry = view["promotions"]
        .as_array()
        .expect("promotions")
        .iter()
        .find(|p| p["code"] == code)
        .unwrap_or_else(|| panic!("no promotion {code} in {view}"));
    (
        entry["applied"].as_bool().expect("applied is a boolean"),
        entry["discount"].as_i64().expect("discount"),
        entry["reason"].as_str().map(str::to_string),
    )
}

fn sum_of_line_discounts(view: &Json) -> i64 {
    view["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|line| line["discount"].as_i64().expect("a line discount"))
        .sum()
}

/// `percent` takes 10% of the eligible lines, rounded half to even, and spreads it over the
/// lines in proportion; `products` limits it to the lines named.
#[tokio::test]
async fn percent_off_with_half_even_rounding() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    promo_set(&mut conn, "TEN", json!({"kind": "percent", "percent": 10})).await;
    add(&mut conn, CART, "tv", 1, 50000).await;
    add(&mut conn, CART, "mug", 2, 1250).await;
    let view = mutate(&mut conn, &w("CART.PROMO cart:42 ADD TEN")).await;
    assert_eq!(totals(&view), (52500, 5250, 0, 47250), "{view}");
    assert_eq!(line_discount(&view, "tv"), 5000);
    assert_eq!(line_discount(&view, "mug"), 250);
    assert_eq!(discounts(&view), [("code:TEN".to_string(), 5250)]);
    assert_eq!(view["promo_codes"], json!(["TEN"]));
    assert_eq!(promotion(&view, "TEN"), (true, 5250, None));

    // 10% of 125 is 12.5: half to even gives 12; of 135, 13.5 gives 14.
    for (price, expected) in [(125, 12), (135, 14)] {
        let key = format!("cart:even:{price}");
        add(&mut conn, &key, "pen", 1, price).await;
        let view = mutate(&mut conn, &["CART.PROMO", &key, "ADD", "TEN"]).await;
        assert_eq!(totals(&view).1, expected, "10% of {price}: {view}");
    }

    promo_set(
        &mut conn,
        "TVONLY",
        json!({"kind": "percent", "percent": 20, "products": ["tv"]}),
    )
    .await;
    add(&mut conn, "cart:7", "tv", 1, 50000).await;
    add(&mut conn, "cart:7", "mug", 1, 1000).await;
    let view = mutate(&mut conn, &w("CART.PROMO cart:7 ADD TVONLY")).await;
    assert_eq!(totals(&view).1, 10000);
    assert_eq!(line_discount(&view, "mug"), 0, "mug is not eligible");
}

/// `fixed` takes its amount off, never more than the eligible lines are worth.
#[tokio::test]
async fn fixed_amount_never_below_zero() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    let fixed = json!({"kind": "fixed", "amount": 700, "currency": "USD"});
    promo_set(&mut conn, "SEVEN", fixed).await;
    add(&mut conn, CART, "sock", 1, 500).await;
    let view = mutate(&mut conn, &w("CART.PROMO cart:42 ADD SEVEN")).await;
    assert_eq!(totals(&view), (500, 500, 0, 0), "{view}");
    add(&mut conn, CART, "hat", 1, 1000).await;
    let view = view_of(&mut conn, CART).await;
    assert_eq!(totals(&view), (1500, 700, 0, 800), "{view}");
    assert_eq!(sum_of_line_discounts(&view), 700);
}

/// The validated view (`CART.GET ... FORMAT JSON`).
async fn view_of(conn: &mut MultiplexedConnection, key: &str) -> Json {
    cartd_tests::json_reply(&ok(conn, &["CART.GET", key, "FORMAT", "JSON"]).await)
}

/// An automatic `bundle` applies without a code, once per complete set.
#[tokio::test]
async fn automatic_bundle_applies_once_per_complete_set() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let bundle =
        json!({"kind": "bundle", "products": ["tv", "soundbar"], "percent": 15, "automatic": true});
    promo_set(&mut conn, "tvset", bundle).await;
    add(&mut conn, CART, "tv", 2, 50000).await;
    let view = view(&mut conn, CART).await;
    assert_eq!(totals(&view).1, 0, "no soundbar, no set: {view}");
    add(&mut conn, CART, "soundbar", 1, 20000).await;
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(totals(&view), (120000, 10500, 0, 109500), "{view}");
    assert_eq!(discounts(&view), [("auto:tvset".to_string(), 10500)]);
    assert_eq!(
        view["promo_codes"],
        json!([]),
        "automatic promotions are not codes"
    );
    assert_eq!(sum_of_line_discounts(&view), 10500);
    add(&mut conn, CART, "soundbar", 1, 20000).await;
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(totals(&view).1, 21000, "two complete sets: {view}");

    // A bundle at a fixed price per set.
    let priced = json!({"kind": "bundle", "products": ["cam", "lens"], "price": 90000, "currency": "USD", "automatic": true});
    promo_set(&mut conn, "kit", priced).await;
    add(&mut conn, "cart:9", "cam", 1, 80000).await;
    add(&mut conn, "cart:9", "lens", 1, 30000).await;
    let view = cartd_tests::view(&mut conn, "cart:9").await;
    assert_eq!(totals(&view), (110000, 20000, 0, 90000), "{view}");
    let refused = fails(&mut conn, &w("CART.PROMO cart:9 ADD kit")).await;
    assert!(
        refused.starts_with("PROMO "),
        "an automatic promotion is not added as a code: {refused}"
    );
}

/// `buy_x_get_y`: buy 2 socks, get 1 free; the set may overlap and the free unit is the
/// cheapest.
#[tokio::test]
async fn buy_two_get_one_free() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let b2g1 = json!({"kind": "buy_x_get_y",
        "buy": {"products": ["sock"], "qty": 2},
        "get": {"products": ["sock"], "qty": 1, "percent": 100}});
    promo_set(&mut conn, "SOCKS", b2g1).await;
    add(&mut conn, CART, "sock", 2, 500).await;
    let refused = fails(&mut conn, &w("CART.PROMO cart:42 ADD SOCKS")).await;
    assert!(
        refused.starts_with("PROMO "),
        "two socks get nothing: {refused}"
    );
    for (qty, free) in [(3, 500), (5, 500), (6, 1000)] {
        let key = format!("cart:socks:{qty}");
        add(&mut conn, &key, "sock", qty, 500).await;
        let view = mutate(&mut conn, &["CART.PROMO", &key, "ADD", "SOCKS"]).await;
        assert_eq!(totals(&view).1, free, "{qty} socks: {view}");
    }
}

/// One non-stackable code per cart; stackable codes and automatic promotions combine, each
/// working on what the earlier ones left.
#[tokio::test]
async fn stacking_rules() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    promo_set(&mut conn, "TEN", json!({"kind": "percent", "percent": 10})).await;
    promo_set(&mut conn, "FIVE", json!({"kind": "percent", "percent": 5})).await;
    let extra = json!({"kind": "fixed", "amount": 100, "currency": "USD", "stackable": true});
    promo_set(&mut conn, "EXTRA", extra).await;
    add(&mut conn, CART, "tv", 1, 10000).await;
    mutate(&mut conn, &w("CART.PROMO cart:42 ADD TEN")).await;
    let before = view(&mut conn, CART).await;
    let refused = fails(&mut conn, &w("CART.PROMO cart:42 ADD FIVE")).await;
    assert!(refused.starts_with("PROMO "), "{refused}");
    assert_eq!(
        view(&mut conn, CART).await,
        before,
        "a refused code changes nothing"
    );
    let view = mutate(&mut conn, &w("CART.PROMO cart:42 ADD EXTRA")).await;
    assert_eq!(totals(&view), (10000, 1100, 0, 8900), "{view}");
    assert_eq!(view["promo_codes"], json!(["TEN", "EXTRA"]));
    // Removing TEN makes room for FIVE.
    mutate(&mut conn, &w("CART.PROMO cart:42 REMOVE TEN")).await;
    let view = mutate(&mut conn, &w("CART.PROMO cart:42 ADD FIVE")).await;
    // In the order applied: EXTRA takes 100, then FIVE takes 5% of the 9900 left.
    assert_eq!(totals(&view).1, 100 + 495, "{view}");
    assert_eq!(view["promo_codes"], json!(["EXTRA", "FIVE"]));
    // Adding a code twice changes nothing.
    let version = view["version"].clone();
    let again = mutate(&mut conn, &w("CART.PROMO cart:42 ADD FIVE")).await;
    assert_eq!(again["version"], version);
}

/// Unknown, expired, not yet started, other-currency, below-minimum and nothing-to-discount
/// codes are refused with a reason, and the cart keeps no code.
#[tokio::test]
async fn codes_that_do_not_apply() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, CART, "tv", 1, 8000).await;
    add(&mut conn, CART, "mug", 1, 4000).await;
    let now = now_ms();
    promo_set(
        &mut conn,
        "OLD",
        json!({"kind": "percent", "percent": 10, "ends_at_ms": now - 1000}),
    )
    .await;
    promo_set(
        &mut conn,
        "SOON",
        json!({"kind": "percent", "percent": 10, "starts_at_ms": now + 3_600_000}),
    )
    .await;
    promo_set(
        &mut conn,
        "EURO",
        json!({"kind": "percent", "percent": 10, "currency": "EUR"}),
    )
    .await;
    promo_set(
        &mut conn,
        "BIG",
        json!({"kind": "percent", "percent": 10, "min_subtotal": 20000}),
    )
    .await;
    promo_set(
        &mut conn,
        "MUGS",
        json!({"kind": "percent", "percent": 10, "products": ["cup"]}),
    )
    .await;
    for code in ["NOPE", "OLD", "SOON", "EURO", "BIG", "MUGS"] {
        let refused = fails(&mut conn, &["CART.PROMO", CART, "ADD", code]).await;
        let named = format!("PROMO code {code}: ");
        assert!(refused.starts_with(&named), "{code}: {refused}");
    }
    let refused = fails(&mut conn, &w("CART.PROMO cart:42 ADD OLD")).await;
    assert!(refused.contains("expired"), "{refused}");
    let refused = fails(&mut conn, &w("CART.PROMO cart:42 ADD BIG")).await;
    assert!(
        refused.contains("20000") && refused.contains("12000"),
        "{refused}"
    );
    assert_eq!(view(&mut conn, CART).await["promo_codes"], json!([]));
}

/// A code that stops applying (a line removed, its window ended, the promotion deleted) stays
/// on the cart, reported as not applied with the reason, and applies again when it can.
#[tokio::test]
async fn codes_that_stop_applying_stay() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, CART, "tv", 1, 8000).await;
    add(&mut conn, CART, "mug", 1, 4000).await;
    promo_set(
        &mut conn,
        "MIN10K",
        json!({"kind": "fixed", "amount": 1000, "currency": "USD", "min_subtotal": 10000}),
    )
    .await;
    let view = mutate(&mut conn, &w("CART.PROMO cart:42 ADD MIN10K")).await;
    assert_eq!(totals(&view).1, 1000);
    let view = mutate(&mut conn, &w("CART.REMOVE cart:42 mug -")).await;
    assert_eq!(
        view["promo_codes"],
        json!(["MIN10K"]),
        "the code stays: {view}"
    );
    assert_eq!(
        promotion(&view, "MIN10K"),
        (false, 0, Some("min_subtotal".into()))
    );
    assert_eq!(totals(&view), (8000, 0, 0, 8000));
    add(&mut conn, CART, "mug", 1, 4000).await;
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(
        promotion(&view, "MIN10K"),
        (true, 1000, None),
        "applies again"
    );

    // A code that ends while on the cart, and one deleted while on the cart.
    promo_set(&mut conn, "BRIEF", json!({"kind": "fixed", "amount": 1, "currency": "USD", "stackable": true, "ends_at_ms": now_ms() + 1500})).await;
    mutate(&mut conn, &w("CART.PROMO cart:42 ADD BRIEF")).await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(
        promotion(&view, "BRIEF"),
        (false, 0, Some("expired".into())),
        "{view}"
    );
    assert_eq!(ok(&mut conn, &w("PROMO.DEL MIN10K")).await, Value::Int(1));
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(
        promotion(&view, "MIN10K"),
        (false, 0, Some("unknown".into())),
        "{view}"
    );
    assert_eq!(ok(&mut conn, &w("PROMO.DEL MIN10K")).await, Value::Int(0));
    assert_eq!(
        fails(&mut conn, &w("CART.PROMO cart:missing ADD BRIEF")).await,
        "NOCART no such cart"
    );
}

/// PROMO.SET validates the document and names the bad field; PROMO.GET returns it.
#[tokio::test]
async fn promotion_documents_are_validated() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let cases = [
        (r#"{"kind": "percent", "percnt": 10}"#, "percnt"),
        (r#"{"kind": "percent", "percent": 150}"#, "percent"),
        (r#"{"kind": "percent", "percent": 10.5}"#, "percent"),
        (r#"{"kind": "bogus"}"#, "kind"),
        (r#"{"kind": "fixed", "amount": 500}"#, "currency"),
        (
            r#"{"kind": "bundle", "products": ["tv"], "percent": 10}"#,
            "products",
        ),
        (
            r#"{"kind": "percent", "percent": 10, "starts_at_ms": 5, "ends_at_ms": 4}"#,
            "ends_at_ms",
        ),
        ("not json", ""),
    ];
    for (document, field) in cases {
        let refused = fails(&mut conn, &["PROMO.SET", "BAD", document]).await;
        assert!(refused.starts_with("PROMO "), "{document}: {refused}");
        assert!(
            refused.contains(field),
            "{document}: {refused} should name {field}"
        );
    }
    assert_eq!(ok(&mut conn, &w("PROMO.GET BAD")).await, Value::Nil);
    let document = json!({"kind": "bundle", "products": ["tv", {"product": "soundbar", "variant": "black"}], "amount": 5000, "currency": "USD"});
    promo_set(&mut conn, "SET", document).await;
    let Value::BulkString(stored) = ok(&mut conn, &w("PROMO.GET SET")).await else {
        panic!("PROMO.GET replies a JSON string")
    };
    let stored: Json = serde_json::from_slice(&stored).expect("JSON");
    assert_eq!(stored["kind"], "bundle");
    assert_eq!(stored["amount"], 5000);
    assert_eq!(stored["stackable"], false, "defaults are filled in");
    let products = stored["products"].as_array().expect("products");
    assert_eq!(products.len(), 2);
    assert!(products.contains(&json!("tv")), "{stored}");
    assert!(
        products.contains(&json!({"product": "soundbar", "variant": "black"})),
        "{stored}"
    );
}

/// MERGE keeps the promo code that gives the merged cart the larger discount; on a tie, the
/// user cart's. The guest cart's gift cards come along.
#[tokio::test]
async fn merge_keeps_the_better_code() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    promo_set(&mut conn, "U10", json!({"kind": "percent", "percent": 10})).await;
    promo_set(&mut conn, "G20", json!({"kind": "percent", "percent": 20})).await;
    promo_set(&mut conn, "G10", json!({"kind": "percent", "percent": 10})).await;
    add(&mut conn, CART, "tv", 1, 10000).await;
    mutate(&mut conn, &w("CART.PROMO cart:42 ADD U10")).await;
    add(&mut conn, GUEST, "mug", 1, 1000).await;
    mutate(&mut conn, &w("CART.PROMO cart:guest:1 ADD G20")).await;
    ok(&mut conn, &w("GIFTCARD.SET GC 500 USD")).await;
    mutate(&mut conn, &w("CART.GIFTCARD cart:guest:1 ADD GC")).await;
    let merged = mutate(&mut conn, &w("CART.MERGE cart:guest:1 cart:42")).await;
    assert_eq!(merged["promo_codes"], json!(["G20"]), "{merged}");
    assert_eq!(
        totals(&merged),
        (11000, 2200, 500, 8300),
        "the guest's card comes along"
    );

    add(&mut conn, "cart:43", "tv", 1, 10000).await;
    mutate(&mut conn, &w("CART.PROMO cart:43 ADD U10")).await;
    add(&mut conn, "cart:guest:2", "tv", 1, 10000).await;
    mutate(&mut conn, &w("CART.PROMO cart:guest:2 ADD G10")).await;
    let merged = mutate(&mut conn, &w("CART.MERGE cart:guest:2 cart:43")).await;
    assert_eq!(
        merged["promo_codes"],
        json!(["U10"]),
        "a tie keeps the user's: {merged}"
    );
}

/// `CATALOG.SET ... MAXQTY 2`: ADD and SET beyond it fail with LIMIT and change nothing;
/// MERGE caps the line at it.
#[tokio::test]
async fn purchase_limit_per_cart() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w("CATALOG.SET phone - 99900 USD STOCK 100 MAXQTY 2"),
    )
    .await;
    mutate(&mut conn, &w("CART.ADD cart:42 phone - 2")).await;
    let before = view(&mut conn, CART).await;
    let refused = fails(&mut conn, &w("CART.ADD cart:42 phone - 1")).await;
    assert!(
        refused.starts_with("LIMIT ") && refused.contains("limit of 2"),
        "{refused}"
    );
    let refused = fails(&mut conn, &w("CART.SET cart:42 phone - 3")).await;
    assert!(
        refused.starts_with("LIMIT ") && refused.contains('2'),
        "{refused}"
    );
    assert_eq!(view(&mut conn, CART).await, before, "nothing changed");
    mutate(&mut conn, &w("CART.ADD cart:guest:1 phone - 2")).await;
    let merged = mutate(&mut conn, &w("CART.MERGE cart:guest:1 cart:42 QTY SUM")).await;
    assert_eq!(merged["items"][0]["qty"], 2, "capped at MAXQTY: {merged}");
}

/// Gift cards apply in the order added, each up to its balance and the remaining total;
/// balances are not touched until checkout.
#[tokio::test]
async fn gift_cards_split_a_total() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    for (code, balance, currency) in [
        ("GC1", "3000", "USD"),
        ("GC2", "10000", "USD"),
        ("EU", "5000", "EUR"),
        ("EMPTY", "0", "USD"),
    ] {
        assert_eq!(
            ok(&mut conn, &["GIFTCARD.SET", code, balance, currency]).await,
            Value::Okay
        );
    }
    add(&mut conn, CART, "boots", 1, 5000).await;
    mutate(&mut conn, &w("CART.GIFTCARD cart:42 ADD GC1")).await;
    let view = mutate(&mut conn, &w("CART.GIFTCARD cart:42 ADD GC2")).await;
    let cards: Vec<(String, i64)> = view["gift_cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().into(),
                c["applied"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cards,
        [("GC1".to_string(), 3000), ("GC2".to_string(), 2000)],
        "{view}"
    );
    assert_eq!(totals(&view), (5000, 0, 5000, 0));
    let card = cartd_tests::resp3_to_json(&ok(&mut conn, &w("GIFTCARD.GET GC2")).await);
    assert_eq!(
        card,
        json!({"balance": 10000, "currency": "USD", "held": 0, "holds": 0, "available": 10000})
    );
    for (code, needle) in [("NONE", "unknown"), ("EU", "EUR"), ("EMPTY", "balance")] {
        let refused = fails(&mut conn, &["CART.GIFTCARD", CART, "ADD", code]).await;
        assert!(
            refused.starts_with("GIFTCARD ") && refused.contains(needle),
            "{code}: {refused}"
        );
    }
    let view = mutate(&mut conn, &w("CART.GIFTCARD cart:42 REMOVE GC1")).await;
    assert_eq!(totals(&view), (5000, 0, 5000, 0), "GC2 covers it all now");
    assert_eq!(view["gift_cards"][0]["applied"], 5000);
    assert_eq!(ok(&mut conn, &w("GIFTCARD.GET NONE")).await, Value::Nil);
    assert_eq!(ok(&mut conn, &w("GIFTCARD.DEL GC2")).await, Value::Int(1));
    let view = cartd_tests::view(&mut conn, CART).await;
    assert_eq!(
        totals(&view),
        (5000, 0, 0, 5000),
        "a deleted card pays nothing: {view}"
    );
}
