//! What one run of the sink leaves in PostgreSQL: rows, events, checkpoint, exactly once.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::record::{EventKind, TombstoneReason};
use crate::sink::{checkpoint, connect, load_cart, spawn, SinkHandle, SinkOptions};

/// Starts a sink for node "n1" on `pool` with `options` changed by `tune`.
pub(super) fn start(
    pool: &sqlx::PgPool,
    source: &VecSource,
    tune: impl FnOnce(&mut SinkOptions),
) -> (SinkHandle, CancellationToken) {
    let mut options = SinkOptions::new("n1");
    options.coalesce_ms = 5;
    tune(&mut options);
    let cancel = CancellationToken::new();
    let handle = spawn(
        pool.clone(),
        source.clone(),
        codec(),
        options,
        cancel.clone(),
    );
    (handle, cancel)
}

/// Cancels the sink and waits for it.
pub(super) async fn stop(handle: SinkHandle, cancel: CancellationToken) {
    cancel.cancel();
    handle.stopped().await;
}

/// Images upsert rows, tombstones delete them, every record is one event of the right kind.
#[tokio::test]
async fn a_batch_upserts_deletes_and_appends_one_event_per_record() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    let kept = cart(1, 1_700_000_000_500, FAR_FUTURE_MS);
    source.push([
        image(
            1,
            b"cart:a",
            &kept,
            EventKind::Add,
            json!({"product": "p1", "qty": 1}),
        ),
        add(2, b"cart:b", 1),
        tombstone(3, b"cart:b", 1, TombstoneReason::Deleted),
        add(4, b"cart:c", 1),
        tombstone(5, b"cart:c", 1, TombstoneReason::Expired),
        add(6, b"\xff\x00binary", 1),
    ]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 6).await;

    let keys: Vec<String> = carts(&pool).await.into_iter().map(|cart| cart.0).collect();
    assert_eq!(keys, ["\\xff0062696e617279", "cart:a"]);
    let row = load_cart(&pool, b"cart:a", 0).await.unwrap();
    assert_eq!(
        row.map(|stored| stored.row),
        Some(kept),
        "a row reads back as it was written"
    );
    let kinds: Vec<String> = events(&pool)
        .await
        .into_iter()
        .map(|event| event.2)
        .collect();
    assert_eq!(kinds, ["add", "add", "delete", "add", "abandon", "add"]);
    let payloads: Vec<Value> = sqlx::query_scalar("SELECT payload FROM cart_events ORDER BY lsn")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        payloads[0],
        json!({"product": "p1", "qty": 1, "version": 1})
    );
    assert_eq!(payloads[4], json!({"version": 1, "reason": "expired"}));
    assert_eq!(checkpoint(&pool, "n1").await.unwrap(), 6);
    assert_eq!(handle.stats.events_inserted.load(Ordering::Relaxed), 6);
    assert_eq!(handle.stats.records_applied.load(Ordering::Relaxed), 6);
    assert!(handle.stats.connected.load(Ordering::Relaxed));
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// Many changes to one cart within the window make one row write and keep every event.
#[tokio::test]
async fn changes_to_one_cart_coalesce_into_one_row_and_keep_every_event() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push((1..=1_000).map(|version| add(version as u64, b"cart:busy", version)));
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 1_000).await;

    assert_eq!(carts(&pool).await, [("cart:busy".into(), 1_000, 1_000)]);
    assert_eq!(events(&pool).await.len(), 1_000);
    assert_eq!(handle.stats.transactions.load(Ordering::Relaxed), 1);
    assert_eq!(handle.stats.carts_upserted.load(Ordering::Relaxed), 1);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// 100 records over 10 carts, a third of them ending in a tombstone.
fn mixed_log() -> Vec<crate::record::Record> {
    (1..=100u64)
        .map(|lsn| {
            let key = format!("cart:{}", lsn % 10);
            if lsn % 10 == 3 && lsn > 50 {
                tombstone(lsn, key.as_bytes(), lsn, TombstoneReason::Merged)
            } else {
                add(lsn, key.as_bytes(), lsn as i64)
            }
        })
        .collect()
}

