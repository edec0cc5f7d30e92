//! Broken framing gets `-ERR Protocol error: ...` and closes that one connection, and the
//! server keeps serving everyone else (docs/PROTOCOL.md, "Connections and framing").

mod bad_common;

use bad_common::*;
use cartd_tests::{encode_command, view, Cartd, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
