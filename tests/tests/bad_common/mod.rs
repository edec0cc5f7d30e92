//! What the bad-input suites share: small limits, a seeded cart, and checks that a request was
//! refused without changing anything, or that framing broke and closed only its connection.
//! Each suite uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cartd_tests::{fails, ok, view, Cartd, WAIT};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Small limits so the tests can cross them cheaply.
pub const CONFIG: &str = "[server]\nmax_bulk_bytes = 4096\nmax_args_per_command = 16\n";
pub const MAX_BULK_BYTES: usize = 4096;
/// Most bytes of one unfinished request cartd keeps (PROTOCOL.md).
pub const PENDING_BYTES_MAX: usize = 2 * MAX_BULK_BYTES + 64 * 1024;
pub const CART: &str = "cart:bad";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A cart with two lines; returns its view.
pub async fn seed_cart(conn: &mut MultiplexedConnection, key: &str) -> Json {
    for (product, qty) in [("sku-1", "2"), ("sku-2", "5")] {
        ok(
            conn,
            &[
                "CART.ADD", key, product, "-", qty, "PRICE", "250", "CURRENCY", "USD", "REPLY",
                "NONE",
            ],
        )
        .await;
    }
    snapshot(conn, key).await
}

/// The cart's view without `ttl_ms`, which moves with the clock.
pub async fn snapshot(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let mut cart = view(conn, key).await;
    if let Some(fields) = cart.as_object_mut() {
        fields.remove("ttl_ms");
    }
    cart
}

/// The connection still answers PING.
pub async fn assert_alive(conn: &mut MultiplexedConnection) {
    assert_eq!(
        ok(conn, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}

/// Runs `args`, which must fail with exactly `expected`; then the connection still works and
/// the cart is as it was.
pub async fn refused_exactly(conn: &mut MultiplexedConnection, args: &[&str], expected: &str) {
    let before = snapshot(conn, CART).await;
    assert_eq!(fails(conn, args).await, expected, "{args:?}");
    assert_alive(conn).await;
    assert_eq!(
        snapshot(conn, CART).await,
        before,
        "{args:?} changed the cart"
    );
}

/// Runs `args`, which must fail with an error starting with `prefix`; then the connection still
/// works and the cart is as it was. Returns the error.
pub async fn refused(conn: &mut MultiplexedConnection, args: &[&str], prefix: &str) -> String {
    let before = snapshot(conn, CART).await;
    let error = fails(conn, args).await;
    assert!(
        error.starts_with(prefix),
        "{args:?}: {error:?}, expected {prefix:?}..."
    );
    assert_alive(conn).await;
    assert_eq!(
        snapshot(conn, CART).await,
        before,
        "{args:?} changed the cart"
    );
    error
}

/// Sends `bytes` on a new connection and reads until the server closes it or the reply stream
/// ends with `until` (for connections that are expected to stay open). Returns what was read
/// and whether the connection was closed. Write and reset errors end the exchange: a server
/// that closes with unread input resets the connection.
pub async fn exchange(cartd: &Cartd, bytes: &[u8], until: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(cartd.addr()).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        if !until.is_empty() && out.ends_with(until) {
            return (out, false);
        }
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "neither a close nor {until:?} in time; got {:?}",
                    String::from_utf8_lossy(&out)
                )
            });
        match read {
            Ok(0) | Err(_) => return (out, true),
            Ok(read) => out.extend_from_slice(&chunk[..read]),
        }
    }
}

/// Sends `bytes` on a new raw connection and expects exactly one `-ERR Protocol error: ...`
/// line followed by the close; returns the line.
pub async fn protocol_error(cartd: &Cartd, bytes: &[u8]) -> String {
    let (out, closed) = exchange(cartd, bytes, b"").await;
    assert!(closed);
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(
        out.starts_with("-ERR Protocol error: ") && out.ends_with("\r\n"),
        "{:?} got {out:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    );
    assert_eq!(
        out.matches("\r\n").count(),
        1,
        "one line then close: {out:?}"
    );
    out
}

/// Connected clients, as CLIENT LIST shows them.
pub async fn client_count(conn: &mut MultiplexedConnection) -> usize {
    let list = ok(conn, &["CLIENT", "LIST"]).await;
    let Value::BulkString(list) = list else {
        panic!("CLIENT LIST is a bulk string")
    };
    String::from_utf8_lossy(&list).lines().count()
}

/// Waits (bounded) until CLIENT LIST shows `expected` connections: closed connections leave
/// the list when their task ends, just after the close.
pub async fn wait_for_clients(conn: &mut MultiplexedConnection, expected: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = client_count(conn).await;
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CLIENT LIST shows {count} connections, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `len` bytes from a fixed-seed xorshift generator.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
