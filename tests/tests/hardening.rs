//! An attacker's requests over real sockets: none may run smuggled bytes as a command, cost
//! the server work out of proportion to what it sent, or hold up the other clients
//! (docs/SECURITY.md).

use std::time::Duration;

use cartd_tests::{ok, w, Cartd};

/// CPU seconds the process `pid` has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `$3\r\nabcDEL cart:x\r\n`: the bytes after a bulk's declared length used to run as an
/// inline command (DEL cart:x ran). Now the request is a protocol error that closes the
/// connection, and the cart is still there.
#[tokio::test]
async fn bytes_after_a_bulk_string_never_run_as_a_command() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w("CART.ADD cart:x sku - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    let mut raw = cartd.raw().await;
    raw.send(b"*2\r\n$4\r\nECHO\r\n$3\r\nabcDEL cart:x\r\n")
        .await;
    let reply = raw.read_until_closed().await;
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: expected CRLF after a bulk string\r\n"
    );
    assert_eq!(
        ok(&mut conn, &w("EXISTS cart:x")).await,
        redis::Value::Int(1),
        "the smuggled DEL must not have run"
    );
}

/// `*150000` then `$0` elements trickled in small pieces used to cost seconds of CPU (the
/// request was walked again from its start on every read: 2.78 s against 0.17 s sent at
/// once). The server's CPU for it is compared, in the same run, with the same bytes sent in a
/// few writes and with a request of the same size and as many pieces made of two bulk strings
/// (what the reads and wake-ups alone cost).
#[tokio::test]
async fn a_trickled_request_costs_no_more_than_a_sent_one() {
    const ELEMENTS: usize = 150_000;
    let cartd = Cartd::start_default();
    let mut request = format!("*{}\r\n$4\r\nECHO\r\n", ELEMENTS + 1).into_bytes();
    for _ in 0..ELEMENTS {
        request.extend_from_slice(b"$0\r\n\r\n");
    }
    // Two bulk strings (one would pass max_bulk_bytes); ECHO of two is an arity error.
    let payload = 3 * ELEMENTS;
    let mut two_bulks = b"*3\r\n$4\r\nECHO\r\n".to_vec();
    for _ in 0..2 {
        two_bulks.extend_from_slice(format!("${payload}\r\n").as_bytes());
        two_bulks.resize(two_bulks.len() + payload, b'x');
        two_bulks.extend_from_slice(b"\r\n");
    }
    let spend = |request: &[u8], pieces: usize, expect: &'static [u8]| {
        let request = request.to_vec();
        let cartd = &cartd;
        async move {
            let mut raw = cartd.raw().await;
            let before = cpu_seconds(cartd.pid());
            for piece in request.chunks(request.len().div_ceil(pieces)) {
                raw.send(piece).await;
                if pieces > 10 {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
            let reply = raw.read_reply().await;
            assert!(
                reply.starts_with(expect),
                "{}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
            cpu_seconds(cartd.pid()) - before
        }
    };
    // Over max_args_per_command: refused once it has all arrived.
    let sent = spend(&request, 4, b"-LIMIT ").await;
    let trickled = spend(&request, 1_500, b"-LIMIT ").await;
    let wakeups = spend(&two_bulks, 1_500, b"-ERR ").await;
    assert!(
        trickled < sent + 2.0 * wakeups + 0.2,
        "trickled in 1,500 pieces the request cost {trickled:.2} s of CPU; sent at once \
         {sent:.2} s; a two-bulk request as trickled {wakeups:.2} s"
    );
}

/// The decoder bounds an array's element count as Redis does.
#[tokio::test]
async fn an_array_longer_than_redis_allows_is_refused() {
    let cartd = Cartd::start_default();
    let mut raw = cartd.raw().await;
    raw.send(b"*1048577\r\n").await;
    assert_eq!(
        String::from_utf8_lossy(&raw.read_until_closed().await),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    let mut raw = cartd.raw().await;
    assert_eq!(raw.call(&["PING"]).await, b"+PONG\r\n");
}

/// Protected mode: binding an address other hosts can reach with no password and no ACL
/// user refuses to start, saying how to fix it (before, cartd served anyone who could reach
/// it). Only the refusal is tested: nothing here may listen beyond 127.0.0.1.
#[test]
fn an_exposed_unprotected_bind_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(cartd_tests::cartd_bin())
        .args(["--bind", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(data.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start cartd");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("cartd started on 0.0.0.0 without a password");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("protected mode") && stderr.contains("requirepass"),
        "{stderr}"
    );
}

/// The JSON view's `id` rendered distinct keys that are not UTF-8 identically (each bad
/// byte became U+FFFD); such a key now also comes in hex, so no two look alike.
#[tokio::test]
async fn keys_that_are_not_utf8_stay_distinct_in_json() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let mut ids = Vec::new();
    for key in [b"cart:\xff".to_vec(), b"cart:\xfe".to_vec()] {
        let () = redis::cmd("CART.ADD")
            .arg(&key)
            .arg("sku")
            .arg("-")
            .arg("1")
            .arg("PRICE")
            .arg("5")
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("NONE")
            .query_async(&mut conn)
            .await
            .expect("CART.ADD");
        let view: String = redis::cmd("CART.GET")
            .arg(&key)
            .arg("FORMAT")
            .arg("JSON")
            .query_async(&mut conn)
            .await
            .expect("CART.GET");
        let view: serde_json::Value = serde_json::from_str(&view).unwrap();
        ids.push(view["id_hex"].clone());
    }
    assert_eq!(ids[0], "636172743aff");
    assert_eq!(ids[1], "636172743afe");
}

/// Failed adds used to intern their product ids: 10M NOPRICE adds took 2.9 GB and then
/// locked every new product out (the id table is bounded). An add that cannot be priced is
/// refused before its ids are interned now.
#[tokio::test]
async fn failed_adds_do_not_fill_the_id_table() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let ids = |text: String| cartd_tests::info_number(&text, "interned_ids");
    let before = ids(cartd_tests::info(&mut conn, &["memory"]).await);
    let mut pipe = redis::pipe();
    for index in 0..5_000 {
        pipe.cmd("CART.ADD")
            .arg("cart:x")
            .arg(format!("never-priced-{index}"))
            .arg("-")
            .arg("1");
    }
    let replies: Vec<redis::RedisResult<redis::Value>> = pipe
        .query_async::<Vec<redis::Value>>(&mut conn)
        .await
        .map(|values| values.into_iter().map(Ok).collect())
        .unwrap_or_else(|error| vec![Err(error)]);
    assert!(!replies.is_empty());
    let after = ids(cartd_tests::info(&mut conn, &["memory"]).await);
    assert_eq!(after, before, "NOPRICE adds interned ids");
    let refused = cartd_tests::cmd(&mut conn, &w("CART.ADD cart:x brand-new - 1")).await;
    assert!(refused.unwrap_err().starts_with("NOPRICE"));
}
