//! Bad input: a well-framed but wrong request gets one Redis-style error, changes nothing and
//! leaves the connection usable; broken framing gets `-ERR Protocol error: ...` and closes that
//! one connection; either way the server keeps serving everyone else (docs/PROTOCOL.md,
//! "Connections and framing" and "Errors").

use std::time::{Duration, Instant};

use cartd_tests::{encode_command, fails, ok, view, Cartd, WAIT};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Small limits so the tests can cross them cheaply.
const CONFIG: &str = "[server]\nmax_bulk_bytes = 4096\nmax_args_per_command = 16\n";
const MAX_BULK_BYTES: usize = 4096;
/// Most bytes of one unfinished request cartd keeps (PROTOCOL.md).
const PENDING_BYTES_MAX: usize = 2 * MAX_BULK_BYTES + 64 * 1024;
const CART: &str = "cart:bad";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A cart with two lines; returns its view.
async fn seed_cart(conn: &mut MultiplexedConnection, key: &str) -> Json {
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
async fn snapshot(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let mut cart = view(conn, key).await;
    if let Some(fields) = cart.as_object_mut() {
        fields.remove("ttl_ms");
    }
    cart
}

/// The connection still answers PING.
async fn assert_alive(conn: &mut MultiplexedConnection) {
    assert_eq!(
        ok(conn, &["PING"]).await,
        Value::SimpleString("PONG".into())
    );
}

/// Runs `args`, which must fail with exactly `expected`; then the connection still works and
/// the cart is as it was.
async fn refused_exactly(conn: &mut MultiplexedConnection, args: &[&str], expected: &str) {
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
async fn refused(conn: &mut MultiplexedConnection, args: &[&str], prefix: &str) -> String {
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
async fn exchange(cartd: &Cartd, bytes: &[u8], until: &[u8]) -> (Vec<u8>, bool) {
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
async fn protocol_error(cartd: &Cartd, bytes: &[u8]) -> String {
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
async fn client_count(conn: &mut MultiplexedConnection) -> usize {
    let list = ok(conn, &["CLIENT", "LIST"]).await;
    let Value::BulkString(list) = list else {
        panic!("CLIENT LIST is a bulk string")
    };
    String::from_utf8_lossy(&list).lines().count()
}

/// Waits (bounded) until CLIENT LIST shows `expected` connections: closed connections leave
/// the list when their task ends, just after the close.
async fn wait_for_clients(conn: &mut MultiplexedConnection, expected: usize) {
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
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// Well-framed but wrong requests
// ---------------------------------------------------------------------------------------------

/// Wrong arity is `ERR wrong number of arguments for '<command>' command`, with the command's
/// lower-case name; the connection carries on and the cart is unchanged.
#[tokio::test]
async fn wrong_arity_names_the_command() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let cases: &[(&[&str], &str)] = &[
        (&["CART.ADD", CART, "sku-1", "-"], "cart.add"),
        (&["cart.add", CART], "cart.add"),
        (&["CART.SET", CART, "sku-1", "-"], "cart.set"),
        (&["CART.REMOVE", CART, "sku-1"], "cart.remove"),
        (&["CART.GET"], "cart.get"),
        (&["CART.CLEAR"], "cart.clear"),
        (&["CART.MERGE", CART], "cart.merge"),
        (&["CART.SAVE", CART, "sku-1"], "cart.save"),
        (&["CATALOG.GET", "sku-1"], "catalog.get"),
        (&["ECHO"], "echo"),
        (&["ECHO", "a", "b"], "echo"),
        (&["SELECT"], "select"),
        (&["TYPE", CART, CART], "type"),
        (&["DEL"], "del"),
        (&["DBSIZE", "x"], "dbsize"),
    ];
    for (args, name) in cases {
        let expected = format!("ERR wrong number of arguments for '{name}' command");
        refused_exactly(&mut conn, args, &expected).await;
    }
}

/// An unknown command is `ERR unknown command 'FOO', with args beginning with: 'a' 'b' `, as
/// Redis words it; not-yet-implemented commands are unknown too.
#[tokio::test]
async fn unknown_commands_are_named() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    refused(
        &mut conn,
        &["FOO", "a", "b"],
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b'",
    )
    .await;
    refused(
        &mut conn,
        &["CART.CHECKOUT", CART],
        "ERR unknown command 'CART.CHECKOUT', with args beginning with: 'cart:bad'",
    )
    .await;
    let mut raw = cartd.raw().await;
    assert_eq!(
        raw.call(&["FOO", "a", "b"]).await,
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        raw.call(&["FOO"]).await,
        b"-ERR unknown command 'FOO', with args beginning with: \r\n"
    );
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// An unknown command with long non-ASCII arguments still gets the unknown-command error (the
/// echoed arguments are cut to a bounded length), the connection carries on, and it is not
/// left behind in CLIENT LIST.
#[tokio::test]
async fn unknown_command_with_long_non_ascii_args_is_an_error() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let euros = "€".repeat(64);
    let args = [
        "FOO", &euros, &euros, &euros, &euros, &euros, &euros, &euros, &euros,
    ];
    let mut raw = cartd.raw().await;
    let reply = String::from_utf8_lossy(&raw.call(&args).await).into_owned();
    assert!(
        reply.starts_with("-ERR unknown command 'FOO', with args beginning with: '€€€"),
        "{reply:?}"
    );
    assert!(
        reply.len() < 1024,
        "the echo is bounded: {} bytes",
        reply.len()
    );
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
    drop(raw);
    refused(&mut conn, &args, "ERR unknown command 'FOO'").await;
    wait_for_clients(&mut conn, 1).await;
}

/// An unknown option, or an option with a value it does not take, is `ERR syntax error`.
#[tokio::test]
async fn unknown_options_are_syntax_errors() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let cases: &[&[&str]] = &[
        &["CART.ADD", CART, "sku-1", "-", "1", "BOGUS"],
        &["CART.ADD", CART, "sku-1", "-", "1", "BOGUS", "1"],
        &["CART.ADD", CART, "sku-1", "-", "1", "REPLY", "SOMETIMES"],
        &["CART.ADD", CART, "sku-1", "-", "1", "FORMAT", "XML"],
        &["CART.ADD", CART, "sku-1", "-", "1", "REPLY"],
        &["CART.SET", CART, "sku-1", "-", "3", "NOW"],
        &["CART.REMOVE", CART, "sku-1", "-", "FROM", "NOWHERE"],
        &["CART.CLEAR", CART, "ALL"],
        &["CART.GET", CART, "BOGUS"],
        &["SCAN", "0", "BOGUS", "1"],
    ];
    for args in cases {
        refused_exactly(&mut conn, args, "ERR syntax error").await;
    }
}

/// Repeating an option is `ERR syntax error` (PROTOCOL.md: "Repeating an option is `ERR syntax
/// error`") and changes nothing, for every mutation option and for PRICE.
#[tokio::test]
async fn repeated_options_are_syntax_errors() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let add = ["CART.ADD", CART, "sku-1", "-", "1"];
    let repeats: &[&[&str]] = &[
        &["IFVERSION", "2", "IFVERSION", "2"],
        &["IDEMPOTENCY", "t1", "IDEMPOTENCY", "t1"],
        &[
            "PRICE", "250", "CURRENCY", "USD", "PRICE", "250", "CURRENCY", "USD",
        ],
        &["REPLY", "VERSION", "REPLY", "VERSION"],
        &["FORMAT", "JSON", "FORMAT", "JSON"],
        &["REPLY", "VERSION", "REPLY", "NONE"],
    ];
    let mut wrong = Vec::new();
    for options in repeats {
        let args: Vec<&str> = add.iter().chain(options.iter()).copied().collect();
        let before = snapshot(&mut conn, CART).await;
        match cmd_result(&mut conn, &args).await {
            Err(error) if error == "ERR syntax error" => {}
            other => wrong.push(format!("{options:?} replied {other:?}")),
        }
        if snapshot(&mut conn, CART).await != before {
            wrong.push(format!("{options:?} changed the cart"));
        }
        assert_alive(&mut conn).await;
    }
    assert!(
        wrong.is_empty(),
        "repeated options accepted:\n{}",
        wrong.join("\n")
    );
}

/// `cmd` as a `Result` with a short description of a success.
async fn cmd_result(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<String, String> {
    cartd_tests::cmd(conn, args)
        .await
        .map(|value| format!("{value:?}").chars().take(80).collect())
}

/// A quantity, version or count that is not a canonical decimal integer is
/// `ERR value is not an integer or out of range`.
#[tokio::test]
async fn non_integers_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let not_integer = "ERR value is not an integer or out of range";
    for qty in ["abc", "1.5", "+1", "01", " 1", "1 ", "1e3", "", "0x10", "١"] {
        refused_exactly(
            &mut conn,
            &["CART.ADD", CART, "sku-1", "-", qty],
            not_integer,
        )
        .await;
        refused_exactly(
            &mut conn,
            &["CART.SET", CART, "sku-1", "-", qty],
            not_integer,
        )
        .await;
    }
    for price in ["12.50", "ten", "-", "99999999999999999999"] {
        refused_exactly(
            &mut conn,
            &[
                "CART.ADD", CART, "sku-1", "-", "1", "PRICE", price, "CURRENCY", "USD",
            ],
            not_integer,
        )
        .await;
    }
    refused_exactly(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "1", "IFVERSION", "two"],
        not_integer,
    )
    .await;
    refused_exactly(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "1", "IFVERSION", "-1"],
        not_integer,
    )
    .await;
    refused_exactly(&mut conn, &["SCAN", "0", "COUNT", "many"], not_integer).await;
}

