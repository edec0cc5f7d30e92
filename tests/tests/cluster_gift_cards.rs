//! Gift cards across a cluster (issue 13): a card belongs to the slot of its code, and the
//! primary serving that slot decides its holds and spends, so no card pays more than its
//! balance however many nodes check out with it. Three primaries, real processes
//! (`scripts/cluster`). Before this, every test here failed: a card lived only on the node
//! that took its GIFTCARD.SET, so the other nodes answered it as unknown.

use std::time::Duration;

use cartd_tests::cluster::LocalCluster;
use cartd_tests::{fails, ok, resp3_to_json};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

/// A RESP3 connection to node `node` (not cluster-aware: it goes where it is sent).
async fn node(cluster: &LocalCluster, node: u16) -> MultiplexedConnection {
    let url = format!("redis://127.0.0.1:{}/?protocol=resp3", cluster.port + node);
    let client = redis::Client::open(url).expect("a client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("a connection")
}

/// `GIFTCARD.GET code` as JSON.
async fn gift_card(conn: &mut MultiplexedConnection, code: &str) -> Json {
    resp3_to_json(&ok(conn, &["GIFTCARD.GET", code]).await)
}

/// The `count` first keys `{prefix}{n}` (or gift card codes) whose slot node `owner` serves.
async fn owned_by(cluster: &LocalCluster, owner: u16, prefix: &str, count: usize) -> Vec<String> {
    let mut conn = node(cluster, owner).await;
    let mut keys = Vec::new();
    for n in 0.. {
        let key = format!("{prefix}{n}");
        let served = redis::cmd("CART.GET")
            .arg(&key)
            .query_async::<redis::Value>(&mut conn)
            .await
            .is_ok(); // The others answer -MOVED.
        if served {
            keys.push(key);
            if keys.len() == count {
                return keys;
            }
        }
    }
    unreachable!()
}

/// A cart of one line of `price` with gift card `code`.
async fn add_card(conn: &mut MultiplexedConnection, key: &str, price: i64, code: &str) {
    let price = price.to_string();
    let add = [
        "CART.ADD", key, "item", "-", "1", "PRICE", &price, "CURRENCY", "USD",
    ];
    ok(conn, &add).await;
    ok(conn, &["CART.GIFTCARD", key, "ADD", code]).await;
}

/// A cart of one line of `price` with gift card `code`, checked out: its frozen view.
async fn check_out(conn: &mut MultiplexedConnection, key: &str, price: i64, code: &str) -> Json {
    add_card(conn, key, price, code).await;
    resp3_to_json(&ok(conn, &["CART.CHECKOUT", key]).await)
}

fn token(view: &Json) -> String {
    view["checkout_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkout_token in {view}"))
        .to_owned()
}

/// A GIFTCARD.SET acknowledged by one node is in effect on all three at once (whichever
/// owns the card), and so are DEL and a second SET; GIFTCARD.GET on every node shows the
/// owner's card.
#[tokio::test]
async fn a_card_set_on_one_node_is_the_same_on_every_node() {
    let cluster = LocalCluster::up(3, 0);
    let mut conns = Vec::new();
    for index in 0..3 {
        conns.push(node(&cluster, index).await);
    }
    // One card owned by each node, each set on the node after its owner.
    for owner in 0..3u16 {
        let code = &owned_by(&cluster, owner, "card-", 1).await[0];
        let setter = usize::from((owner + 1) % 3);
        ok(&mut conns[setter], &["GIFTCARD.SET", code, "2500", "USD"]).await;
        for conn in &mut conns {
            let card = gift_card(conn, code).await;
            assert_eq!(card["balance"], 2500, "{code}: {card}");
            assert_eq!(card["available"], 2500, "{code}: {card}");
        }
        ok(&mut conns[2], &["GIFTCARD.SET", code, "900", "USD"]).await;
        for conn in &mut conns {
            assert_eq!(gift_card(conn, code).await["balance"], 900, "{code}");
        }
        let removed = ok(&mut conns[1], &["GIFTCARD.DEL", code]).await;
        assert_eq!(removed, redis::Value::Int(1));
        for conn in &mut conns {
            assert_eq!(gift_card(conn, code).await, Json::Null, "{code}");
        }
    }
}

/// Four carts on each of the three primaries (one of them the card's owner) check out and
/// complete at once with one card of 10,000 while together they cost 18,000: what the
/// completions took adds up to at most the balance, the card's balance is what it was less
/// exactly that, and nothing stays held.
#[tokio::test]
async fn concurrent_checkouts_on_three_primaries_never_spend_more_than_the_balance() {
    const BALANCE: i64 = 10_000;
    const PRICE: i64 = 1_500;
    let cluster = LocalCluster::up(3, 0);
    let code = owned_by(&cluster, 1, "shared-card-", 1).await.remove(0);
    let mut first = node(&cluster, 0).await;
    ok(
        &mut first,
        &["GIFTCARD.SET", &code, &BALANCE.to_string(), "USD"],
    )
    .await;
    // Every cart holds the card before any checks out, so all twelve race for it.
    let mut carts = Vec::new();
    for owner in 0..3u16 {
        for key in owned_by(&cluster, owner, &format!("cart:n{owner}-"), 4).await {
            let mut conn = node(&cluster, owner).await;
            add_card(&mut conn, &key, PRICE, &code).await;
            carts.push((conn, key));
        }
    }
    let mut tasks = Vec::new();
    for (mut conn, key) in carts {
        tasks.push(tokio::spawn(async move {
            let frozen = resp3_to_json(&ok(&mut conn, &["CART.CHECKOUT", &key]).await);
            let paid = frozen["totals"]["gift_card"].as_i64().expect("a total");
            let complete = ["CART.COMPLETE", &key, &token(&frozen)];
            ok(&mut conn, &complete).await;
            paid
        }));
    }
    let mut spent = 0;
    for task in tasks {
        spent += task.await.expect("a checkout");
    }
    assert!(spent <= BALANCE, "the card paid {spent} of {BALANCE}");
    assert_eq!(spent, BALANCE, "18,000 of carts use all of it");
    for index in 0..3 {
        let card = gift_card(&mut node(&cluster, index).await, &code).await;
        assert_eq!(card["balance"], BALANCE - spent, "n{}: {card}", index + 1);
        assert_eq!(card["held"], 0, "n{}: {card}", index + 1);
    }
}

