//! `COMMAND GETKEYS` and `COMMAND HELP`, as Redis answers them (cluster-aware clients and
//! proxies use GETKEYS to route a request). cartd refused both as unknown subcommands.

use cartd_tests::{array, cmd, ok, text, w, Cartd};

#[tokio::test]
async fn getkeys_names_a_requests_carts() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let keys = ok(
        &mut conn,
        &w("COMMAND GETKEYS CART.MERGE cart:guest:1 cart:u1"),
    )
    .await;
    let keys: Vec<String> = array(&keys).iter().map(text).collect();
    // A merge is declared (and routed in a cluster) by its user cart, whose node takes the
    // guest cart; the ACL still checks both.
    assert_eq!(keys, ["cart:u1"]);
    let keys = ok(&mut conn, &w("COMMAND GETKEYS DEL a b c")).await;
    assert_eq!(array(&keys).len(), 3);
    for (request, error) in [
        ("COMMAND GETKEYS NOPE x", "ERR Invalid command specified"),
        (
            "COMMAND GETKEYS CART.ADD x",
            "ERR Invalid number of arguments specified for command",
        ),
        (
            "COMMAND GETKEYS PING",
            "ERR The command has no key arguments",
        ),
    ] {
        let refused = cmd(&mut conn, &w(request)).await.unwrap_err();
        assert!(refused.starts_with(error), "{request}: {refused}");
    }
    let help = ok(&mut conn, &w("COMMAND HELP")).await;
    assert!(array(&help)
        .iter()
        .map(text)
        .any(|line| line.starts_with("GETKEYS")));
}
