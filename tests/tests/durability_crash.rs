//! Durability across crashes: with `appendfsync always`, every acknowledged change survives a
//! SIGKILL at any moment (mid-storm, mid-snapshot); merges and deletes survive too; snapshots
//! let the log they cover go and recover to the same carts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cartd_tests::{
    encode_command, info, info_number, int, ok, parse_reply, reply_length, view, Cartd,
};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinSet;

const ALWAYS: &str = "[persistence]\nappendfsync = \"always\"\nwal_segment_mb = 1\n";

/// What one writer saw acknowledged: key -> highest version replied.
type Acked = HashMap<String, i64>;

/// Adds lines to its own 50 carts until `stop`, recording each acknowledged version. Errors
/// (the connection dying under the kill) end the writer; what was acknowledged before stays.
async fn writer(mut conn: MultiplexedConnection, id: usize, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("cart:w{id}-{}", round % 50);
        let product = format!("p{}", round % 7);
        let reply: redis::RedisResult<i64> = redis::cmd("CART.ADD")
            .arg(&key)
            .arg(&product)
            .arg("-")
            .arg(1)
            .arg("PRICE")
            .arg(100)
            .arg("CURRENCY")
            .arg("USD")
            .arg("REPLY")
            .arg("VERSION")
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(version) => {
                acked.insert(key, version);
            }
            Err(_) => break,
        }
        round += 1;
    }
    acked
}

/// Runs 8 writers, kills cartd after `before_kill` (running `during` just before), and
/// returns everything acknowledged.
async fn storm_then_kill(cartd: &mut Cartd, before_kill: Duration, during: &[&str]) -> Acked {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = JoinSet::new();
    for id in 0..8 {
        let conn = cartd.client(false).await;
        writers.spawn(writer(conn, id, stop.clone()));
    }
    tokio::time::sleep(before_kill).await;
    if !during.is_empty() {
        let mut conn = cartd.client(false).await;
        ok(&mut conn, during).await;
    }
    cartd.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acked = Acked::new();
    while let Some(result) = writers.join_next().await {
        acked.extend(result.expect("writer task"));
    }
    acked
}

/// Every acknowledged (key, version) is present at that version or later.
async fn assert_all_present(cartd: &Cartd, acked: &Acked) {
    assert!(!acked.is_empty(), "the storm acknowledged nothing");
    let mut conn = cartd.client(false).await;
    for (key, version) in acked {
        let cart = view(&mut conn, key).await;
        let found = cart["version"].as_i64().unwrap_or(0);
        assert!(
            found >= *version,
            "{key}: acknowledged version {version}, after restart {found}; log:\n{}",
            cartd.log()
        );
    }
}

/// SIGKILL in the middle of a write storm, at several moments (plain, right after a SAVE,
/// while a BGSAVE runs), loses no acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_under_load_loses_no_acknowledged_write() {
    let mut cartd = Cartd::start_async(ALWAYS).await;
    let mut all = Acked::new();
    let moments: [(u64, &[&str]); 3] = [(300, &[]), (500, &["SAVE"]), (400, &["BGSAVE"])];
    for (millis, during) in moments {
        let acked = storm_then_kill(&mut cartd, Duration::from_millis(millis), during).await;
        for (key, version) in acked {
            let entry = all.entry(key).or_default();
            *entry = (*entry).max(version);
        }
        cartd.restart();
        assert_all_present(&cartd, &all).await;
    }
}

/// Pipelines CART.ADDs on a raw socket (two chunks of 20 in flight: the next chunk arrives
/// while the last one's replies wait for the log) until the connection dies, recording each
/// acknowledged version. Replies come in request order: each version is above the last one
/// replied for its cart.
async fn pipelining_writer(addr: std::net::SocketAddr, id: usize) -> Acked {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut acked = Acked::new();
    let mut in_flight = std::collections::VecDeque::new();
    let mut buffer = Vec::new();
    let mut round = 0u64;
    loop {
        while in_flight.len() < 40 {
            let mut chunk = Vec::new();
            for _ in 0..20 {
                let key = format!("cart:p{id}-{}", round % 10);
                let product = format!("p{}", round % 3);
                chunk.extend(encode_command(&[
                    "CART.ADD", &key, &product, "-", "1", "PRICE", "100", "CURRENCY", "USD",
                    "REPLY", "VERSION",
                ]));
                in_flight.push_back(key);
                round += 1;
            }
            if stream.write_all(&chunk).await.is_err() {
                return acked;
            }
        }
        match stream.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return acked,
            Ok(_) => {}
        }
        while let Ok(Some(length)) = reply_length(&buffer) {
            let reply = parse_reply(&buffer[..length]);
            buffer.drain(..length);
            let key = in_flight.pop_front().expect("a reply answers a request");
            let version = int(&reply);
            let before = acked.insert(key.clone(), version).unwrap_or(0);
            assert!(
                version > before,
                "{key}: version {version} replied after {before}"
            );
        }
    }
}

/// Pipelining clients under `always`: replies held for the log come back in order, and a
/// SIGKILL mid-stream loses none of the changes they acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_changes_acknowledged_under_always_survive_a_kill() {
    let mut cartd = Cartd::start_async(ALWAYS).await;
    let mut writers = JoinSet::new();
    for id in 0..4 {
        writers.spawn(pipelining_writer(cartd.addr(), id));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cartd.kill();
    let mut acked = Acked::new();
    while let Some(result) = writers.join_next().await {
        acked.extend(result.expect("writer task"));
    }
    assert!(
        acked.values().sum::<i64>() > 100,
        "the writers got replies: {acked:?}"
    );
    cartd.restart();
    assert_all_present(&cartd, &acked).await;
}

