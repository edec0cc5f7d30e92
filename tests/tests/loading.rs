//! The loading state: while cartd recovers its data (here held there for as long as the test
//! wants by a PostgreSQL that cannot be reached), every command the table allows while loading
//! answers on a connection that stays usable, and every other command gets `-LOADING`.

use cartd_tests::{cmd, int, text, Cartd};
use redis::Value;

/// A PostgreSQL nobody listens for: cartd keeps retrying it before it loads anything.
const UNREACHABLE_POSTGRES: &str =
    "[postgres]\nurl = \"postgres://cartd@127.0.0.1:1/cartd\"\nnode = \"loading-test\"\n";

/// Each command PROTOCOL.md allows while loading answers (LASTSAVE used to panic the
/// connection), the connection survives every one of them, data commands are refused with
/// LOADING, and SHUTDOWN still stops the server.
#[tokio::test]
async fn commands_allowed_while_loading_answer() {
    let mut cartd = Cartd::start_loading(UNREACHABLE_POSTGRES);
    cartd.wait_for_log("cannot reach PostgreSQL yet");
    let mut conn = cartd.client(false).await;
    let allowed: [&[&str]; 12] = [
        &["HELLO", "2"],
        &["SELECT", "0"],
        &["CLIENT", "ID"],
        &["CLIENT", "LIST"],
        &["COMMAND", "COUNT"],
        &["COMMAND", "INFO", "cart.add"],
        &["INFO"],
        &["INFO", "persistence"],
        &["CONFIG", "GET", "maxclients"],
        &["TIME"],
        &["LASTSAVE"],
        &["CLIENT", "GETNAME"],
    ];
    for args in allowed {
        let reply = cmd(&mut conn, args).await;
        assert!(reply.is_ok(), "{args:?} while loading: {reply:?}");
    }
    let lastsave = cmd(&mut conn, &["LASTSAVE"])
        .await
        .expect("LASTSAVE answers");
    assert!(int(&lastsave) > 1_700_000_000, "a Unix time: {lastsave:?}");
    let persistence = text(&cmd(&mut conn, &["INFO", "persistence"]).await.unwrap());
    assert!(persistence.contains("loading:1"), "{persistence}");
    let auth = cmd(&mut conn, &["AUTH", "secret"]).await;
    assert!(
        matches!(&auth, Err(error) if error.starts_with("ERR ")),
        "AUTH without a password configured is an error, not a dropped connection: {auth:?}"
    );
    for args in [
        &["CART.GET", "cart:1"][..],
        &[
            "CART.ADD", "cart:1", "p", "-", "1", "PRICE", "1", "CURRENCY", "USD",
        ],
        &["DBSIZE"],
        &["PING"],
        &["SAVE"],
        &["GIFTCARD.GET", "G1"],
    ] {
        let refused = cmd(&mut conn, args).await;
        assert!(
            matches!(&refused, Err(error) if error.starts_with("LOADING ")),
            "{args:?} while loading: {refused:?}"
        );
    }
    let still = cmd(&mut conn, &["TIME"])
        .await
        .expect("the connection lives");
    assert!(matches!(still, Value::Array(_)));
    let _ = cmd(&mut conn, &["SHUTDOWN", "NOSAVE"]).await;
    assert!(cartd.wait_exit().success(), "{}", cartd.log());
}
