//! Server-wide capacity: `max_carts` refuses new carts with OOM but keeps existing ones
//! writable, and frees room as carts go.

use cartd_tests::{fails, int, ok, Cartd};

/// With max_carts = 3, a fourth cart is refused with OOM and nothing is created; carts that
/// exist keep accepting changes; deleting one makes room again; DBSIZE follows exactly.
#[tokio::test]
async fn max_carts_refuses_new_carts_only() {
    let cartd = Cartd::start("[carts]\nmax_carts = 3\n");
    let mut client = cartd.client(false).await;
    for n in 0..3 {
        let key = format!("cart:{n}");
        ok(
            &mut client,
            &[
                "CART.ADD", &key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD",
            ],
        )
        .await;
    }
    let error = fails(
        &mut client,
        &[
            "CART.ADD", "cart:3", "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD",
        ],
    )
    .await;
    assert_eq!(
        error,
        "OOM command not allowed: the store holds max_carts (3) carts"
    );
    assert_eq!(int(&ok(&mut client, &["EXISTS", "cart:3"]).await), 0);
    assert_eq!(int(&ok(&mut client, &["DBSIZE"]).await), 3);
    let version = ok(
        &mut client,
        &["CART.ADD", "cart:0", "sku", "-", "1", "REPLY", "VERSION"],
    )
    .await;
    assert_eq!(int(&version), 2, "an existing cart still takes changes");
    assert_eq!(int(&ok(&mut client, &["DEL", "cart:1"]).await), 1);
    assert_eq!(int(&ok(&mut client, &["DBSIZE"]).await), 2);
    ok(
        &mut client,
        &[
            "CART.ADD", "cart:3", "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD",
        ],
    )
    .await;
    assert_eq!(int(&ok(&mut client, &["DBSIZE"]).await), 3);
    // A merge into a missing user cart moves the guest cart: the count stays, nothing refused.
    ok(
        &mut client,
        &["CART.MERGE", "cart:3", "cart:new", "REPLY", "NONE"],
    )
    .await;
    assert_eq!(int(&ok(&mut client, &["DBSIZE"]).await), 3);
    assert_eq!(
        int(&ok(&mut client, &["EXISTS", "cart:3", "cart:new"]).await),
        1
    );
}
