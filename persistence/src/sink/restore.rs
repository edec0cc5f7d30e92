//! Reading carts back from PostgreSQL: every live cart when a node starts empty, or one cart
//! on a miss (`restore_on_miss`). Rows come back as [`CartRow`]s for the server's codec.

use bytes::Bytes;
use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::columns::{key_bytes, ms_to_db};
use super::{CartRow, SinkError};

/// Carts between two progress lines in the log while loading.
const LOAD_PROGRESS_CARTS: u64 = 100_000;

/// The columns of a cart, in [`CartRow`] order after the key, times as Unix milliseconds.
const CART_COLUMNS: &str = "key, kind, user_id, currency, items, saved, unavailable, metadata, \
     version, cartd_ts_to_ms(created_at) AS created_at_ms, \
     cartd_ts_to_ms(updated_at) AS updated_at_ms, cartd_ts_to_ms(expires_at) AS expires_at_ms";

/// Streams every cart that has not expired at `now_ms` to `visit`, and returns how many it
/// visited. A row whose key cannot be read back is logged and skipped.
pub async fn load_live_carts(
    pool: &PgPool,
    now_ms: i64,
    mut visit: impl FnMut(Bytes, CartRow),
) -> Result<u64, SinkError> {
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE expires_at > cartd_ms_to_ts($1)");
    let mut rows = sqlx::query(&sql).bind(ms_to_db(now_ms)).fetch(pool);
    let mut loaded = 0u64;
    let mut progress_at = LOAD_PROGRESS_CARTS;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(SinkError::query("loading the live carts"))?
    {
        let (key, cart) = cart_row(&row).map_err(SinkError::query("reading a loaded cart"))?;
        let Some(key) = key_bytes(&key) else {
            tracing::warn!("restore skips the cart under {key:?}: its hex key is malformed");
            continue;
        };
        visit(Bytes::from(key), cart);
        loaded += 1;
        if loaded == progress_at {
            tracing::info!("restore: {loaded} carts loaded from PostgreSQL so far");
            progress_at += LOAD_PROGRESS_CARTS;
        }
    }
    tracing::info!("restore: {loaded} live carts loaded from PostgreSQL");
    Ok(loaded)
}

/// The cart under `key`, if PostgreSQL has it and it has not expired at `now_ms`.
pub async fn load_cart(
    pool: &PgPool,
    key: &[u8],
    now_ms: i64,
) -> Result<Option<CartRow>, SinkError> {
    let sql = format!(
        "SELECT {CART_COLUMNS} FROM carts WHERE key = $1 AND expires_at > cartd_ms_to_ts($2)"
    );
    let row = sqlx::query(&sql)
        .bind(super::columns::key_text(key))
        .bind(ms_to_db(now_ms))
        .fetch_optional(pool)
        .await
        .map_err(SinkError::query("loading a cart"))?;
    row.map(|row| cart_row(&row).map(|(_, cart)| cart))
        .transpose()
        .map_err(SinkError::query("reading a loaded cart"))
}

/// The stored key and the cart of a row selected with [`CART_COLUMNS`].
fn cart_row(row: &PgRow) -> Result<(String, CartRow), sqlx::Error> {
    let cart = CartRow {
        kind: row.try_get("kind")?,
        user_id: row.try_get("user_id")?,
        currency: row.try_get("currency")?,
        items: row.try_get("items")?,
        saved: row.try_get("saved")?,
        unavailable: row.try_get("unavailable")?,
        metadata: row.try_get("metadata")?,
        version: row.try_get("version")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
    };
    Ok((row.try_get("key")?, cart))
}