/// The card's owner is killed (-9) between a checkout's hold on another node and its
/// completion: once it is back the hold is still there (it was logged), the completion
/// spends it once, and the completion sent again spends nothing more.
#[tokio::test]
async fn the_owner_killed_between_hold_and_complete_spends_once() {
    let cluster = LocalCluster::up(3, 0);
    let code = owned_by(&cluster, 1, "kept-card-", 1).await.remove(0);
    let key = owned_by(&cluster, 0, "cart:kill-", 1).await.remove(0);
    let mut cart_node = node(&cluster, 0).await;
    ok(&mut cart_node, &["GIFTCARD.SET", &code, "5000", "USD"]).await;
    let frozen = check_out(&mut cart_node, &key, 3000, &code).await;
    assert_eq!(frozen["totals"]["gift_card"], 3000, "{frozen}");
    assert_eq!(gift_card(&mut cart_node, &code).await["held"], 3000);

    cluster.kill9(1);
    let refused = fails(&mut cart_node, &["GIFTCARD.GET", &code]).await;
    assert!(refused.contains("TRYAGAIN"), "{refused}");
    cluster.restart(1);
    let card = gift_card(&mut node(&cluster, 1).await, &code).await;
    assert_eq!(card["held"], 3000, "the hold survived: {card}");
    assert_eq!(card["available"], 2000, "{card}");
    // Another checkout meanwhile gets only what is left.
    let other = owned_by(&cluster, 2, "cart:other-", 1).await.remove(0);
    let other_view = check_out(&mut node(&cluster, 2).await, &other, 3000, &code).await;
    assert_eq!(other_view["totals"]["gift_card"], 2000, "{other_view}");

    let complete = ["CART.COMPLETE", &key, &token(&frozen)];
    ok(&mut cart_node, &complete).await;
    ok(&mut cart_node, &complete).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let card = gift_card(&mut cart_node, &code).await;
    assert_eq!(card["balance"], 2000, "spent once: {card}");
    assert_eq!(card["held"], 2000, "the other checkout's hold: {card}");
}

/// Waits until card `code` holds nothing at node `owner` (2 s at most).
async fn wait_unheld(cluster: &LocalCluster, owner: u16, code: &str) {
    let mut owner = node(cluster, owner).await;
    for _ in 0..100 {
        if gift_card(&mut owner, code).await["held"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the holds stay: {}", gift_card(&mut owner, code).await);
}

/// A checkout refused after its card's owner held for it (a line out of stock) leaves
/// nothing held there.
#[tokio::test]
async fn a_refused_checkout_gives_the_hold_back_at_the_owner() {
    let cluster = LocalCluster::up(3, 0);
    let code = owned_by(&cluster, 1, "refused-card-", 1).await.remove(0);
    let key = owned_by(&cluster, 0, "cart:refused-", 1).await.remove(0);
    let mut conn = node(&cluster, 0).await;
    ok(&mut conn, &["GIFTCARD.SET", &code, "5000", "USD"]).await;
    add_card(&mut conn, &key, 1000, &code).await;
    let add = [
        "CART.ADD", &key, "gone", "-", "1", "PRICE", "500", "CURRENCY", "USD",
    ];
    ok(&mut conn, &add).await;
    ok(
        &mut conn,
        &["CATALOG.SET", "gone", "-", "500", "USD", "STOCK", "0"],
    )
    .await;
    let refused = fails(&mut conn, &["CART.CHECKOUT", &key]).await;
    assert!(refused.contains("unavailable lines"), "{refused}");
    wait_unheld(&cluster, 1, &code).await;
}

/// A released checkout gives its hold back at the owner, and a cart deleted in checkout too.
#[tokio::test]
async fn release_and_delete_give_the_hold_back_at_the_owner() {
    let cluster = LocalCluster::up(3, 0);
    let code = owned_by(&cluster, 2, "released-card-", 1).await.remove(0);
    let keys = owned_by(&cluster, 0, "cart:released-", 2).await;
    let mut conn = node(&cluster, 0).await;
    ok(&mut conn, &["GIFTCARD.SET", &code, "5000", "USD"]).await;
    let frozen = check_out(&mut conn, &keys[0], 1200, &code).await;
    check_out(&mut conn, &keys[1], 800, &code).await;
    assert_eq!(gift_card(&mut conn, &code).await["held"], 2000);
    ok(&mut conn, &["CART.RELEASE", &keys[0], &token(&frozen)]).await;
    ok(&mut conn, &["DEL", &keys[1]]).await;
    wait_unheld(&cluster, 2, &code).await;
}
