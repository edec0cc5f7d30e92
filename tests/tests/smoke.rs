//! The harness itself works: a real cartd, started on its defaults, answers PING through the
//! `redis` crate in RESP2 and RESP3, and inline over a raw socket.

use cartd_tests::{cmd, Cartd};
use redis::Value;

/// PING answers PONG through the redis crate, in RESP2 and after HELLO 3 in RESP3.
#[tokio::test]
async fn ping_answers_pong_in_resp2_and_resp3() {
    let cartd = Cartd::start_async("").await;
    for resp3 in [false, true] {
        let mut client = cartd.client(resp3).await;
        let reply = cmd(&mut client, &["PING"]).await.expect("PING works");
        assert!(
            matches!(reply, Value::SimpleString(ref text) if text == "PONG"),
            "resp3={resp3}: {reply:?}"
        );
    }
}

/// An inline `PING` (as telnet or a load balancer's health check sends it) gets `+PONG`, and
/// the connection stays open.
#[tokio::test]
async fn inline_ping_answers_pong() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    raw.send(b"PING\r\n").await;
    assert_eq!(raw.read_reply().await, b"+PONG\r\n");
    assert!(!raw.is_closed().await, "the connection stays open");
}
