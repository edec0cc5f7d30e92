//! WAIT as Redis answers it on a server without replicas (cartd's today): 0 at once when no
//! replica is asked for, 0 after the timeout when some are, Redis's errors for bad
//! arguments; the waiting client is held, the others are not. Before, WAIT was unknown.

use std::time::{Duration, Instant};

use cartd_tests::Cartd;

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

#[tokio::test]
async fn wait_answers_how_many_replicas_have_the_writes() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.raw().await;
    assert_eq!(text(conn.call(&["WAIT", "0", "0"]).await), ":0\r\n");
    let started = Instant::now();
    assert_eq!(text(conn.call(&["WAIT", "1", "300"]).await), ":0\r\n");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "WAIT 1 300 waited its timeout without replicas"
    );
    assert_eq!(
        text(conn.call(&["WAIT", "1", "-1"]).await),
        "-ERR timeout is negative\r\n"
    );
    assert_eq!(
        text(conn.call(&["WAIT", "x", "1"]).await),
        "-ERR value is not an integer or out of range\r\n"
    );
    // Without a bound it waits until the client goes; meanwhile others are served.
    let mut blocked = cartd.raw().await;
    blocked
        .send(&cartd_tests::encode_command(&["WAIT", "1", "0"]))
        .await;
    let mut other = cartd.raw().await;
    assert_eq!(text(other.call(&["PING"]).await), "+PONG\r\n");
    assert!(
        !blocked.is_closed().await && blocked.buffered().is_empty(),
        "WAIT 1 0 is still waiting: {:?}",
        String::from_utf8_lossy(blocked.buffered())
    );
}
