//! cartd's keyspace as a Redis server shows it (docs/PROTOCOL.md, "Redis commands"): DBSIZE,
//! EXISTS, DEL, TYPE, TTL/PTTL and TIME, SCAN with MATCH, TYPE and concurrent writers, deep
//! pipelines (raw and through the `redis` crate), and stopping: SHUTDOWN, SIGTERM and
//! maxclients.
//!
//! Connection commands, AUTH and CLIENT are in `redis_connection.rs`; COMMAND, INFO and CONFIG
//! in `redis_introspection.rs`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cartd_tests::{
    array, cart_add_version, encode_command, info_number, int, ok, parse_reply, text, view, Cartd,
    RawConn, WAIT,
};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Creates one cart per key in one pipeline.
async fn add_many(conn: &mut MultiplexedConnection, keys: &[String]) {
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("CART.ADD")
            .arg(key)
            .arg("sku-1")
            .arg("-")
            .arg(1)
            .arg("PRICE")
            .arg(100)
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("NONE");
    }
    let replies: Vec<Value> = tokio::time::timeout(WAIT, pipe.query_async(conn))
        .await
        .expect("pipeline in time")
        .expect("pipeline works");
    assert_eq!(replies.len(), keys.len());
    assert!(replies.iter().all(|reply| *reply == Value::Okay));
}

/// A full SCAN with `extra` options; returns every key returned and how many calls it took.
async fn scan_all(conn: &mut MultiplexedConnection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let reply = ok(conn, &args).await;
        let parts = array(&reply);
        assert_eq!(parts.len(), 2, "SCAN replies [cursor, keys]");
        let next = text(&parts[0]);
        next.parse::<i64>()
            .expect("cursors fit a signed 64-bit integer");
        keys.extend(array(&parts[1]).iter().map(text));
        calls += 1;
        assert!(calls < 1_000_000, "SCAN never ends");
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

/// Connects, sends PING and returns the first reply line, or `None` if the connection broke.
async fn ping_once(cartd: &Cartd) -> Option<String> {
    let mut stream = TcpStream::connect(cartd.addr()).await.ok()?;
    stream.write_all(b"PING\r\n").await.ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("a reply in time")
            .ok()?;
        if read == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Keyspace
// ---------------------------------------------------------------------------------------------

/// DBSIZE counts carts; EXISTS counts every named key that exists (repeats included); DEL
/// deletes and counts; TYPE is cart or none.
#[tokio::test]
async fn dbsize_exists_del_type() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(0));
    for key in ["cart:a", "cart:b", "cart:c"] {
        cart_add_version(&mut conn, key, "sku", 1).await;
    }
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(3));
    assert_eq!(
        ok(
            &mut conn,
            &["EXISTS", "cart:a", "cart:b", "cart:missing", "cart:a"]
        )
        .await,
        Value::Int(3)
    );
    assert_eq!(
        ok(&mut conn, &["EXISTS", "cart:missing"]).await,
        Value::Int(0)
    );
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:b"]).await,
        Value::SimpleString("cart".into())
    );
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:missing"]).await,
        Value::SimpleString("none".into())
    );
    assert_eq!(
        ok(&mut conn, &["DEL", "cart:a", "cart:missing", "cart:c"]).await,
        Value::Int(2)
    );
    assert_eq!(ok(&mut conn, &["DEL", "cart:a"]).await, Value::Int(0));
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(1));
    assert_eq!(ok(&mut conn, &["EXISTS", "cart:a"]).await, Value::Int(0));
    assert_eq!(view(&mut conn, "cart:a").await, serde_json::Value::Null);
    assert_eq!(
        ok(&mut conn, &["TYPE", "cart:a"]).await,
        Value::SimpleString("none".into())
    );
}

/// TTL and PTTL: about 30 days for user carts, 24 hours for `cart:guest:` carts, -2 for none.
#[tokio::test]
async fn ttl_and_pttl_follow_the_cart_kind() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    cart_add_version(&mut conn, "cart:user-1", "sku", 1).await;
    cart_add_version(&mut conn, "cart:guest:g1", "sku", 1).await;
    let slack_s = 60;
    let user_ttl = int(&ok(&mut conn, &["TTL", "cart:user-1"]).await);
    assert!(
        (2_592_000 - slack_s..=2_592_000).contains(&user_ttl),
        "{user_ttl}"
    );
    let user_pttl = int(&ok(&mut conn, &["PTTL", "cart:user-1"]).await);
    assert!(
        (2_592_000_000 - slack_s * 1000..=2_592_000_000).contains(&user_pttl),
        "{user_pttl}"
    );
    let guest_ttl = int(&ok(&mut conn, &["TTL", "cart:guest:g1"]).await);
    assert!(
        (86_400 - slack_s..=86_400).contains(&guest_ttl),
        "{guest_ttl}"
    );
    let guest_pttl = int(&ok(&mut conn, &["PTTL", "cart:guest:g1"]).await);
    assert!(
        (86_400_000 - slack_s * 1000..=86_400_000).contains(&guest_pttl),
        "{guest_pttl}"
    );
    assert_eq!(ok(&mut conn, &["TTL", "cart:none"]).await, Value::Int(-2));
    assert_eq!(ok(&mut conn, &["PTTL", "cart:none"]).await, Value::Int(-2));
}

