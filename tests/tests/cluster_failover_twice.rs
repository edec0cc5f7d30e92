//! A group's primary and then the replica that took over both die; the first comes back and
//! takes over again (found by tests/tests/cluster_chaos.rs under load). Its log is the old
//! history: it forks from the lapsed lease's history where that one began (the lease's
//! `since_lsn`), not at its own last LSN. Taking its last LSN as the fork, it set the sink's
//! checkpoint past records PostgreSQL never had (its own last ones before it died), so the
//! deltas after them were refused and PostgreSQL kept an old version of the cart for good;
//! and it took back from PostgreSQL only the carts the other primary streamed past that LSN,
//! not those it streamed between the two forks.

use std::time::{Duration, Instant};

use cartd_tests::chaos::load::{cart_add, cart_version};
use cartd_tests::chaos::router::connect;
use cartd_tests::chaos::ChaosCluster;
use redis::aio::MultiplexedConnection;
use redis::Value;

async fn add(conn: &mut MultiplexedConnection, key: &str, sku: &str) -> i64 {
    cart_add(key, sku)
        .query_async(conn)
        .await
        .unwrap_or_else(|error| panic!("CART.ADD {key}: {error}"))
}

/// The cart's version on node `node` (a primary), if it has the cart.
async fn version(chaos: &ChaosCluster, node: u16, key: &str) -> Option<i64> {
    let mut conn = connect(chaos.addr(node)).await.expect("connect");
    cart_version(&mut conn, key).await
}

async fn postgres_version(chaos: &ChaosCluster, key: &str) -> Option<i64> {
    chaos.postgres_version(key).await
}

