//! Server-wide capacity: `max_carts` refuses new carts with OOM but keeps existing ones
//! writable, and frees room as carts go.

use cartd_tests::{cmd, fails, int, ok, text, Cartd};
use redis::Value;

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

/// A `maxclients` the open-file limit cannot hold is lowered to what it can, with a warning
/// naming both, as Redis does: CONFIG GET and INFO tell the number in force, never a promise
/// the process could not keep.
#[tokio::test]
async fn maxclients_is_lowered_to_what_the_open_file_limit_holds() {
    let cartd = Cartd::start("[server]\nmaxclients = 1000000000\n");
    cartd.wait_for_log("maxclients lowered to");
    let mut client = cartd.client(false).await;
    let reply = cmd(&mut client, &["CONFIG", "GET", "maxclients"])
        .await
        .expect("CONFIG GET works");
    let Value::Array(pair) = reply else {
        panic!("CONFIG GET replies a list: {reply:?}");
    };
    let in_force: u64 = text(&pair[1]).parse().expect("a number");
    assert!(
        (1..1_000_000_000).contains(&in_force),
        "maxclients was lowered: {in_force}"
    );
    assert!(
        cartd
            .log()
            .contains(&format!("maxclients lowered to {in_force}")),
        "the warning names the number in force: {}",
        cartd.log()
    );
}