/// TIME replies two integers as strings: seconds near the local clock and microseconds.
#[tokio::test]
async fn time_replies_seconds_and_microseconds() {
    let cartd = Cartd::start_default();
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        let reply = ok(&mut conn, &["TIME"]).await;
        let parts = array(&reply);
        assert_eq!(parts.len(), 2);
        assert!(matches!(parts[0], Value::BulkString(_)), "{parts:?}");
        let seconds: u64 = text(&parts[0]).parse().expect("seconds are an integer");
        let micros: u64 = text(&parts[1]).parse().expect("micros are an integer");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(seconds.abs_diff(now) < 3600, "{seconds} vs {now}");
        assert!(micros < 1_000_000);
    }
}

// ---------------------------------------------------------------------------------------------
// SCAN
// ---------------------------------------------------------------------------------------------

/// With 2,000 carts, a full SCAN COUNT 100 returns every key exactly once, over several calls.
#[tokio::test]
async fn scan_returns_every_cart_exactly_once() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let keys: Vec<String> = (0..2000).map(|i| format!("scan:{i}")).collect();
    add_many(&mut conn, &keys).await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(2000));
    let (found, calls) = scan_all(&mut conn, &["COUNT", "100"]).await;
    assert!(calls > 1, "COUNT 100 over 2,000 carts takes several calls");
    assert_eq!(found.len(), 2000, "no key twice, none missed");
    let found: HashSet<String> = found.into_iter().collect();
    assert_eq!(found, keys.into_iter().collect::<HashSet<_>>());
}

/// SCAN MATCH returns exactly the keys that match; TYPE cart returns carts, any other TYPE
/// returns nothing.
#[tokio::test]
async fn scan_match_and_type_filter() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    let mut keys: Vec<String> = (0..300).map(|i| format!("scan:{i}")).collect();
    keys.extend((0..50).map(|i| format!("other:{i}")));
    add_many(&mut conn, &keys).await;

    let (found, _) = scan_all(&mut conn, &["MATCH", "scan:1*", "COUNT", "100"]).await;
    let expected: HashSet<String> = keys
        .iter()
        .filter(|key| key.starts_with("scan:1"))
        .cloned()
        .collect();
    assert_eq!(found.len(), expected.len());
    assert_eq!(found.into_iter().collect::<HashSet<_>>(), expected);

    let (others, _) = scan_all(&mut conn, &["MATCH", "other:*"]).await;
    assert_eq!(others.len(), 50);

    let (carts, _) = scan_all(&mut conn, &["TYPE", "cart", "COUNT", "1000"]).await;
    assert_eq!(carts.len(), 350);
    let (strings, calls) = scan_all(&mut conn, &["TYPE", "string", "COUNT", "1000"]).await;
    assert!(strings.is_empty(), "{strings:?}");
    assert_eq!(calls, 1);
}

/// A SCAN iterated while other carts are being added returns every cart that existed before
/// the scan started exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scan_misses_nothing_while_carts_are_added() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let old_keys: Vec<String> = (0..2000).map(|i| format!("old:{i}")).collect();
    add_many(&mut conn, &old_keys).await;

    let mut writer = cartd.client(false).await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let adder = tokio::spawn(async move {
        let mut started_tx = Some(started_tx);
        for batch in 0..60 {
            let keys: Vec<String> = (0..50).map(|i| format!("new:{batch}:{i}")).collect();
            add_many(&mut writer, &keys).await;
            if let Some(tx) = started_tx.take() {
                let _ = tx.send(());
            }
        }
    });
    started_rx.await.expect("the adder started");
    let (found, calls) = scan_all(&mut conn, &["COUNT", "20"]).await;
    adder.await.expect("the adder finished");
    assert!(calls > 10);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for key in &found {
        *seen.entry(key.as_str()).or_default() += 1;
    }
    let missed: Vec<&String> = old_keys
        .iter()
        .filter(|key| !seen.contains_key(key.as_str()))
        .collect();
    assert!(
        missed.is_empty(),
        "{} old carts missed: {missed:?}",
        missed.len()
    );
    let twice: Vec<&String> = old_keys
        .iter()
        .filter(|key| seen[key.as_str()] > 1)
        .collect();
    assert!(twice.is_empty(), "old carts returned twice: {twice:?}");
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(2000 + 60 * 50));
}

// ---------------------------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------------------------

