//! The leases of shard groups in PostgreSQL (`cluster_leases`, `cluster_members`): who is a
//! group's primary, under which term, until when by PostgreSQL's clock. The server's failover
//! job (`server/src/failover.rs`) renews and takes them; every statement here is one round
//! trip or one short transaction.

use sqlx::PgPool;

use super::columns::{lsn_from_db, lsn_to_db};
use super::SinkError;
use crate::record::Lsn;

/// One shard group's lease as PostgreSQL has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard group.
    pub group: String,
    /// The node holding it.
    pub holder: String,
    /// Its term.
    pub term: u64,
    /// Milliseconds until it lapses by PostgreSQL's clock (negative: lapsed that long ago).
    pub remaining_ms: i64,
    /// The holder's last LSN when it took the lease (where its history forked).
    pub since_lsn: Lsn,
}

/// A renewal's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed for another lease period from PostgreSQL's now.
    Renewed,
    /// The lease is not this holder's at this term any more: as it is now (`None`: no row).
    Lost(Option<Lease>),
}

/// What taking a lapsed lease over gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeOver {
    /// The new term.
    pub term: u64,
    /// The group's sink checkpoint before it was started over under the new term: (term, LSN).
    pub checkpoint: (u64, Lsn),
}

const LEASE_COLUMNS: &str = "shard_group, holder, term, \
     (extract(epoch FROM (expires_at - now())) * 1000)::bigint AS remaining_ms, since_lsn";

type LeaseRow = (String, String, i64, i64, i64);

fn lease_of((group, holder, term, remaining_ms, since_lsn): LeaseRow) -> Lease {
    Lease {
        group,
        holder,
        term: lsn_from_db(term),
        remaining_ms,
        since_lsn: lsn_from_db(since_lsn),
    }
}

/// Every shard group's lease.
pub async fn leases(pool: &PgPool) -> Result<Vec<Lease>, SinkError> {
    let sql = format!("SELECT {LEASE_COLUMNS} FROM cluster_leases ORDER BY shard_group");
    let rows: Vec<LeaseRow> = sqlx::query_as(&sql)
        .fetch_all(pool)
        .await
        .map_err(SinkError::query("reading the shard groups' leases"))?;
    Ok(rows.into_iter().map(lease_of).collect())
}

/// The lease of `group`, if it has one.
pub async fn lease(pool: &PgPool, group: &str) -> Result<Option<Lease>, SinkError> {
    let sql = format!("SELECT {LEASE_COLUMNS} FROM cluster_leases WHERE shard_group = $1");
    let row: Option<LeaseRow> = sqlx::query_as(&sql)
        .bind(group)
        .fetch_optional(pool)
        .await
        .map_err(SinkError::query("reading a shard group's lease"))?;
    Ok(row.map(lease_of))
}

/// Gives `group` its first lease, held by `holder` (its configured primary), unless it has one
/// already; returns the lease as it is then.
pub async fn claim_first(
    pool: &PgPool,
    group: &str,
    holder: &str,
    lease_ms: u64,
) -> Result<Lease, SinkError> {
    sqlx::query(
        "INSERT INTO cluster_leases (shard_group, holder, term, expires_at, since_lsn, updated_at) \
         VALUES ($1, $2, nextval('cluster_terms'), now() + $3 * interval '1 millisecond', 0, now()) \
         ON CONFLICT (shard_group) DO NOTHING",
    )
    .bind(group)
    .bind(holder)
    .bind(lsn_to_db(lease_ms))
    .execute(pool)
    .await
    .map_err(SinkError::query("claiming a shard group's first lease"))?;
    lease(pool, group).await?.ok_or_else(|| SinkError::Query {
        what: "reading a lease just claimed",
        error: sqlx::Error::RowNotFound,
    })
}

