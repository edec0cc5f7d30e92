//! TTL and expiry: carts live their kind's TTL after their last access (CART.GET or a mutation,
//! not EXISTS/TTL/PTTL), and the timing wheel removes them without anyone touching them.
//!
//! Every test runs its own cartd with `guest_ttl_s = 1` and `user_ttl_s = 2`. Deadlines are
//! generous; the only timing facts asserted are "still there before the TTL ends" and "gone
//! within about two seconds after it".

use std::time::Duration;

use cartd_tests::{int, json_reply, ok, view, Cartd};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;
use tokio::time::{sleep, sleep_until, Instant};

/// Short lifetimes: guest carts 1 s, user carts 2 s.
const TTL_CONFIG: &str = "[carts]\nguest_ttl_s = 1\nuser_ttl_s = 2\n";

/// How long after its deadline a cart may take to disappear: the wheel has 1 s ticks and turns
/// every 250 ms, so about 1.25 s, plus room for a loaded machine.
const REAP_SLACK: Duration = Duration::from_secs(2);

/// Slack for comparing the server's clock with the test's.
const CLOCK_SLACK_MS: i64 = 50;

/// A connection whose replies may take up to 10 s (the redis crate's default is 500 ms, too
/// little for a long pipeline on a loaded test machine).
async fn connect(cartd: &Cartd) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{}/", cartd.addr())).expect("valid url");
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect")
}

/// Creates a cart with one line; returns the reply (a JSON view).
async fn create(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let args = [
        "CART.ADD", key, "sku", "-", "1", "PRICE", "100", "CURRENCY", "USD", "FORMAT", "JSON",
    ];
    json_reply(&ok(conn, &args).await)
}

/// An integer reply of a one-key command such as EXISTS, TTL or PTTL.
async fn key_int(conn: &mut MultiplexedConnection, command: &str, key: &str) -> i64 {
    int(&ok(conn, &[command, key]).await)
}

async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    int(&ok(conn, &["DBSIZE"]).await)
}

/// `expired_keys` from `INFO stats`.
async fn expired_keys(conn: &mut MultiplexedConnection) -> i64 {
    let text = match ok(conn, &["INFO", "stats"]).await {
        Value::BulkString(bytes) => String::from_utf8(bytes).expect("INFO is text"),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO replied {other:?}"),
    };
    text.lines()
        .find_map(|line| line.strip_prefix("expired_keys:"))
        .expect("INFO stats has expired_keys")
        .trim()
        .parse()
        .expect("expired_keys is a number")
}

