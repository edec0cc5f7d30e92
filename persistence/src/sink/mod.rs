//! The PostgreSQL sink: follows the log and keeps PostgreSQL's `carts`, `cart_events` and
//! `sink_checkpoint` tables in step with it, exactly once.
//!
//! - [`spawn`] runs the task that reads records after the checkpoint, coalesces them per cart
//!   and applies each batch in one transaction that also moves the checkpoint ([`writer`]).
//! - [`load_live_carts`] and [`load_cart`] read carts back for restore.
//! - [`cleanup`] deletes long idle carts and old events in bounded batches.
//!
//! What a cart looks like is the server's business: it converts images to [`CartRow`]s and back
//! through a [`RowCodec`]. The schema lives in `persistence/migrations/`, applied by [`connect`]
//! and again (idempotently) by the sink when it starts.

mod batch;
mod cleanup;
mod columns;
pub mod lease;
mod reference;
mod restore;
mod stats;
mod task;
mod writer;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::record::{Lsn, Space};

pub use cleanup::{cleanup, last_cleanup_ms, CleanupReport};
pub use restore::{
    carts_changed_after, load_cart, load_carts_by_key, load_carts_written_after,
    load_gift_cards_by_code, load_gift_cards_written_after, load_live_carts, load_reference,
};
pub use sqlx::PgPool;
pub use stats::{SinkHandle, SinkStats};
pub use task::{spawn, SinkOptions};
pub use writer::Term;

/// Connections the sink's pool keeps at most: the sink itself, a restore or cleanup, a spare.
pub const POOL_CONNECTIONS_MAX: u32 = 4;

/// How long a session of ours may sit in an open transaction waiting for its next statement
/// before PostgreSQL ends it, rolling the transaction back. A node cut off from PostgreSQL in
/// the middle of a transaction (a sink batch holds a share lock on its group's lease row; a
/// take-over holds the row for update) would otherwise keep its locks until PostgreSQL
/// noticed the dead connection, hours later with the kernel's keepalive, and no replica could
/// take the lease meanwhile. Below the shortest lease (1 s); our transactions send their
/// statements back to back.
pub const IDLE_IN_TRANSACTION_MS: u64 = 1_000;

/// How long taking a connection from the pool (connecting, if need be) may take before it
/// counts as a failure.
pub const POOL_ACQUIRE_TIMEOUT_MS: u64 = 5_000;

/// One cart as the `carts` table holds it. Times are Unix milliseconds; `i64::MAX` means never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartRow {
    /// `"user"` or `"guest"`.
    pub kind: String,
    /// The owning user, for user carts.
    pub user_id: Option<String>,
    /// ISO 4217 code of the cart's prices.
    pub currency: String,
    /// The lines, as a JSON array.
    pub items: serde_json::Value,
    /// Lines saved for later.
    pub saved: serde_json::Value,
    /// Lines that cannot be bought now (another currency, out of stock).
    pub unavailable: serde_json::Value,
    /// Whatever else the cart carries, as a JSON object.
    pub metadata: serde_json::Value,
    /// The cart's version.
    pub version: i64,
    /// When the cart was created.
    pub created_at_ms: i64,
    /// When the cart last changed.
    pub updated_at_ms: i64,
    /// When the cart expires unless it changes again.
    pub expires_at_ms: i64,
}

/// A cart as restore reads it back: its row, its image when the row has one (rows written
/// before the `image` column have none), and the LSN that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCart {
    /// The readable columns.
    pub row: CartRow,
    /// The cart exactly as cartd held it.
    pub image: Option<bytes::Bytes>,
    /// The record that last wrote the row.
    pub lsn: Lsn,
}

/// Which row of the reference tables a reference change is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReferenceKey {
    /// A `catalog` row.
    Catalog {
        /// Product id.
        product: Vec<u8>,
        /// Variant id.
        variant: Vec<u8>,
    },
    /// A `promotions` row, by code.
    Promotion(Vec<u8>),
    /// A `gift_cards` row, by code.
    GiftCard(Vec<u8>),
}

/// A spend a gift card's owner remembers for another node's checkout: (token, minor units,
/// until when its hold ran, Unix ms).
pub type PeerSpent = (String, i64, u64);

/// A `gift_cards` row read back: code, balance, currency, the spends it remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct GiftCardRow {
    /// The card's code.
    pub code: String,
    /// Minor units.
    pub balance: i64,
    /// Its currency.
    pub currency: String,
    /// The spends its owner remembers for other nodes' checkouts.
    pub peer_spent: Vec<PeerSpent>,
}

/// What a reference row holds besides its key.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceValue {
    /// A catalog entry.
    Catalog {
        /// Price in minor units.
        price: Option<i64>,
        /// Its currency.
        currency: Option<String>,
        /// Units in stock.
        stock: Option<i64>,
        /// Per-cart purchase limit.
        max_qty: Option<i32>,
        /// Last change, Unix ms.
        updated_at_ms: i64,
    },
    /// A promotion's canonical document.
    Promotion {
        /// The document.
        document: serde_json::Value,
        /// Whether it applies without a code.
        automatic: bool,
    },
    /// A gift card's balance.
    GiftCard {
        /// Minor units.
        balance: i64,
        /// Its currency.
        currency: String,
        /// The spends its owner remembers for other nodes' checkouts.
        peer_spent: Vec<PeerSpent>,
    },
}

