//! A group's primary and then the replica that took over both die; the first comes back and
//! takes over again (found by tests/tests/cluster_chaos.rs under load). Its log is the old
//! history: it forks from the lapsed lease's history where that one began (the lease's
//! `since_lsn`), not at its own last LSN. Taking its last LSN as the fork, it set the sink's
//! checkpoint past records PostgreSQL never had (its own last ones before it died), so the
//! deltas after them were refused and PostgreSQL kept an old version of the cart for good;
//! and it took back from PostgreSQL only the carts the other primary streamed past that LSN,
//! not those it streamed between the two forks.

use std::time::{Duration, Instant};

use cartd_tests::chaos::load::cart_add;
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
    let reply: Value = redis::cmd("CART.GET")
        .arg(key)
        .arg("NOVALIDATE")
        .arg("FORMAT")
        .arg("JSON")
        .query_async(&mut conn)
        .await
        .expect("CART.GET");
    let Value::BulkString(json) = reply else {
        return None;
    };
    let view: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    view["version"].as_i64()
}

async fn postgres_version(chaos: &ChaosCluster, key: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT version FROM carts WHERE key = $1")
        .bind(key)
        .fetch_optional(chaos.pool())
        .await
        .expect("read carts")
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
