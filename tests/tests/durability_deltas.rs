//! Smaller log records: a change to a cart logs what changed (a delta on the cart's state
//! before it), with a full image now and then. The log stays small, and a cart rebuilt from
//! deltas (by a restart, from a snapshot and the log after it, or by PostgreSQL's sink) is
//! exactly the cart that was acknowledged.

use std::collections::BTreeMap;

use cartd_tests::{cmd, info, info_number, int, ok, stored, wait_for_sink, Cartd, TestDb};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

/// Every change on disk before it is acknowledged, so INFO's byte count is exact; no automatic
/// snapshots.
const EXACT_LOG: &str =
    "[persistence]\nappendfsync = \"always\"\nsnapshot_every_changes = 0\nsnapshot_every_s = 0\n";

async fn wal_bytes(conn: &mut MultiplexedConnection) -> u64 {
    info_number(&info(conn, &["persistence"]).await, "wal_bytes")
}

fn add<'a>(key: &'a str, product: &'a str, qty: &'a str) -> Vec<&'a str> {
    vec![
        "CART.ADD", key, product, "-", qty, "PRICE", "1999", "CURRENCY", "USD", "REPLY", "NONE",
    ]
}

/// A CART.ADD to a 50-line cart logs at most 200 bytes, images every 32 versions included
/// (it logged the whole cart, about 1,270 bytes, every time).
#[tokio::test]
async fn a_line_change_on_a_50_line_cart_logs_under_200_bytes() {
    let cartd = Cartd::start_async(EXACT_LOG).await;
    let mut conn = cartd.client(false).await;
    let skus: Vec<String> = (0..50).map(|i| format!("sku-{i:04}")).collect();
    for sku in &skus {
        ok(&mut conn, &add("cart:123456", sku, "1")).await;
    }
    let before = wal_bytes(&mut conn).await;
    let adds = 640u64;
    for i in 0..adds as usize {
        ok(&mut conn, &add("cart:123456", &skus[i % 50], "1")).await;
    }
    let per_add = (wal_bytes(&mut conn).await - before) / adds;
    assert!(
        per_add <= 200,
        "a CART.ADD to a 50-line cart logged {per_add} bytes"
    );
    // A new line on the big cart is small too; the cart's view is what the adds made.
    let before = wal_bytes(&mut conn).await;
    for i in 50..82 {
        ok(&mut conn, &add("cart:123456", &format!("sku-{i:04}"), "2")).await;
    }
    let per_line = (wal_bytes(&mut conn).await - before) / 32;
    assert!(per_line <= 250, "a new line logged {per_line} bytes");
    let view = stored(&mut conn, "cart:123456").await;
    let items = view["items"].as_array().expect("items");
    assert_eq!(items.len(), 82);
    let qty: i64 = items.iter().map(|line| line["qty"].as_i64().unwrap()).sum();
    assert_eq!(qty, 50 + adds as i64 + 64);
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// `steps` random changes to 12 carts: adds, quantity sets, removes, clears, save and restore,
/// promo codes and TTL changes. Refused ones (a line that is not there) change nothing.
async fn random_changes(conn: &mut MultiplexedConnection, rng: &mut Lcg, steps: usize) {
    for _ in 0..steps {
        let key = format!("cart:{}", rng.below(12));
        let product = format!("p{}", rng.below(8));
        let qty = (1 + rng.below(4)).to_string();
        let args: Vec<&str> = match rng.below(20) {
            0..=8 => add(&key, &product, &qty),
            9..=10 => vec!["CART.SET", &key, &product, "-", &qty],
            11 => vec!["CART.SET", &key, &product, "-", "0"],
            12 => vec!["CART.REMOVE", &key, &product, "-"],
            13 => vec!["CART.SAVE", &key, &product, "-"],
            14 => vec!["CART.RESTORE", &key, &product, "-"],
            15 => vec!["CART.PROMO", &key, "ADD", "TEN"],
            16 => vec!["CART.PROMO", &key, "REMOVE", "TEN"],
            17 => vec!["CART.CLEAR", &key],
            _ => vec!["EXPIRE", &key, "86400"],
        };
        let _ = cmd(conn, &args).await;
    }
}

/// Every cart's stored view, by key.
async fn every_cart(conn: &mut MultiplexedConnection) -> BTreeMap<String, Json> {
    let mut carts = BTreeMap::new();
    for i in 0..12 {
        let key = format!("cart:{i}");
        let view = stored(conn, &key).await;
        if !view.is_null() {
            carts.insert(key, view);
        }
    }
    carts
}

/// Thousands of deltas over a dozen carts, a snapshot in the middle (so the replay starts
/// with deltas on carts the snapshot holds): after kill -9 every cart is exactly as it was
/// acknowledged; PostgreSQL's rows, built by applying the same deltas, restore a wiped node
/// to the same carts.
#[tokio::test]
async fn carts_rebuilt_from_deltas_are_exact_after_a_kill_and_from_postgres() {
    let db = TestDb::create().await;
    let config = format!(
        "[persistence]\nsnapshot_every_changes = 0\nsnapshot_every_s = 0\n\
         [postgres]\nurl = \"{}\"\ncoalesce_ms = 10\n",
        db.url
    );
    let mut cartd = Cartd::start_async(&config).await;
    let mut conn = cartd.client(false).await;
    let promo = r#"{"kind":"percent","percent":10}"#;
    ok(&mut conn, &["PROMO.SET", "TEN", promo]).await;
    let mut rng = Lcg(0x5eed);
    random_changes(&mut conn, &mut rng, 1500).await;
    ok(&mut conn, &["SAVE"]).await;
    random_changes(&mut conn, &mut rng, 1500).await;
    let acknowledged = every_cart(&mut conn).await;
    assert!(
        acknowledged.len() >= 10,
        "most carts exist: {acknowledged:?}"
    );
    let records = info_number(&info(&mut conn, &["persistence"]).await, "wal_last_lsn");
    assert!(records > 1500, "the changes were logged: {records}");
    eprintln!("records {records}");

    drop(conn);
    cartd.kill();
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(every_cart(&mut conn).await, acknowledged, "after kill -9");
    assert_eq!(
        int(&ok(&mut conn, &["DBSIZE"]).await),
        acknowledged.len() as i64
    );

    wait_for_sink(&mut conn).await;
    let sink = info(&mut conn, &["persistence"]).await;
    assert_eq!(
        info_number(&sink, "postgres_rows_refused"),
        0,
        "every delta found its state:\n{sink}"
    );
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    std::fs::remove_dir_all(cartd.data_dir()).expect("wipe the data directory");
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(every_cart(&mut conn).await, acknowledged, "from PostgreSQL");
}
