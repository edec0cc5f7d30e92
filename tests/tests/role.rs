//! `ROLE` as a Redis master answers it (clients such as redis-py's Sentinel support and ops
//! tools ask it): master, the replication offset (the log's last LSN), no replicas. cartd
//! refused it as an unknown command.

use cartd_tests::{array, int, ok, text, w, Cartd};

#[tokio::test]
async fn role_is_master_at_its_log_position() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let role = ok(&mut conn, &["ROLE"]).await;
    let first = int(&array(&role)[1]);
    assert_eq!(text(&array(&role)[0]), "master");
    assert!(array(&array(&role)[2]).is_empty(), "no replicas");
    ok(
        &mut conn,
        &w("CART.ADD cart:r mug - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    let role = ok(&mut conn, &["ROLE"]).await;
    assert_eq!(
        int(&array(&role)[1]),
        first + 1,
        "one change, one LSN further"
    );
}
