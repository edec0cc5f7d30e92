//! What remembering IDEMPOTENCY tokens costs and how it ends: a token costs tens of bytes
//! whatever the size of the reply it guards (it used to keep a copy of the reply: 20,000
//! tokens on a 200-line cart took 3.9 GB), and a token pushed out early by
//! `max_idempotency_keys` refuses its retry instead of applying it a second time, also after a
//! restart.

use cartd_tests::{fails, info, info_number, int, ok, w, Cartd};

/// 1,000 idempotent changes of a 200-line cart, each replying the whole cart (about 40 KB):
/// the memory INFO reports per remembered token stays within 64 bytes plus the token, and
/// the server's resident memory grows by far less than the replies would take (40 MB).
#[tokio::test]
async fn a_remembered_token_costs_little_whatever_its_reply() {
    let cartd = Cartd::start_async("").await;
    let mut conn = cartd.client(false).await;
    for line in 0..200 {
        let product = format!("sku-{line:03}");
        let args = [
            "CART.ADD", "cart:big", &product, "-", "1", "PRICE", "1999", "CURRENCY", "USD",
            "REPLY", "NONE",
        ];
        ok(&mut conn, &args).await;
    }
    let rss_before = info_number(&info(&mut conn, &["memory"]).await, "used_memory_rss");
    let token_bytes = 36;
    for request in 0..1000 {
        let token = format!("{request:0>36}");
        let qty = (request % 9 + 1).to_string();
        let args = [
            "CART.SET",
            "cart:big",
            "sku-007",
            "-",
            &qty,
            "IDEMPOTENCY",
            &token,
        ];
        let reply = ok(&mut conn, &args).await;
        assert!(
            matches!(reply, redis::Value::Array(_)),
            "the whole cart replied"
        );
    }
    let memory = info(&mut conn, &["memory"]).await;
    let grown = info_number(&memory, "used_memory_rss").saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024 * 1024,
        "resident memory grew by {grown} bytes for 1,000 tokens"
    );
    assert_eq!(info_number(&memory, "idempotency_keys"), 1000);
    let per_key = info_number(&memory, "idempotency_bytes_per_key");
    assert!(
        per_key <= 64 + token_bytes,
        "{per_key} bytes per remembered token:\n{memory}"
    );
    // A retry still replays: the cart as it is, unchanged.
    let args = [
        "CART.SET",
        "cart:big",
        "sku-007",
        "-",
        "1",
        "IDEMPOTENCY",
        "last",
        "REPLY",
        "VERSION",
    ];
    let first_version = int(&ok(&mut conn, &args).await);
    let again = ok(&mut conn, &args).await;
    assert_eq!(int(&again), first_version);
}

/// With room for three tokens, a fourth pushes the first out: the first one's retry is refused
/// with -IDEMPOTENCY (it was applied once; it is not applied again), after a restart too.
#[tokio::test]
async fn an_evicted_token_is_refused_not_applied_again() {
    let config = "[server]\nshards = 1\n[carts]\nmax_idempotency_keys = 3\n";
    let mut cartd = Cartd::start_async(config).await;
    let mut conn = cartd.client(false).await;
    let add = |token: &str| {
        format!("CART.ADD cart:1 mug - 1 PRICE 100 CURRENCY USD IDEMPOTENCY {token} REPLY VERSION")
    };
    for (version, token) in ["t1", "t2", "t3", "t4"].iter().enumerate() {
        assert_eq!(
            int(&ok(&mut conn, &w(&add(token))).await),
            version as i64 + 1
        );
    }
    let memory = info(&mut conn, &["memory"]).await;
    assert_eq!(info_number(&memory, "idempotency_evicted"), 1, "{memory}");
    for round in ["before a restart", "after a restart"] {
        let refused = fails(&mut conn, &w(&add("t1"))).await;
        assert!(
            refused.starts_with("IDEMPOTENCY ") && refused.contains("no longer remembered"),
            "{round}: {refused}"
        );
        assert_eq!(
            int(&ok(&mut conn, &w(&add("t4"))).await),
            4,
            "{round}: t4 replays"
        );
        let version = ok(&mut conn, &w("CART.GET cart:1 FORMAT JSON")).await;
        let view = cartd_tests::json_reply(&version);
        assert_eq!(
            (&view["version"], &view["items"][0]["qty"]),
            (&4.into(), &4.into())
        );
        ok(&mut conn, &["SAVE"]).await;
        drop(conn);
        assert!(cartd.stop_gracefully().success());
        cartd.restart();
        conn = cartd.client(false).await;
    }
}

/// An idempotent retry after the cart was deleted used to reply the version of a cart that
/// no longer existed; it is a null reply now, as with REPLY CART.
#[tokio::test]
async fn a_retry_after_del_names_no_version() {
    let cartd = cartd_tests::Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let add = [
        "CART.ADD",
        "cart:gone",
        "sku",
        "-",
        "1",
        "PRICE",
        "5",
        "CURRENCY",
        "USD",
        "IDEMPOTENCY",
        "t-gone",
        "REPLY",
        "VERSION",
    ];
    assert_eq!(cartd_tests::ok(&mut conn, &add).await, redis::Value::Int(1));
    assert_eq!(cartd_tests::ok(&mut conn, &add).await, redis::Value::Int(1));
    cartd_tests::ok(&mut conn, &["DEL", "cart:gone"]).await;
    assert_eq!(cartd_tests::ok(&mut conn, &add).await, redis::Value::Nil);
}
