//! The harness itself works: a real cartd answers PING over each kind of connection.

use cartd_tests::{cmd, Cartd};
use redis::Value;

/// PING answers PONG in RESP2 and RESP3 through the redis crate, and inline over raw TCP.
#[tokio::test]
async fn ping_answers_on_every_kind_of_connection() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut client = cartd.client(resp3).await;
        let reply = cmd(&mut client, &["PING"]).await.expect("PING works");
        assert!(
            matches!(reply, Value::SimpleString(ref text) if text == "PONG"),
            "{reply:?}"
        );
    }
    let mut raw = cartd.raw().await;
    raw.send(b"PING\r\n").await;
    assert_eq!(raw.read_reply().await, b"+PONG\r\n");
}