/// Converts the server's images to rows and back. This crate knows no carts, catalog entries,
/// promotions or gift cards.
pub trait RowCodec: Send + Sync + 'static {
    /// The row for the cart under `key` whose after-image is `image`.
    fn to_row(&self, key: &[u8], image: &[u8]) -> Result<CartRow, String>;
    /// The image of the cart under `key` that `row` holds.
    #[allow(clippy::wrong_self_convention)] // "from a row", not a conversion of `self`
    fn from_row(&self, key: &[u8], row: &CartRow) -> Result<bytes::Bytes, String>;
    /// The image of the cart under `key` at `version`, `delta` applied to its image `image`
    /// (the state the delta was made from).
    fn apply_delta(
        &self,
        key: &[u8],
        image: &[u8],
        delta: &[u8],
        version: u64,
    ) -> Result<Vec<u8>, String>;
    /// The row a reference change in `space` under the log's `key` is about.
    fn reference_key(&self, space: Space, key: &[u8]) -> Result<ReferenceKey, String>;
    /// The row values of a reference image in `space`.
    fn reference_value(&self, space: Space, image: &[u8]) -> Result<ReferenceValue, String>;
    /// The log's space, key and image of a reference row, for a restore.
    fn reference_image(
        &self,
        key: &ReferenceKey,
        value: &ReferenceValue,
    ) -> Result<(Space, Vec<u8>, Vec<u8>), String>;
}

/// What went wrong talking to PostgreSQL or reading the log.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL could not be parsed or no connection could be made.
    #[error("connecting to PostgreSQL failed: {0}")]
    Connect(sqlx::Error),
    /// The schema migrations could not be applied.
    #[error("applying cartd's PostgreSQL migrations failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("PostgreSQL failed while {what}: {error}")]
    Query {
        /// What the sink was doing, as "writing the batch's events".
        what: &'static str,
        /// What PostgreSQL or the driver said.
        error: sqlx::Error,
    },
    /// The checkpoint row is not where this sink left it.
    #[error(
        "the sink checkpoint of node {node:?} is at LSN {found}, not {expected}: another sink \
         for this node is writing, or the checkpoint was changed by hand"
    )]
    CheckpointMoved {
        /// The node whose checkpoint it is.
        node: String,
        /// Where this sink last put it.
        expected: Lsn,
        /// Where it is.
        found: Lsn,
    },
    /// The shard group's lease is no longer at this sink's term: another node is its primary.
    #[error(
        "the lease of shard group {node:?} is at term {current}, not this sink's {term}: another \
         node took the group over, and this one writes nothing more to PostgreSQL"
    )]
    Fenced {
        /// The shard group.
        node: String,
        /// The term this sink writes under.
        term: u64,
        /// The lease's term now (0: no lease row).
        current: u64,
    },
    /// The log could not be read.
    #[error("reading the log after LSN {after} failed: {error}")]
    Source {
        /// The LSN the read started after.
        after: Lsn,
        /// What the reader said.
        error: std::io::Error,
    },
}

impl SinkError {
    /// A closure wrapping a driver error with what the sink was doing.
    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> SinkError {
        move |error| SinkError::Query { what, error }
    }
}

/// A small pool for `url` that connects on first use; nothing is checked yet. The sink started
/// on it keeps retrying while PostgreSQL is down, so the server starts either way.
pub fn connect_lazy(url: &str) -> Result<PgPool, SinkError> {
    Ok(pool_options().connect_lazy_with(connect_options(url)?))
}

/// A pool of at most `connections` for `url` that connects on first use, for statements that
/// must not queue behind the sink's (the leases').
pub fn connect_lazy_with(url: &str, connections: u32) -> Result<PgPool, SinkError> {
    Ok(pool_options()
        .max_connections(connections)
        .connect_lazy_with(connect_options(url)?))
}

/// Connects to `url` with a small pool and applies the migrations.
pub async fn connect(url: &str) -> Result<PgPool, SinkError> {
    let pool = pool_options()
        .connect_with(connect_options(url)?)
        .await
        .map_err(SinkError::Connect)?;
    migrate(&pool).await?;
    Ok(pool)
}

/// The connection options of `url`, every session with [`IDLE_IN_TRANSACTION_MS`].
fn connect_options(url: &str) -> Result<PgConnectOptions, SinkError> {
    let options: PgConnectOptions = url.parse().map_err(SinkError::Connect)?;
    let idle = IDLE_IN_TRANSACTION_MS.to_string();
    Ok(options.options([("idle_in_transaction_session_timeout", idle.as_str())]))
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .acquire_timeout(Duration::from_millis(POOL_ACQUIRE_TIMEOUT_MS))
}

/// Applies the migrations in `persistence/migrations/` that `pool`'s database lacks.
pub async fn migrate(pool: &PgPool) -> Result<(), SinkError> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .map_err(SinkError::Migrate)
}

/// The last LSN applied for `node`, 0 if its sink never committed.
pub async fn checkpoint(pool: &PgPool, node: &str) -> Result<Lsn, SinkError> {
    Ok(checkpoint_at(pool, node).await?.1)
}

/// The term and last LSN of `node`'s checkpoint, (0, 0) if its sink never committed.
pub async fn checkpoint_at(pool: &PgPool, node: &str) -> Result<(u64, Lsn), SinkError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT term, lsn FROM sink_checkpoint WHERE node = $1")
            .bind(node)
            .fetch_optional(pool)
            .await
            .map_err(SinkError::query("reading the sink checkpoint"))?;
    Ok(row.map_or((0, 0), |(term, lsn)| {
        (columns::lsn_from_db(term), columns::lsn_from_db(lsn))
    }))
}
