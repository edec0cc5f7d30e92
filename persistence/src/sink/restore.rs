//! Reading back from PostgreSQL: every live cart and all reference data when a node starts
//! empty, or one cart on a miss (`restore_on_miss`). Carts come back as [`StoredCart`]s
//! (the row, and the image when the row has one), reference data as keys and values, for
//! the server's codec.

use bytes::Bytes;
use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::columns::{key_bytes, lsn_from_db, ms_to_db};
use super::{CartRow, GiftCardRow, ReferenceKey, ReferenceValue, SinkError, StoredCart};

/// Carts between two progress lines in the log while loading.
const LOAD_PROGRESS_CARTS: u64 = 100_000;

/// The columns of a cart, in [`CartRow`] order after the key, times as Unix milliseconds.
const CART_COLUMNS: &str = "key, kind, user_id, currency, items, saved, unavailable, metadata, \
     version, cartd_ts_to_ms(created_at) AS created_at_ms, \
     cartd_ts_to_ms(updated_at) AS updated_at_ms, cartd_ts_to_ms(expires_at) AS expires_at_ms, \
     image, lsn";

/// Streams every cart that has not expired at `now_ms` to `visit`, and returns how many it
/// visited. A row whose key cannot be read back is logged and skipped.
pub async fn load_live_carts(
    pool: &PgPool,
    now_ms: i64,
    mut visit: impl FnMut(Bytes, StoredCart),
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

/// The carts (expired or not, deleted ones aside) last written under `term` by a record after
/// `after` LSN: what a shard group's old primary streamed past the point where its new
/// primary's history forked from it (the replication lag window), for the new primary to
/// take back.
pub async fn load_carts_written_after(
    pool: &PgPool,
    term: u64,
    after: crate::record::Lsn,
) -> Result<Vec<(Bytes, StoredCart)>, SinkError> {
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE term = $1 AND lsn > $2");
    let rows = sqlx::query(&sql)
        .bind(super::columns::lsn_to_db(term))
        .bind(super::columns::lsn_to_db(after))
        .fetch_all(pool)
        .await
        .map_err(SinkError::query("loading the carts of the lag window"))?;
    keyed_carts(&rows)
}

/// The carts under `keys` that PostgreSQL has (expired or not; a deleted cart has no row):
/// what a primary back after its successor died takes in place of the carts its own records
/// past the fork changed.
pub async fn load_carts_by_key(
    pool: &PgPool,
    keys: &[Bytes],
) -> Result<Vec<(Bytes, StoredCart)>, SinkError> {
    let texts: Vec<String> = keys
        .iter()
        .map(|key| super::columns::key_text(key))
        .collect();
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE key = ANY($1)");
    let rows = sqlx::query(&sql)
        .bind(&texts)
        .fetch_all(pool)
        .await
        .map_err(SinkError::query("loading carts by key"))?;
    keyed_carts(&rows)
}

/// The carts shard group `group`'s sink streamed a change of under `term` by a record after
/// `after` LSN (its events say which): with [`load_carts_written_after`], the carts of the
/// lag window, the deleted ones (no row now) included.
pub async fn carts_changed_after(
    pool: &PgPool,
    group: &str,
    term: u64,
    after: crate::record::Lsn,
) -> Result<Vec<Bytes>, SinkError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT cart_key FROM cart_events WHERE node = $1 AND term = $2 AND lsn > $3",
    )
    .bind(group)
    .bind(super::columns::lsn_to_db(term))
    .bind(super::columns::lsn_to_db(after))
    .fetch_all(pool)
    .await
    .map_err(SinkError::query("reading the carts the lag window changed"))?;
    Ok(keys
        .iter()
        .filter_map(|key| key_bytes(key).map(Bytes::from))
        .collect())
}

/// The gift cards last written under `term` by a record after `after` LSN: the balances
/// (and remembered spends) the old primary of a shard group streamed past the fork (its
/// spends and GIFTCARD.SETs of the lag window).
pub async fn load_gift_cards_written_after(
    pool: &PgPool,
    term: u64,
    after: crate::record::Lsn,
) -> Result<Vec<GiftCardRow>, SinkError> {
    let rows: Vec<RawCard> = sqlx::query_as(
        "SELECT code, balance, currency, peer_spent::text FROM gift_cards \
         WHERE term = $1 AND lsn > $2",
    )
    .bind(super::columns::lsn_to_db(term))
    .bind(super::columns::lsn_to_db(after))
    .fetch_all(pool)
    .await
    .map_err(SinkError::query("loading the gift cards of the lag window"))?;
    Ok(gift_card_rows(rows))
}

/// The gift cards under `codes` that PostgreSQL has.
pub async fn load_gift_cards_by_code(
    pool: &PgPool,
    codes: &[String],
) -> Result<Vec<GiftCardRow>, SinkError> {
    let texts: Vec<String> = codes
        .iter()
        .map(|code| super::columns::key_text(code.as_bytes()))
        .collect();
    let rows: Vec<RawCard> = sqlx::query_as(
        "SELECT code, balance, currency, peer_spent::text FROM gift_cards WHERE code = ANY($1)",
    )
    .bind(&texts)
    .fetch_all(pool)
    .await
    .map_err(SinkError::query("loading gift cards by code"))?;
    Ok(gift_card_rows(rows))
}