/// Renews `holder`'s lease of `group` at `term` for `lease_ms` from PostgreSQL's now.
pub async fn renew(
    pool: &PgPool,
    group: &str,
    holder: &str,
    term: u64,
    lease_ms: u64,
) -> Result<Renewal, SinkError> {
    let renewed = sqlx::query(
        "UPDATE cluster_leases SET expires_at = now() + $4 * interval '1 millisecond', \
             updated_at = now() \
         WHERE shard_group = $1 AND holder = $2 AND term = $3",
    )
    .bind(group)
    .bind(holder)
    .bind(lsn_to_db(term))
    .bind(lsn_to_db(lease_ms))
    .execute(pool)
    .await
    .map_err(SinkError::query("renewing the shard group's lease"))?;
    if renewed.rows_affected() == 1 {
        return Ok(Renewal::Renewed);
    }
    Ok(Renewal::Lost(lease(pool, group).await?))
}

/// Where a new holder's log stands against the history of the lease it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fork {
    /// Where its log and that history last agree: the new term's history forks there.
    pub shared: Lsn,
    /// Its log's last record: past `shared`, records of an older history it set aside itself
    /// (a primary back after its successor died), which its sink must not stream again.
    pub last: Lsn,
}

impl Fork {
    /// A log that is all of the lease's history, up to `lsn`.
    pub fn at(lsn: Lsn) -> Fork {
        Fork {
            shared: lsn,
            last: lsn,
        }
    }
}

/// Takes `group`'s lease for `holder` under a new term, if it is still at `seen_term` and has
/// lapsed (or `planned`: its holder hands it over, CLUSTER FAILOVER), recording `fork.shared`
/// as where the new holder's history forks; in the same transaction the group's sink
/// checkpoint starts over under the new term at `fork.shared` (or where it was, if that is
/// less: the new primary streams what it has and PostgreSQL lacks), or at `fork.last` when
/// the log goes on past the shared part (the new primary logs again what PostgreSQL lacks of
/// it). `None`: not lapsed, or taken already.
pub async fn take_over(
    pool: &PgPool,
    group: &str,
    holder: &str,
    seen_term: u64,
    planned: bool,
    lease_ms: u64,
    fork: Fork,
) -> Result<Option<TakeOver>, SinkError> {
    let query = SinkError::query;
    let mut tx = pool
        .begin()
        .await
        .map_err(query("starting the lease take-over"))?;
    // Waits for a sink transaction of the old term in flight (it holds a share lock).
    let row: Option<(i64, bool)> = sqlx::query_as(
        "SELECT term, expires_at <= now() FROM cluster_leases WHERE shard_group = $1 FOR UPDATE",
    )
    .bind(group)
    .fetch_optional(&mut *tx)
    .await
    .map_err(query("locking the shard group's lease"))?;
    match row {
        Some((term, lapsed)) if lsn_from_db(term) == seen_term && (lapsed || planned) => {}
        _ => return Ok(None),
    }
    let term: i64 = sqlx::query_scalar(
        "UPDATE cluster_leases SET holder = $2, term = nextval('cluster_terms'), \
             expires_at = now() + $3 * interval '1 millisecond', since_lsn = $4, \
             updated_at = now() \
         WHERE shard_group = $1 RETURNING term",
    )
    .bind(group)
    .bind(holder)
    .bind(lsn_to_db(lease_ms))
    .bind(lsn_to_db(fork.shared))
    .fetch_one(&mut *tx)
    .await
    .map_err(query("taking the shard group's lease"))?;
    let checkpoint: Option<(i64, i64)> =
        sqlx::query_as("SELECT term, lsn FROM sink_checkpoint WHERE node = $1 FOR UPDATE")
            .bind(group)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query("reading the shard group's checkpoint"))?;
    let checkpoint = checkpoint.map_or((0, 0), |(term, lsn)| (lsn_from_db(term), lsn_from_db(lsn)));
    let restart_at = if fork.last > fork.shared {
        fork.last
    } else {
        checkpoint.1.min(fork.shared)
    };
    sqlx::query(
        "INSERT INTO sink_checkpoint (node, lsn, updated_at, term) VALUES ($1, $2, now(), $3) \
         ON CONFLICT (node) DO UPDATE SET lsn = excluded.lsn, term = excluded.term, \
             updated_at = excluded.updated_at",
    )
    .bind(group)
    .bind(lsn_to_db(restart_at))
    .bind(term)
    .execute(&mut *tx)
    .await
    .map_err(query("starting the shard group's checkpoint over"))?;
    tx.commit()
        .await
        .map_err(query("committing the lease take-over"))?;
    Ok(Some(TakeOver {
        term: lsn_from_db(term),
        checkpoint,
    }))
}

