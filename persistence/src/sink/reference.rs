//! The reference tables in a batch: `catalog`, `promotions` and `gift_cards` rows to upsert or
//! delete, one vector per column, and the statements that write them, each row guarded by LSN
//! as `carts` rows are (only a record with a higher LSN replaces or deletes a row).

use serde_json::Value;
use sqlx::{Postgres, Transaction};

use super::columns::{json_has_nul, key_text, lsn_to_db, ms_to_db};
use super::{ReferenceKey, ReferenceValue, RowCodec, SinkError};
use crate::record::{Change, Lsn, State, TombstoneReason};

/// Reference rows one transaction writes.
#[derive(Debug, Default)]
pub struct ReferenceRows {
    catalog: CatalogRows,
    catalog_gone: KeyedGone,
    promotions: PromotionRows,
    promotions_gone: Gone,
    gift_cards: GiftCardRows,
    gift_cards_gone: Gone,
}

#[derive(Debug, Default)]
struct CatalogRows {
    products: Vec<String>,
    variants: Vec<String>,
    prices: Vec<Option<i64>>,
    currencies: Vec<Option<String>>,
    stocks: Vec<Option<i64>>,
    max_qtys: Vec<Option<i32>>,
    updated_at_ms: Vec<i64>,
    lsns: Vec<i64>,
}

#[derive(Debug, Default)]
struct PromotionRows {
    codes: Vec<String>,
    documents: Vec<Value>,
    automatic: Vec<bool>,
    updated_at_ms: Vec<i64>,
    lsns: Vec<i64>,
}

#[derive(Debug, Default)]
struct GiftCardRows {
    codes: Vec<String>,
    balances: Vec<i64>,
    currencies: Vec<String>,
    updated_at_ms: Vec<i64>,
    lsns: Vec<i64>,
    /// Each card's remembered spends, JSON text.
    peer_spent: Vec<String>,
}

/// Rows to delete by one key column.
#[derive(Debug, Default)]
struct Gone {
    keys: Vec<String>,
    lsns: Vec<i64>,
}

/// Catalog rows to delete.
#[derive(Debug, Default)]
struct KeyedGone {
    products: Vec<String>,
    variants: Vec<String>,
    lsns: Vec<i64>,
}

impl ReferenceRows {
    /// Adds the row change of a reference entry whose last change in the batch is `change`,
    /// at `lsn`; the error says why the codec could not make it a row.
    pub fn push(&mut self, lsn: Lsn, change: &Change, codec: &dyn RowCodec) -> Result<(), String> {
        let key = codec.reference_key(change.space, &change.key)?;
        let db_lsn = lsn_to_db(lsn);
        let image = match &change.state {
            // Moved to the node that took its hash slot, which writes the row from now on.
            State::Tombstone(TombstoneReason::Moved) => return Ok(()),
            State::Tombstone(_) => {
                self.push_gone(key, db_lsn);
                return Ok(());
            }
            State::Image(image) => image,
            State::Delta { .. } => return Err("a delta of reference data".into()),
        };
        let at_ms = ms_to_db(i64::try_from(change.at_ms).unwrap_or(i64::MAX));
        match (key, codec.reference_value(change.space, image)?) {
            (
                ReferenceKey::Catalog { product, variant },
                ReferenceValue::Catalog {
                    price,
                    currency,
                    stock,
                    max_qty,
                    updated_at_ms,
                },
            ) => {
                let rows = &mut self.catalog;
                rows.products.push(key_text(&product));
                rows.variants.push(key_text(&variant));
                rows.prices.push(price);
                rows.currencies.push(currency);
                rows.stocks.push(stock);
                rows.max_qtys.push(max_qty);
                rows.updated_at_ms.push(ms_to_db(updated_at_ms));
                rows.lsns.push(db_lsn);
            }
            (
                ReferenceKey::Promotion(code),
                ReferenceValue::Promotion {
                    document,
                    automatic,
                },
            ) => {
                if json_has_nul(&document) {
                    return Err("the document holds a NUL character, which jsonb refuses".into());
                }
                let rows = &mut self.promotions;
                rows.codes.push(key_text(&code));
                rows.documents.push(document);
                rows.automatic.push(automatic);
                rows.updated_at_ms.push(at_ms);
                rows.lsns.push(db_lsn);
            }
            (
                ReferenceKey::GiftCard(code),
                ReferenceValue::GiftCard {
                    balance,
                    currency,
                    peer_spent,
                },
            ) => {
                let rows = &mut self.gift_cards;
                rows.codes.push(key_text(&code));
                rows.balances.push(balance);
                rows.currencies.push(currency);
                let spent = serde_json::to_string(&peer_spent).expect("plain JSON");
                rows.peer_spent.push(spent);
                rows.updated_at_ms.push(at_ms);
                rows.lsns.push(db_lsn);
            }
            (key, value) => return Err(format!("the codec gave {value:?} for {key:?}")),
        }
        Ok(())
    }

