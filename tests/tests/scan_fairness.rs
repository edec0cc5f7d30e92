//! No single command holds up the other clients: a SCAN with the worst pattern measured
//! from a second client (docs/SECURITY.md). In a test binary of its own, so that no other
//! test of the same binary competes for the two cores while the PINGs are timed.

use std::time::Duration;

use cartd_tests::Cartd;

/// `SCAN 0 COUNT 100 MATCH "*[" + "x"*500000 + "]z"` used to freeze every client for 13 s
/// (the class was re-read for every byte of every key, under the shard lock). Now the
/// pattern is compiled once and matched outside the lock: a second client's PING, sent
/// every few milliseconds during the scan, never waits over 50 ms (the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scan_pattern_holds_up_other_clients() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let mut load = redis::pipe();
    for index in 0..3_000 {
        load.cmd("CART.ADD")
            .arg(format!("cart:{}{index}", "x".repeat(200)))
            .arg("sku")
            .arg("-")
            .arg("1")
            .arg("PRICE")
            .arg("100")
            .arg("CURRENCY")
            .arg("USD")
            .ignore();
    }
    let () = load.query_async(&mut conn).await.expect("load carts");
    let pattern = format!("*[{}]z", "x".repeat(500_000));
    let scanner = {
        let mut conn = cartd.client(false).await;
        tokio::spawn(async move {
            let mut cursor = "0".to_owned();
            let mut rounds = 0;
            let mut found = 0;
            loop {
                let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(100)
                    .arg("MATCH")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .expect("SCAN");
                found += keys.len();
                rounds += 1;
                if next == "0" || rounds == 40 {
                    return (rounds, found);
                }
                cursor = next;
            }
        })
    };
    let mut pinger = cartd.client(false).await;
    let mut slowest = Duration::ZERO;
    while !scanner.is_finished() {
        let started = std::time::Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut pinger)
            .await
            .expect("PING");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (rounds, found) = scanner.await.expect("the scanner");
    assert!(rounds >= 10, "the scan must run a while: {rounds} rounds");
    assert_eq!(found, 0, "no key ends in z");
    eprintln!("slowest PING during the scan: {slowest:?} ({rounds} rounds)");
    assert!(
        slowest < Duration::from_millis(50),
        "a PING waited {slowest:?} during the scan"
    );
}
