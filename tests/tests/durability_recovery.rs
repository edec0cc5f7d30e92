//! Recovery keeps every intact record: a damaged newest snapshot falls back to the one before
//! it (kept, with the log from its LSN), and carts restored from PostgreSQL into a wiped data
//! directory are on local disk before anything is served.

use std::fs;
use std::path::PathBuf;

use cartd_tests::{info, info_number, int, ok, view, Cartd, TestDb};
use redis::aio::MultiplexedConnection;

/// Small segments, so snapshots release some of them; no automatic snapshots.
const SMALL_LOG: &str =
    "[persistence]\nwal_segment_mb = 1\nsnapshot_every_changes = 0\nsnapshot_every_s = 0\n";

async fn add_carts(conn: &mut MultiplexedConnection, from: usize, to: usize) {
    for i in from..to {
        let key = format!("cart:{i}");
        let args = [
            "CART.ADD", &key, "sku", "-", "1", "PRICE", "250", "CURRENCY", "USD", "REPLY", "NONE",
        ];
        ok(conn, &args).await;
    }
}

async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    int(&ok(conn, &["DBSIZE"]).await)
}

fn snapshots(cartd: &Cartd) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(cartd.data_dir().join("snapshots"))
        .expect("the snapshot directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .collect();
    files.sort();
    files
}

/// Two snapshots are kept; with the newest damaged, cartd loads the one before it and
/// replays the log from there: no cart is lost (it used to keep one snapshot only and the log
/// after it, so a damaged snapshot lost every cart it alone held).
#[tokio::test]
async fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
    let mut cartd = Cartd::start_async(SMALL_LOG).await;
    let mut conn = cartd.client(false).await;
    add_carts(&mut conn, 0, 3000).await;
    ok(&mut conn, &["SAVE"]).await;
    add_carts(&mut conn, 3000, 6000).await;
    ok(&mut conn, &["SAVE"]).await;
    add_carts(&mut conn, 6000, 7000).await;
    let kept = snapshots(&cartd);
    assert_eq!(kept.len(), 2, "the newest and the one before it: {kept:?}");
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    let newest = kept.last().expect("a snapshot");
    let mut bytes = fs::read(newest).expect("read the snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(newest, &bytes).expect("damage it");

    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(dbsize(&mut conn).await, 7000, "{}", cartd.log());
    assert!(
        cartd.log().contains("the one before it was loaded"),
        "{}",
        cartd.log()
    );
    let persistence = info(&mut conn, &["persistence"]).await;
    assert_eq!(info_number(&persistence, "loaded_snapshot_carts"), 3000);
    assert!(
        newest.with_extension("snap.damaged").exists(),
        "set aside for a look"
    );
    // The next snapshot is good again, and the one before it is the one that saved the day.
    ok(&mut conn, &["SAVE"]).await;
    assert_eq!(snapshots(&cartd).len(), 2);
    drop(conn);
    cartd.kill();
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(dbsize(&mut conn).await, 7000);
}

/// A wiped node restores from PostgreSQL, and a kill -9 right after finds every restored cart
/// again: the restore is snapshotted before serving (before, the restored carts were in no
/// local file, and a crash before the next snapshot lost them).
#[tokio::test]
async fn a_restore_from_postgres_is_durable_before_serving() {
    let db = TestDb::create().await;
    let config = format!(
        "[postgres]\nurl = \"{}\"\ncoalesce_ms = 10\n[persistence]\nappendfsync = \"always\"\n",
        db.url
    );
    let mut cartd = Cartd::start_async(&config).await;
    let mut conn = cartd.client(false).await;
    add_carts(&mut conn, 0, 50).await;
    loop {
        let text = info(&mut conn, &["persistence"]).await;
        if info_number(&text, "postgres_checkpoint_lsn") == info_number(&text, "wal_last_lsn") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    fs::remove_dir_all(cartd.data_dir()).expect("wipe the data directory");
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(dbsize(&mut conn).await, 50);
    ok(
        &mut conn,
        &[
            "CART.ADD", "cart:new", "sku", "-", "1", "PRICE", "1", "CURRENCY", "USD",
        ],
    )
    .await;
    drop(conn);
    cartd.kill();
    // PostgreSQL is still there, but this start must not need it: the local files hold all.
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(dbsize(&mut conn).await, 51);
    assert_eq!(view(&mut conn, "cart:7").await["items"][0]["qty"], 1);
    let text = info(&mut conn, &["persistence"]).await;
    assert_eq!(info_number(&text, "loaded_postgres_carts"), 0, "{text}");
}
