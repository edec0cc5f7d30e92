//! `CART.GET key IFCHANGED version`: null while the cart is still at that version, the whole
//! view once it moved on, NOCART once it is gone (a polling device pays a few bytes, not the
//! view). cartd refused the option as a syntax error.

use cartd_tests::{cmd, ok, w, Cartd};

#[tokio::test]
async fn ifchanged_is_null_until_the_cart_changes() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w("CART.ADD cart:p mug - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    let mut raw = cartd.raw().await;
    assert_eq!(
        raw.call(&["CART.GET", "cart:p", "IFCHANGED", "1"]).await,
        b"$-1\r\n",
        "still at version 1"
    );
    ok(&mut conn, &w("CART.ADD cart:p mug - 1")).await;
    let view = ok(&mut conn, &w("CART.GET cart:p IFCHANGED 1 FORMAT JSON")).await;
    let view = cartd_tests::json_reply(&view);
    assert_eq!(view["version"], 2);
    assert_eq!(view["items"][0]["qty"], 2);
    assert_eq!(
        raw.call(&["CART.GET", "cart:p", "IFCHANGED", "2"]).await,
        b"$-1\r\n"
    );
    ok(&mut conn, &w("DEL cart:p")).await;
    let gone = cmd(&mut conn, &w("CART.GET cart:p IFCHANGED 2")).await;
    assert!(
        gone.unwrap_err().starts_with("NOCART"),
        "gone, not unchanged"
    );
    assert_eq!(
        raw.call(&["CART.GET", "cart:p"]).await,
        b"$-1\r\n",
        "without IFCHANGED a missing cart is null as before"
    );
    let bad = cmd(&mut conn, &w("CART.GET cart:p IFCHANGED x")).await;
    assert!(bad.unwrap_err().starts_with("ERR"), "a version is a number");
}