/// Zero, negative and overflowing quantities, and quantities over max_qty_per_line (999), are
/// refused, and a line is never left partly changed.
#[tokio::test]
async fn bad_quantities_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    refused(&mut conn, &["CART.ADD", CART, "sku-1", "-", "0"], "ERR ").await;
    refused(&mut conn, &["CART.ADD", CART, "sku-1", "-", "-1"], "ERR ").await;
    refused(&mut conn, &["CART.SET", CART, "sku-1", "-", "-1"], "ERR ").await;
    let not_integer = "ERR value is not an integer or out of range";
    for huge in ["4294967296", "9223372036854775807", "9223372036854775808"] {
        refused_exactly(
            &mut conn,
            &["CART.ADD", CART, "sku-1", "-", huge],
            not_integer,
        )
        .await;
        refused_exactly(
            &mut conn,
            &["CART.SET", CART, "sku-1", "-", huge],
            not_integer,
        )
        .await;
    }
    refused(
        &mut conn,
        &[
            "CART.ADD", CART, "sku-9", "-", "1000", "PRICE", "1", "CURRENCY", "USD",
        ],
        "LIMIT ",
    )
    .await;
    // sku-1 holds 2: adding 998 would make 1000.
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "998"],
        "LIMIT ",
    )
    .await;
    refused(
        &mut conn,
        &["CART.SET", CART, "sku-1", "-", "1000"],
        "LIMIT ",
    )
    .await;
    // The boundary itself is fine.
    let cart = ok(
        &mut conn,
        &["CART.ADD", CART, "sku-1", "-", "997", "REPLY", "VERSION"],
    )
    .await;
    assert_eq!(cart, Value::Int(3));
    assert_eq!(view(&mut conn, CART).await["items"][0]["qty"], 999);
}

