//! The checkout handoff over real sockets (PROTOCOL.md CART.CHECKOUT / COMPLETE / RELEASE):
//! freezing, the frozen view, retries of all three, wrong tokens, the hold running out, gift
//! card reservations, refusals, the `checkout` event, and a checkout surviving a restart.
//! Every test runs its own cartd.

use std::time::Duration;

use cartd_tests::{fails, json_reply, mutate, ok, w, Cartd};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Value as Json};

const CART: &str = "cart:42";

async fn get(conn: &mut MultiplexedConnection, key: &str) -> Json {
    json_reply(&ok(conn, &["CART.GET", key, "FORMAT", "JSON"]).await)
}

async fn checkout(conn: &mut MultiplexedConnection, args: &str) -> Json {
    mutate(conn, &w(args)).await
}

fn checkout_token(view: &Json) -> String {
    view["checkout_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkout_token in {view}"))
        .to_string()
}

/// `GIFTCARD.GET GC` as JSON (the connection speaks RESP3).
async fn gift_card(conn: &mut MultiplexedConnection) -> Json {
    cartd_tests::resp3_to_json(&ok(conn, &w("GIFTCARD.GET GC")).await)
}

async fn seed(conn: &mut MultiplexedConnection) {
    ok(conn, &w("CATALOG.SET tv - 50000 USD STOCK 5")).await;
    ok(conn, &w("CATALOG.SET mug - 1500 USD STOCK 50")).await;
    mutate(conn, &w("CART.ADD cart:42 tv - 1")).await;
    mutate(conn, &w("CART.ADD cart:42 mug - 2")).await;
}

/// CHECKOUT freezes the cart and returns the view with a token; mutations fail with FROZEN;
/// CART.GET shows the frozen view even after the catalog price changes; a retried CHECKOUT
/// returns the same token; COMPLETE deletes the cart, and a retried COMPLETE succeeds again.
#[tokio::test]
async fn checkout_freeze_complete_and_retries() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    seed(&mut conn).await;
    ok(&mut conn, &w("CATALOG.SET mug - 1400 USD")).await;
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    assert_eq!(frozen["status"], "checkout", "{frozen}");
    assert_eq!(frozen["validation"], "fresh");
    assert!(frozen["validated_at_ms"].as_i64().is_some(), "{frozen}");
    assert_eq!(
        frozen["items"][1]["unit_price"], 1400,
        "priced freshly at checkout"
    );
    assert_eq!(frozen["totals"]["total"], 52800);
    let token = checkout_token(&frozen);
    assert_eq!(token.len(), 32);
    let hold = frozen["checkout_expires_at_ms"].as_i64().expect("hold end");
    assert!(
        hold > frozen["updated_at_ms"].as_i64().unwrap() + 899_000,
        "{frozen}"
    );

    for args in [
        "CART.ADD cart:42 mug - 1",
        "CART.SET cart:42 mug - 5",
        "CART.REMOVE cart:42 tv -",
        "CART.CLEAR cart:42",
        "CART.SAVE cart:42 tv -",
        "CART.PROMO cart:42 ADD X",
    ] {
        let refused = fails(&mut conn, &w(args)).await;
        assert!(refused.starts_with("FROZEN "), "{args}: {refused}");
    }
    ok(&mut conn, &w("CATALOG.SET tv - 1 USD")).await;
    let seen = get(&mut conn, CART).await;
    assert_eq!(seen["status"], "checkout");
    assert_eq!(
        seen["items"][0]["unit_price"], 50000,
        "the frozen view is not re-priced"
    );
    assert_eq!(seen["totals"], frozen["totals"]);
    assert_eq!(checkout_token(&seen), token);

    let again = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    assert_eq!(
        checkout_token(&again),
        token,
        "a retried CHECKOUT is the same checkout"
    );
    assert_eq!(again["version"], frozen["version"]);

    let other = "0".repeat(32);
    let refused = fails(&mut conn, &["CART.COMPLETE", CART, &other]).await;
    assert!(refused.starts_with("TOKEN "), "{refused}");
    assert_eq!(
        ok(
            &mut conn,
            &["CART.COMPLETE", CART, &token, "ORDER", "ord-1"]
        )
        .await,
        Value::Okay
    );
    assert_eq!(ok(&mut conn, &w("CART.GET cart:42")).await, Value::Nil);
    assert_eq!(
        ok(
            &mut conn,
            &["CART.COMPLETE", CART, &token, "ORDER", "ord-1"]
        )
        .await,
        Value::Okay,
        "a retried COMPLETE succeeds again"
    );
    let refused = fails(&mut conn, &["CART.COMPLETE", CART, &other]).await;
    assert!(refused.starts_with("NOCART "), "{refused}");
}

