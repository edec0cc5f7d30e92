//! The cleanup job: deletes carts idle for too long and events older than their retention,
//! a bounded batch per statement, so it never holds many locks or one long transaction.
//! Rows the sink is writing are skipped (`SKIP LOCKED`) and caught by a later run.

use sqlx::PgPool;

use super::SinkError;

/// Rows one cleanup statement deletes at most.
pub const CLEANUP_BATCH_ROWS_MAX: i64 = 10_000;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The name of the cleanup's row in `sink_cleanup`.
const CLEANUP_NAME: &str = "carts_and_events";

/// What a cleanup deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    /// Carts not updated for `idle_days`.
    pub carts_deleted: u64,
    /// Events older than `events_days`.
    pub events_deleted: u64,
}

/// Deletes carts whose last update is more than `idle_days` before `now_ms`, and events more
/// than `events_days` old, then records the run in `sink_cleanup`.
pub async fn cleanup(
    pool: &PgPool,
    now_ms: i64,
    idle_days: u32,
    events_days: u32,
) -> Result<CleanupReport, SinkError> {
    let carts_before_ms = now_ms.saturating_sub(i64::from(idle_days) * DAY_MS);
    let events_before_ms = now_ms.saturating_sub(i64::from(events_days) * DAY_MS);
    let report = CleanupReport {
        carts_deleted: delete_in_batches(
            pool,
            "DELETE FROM carts WHERE key IN (SELECT key FROM carts \
             WHERE updated_at < cartd_ms_to_ts($1) LIMIT $2 FOR UPDATE SKIP LOCKED)",
            carts_before_ms,
            "deleting idle carts",
        )
        .await?,
        events_deleted: delete_in_batches(
            pool,
            "DELETE FROM cart_events WHERE id IN (SELECT id FROM cart_events \
             WHERE at < cartd_ms_to_ts($1) LIMIT $2 FOR UPDATE SKIP LOCKED)",
            events_before_ms,
            "deleting old cart events",
        )
        .await?,
    };
    record_run(pool, now_ms, report).await?;
    tracing::info!(
        "cleanup: {} carts idle over {idle_days} days and {} events over {events_days} days \
         deleted from PostgreSQL",
        report.carts_deleted,
        report.events_deleted
    );
    Ok(report)
}

/// Runs `sql` (bound to a cutoff and a batch size) until a run deletes less than a batch.
async fn delete_in_batches(
    pool: &PgPool,
    sql: &str,
    before_ms: i64,
    what: &'static str,
) -> Result<u64, SinkError> {
    let mut deleted = 0;
    loop {
        let result = sqlx::query(sql)
            .bind(before_ms)
            .bind(CLEANUP_BATCH_ROWS_MAX)
            .execute(pool)
            .await
            .map_err(SinkError::query(what))?;
        deleted += result.rows_affected();
        if result.rows_affected() < CLEANUP_BATCH_ROWS_MAX as u64 {
            return Ok(deleted);
        }
    }
}

/// Notes the run in `sink_cleanup`.
async fn record_run(pool: &PgPool, now_ms: i64, report: CleanupReport) -> Result<(), SinkError> {
    sqlx::query(
        "INSERT INTO sink_cleanup (name, last_run_at, carts_deleted, events_deleted) \
         VALUES ($1, cartd_ms_to_ts($2), $3, $4) \
         ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, \
             carts_deleted = excluded.carts_deleted, events_deleted = excluded.events_deleted",
    )
    .bind(CLEANUP_NAME)
    .bind(now_ms)
    .bind(i64::try_from(report.carts_deleted).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.events_deleted).unwrap_or(i64::MAX))
    .execute(pool)
    .await
    .map_err(SinkError::query("recording the cleanup run"))?;
    Ok(())
}

/// When the last cleanup ran (Unix milliseconds), if ever: lets a node tell whether one is due.
pub async fn last_cleanup_ms(pool: &PgPool) -> Result<Option<i64>, SinkError> {
    sqlx::query_scalar("SELECT cartd_ts_to_ms(last_run_at) FROM sink_cleanup WHERE name = $1")
        .bind(CLEANUP_NAME)
        .fetch_optional(pool)
        .await
        .map_err(SinkError::query("reading the last cleanup run"))
}
