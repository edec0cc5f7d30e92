//! `INFO errorstats` as Redis has it (`errorstat_<CODE>:count=<n>`, in the default sections),
//! so the Prometheus exporter's `redis_errors_total` works; errors inside EXEC count too, and
//! CONFIG RESETSTAT clears them. cartd had no such section.

use cartd_tests::{cmd, info, ok, w, Cartd};

#[tokio::test]
async fn errors_are_counted_by_code() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    for _ in 0..2 {
        assert!(cmd(&mut conn, &w("CART.SET cart:none mug - 1"))
            .await
            .is_err());
    }
    assert!(cmd(&mut conn, &w("CART.NOPE x")).await.is_err());
    let mut raw = cartd.raw().await;
    for command in [
        &["MULTI"][..],
        &["CART.SET", "cart:none", "mug", "-", "1"],
        &["EXEC"],
        &["MULTI"],
        &["CART.ADD"],
        &["EXEC"],
    ] {
        raw.call(command).await;
    }
    let stats = info(&mut conn, &[]).await;
    assert!(
        stats.contains("# Errorstats\r\n"),
        "in the default sections: {stats}"
    );
    let section = info(&mut conn, &["errorstats"]).await;
    for line in [
        "errorstat_NOCART:count=3",
        "errorstat_ERR:count=2",
        "errorstat_EXECABORT:count=1",
    ] {
        assert!(section.contains(line), "{line} in:\n{section}");
    }
    ok(&mut conn, &["CONFIG", "RESETSTAT"]).await;
    let section = info(&mut conn, &["errorstats"]).await;
    assert!(!section.contains("errorstat_"), "{section}");
}