/// Polls DBSIZE (which never reaps a cart itself) every 50 ms until it is `target` or
/// `deadline` passes; returns the last value seen.
async fn poll_dbsize(conn: &mut MultiplexedConnection, target: i64, deadline: Instant) -> i64 {
    loop {
        let size = dbsize(conn).await;
        if size == target || Instant::now() >= deadline {
            return size;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The most PTTL can be, read after `read_from`, for a cart whose last access was acknowledged
/// at `acked` and whose TTL is `ttl_ms`.
fn pttl_at_most(ttl_ms: i64, acked: Instant, read_from: Instant) -> i64 {
    ttl_ms - (read_from - acked).as_millis() as i64 + CLOCK_SLACK_MS
}

/// A user cart (TTL 2 s) nobody touches is still there 1.5 s after its last access, and gone
/// within TTL + 2 s: DBSIZE drops to 0 and INFO counts one expired key before any command
/// looks the cart up (so the wheel removed it, not a lazy check); CART.GET then finds nothing.
#[tokio::test]
async fn an_untouched_user_cart_is_removed_by_the_wheel() {
    let cartd = Cartd::start(TTL_CONFIG);
    let mut conn = cartd.client(false).await;
    let sent = Instant::now();
    create(&mut conn, "cart:alone").await;
    let acked = Instant::now();

    sleep_until(sent + Duration::from_millis(1500)).await;
    let read_from = Instant::now();
    assert_eq!(key_int(&mut conn, "EXISTS", "cart:alone").await, 1);
    assert_eq!(dbsize(&mut conn).await, 1);
    let pttl = key_int(&mut conn, "PTTL", "cart:alone").await;
    assert!(
        pttl > 0 && pttl <= pttl_at_most(2000, acked, read_from),
        "PTTL {pttl} just before the end of a 2 s TTL"
    );

    let deadline = acked + Duration::from_secs(2) + REAP_SLACK;
    let size = poll_dbsize(&mut conn, 0, deadline).await;
    assert_eq!(size, 0, "the cart is removed within TTL + 2 s");
    assert_eq!(expired_keys(&mut conn).await, 1, "the wheel counted it");
    assert_eq!(key_int(&mut conn, "EXISTS", "cart:alone").await, 0);
    assert_eq!(view(&mut conn, "cart:alone").await, Json::Null);
    assert_eq!(key_int(&mut conn, "PTTL", "cart:alone").await, -2);
    assert_eq!(expired_keys(&mut conn).await, 1, "counted once");
}

/// Access renews: of three 2 s user carts, one read with CART.GET and one written with CART.ADD
/// every second for 4 s both stay (each access resets PTTL to about 2000), while one only
/// looked at with EXISTS, TTL and PTTL keeps counting down and is removed.
#[tokio::test]
async fn get_and_add_renew_the_ttl_but_exists_ttl_and_pttl_do_not() {
    let cartd = Cartd::start(TTL_CONFIG);
    let mut conn = cartd.client(false).await;
    let start = Instant::now();
    for key in ["cart:read", "cart:written", "cart:peeked"] {
        create(&mut conn, key).await;
    }
    let acked = Instant::now();
    for step in 1..=4u32 {
        sleep_until(start + Duration::from_secs(step.into())).await;
        let read_from = Instant::now();
        let peeked = key_int(&mut conn, "PTTL", "cart:peeked").await;
        key_int(&mut conn, "EXISTS", "cart:peeked").await;
        key_int(&mut conn, "TTL", "cart:peeked").await;
        if step == 1 {
            assert!(
                peeked > 0 && peeked <= pttl_at_most(2000, acked, read_from),
                "PTTL {peeked}: one second of the TTL is gone"
            );
        }
        let cart = view(&mut conn, "cart:read").await;
        assert_eq!(cart["kind"], "user", "step {step}: the read cart is there");
        assert!(key_int(&mut conn, "PTTL", "cart:read").await > 1500);
        let args = [
            "CART.ADD",
            "cart:written",
            "sku",
            "-",
            "1",
            "REPLY",
            "VERSION",
        ];
        let version = int(&ok(&mut conn, &args).await);
        assert_eq!(version, i64::from(step) + 1, "the written cart is there");
        assert!(key_int(&mut conn, "PTTL", "cart:written").await > 1500);
    }
    // The peeked cart's deadline passed two seconds ago; give the wheel one more second at
    // most (the renewed carts live until about 6 s).
    let size = poll_dbsize(&mut conn, 2, Instant::now() + Duration::from_secs(1)).await;
    assert_eq!(size, 2, "only the peeked cart was removed");
    assert_eq!(key_int(&mut conn, "EXISTS", "cart:peeked").await, 0);
    let exists = ok(&mut conn, &["EXISTS", "cart:read", "cart:written"]).await;
    assert_eq!(int(&exists), 2);
    assert_eq!(expired_keys(&mut conn).await, 1);
}

/// Right after creation a guest cart has about 1 s to live and a user cart about 2 s: in the
/// creating reply's `ttl_ms`, in PTTL and in TTL (rounded up to whole seconds).
#[tokio::test]
async fn guest_and_user_carts_get_their_own_ttl() {
    let cartd = Cartd::start(TTL_CONFIG);
    let mut conn = cartd.client(false).await;
    let guest = create(&mut conn, "cart:guest:x").await;
    let user = create(&mut conn, "cart:x").await;
    assert_eq!(guest["kind"], "guest");
    assert_eq!(user["kind"], "user");
    let guest_ttl = guest["ttl_ms"].as_i64().expect("ttl_ms");
    let user_ttl = user["ttl_ms"].as_i64().expect("ttl_ms");
    assert!(
        (900..=1000).contains(&guest_ttl),
        "guest ttl_ms {guest_ttl}"
    );
    assert!((1900..=2000).contains(&user_ttl), "user ttl_ms {user_ttl}");
    let guest_pttl = key_int(&mut conn, "PTTL", "cart:guest:x").await;
    let user_pttl = key_int(&mut conn, "PTTL", "cart:x").await;
    assert!(
        (500..=1000).contains(&guest_pttl),
        "guest PTTL {guest_pttl}"
    );
    assert!((1500..=2000).contains(&user_pttl), "user PTTL {user_pttl}");
    assert_eq!(key_int(&mut conn, "TTL", "cart:guest:x").await, 1);
    assert_eq!(key_int(&mut conn, "TTL", "cart:x").await, 2);
}

/// A guest cart merged into a missing user cart becomes a user cart with the user TTL (about
/// 2 s, not the guest's 1 s), and it outlives the guest TTL.
#[tokio::test]
async fn a_guest_cart_merged_into_a_new_user_cart_takes_the_user_ttl() {
    let cartd = Cartd::start(TTL_CONFIG);
    let mut conn = cartd.client(false).await;
    create(&mut conn, "cart:guest:y").await;
    let merged = Instant::now();
    let reply = ok(
        &mut conn,
        &["CART.MERGE", "cart:guest:y", "cart:y", "FORMAT", "JSON"],
    )
    .await;
    let cart = json_reply(&reply);
    assert_eq!(cart["kind"], "user");
    let pttl = key_int(&mut conn, "PTTL", "cart:y").await;
    assert!((1500..=2000).contains(&pttl), "merged cart PTTL {pttl}");
    sleep_until(merged + Duration::from_millis(1500)).await;
    assert_eq!(key_int(&mut conn, "EXISTS", "cart:y").await, 1);
    assert_eq!(key_int(&mut conn, "EXISTS", "cart:guest:y").await, 0);
}

/// Creates `count` guest carts (1 s TTL) and checks that they all go without being touched:
/// DBSIZE reaches 0 within about 4 s of the last creation and INFO counts exactly `count`
/// expired keys.
async fn many_guest_carts_expire(config: &str, count: usize) {
    let cartd = Cartd::start(config);
    let mut conn = connect(&cartd).await;
    let keys: Vec<String> = (0..count).map(|n| format!("cart:guest:many:{n}")).collect();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("CART.ADD").arg(key).arg("sku").arg("-").arg(1);
            pipe.arg("PRICE").arg(100).arg("CURRENCY").arg("USD");
            pipe.arg("REPLY").arg("NONE");
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.expect("adds succeed");
        assert!(replies.iter().all(|reply| *reply == Value::Okay));
    }
    let created = Instant::now();
    let held = dbsize(&mut conn).await;
    let expired = expired_keys(&mut conn).await;
    assert!(held > 0, "the carts exist once created");
    assert!(held + expired >= count as i64, "no cart vanished uncounted");

    let deadline = created + Duration::from_secs(1) + REAP_SLACK + Duration::from_secs(1);
    let size = poll_dbsize(&mut conn, 0, deadline).await;
    assert_eq!(size, 0, "all {count} carts are removed within about 4 s");
    assert_eq!(expired_keys(&mut conn).await, count as i64);
    let some = ok(
        &mut conn,
        &["EXISTS", &keys[0], &keys[count / 2], &keys[count - 1]],
    )
    .await;
    assert_eq!(int(&some), 0);
}

/// 5,000 guest carts with a 1 s TTL are all removed by the wheels of the 64 shards within about
/// 4 s, and INFO stats counts 5,000 expired keys.
#[tokio::test]
async fn many_carts_all_expire_actively() {
    many_guest_carts_expire(TTL_CONFIG, 5_000).await;
}

/// With one shard, 10,000 carts created within a second fall due in one wheel, at least 5,000
/// of them in the same tick: more than one expiry pass looks at under one lock hold (4,096).
/// Expiry resumes where it stopped and removes them all within about 4 s, counted exactly.
#[tokio::test]
async fn many_carts_in_one_shard_all_expire_actively() {
    let config = format!("[server]\nshards = 1\n{TTL_CONFIG}");
    many_guest_carts_expire(&config, 10_000).await;
}

/// A TTL renewal a read logs is written with that read's batch, not left queued until some
/// later write (replicas and PostgreSQL would not see it, and a crash would lose it).
/// Before (080cc7c, 871683c) `wal_written_lsn` stayed behind `wal_last_lsn` until the next
/// write or the once-a-second sync.
#[tokio::test]
async fn a_logged_ttl_renewal_is_written_without_waiting_for_a_write() {
    let cartd = Cartd::start_async(
        "[carts]\nguest_ttl_s = 10\nuser_ttl_s = 10\n[persistence]\nappendfsync = \"everysec\"\n",
    )
    .await;
    let mut conn = connect(&cartd).await;
    create(&mut conn, "cart:touched").await;
    // Each read past one touch step (1% of the TTL, 100 ms) after the last logs a renewal.
    for _ in 0..2 {
        sleep(Duration::from_millis(300)).await;
        let _: Value = redis::cmd("CART.GET")
            .arg("cart:touched")
            .query_async(&mut conn)
            .await
            .expect("CART.GET");
    }
    // Written with the read's batch, before its reply: the next request sees it written.
    let text: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let field = |name: &str| cartd_tests::info::info_number(&text, name);
    let (last, written) = (field("wal_last_lsn"), field("wal_written_lsn"));
    assert_eq!(last, 3, "an add and two renewals");
    assert_eq!(
        written, last,
        "the renewals are written with their reads' batches"
    );
}