/// 10,000 CART.ADD ... REPLY VERSION sent in one write on a raw socket are answered in order:
/// versions 1..=10000.
#[tokio::test]
async fn raw_pipeline_of_ten_thousand_is_answered_in_order() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        // 100 lines of 100 each: under max_qty_per_line and max_lines_per_cart.
        let product = format!("p{}", i % 100);
        batch.extend(encode_command(&[
            "CART.ADD",
            "cart:pipe",
            &product,
            "-",
            "1",
            "PRICE",
            "5",
            "CURRENCY",
            "USD",
            "REPLY",
            "VERSION",
        ]));
    }
    raw.send(&batch).await;
    for version in 1..=10_000 {
        let reply = raw.read_reply().await;
        assert_eq!(
            reply,
            format!(":{version}\r\n").into_bytes(),
            "reply #{version}"
        );
    }
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// A 10,000-command `redis::pipe()` through the redis crate (RESP3) gets 10,000 replies in order.
#[tokio::test]
async fn redis_crate_pipeline_of_ten_thousand() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(true).await;
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("CART.ADD")
            .arg("cart:crate-pipe")
            .arg(format!("p{}", i % 100))
            .arg("-")
            .arg(1)
            .arg("PRICE")
            .arg(5)
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("VERSION");
    }
    let versions: Vec<i64> = tokio::time::timeout(WAIT, pipe.query_async(&mut conn))
        .await
        .expect("pipeline in time")
        .expect("pipeline works");
    assert_eq!(versions, (1..=10_000).collect::<Vec<i64>>());
    let cart = view(&mut conn, "cart:crate-pipe").await;
    assert_eq!(cart["version"], 10_000);
    assert_eq!(cart["totals"]["item_count"], 10_000);
}

// ---------------------------------------------------------------------------------------------
// SHUTDOWN, SIGTERM, maxclients
// ---------------------------------------------------------------------------------------------

/// SHUTDOWN: requests pipelined before it are answered, it sends no reply, every connection
/// closes, and the process exits 0 after logging "cartd stopped".
#[tokio::test]
async fn shutdown_answers_the_batch_then_exits_zero() {
    let mut cartd = Cartd::start_default();
    let mut idle = cartd.raw().await;
    assert_eq!(idle.call(&["PING"]).await, b"+PONG\r\n");
    let mut raw = cartd.raw().await;
    let mut batch = Vec::new();
    for i in 0..300 {
        let product = format!("p{}", i % 10);
        batch.extend(encode_command(&[
            "CART.ADD", "cart:sd", &product, "-", "1", "PRICE", "5", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ]));
    }
    batch.extend(encode_command(&["SHUTDOWN"]));
    batch.extend(encode_command(&["PING"]));
    raw.send(&batch).await;
    for version in 1..=300 {
        assert_eq!(
            raw.read_reply().await,
            format!(":{version}\r\n").into_bytes()
        );
    }
    assert_eq!(
        raw.read_until_closed().await,
        b"",
        "no reply after SHUTDOWN"
    );
    assert_eq!(idle.read_until_closed().await, b"");
    let status = cartd.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    cartd.wait_for_log("cartd stopped");
}

/// SIGTERM stops cartd the same way: exit status 0, "cartd stopped" logged, clients closed.
#[tokio::test]
async fn sigterm_exits_zero() {
    let mut cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    let status = cartd.terminate();
    assert!(status.success(), "exit status {status:?}");
    cartd.wait_for_log("cartd stopped");
    assert_eq!(raw.read_until_closed().await, b"");
}

/// With maxclients = 3 the 4th connection reads `-ERR max number of clients reached` and is
/// closed; once one of the three leaves, a new connection is served.
#[tokio::test]
async fn maxclients_turns_away_the_extra_connection() {
    let cartd = Cartd::start("[server]\nmaxclients = 3\n");
    let mut open: Vec<RawConn> = Vec::new();
    for _ in 0..3 {
        let mut raw = cartd.raw().await;
        assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
        open.push(raw);
    }
    let mut fourth = cartd.raw().await;
    assert_eq!(
        fourth.read_until_closed().await,
        b"-ERR max number of clients reached\r\n"
    );
    for raw in &mut open {
        assert_eq!(
            raw.call(&["PING"]).await,
            b"+PONG\r\n",
            "the three still work"
        );
    }
    let stats = text(&parse_reply(&open[0].call(&["INFO", "stats"]).await));
    assert_eq!(info_number(&stats, "rejected_connections"), 1);

    let mut leaving = open.pop().expect("three open");
    assert_eq!(leaving.call(&["QUIT"]).await, b"+OK\r\n");
    assert_eq!(leaving.read_until_closed().await, b"");
    // The server forgets the closed connection right after closing it; retry until it has.
    let deadline = Instant::now() + WAIT;
    loop {
        match ping_once(&cartd).await.as_deref() {
            Some("+PONG\r\n") => break,
            Some("-ERR max number of clients reached\r\n") | None => {}
            Some(other) => panic!("unexpected reply {other:?}"),
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