/// Negative, too large and overflowing prices, bad currencies and a PRICE without CURRENCY
/// are refused; so is a price in another currency than the cart's.
#[tokio::test]
async fn bad_prices_and_currencies_are_refused() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let with_price = |price: &'static str, label: &'static str, currency: &'static str| {
        vec![
            "CART.ADD", CART, "sku-3", "-", "1", "PRICE", price, label, currency,
        ]
    };
    for price in ["-1", "1000000000001", "-9223372036854775808"] {
        refused(&mut conn, &with_price(price, "CURRENCY", "USD"), "ERR ").await;
    }
    for currency in ["US", "USDX", "U$D", "12A", ""] {
        refused(&mut conn, &with_price("100", "CURRENCY", currency), "ERR ").await;
    }
    refused(&mut conn, &with_price("100", "CUR", "USD"), "ERR ").await;
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-3", "-", "1", "PRICE", "100"],
        "ERR ",
    )
    .await;
    refused(
        &mut conn,
        &with_price("100", "CURRENCY", "EUR"),
        "ERR cart is priced in USD",
    )
    .await;
    // A new line without any price anywhere.
    refused(
        &mut conn,
        &["CART.ADD", CART, "sku-4", "-", "1"],
        "NOPRICE ",
    )
    .await;
    // The largest price is accepted.
    ok(&mut conn, &with_price("1000000000000", "CURRENCY", "usd")).await;
}

