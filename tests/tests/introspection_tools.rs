//! The introspection commands Redis tools rely on, with Redis's reply shapes (docs/PROTOCOL.md,
//! "Introspection"): SLOWLOG, LATENCY, MEMORY, OBJECT, CLIENT REPLY/PAUSE/NO-EVICT/NO-TOUCH,
//! CONFIG SET/REWRITE and INFO keyspace's avg_ttl, each over real sockets; then the tools
//! themselves against cartd: redis-cli --bigkeys, --memkeys, --hotkeys, --stat, --latency and
//! the Prometheus exporter (tests/src/exporter.rs).

use std::time::Duration;

use cartd_tests::{
    array, fails, field, info, info_field, info_number, int, ok, pairs, run_redis_cli, text, w,
    Cartd, RawConn,
};
use redis::aio::MultiplexedConnection;
use redis::Value;

/// Adds one line to `key` (creating it), with its price so no catalog entry is needed.
async fn add(conn: &mut MultiplexedConnection, key: &str, product: &str) {
    ok(
        conn,
        &[
            "CART.ADD", key, product, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "NONE",
        ],
    )
    .await;
}

/// The texts of an array reply.
fn texts(value: &Value) -> Vec<String> {
    array(value).iter().map(text).collect()
}

// ---------------------------------------------------------------------------------------------
// SLOWLOG
// ---------------------------------------------------------------------------------------------

/// With slowlog-log-slower-than 0 every command is logged, newest first, as Redis's six-field
/// entries: id, Unix time, microseconds, the arguments as sent, the client's address and name.
/// SLOWLOG RESET empties it (and is itself logged after it ran, as in Redis).
#[tokio::test]
async fn slowlog_keeps_redis_entries_newest_first() {
    let cartd = Cartd::start("[server]\nslowlog_log_slower_than = 0\n");
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        ok(&mut conn, &["SLOWLOG", "RESET"]).await;
        ok(&mut conn, &["CLIENT", "SETNAME", "slow-one"]).await;
        add(&mut conn, "cart:slow", "sku-1").await;
        let entries = ok(&mut conn, &["SLOWLOG", "GET", "2"]).await;
        let entries = array(&entries);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let newest = array(&entries[0]);
        assert_eq!(newest.len(), 6, "{newest:?}");
        assert_eq!(
            texts(&newest[3]),
            w("CART.ADD cart:slow sku-1 - 1 PRICE 100 CURRENCY USD REPLY NONE")
        );
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        assert!((int(&newest[1]) - now_s).abs() < 60, "{newest:?}");
        assert!(int(&newest[2]) >= 0);
        let client_info = text(&ok(&mut conn, &["CLIENT", "INFO"]).await);
        let addr = text(&newest[4]);
        assert!(
            client_info.contains(&format!("addr={addr} ")),
            "{addr} in {client_info}"
        );
        assert_eq!(text(&newest[5]), "slow-one");
        let older = array(&entries[1]);
        assert_eq!(texts(&older[3]), w("CLIENT SETNAME slow-one"));
        assert_eq!(int(&older[0]) + 1, int(&newest[0]), "ids rise by one");

        assert!(int(&ok(&mut conn, &["SLOWLOG", "LEN"]).await) >= 4);
        assert_eq!(text(&ok(&mut conn, &["SLOWLOG", "RESET"]).await), "OK");
        assert_eq!(int(&ok(&mut conn, &["SLOWLOG", "LEN"]).await), 1);
        let all = ok(&mut conn, &["SLOWLOG", "GET", "-1"]).await;
        let oldest = array(&all).last().expect("an entry");
        assert_eq!(texts(&array(oldest)[3]), w("SLOWLOG RESET"));
    }
    let mut conn = cartd.client(false).await;
    assert_eq!(
        ok(&mut conn, &["SLOWLOG", "GET", "0"]).await,
        Value::Array(vec![])
    );
    assert_eq!(
        fails(&mut conn, &["SLOWLOG", "GET", "-2"]).await,
        "ERR count should be greater than or equal to -1"
    );
    let help = texts(&ok(&mut conn, &["SLOWLOG", "HELP"]).await);
    assert!(help[0].starts_with("SLOWLOG <subcommand>"), "{help:?}");
}

