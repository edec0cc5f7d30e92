//! Applies a [`Batch`] in one transaction: first the checkpoint moves (from where this sink left
//! it, or the transaction stops), then carts are upserted and deleted and events appended, each
//! as one statement over arrays. Either all of it commits or none of it does, so every record's
//! effect lands exactly once however the sink or PostgreSQL stops.

use sqlx::{PgPool, Postgres, Transaction};

use super::batch::{Bases, Batch, Deletes, Events, Upserts};
use super::columns::{key_bytes, key_text, lsn_from_db, lsn_to_db};
use super::SinkError;
use crate::record::Lsn;

/// What a committed batch changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Rows inserted or replaced (an older record than the row's does not count).
    pub carts_upserted: u64,
    /// Rows deleted.
    pub carts_deleted: u64,
    /// Events inserted (one already there from an earlier run does not count).
    pub events_inserted: u64,
    /// Catalog, promotion and gift card rows written or deleted.
    pub reference_rows: u64,
}

/// Under which lease a sink writes: its term, and whether the shard group's lease row must
/// still carry it (a cluster primary's sink) or there is no lease (standalone, term 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Term {
    /// The term rows and events are written under.
    pub term: u64,
    /// The transaction checks `cluster_leases` still gives the group this term.
    pub leased: bool,
}

/// Writes `batch` for `node` in one transaction, its checkpoint moving from `checkpoint_lsn`
/// to the batch's last LSN, under `term`.
pub async fn apply(
    pool: &PgPool,
    node: &str,
    term: Term,
    checkpoint_lsn: Lsn,
    batch: &Batch,
) -> Result<Applied, SinkError> {
    assert!(
        batch.first_lsn > checkpoint_lsn,
        "a batch starts after the checkpoint"
    );
    let mut tx = pool
        .begin()
        .await
        .map_err(SinkError::query("starting the sink transaction"))?;
    // The lease first, under a share lock: a replica taking the group's lease over (which
    // updates the row) waits for this transaction, and once it has, no transaction of the old
    // term commits. A fenced primary writes nothing.
    if term.leased {
        check_lease(&mut tx, node, term.term).await?;
    }
    // Then the checkpoint, so a second sink for the same node waits on this row lock and then
    // fails instead of writing the same records alongside.
    move_checkpoint(&mut tx, node, term.term, checkpoint_lsn, batch.last_lsn).await?;
    let db_term = lsn_to_db(term.term);
    let applied = Applied {
        carts_upserted: upsert_carts(&mut tx, db_term, &batch.upserts).await?,
        carts_deleted: delete_carts(&mut tx, db_term, &batch.deletes).await?,
        events_inserted: insert_events(&mut tx, node, db_term, &batch.events).await?,
        reference_rows: batch.reference.apply(&mut tx, db_term).await?,
    };
    tx.commit()
        .await
        .map_err(SinkError::query("committing the sink transaction"))?;
    Ok(applied)
}

/// Fails with [`SinkError::Fenced`] unless the lease of shard group `node` is at `term`,
/// holding a share lock on its row until the transaction ends.
async fn check_lease(
    tx: &mut Transaction<'_, Postgres>,
    node: &str,
    term: u64,
) -> Result<(), SinkError> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT term FROM cluster_leases WHERE shard_group = $1 FOR SHARE")
            .bind(node)
            .fetch_optional(&mut **tx)
            .await
            .map_err(SinkError::query("checking the shard group's lease"))?;
    match current.map(lsn_from_db) {
        Some(current) if current == term => Ok(()),
        current => Err(SinkError::Fenced {
            node: node.to_owned(),
            term,
            current: current.unwrap_or(0),
        }),
    }
}

/// Moves `node`'s checkpoint from `from` to `to` (under `term`), or fails with where it
/// really is.
async fn move_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    node: &str,
    term: u64,
    from: Lsn,
    to: Lsn,
) -> Result<(), SinkError> {
    let moved: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sink_checkpoint (node, lsn, updated_at, term) VALUES ($1, $3, now(), $4) \
         ON CONFLICT (node) DO UPDATE SET lsn = excluded.lsn, updated_at = excluded.updated_at \
         WHERE sink_checkpoint.lsn = $2 AND sink_checkpoint.term = $4 \
         RETURNING lsn",
    )
    .bind(node)
    .bind(lsn_to_db(from))
    .bind(lsn_to_db(to))
    .bind(lsn_to_db(term))
    .fetch_optional(&mut **tx)
    .await
    .map_err(SinkError::query("moving the sink checkpoint"))?;
    // No row yet inserts; a row where this sink left it updates; any other row returns nothing.
    if moved.is_some() {
        return Ok(());
    }
    let found: i64 = sqlx::query_scalar("SELECT lsn FROM sink_checkpoint WHERE node = $1")
        .bind(node)
        .fetch_optional(&mut **tx)
        .await
        .map_err(SinkError::query("reading the sink checkpoint"))?
        .unwrap_or(0);
    Err(SinkError::CheckpointMoved {
        node: node.to_owned(),
        expected: from,
        found: lsn_from_db(found),
    })
}