/// A key over 256 bytes and a product or variant over 64 bytes are `LIMIT` errors; empty ids
/// are `ERR`; the limits themselves are accepted.
#[tokio::test]
async fn oversized_ids_hit_limits() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let long_key = "k".repeat(257);
    let long_id = "p".repeat(65);
    let long_token = "t".repeat(65);
    let price = ["PRICE", "100", "CURRENCY", "USD"];
    let add = |key: &str, product: &str, variant: &str| -> Vec<String> {
        ["CART.ADD", key, product, variant, "1"]
            .iter()
            .chain(price.iter())
            .map(|arg| arg.to_string())
            .collect()
    };
    let cases = [
        (add(&long_key, "sku-1", "-"), "LIMIT "),
        (add(CART, &long_id, "-"), "LIMIT "),
        (add(CART, "sku-1", &long_id), "LIMIT "),
        (add("", "sku-1", "-"), "ERR "),
        (add(CART, "", "-"), "ERR "),
        (add(CART, "sku-1", ""), "ERR "),
    ];
    for (args, prefix) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&mut conn, &args, prefix).await;
    }
    refused(&mut conn, &["CART.GET", &long_key], "LIMIT ").await;
    refused(
        &mut conn,
        &[
            "CART.ADD",
            CART,
            "sku-1",
            "-",
            "1",
            "IDEMPOTENCY",
            &long_token,
        ],
        "LIMIT ",
    )
    .await;
    assert_eq!(ok(&mut conn, &["DBSIZE"]).await, Value::Int(1));

    let longest_key = "k".repeat(256);
    let longest_id = "p".repeat(64);
    let args = add(&longest_key, &longest_id, &longest_id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&mut conn, &args).await;
    assert_eq!(
        view(&mut conn, &longest_key).await["items"][0]["product"],
        longest_id
    );
}

/// More than max_args_per_command (16) arguments is a `LIMIT` error, before arity or parsing;
/// 16 are fine.
#[tokio::test]
async fn too_many_arguments_is_a_limit() {
    let cartd = Cartd::start(CONFIG);
    let mut conn = cartd.client(false).await;
    seed_cart(&mut conn, CART).await;
    let mut exists = vec!["EXISTS"];
    exists.extend(std::iter::repeat_n(CART, 15));
    assert_eq!(ok(&mut conn, &exists).await, Value::Int(15), "16 arguments");
    exists.push(CART);
    refused(&mut conn, &exists, "LIMIT ").await;

    let mut add = vec!["CART.ADD", CART, "sku-1", "-", "1", "REPLY", "VERSION"];
    add.extend(std::iter::repeat_n("IFVERSION", 10));
    assert_eq!(add.len(), 17);
    refused(&mut conn, &add, "LIMIT ").await;
    let mut echo = vec!["ECHO"; 17];
    echo[1] = "x";
    refused(&mut conn, &echo, "LIMIT ").await;
}

// ---------------------------------------------------------------------------------------------
// Broken framing
// ---------------------------------------------------------------------------------------------