/// A request of 42 arguments keeps 31 and `... (11 more arguments)`; an argument of 200 bytes
/// keeps 128 and `... (72 more bytes)`; passwords read `(redacted)`, as in Redis.
#[tokio::test]
async fn slowlog_entries_are_truncated_and_redacted_as_redis_does() {
    let cartd = Cartd::start("[server]\nslowlog_log_slower_than = 0\n");
    let mut conn = cartd.client(false).await;
    let keys: Vec<String> = (0..41).map(|n| format!("cart:{n}")).collect();
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    ok(&mut conn, &del).await;
    let newest = |reply: Value| array(&array(&reply)[0])[3].clone();
    let argv = texts(&newest(ok(&mut conn, &["SLOWLOG", "GET", "1"]).await));
    assert_eq!(argv.len(), 32);
    assert_eq!(argv[30], "cart:29");
    assert_eq!(argv[31], "... (11 more arguments)");

    let long = "x".repeat(200);
    ok(&mut conn, &["ECHO", &long]).await;
    let argv = texts(&newest(ok(&mut conn, &["SLOWLOG", "GET", "1"]).await));
    assert_eq!(argv[1], format!("{}... (72 more bytes)", "x".repeat(128)));

    ok(
        &mut conn,
        &["CONFIG", "SET", "requirepass", "hunter2", "timeout", "0"],
    )
    .await;
    ok(&mut conn, &["AUTH", "hunter2"]).await;
    ok(&mut conn, &["CONFIG", "SET", "requirepass", ""]).await;
    let logged = format!("{:?}", ok(&mut conn, &["SLOWLOG", "GET", "-1"]).await);
    assert!(!logged.contains("hunter2"), "{logged}");
    let entries = ok(&mut conn, &["SLOWLOG", "GET", "5"]).await;
    let logged: Vec<Vec<String>> = array(&entries)
        .iter()
        .map(|entry| texts(&array(entry)[3]))
        .collect();
    assert!(
        logged.contains(&vec!["AUTH".into(), "(redacted)".into()]),
        "{logged:?}"
    );
    let config_set: Vec<String> = w("CONFIG SET requirepass (redacted) timeout 0")
        .into_iter()
        .map(String::from)
        .collect();
    assert!(logged.contains(&config_set), "{logged:?}");
}

/// slowlog-max-len bounds the log: at 3, a fourth command pushes the oldest out; lowering it
/// to 2 trims at once. -1 logs nothing, a threshold no command reaches neither.
#[tokio::test]
async fn slowlog_max_len_drops_the_oldest_one_past_the_limit() {
    let cartd = Cartd::start("[server]\nslowlog_log_slower_than = 0\nslowlog_max_len = 3\n");
    let mut conn = cartd.client(false).await;
    for message in ["one", "two", "three", "four"] {
        ok(&mut conn, &["ECHO", message]).await;
    }
    let entries = ok(&mut conn, &["SLOWLOG", "GET", "-1"]).await;
    let logged: Vec<String> = array(&entries)
        .iter()
        .map(|entry| texts(&array(entry)[3]).join(" "))
        .collect();
    assert_eq!(logged, ["ECHO four", "ECHO three", "ECHO two"]);
    ok(&mut conn, &["CONFIG", "SET", "slowlog-max-len", "2"]).await;
    assert_eq!(int(&ok(&mut conn, &["SLOWLOG", "LEN"]).await), 2);

    ok(
        &mut conn,
        &["CONFIG", "SET", "slowlog-log-slower-than", "-1"],
    )
    .await;
    ok(&mut conn, &["SLOWLOG", "RESET"]).await;
    ok(&mut conn, &["PING"]).await;
    assert_eq!(int(&ok(&mut conn, &["SLOWLOG", "LEN"]).await), 0);
    ok(
        &mut conn,
        &["CONFIG", "SET", "slowlog-log-slower-than", "60000000"],
    )
    .await;
    ok(&mut conn, &["PING"]).await;
    assert_eq!(int(&ok(&mut conn, &["SLOWLOG", "LEN"]).await), 0);
}

// ---------------------------------------------------------------------------------------------
// LATENCY
// ---------------------------------------------------------------------------------------------

/// Off by default (LATEST empty, DOCTOR says so). At 1 ms, MEMORY MALLOC-STATS (jemalloc's
/// whole report: slow, not `fast`) lands in the `command` event: LATEST is Redis's
/// [event, time, latest ms, max ms], HISTORY its [time, ms] pairs; RESET forgets it.
#[tokio::test]
async fn latency_monitor_samples_slow_commands() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    assert_eq!(
        ok(&mut conn, &["LATENCY", "LATEST"]).await,
        Value::Array(vec![])
    );
    let doctor = text(&ok(&mut conn, &["LATENCY", "DOCTOR"]).await);
    assert!(
        doctor.contains("Latency monitoring is disabled"),
        "{doctor}"
    );

    ok(
        &mut conn,
        &["CONFIG", "SET", "latency-monitor-threshold", "1"],
    )
    .await;
    let mut latest = Vec::new();
    for _ in 0..200 {
        ok(&mut conn, &["MEMORY", "MALLOC-STATS"]).await;
        latest = array(&ok(&mut conn, &["LATENCY", "LATEST"]).await).to_vec();
        if !latest.is_empty() {
            break;
        }
    }
    assert!(
        !latest.is_empty(),
        "no command took 1 ms in 200 MALLOC-STATS"
    );
    let event = array(&latest[0]);
    assert_eq!(text(&event[0]), "command");
    assert!(
        int(&event[2]) >= 1 && int(&event[3]) >= int(&event[2]),
        "{event:?}"
    );
    let history = ok(&mut conn, &["LATENCY", "HISTORY", "command"]).await;
    let samples = array(&history);
    assert!(!samples.is_empty() && samples.len() <= 160);
    assert_eq!(array(&samples[0]).len(), 2);
    assert_eq!(
        ok(&mut conn, &["LATENCY", "HISTORY", "nope"]).await,
        Value::Array(vec![])
    );
    let doctor = text(&ok(&mut conn, &["LATENCY", "DOCTOR"]).await);
    assert!(doctor.contains("1. command:"), "{doctor}");
    // No command reaches a minute: nothing is sampled after the reset.
    ok(
        &mut conn,
        &["CONFIG", "SET", "latency-monitor-threshold", "60000"],
    )
    .await;
    assert_eq!(
        int(&ok(&mut conn, &["LATENCY", "RESET", "command"]).await),
        1
    );
    assert_eq!(int(&ok(&mut conn, &["LATENCY", "RESET", "nope"]).await), 0);
    assert_eq!(
        ok(&mut conn, &["LATENCY", "LATEST"]).await,
        Value::Array(vec![])
    );
    let histogram = ok(&mut conn, &["LATENCY", "HISTOGRAM", "ping", "memory"]).await;
    let memory = field(&histogram, "memory");
    assert!(int(&field(&memory, "calls")) >= 1);
    assert!(!array(&field(&memory, "histogram_usec")).is_empty());
    let help = texts(&ok(&mut conn, &["LATENCY", "HELP"]).await);
    assert!(help[0].starts_with("LATENCY <subcommand>"));
}

