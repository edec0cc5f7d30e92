//! Reading carts back (restore) and deleting old ones (cleanup).

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::record::{EventKind, Record};
use crate::sink::{cleanup, last_cleanup_ms, load_cart, load_live_carts, spawn, SinkOptions};
use crate::sink::{CartRow, StoredCart};

const NOW_MS: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// Writes `records` through a sink and stops it.
async fn write(pool: &sqlx::PgPool, records: Vec<Record>) {
    let last = records.last().expect("records to write").lsn;
    let source = VecSource::default();
    source.push(records);
    let cancel = CancellationToken::new();
    let mut options = SinkOptions::new("n1");
    options.coalesce_ms = 5;
    let handle = spawn(pool.clone(), source, codec(), options, cancel.clone());
    wait_for_checkpoint(&handle, last).await;
    cancel.cancel();
    handle.stopped().await;
}

/// Restore loads every cart that has not expired, with its key and row as written; a cart
/// that never expires counts as live.
#[tokio::test]
async fn load_live_carts_skips_expired_rows() {
    let (db, pool) = TestDb::create().await;
    let live = cart(2, NOW_MS - 10, NOW_MS + 1);
    let forever = cart(3, NOW_MS - 10, i64::MAX);
    let expired = cart(4, NOW_MS - 10, NOW_MS);
    let any = |lsn, key: &[u8], row| image(lsn, key, row, EventKind::Update, json!({}));
    write(
        &pool,
        vec![
            any(1, b"cart:live", &live),
            any(2, b"\xfe\xffforever", &forever),
            any(3, b"cart:expired", &expired),
        ],
    )
    .await;

    let mut loaded = Vec::new();
    let count = load_live_carts(&pool, NOW_MS, |key, stored| loaded.push((key, stored)))
        .await
        .unwrap();
    loaded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(count, 2);
    let stored = |row: &CartRow, lsn| StoredCart {
        row: row.clone(),
        image: Some(serde_json::to_vec(row).unwrap().into()),
        lsn,
    };
    assert_eq!(
        loaded,
        [
            (bytes::Bytes::from_static(b"cart:live"), stored(&live, 1)),
            (
                bytes::Bytes::from_static(b"\xfe\xffforever"),
                stored(&forever, 2)
            ),
        ],
        "the row, the image as logged, and the LSN that wrote them"
    );
    assert_eq!(
        load_cart(&pool, b"cart:live", NOW_MS).await.unwrap(),
        Some(stored(&live, 1))
    );
    assert_eq!(
        load_cart(&pool, b"cart:expired", NOW_MS).await.unwrap(),
        None
    );
    assert_eq!(load_cart(&pool, b"cart:none", NOW_MS).await.unwrap(), None);
    db.drop(pool).await;
}

/// Cleanup deletes carts idle past the limit and events past theirs, in several batches,
/// and nothing newer.
#[tokio::test]
async fn cleanup_deletes_idle_carts_and_old_events_only() {
    let (db, pool) = TestDb::create().await;
    let idle = cart(1, NOW_MS - 91 * DAY_MS, FAR_FUTURE_MS);
    let recent = cart(1, NOW_MS - 89 * DAY_MS, FAR_FUTURE_MS);
    let old_event = json!({"at_ms": NOW_MS - 31 * DAY_MS});
    let new_event = json!({"at_ms": NOW_MS - 29 * DAY_MS});
    let mut records = vec![
        image(1, b"cart:idle", &idle, EventKind::Add, new_event.clone()),
        image(2, b"cart:recent", &recent, EventKind::Add, new_event),
    ];
    // More old events than one cleanup statement deletes.
    records.extend((3..=25_002).map(|lsn| {
        let row = cart(lsn as i64, NOW_MS - DAY_MS, FAR_FUTURE_MS);
        image(
            lsn,
            b"cart:busy",
            &row,
            EventKind::Update,
            old_event.clone(),
        )
    }));
    write(&pool, records).await;

    assert_eq!(last_cleanup_ms(&pool).await.unwrap(), None);
    let report = cleanup(&pool, NOW_MS, 90, 30).await.unwrap();
    assert_eq!(report.carts_deleted, 1);
    assert_eq!(report.events_deleted, 25_000);
    let keys: Vec<String> = carts(&pool).await.into_iter().map(|cart| cart.0).collect();
    assert_eq!(keys, ["cart:busy", "cart:recent"]);
    let left: Vec<i64> = events(&pool)
        .await
        .into_iter()
        .map(|event| event.0)
        .collect();
    assert_eq!(left, [1, 2]);
    assert_eq!(last_cleanup_ms(&pool).await.unwrap(), Some(NOW_MS));
    db.drop(pool).await;
}

/// Not a check: how many carts a second the sink writes, each cart one record, with batches
/// of the default size. Run with `cargo test -p cartd-persistence --release -- --ignored
/// --nocapture sink_throughput`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn sink_throughput() {
    const CARTS: u64 = 200_000;
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push((1..=CARTS).map(|lsn| add(lsn, format!("cart:{lsn}").as_bytes(), 1)));
    let cancel = CancellationToken::new();
    let start = std::time::Instant::now();
    let handle = spawn(
        pool.clone(),
        source,
        codec(),
        SinkOptions::new("n1"),
        cancel.clone(),
    );
    wait_for_checkpoint(&handle, CARTS).await;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "sink: {CARTS} carts in {seconds:.2} s = {:.0} carts/s ({} transactions)",
        CARTS as f64 / seconds,
        handle
            .stats
            .transactions
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    cancel.cancel();
    handle.stopped().await;
    db.drop(pool).await;
}