/// One member's report of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its cluster id.
    pub node: String,
    /// The LSN its log acknowledges.
    pub acked_lsn: Lsn,
    /// The term of the history it follows.
    pub term: u64,
    /// Milliseconds since it reported, by PostgreSQL's clock.
    pub age_ms: i64,
}

/// Records what `node` (of `group`) has: its acknowledged LSN, of the history of `term`.
pub async fn report(
    pool: &PgPool,
    node: &str,
    group: &str,
    acked_lsn: Lsn,
    term: u64,
) -> Result<(), SinkError> {
    sqlx::query(
        "INSERT INTO cluster_members (node, shard_group, acked_lsn, term, updated_at) \
         VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (node) DO UPDATE SET shard_group = excluded.shard_group, \
             acked_lsn = excluded.acked_lsn, term = excluded.term, updated_at = now()",
    )
    .bind(node)
    .bind(group)
    .bind(lsn_to_db(acked_lsn))
    .bind(lsn_to_db(term))
    .execute(pool)
    .await
    .map_err(SinkError::query("reporting this node's position"))?;
    Ok(())
}

/// What the members of `group` last reported.
pub async fn members(pool: &PgPool, group: &str) -> Result<Vec<Member>, SinkError> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT node, acked_lsn, term, \
             (extract(epoch FROM (now() - updated_at)) * 1000)::bigint \
         FROM cluster_members WHERE shard_group = $1 ORDER BY node",
    )
    .bind(group)
    .fetch_all(pool)
    .await
    .map_err(SinkError::query("reading the shard group's members"))?;
    Ok(rows
        .into_iter()
        .map(|(node, acked_lsn, term, age_ms)| Member {
            node,
            acked_lsn: lsn_from_db(acked_lsn),
            term: lsn_from_db(term),
            age_ms,
        })
        .collect())
}

/// Moves the checkpoint of shard group `group` to `term` (its LSN stays) if it is under an
/// older term and the group's lease is at `term`: the first lease of a group whose sink
/// streamed before leases existed. Returns the checkpoint's term afterwards (0: no row).
pub async fn adopt_checkpoint(pool: &PgPool, group: &str, term: u64) -> Result<u64, SinkError> {
    sqlx::query(
        "UPDATE sink_checkpoint SET term = $2, updated_at = now() \
         WHERE node = $1 AND term < $2 \
           AND EXISTS (SELECT 1 FROM cluster_leases WHERE shard_group = $1 AND term = $2)",
    )
    .bind(group)
    .bind(lsn_to_db(term))
    .execute(pool)
    .await
    .map_err(SinkError::query(
        "moving the checkpoint to the lease's term",
    ))?;
    Ok(super::checkpoint_at(pool, group).await?.0)
}

/// One recorded slot move: the slot, the shard group serving it, the term it was recorded
/// under (a later move of the slot has a higher one).
pub type SlotMove = (u16, String, u64);

/// The slots recorded as moved (resharding).
pub async fn slot_moves(pool: &PgPool) -> Result<Vec<SlotMove>, SinkError> {
    let rows: Vec<(i32, String, i64)> =
        sqlx::query_as("SELECT slot, shard_group, term FROM cluster_slots ORDER BY slot")
            .fetch_all(pool)
            .await
            .map_err(SinkError::query("reading the moved slots"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(slot, group, term)| {
            Some((u16::try_from(slot).ok()?, group, lsn_from_db(term)))
        })
        .collect())
}

