//! The catalog cache: prices, stock and per-cart limits that upstream systems push in
//! (`CATALOG.SET`, `STOCK.SET`), and the validation that re-prices a cart from it.
//!
//! Validation is planned from a copy of the cart's lines, without any shard lock held, and the
//! plan is applied afterwards only if the cart is still at the version it was planned for.

use dashmap::DashMap;
use protocol::{CommandError, Currency};

use crate::cart::{Cart, LineKey, Price};
use crate::limits::CATALOG_ENTRIES_MAX;

/// What the catalog knows of one product variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogEntry {
    /// Current price, if one was set.
    pub price: Option<Price>,
    /// Units in stock, if known.
    pub stock: Option<u64>,
    /// Per-cart purchase limit.
    pub max_qty: Option<u32>,
    /// Last change.
    pub updated_at_ms: u64,
}

/// The server-wide catalog cache.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: DashMap<LineKey, CatalogEntry>,
}

/// The changes validation found for one cart.
#[derive(Debug, Default, PartialEq)]
pub struct ValidationPlan {
    /// New unit prices.
    pub prices: Vec<(LineKey, i64)>,
    /// Lines to move to unavailable.
    pub out_of_stock: Vec<LineKey>,
}

impl Catalog {
    /// One entry.
    pub fn get(&self, key: LineKey) -> Option<CatalogEntry> {
        self.entries.get(&key).map(|entry| *entry)
    }

    /// How many product variants are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `CATALOG.SET`: sets the price; stock and limit keep their values unless given
    /// (`max_qty` 0 removes the limit).
    pub fn set(
        &self,
        key: LineKey,
        price: Price,
        stock: Option<u64>,
        max_qty: Option<u32>,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        self.upsert(key, now_ms, |entry| {
            entry.price = Some(price);
            if stock.is_some() {
                entry.stock = stock;
            }
            if let Some(max_qty) = max_qty {
                entry.max_qty = (max_qty > 0).then_some(max_qty);
            }
        })
    }

    /// `STOCK.SET`: sets the stock level, creating a price-less entry for an unknown variant
    /// (inventory and pricing are often pushed by different systems).
    pub fn set_stock(&self, key: LineKey, stock: u64, now_ms: u64) -> Result<(), CommandError> {
        self.upsert(key, now_ms, |entry| entry.stock = Some(stock))
    }

    fn upsert(
        &self,
        key: LineKey,
        now_ms: u64,
        change: impl FnOnce(&mut CatalogEntry),
    ) -> Result<(), CommandError> {
        if !self.entries.contains_key(&key) && self.entries.len() >= CATALOG_ENTRIES_MAX {
            return Err(CommandError::limit(format!(
                "the catalog cache holds {CATALOG_ENTRIES_MAX} product variants already"
            )));
        }
        let mut entry = self.entries.entry(key).or_insert(CatalogEntry {
            price: None,
            stock: None,
            max_qty: None,
            updated_at_ms: now_ms,
        });
        change(&mut entry);
        entry.updated_at_ms = now_ms;
        Ok(())
    }

    /// `CATALOG.DEL`: whether the variant was known.
    pub fn remove(&self, key: LineKey) -> bool {
        self.entries.remove(&key).is_some()
    }

    /// The catalog's price for a line of a cart in `currency` (a price in another currency does
    /// not count) and the product's per-cart limit.
    pub fn price_and_cap(&self, key: LineKey) -> (Option<Price>, Option<u32>) {
        match self.get(key) {
            Some(entry) => (entry.price, entry.max_qty),
            None => (None, None),
        }
    }

    /// Plans the validation of `lines` (key, unit price) of a cart priced in `currency`:
    /// catalog prices in that currency replace the unit price; stock 0 moves a line aside.
    pub fn plan(&self, currency: Currency, lines: &[(LineKey, i64)]) -> ValidationPlan {
        let mut plan = ValidationPlan::default();
        for &(key, unit_price) in lines {
            let Some(entry) = self.get(key) else { continue };
            if entry.stock == Some(0) {
                plan.out_of_stock.push(key);
                continue;
            }
            if let Some(price) = entry.price {
                if price.currency == currency && price.minor != unit_price {
                    plan.prices.push((key, price.minor));
                }
            }
        }
        plan
    }

    /// Plans the validation of a cart in hand (MERGE holds its shard locks anyway).
    pub fn plan_for(&self, cart: &Cart) -> ValidationPlan {
        let lines: Vec<(LineKey, i64)> = cart
            .lines
            .iter()
            .map(|line| (line.key, line.unit_price))
            .collect();
        self.plan(cart.currency, &lines)
    }
}

/// Applies a plan to the cart it was made for. Returns whether anything changed.
pub fn apply_plan(cart: &mut Cart, plan: &ValidationPlan) -> bool {
    let mut changed = false;
    for &(key, price) in &plan.prices {
        if let Some(index) = cart.line_index(key) {
            changed |= cart.lines[index].unit_price != price;
            cart.lines[index].unit_price = price;
        }
    }
    if !plan.out_of_stock.is_empty() {
        let before = cart.lines.len();
        cart.move_to_unavailable(&plan.out_of_stock);
        changed |= cart.lines.len() != before;
    }
    changed
}