/// A bulk string over max_bulk_bytes is `-ERR Protocol error: invalid bulk length` and closes
/// that connection; an already-open connection carries on and the cart is intact; a bulk of
/// exactly max_bulk_bytes is fine.
#[tokio::test]
async fn oversized_bulk_closes_only_that_connection() {
    let cartd = Cartd::start(CONFIG);
    let mut other = cartd.client(false).await;
    let before = seed_cart(&mut other, CART).await;

    let too_long = "x".repeat(MAX_BULK_BYTES + 1);
    let mut raw = cartd.raw().await;
    raw.send(&encode_command(&["ECHO", &too_long])).await;
    assert_eq!(
        raw.read_until_closed().await,
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    let mut raw = cartd.raw().await;
    raw.send(&encode_command(&["CART.ADD", CART, &too_long, "-", "1"]))
        .await;
    assert_eq!(
        raw.read_until_closed().await,
        b"-ERR Protocol error: invalid bulk length\r\n"
    );

    assert_alive(&mut other).await;
    assert_eq!(snapshot(&mut other, CART).await, before);
    let longest = "y".repeat(MAX_BULK_BYTES);
    let mut raw = cartd.raw().await;
    let reply = raw.call(&["ECHO", &longest]).await;
    assert_eq!(
        reply,
        format!("${MAX_BULK_BYTES}\r\n{longest}\r\n").into_bytes()
    );
}

/// Garbage framing (bad lengths, non-bulk elements, nested arrays, unbalanced quotes) gets one
/// `-ERR Protocol error: ...` line and closes that connection; requests before it in the same
/// write are answered; everyone else is served and carts are intact.
#[tokio::test]
async fn garbage_framing_closes_only_that_connection() {
    let cartd = Cartd::start(CONFIG);
    let mut other = cartd.client(false).await;
    let before = seed_cart(&mut other, CART).await;
    let cases: &[&[u8]] = &[
        b"*abc\r\n",
        b"*2\r\n$4\r\nECHO\r\n$-5\r\n",
        b"*1\r\n:5\r\n",
        b"*2\r\n$4\r\nECHO\r\n+hi\r\n",
        b"*1\r\n*1\r\n$4\r\nPING\r\n",
        b"*1\r\n$x\r\n",
        b"ECHO \"abc\r\n",
        b"ECHO 'abc\r\n",
        b"ECHO \"abc\"def\r\n",
    ];
    for garbage in cases {
        protocol_error(&cartd, garbage).await;
        assert_alive(&mut other).await;
    }
    assert_eq!(
        protocol_error(&cartd, b"ECHO \"abc\r\n").await,
        "-ERR Protocol error: unbalanced quotes in request\r\n"
    );

    let mut batch = encode_command(&["PING"]);
    batch.extend_from_slice(b"*1\r\n:5\r\n");
    batch.extend(encode_command(&["ECHO", "never answered"]));
    let (out, closed) = exchange(&cartd, &batch, b"").await;
    assert!(closed);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("+PONG\r\n-ERR Protocol error: ") && out.matches("\r\n").count() == 2,
        "{out:?}"
    );

    assert_alive(&mut other).await;
    assert_eq!(snapshot(&mut other, CART).await, before);
    wait_for_clients(&mut other, 1).await;
}

/// Deeply nested arrays (a few KiB of `*1\r\n`) are a protocol error on that connection, not a
/// crash of the server.
#[tokio::test]
async fn deeply_nested_arrays_close_only_that_connection() {
    let cartd = Cartd::start(CONFIG);
    let mut other = cartd.client(false).await;
    let before = seed_cart(&mut other, CART).await;
    let mut nested = b"*1\r\n".repeat(10_000);
    nested.extend_from_slice(b"$4\r\nPING\r\n");
    assert!(nested.len() < PENDING_BYTES_MAX);
    protocol_error(&cartd, &nested).await;
    assert_alive(&mut other).await;
    assert_eq!(snapshot(&mut other, CART).await, before);
}

/// 4 KiB of random bytes (fixed seeds) get only error replies (`-ERR`, `-LIMIT`, ...): either
/// the connection ends with `-ERR Protocol error: ...` and a close, or it is still open and
/// answers a PING sent after them. The server keeps serving, and no connection is left behind
/// in CLIENT LIST.
#[tokio::test]
async fn random_bytes_get_errors_and_never_take_the_server_down() {
    let cartd = Cartd::start(CONFIG);
    let mut other = cartd.client(false).await;
    let before = seed_cart(&mut other, CART).await;
    for seed in [1, 7, 42, 99, 0x5eed_5eed_5eed_5eed] {
        let mut garbage = random_bytes(seed, 4096);
        garbage.extend_from_slice(b"\r\nPING\r\n");
        let (out, closed) = exchange(&cartd, &garbage, b"+PONG\r\n").await;
        let out = String::from_utf8_lossy(&out).into_owned();
        let lines: Vec<&str> = out.split_terminator("\r\n").collect();
        if closed {
            let last = lines.last().copied().unwrap_or_default();
            assert!(
                last.starts_with("-ERR Protocol error: "),
                "seed {seed}: closed without a protocol error; got {out:?}"
            );
        } else {
            assert_eq!(lines.last().copied(), Some("+PONG"), "seed {seed}");
        }
        let replies = &lines[..lines.len().saturating_sub(1)];
        let not_errors: Vec<&&str> = replies
            .iter()
            .filter(|line| !line.starts_with('-'))
            .collect();
        assert!(
            not_errors.is_empty(),
            "seed {seed}: only error replies, got {not_errors:?}"
        );
        assert_alive(&mut other).await;
    }
    assert_eq!(snapshot(&mut other, CART).await, before);
    wait_for_clients(&mut other, 1).await;
}