/// Waits until node `node` takes a write (it took the lease over).
async fn until_primary(chaos: &ChaosCluster, node: u16) -> MultiplexedConnection {
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = connect(chaos.addr(node)).await {
            if cart_add("cart:probe", "p")
                .query_async::<i64>(&mut conn)
                .await
                .is_ok()
            {
                return conn;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "n{} takes no write 30 s on:\n{}",
            node + 1,
            chaos.log(node)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// n1 writes what nobody else gets (its replica down, PostgreSQL cut off from it), dies; n2
/// takes over and streams more records than n1 had; n2 dies; n1 comes back and takes over.
/// PostgreSQL then follows n1's carts, and n1 has every cart n2 streamed to PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_primary_back_after_its_successor_died_streams_and_reloads_from_the_fork() {
    let chaos = ChaosCluster::up(1, 1).await;
    let mut n1 = connect(chaos.addr(0)).await.expect("connect");
    assert_eq!(add(&mut n1, "cart:a", "s1").await, 1);
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(&mut n1)
        .await
        .expect("WAIT");
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    chaos.kill9(1);
    chaos.proxy(0).cut();
    // Only n1 has these: a delta of cart:a, and a few carts more.
    assert_eq!(add(&mut n1, "cart:a", "s2").await, 2);
    for at in 0..4 {
        add(&mut n1, &format!("cart:only-n1-{at}"), "s").await;
    }
    chaos.kill9(0);
    chaos.restart(1);
    let mut n2 = until_primary(&chaos, 1).await;
    // More records than n1 had after the fork, each streamed to PostgreSQL.
    for at in 0..20 {
        add(&mut n2, &format!("cart:b{at}"), "s").await;
    }
    chaos.until_sink_caught_up(1).await.expect("n2's sink");
    chaos.kill9(1);
    chaos.proxy(0).mend();
    chaos.restart(0);
    let mut n1 = until_primary(&chaos, 0).await;
    let after = add(&mut n1, "cart:a", "s3").await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    assert_eq!(
        postgres_version(&chaos, "cart:a").await,
        Some(after),
        "PostgreSQL follows n1's cart:a (n1 has version {after}); n1's log:\n{}",
        chaos.log(0)
    );
    for at in 0..20 {
        let key = format!("cart:b{at}");
        assert_eq!(
            version(&chaos, 0, &key).await,
            postgres_version(&chaos, &key).await,
            "{key}: n2 streamed it to PostgreSQL; n1 took it back"
        );
    }
}

/// The same, but what n1 wrote after the fork reached PostgreSQL before it died (found by
/// tests/tests/cluster_chaos.rs under load): n2 took those carts back, changed one and
/// deleted another. Back, n1 must neither stream its own records past the fork again (they
/// put n1's old version of a cart over n2's in PostgreSQL, for good) nor keep carts from
/// them that n2's history changed or deleted: those carts are PostgreSQL's, and the
/// records are set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_primary_back_drops_its_streamed_records_past_the_fork() {
    let chaos = ChaosCluster::up(1, 1).await;
    let mut n1 = connect(chaos.addr(0)).await.expect("connect");
    assert_eq!(add(&mut n1, "cart:c", "s1").await, 1);
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(&mut n1)
        .await
        .expect("WAIT");
    chaos.kill9(1);
    // Past the fork, streamed: a delta of cart:c and a new cart.
    assert_eq!(add(&mut n1, "cart:c", "s2").await, 2);
    add(&mut n1, "cart:gone", "s").await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    assert_eq!(postgres_version(&chaos, "cart:c").await, Some(2));
    chaos.kill9(0);
    chaos.restart(1);
    let mut n2 = until_primary(&chaos, 1).await;
    assert_eq!(
        version(&chaos, 1, "cart:c").await,
        Some(2),
        "n2 took cart:c back"
    );
    assert_eq!(add(&mut n2, "cart:c", "s3").await, 3);
    let deleted: i64 = redis::cmd("DEL")
        .arg("cart:gone")
        .query_async(&mut n2)
        .await
        .expect("DEL");
    assert_eq!(deleted, 1, "n2 took cart:gone back too");
    chaos.until_sink_caught_up(1).await.expect("n2's sink");
    chaos.kill9(1);
    chaos.restart(0);
    let _n1 = until_primary(&chaos, 0).await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    let log = chaos.log(0);
    assert_eq!(
        version(&chaos, 0, "cart:c").await,
        Some(3),
        "n1 has n2's cart:c:\n{log}"
    );
    assert_eq!(
        postgres_version(&chaos, "cart:c").await,
        Some(3),
        "PostgreSQL keeps n2's cart:c:\n{log}"
    );
    assert_eq!(
        version(&chaos, 0, "cart:gone").await,
        None,
        "n2 deleted it:\n{log}"
    );
    assert_eq!(postgres_version(&chaos, "cart:gone").await, None);
}

/// A cart of one line of `price` on `conn`'s node, paid with gift card `code`, checked out
/// and completed.
async fn charge(conn: &mut MultiplexedConnection, key: &str, code: &str, price: i64) {
    let run = |args: Vec<String>| redis::cmd(&args[0]).arg(&args[1..]).clone();
    let words = |text: String| {
        text.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let add = format!("CART.ADD {key} item - 1 PRICE {price} CURRENCY USD REPLY VERSION");
    let _: i64 = run(words(add)).query_async(conn).await.expect("CART.ADD");
    let _: Value = run(words(format!("CART.GIFTCARD {key} ADD {code}")))
        .query_async(conn)
        .await
        .expect("CART.GIFTCARD ADD");
    let frozen: String = run(words(format!("CART.CHECKOUT {key} FORMAT JSON")))
        .query_async(conn)
        .await
        .expect("CART.CHECKOUT");
    let frozen: serde_json::Value = serde_json::from_str(&frozen).expect("JSON");
    let token = frozen["checkout_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let done: String = redis::cmd("CART.COMPLETE")
        .arg(key)
        .arg(token)
        .query_async(conn)
        .await
        .expect("CART.COMPLETE");
    assert_eq!(done, "OK");
}

/// GIFTCARD.SET `code` 1,000 USD on `conn`'s node, acknowledged by its replica (WAIT 1).
async fn set_card_waited(conn: &mut MultiplexedConnection, code: &str) {
    let set: String = redis::cmd("GIFTCARD.SET")
        .arg(code)
        .arg(1_000)
        .arg("USD")
        .query_async(conn)
        .await
        .expect("GIFTCARD.SET");
    assert_eq!(set, "OK");
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(conn)
        .await
        .expect("WAIT");
    assert_eq!(replicas, 1, "the replica has {code}");
}

/// Gift card `code`'s balance on `node`.
async fn balance(chaos: &ChaosCluster, node: u16, code: &str) -> Option<i64> {
    let mut conn = connect(chaos.addr(node)).await.expect("connect");
    let fields: Option<Vec<Value>> = redis::cmd("GIFTCARD.GET")
        .arg(code)
        .query_async(&mut conn)
        .await
        .expect("GIFTCARD.GET");
    fields?.chunks(2).find_map(|pair| match pair {
        [Value::BulkString(name), Value::Int(value)] if name == b"balance" => Some(*value),
        _ => None,
    })
}

/// n1 charges a card past the fork (streamed), dies; n2 takes the balance back, charges the
/// card again, dies; n1 back must not keep its own balance from past the fork: it takes
/// PostgreSQL's, which has both charges (the lag window's gift card rows; fails on 0f4f69c).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_primary_back_takes_the_gift_card_balances_past_the_fork_from_postgres() {
    let chaos = ChaosCluster::up(1, 1).await;
    let mut n1 = connect(chaos.addr(0)).await.expect("connect");
    set_card_waited(&mut n1, "G7").await;
    chaos.kill9(1);
    charge(&mut n1, "cart:first", "G7", 300).await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    chaos.kill9(0);
    chaos.restart(1);
    let mut n2 = until_primary(&chaos, 1).await;
    assert_eq!(
        balance(&chaos, 1, "G7").await,
        Some(700),
        "n2 took the charge back"
    );
    charge(&mut n2, "cart:second", "G7", 200).await;
    chaos.until_sink_caught_up(1).await.expect("n2's sink");
    chaos.kill9(1);
    chaos.restart(0);
    let _n1 = until_primary(&chaos, 0).await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    assert_eq!(
        balance(&chaos, 0, "G7").await,
        Some(500),
        "both charges stand:\n{}",
        chaos.log(0)
    );
    let stored: Option<i64> =
        sqlx::query_scalar("SELECT balance FROM gift_cards WHERE code = 'G7'")
            .fetch_optional(chaos.pool())
            .await
            .expect("read gift_cards");
    assert_eq!(stored, Some(500));
}

/// n1 charges a card past the fork that nobody else gets (its replica down, PostgreSQL cut
/// off from it), dies; n2 takes over and never sees the charge nor the checkout; n2 dies; n1
/// back takes the history n2 left: the completed cart is gone from it and so is the charge,
/// which is set aside with the records (no money taken for an order the cluster lost). Fails
/// on 9fae843: n1 kept the charge (700) while the order was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_primary_back_drops_a_charge_only_it_had() {
    let chaos = ChaosCluster::up(1, 1).await;
    let mut n1 = connect(chaos.addr(0)).await.expect("connect");
    set_card_waited(&mut n1, "G8").await;
    chaos.until_sink_caught_up(0).await.expect("n1's sink");
    chaos.kill9(1);
    chaos.proxy(0).cut();
    charge(&mut n1, "cart:lost", "G8", 300).await;
    assert_eq!(balance(&chaos, 0, "G8").await, Some(700));
    chaos.kill9(0);
    chaos.restart(1);
    let mut n2 = until_primary(&chaos, 1).await;
    for at in 0..20 {
        add(&mut n2, &format!("cart:n2-{at}"), "s").await;
    }
    chaos.until_sink_caught_up(1).await.expect("n2's sink");
    chaos.kill9(1);
    chaos.proxy(0).mend();
    chaos.restart(0);
    let _n1 = until_primary(&chaos, 0).await;
    assert_eq!(
        balance(&chaos, 0, "G8").await,
        Some(1_000),
        "the charge went with its order:\n{}",
        chaos.log(0)
    );
    assert_eq!(version(&chaos, 0, "cart:lost").await, None);
}