/// The cart under `key`, if PostgreSQL has it and it has not expired at `now_ms`.
pub async fn load_cart(
    pool: &PgPool,
    key: &[u8],
    now_ms: i64,
) -> Result<Option<StoredCart>, SinkError> {
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

/// The carts of rows selected with [`CART_COLUMNS`], by key; a row whose hex key is
/// malformed is logged and skipped.
fn keyed_carts(rows: &[PgRow]) -> Result<Vec<(Bytes, StoredCart)>, SinkError> {
    let mut carts = Vec::with_capacity(rows.len());
    for row in rows {
        let (key, cart) = cart_row(row).map_err(SinkError::query("reading a loaded cart"))?;
        match key_bytes(&key) {
            Some(key) => carts.push((Bytes::from(key), cart)),
            None => tracing::warn!("skipping the cart under {key:?}: its hex key is malformed"),
        }
    }
    Ok(carts)
}

/// A `gift_cards` row as selected: hex code, balance, currency, remembered spends as JSON.
type RawCard = (String, i64, String, String);

/// The remembered spends of a row's `peer_spent`; none when they cannot be read (logged).
fn peer_spent(code: &str, text: &str) -> Vec<super::PeerSpent> {
    serde_json::from_str(text).unwrap_or_else(|error| {
        tracing::warn!(%code, %error, "a gift card row's peer_spent is unreadable; taken as none");
        Vec::new()
    })
}

/// `gift_cards` rows with their codes read back; a code that is not UTF-8 once decoded is
/// skipped.
fn gift_card_rows(rows: Vec<RawCard>) -> Vec<GiftCardRow> {
    rows.into_iter()
        .filter_map(|(code, balance, currency, spent)| {
            let peer_spent = peer_spent(&code, &spent);
            let code = String::from_utf8(key_bytes(&code)?).ok()?;
            Some(GiftCardRow {
                code,
                balance,
                currency,
                peer_spent,
            })
        })
        .collect()
}

/// The stored key and the cart of a row selected with [`CART_COLUMNS`].
fn cart_row(row: &PgRow) -> Result<(String, StoredCart), sqlx::Error> {
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
    let image: Option<Vec<u8>> = row.try_get("image")?;
    let stored = StoredCart {
        row: cart,
        image: image.map(Bytes::from),
        lsn: lsn_from_db(row.try_get("lsn")?),
    };
    Ok((row.try_get("key")?, stored))
}

/// Every catalog entry, promotion and gift card; a row whose key cannot be read back is
/// logged and skipped.
pub async fn load_reference(
    pool: &PgPool,
) -> Result<Vec<(ReferenceKey, ReferenceValue)>, SinkError> {
    let mut loaded = load_catalog(pool).await?;
    loaded.extend(load_coded(pool, "promotions").await?);
    loaded.extend(load_coded(pool, "gift_cards").await?);
    Ok(loaded)
}

async fn load_catalog(pool: &PgPool) -> Result<Vec<(ReferenceKey, ReferenceValue)>, SinkError> {
    let rows = sqlx::query(
        "SELECT product, variant, price, currency, stock, max_qty, \
         cartd_ts_to_ms(updated_at) AS updated_at_ms FROM catalog",
    )
    .fetch_all(pool)
    .await
    .map_err(SinkError::query("loading the catalog"))?;
    let mut loaded = Vec::with_capacity(rows.len());
    for row in rows {
        let read = || -> Result<_, sqlx::Error> {
            let product: String = row.try_get("product")?;
            let variant: String = row.try_get("variant")?;
            let value = ReferenceValue::Catalog {
                price: row.try_get("price")?,
                currency: row.try_get("currency")?,
                stock: row.try_get("stock")?,
                max_qty: row.try_get("max_qty")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            };
            Ok((product, variant, value))
        };
        let (product, variant, value) = read().map_err(SinkError::query("reading the catalog"))?;
        match (key_bytes(&product), key_bytes(&variant)) {
            (Some(product), Some(variant)) => {
                loaded.push((ReferenceKey::Catalog { product, variant }, value))
            }
            _ => tracing::warn!("restore skips catalog row {product:?}/{variant:?}: bad hex key"),
        }
    }
    Ok(loaded)
}

/// The rows of `promotions` or `gift_cards`, by code.
async fn load_coded(
    pool: &PgPool,
    table: &'static str,
) -> Result<Vec<(ReferenceKey, ReferenceValue)>, SinkError> {
    let sql = match table {
        "promotions" => "SELECT code, document, automatic FROM promotions",
        _ => "SELECT code, balance, currency, peer_spent::text AS peer_spent FROM gift_cards",
    };
    let rows = sqlx::query(sql)
        .fetch_all(pool)
        .await
        .map_err(SinkError::query("loading promotions or gift cards"))?;
    let mut loaded = Vec::with_capacity(rows.len());
    for row in rows {
        let read = || -> Result<_, sqlx::Error> {
            let code: String = row.try_get("code")?;
            let value = if table == "promotions" {
                ReferenceValue::Promotion {
                    document: row.try_get("document")?,
                    automatic: row.try_get("automatic")?,
                }
            } else {
                let spent: String = row.try_get("peer_spent")?;
                ReferenceValue::GiftCard {
                    balance: row.try_get("balance")?,
                    currency: row.try_get("currency")?,
                    peer_spent: peer_spent(&code, &spent),
                }
            };
            Ok((code, value))
        };
        let (code, value) = read().map_err(SinkError::query("reading a promotion or gift card"))?;
        let Some(code_bytes) = key_bytes(&code) else {
            tracing::warn!("restore skips {table} row {code:?}: bad hex key");
            continue;
        };
        let key = if table == "promotions" {
            ReferenceKey::Promotion(code_bytes)
        } else {
            ReferenceKey::GiftCard(code_bytes)
        };
        loaded.push((key, value));
    }
    Ok(loaded)
}