// ---------------------------------------------------------------------------------------------
// MEMORY and OBJECT
// ---------------------------------------------------------------------------------------------

/// MEMORY USAGE is a cart's bytes (more lines, more bytes), null for a missing key; MEMORY
/// STATS has Redis's fields, `keys.count` the carts, ratios as doubles in RESP3 and as text in
/// RESP2; DOCTOR, MALLOC-STATS and HELP answer text.
#[tokio::test]
async fn memory_usage_and_stats_have_redis_shapes() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:small", "sku-0").await;
    for n in 0..40 {
        add(
            &mut conn,
            "cart:big",
            &format!("product-with-a-long-name-{n}"),
        )
        .await;
    }
    let small = int(&ok(&mut conn, &["MEMORY", "USAGE", "cart:small"]).await);
    let big = int(&ok(&mut conn, &["MEMORY", "USAGE", "cart:big", "SAMPLES", "0"]).await);
    assert!(small > "cart:small".len() as i64 && small < 1024, "{small}");
    // A line packs its interned ids and figures in a few bytes each.
    assert!(big > small + 40 * 4, "{big} vs {small}");
    assert_eq!(
        ok(&mut conn, &["MEMORY", "USAGE", "cart:none"]).await,
        Value::Nil
    );
    assert_eq!(
        fails(&mut conn, &["MEMORY", "USAGE", "cart:big", "SAMPLES"]).await,
        "ERR syntax error"
    );
    for resp3 in [false, true] {
        let mut conn = cartd.client(resp3).await;
        let stats = ok(&mut conn, &["MEMORY", "STATS"]).await;
        let names: Vec<String> = pairs(&stats).into_iter().map(|(name, _)| name).collect();
        for name in [
            "peak.allocated",
            "total.allocated",
            "startup.allocated",
            "clients.normal",
            "db.0",
            "overhead.total",
            "keys.count",
            "keys.bytes-per-key",
            "dataset.bytes",
            "dataset.percentage",
            "allocator.allocated",
            "fragmentation",
        ] {
            assert!(
                names.iter().any(|found| found == name),
                "{name} in {names:?}"
            );
        }
        assert_eq!(int(&field(&stats, "keys.count")), 2);
        let total = int(&field(&stats, "total.allocated"));
        assert!(total > 0 && int(&field(&stats, "peak.allocated")) >= total);
        match field(&stats, "dataset.percentage") {
            Value::Double(percent) => assert!(resp3 && (0.0..=100.0).contains(&percent)),
            other => {
                let percent: f64 = text(&other).parse().expect("a number as text");
                assert!(!resp3 && (0.0..=100.0).contains(&percent));
            }
        }
    }
    assert!(text(&ok(&mut conn, &["MEMORY", "DOCTOR"]).await).contains("Sam"));
    assert!(text(&ok(&mut conn, &["MEMORY", "MALLOC-STATS"]).await).contains("jemalloc"));
    assert_eq!(text(&ok(&mut conn, &["MEMORY", "PURGE"]).await), "OK");
    assert!(texts(&ok(&mut conn, &["MEMORY", "HELP"]).await)[0].starts_with("MEMORY"));
}

