//! No client can hold the server's resources hostage: one that never reads its replies is
//! closed by `client-output-buffer-limit` and counted in INFO, CLIENT KILL ends a client at
//! once even while cartd is blocked writing to it, an idle client goes after `timeout`, and
//! `tcp-backlog` sets the listen queue (docs/SECURITY.md).

use std::time::{Duration, Instant};

use cartd_tests::{cmd, info, info_number, int, ok, text, w, Cartd};
use redis::aio::MultiplexedConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A cart with 150 lines, so that each CART.GET reply is some 20 KB.
async fn big_cart(conn: &mut MultiplexedConnection) {
    let mut pipe = redis::pipe();
    for line in 0..150 {
        pipe.cmd("CART.ADD")
            .arg("cart:big")
            .arg(format!("product-with-a-long-name-{line}"))
            .arg("-")
            .arg("1")
            .arg("PRICE")
            .arg("1999")
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("NONE")
            .ignore();
    }
    let () = pipe.query_async(conn).await.expect("fill the cart");
}

/// Connects a client that sends `requests` CART.GETs of the big cart and never reads a
/// reply. Returns its client id and the task that holds its socket (abort it to let go).
async fn non_reader(cartd: &Cartd, requests: usize) -> (i64, tokio::task::JoinHandle<()>) {
    let mut stream = TcpStream::connect(cartd.addr()).await.expect("connect");
    stream
        .write_all(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n") {
        stream.readable().await.unwrap();
        let mut bytes = [0u8; 64];
        match stream.try_read(&mut bytes) {
            Ok(0) => panic!("closed before CLIENT ID"),
            Ok(read) => reply.extend_from_slice(&bytes[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("{error}"),
        }
    }
    let id: i64 = String::from_utf8_lossy(&reply[1..reply.len() - 2])
        .parse()
        .unwrap();
    let request = b"*2\r\n$8\r\nCART.GET\r\n$8\r\ncart:big\r\n".repeat(requests);
    // Once cartd cannot write it stops reading, and this write blocks: it has a task of its
    // own, which then holds the socket without ever reading.
    let holder = tokio::spawn(async move {
        let _ = stream.write_all(&request).await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(stream);
    });
    (id, holder)
}

/// Whether the client list still shows client `id`.
async fn listed(conn: &mut MultiplexedConnection, id: i64) -> bool {
    let list = text(&ok(conn, &w("CLIENT LIST")).await);
    list.lines()
        .any(|line| line.starts_with(&format!("id={id} ")))
}

/// Polls until `check` holds; panics with `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that pipelines CART.GETs and never reads used to be kept forever, holding its
/// buffers; past the soft limit for its seconds it is now closed, counted in INFO, and the
/// other clients are served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_counted() {
    let cartd =
        Cartd::start_async("[server]\nclient_output_buffer_limit = \"normal 0 64kb 1\"\n").await;
    let mut conn = cartd.client(false).await;
    big_cart(&mut conn).await;
    let (id, holder) = non_reader(&cartd, 5_000).await;
    eventually(Duration::from_secs(10), "the non-reader is closed", || {
        let mut conn = conn.clone();
        async move { !listed(&mut conn, id).await }
    })
    .await;
    let stats = info(&mut conn, &["stats"]).await;
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1,
        "{stats}"
    );
    assert_eq!(text(&ok(&mut conn, &w("PING")).await), "PONG");
    holder.abort();
}

/// Past the hard limit a client is closed at once: one turn of big CART.GET replies is well
/// over 100 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_hard_limit_is_closed_at_once() {
    let cartd =
        Cartd::start_async("[server]\nclient_output_buffer_limit = \"normal 100kb 0 0\"\n").await;
    let mut conn = cartd.client(false).await;
    big_cart(&mut conn).await;
    let (id, holder) = non_reader(&cartd, 2_000).await;
    eventually(
        Duration::from_secs(5),
        "the client over the hard limit is closed",
        || {
            let mut conn = conn.clone();
            async move { !listed(&mut conn, id).await }
        },
    )
    .await;
    let stats = info(&mut conn, &["stats"]).await;
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1
    );
    holder.abort();
}

