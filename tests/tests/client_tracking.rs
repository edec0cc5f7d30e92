//! Client-side caching: `CLIENT TRACKING` as Redis has it (RESP3 `invalidate` pushes, the
//! RESP2 redirect to `__redis__:invalidate`, BCAST prefixes, OPTIN/OPTOUT with `CLIENT
//! CACHING`, NOLOOP), on carts; and redis-py's `cache_config`, which caches a CART.GET and
//! drops it when the cart changes. Before this, CLIENT TRACKING was an unknown subcommand.

use cartd_tests::scripts::{client_libs, run_script};
use cartd_tests::{encode_command, w, Cartd, RawConn};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 reply")
}

fn invalidation(key: &str) -> String {
    format!(
        ">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{key}\r\n",
        key.len()
    )
}

async fn resp3(cartd: &Cartd) -> RawConn {
    let mut conn = cartd.raw().await;
    assert!(text(conn.call(&["HELLO", "3"]).await).starts_with('%'));
    conn
}

/// Nothing more arrives on `conn` (within a second).
async fn silent(conn: &mut RawConn) {
    assert!(!conn.is_closed().await);
    assert!(
        conn.buffered().is_empty(),
        "unexpected: {:?}",
        String::from_utf8_lossy(conn.buffered())
    );
}