/// OBJECT ENCODING is `cart`, REFCOUNT 1, FREQ Redis's error without an LFU policy; each is
/// null for a missing key, as Redis answers. IDLETIME counts seconds since the cart's last
/// access: CART.GET renews it, but not from a CLIENT NO-TOUCH connection (nor its TTL).
#[tokio::test]
async fn object_and_no_touch_report_and_keep_idle_time() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:obj", "sku-1").await;
    assert_eq!(
        text(&ok(&mut conn, &w("OBJECT ENCODING cart:obj")).await),
        "cart"
    );
    assert_eq!(int(&ok(&mut conn, &w("OBJECT REFCOUNT cart:obj")).await), 1);
    assert_eq!(
        fails(&mut conn, &w("OBJECT FREQ cart:obj")).await,
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note \
         that when switching between policies at runtime LRU and LFU data will take some time \
         to adjust."
    );
    for sub in ["ENCODING", "REFCOUNT", "FREQ", "IDLETIME"] {
        assert_eq!(
            ok(&mut conn, &["OBJECT", sub, "cart:none"]).await,
            Value::Nil
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let idle = int(&ok(&mut conn, &w("OBJECT IDLETIME cart:obj")).await);
    assert!(idle >= 2, "{idle}");
    let pttl = int(&ok(&mut conn, &w("PTTL cart:obj")).await);

    let mut untouching = cartd.client(false).await;
    ok(&mut untouching, &w("CLIENT NO-TOUCH on")).await;
    assert!(text(&ok(&mut untouching, &w("CLIENT INFO")).await).contains(" flags=T "));
    ok(&mut untouching, &w("CART.GET cart:obj NOVALIDATE")).await;
    assert!(int(&ok(&mut conn, &w("OBJECT IDLETIME cart:obj")).await) >= idle);
    assert!(int(&ok(&mut conn, &w("PTTL cart:obj")).await) <= pttl);

    ok(&mut untouching, &w("CLIENT NO-TOUCH off")).await;
    ok(&mut untouching, &w("CART.GET cart:obj NOVALIDATE")).await;
    assert!(int(&ok(&mut conn, &w("OBJECT IDLETIME cart:obj")).await) < idle);
    assert!(int(&ok(&mut conn, &w("PTTL cart:obj")).await) > pttl);
    assert_eq!(
        fails(&mut conn, &w("CLIENT NO-TOUCH maybe")).await,
        "ERR syntax error"
    );
    assert!(texts(&ok(&mut conn, &w("OBJECT HELP")).await)[0].starts_with("OBJECT"));
}

// ---------------------------------------------------------------------------------------------
// CLIENT REPLY, PAUSE, NO-EVICT
// ---------------------------------------------------------------------------------------------

/// Sends `requests` raw and returns what came back once a final `ECHO end` is answered.
async fn replies_to(conn: &mut RawConn, requests: &[&[&str]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for request in requests {
        bytes.extend(cartd_tests::encode_command(request));
    }
    bytes.extend(cartd_tests::encode_command(&["ECHO", "end"]));
    conn.send(&bytes).await;
    let mut replies = Vec::new();
    while !replies.ends_with(b"$3\r\nend\r\n") {
        replies.extend(conn.read_reply().await);
    }
    replies.truncate(replies.len() - b"$3\r\nend\r\n".len());
    replies
}

/// CLIENT REPLY as Redis: OFF answers nothing (errors included) until ON answers +OK; SKIP
/// answers neither itself nor the next command; SKIP twice skips only the command after the
/// second; SKIP while OFF changes nothing.
#[tokio::test]
async fn client_reply_off_and_skip_drop_replies_as_redis_does() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.raw().await;
    let skip: &[&str] = &["CLIENT", "REPLY", "SKIP"];
    let off: &[&str] = &["CLIENT", "REPLY", "OFF"];
    let on: &[&str] = &["CLIENT", "REPLY", "ON"];
    assert_eq!(
        replies_to(&mut conn, &[skip, &["PING"], &["ECHO", "hi"]]).await,
        b"$2\r\nhi\r\n"
    );
    assert_eq!(
        replies_to(
            &mut conn,
            &[off, &["PING"], &["NOPE"], skip, &["PING"], on, &["PING"]]
        )
        .await,
        b"+OK\r\n+PONG\r\n"
    );
    assert_eq!(
        replies_to(&mut conn, &[skip, skip, &["PING"], &["ECHO", "a"]]).await,
        b"$1\r\na\r\n"
    );
    assert_eq!(replies_to(&mut conn, &[skip, on]).await, b"+OK\r\n");
    assert_eq!(
        replies_to(&mut conn, &[&["CLIENT", "REPLY", "MAYBE"]]).await,
        b"-ERR syntax error\r\n"
    );
}

/// CLIENT PAUSE WRITE holds writes (the cart is not created while it lasts) but not reads;
/// ALL holds every command, the pausing client's own too; UNPAUSE lets the held ones run. A
/// pause also ends on its own at its deadline.
#[tokio::test]
async fn client_pause_holds_writes_or_everything_until_unpause() {
    let cartd = Cartd::start_default();
    let mut admin = cartd.client(false).await;
    let mut reader = cartd.client(false).await;
    ok(&mut admin, &w("CLIENT PAUSE 60000 WRITE")).await;
    let writer_conn = cartd.client(false).await;
    let write = tokio::spawn(async move {
        let mut writer = writer_conn;
        add(&mut writer, "cart:paused", "sku-1").await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(int(&ok(&mut reader, &w("EXISTS cart:paused")).await), 0);
    assert!(
        !write.is_finished(),
        "a write ran during CLIENT PAUSE WRITE"
    );
    ok(&mut admin, &w("CLIENT UNPAUSE")).await;
    tokio::time::timeout(cartd_tests::WAIT, write)
        .await
        .expect("the held write runs after UNPAUSE")
        .expect("the write task");
    assert_eq!(int(&ok(&mut reader, &w("EXISTS cart:paused")).await), 1);

    // Under ALL even CLIENT UNPAUSE waits (Redis 7.0 exempts no one): this pause ends on its
    // own.
    let mut pauser = cartd.raw().await;
    assert_eq!(pauser.call(&w("CLIENT PAUSE 1500 ALL")).await, b"+OK\r\n");
    pauser.send(&cartd_tests::encode_command(&w("PING"))).await;
    let mut other = cartd.raw().await;
    other.send(&cartd_tests::encode_command(&w("PING"))).await;
    let early = Duration::from_millis(300);
    assert!(tokio::time::timeout(early, pauser.read_reply())
        .await
        .is_err());
    assert!(tokio::time::timeout(early, other.read_reply())
        .await
        .is_err());
    assert_eq!(pauser.read_reply().await, b"+PONG\r\n");
    assert_eq!(other.read_reply().await, b"+PONG\r\n");

    ok(&mut admin, &w("CLIENT PAUSE 200 WRITE")).await;
    add(&mut reader, "cart:after", "sku-1").await;
    assert_eq!(int(&ok(&mut reader, &w("EXISTS cart:after")).await), 1);
    assert_eq!(
        fails(&mut admin, &w("CLIENT PAUSE 10 SOMETIMES")).await,
        "ERR CLIENT PAUSE mode must be WRITE or ALL"
    );
    assert_eq!(
        fails(&mut admin, &w("CLIENT PAUSE -1")).await,
        "ERR timeout is negative"
    );
}

/// Past maxmemory-clients the clients holding the most are closed, except one that said
/// CLIENT NO-EVICT ON (CLIENT INFO flags `e`).
#[tokio::test]
async fn client_no_evict_keeps_a_client_past_maxmemory_clients() {
    let cartd = Cartd::start_default();
    let mut protected = cartd.client(false).await;
    ok(&mut protected, &w("CLIENT NO-EVICT on")).await;
    assert!(text(&ok(&mut protected, &w("CLIENT INFO")).await).contains(" flags=e "));
    let mut plain = cartd.raw().await;
    let mut shielded = cartd.raw().await;
    assert_eq!(shielded.call(&w("CLIENT NO-EVICT ON")).await, b"+OK\r\n");
    // Both start a request of 256 KiB and stop half-way: what they hold is the same.
    let half = format!(
        "*2\r\n$4\r\nECHO\r\n${}\r\n{}",
        256 * 1024,
        "x".repeat(128 * 1024)
    );
    plain.send(half.as_bytes()).await;
    shielded.send(half.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(&mut protected, &w("CONFIG SET maxmemory-clients 64kb")).await;
    // The next byte from either is accounted, and the total is over the limit.
    plain.send(b"x").await;
    shielded.send(b"x").await;
    assert!(plain.is_closed().await, "the plain client is closed");
    assert!(!shielded.is_closed().await, "the NO-EVICT client stays");
    let stats = info(&mut protected, &["stats"]).await;
    assert!(info_number(&stats, "evicted_clients") >= 1);
}

// ---------------------------------------------------------------------------------------------
// CONFIG SET, CONFIG REWRITE, CONFIG HELP
// ---------------------------------------------------------------------------------------------

/// CONFIG SET changes several parameters at once, and CONFIG GET shows them; a bad value,
/// an unknown or immutable parameter, or one named twice is refused with Redis's words and
/// changes nothing, the good pairs before it included.
#[tokio::test]
async fn config_set_is_all_or_nothing_with_redis_errors() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let reader = conn.clone();
    let get = |name: &'static str| {
        let mut conn = reader.clone();
        async move { text(&field(&ok(&mut conn, &["CONFIG", "GET", name]).await, name)) }
    };
    ok(
        &mut conn,
        &w("CONFIG SET maxmemory 10mb slowlog-max-len 5 latency-monitor-threshold 7"),
    )
    .await;
    assert_eq!(get("maxmemory").await, (10 * 1024 * 1024).to_string());
    assert_eq!(get("slowlog-max-len").await, "5");
    assert_eq!(get("latency-monitor-threshold").await, "7");
    for (request, error) in [
        (
            "CONFIG SET slowlog-max-len 9 maxclients x",
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer",
        ),
        (
            "CONFIG SET slowlog-max-len 9 slowlog-log-slower-than -2",
            "ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument must be between -1 and 9223372036854775807 inclusive",
        ),
        (
            "CONFIG SET slowlog-max-len 9 nope 1",
            "ERR Unknown option or number of arguments for CONFIG SET - 'nope'",
        ),
        (
            "CONFIG SET slowlog-max-len 9 port 1234",
            "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config",
        ),
        (
            "CONFIG SET slowlog-max-len 9 slowlog-max-len 10",
            "ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - duplicate parameter",
        ),
        (
            "CONFIG SET slowlog-max-len 9 maxmemory lots",
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value",
        ),
        (
            "CONFIG SET slowlog-max-len 9 client-output-buffer-limit normal",
            "ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Wrong number of arguments in buffer limit configuration.",
        ),
        ("CONFIG SET timeout", "ERR wrong number of arguments for 'config|set' command"),
    ] {
        assert_eq!(fails(&mut conn, &w(request)).await, error, "{request}");
    }
    assert_eq!(get("slowlog-max-len").await, "5", "nothing changed");
    ok(
        &mut conn,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 1mb 512kb 5",
        ],
    )
    .await;
    assert_eq!(
        get("client-output-buffer-limit").await,
        "normal 1048576 524288 5 slave 0 0 0 pubsub 33554432 8388608 60",
        "the normal class changed, the pubsub class kept its default"
    );
    assert!(texts(&ok(&mut conn, &w("CONFIG HELP")).await)[0].starts_with("CONFIG"));
}

/// The pubsub class (listeners: subscribers, monitors, tracking targets) is set on its own,
/// leaving the normal class as it was.
#[tokio::test]
async fn config_set_changes_the_pubsub_class_alone() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    let set = [
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 2mb 1mb 30",
    ];
    ok(&mut conn, &set).await;
    let got = ok(&mut conn, &w("CONFIG GET client-output-buffer-limit")).await;
    assert_eq!(
        texts(&got)[1],
        "normal 33554432 131072 10 slave 0 0 0 pubsub 2097152 1048576 30"
    );
}

