//! Delta records in PostgreSQL: a delta applies to the state it was made from, whether the
//! batch holds it or only the cart's row does, and a delta without its state is refused.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::support::*;
use super::writer::{start, stop};
use crate::sink::load_cart;

/// The items of `key`'s row, and its version.
async fn items(pool: &sqlx::PgPool, key: &[u8]) -> Option<(serde_json::Value, i64)> {
    let stored = load_cart(pool, key, 0).await.unwrap()?;
    Some((stored.row.items, stored.row.version))
}

/// An image then deltas on it in one batch make the row of the last delta.
#[tokio::test]
async fn deltas_in_one_batch_build_on_the_image_before_them() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([
        add(1, b"cart:d", 1),
        delta(2, b"cart:d", 2, 1, json!({"items": [{"product": "p2"}]})),
        add(3, b"cart:other", 1),
        delta(4, b"cart:d", 3, 2, json!({"currency": "USD"})),
    ]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 4).await;

    assert_eq!(
        items(&pool, b"cart:d").await,
        Some((json!([{"product": "p2"}]), 3))
    );
    let stored = load_cart(&pool, b"cart:d", 0).await.unwrap().unwrap();
    assert_eq!((stored.row.currency.as_str(), stored.lsn), ("USD", 4));
    assert_eq!(handle.stats.codec_errors.load(Ordering::Relaxed), 0);
    assert_eq!(events(&pool).await.len(), 4);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// A delta in a later batch applies to the image PostgreSQL's row holds.
#[tokio::test]
async fn a_delta_in_a_later_batch_builds_on_the_stored_row() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:d", 1)]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 1).await;
    source.push([delta(2, b"cart:d", 2, 1, json!({"items": []}))]);
    wait_for_checkpoint(&handle, 2).await;
    source.push([delta(
        3,
        b"cart:d",
        3,
        2,
        json!({"items": [{"product": "p9"}]}),
    )]);
    wait_for_checkpoint(&handle, 3).await;

    assert_eq!(
        items(&pool, b"cart:d").await,
        Some((json!([{"product": "p9"}]), 3))
    );
    assert_eq!(carts(&pool).await, [("cart:d".into(), 3, 3)]);
    assert_eq!(handle.stats.codec_errors.load(Ordering::Relaxed), 0);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// A delta whose state PostgreSQL does not hold (another LSN, no row, or refused by the codec)
/// leaves the row as it was and is reported; the next image writes the row again.
#[tokio::test]
async fn a_delta_without_its_state_is_reported_and_the_next_image_heals_the_row() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:d", 1), add(2, b"cart:r", 1)]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 2).await;
    source.push([
        delta(3, b"cart:d", 2, 7, json!({"items": []})),
        delta(4, b"cart:none", 2, 1, json!({"items": []})),
        delta(5, b"cart:r", 2, 2, json!({"refuse": true})),
        // Builds on the refused one: its state is unknown too.
        delta(6, b"cart:r", 3, 5, json!({"items": []})),
    ]);
    wait_for_checkpoint(&handle, 6).await;
    assert_eq!(
        carts(&pool).await,
        [("cart:d".into(), 1, 1), ("cart:r".into(), 1, 2)]
    );
    assert_eq!(handle.stats.codec_errors.load(Ordering::Relaxed), 4);
    assert_eq!(events(&pool).await.len(), 6, "every event is still written");

    source.push([add(7, b"cart:d", 4)]);
    wait_for_checkpoint(&handle, 7).await;
    assert_eq!(
        carts(&pool).await,
        [("cart:d".into(), 4, 7), ("cart:r".into(), 1, 2)]
    );
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// Running again from an old checkpoint over deltas the rows already hold changes nothing.
#[tokio::test]
async fn rereading_deltas_the_row_already_holds_changes_nothing() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:d", 1)]);
    source.push((2..=20).map(|lsn| delta(lsn, b"cart:d", lsn, lsn - 1, json!({"version": lsn}))));
    let (handle, cancel) = start(&pool, &source, |options| options.batch_records_max = 3);
    wait_for_checkpoint(&handle, 20).await;
    stop(handle, cancel).await;
    assert_eq!(carts(&pool).await, [("cart:d".into(), 20, 20)]);

    sqlx::query("UPDATE sink_checkpoint SET lsn = 5")
        .execute(&pool)
        .await
        .unwrap();
    let (handle, cancel) = start(&pool, &source, |options| options.batch_records_max = 4);
    wait_for_checkpoint(&handle, 20).await;
    assert_eq!(carts(&pool).await, [("cart:d".into(), 20, 20)]);
    assert_eq!(handle.stats.codec_errors.load(Ordering::Relaxed), 0);
    assert_eq!(handle.stats.events_inserted.load(Ordering::Relaxed), 0);
    stop(handle, cancel).await;
    db.drop(pool).await;
}