/// RELEASE with the token unfreezes the cart (retry-safe); a wrong token is refused; after
/// release the cart changes again and a new CHECKOUT gets a new token.
#[tokio::test]
async fn release_unfreezes() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    seed(&mut conn).await;
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    let token = checkout_token(&frozen);
    let refused = fails(&mut conn, &["CART.RELEASE", CART, "nottoken"]).await;
    assert!(refused.starts_with("TOKEN "), "{refused}");
    let released = mutate(&mut conn, &["CART.RELEASE", CART, &token]).await;
    assert_eq!(released["status"], "active", "{released}");
    assert!(released.get("checkout_token").is_none());
    let again = mutate(&mut conn, &["CART.RELEASE", CART, &token]).await;
    assert_eq!(
        again["version"], released["version"],
        "a retried RELEASE changes nothing"
    );
    mutate(&mut conn, &w("CART.ADD cart:42 mug - 1")).await;
    let second = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    assert_ne!(checkout_token(&second), token);
    let refused = fails(&mut conn, &["CART.COMPLETE", CART, &token]).await;
    assert!(
        refused.starts_with("TOKEN "),
        "the released token is spent: {refused}"
    );
}

/// A hold that runs out unfreezes the cart by itself; its token can no longer complete it.
#[tokio::test]
async fn hold_runs_out() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    seed(&mut conn).await;
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42 HOLD 1").await;
    let token = checkout_token(&frozen);
    assert!(fails(&mut conn, &w("CART.ADD cart:42 mug - 1"))
        .await
        .starts_with("FROZEN "));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let view = get(&mut conn, CART).await;
    assert_eq!(view["status"], "active", "{view}");
    let refused = fails(&mut conn, &["CART.COMPLETE", CART, &token]).await;
    assert!(refused.starts_with("TOKEN "), "{refused}");
    let view = mutate(&mut conn, &w("CART.ADD cart:42 mug - 1")).await;
    assert_eq!(view["items"][1]["qty"], 3);
    assert!(view.get("checkout_token").is_none());
}

/// CHECKOUT refuses a missing cart, an empty one, and one with unavailable lines, naming
/// them; nothing changes.
#[tokio::test]
async fn checkout_refusals() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert!(fails(&mut conn, &w("CART.CHECKOUT cart:none"))
        .await
        .starts_with("NOCART "));
    seed(&mut conn).await;
    ok(&mut conn, &w("STOCK.SET tv - 0")).await;
    let refused = fails(&mut conn, &w("CART.CHECKOUT cart:42")).await;
    assert!(
        refused.starts_with("ERR ") && refused.contains("tv/-"),
        "{refused}"
    );
    let view = get(&mut conn, CART).await;
    assert_eq!(view["status"], "active");
    assert_eq!(view["unavailable"][0]["product"], "tv");
    mutate(&mut conn, &w("CART.REMOVE cart:42 tv - FROM UNAVAILABLE")).await;
    mutate(&mut conn, &w("CART.CLEAR cart:42")).await;
    let refused = fails(&mut conn, &w("CART.CHECKOUT cart:42")).await;
    assert!(
        refused.starts_with("ERR ") && refused.contains("no lines"),
        "{refused}"
    );
    for bad in ["HOLD 0", "HOLD 86401", "HOLD soon"] {
        let args = format!("CART.CHECKOUT cart:42 {bad}");
        assert!(
            fails(&mut conn, &w(&args)).await.starts_with("ERR "),
            "{bad}"
        );
    }
}

