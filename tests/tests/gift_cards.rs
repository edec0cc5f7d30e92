//! Gift cards never pay more than their balance: what a checkout shows a card paying is what
//! is held on it, a card full of holds pays nothing more (and says why), completions spend
//! exactly their holds, a held card cannot be deleted, lowered or switched to another
//! currency, and a cart in checkout that is deleted or expires gives its holds back.
//! Every test runs its own cartd; the first also checks the checkout events in PostgreSQL.

use std::time::{Duration, Instant};

use cartd_tests::{fails, mutate, ok, resp3_to_json, w, wait_for_sink, Cartd, TestDb};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value as Json};

/// `GIFTCARD.GET code` as JSON (the connection speaks RESP3).
async fn gift_card(conn: &mut MultiplexedConnection, code: &str) -> Json {
    resp3_to_json(&ok(conn, &["GIFTCARD.GET", code]).await)
}

/// A cart of one line of `price`, paid with gift card `code`, checked out: its frozen view.
async fn check_out(conn: &mut MultiplexedConnection, key: &str, price: i64, code: &str) -> Json {
    let price = price.to_string();
    let add = [
        "CART.ADD", key, "item", "-", "1", "PRICE", &price, "CURRENCY", "USD",
    ];
    mutate(conn, &add).await;
    mutate(conn, &["CART.GIFTCARD", key, "ADD", code]).await;
    mutate(conn, &["CART.CHECKOUT", key]).await
}

fn token(view: &Json) -> String {
    view["checkout_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkout_token in {view}"))
        .to_owned()
}

/// The reproduction: a card with 64 one-unit checkouts (GIFT_CARD_HOLDS_MAX) used to
/// pay 9,936 for each of three more carts while its balance stayed at 10,000. Now those
/// carts' checkouts show the card paying nothing (`holds_full`), their completions take
/// nothing, and the card, once the 64 complete, has paid exactly 64, as the checkout events
/// in PostgreSQL say too.
#[tokio::test]
async fn a_card_full_of_holds_pays_nothing_more() {
    let db = TestDb::create().await;
    let config = format!("[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\n", db.url);
    let cartd = Cartd::start_async(&config).await;
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 10000 USD")).await;
    let mut small = Vec::new();
    for index in 0..64 {
        let frozen = check_out(&mut conn, &format!("cart:small{index}"), 1, "G1").await;
        assert_eq!(frozen["totals"]["gift_card"], 1, "{frozen}");
        small.push(token(&frozen));
    }
    assert_eq!(gift_card(&mut conn, "G1").await["held"], 64);
    for index in 0..3 {
        let key = format!("cart:big{index}");
        let frozen = check_out(&mut conn, &key, 9936, "G1").await;
        let used = &frozen["gift_cards"][0];
        assert_eq!(used["applied"], 0, "{frozen}");
        assert_eq!(used["reason"], "holds_full", "{frozen}");
        assert_eq!(frozen["totals"]["gift_card"], 0);
        assert_eq!(frozen["totals"]["total"], 9936);
        ok(&mut conn, &["CART.COMPLETE", &key, &token(&frozen)]).await;
    }
    let card = gift_card(&mut conn, "G1").await;
    assert_eq!(
        (&card["balance"], &card["held"]),
        (&json!(10000), &json!(64))
    );
    assert_eq!(card["holds"], 64);
    for (index, token) in small.iter().enumerate() {
        ok(
            &mut conn,
            &["CART.COMPLETE", &format!("cart:small{index}"), token],
        )
        .await;
    }
    let card = gift_card(&mut conn, "G1").await;
    assert_eq!(
        card,
        json!({"balance": 9936, "currency": "USD", "held": 0, "holds": 0, "available": 9936})
    );
    wait_for_sink(&mut conn).await;
    let claimed: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum((g->>'amount')::bigint), 0)::bigint FROM cart_events, \
         jsonb_array_elements(payload->'gift_cards') AS g \
         WHERE kind = 'checkout' AND g->>'code' = 'G1'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("sum the checkout events");
    assert_eq!(claimed, 64, "the events claim exactly what the card paid");
    assert_eq!(
        db.count("SELECT count(*) FROM cart_events WHERE kind = 'checkout'")
            .await,
        67
    );
}

/// While a checkout holds part of a card, GIFTCARD.DEL, a balance below the held sum and a
/// new currency are refused with -GIFTCARD, changing nothing; raising the balance is fine;
/// after RELEASE all of it is allowed again.
#[tokio::test]
async fn a_held_card_cannot_be_deleted_lowered_or_switched() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 5000 USD")).await;
    let frozen = check_out(&mut conn, "cart:1", 3000, "G1").await;
    assert_eq!(frozen["totals"]["gift_card"], 3000);
    for refused in [
        "GIFTCARD.DEL G1",
        "GIFTCARD.SET G1 2999 USD",
        "GIFTCARD.SET G1 5000 EUR",
    ] {
        let error = fails(&mut conn, &w(refused)).await;
        assert!(
            error.starts_with("GIFTCARD ") && error.contains("3000 held by 1 checkouts"),
            "{refused}: {error}"
        );
    }
    let card = gift_card(&mut conn, "G1").await;
    assert_eq!(
        (&card["balance"], &card["held"]),
        (&json!(5000), &json!(3000))
    );
    ok(&mut conn, &w("GIFTCARD.SET G1 3000 USD")).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 8000 USD")).await;
    ok(&mut conn, &["CART.RELEASE", "cart:1", &token(&frozen)]).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 100 EUR")).await;
    assert_eq!(
        ok(&mut conn, &w("GIFTCARD.DEL G1")).await,
        redis::Value::Int(1)
    );
}

/// DEL of a cart in checkout, and its expiry, give back what its checkout held.
#[tokio::test]
async fn a_deleted_or_expired_cart_gives_its_holds_back() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 5000 USD")).await;
    check_out(&mut conn, "cart:1", 3000, "G1").await;
    assert_eq!(gift_card(&mut conn, "G1").await["held"], 3000);
    ok(&mut conn, &w("DEL cart:1")).await;
    assert_eq!(
        gift_card(&mut conn, "G1").await["held"],
        0,
        "DEL released it"
    );
    drop(conn);
    drop(cartd);

    let cartd = Cartd::start_async("[carts]\nguest_ttl_s = 1\n").await;
    let mut conn = cartd.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 5000 USD")).await;
    check_out(&mut conn, "cart:guest:1", 2000, "G1").await;
    assert_eq!(gift_card(&mut conn, "G1").await["held"], 2000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gift_card(&mut conn, "G1").await["held"] != 0 {
        assert!(Instant::now() < deadline, "the expired cart kept its hold");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ok(&mut conn, &w("EXISTS cart:guest:1")).await,
        redis::Value::Int(0)
    );
    assert_eq!(gift_card(&mut conn, "G1").await["available"], 5000);
}
