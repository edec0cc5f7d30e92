//! A full disk: once the log cannot be written, changes are refused with -MISCONF (reads go
//! on, INFO says why), the unwritten queue stays bounded, and when space comes back writes
//! resume by themselves; every acknowledged change survives a restart. It used to acknowledge
//! millions of changes into memory under `everysec` (and lose 98% of them at restart), and to
//! hang every writer forever under `always`. The data directory is on a small tmpfs the test
//! mounts (or a loop device); a machine that allows neither skips the test, saying so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cartd_tests::{cmd, info, info_field, view, Cartd, SmallDisk};
use redis::aio::MultiplexedConnection;

/// key -> highest version acknowledged.
type Acked = HashMap<String, i64>;

/// Adds lines until `stop` (or a MISCONF reply, with `stop_on_misconf`), recording every
/// acknowledged version. Returns what it saw acknowledged and whether MISCONF came.
async fn writer(
    mut conn: MultiplexedConnection,
    start: u64,
    stop: Arc<AtomicBool>,
    stop_on_misconf: bool,
) -> (Acked, bool) {
    let mut acked = Acked::new();
    let mut round = start;
    while !stop.load(Ordering::Relaxed) && round < start + 200_000 {
        let key = format!("cart:{}", round % 400);
        let product = format!("p{}", round % 7);
        let args = [
            "CART.ADD", &key, &product, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY",
            "VERSION",
        ];
        match cmd(&mut conn, &args).await {
            Ok(redis::Value::Int(version)) => {
                acked.insert(key, version);
            }
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(error) if error.starts_with("MISCONF ") => {
                if stop_on_misconf {
                    return (acked, true);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(error) => panic!("unexpected error {error}"),
        }
        round += 1;
    }
    (acked, false)
}

/// Waits until `check` holds, polling; panics with `what` after 20 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the probe sees while the disk is full: the log failing in INFO, a change refused
/// with MISCONF naming the cause, reads served, and the unwritten queue within its bound.
async fn assert_refusing(probe: &mut MultiplexedConnection) {
    let text = info(probe, &["persistence"]).await;
    assert_eq!(
        info_field(&text, "aof_last_write_status").as_deref(),
        Some("err"),
        "{text}"
    );
    assert!(text.contains("No space left"), "{text}");
    let refused = cmd(probe, &PROBE_ADD)
        .await
        .expect_err("a change is refused while the log cannot be written");
    assert!(
        refused.starts_with("MISCONF ") && refused.contains("No space left"),
        "{refused}"
    );
    let read = view(probe, "cart:1").await;
    assert!(read.is_object(), "reads go on: {read}");
    let queued: u64 = info_field(&text, "wal_queue_bytes")
        .unwrap()
        .parse()
        .unwrap();
    let bound: u64 = info_field(&text, "wal_queue_bytes_max")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        queued <= bound,
        "the unwritten queue is bounded: {queued} > {bound}"
    );
}

const PROBE_ADD: [&str; 9] = [
    "CART.ADD",
    "cart:probe",
    "x",
    "-",
    "1",
    "PRICE",
    "1",
    "CURRENCY",
    "USD",
];

/// After a restart every acknowledged version is there (or a later one).
async fn assert_all_present(cartd: &Cartd, acked: &Acked) {
    let mut conn = cartd.client(false).await;
    assert!(acked.len() > 100, "{} carts acknowledged", acked.len());
    for (key, version) in acked {
        let found = view(&mut conn, key).await["version"].as_i64().unwrap_or(0);
        assert!(
            found >= *version,
            "{key}: acknowledged {version}, after restart {found}"
        );
    }
}

async fn full_disk_loses_nothing(appendfsync: &str) {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let config = format!(
        "[persistence]\nappendfsync = \"{appendfsync}\"\nwal_segment_mb = 1\n\
         snapshot_every_changes = 0\nsnapshot_every_s = 0\n"
    );
    let mut cartd = Cartd::start_on(&config, disk.path().join("data"));
    let filler = disk.fill(400 * 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let first = tokio::spawn(writer(cartd.client(false).await, 0, stop.clone(), true));
    let mut probe = cartd.client(false).await;
    wait_until("the log fails to write", || {
        let mut probe = probe.clone(); // a handle on the same connection
        async move {
            let text = info(&mut probe, &["persistence"]).await;
            info_field(&text, "wal_refusing_writes").as_deref() == Some("1")
        }
    })
    .await;
    assert_refusing(&mut probe).await;

    std::fs::remove_file(&filler).expect("free the space");
    wait_until("writes resume by themselves", || {
        let mut probe = probe.clone();
        async move { cmd(&mut probe, &PROBE_ADD).await.is_ok() }
    })
    .await;
    // The first writer's change that met the full disk waited, unanswered (a reply waits
    // for its record to be written under every policy, synced under always), and is
    // answered now; it is told to stop. Whatever it was answered must survive the restart.
    stop.store(true, Ordering::Relaxed);
    let (mut acked, _) = first
        .await
        .unwrap_or_else(|error| panic!("the writer: {error}; log:\n{}", cartd.log()));
    let stop = Arc::new(AtomicBool::new(false));
    let second = tokio::spawn(writer(
        cartd.client(false).await,
        1_000_000,
        stop.clone(),
        false,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (more, _) = second.await.expect("the second writer");
    assert!(!more.is_empty(), "writes go on after the space came back");
    for (key, version) in more {
        let entry = acked.entry(key).or_default();
        *entry = (*entry).max(version);
    }
    drop(probe);
    assert!(cartd.stop_gracefully().success(), "{}", cartd.log());
    cartd.restart();
    assert_all_present(&cartd, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_and_loses_nothing_under_everysec() {
    full_disk_loses_nothing("everysec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_and_loses_nothing_under_always() {
    full_disk_loses_nothing("always").await;
}