    fn push_gone(&mut self, key: ReferenceKey, lsn: i64) {
        match key {
            ReferenceKey::Catalog { product, variant } => {
                self.catalog_gone.products.push(key_text(&product));
                self.catalog_gone.variants.push(key_text(&variant));
                self.catalog_gone.lsns.push(lsn);
            }
            ReferenceKey::Promotion(code) => {
                self.promotions_gone.keys.push(key_text(&code));
                self.promotions_gone.lsns.push(lsn);
            }
            ReferenceKey::GiftCard(code) => {
                self.gift_cards_gone.keys.push(key_text(&code));
                self.gift_cards_gone.lsns.push(lsn);
            }
        }
    }

    /// Writes every row change; returns how many rows were written or deleted.
    pub async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        term: i64,
    ) -> Result<u64, SinkError> {
        let mut rows = 0;
        rows += self.upsert_catalog(tx).await?;
        rows += self.upsert_promotions(tx).await?;
        rows += self.upsert_gift_cards(tx, term).await?;
        rows += delete_catalog(tx, &self.catalog_gone).await?;
        rows += delete_by_code(tx, "promotions", &self.promotions_gone).await?;
        rows += delete_gift_cards(tx, term, &self.gift_cards_gone).await?;
        Ok(rows)
    }

    async fn upsert_catalog(&self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, SinkError> {
        let rows = &self.catalog;
        if rows.lsns.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "INSERT INTO catalog (product, variant, price, currency, stock, max_qty, \
                 updated_at, lsn) \
             SELECT product, variant, price, currency, stock, max_qty, \
                 cartd_ms_to_ts(updated_ms), lsn \
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], \
                 $6::int4[], $7::int8[], $8::int8[]) \
               AS entry(product, variant, price, currency, stock, max_qty, updated_ms, lsn) \
             ON CONFLICT (product, variant) DO UPDATE SET price = excluded.price, \
                 currency = excluded.currency, stock = excluded.stock, \
                 max_qty = excluded.max_qty, updated_at = excluded.updated_at, \
                 lsn = excluded.lsn \
             WHERE catalog.lsn < excluded.lsn",
        )
        .bind(&rows.products)
        .bind(&rows.variants)
        .bind(&rows.prices)
        .bind(&rows.currencies)
        .bind(&rows.stocks)
        .bind(&rows.max_qtys)
        .bind(&rows.updated_at_ms)
        .bind(&rows.lsns)
        .execute(&mut **tx)
        .await
        .map_err(SinkError::query("upserting the batch's catalog entries"))?;
        Ok(result.rows_affected())
    }

    async fn upsert_promotions(
        &self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<u64, SinkError> {
        let rows = &self.promotions;
        if rows.lsns.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "INSERT INTO promotions (code, document, automatic, updated_at, lsn) \
             SELECT code, document, automatic, cartd_ms_to_ts(updated_ms), lsn \
             FROM UNNEST($1::text[], $2::jsonb[], $3::bool[], $4::int8[], $5::int8[]) \
               AS promo(code, document, automatic, updated_ms, lsn) \
             ON CONFLICT (code) DO UPDATE SET document = excluded.document, \
                 automatic = excluded.automatic, updated_at = excluded.updated_at, \
                 lsn = excluded.lsn \
             WHERE promotions.lsn < excluded.lsn",
        )
        .bind(&rows.codes)
        .bind(&rows.documents)
        .bind(&rows.automatic)
        .bind(&rows.updated_at_ms)
        .bind(&rows.lsns)
        .execute(&mut **tx)
        .await
        .map_err(SinkError::query("upserting the batch's promotions"))?;
        Ok(result.rows_affected())
    }

    async fn upsert_gift_cards(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        term: i64,
    ) -> Result<u64, SinkError> {
        let rows = &self.gift_cards;
        if rows.lsns.is_empty() {
            return Ok(0);
        }
        let result = sqlx::query(
            "INSERT INTO gift_cards (code, balance, currency, updated_at, lsn, term, peer_spent) \
             SELECT code, balance, currency, cartd_ms_to_ts(updated_ms), lsn, $6, spent::jsonb \
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[], $5::int8[], \
                         $7::text[]) \
               AS card(code, balance, currency, updated_ms, lsn, spent) \
             ON CONFLICT (code) DO UPDATE SET balance = excluded.balance, \
                 currency = excluded.currency, updated_at = excluded.updated_at, \
                 lsn = excluded.lsn, term = excluded.term, peer_spent = excluded.peer_spent \
             WHERE (gift_cards.term, gift_cards.lsn) < (excluded.term, excluded.lsn)",
        )
        .bind(&rows.codes)
        .bind(&rows.balances)
        .bind(&rows.currencies)
        .bind(&rows.updated_at_ms)
        .bind(&rows.lsns)
        .bind(term)
        .bind(&rows.peer_spent)
        .execute(&mut **tx)
        .await
        .map_err(SinkError::query("upserting the batch's gift cards"))?;
        Ok(result.rows_affected())
    }
}