/// The default mode: a cart the client read is invalidated once when it changes (by
/// another client, by itself before its own reply, by expiry), and not again until read
/// again.
#[tokio::test]
async fn a_cart_read_is_invalidated_when_it_changes() {
    let cartd =
        Cartd::start("[carts]\nguest_prefix = \"guest:\"\nguest_ttl_s = 1\nuser_ttl_s = 3600\n");
    let mut writer = cartd.raw().await;
    writer
        .call(&w("CART.ADD cart:x mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    let mut cache = resp3(&cartd).await;
    assert_eq!(
        text(cache.call(&["CLIENT", "TRACKING", "ON"]).await),
        "+OK\r\n"
    );
    assert!(text(cache.call(&["CART.GET", "cart:x", "NOVALIDATE"]).await).starts_with('%'));
    writer
        .call(&w("CART.ADD cart:x mug - 1 REPLY VERSION"))
        .await;
    assert_eq!(text(cache.read_reply().await), invalidation("cart:x"));
    writer
        .call(&w("CART.ADD cart:x mug - 1 REPLY VERSION"))
        .await;
    silent(&mut cache).await;

    // Its own change: the invalidation comes before the reply.
    cache.call(&["CART.GET", "cart:x", "NOVALIDATE"]).await;
    assert_eq!(
        text(
            cache
                .call(&w(
                    "CART.ADD cart:x cup - 1 PRICE 50 CURRENCY USD REPLY VERSION"
                ))
                .await
        ),
        invalidation("cart:x")
    );
    assert_eq!(text(cache.read_reply().await), ":4\r\n");

    // A missing cart read is tracked too: its creation invalidates it. So is an expiry.
    assert_eq!(text(cache.call(&["EXISTS", "guest:1"]).await), ":0\r\n");
    writer
        .call(&w("CART.ADD guest:1 mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    assert_eq!(text(cache.read_reply().await), invalidation("guest:1"));
    cache.call(&["CART.GET", "guest:1", "NOVALIDATE"]).await;
    assert_eq!(
        text(cache.read_reply().await),
        invalidation("guest:1"),
        "the guest cart expires after 1 s"
    );

    // Tracking off: nothing more.
    cache.call(&["CART.GET", "cart:x", "NOVALIDATE"]).await;
    assert_eq!(
        text(cache.call(&["CLIENT", "TRACKING", "OFF"]).await),
        "+OK\r\n"
    );
    writer.call(&w("CART.CLEAR cart:x")).await;
    silent(&mut cache).await;
}

/// NOLOOP skips the client's own changes; BCAST announces every change under its prefixes,
/// read or not; OPTIN tracks only the read after CLIENT CACHING YES.
#[tokio::test]
async fn noloop_bcast_and_optin_behave_as_in_redis() {
    let cartd = Cartd::start_default();
    let mut noloop = resp3(&cartd).await;
    noloop.call(&["CLIENT", "TRACKING", "ON", "NOLOOP"]).await;
    noloop.call(&["CART.GET", "cart:n", "NOVALIDATE"]).await;
    assert_eq!(
        text(
            noloop
                .call(&w(
                    "CART.ADD cart:n mug - 1 PRICE 100 CURRENCY USD REPLY VERSION"
                ))
                .await
        ),
        ":1\r\n"
    );

    let mut bcast = resp3(&cartd).await;
    assert_eq!(
        text(
            bcast
                .call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "cart:a"])
                .await
        ),
        "+OK\r\n"
    );
    let mut writer = cartd.raw().await;
    writer
        .call(&w("CART.ADD cart:b mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    writer
        .call(&w("CART.ADD cart:a1 mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    assert_eq!(text(bcast.read_reply().await), invalidation("cart:a1"));
    writer
        .call(&w("CART.ADD cart:a1 mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    assert_eq!(
        text(bcast.read_reply().await),
        invalidation("cart:a1"),
        "BCAST announces every change"
    );
    silent(&mut bcast).await;
    // Another client's change of cart:n reaches the NOLOOP client once it read it again
    // (its own change took the key off the table, as in Redis).
    noloop.call(&["CART.GET", "cart:n", "NOVALIDATE"]).await;
    writer.call(&w("CART.ADD cart:n mug - 1")).await;
    assert_eq!(text(noloop.read_reply().await), invalidation("cart:n"));

    let mut optin = resp3(&cartd).await;
    optin.call(&["CLIENT", "TRACKING", "ON", "OPTIN"]).await;
    optin.call(&["CART.GET", "cart:b", "NOVALIDATE"]).await;
    assert_eq!(
        text(optin.call(&["CLIENT", "CACHING", "YES"]).await),
        "+OK\r\n"
    );
    optin.call(&["CART.GET", "cart:a1", "NOVALIDATE"]).await;
    writer.call(&w("CART.ADD cart:b mug - 1")).await;
    writer.call(&w("CART.ADD cart:a1 mug - 1")).await;
    assert_eq!(text(optin.read_reply().await), invalidation("cart:a1"));
    silent(&mut optin).await;
    bcast.read_reply().await;
}

/// RESP2 clients redirect invalidations to a client subscribed to `__redis__:invalidate`,
/// which receives them as messages there.
#[tokio::test]
async fn resp2_redirects_invalidations_to_a_subscriber() {
    let cartd = Cartd::start_default();
    let mut listener = cartd.raw().await;
    let id = text(listener.call(&["CLIENT", "ID"]).await);
    let id = id.trim_start_matches(':').trim_end().to_owned();
    listener.call(&["SUBSCRIBE", "__redis__:invalidate"]).await;
    let mut cache = cartd.raw().await;
    assert_eq!(
        text(
            cache
                .call(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
                .await
        ),
        "+OK\r\n"
    );
    assert_eq!(
        text(cache.call(&["CLIENT", "GETREDIR"]).await),
        format!(":{id}\r\n")
    );
    cache.call(&["CART.GET", "cart:r", "NOVALIDATE"]).await;
    let mut writer = cartd.raw().await;
    writer
        .call(&w("CART.ADD cart:r mug - 1 PRICE 100 CURRENCY USD"))
        .await;
    assert_eq!(
        text(listener.read_reply().await),
        "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$6\r\ncart:r\r\n"
    );
    let list = text(writer.call(&["CLIENT", "LIST"]).await);
    assert!(list.contains("flags=t db=0"), "{list}");
    assert!(list.contains(&format!("redir={id}")), "{list}");
    // A redirecting client has no mailbox of its own; it still leaves the tracking table,
    // by RESET or by going away.
    let mut redirected = cartd.raw().await;
    redirected
        .call(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
        .await;
    assert_eq!(text(redirected.call(&["RESET"]).await), "+RESET\r\n");
    drop(cache);
    let mut left = false;
    for _ in 0..100 {
        let clients = text(writer.call(&["INFO", "clients"]).await);
        if clients.contains("tracking_clients:0\r\n") {
            left = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        left,
        "the redirecting clients are still in the tracking table"
    );
}

/// What Redis refuses, cartd refuses with Redis's words; GETREDIR and TRACKINGINFO report
/// the mode.
#[tokio::test]
async fn tracking_options_are_checked_and_reported() {
    let cartd = Cartd::start_default();
    let mut conn = resp3(&cartd).await;
    for (args, error) in [
        (
            &["CLIENT", "TRACKING", "ON", "REDIRECT", "999999"][..],
            "-ERR The client ID you want redirect to does not exist\r\n",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "PREFIX", "cart:"][..],
            "-ERR PREFIX option requires BCAST mode to be enabled\r\n",
        ),
        (
            &["CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"][..],
            "-ERR You can't use both OPTIN and OPTOUT\r\n",
        ),
        (
            &["CLIENT", "CACHING", "YES"][..],
            "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n",
        ),
        (
            &["CLIENT", "TRACKING", "MAYBE"][..],
            "-ERR syntax error\r\n",
        ),
    ] {
        assert_eq!(text(conn.call(args).await), error, "{args:?}");
    }
    assert_eq!(text(conn.call(&["CLIENT", "GETREDIR"]).await), ":-1\r\n");
    conn.call(&[
        "CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "cart:a", "PREFIX", "cart:b",
    ])
    .await;
    assert_eq!(
        text(conn.call(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "cart:ab"]).await),
        "-ERR Prefix 'cart:ab' overlaps with an existing prefix 'cart:a'. Prefixes for a single client must not overlap.\r\n"
    );
    assert_eq!(
        text(conn.call(&["CLIENT", "CACHING", "YES"]).await),
        "-ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.\r\n"
    );
    assert_eq!(text(conn.call(&["CLIENT", "GETREDIR"]).await), ":0\r\n");
    let info = text(conn.call(&["CLIENT", "TRACKINGINFO"]).await);
    assert_eq!(
        info,
        "%3\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*2\r\n$6\r\ncart:a\r\n$6\r\ncart:b\r\n"
    );
    conn.call(&["CLIENT", "TRACKING", "OFF"]).await;
    let info = text(conn.call(&["CLIENT", "TRACKINGINFO"]).await);
    assert!(
        info.contains("$3\r\noff\r\n") && info.contains(":-1\r\n"),
        "{info}"
    );
}

const REDIS_PY_CACHE: &str = r#"
import json, sys, time, redis
from redis.cache import CacheConfig

class CartCache(CacheConfig):
    def is_allowed_to_cache(self, command):
        return command == "CART.GET" or super().is_allowed_to_cache(command)

port = int(sys.argv[1])
cached = redis.Redis(host="127.0.0.1", port=port, protocol=3, cache_config=CartCache())
other = redis.Redis(host="127.0.0.1", port=port)
admin = redis.Redis(host="127.0.0.1", port=port)
other.execute_command("CART.ADD", "cart:py", "mug", "-", "1", "PRICE", "100", "CURRENCY", "USD")
def get():
    view = cached.execute_command("CART.GET", "cart:py", "NOVALIDATE", keys=["cart:py"])
    return view[b"version"] if isinstance(view, dict) else view["version"]
def calls():
    return admin.info("commandstats").get("cmdstat_cart.get", {}).get("calls", 0)
out = {"first": get(), "second": get(), "calls_after_two": calls()}
other.execute_command("CART.ADD", "cart:py", "mug", "-", "1")
deadline = time.time() + 5
while time.time() < deadline:
    out["after_change"] = get()
    if out["after_change"] != out["first"]:
        break
    time.sleep(0.05)
out["calls_after_change"] = calls()
out["cache_size"] = cached.get_cache().size
print(json.dumps(out))
"#;

/// redis-py with `cache_config` (RESP3, CLIENT TRACKING ON): the second CART.GET comes from
/// its cache (the server counts one), and a change by another client drops it, so the next
/// read shows the new version.
#[tokio::test]
async fn redis_py_client_side_cache_drops_a_changed_cart() {
    let cartd = Cartd::start_default();
    let libs = client_libs().join("python");
    assert!(
        libs.exists(),
        "{} missing: run scripts/test, which installs redis-py",
        libs.display()
    );
    let port = cartd.port().to_string();
    let out = run_script(
        "python3",
        &["-c", REDIS_PY_CACHE, &port],
        ("PYTHONPATH", libs),
    );
    assert_eq!(out["first"], 1);
    assert_eq!(out["second"], 1);
    assert_eq!(
        out["calls_after_two"], 1,
        "the second read came from the cache"
    );
    assert_eq!(
        out["after_change"], 2,
        "the change invalidated the cached view"
    );
    assert_eq!(out["calls_after_change"], 2);
    assert_eq!(out["cache_size"], 1);
}

/// Each client counts: a thousand tracked carts, a thousand invalidations, and the
/// tracking table forgets what it invalidated (INFO tracking_total_keys).
#[tokio::test]
async fn the_tracking_table_is_counted_and_bounded() {
    let cartd = Cartd::start("[server]\ntracking_table_max_keys = 100\n");
    let mut cache = resp3(&cartd).await;
    cache.call(&["CLIENT", "TRACKING", "ON"]).await;
    let mut reads = Vec::new();
    for cart in 0..150 {
        reads.extend(encode_command(&["EXISTS", &format!("cart:{cart}")]));
    }
    cache.send(&reads).await;
    let mut invalidated = 0;
    let mut answered = 0;
    while answered < 150 {
        let reply = text(cache.read_reply().await);
        if reply.starts_with(">2") {
            invalidated += 1;
        } else {
            answered += 1;
        }
    }
    let mut info = cartd.raw().await;
    let stats = text(info.call(&["INFO", "stats"]).await);
    assert!(stats.contains("tracking_total_keys:100\r\n"), "{stats}");
    while invalidated < 50 {
        assert!(text(cache.read_reply().await).starts_with(">2"));
        invalidated += 1;
    }
    silent(&mut cache).await;
}