/// `everysec` and `no`: a reply waits until its change is written to the log file (not
/// synced), so a process crash (SIGKILL, a panic, the OOM killer) loses nothing acknowledged;
/// only an OS crash can lose the last second. Pipelining clients at full speed, killed at
/// three moments (replies used to go out before the write, which came within a millisecond or
/// later on a busy machine, so every kill lost some).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_loses_no_acknowledged_change_under_everysec_and_no() {
    for policy in ["everysec", "no"] {
        let config = format!("[persistence]\nappendfsync = \"{policy}\"\nwal_segment_mb = 1\n");
        let mut cartd = Cartd::start_async(&config).await;
        let mut all = Acked::new();
        for millis in [200, 350, 500] {
            let mut writers = JoinSet::new();
            for id in 0..4 {
                writers.spawn(pipelining_writer(cartd.addr(), id));
            }
            tokio::time::sleep(Duration::from_millis(millis)).await;
            cartd.kill();
            while let Some(result) = writers.join_next().await {
                for (key, version) in result.expect("writer task") {
                    let entry = all.entry(key).or_default();
                    *entry = (*entry).max(version);
                }
            }
            cartd.restart();
            assert_all_present(&cartd, &all).await;
        }
    }
}

/// A graceful restart keeps every cart; a merged guest cart stays gone, a deleted cart stays
/// deleted, and the merged user cart keeps the guest's line.
#[tokio::test]
async fn merges_and_deletes_survive_restart() {
    let mut cartd = Cartd::start_async("").await;
    let mut conn = cartd.client(false).await;
    let add = |key: &'static str, product: &'static str| {
        vec![
            "CART.ADD", key, product, "-", "2", "PRICE", "150", "CURRENCY", "EUR",
        ]
    };
    ok(&mut conn, &add("cart:guest:g1", "mug")).await;
    ok(&mut conn, &add("cart:7", "tea")).await;
    ok(&mut conn, &add("cart:8", "pot")).await;
    ok(&mut conn, &["CART.MERGE", "cart:guest:g1", "cart:7"]).await;
    ok(&mut conn, &["DEL", "cart:8"]).await;
    let before = view(&mut conn, "cart:7").await;
    drop(conn);
    cartd.stop_gracefully();
    cartd.restart();
    let mut conn = cartd.client(false).await;
    let exists = ok(&mut conn, &["EXISTS", "cart:guest:g1", "cart:8", "cart:7"]).await;
    assert_eq!(int(&exists), 1, "only cart:7 is left");
    let after = view(&mut conn, "cart:7").await;
    assert_eq!(after["items"], before["items"]);
    assert_eq!(after["currency"], "EUR");
    assert!(after["version"].as_i64() >= before["version"].as_i64());
}

/// SAVE writes a snapshot that lets the log segments it covers go; after a crash the carts
/// come back from snapshot plus log, and LASTSAVE and INFO persistence tell the story.
#[tokio::test]
async fn snapshots_release_the_log_and_recover_the_same_carts() {
    let mut cartd = Cartd::start_async("[persistence]\nwal_segment_mb = 1\n").await;
    let mut conn = cartd.client(false).await;
    // Carts of up to 80 long lines, each change a new line (a delta of about 150 bytes, an
    // image every 32 versions): several 1 MiB segments in all.
    let variant = "v".repeat(60);
    for round in 0..80 {
        let mut pipe = redis::pipe();
        for i in 0..300 {
            pipe.cmd("CART.ADD")
                .arg(format!("cart:{i}"))
                .arg(format!("{}-{round}", "x".repeat(58)))
                .arg(&variant)
                .arg(1)
                .arg("PRICE")
                .arg(5)
                .arg("CURRENCY")
                .arg("USD")
                .arg("REPLY")
                .arg("NONE")
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("the adds");
    }
    let before = info(&mut conn, &["persistence"]).await;
    assert!(info_number(&before, "wal_segments") >= 3, "{before}");
    assert_eq!(info_number(&before, "aof_enabled"), 1);
    assert_eq!(info_number(&before, "wal_last_lsn"), 24_000);
    ok(&mut conn, &["SAVE"]).await;
    let after = info(&mut conn, &["persistence"]).await;
    assert!(
        info_number(&after, "wal_segments") < info_number(&before, "wal_segments"),
        "SAVE released no segment:\n{before}\n{after}"
    );
    assert_eq!(info_number(&after, "rdb_changes_since_last_save"), 0);
    let lastsave = int(&ok(&mut conn, &["LASTSAVE"]).await);
    assert!(lastsave > 1_700_000_000, "LASTSAVE {lastsave}");
    let product = format!("{}-3", "x".repeat(58));
    ok(&mut conn, &["CART.REMOVE", "cart:5", &product, &variant]).await;
    let wanted = [
        view(&mut conn, "cart:5").await,
        view(&mut conn, "cart:299").await,
    ];
    drop(conn);
    // everysec writes within a millisecond and syncs later; a process kill loses nothing
    // written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cartd.kill();
    cartd.restart();
    let mut conn = cartd.client(false).await;
    assert_eq!(int(&ok(&mut conn, &["DBSIZE"]).await), 300);
    let loaded = info(&mut conn, &["persistence"]).await;
    assert_eq!(
        info_number(&loaded, "loaded_snapshot_carts"),
        300,
        "{loaded}"
    );
    assert_eq!(info_number(&loaded, "loaded_log_records"), 1, "{loaded}");
    for want in wanted {
        let key = want["id"].as_str().expect("id").to_string();
        let got = view(&mut conn, &key).await;
        assert_eq!(got["items"], want["items"], "{key}");
        assert_eq!(got["version"], want["version"], "{key}");
    }
}
