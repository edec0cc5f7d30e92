//! One admission step before anything runs (docs/SECURITY.md): an unauthenticated client
//! starts no PostgreSQL lookup and cannot SHUTDOWN; restore-on-miss takes its keys from the
//! command table, so every cart command finds a user cart that only PostgreSQL holds; the
//! table says what each command does (CART.GET writes). Needs the suite's PostgreSQL.

use cartd_tests::{
    cmd, fails, info_number, int, ok, resp3_to_json, w, wait_for_sink, Cartd, TestDb,
};

/// A node that has never seen the user carts `cart:u1..=cart:u8`, which PostgreSQL holds
/// (written by another node), with restore-on-miss on and `extra` in its `[server]`.
async fn reader_of_postgres_carts(db: &TestDb, server_extra: &str) -> Cartd {
    let writer_config = format!(
        "[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\nnode = \"writer\"\n",
        db.url
    );
    let writer = Cartd::start_async(&writer_config).await;
    let mut conn = writer.client(false).await;
    for index in 1..=8 {
        let key = format!("cart:u{index}");
        ok(
            &mut conn,
            &[
                "CART.ADD", &key, "sku", "-", "1", "PRICE", "500", "CURRENCY", "USD",
            ],
        )
        .await;
    }
    wait_for_sink(&mut conn).await;
    drop(conn);
    drop(writer);
    let mut reader = Cartd::start_async("").await;
    let mut conn = reader.client(false).await;
    ok(
        &mut conn,
        &w("CART.ADD cart:own sku - 1 PRICE 1 CURRENCY USD"),
    )
    .await;
    drop(conn);
    assert!(reader.stop_gracefully().success());
    let config = format!(
        "[server]\n{server_extra}\n[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\nnode = \"reader\"\n\
         restore_on_miss = true\n",
        db.url
    );
    std::fs::write(reader.config_path(), config).expect("rewrite the config");
    reader.restart();
    reader
}

/// restore-on-miss kept its own table of commands and keys, which had drifted: CART.PROMO,
/// CART.GIFTCARD, CART.CHECKOUT, CART.COMPLETE and CART.RELEASE replied NOCART for a user
/// cart only PostgreSQL held. Every command with a key now looks it up.
#[tokio::test]
async fn every_cart_command_finds_a_cart_only_postgres_holds() {
    let db = TestDb::create().await;
    let reader = reader_of_postgres_carts(&db, "").await;
    let mut conn = reader.client(true).await;
    ok(&mut conn, &w("GIFTCARD.SET G1 100 USD")).await;
    ok(
        &mut conn,
        &["PROMO.SET", "TEN", r#"{"kind":"percent","percent":10}"#],
    )
    .await;
    let applied = resp3_to_json(&ok(&mut conn, &w("CART.GIFTCARD cart:u1 ADD G1")).await);
    assert_eq!(applied["items"][0]["product"], "sku", "{applied}");
    let promo = cmd(&mut conn, &w("CART.PROMO cart:u2 ADD TEN")).await;
    assert!(
        !format!("{promo:?}").contains("NOCART"),
        "CART.PROMO of a cart in PostgreSQL: {promo:?}"
    );
    let frozen = resp3_to_json(&ok(&mut conn, &w("CART.CHECKOUT cart:u3")).await);
    assert_eq!(frozen["status"], "checkout", "{frozen}");
    let wrong = "0".repeat(32);
    let error = fails(&mut conn, &["CART.COMPLETE", "cart:u4", &wrong]).await;
    assert!(
        error.starts_with("TOKEN"),
        "CART.COMPLETE of a cart in PostgreSQL must find it: {error}"
    );
    // RELEASE of a cart not in checkout replies the cart as it is.
    let released = resp3_to_json(&ok(&mut conn, &["CART.RELEASE", "cart:u5", &wrong]).await);
    assert_eq!(released["id"], "cart:u5", "{released}");
    assert_eq!(int(&ok(&mut conn, &w("EXISTS cart:u6")).await), 1);
    assert_eq!(int(&ok(&mut conn, &w("DEL cart:u7")).await), 1);
}

/// restore-on-miss ran before authentication: an unauthenticated client made cartd query
/// PostgreSQL. Admission comes first now: NOAUTH, and no lookup.
#[tokio::test]
async fn an_unauthenticated_client_starts_no_postgres_lookup() {
    let db = TestDb::create().await;
    let reader = reader_of_postgres_carts(&db, "requirepass = \"s3cret\"").await;
    let mut raw = reader.raw().await;
    for key in ["cart:u1", "cart:u2", "cart:u3"] {
        let reply = raw.call(&["CART.GET", key]).await;
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "-NOAUTH Authentication required.\r\n"
        );
    }
    assert_eq!(raw.call(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    let text = String::from_utf8_lossy(&raw.call(&["INFO", "persistence"]).await).into_owned();
    assert_eq!(info_number(&text, "postgres_restore_lookups"), 0, "{text}");
    let reply = raw.call(&["EXISTS", "cart:u1"]).await;
    assert_eq!(reply, b":1\r\n");
    let text = String::from_utf8_lossy(&raw.call(&["INFO", "persistence"]).await).into_owned();
    assert_eq!(info_number(&text, "postgres_restore_lookups"), 1);
}

/// SHUTDOWN ran without AUTH when requirepass was set. Redis answers NOAUTH.
#[tokio::test]
async fn shutdown_needs_authentication() {
    let mut cartd = Cartd::start_async("[server]\nrequirepass = \"s3cret\"\n").await;
    let mut raw = cartd.raw().await;
    for shutdown in [&["SHUTDOWN"][..], &["SHUTDOWN", "NOSAVE"]] {
        let reply = raw.call(shutdown).await;
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "-NOAUTH Authentication required.\r\n"
        );
    }
    assert_eq!(raw.call(&["AUTH", "s3cret"]).await, b"+OK\r\n");
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    raw.send(&cartd_tests::encode_command(&["SHUTDOWN"])).await;
    assert!(cartd.wait_exit().success());
}

/// CART.GET was flagged readonly but writes (it renews the TTL and moves lines that became
/// unavailable). COMMAND INFO says write now, and lists the ACL categories.
#[tokio::test]
async fn the_command_table_says_what_each_command_does() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let info = ok(&mut conn, &w("COMMAND INFO cart.get cart.checkout ping")).await;
    let text = format!("{info:?}");
    let cart_get = &cartd_tests::array(&info)[0];
    let flags = format!("{:?}", cartd_tests::array(cart_get)[2]);
    assert!(
        flags.contains("write") && !flags.contains("readonly"),
        "{flags}"
    );
    let categories = format!("{:?}", cartd_tests::array(cart_get)[6]);
    for category in ["@write", "@fast", "@cart"] {
        assert!(categories.contains(category), "{categories}");
    }
    assert!(text.contains("@checkout"), "{text}");
    assert!(text.contains("@connection"), "{text}");
}
