//! `used_memory` is what the allocator holds (jemalloc's count), as Redis reports it, apart
//! from `used_memory_rss`; tools such as `redis-cli --memkeys` and the Prometheus exporter read
//! both. cartd used to report the resident size for both.

use cartd_tests::{info, info_number, Cartd};

#[tokio::test]
async fn used_memory_is_the_allocators_count() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let before = info(&mut conn, &["memory"]).await;
    let (used, rss) = (
        info_number(&before, "used_memory"),
        info_number(&before, "used_memory_rss"),
    );
    assert!(used > 0 && used < rss, "used_memory {used}, rss {rss}");
    let mut pipe = redis::pipe();
    for cart in 0..20_000 {
        pipe.cmd("CART.ADD")
            .arg(format!("cart:{cart}"))
            .arg("mug")
            .arg("-")
            .arg("1")
            .arg("PRICE")
            .arg("100")
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("NONE");
    }
    let _: Vec<redis::Value> = pipe.query_async(&mut conn).await.unwrap();
    let after = info(&mut conn, &["memory"]).await;
    let grown = info_number(&after, "used_memory").saturating_sub(used);
    assert!(
        grown >= 20_000 * 40,
        "20,000 carts grew used_memory by {grown} bytes:\n{after}"
    );
}
