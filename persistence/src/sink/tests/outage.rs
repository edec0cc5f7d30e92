//! The sink when PostgreSQL or the log fails: it waits, retries, and loses or repeats nothing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::sink::{connect_lazy, spawn, SinkOptions};

/// Options for a sink that retries quickly.
fn quick_retries() -> SinkOptions {
    let mut options = SinkOptions::new("n1");
    options.coalesce_ms = 5;
    options.retry_backoff_max_ms = 200;
    options
}

/// Started before its database exists, the sink retries, then migrates and catches up.
#[tokio::test]
async fn the_sink_waits_for_postgresql_then_catches_up() {
    let db = TestDb::planned();
    let pool = connect_lazy(&db.url).unwrap();
    let source = VecSource::default();
    source.push((1..=50).map(|lsn| add(lsn, format!("cart:{}", lsn % 7).as_bytes(), lsn as i64)));
    let cancel = CancellationToken::new();
    let handle = spawn(
        pool.clone(),
        source.clone(),
        codec(),
        quick_retries(),
        cancel.clone(),
    );
    wait_for(&handle, "two failed attempts", |handle| {
        handle.stats.failures.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(!handle.stats.connected.load(Ordering::Relaxed));
    let error = handle
        .stats
        .last_error()
        .expect("a failure leaves its error");
    assert!(
        error.contains(&db.name),
        "the error names what failed: {error}"
    );

    db.create_now().await;
    wait_for_checkpoint(&handle, 50).await;
    assert_eq!(events(&pool).await.len(), 50);
    assert_eq!(carts(&pool).await.len(), 7);
    assert!(handle.stats.connected.load(Ordering::Relaxed));
    assert_eq!(handle.stats.last_error(), None);
    cancel.cancel();
    handle.stopped().await;
    db.drop(pool).await;
}

/// Connections cut again and again while the log grows: every record lands once.
#[tokio::test]
async fn lost_connections_lose_and_repeat_nothing() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    let cancel = CancellationToken::new();
    let mut options = quick_retries();
    options.batch_records_max = 50;
    let handle = spawn(
        pool.clone(),
        source.clone(),
        codec(),
        options,
        cancel.clone(),
    );
    let mut killed = 0;
    for round in 0..20u64 {
        let first = round * 100 + 1;
        source.push(
            (first..first + 100)
                .map(|lsn| add(lsn, format!("cart:{}", lsn % 37).as_bytes(), lsn as i64)),
        );
        tokio::time::sleep(Duration::from_millis(7)).await;
        killed += db.kill_connections().await;
    }
    wait_for_checkpoint(&handle, 2_000).await;
    assert!(killed > 0, "the test cut no connection");
    let lsns: Vec<i64> = events(&pool)
        .await
        .into_iter()
        .map(|event| event.0)
        .collect();
    assert_eq!(lsns, (1..=2_000).collect::<Vec<i64>>());
    let rows = carts(&pool).await;
    assert_eq!(rows.len(), 37);
    assert!(rows
        .iter()
        .all(|(_, version, lsn)| version == lsn && *lsn > 2_000 - 37));
    cancel.cancel();
    handle.stopped().await;
    db.drop(pool).await;
}

/// A transaction failing halfway leaves nothing behind; the same records are retried until
/// they go through, and none is skipped.
#[tokio::test]
async fn a_failed_transaction_leaves_nothing_and_is_retried() {
    let (db, pool) = TestDb::create().await;
    // Refuses the event at LSN 50 while `refuse` holds it: the rows of its batch are already
    // written by then, and must roll back with it.
    sqlx::raw_sql(
        "CREATE TABLE refuse (lsn bigint); INSERT INTO refuse VALUES (50); \
         CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF EXISTS (SELECT 1 FROM refuse WHERE lsn = NEW.lsn) THEN \
             RAISE EXCEPTION 'refused LSN %', NEW.lsn; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_event BEFORE INSERT ON cart_events \
           FOR EACH ROW EXECUTE FUNCTION refuse_event();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let source = VecSource::default();
    source.push((1..=100).map(|lsn| add(lsn, format!("cart:{lsn}").as_bytes(), 1)));
    let cancel = CancellationToken::new();
    let mut options = quick_retries();
    options.batch_records_max = 10;
    let handle = spawn(
        pool.clone(),
        source.clone(),
        codec(),
        options,
        cancel.clone(),
    );
    wait_for(&handle, "a failure at LSN 50", |handle| {
        handle.stats.failures.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(handle.stats.checkpoint_lsn(), 40);
    assert_eq!(
        carts(&pool).await.len(),
        40,
        "the failed batch's rows rolled back"
    );
    assert_eq!(events(&pool).await.len(), 40);
    assert!(handle
        .stats
        .last_error()
        .unwrap()
        .contains("refused LSN 50"));

    sqlx::query("DELETE FROM refuse")
        .execute(&pool)
        .await
        .unwrap();
    wait_for_checkpoint(&handle, 100).await;
    assert_eq!(carts(&pool).await.len(), 100);
    assert_eq!(events(&pool).await.len(), 100);
    cancel.cancel();
    handle.stopped().await;
    db.drop(pool).await;
}

/// A log that cannot be read is retried like PostgreSQL; cancelling a sink stuck in its
/// retries stops it at once.
#[tokio::test]
async fn an_unreadable_log_is_retried_and_cancel_stops_a_waiting_sink() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.failing_reads.store(3, Ordering::Relaxed);
    source.push((1..=5).map(|lsn| add(lsn, b"cart:a", lsn as i64)));
    let cancel = CancellationToken::new();
    let handle = spawn(
        pool.clone(),
        source.clone(),
        codec(),
        quick_retries(),
        cancel.clone(),
    );
    wait_for_checkpoint(&handle, 5).await;
    assert_eq!(handle.stats.failures.load(Ordering::Relaxed), 3);

    source.failing_reads.store(u64::MAX, Ordering::Relaxed);
    source.push([add(6, b"cart:a", 6)]);
    wait_for(&handle, "a failing read", |handle| {
        handle.stats.last_error().is_some()
    })
    .await;
    let start = Instant::now();
    cancel.cancel();
    handle.stopped().await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "cancel waited out the backoff"
    );
    db.drop(pool).await;
}