/// Inserts or replaces the batch's cart rows, each only over a row from an older record.
async fn upsert_carts(
    tx: &mut Transaction<'_, Postgres>,
    term: i64,
    upserts: &Upserts,
) -> Result<u64, SinkError> {
    if upserts.keys.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "INSERT INTO carts (key, kind, user_id, currency, items, saved, unavailable, metadata, \
             version, lsn, created_at, updated_at, expires_at, image, term) \
         SELECT key, kind, user_id, currency, items, saved, unavailable, metadata, version, lsn, \
             cartd_ms_to_ts(created_ms), cartd_ms_to_ts(updated_ms), cartd_ms_to_ts(expires_ms), \
             image, $15 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], \
             $7::jsonb[], $8::jsonb[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], \
             $13::int8[], $14::bytea[]) \
           AS cart(key, kind, user_id, currency, items, saved, unavailable, metadata, version, \
             lsn, created_ms, updated_ms, expires_ms, image) \
         ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, user_id = excluded.user_id, \
             currency = excluded.currency, items = excluded.items, saved = excluded.saved, \
             unavailable = excluded.unavailable, metadata = excluded.metadata, \
             version = excluded.version, lsn = excluded.lsn, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, expires_at = excluded.expires_at, \
             image = excluded.image, term = excluded.term \
         WHERE (carts.term, carts.lsn) < (excluded.term, excluded.lsn)",
    )
    .bind(&upserts.keys)
    .bind(&upserts.kinds)
    .bind(&upserts.user_ids)
    .bind(&upserts.currencies)
    .bind(&upserts.items)
    .bind(&upserts.saved)
    .bind(&upserts.unavailable)
    .bind(&upserts.metadata)
    .bind(&upserts.versions)
    .bind(&upserts.lsns)
    .bind(&upserts.created_at_ms)
    .bind(&upserts.updated_at_ms)
    .bind(&upserts.expires_at_ms)
    .bind(&upserts.images)
    .bind(term)
    .execute(&mut **tx)
    .await
    .map_err(SinkError::query("upserting the batch's carts"))?;
    Ok(result.rows_affected())
}

/// Deletes the batch's tombstoned carts, each only if its row is from an older record.
async fn delete_carts(
    tx: &mut Transaction<'_, Postgres>,
    term: i64,
    deletes: &Deletes,
) -> Result<u64, SinkError> {
    if deletes.keys.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "DELETE FROM carts USING UNNEST($1::text[], $2::int8[]) AS gone(key, lsn) \
         WHERE carts.key = gone.key AND (carts.term, carts.lsn) < ($3, gone.lsn)",
    )
    .bind(&deletes.keys)
    .bind(&deletes.lsns)
    .bind(term)
    .execute(&mut **tx)
    .await
    .map_err(SinkError::query("deleting the batch's tombstoned carts"))?;
    Ok(result.rows_affected())
}

/// Appends one event per change that has one; one already there (same node, term, LSN and
/// place in its record) stays as it is.
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    node: &str,
    term: i64,
    events: &Events,
) -> Result<u64, SinkError> {
    if events.lsns.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "INSERT INTO cart_events (node, lsn, seq, cart_key, kind, payload, at, term) \
         SELECT $1, lsn, seq, cart_key, kind, payload, cartd_ms_to_ts(at_ms), $8 \
         FROM UNNEST($2::int8[], $3::int2[], $4::text[], $5::text[], $6::jsonb[], $7::int8[]) \
           AS event(lsn, seq, cart_key, kind, payload, at_ms) \
         ON CONFLICT (node, term, lsn, seq) DO NOTHING",
    )
    .bind(node)
    .bind(&events.lsns)
    .bind(&events.seqs)
    .bind(&events.keys)
    .bind(&events.kinds)
    .bind(&events.payloads)
    .bind(&events.at_ms)
    .bind(term)
    .execute(&mut **tx)
    .await
    .map_err(SinkError::query("appending the batch's events"))?;
    Ok(result.rows_affected())
}

/// The stored images and LSNs of the carts under `keys` that have a row with an image.
pub async fn load_bases(pool: &PgPool, keys: &[Vec<u8>]) -> Result<Bases, SinkError> {
    let texts: Vec<String> = keys.iter().map(|key| key_text(key)).collect();
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT key, lsn, image FROM carts WHERE key = ANY($1) AND image IS NOT NULL",
    )
    .bind(&texts)
    .fetch_all(pool)
    .await
    .map_err(SinkError::query(
        "reading the carts the batch's deltas apply to",
    ))?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, lsn, image)| {
            Some((
                key_bytes(&key)?,
                (lsn_from_db(lsn), bytes::Bytes::from(image)),
            ))
        })
        .collect())
}