/// Records that shard group `group` serves `slot` from now on; the move's term. With `from`
/// (the group serving it until now and the term its primary handed the slot's gift cards
/// over at), only while that group's lease is still at that term: `None` if it is not (a
/// replica took over since, which decides the cards it had; the move is to be run again).
pub async fn record_slot_move(
    pool: &PgPool,
    slot: u16,
    group: &str,
    from: Option<(&str, u64)>,
) -> Result<Option<u64>, SinkError> {
    let query = SinkError::query;
    let mut tx = pool.begin().await.map_err(query("starting a slot move"))?;
    if let Some((from_group, handed_at)) = from {
        let term: Option<i64> =
            sqlx::query_scalar("SELECT term FROM cluster_leases WHERE shard_group = $1 FOR SHARE")
                .bind(from_group)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query("reading the exporting group's lease"))?;
        if term.is_some_and(|term| lsn_from_db(term) != handed_at) {
            return Ok(None);
        }
    }
    let term: i64 = sqlx::query_scalar(
        "INSERT INTO cluster_slots (slot, shard_group, term, updated_at) \
         VALUES ($1, $2, nextval('cluster_terms'), now()) \
         ON CONFLICT (slot) DO UPDATE SET shard_group = excluded.shard_group, \
             term = CASE WHEN cluster_slots.shard_group = excluded.shard_group \
                 THEN cluster_slots.term ELSE excluded.term END, \
             updated_at = now() \
         RETURNING term",
    )
    .bind(i32::from(slot))
    .bind(group)
    .fetch_one(&mut *tx)
    .await
    .map_err(query("recording a moved slot"))?;
    tx.commit().await.map_err(query("committing a slot move"))?;
    Ok(Some(lsn_from_db(term)))
}

/// Gives `holder`'s lease of `group` (at `term`) a new, higher term, its checkpoint moving to
/// it in the same transaction: a group importing a slot writes its carts' rows under a term
/// above the exporting group's. `None`: the lease is not `holder`'s at `term` any more.
pub async fn raise_term(
    pool: &PgPool,
    group: &str,
    holder: &str,
    term: u64,
) -> Result<Option<u64>, SinkError> {
    let query = SinkError::query;
    let mut tx = pool.begin().await.map_err(query("starting a term raise"))?;
    let raised: Option<i64> = sqlx::query_scalar(
        "UPDATE cluster_leases SET term = nextval('cluster_terms'), updated_at = now() \
         WHERE shard_group = $1 AND holder = $2 AND term = $3 RETURNING term",
    )
    .bind(group)
    .bind(holder)
    .bind(lsn_to_db(term))
    .fetch_optional(&mut *tx)
    .await
    .map_err(query("raising the lease's term"))?;
    let Some(raised) = raised else {
        return Ok(None);
    };
    sqlx::query("UPDATE sink_checkpoint SET term = $2, updated_at = now() WHERE node = $1")
        .bind(group)
        .bind(raised)
        .execute(&mut *tx)
        .await
        .map_err(query("moving the checkpoint to the raised term"))?;
    tx.commit()
        .await
        .map_err(query("committing a term raise"))?;
    Ok(Some(lsn_from_db(raised)))
}

/// One node of `cluster_nodes`: its id, its config.toml entry (TOML), and whether it is
/// forgotten.
pub type MemberRow = (String, String, bool);

/// Every node recorded as met, changed or forgotten at run time.
pub async fn member_rows(pool: &PgPool) -> Result<Vec<MemberRow>, SinkError> {
    sqlx::query_as("SELECT node, entry, forgotten FROM cluster_nodes ORDER BY updated_at, node")
        .fetch_all(pool)
        .await
        .map_err(SinkError::query("reading the cluster's members"))
}

/// Records `node`'s entry (met or changed), or that it is forgotten.
pub async fn record_member(
    pool: &PgPool,
    node: &str,
    entry: &str,
    forgotten: bool,
) -> Result<(), SinkError> {
    sqlx::query(
        "INSERT INTO cluster_nodes (node, entry, forgotten, updated_at) \
         VALUES ($1, $2, $3, now()) \
         ON CONFLICT (node) DO UPDATE SET entry = excluded.entry, \
             forgotten = excluded.forgotten, updated_at = now()",
    )
    .bind(node)
    .bind(entry)
    .bind(forgotten)
    .execute(pool)
    .await
    .map_err(SinkError::query("recording a cluster member"))?;
    Ok(())
}