/// Empty inline lines are ignored; inline commands split on spaces with quotes grouping, and an
/// inline CART.ADD works like the array form.
#[tokio::test]
async fn inline_commands_work() {
    let cartd = Cartd::start(CONFIG);
    let mut raw = cartd.raw().await;
    raw.send(b"\r\n\n   \r\nPING\r\n").await;
    assert_eq!(raw.read_reply().await, b"+PONG\r\n");
    raw.send(b"ECHO \"a b\\n\"\r\n").await;
    assert_eq!(raw.read_reply().await, b"$4\r\na b\n\r\n");
    raw.send(b"ECHO 'c d'\n").await;
    assert_eq!(raw.read_reply().await, b"$3\r\nc d\r\n");
    raw.send(b"CART.ADD cart:1 sku - 1 PRICE 5 CURRENCY USD\r\n")
        .await;
    let reply = raw.read_reply().await;
    assert!(reply.starts_with(b"*"), "a RESP2 cart view: {reply:?}");
    raw.send(b"CART.ADD cart:1 sku - 2 REPLY VERSION\r\n").await;
    assert_eq!(raw.read_reply().await, b":2\r\n");

    let mut conn = cartd.client(false).await;
    let cart = view(&mut conn, "cart:1").await;
    assert_eq!(cart["items"][0]["product"], "sku");
    assert_eq!(cart["items"][0]["qty"], 3);
    assert_eq!(cart["items"][0]["unit_price"], 5);
    assert_eq!(cart["currency"], "USD");
}

/// Sends `header` then `filler` over and over (up to 16 MiB) while reading; cartd must answer
/// with a protocol error and close long before, instead of buffering without end.
async fn endless_request(cartd: &Cartd, header: &[u8], filler: &[u8]) -> String {
    const TOTAL_BYTES_MAX: usize = 16 * 1024 * 1024;
    let stream = TcpStream::connect(cartd.addr()).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let header = header.to_vec();
    let filler = filler.to_vec();
    let writing = tokio::spawn(async move {
        writer.write_all(&header).await?;
        let mut sent = header.len();
        while sent < TOTAL_BYTES_MAX {
            writer.write_all(&filler).await?;
            sent += filler.len();
        }
        Ok::<usize, std::io::Error>(sent)
    });
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let read = tokio::time::timeout(WAIT, reader.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!("no close in time; got {:?}", String::from_utf8_lossy(&out))
            });
        match read {
            Ok(0) | Err(_) => break,
            Ok(read) => out.extend_from_slice(&chunk[..read]),
        }
    }
    let written = tokio::time::timeout(WAIT, writing)
        .await
        .expect("the writer stops")
        .expect("the writer task ran");
    assert!(
        written.is_err(),
        "cartd kept reading {TOTAL_BYTES_MAX} bytes of one request"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// A request that never completes (a bulk declared over max_bulk_bytes followed by endless
/// bytes, an array of endless legal elements, an endless inline line) gets a protocol error and
/// a close once it passes 2 * max_bulk_bytes + 64 KiB, instead of growing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_requests_are_cut_off() {
    let cartd = Cartd::start(CONFIG);
    let mut other = cartd.client(false).await;
    let before = seed_cart(&mut other, CART).await;

    let declared = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", 100 * PENDING_BYTES_MAX);
    let mut element = format!("${MAX_BULK_BYTES}\r\n").into_bytes();
    element.extend(std::iter::repeat_n(b'x', MAX_BULK_BYTES));
    element.extend_from_slice(b"\r\n");
    let cases: [(&[u8], &[u8]); 4] = [
        (declared.as_bytes(), &[b'x'; 8192]),
        (b"*2\r\n$4\r\nECHO\r\n$4096\r\n", &[b'x'; 8192]),
        (b"*100000\r\n", &element),
        (b"", &[b'a'; 8192]),
    ];
    for (header, filler) in cases {
        let out = endless_request(&cartd, header, filler).await;
        let head = String::from_utf8_lossy(&header[..header.len().min(40)]).into_owned();
        let last = out.split_terminator("\r\n").last().unwrap_or_default();
        assert!(
            last.starts_with("-ERR Protocol error: "),
            "{head:?}: ends with {:?}",
            &last[..last.len().min(80)]
        );
        assert_alive(&mut other).await;
    }
    assert_eq!(snapshot(&mut other, CART).await, before);
}