/// What CONFIG SET changes takes effect at once: maxclients turns the next client away,
/// requirepass asks new clients for the password (connected ones stay logged in), timeout
/// closes an idle client.
#[tokio::test]
async fn config_set_takes_effect_at_once() {
    let cartd = Cartd::start_default();
    let mut conn = cartd.client(false).await;
    ok(&mut conn, &w("CONFIG SET maxclients 1")).await;
    let mut refused = cartd.raw().await;
    assert_eq!(
        refused.read_reply().await,
        b"-ERR max number of clients reached\r\n"
    );
    ok(
        &mut conn,
        &w("CONFIG SET maxclients 100 requirepass s3cret"),
    )
    .await;
    assert_eq!(
        text(&field(
            &ok(&mut conn, &w("CONFIG GET requirepass")).await,
            "requirepass"
        )),
        "s3cret"
    );
    let mut newcomer = cartd.raw().await;
    assert_eq!(
        newcomer.call(&w("PING")).await,
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(newcomer.call(&w("AUTH s3cret")).await, b"+OK\r\n");
    ok(&mut conn, &["CONFIG", "SET", "requirepass", ""]).await;

    let mut idle = cartd.raw().await;
    assert_eq!(idle.call(&w("PING")).await, b"+PONG\r\n");
    ok(&mut conn, &w("CONFIG SET timeout 1")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        idle.is_closed().await,
        "an idle client is closed past the new timeout"
    );
}

/// CONFIG REWRITE writes the changed values where the file has them, keeping its comments
/// and its other keys, adds those it lacks; a restart reads them back. Without a config file
/// it is Redis's error.
#[tokio::test]
async fn config_rewrite_keeps_comments_and_survives_a_restart() {
    let original = "# cartd for the rewrite test\n[server]\n# at most this many\nmaxclients = 100 # trailing note\nshards = 8\n\n[carts]\n# a day\nguest_ttl_s = 86400\n";
    let mut cartd = Cartd::start(original);
    let mut conn = cartd.client(false).await;
    ok(
        &mut conn,
        &w("CONFIG SET maxclients 200 slowlog-max-len 7 maxmemory-clients 128mb"),
    )
    .await;
    assert_eq!(text(&ok(&mut conn, &w("CONFIG REWRITE")).await), "OK");
    let rewritten = std::fs::read_to_string(cartd.config_path()).expect("the config file");
    for kept in [
        "# cartd for the rewrite test",
        "# at most this many",
        "# trailing note",
        "shards = 8",
        "# a day",
        "guest_ttl_s = 86400",
    ] {
        assert!(rewritten.contains(kept), "{kept:?} kept in:\n{rewritten}");
    }
    assert!(rewritten.contains("maxclients = 200"), "{rewritten}");
    assert!(rewritten.contains("slowlog_max_len = 7"), "{rewritten}");
    assert!(
        rewritten.contains("maxmemory_clients = \"128mb\""),
        "{rewritten}"
    );
    assert!(!rewritten.contains("maxclients = 100"), "{rewritten}");
    assert!(
        !rewritten.contains("timeout"),
        "defaults are not added: {rewritten}"
    );

    cartd.restart();
    let mut conn = cartd.client(false).await;
    let config = ok(
        &mut conn,
        &w("CONFIG GET maxclients slowlog-max-len maxmemory-clients"),
    )
    .await;
    assert_eq!(text(&field(&config, "maxclients")), "200");
    assert_eq!(text(&field(&config, "slowlog-max-len")), "7");
    assert_eq!(
        text(&field(&config, "maxmemory-clients")),
        (128 * 1024 * 1024).to_string()
    );

    let fileless = Cartd::start_without_config_file();
    let mut conn = fileless.client(false).await;
    assert_eq!(
        fails(&mut conn, &w("CONFIG REWRITE")).await,
        "ERR The server is running without a config file"
    );
}

// ---------------------------------------------------------------------------------------------
// INFO keyspace avg_ttl, the command table
// ---------------------------------------------------------------------------------------------

/// avg_ttl is the carts' remaining lifetime in milliseconds, estimated from a sample: with
/// every cart's TTL at 100 s it lies within (0, 100000].
#[tokio::test]
async fn info_keyspace_avg_ttl_is_the_carts_remaining_lifetime() {
    let cartd = Cartd::start("[carts]\nuser_ttl_s = 100\n");
    let mut conn = cartd.client(false).await;
    for n in 0..20 {
        add(&mut conn, &format!("cart:ttl-{n}"), "sku").await;
    }
    let keyspace = info(&mut conn, &["keyspace"]).await;
    let db0 = info_field(&keyspace, "db0").expect("db0 line");
    let avg_ttl: u64 = db0
        .split(',')
        .find_map(|part| part.strip_prefix("avg_ttl="))
        .expect("avg_ttl")
        .parse()
        .expect("a number");
    assert!(db0.starts_with("keys=20,expires=20,"), "{db0}");
    assert!(avg_ttl > 0 && avg_ttl <= 100_000, "{db0}");
}

/// The new commands are in the command table: MEMORY and OBJECT read a key at position 2
/// (COMMAND GETKEYS finds it; an ACL key pattern applies to it), SLOWLOG, LATENCY and CONFIG
/// are @admin @dangerous @slow, OBJECT is @read @keyspace.
#[tokio::test]
async fn the_command_table_describes_the_new_commands() {
    let cartd = Cartd::start("[acl]\nusers = [\"user reader on >pw ~cart:mine* +@read\"]\n");
    let mut conn = cartd.client(false).await;
    let rows = ok(
        &mut conn,
        &w("COMMAND INFO memory object slowlog latency config"),
    )
    .await;
    let rows = array(&rows);
    let categories = |row: &Value| texts(&array(row)[6]);
    assert_eq!(int(&array(&rows[0])[3]), 2);
    assert_eq!(int(&array(&rows[1])[4]), 2);
    assert!(categories(&rows[0]).contains(&"@read".to_string()));
    assert!(categories(&rows[1]).contains(&"@keyspace".to_string()));
    for row in &rows[2..] {
        for category in ["@admin", "@dangerous", "@slow"] {
            assert!(categories(row).contains(&category.to_string()), "{row:?}");
        }
    }
    let keys = ok(
        &mut conn,
        &w("COMMAND GETKEYS MEMORY USAGE cart:mine SAMPLES 5"),
    )
    .await;
    assert_eq!(texts(&keys), ["cart:mine"]);
    assert_eq!(
        fails(&mut conn, &w("COMMAND GETKEYS MEMORY STATS")).await,
        "ERR The command has no key arguments"
    );
    let mut reader = cartd.client(false).await;
    ok(&mut reader, &w("AUTH reader pw")).await;
    assert_eq!(
        ok(&mut reader, &w("MEMORY USAGE cart:mine")).await,
        Value::Nil
    );
    assert!(fails(&mut reader, &w("OBJECT ENCODING cart:other"))
        .await
        .starts_with("NOPERM"));
    assert!(fails(&mut reader, &w("SLOWLOG GET"))
        .await
        .starts_with("NOPERM"));
}

// ---------------------------------------------------------------------------------------------
// The tools: redis-cli and the Prometheus exporter
// ---------------------------------------------------------------------------------------------

/// Three carts, one with 30 lines; returns each one's MEMORY USAGE.
async fn three_carts(cartd: &Cartd) -> Vec<(String, i64)> {
    let mut conn = cartd.client(false).await;
    add(&mut conn, "cart:a", "sku-1").await;
    add(&mut conn, "cart:b", "sku-1").await;
    for n in 0..30 {
        add(&mut conn, "cart:big", &format!("sku-{n}")).await;
    }
    let mut usage = Vec::new();
    for key in ["cart:a", "cart:b", "cart:big"] {
        let bytes = int(&ok(&mut conn, &["MEMORY", "USAGE", key]).await);
        usage.push((key.to_string(), bytes));
    }
    usage
}

/// redis-cli --memkeys sizes carts with MEMORY USAGE: the biggest is named with its bytes and
/// the total is theirs. --bigkeys counts them (redis-cli has no size command for a type it
/// does not know, so it shows `0 ?`, as for a module's type in Redis).
#[tokio::test]
async fn redis_cli_memkeys_and_bigkeys_list_the_carts() {
    let cartd = Cartd::start_default();
    let usage = three_carts(&cartd).await;
    let memkeys = run_redis_cli(cartd.port(), &["--memkeys"]);
    assert!(memkeys.status.success(), "{memkeys:?}");
    let big = usage[2].1;
    let total: i64 = usage.iter().map(|(_, bytes)| bytes).sum();
    assert!(
        memkeys.stdout.contains(&format!(
            "Biggest   cart found '\"cart:big\"' has {big} bytes"
        )),
        "{}",
        memkeys.stdout
    );
    assert!(
        memkeys
            .stdout
            .contains(&format!("3 carts with {total} bytes")),
        "{}",
        memkeys.stdout
    );
    let bigkeys = run_redis_cli(cartd.port(), &["--bigkeys"]);
    assert!(bigkeys.status.success(), "{bigkeys:?}");
    assert!(
        bigkeys.stdout.contains("Sampled 3 keys in the keyspace!"),
        "{}",
        bigkeys.stdout
    );
    assert!(
        bigkeys.stdout.contains("3 carts with"),
        "{}",
        bigkeys.stdout
    );
}

/// redis-cli --hotkeys needs OBJECT FREQ, which without an LFU policy is Redis's error: it
/// prints it and exits 1, exactly as against a redis-server with maxmemory-policy noeviction.
#[tokio::test]
async fn redis_cli_hotkeys_reports_the_lfu_error_as_against_redis() {
    let cartd = Cartd::start_default();
    three_carts(&cartd).await;
    let hotkeys = run_redis_cli(cartd.port(), &["--hotkeys"]);
    assert_eq!(hotkeys.status.code(), Some(1), "{hotkeys:?}");
    assert!(
        hotkeys.stderr.contains(
            "Error: ERR An LFU maxmemory policy is not selected, access frequency not tracked."
        ),
        "{hotkeys:?}"
    );
}

/// Runs `timeout SECONDS stdbuf -o0 redis-cli -p PORT args...` (--stat runs until stopped;
/// stdbuf keeps its lines from being lost in a buffer when timeout ends it); its stdout.
fn redis_cli_for(seconds: &str, port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new("timeout")
        .args([
            seconds,
            "stdbuf",
            "-o0",
            "redis-cli",
            "-p",
            &port.to_string(),
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("timeout, stdbuf and redis-cli run");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// redis-cli --stat reads INFO every half second: its rows show the carts under `keys`, the
/// memory and a request count that rises.
#[tokio::test]
async fn redis_cli_stat_prints_live_figures() {
    let cartd = Cartd::start_default();
    three_carts(&cartd).await;
    let port = cartd.port();
    let stat =
        tokio::task::spawn_blocking(move || redis_cli_for("2", port, &["--stat", "-i", "0.5"]))
            .await
            .expect("redis-cli --stat");
    assert!(stat.contains("keys       mem"), "{stat}");
    let rows: Vec<Vec<&str>> = stat
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.first() == Some(&"3"))
        .collect();
    assert!(rows.len() >= 2, "{stat}");
    let requests: Vec<u64> = rows
        .iter()
        .map(|row| row[4].parse().expect("requests is a number"))
        .collect();
    assert!(
        rows.iter()
            .all(|row| row[1].ends_with(['K', 'M', 'G', 'B'])),
        "{stat}"
    );
    assert!(requests.windows(2).all(|pair| pair[1] > pair[0]), "{stat}");
}

/// redis-cli --latency --raw pings cartd and prints min, max, average (ms) and samples.
#[tokio::test]
async fn redis_cli_latency_measures_real_round_trips() {
    let cartd = Cartd::start_default();
    let latency = run_redis_cli(cartd.port(), &["--latency", "--raw", "-i", "1"]);
    let figures: Vec<f64> = latency
        .stdout
        .split_whitespace()
        .map(|figure| figure.parse().expect("a number"))
        .collect();
    let [min, max, avg, samples] = figures[..] else {
        panic!("min max avg samples expected: {latency:?}");
    };
    assert!(samples >= 1.0 && min <= avg && avg <= max, "{latency:?}");
    let mut conn = cartd.client(false).await;
    let stats = info(&mut conn, &["commandstats"]).await;
    assert!(
        info_field(&stats, "cmdstat_ping").is_some_and(|ping| ping.starts_with("calls=")),
        "{stats}"
    );
}

/// The Prometheus exporter scrapes cartd with no error in its log, and /metrics carries the
/// slow log, the latency monitor, the error counts and the memory figures. With
/// --check-keys='cart:*' it walks the carts with SCAN and TYPE: the one error it then logs is
/// `unknown type: cart` per cart, because it sizes only Redis's own types (it logs the same
/// for a module's keys against Redis) and TYPE answers `cart` (docs/PROTOCOL.md).
#[tokio::test]
async fn prometheus_exporter_scrapes_cartd_without_errors() {
    let Some(bin) = cartd_tests::redis_exporter() else {
        eprintln!("prometheus-redis-exporter is not installed (scripts/test installs it); skipped");
        return;
    };
    let cartd =
        Cartd::start("[server]\nslowlog_log_slower_than = 0\nlatency_monitor_threshold = 1\n");
    three_carts(&cartd).await;
    let mut conn = cartd.client(false).await;
    fails(&mut conn, &["NOPE"]).await;
    for _ in 0..200 {
        ok(&mut conn, &["MEMORY", "MALLOC-STATS"]).await;
        if !array(&ok(&mut conn, &["LATENCY", "LATEST"]).await).is_empty() {
            break;
        }
    }
    let exporter = cartd_tests::Exporter::start(&bin, &cartd, &[]);
    let body = exporter.scrape().await;
    let log = exporter.stop();
    let value = |name: &str| {
        cartd_tests::metric(&body, name).unwrap_or_else(|| panic!("{name} missing:\n{body}"))
    };
    assert_eq!(value("redis_up"), 1.0);
    assert!(value("redis_slowlog_length") > 0.0);
    assert!(value("redis_slowlog_last_id") > 0.0);
    assert!(value("redis_latency_spike_duration_seconds{event_name=\"command\"}") >= 0.001);
    assert!(value("redis_errors_total{err=\"ERR\"}") >= 1.0);
    assert!(value("redis_memory_used_bytes") > 0.0);
    assert!(value("redis_memory_used_peak_bytes") >= value("redis_memory_used_bytes"));
    assert!(value("redis_mem_fragmentation_ratio") > 0.0);
    assert_eq!(value("redis_db_keys{db=\"db0\"}"), 3.0);
    assert!(value("redis_db_avg_ttl_seconds{db=\"db0\"}") > 0.0);
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("level=error"))
        .collect();
    assert!(errors.is_empty(), "the exporter logged errors:\n{log}");

    let exporter = cartd_tests::Exporter::start(&bin, &cartd, &["--check-keys=cart:*"]);
    let body = exporter.scrape().await;
    let log = exporter.stop();
    assert!(
        cartd_tests::metric(&body, "redis_slowlog_length").is_some(),
        "{body}"
    );
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("level=error"))
        .filter(|line| !line.contains("unknown type: cart for key: cart:"))
        .collect();
    assert!(errors.is_empty(), "the exporter logged errors:\n{log}");
}