/// Running again from an older checkpoint (as after a crash that lost the commit's reply)
/// writes no event twice and ends with the same rows.
#[tokio::test]
async fn rerunning_from_an_old_checkpoint_duplicates_nothing() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push(mixed_log());
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 100).await;
    stop(handle, cancel).await;
    let rows_before = carts(&pool).await;
    assert_eq!(rows_before.len(), 9, "cart:3 ends merged away");

    sqlx::query("UPDATE sink_checkpoint SET lsn = 40")
        .execute(&pool)
        .await
        .unwrap();
    let (handle, cancel) = start(&pool, &source, |options| options.batch_records_max = 7);
    wait_for_checkpoint(&handle, 100).await;
    assert_eq!(carts(&pool).await, rows_before);
    let lsns: Vec<i64> = events(&pool)
        .await
        .into_iter()
        .map(|event| event.0)
        .collect();
    assert_eq!(lsns, (1..=100).collect::<Vec<i64>>());
    // Rows may pass through older states on the way (cart:3 comes back until its tombstone
    // is read again), but events never repeat.
    assert_eq!(handle.stats.events_inserted.load(Ordering::Relaxed), 0);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// A record older than a cart's row neither replaces nor deletes it.
#[tokio::test]
async fn an_older_record_never_overwrites_a_newer_row() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:old", 1), add(2, b"cart:kept", 1)]);
    source.push([add(5, b"cart:old", 5), add(6, b"cart:kept", 6)]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 6).await;
    stop(handle, cancel).await;

    // Another log whose records are older than the rows: the checkpoint starts again.
    sqlx::query("DELETE FROM sink_checkpoint")
        .execute(&pool)
        .await
        .unwrap();
    let stale = VecSource::default();
    stale.push([
        add(3, b"cart:old", 3),
        tombstone(4, b"cart:kept", 3, TombstoneReason::Deleted),
    ]);
    let (handle, cancel) = start(&pool, &stale, |_| {});
    wait_for_checkpoint(&handle, 4).await;
    assert_eq!(
        carts(&pool).await,
        [("cart:kept".into(), 6, 6), ("cart:old".into(), 5, 5)]
    );
    assert_eq!(handle.stats.carts_upserted.load(Ordering::Relaxed), 0);
    assert_eq!(handle.stats.carts_deleted.load(Ordering::Relaxed), 0);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// An image the codec refuses leaves the cart's row as it was before the batch, and the sink
/// goes on.
#[tokio::test]
async fn an_image_the_codec_refuses_is_reported_and_passed() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:x", 1)]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 1).await;
    let mut refused = add(2, b"cart:x", 2);
    refused.changes[0].state = crate::record::State::Image(bytes::Bytes::from_static(b"not json"));
    let mut guest_without_nul = cart(3, 0, FAR_FUTURE_MS);
    guest_without_nul.items = json!([{"product": "nul\u{0}"}]);
    source.push([
        refused,
        image(
            3,
            b"cart:y",
            &guest_without_nul,
            EventKind::Add,
            json!({"p": "a\u{0}"}),
        ),
        add(4, b"cart:z", 1),
    ]);
    wait_for_checkpoint(&handle, 4).await;
    assert_eq!(
        carts(&pool).await,
        [("cart:x".into(), 1, 1), ("cart:z".into(), 1, 4)]
    );
    assert_eq!(events(&pool).await.len(), 4);
    assert_eq!(handle.stats.codec_errors.load(Ordering::Relaxed), 2);
    stop(handle, cancel).await;
    db.drop(pool).await;
}

/// Connecting twice applies the migrations once; a node that never ran is at LSN 0.
#[tokio::test]
async fn connect_migrates_once_and_a_new_node_starts_at_zero() {
    let (db, pool) = TestDb::create().await;
    let again = connect(&db.url).await.expect("connect a second time");
    assert_eq!(checkpoint(&again, "never-ran").await.unwrap(), 0);
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&again)
        .await
        .unwrap();
    let known = sqlx::migrate!("./migrations").migrations.len() as i64;
    assert!(known >= 2, "the migrations directory is read");
    assert_eq!(migrations, known, "each migration applied once");
    again.close().await;
    db.drop(pool).await;
}