/// CLIENT KILL used to report clients killed that stayed connected: a write blocked on a
/// client that does not read was not raced against the kill. Killed now means gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_ends_a_client_blocked_on_its_replies() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    big_cart(&mut conn).await;
    let mut blocked = Vec::new();
    for _ in 0..20 {
        blocked.push(non_reader(&cartd, 5_000).await);
    }
    // Give them time to fill their buffers and block cartd's writes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, _) in &blocked {
        assert!(listed(&mut conn, *id).await);
        let killed = ok(&mut conn, &["CLIENT", "KILL", "ID", &id.to_string()]).await;
        assert_eq!(int(&killed), 1);
    }
    eventually(
        Duration::from_secs(2),
        "every killed client is gone",
        || {
            let mut conn = conn.clone();
            let ids: Vec<i64> = blocked.iter().map(|(id, _)| *id).collect();
            async move {
                for id in ids {
                    if listed(&mut conn, id).await {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    for (_, holder) in blocked {
        holder.abort();
    }
}

/// `timeout 1`: a client that says nothing for longer is closed; one that keeps talking
/// stays.
#[tokio::test]
async fn an_idle_client_is_closed_after_timeout() {
    let cartd = Cartd::start_async("[server]\ntimeout = 1\n").await;
    let mut idle = cartd.raw().await;
    let mut busy = cartd.raw().await;
    assert_eq!(idle.call(&["PING"]).await, b"+PONG\r\n");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(busy.call(&["PING"]).await, b"+PONG\r\n");
    }
    assert!(idle.is_closed().await, "the idle client is closed");
    assert_eq!(busy.call(&["PING"]).await, b"+PONG\r\n");
    let mut conn = cartd.client(false).await;
    assert_eq!(
        cmd(&mut conn, &w("CONFIG GET timeout"))
            .await
            .map(|value| format!("{value:?}")),
        Ok(format!(
            "{:?}",
            redis::Value::Array(vec![
                redis::Value::BulkString(b"timeout".to_vec()),
                redis::Value::BulkString(b"1".to_vec()),
            ])
        ))
    );
}

/// `tcp-backlog` sets the listen queue: `ss` shows a listening socket's backlog as its
/// Send-Q. It was fixed at tokio's default before.
#[tokio::test]
async fn tcp_backlog_sets_the_listen_queue() {
    let cartd = Cartd::start_async("[server]\ntcp_backlog = 2000\n").await;
    let listing = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", cartd.port())])
        .output()
        .expect("run ss");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let send_q: Vec<&str> = listing.split_whitespace().collect();
    assert_eq!(send_q.get(2).copied(), Some("2000"), "{listing}");
}

/// Slowloris: connections that each send most of a large request and never finish it used
/// to hold their buffers indefinitely (300 of them 250 MB). Past `maxmemory-clients` the
/// clients holding the most are closed until the rest fit; everyone else is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_bounded_across_all_clients() {
    let cartd = Cartd::start_async("[server]\nmaxmemory_clients = \"8mb\"\n").await;
    let mut conn = cartd.client(false).await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut raw = cartd.raw().await;
        raw.send(b"*2\r\n$4\r\nECHO\r\n$500000\r\n").await;
        raw.send(&vec![b'x'; 400_000]).await;
        slow.push(raw);
    }
    eventually(Duration::from_secs(5), "clients are evicted", || {
        let mut conn = conn.clone();
        async move { info_number(&info(&mut conn, &["stats"]).await, "evicted_clients") >= 10 }
    })
    .await;
    // Closed clients count until their tasks end, and reads in flight land first: the total
    // comes back within the bound.
    eventually(
        Duration::from_secs(5),
        "the clients' buffers fit the bound",
        || {
            let mut conn = conn.clone();
            async move {
                let clients = info(&mut conn, &["clients"]).await;
                info_number(&clients, "clients_memory_bytes") <= 8 * 1024 * 1024
            }
        },
    )
    .await;
    let mut closed = 0;
    for raw in &mut slow {
        closed += usize::from(raw.is_closed().await);
        if closed >= 10 {
            break;
        }
    }
    assert!(closed >= 10, "{closed} of 40 slow clients closed");
    assert_eq!(text(&ok(&mut conn, &w("PING")).await), "PONG");
}

/// `maxmemory` with noeviction: past it, commands that add data get Redis's -OOM while
/// reads and deletes go on (before, only max_carts bounded anything, and a 200-line cart
/// costs ~10 KB). cartd's resident memory is well over 1 MB from the start.
#[tokio::test]
async fn past_maxmemory_writes_get_oom_and_reads_go_on() {
    let cartd = Cartd::start_async("").await;
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w("CART.ADD cart:1 sku - 1 PRICE 5 CURRENCY USD"),
    )
    .await;
    drop(conn);
    let mut cartd = cartd;
    cartd.stop_gracefully();
    std::fs::write(cartd.config_path(), "[server]\nmaxmemory = \"1mb\"\n").unwrap();
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(
        cmd(
            &mut conn,
            &w("CART.ADD cart:2 sku - 1 PRICE 5 CURRENCY USD")
        )
        .await,
        Err("OOM command not allowed when used memory > 'maxmemory'.".into())
    );
    assert!(cmd(&mut conn, &w("CART.GET cart:1")).await.is_ok());
    assert_eq!(int(&ok(&mut conn, &w("DEL cart:1")).await), 1);
    let memory = info(&mut conn, &["memory"]).await;
    assert_eq!(info_number(&memory, "maxmemory"), 1024 * 1024, "{memory}");
}
