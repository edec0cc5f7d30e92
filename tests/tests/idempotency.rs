//! What remembering IDEMPOTENCY tokens costs and how it ends: a token costs tens of bytes
//! whatever the size of the reply it guards (it used to keep a copy of the reply: 20,000
//! tokens on a 200-line cart took 3.9 GB), and a token pushed out early by
//! its cart's `max_idempotency_keys_per_cart` refuses its retry instead of applying it a second
//! time, also after a restart; and no count of tokens on other carts pushes a cart's token out
//! (a full memory refuses new tokens with -OOM instead).

use cartd_tests::{cmd, fails, info, info_number, int, ok, w, Cartd};

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

/// With room for three tokens per cart, a fourth pushes the cart's first out: the first one's
/// retry is refused with -IDEMPOTENCY (it was applied once; it is not applied again), after a
/// restart too.
#[tokio::test]
async fn an_evicted_token_is_refused_not_applied_again() {
    let config = "[server]\nshards = 1\n[carts]\nmax_idempotency_keys_per_cart = 3\n";
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

/// One client flooding tokens, on its own cart and on thousands of new carts, used to push
/// every other cart's token out of memory and out of the traces that refuse retries, so a
/// victim's retried add was applied twice. Now a full memory refuses new tokens (-OOM) instead
/// of pushing out anyone's (a cart past its own bound pushes out only its own: the test above).
#[tokio::test]
async fn a_flood_of_tokens_cannot_make_another_carts_retry_apply_twice() {
    let config = "[server]\nshards = 1\n[carts]\nmax_idempotency_keys = 64\n";
    let cartd = Cartd::start_async(config).await;
    let mut victim = cartd.client(false).await;
    let mut attacker = cartd.client(false).await;
    let pay =
        w("CART.ADD cart:victim gift - 1 PRICE 5000 CURRENCY USD IDEMPOTENCY pay-1 REPLY VERSION");
    assert_eq!(int(&ok(&mut victim, &pay).await), 1);
    ok(
        &mut attacker,
        &w("CART.ADD cart:attacker sku - 1 PRICE 1 CURRENCY USD"),
    )
    .await;
    let mut refused = 0;
    for index in 0..3_000 {
        let own = format!(
            "CART.SET cart:attacker sku - {} IDEMPOTENCY own-{index} REPLY NONE",
            1 + index % 2
        );
        let other = format!(
            "CART.ADD cart:flood-{index} sku - 1 PRICE 1 CURRENCY USD IDEMPOTENCY t REPLY NONE"
        );
        for request in [own, other] {
            if let Err(error) = cmd(&mut attacker, &w(&request)).await {
                assert!(error.starts_with("OOM "), "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        int(&ok(&mut victim, &pay).await),
        1,
        "the retry replays; it is not applied a second time"
    );
    let view = cartd_tests::stored(&mut victim, "cart:victim").await;
    assert_eq!(view["items"][0]["qty"], 1);
    let memory = info(&mut victim, &["memory"]).await;
    assert_eq!(
        refused,
        6_000 - 63,
        "all but what fitted beside the victim's token"
    );
    assert_eq!(
        info_number(&memory, "idempotency_refused"),
        refused,
        "{memory}"
    );
    assert_eq!(info_number(&memory, "idempotency_keys"), 64, "{memory}");
}