/// The reference changes of the test below: two of `tv/-` (the second wins), `mug/red` set and
/// deleted, a promotion, two gift cards, G1 changed again.
fn reference_records() -> Vec<crate::record::Record> {
    use crate::record::Space;
    vec![
        reference(
            1,
            Space::Catalog,
            "tv/-",
            Some(json!({"price": 100, "currency": "USD", "max_qty": 1, "updated_at_ms": 5})),
        ),
        reference(
            2,
            Space::Catalog,
            "tv/-",
            Some(json!({"price": 90, "currency": "USD", "stock": 3, "updated_at_ms": 6})),
        ),
        reference(
            3,
            Space::Catalog,
            "mug/red",
            Some(json!({"price": 5, "currency": "EUR", "updated_at_ms": 7})),
        ),
        reference(
            4,
            Space::Promotion,
            "TEN",
            Some(json!({"kind": "percent", "percent": 10, "automatic": false})),
        ),
        reference(
            5,
            Space::GiftCard,
            "G1",
            Some(json!({"balance": 10000, "currency": "USD"})),
        ),
        reference(
            6,
            Space::GiftCard,
            "G2",
            Some(json!({"balance": 5, "currency": "USD"})),
        ),
        reference(7, Space::Catalog, "mug/red", None),
        reference(
            8,
            Space::GiftCard,
            "G1",
            Some(
                json!({"balance": 4000, "currency": "USD", "peer_spent": [["far-token", 300, 99]]}),
            ),
        ),
    ]
}

/// What the tables hold after [`reference_records`], sorted as the test sorts them.
fn reference_rows() -> Vec<(crate::sink::ReferenceKey, crate::sink::ReferenceValue)> {
    use crate::sink::{ReferenceKey, ReferenceValue};
    vec![
        (
            ReferenceKey::Catalog {
                product: b"tv".to_vec(),
                variant: b"-".to_vec(),
            },
            ReferenceValue::Catalog {
                price: Some(90),
                currency: Some("USD".into()),
                stock: Some(3),
                max_qty: None,
                updated_at_ms: 6,
            },
        ),
        (
            ReferenceKey::GiftCard(b"G1".to_vec()),
            ReferenceValue::GiftCard {
                balance: 4000,
                currency: "USD".into(),
                peer_spent: vec![("far-token".into(), 300, 99)],
            },
        ),
        (
            ReferenceKey::GiftCard(b"G2".to_vec()),
            ReferenceValue::GiftCard {
                balance: 5,
                currency: "USD".into(),
                peer_spent: Vec::new(),
            },
        ),
        (
            ReferenceKey::Promotion(b"TEN".to_vec()),
            ReferenceValue::Promotion {
                document: json!({"kind": "percent", "percent": 10, "automatic": false}),
                automatic: false,
            },
        ),
    ]
}

/// Catalog entries, promotions and gift cards reach their tables: the last change of each in
/// a batch decides its row, a tombstone deletes it, an older record never replaces a newer
/// row, and `load_reference` reads them back.
#[tokio::test]
async fn reference_data_reaches_its_tables_exactly_once() {
    use crate::record::Space;
    use crate::sink::load_reference;
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push(reference_records());
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 8).await;
    stop(handle, cancel).await;
    let mut loaded = load_reference(&pool).await.unwrap();
    loaded.sort_by_key(|(key, _)| format!("{key:?}"));
    assert_eq!(loaded, reference_rows());
    // A sink of another node, from its own checkpoint 0, with an older state of G1: the row
    // written at a higher LSN stays.
    let stale = VecSource::default();
    stale.push([reference(
        2,
        Space::GiftCard,
        "G1",
        Some(json!({"balance": 1, "currency": "USD"})),
    )]);
    let mut options = SinkOptions::new("n2");
    options.coalesce_ms = 5;
    let cancel = CancellationToken::new();
    let handle = spawn(
        pool.clone(),
        stale.clone(),
        codec(),
        options,
        cancel.clone(),
    );
    wait_for_checkpoint(&handle, 2).await;
    stop(handle, cancel).await;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM gift_cards WHERE code = 'G1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balance, 4000, "an older record never replaces a newer row");
    db.drop(pool).await;
}

/// A handoff (CART.MERGE across nodes) is the node's own business: its changes make no row and
/// no codec error, and the record still counts toward the checkpoint.
#[test]
fn a_handoff_change_makes_no_row() {
    use crate::record::{Change, Record, Space, State};
    let change = |state| Change {
        space: Space::Handoff,
        key: bytes::Bytes::from_static(b"Gcart:guest:1"),
        version: 0,
        at_ms: 1,
        state,
        event: None,
        guard: None,
    };
    let records = [
        Record {
            lsn: 1,
            changes: vec![change(State::Image(bytes::Bytes::from_static(b"entry")))],
        },
        Record {
            lsn: 2,
            changes: vec![change(State::Tombstone(TombstoneReason::Merged))],
        },
    ];
    let batch = crate::sink::batch::Batch::build(&records, &JsonCodec, 1, &Default::default());
    assert!(batch.codec_errors.is_empty(), "{:?}", batch.codec_errors);
    assert_eq!((batch.first_lsn, batch.last_lsn, batch.records), (1, 2, 2));
}