async fn delete_catalog(
    tx: &mut Transaction<'_, Postgres>,
    gone: &KeyedGone,
) -> Result<u64, SinkError> {
    if gone.lsns.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "DELETE FROM catalog USING UNNEST($1::text[], $2::text[], $3::int8[]) \
           AS gone(product, variant, lsn) \
         WHERE catalog.product = gone.product AND catalog.variant = gone.variant \
           AND catalog.lsn < gone.lsn",
    )
    .bind(&gone.products)
    .bind(&gone.variants)
    .bind(&gone.lsns)
    .execute(&mut **tx)
    .await
    .map_err(SinkError::query("deleting the batch's catalog entries"))?;
    Ok(result.rows_affected())
}

async fn delete_by_code(
    tx: &mut Transaction<'_, Postgres>,
    table: &'static str,
    gone: &Gone,
) -> Result<u64, SinkError> {
    if gone.lsns.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM {table} USING UNNEST($1::text[], $2::int8[]) AS gone(code, lsn) \
         WHERE {table}.code = gone.code AND {table}.lsn < gone.lsn"
    );
    let result = sqlx::query(&sql)
        .bind(&gone.keys)
        .bind(&gone.lsns)
        .execute(&mut **tx)
        .await
        .map_err(SinkError::query(
            "deleting the batch's promotions or gift cards",
        ))?;
    Ok(result.rows_affected())
}

/// Deletes the batch's deleted gift cards, each only over a row of an older (term, LSN).
async fn delete_gift_cards(
    tx: &mut Transaction<'_, Postgres>,
    term: i64,
    gone: &Gone,
) -> Result<u64, SinkError> {
    if gone.lsns.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "DELETE FROM gift_cards USING UNNEST($1::text[], $2::int8[]) AS gone(code, lsn) \
         WHERE gift_cards.code = gone.code AND (gift_cards.term, gift_cards.lsn) < ($3, gone.lsn)",
    )
    .bind(&gone.keys)
    .bind(&gone.lsns)
    .bind(term)
    .execute(&mut **tx)
    .await
    .map_err(SinkError::query("deleting the batch's gift cards"))?;
    Ok(result.rows_affected())
}