/// Gift card balances are reserved at checkout, returned by RELEASE, and spent by COMPLETE.
#[tokio::test]
async fn gift_cards_are_reserved_at_checkout() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET GC 60000 USD")).await;
    seed(&mut conn).await;
    mutate(&mut conn, &w("CART.GIFTCARD cart:42 ADD GC")).await;
    assert_eq!(
        gift_card(&mut conn).await["held"],
        0,
        "not reserved at apply"
    );
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    assert_eq!(frozen["totals"]["gift_card"], 53000);
    assert_eq!(frozen["totals"]["total"], 0);
    assert_eq!(
        gift_card(&mut conn).await,
        json!({"balance": 60000, "currency": "USD", "held": 53000, "holds": 1, "available": 7000})
    );
    // Another cart sees only what is left.
    mutate(&mut conn, &w("CART.ADD cart:7 tv - 1")).await;
    let other = mutate(&mut conn, &w("CART.GIFTCARD cart:7 ADD GC")).await;
    assert_eq!(other["gift_cards"][0]["applied"], 7000, "{other}");
    let token = checkout_token(&frozen);
    mutate(&mut conn, &["CART.RELEASE", CART, &token]).await;
    assert_eq!(gift_card(&mut conn).await["held"], 0);
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    let token = checkout_token(&frozen);
    ok(&mut conn, &["CART.COMPLETE", CART, &token, "ORDER", "A-1"]).await;
    assert_eq!(
        gift_card(&mut conn).await,
        json!({"balance": 7000, "currency": "USD", "held": 0, "holds": 0, "available": 7000})
    );
}

/// A frozen cart and its promo codes survive a restart (they are in the log), even though the
/// promotion itself, pushed into memory, is gone: the frozen pricing is the cart's.
#[tokio::test]
async fn checkout_survives_restart() {
    let mut cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w(r#"PROMO.SET TEN {"kind":"percent","percent":10}"#),
    )
    .await;
    seed(&mut conn).await;
    mutate(&mut conn, &w("CART.PROMO cart:42 ADD TEN")).await;
    let frozen = checkout(&mut conn, "CART.CHECKOUT cart:42").await;
    assert_eq!(frozen["totals"]["discount"], 5300);
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    cartd.restart();
    let mut conn = cartd.client(false).await;
    let seen = get(&mut conn, CART).await;
    assert_eq!(seen["status"], "checkout", "{seen}");
    assert_eq!(seen["checkout_token"], frozen["checkout_token"]);
    assert_eq!(seen["totals"], frozen["totals"]);
    assert_eq!(seen["promo_codes"], json!(["TEN"]));
}

/// A retried COMPLETE naming another ORDER id than the completion did used to reply OK and
/// drop the new id; it is a conflict now (as an IDEMPOTENCY token reused with other
/// arguments), also after a kill -9 and restart. The same ORDER id, or none given at first,
/// still replies OK.
#[tokio::test]
async fn a_retried_complete_with_another_order_id_is_a_conflict() {
    let mut cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    seed(&mut conn).await;
    let token = checkout_token(&checkout(&mut conn, &format!("CART.CHECKOUT {CART}")).await);
    ok(&mut conn, &["CART.COMPLETE", CART, &token, "ORDER", "A-1"]).await;
    for _ in 0..2 {
        let refused = fails(&mut conn, &["CART.COMPLETE", CART, &token, "ORDER", "B-2"]).await;
        assert_eq!(
            refused,
            "IDEMPOTENCY the checkout was completed with another ORDER id"
        );
        assert_eq!(
            ok(&mut conn, &["CART.COMPLETE", CART, &token, "ORDER", "A-1"]).await,
            Value::Okay
        );
        cartd.kill();
        cartd.restart();
        conn = cartd.client(true).await;
    }
}
