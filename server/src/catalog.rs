//! The catalog cache: prices, stock and per-cart limits that upstream systems push in
//! (`CATALOG.SET`, `STOCK.SET`) or that the HTTP services of `crate::upstream` answer, and the
//! validation that re-prices a cart from it. Each entry remembers when its price and its stock
//! were last refreshed, pushed or fetched, so a view fetches only what is out of date.
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
    /// When the price was last pushed or fetched (0: never), changed or not.
    pub price_refreshed_at_ms: u64,
    /// When the stock level was last pushed or fetched (0: never), changed or not.
    pub stock_refreshed_at_ms: u64,
}

/// Which half of an entry a refresh is about: the catalog service answers prices (and
/// limits), the inventory service stock levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facet {
    /// Price and per-cart limit.
    Price,
    /// Stock level.
    Stock,
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

impl ValidationPlan {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.out_of_stock.is_empty()
    }
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
    /// (`max_qty` 0 removes the limit). `log` sees the entry as it now is, under its lock.
    pub fn set(
        &self,
        key: LineKey,
        price: Price,
        stock: Option<u64>,
        max_qty: Option<u32>,
        now_ms: u64,
        log: impl FnOnce(&CatalogEntry),
    ) -> Result<(), CommandError> {
        let change = |entry: &mut CatalogEntry| {
            entry.price = Some(price);
            entry.price_refreshed_at_ms = now_ms;
            if stock.is_some() {
                entry.stock = stock;
                entry.stock_refreshed_at_ms = now_ms;
            }
            if let Some(max_qty) = max_qty {
                entry.max_qty = (max_qty > 0).then_some(max_qty);
            }
            true
        };
        self.upsert(key, now_ms, change, log)
    }

    /// `STOCK.SET`: sets the stock level, creating a price-less entry for an unknown variant
    /// (inventory and pricing are often pushed by different systems). `log` as for `set`.
    pub fn set_stock(
        &self,
        key: LineKey,
        stock: u64,
        now_ms: u64,
        log: impl FnOnce(&CatalogEntry),
    ) -> Result<(), CommandError> {
        let change = |entry: &mut CatalogEntry| {
            entry.stock = Some(stock);
            entry.stock_refreshed_at_ms = now_ms;
            true
        };
        self.upsert(key, now_ms, change, log)
    }

    /// Forgets every entry (before another recovery attempt).
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Puts an entry from the log or a snapshot in place.
    pub fn load(&self, key: LineKey, entry: CatalogEntry) {
        self.entries.insert(key, entry);
    }

    /// Every entry, for a snapshot (each read under its own lock).
    pub fn for_each(&self, mut visit: impl FnMut(LineKey, &CatalogEntry)) {
        for entry in self.entries.iter() {
            visit(*entry.key(), entry.value());
        }
    }

    /// Whether `key`'s `facet` must be fetched before a view at `now_ms`: never refreshed, or
    /// refreshed `ttl_ms` or longer ago (a `ttl_ms` of 0: always).
    pub fn due(&self, key: LineKey, facet: Facet, now_ms: u64, ttl_ms: u64) -> bool {
        let Some(entry) = self.entries.get(&key) else {
            return true;
        };
        let refreshed_at_ms = match facet {
            Facet::Price => entry.price_refreshed_at_ms,
            Facet::Stock => entry.stock_refreshed_at_ms,
        };
        refreshed_at_ms == 0 || now_ms.saturating_sub(refreshed_at_ms) >= ttl_ms
    }

    /// The catalog service's answer for one variant: its price and, when it sends one, its
    /// per-cart limit (0 removes it), or `None` when the service does not know the variant
    /// (the cached price stays). The refresh is recorded either way, so an unknown variant is
    /// not asked for again within the price window.
    pub fn refresh_price(
        &self,
        key: LineKey,
        answer: Option<(Price, Option<u32>)>,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let change = |entry: &mut CatalogEntry| {
            entry.price_refreshed_at_ms = now_ms;
            let Some((price, max_qty)) = answer else {
                return false;
            };
            let before = (entry.price, entry.max_qty);
            entry.price = Some(price);
            if let Some(max_qty) = max_qty {
                entry.max_qty = (max_qty > 0).then_some(max_qty);
            }
            before != (entry.price, entry.max_qty)
        };
        // What the services answer is a cache: it is not logged.
        self.upsert(key, now_ms, change, |_| {})
    }

    /// The inventory service's answer for one variant: its stock level, or `None` when the
    /// service does not know the variant (the cached level stays). Recorded either way.
    pub fn refresh_stock(
        &self,
        key: LineKey,
        stock: Option<u64>,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let change = |entry: &mut CatalogEntry| {
            entry.stock_refreshed_at_ms = now_ms;
            let changed = stock.is_some_and(|stock| entry.stock != Some(stock));
            if stock.is_some() {
                entry.stock = stock;
            }
            changed
        };
        self.upsert(key, now_ms, change, |_| {})
    }

    /// Creates or changes one entry; `change` tells whether a value changed (the entry's
    /// `updated_at_ms` moves only then); `log` sees the result while the entry is still locked.
    fn upsert(
        &self,
        key: LineKey,
        now_ms: u64,
        change: impl FnOnce(&mut CatalogEntry) -> bool,
        log: impl FnOnce(&CatalogEntry),
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
            price_refreshed_at_ms: 0,
            stock_refreshed_at_ms: 0,
        });
        if change(&mut entry) {
            entry.updated_at_ms = now_ms;
        }
        log(&entry);
        Ok(())
    }

    /// `CATALOG.DEL`: whether the variant was known; `log` runs while it is still locked.
    pub fn remove(&self, key: LineKey, log: impl FnOnce()) -> bool {
        self.entries
            .remove_if(&key, |_, _| {
                log();
                true
            })
            .is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::Names;

    fn usd(minor: i64) -> Price {
        Price {
            minor,
            currency: Currency(*b"USD"),
        }
    }

    #[test]
    fn price_and_stock_windows_run_apart() {
        let names = Names::default();
        let key = LineKey {
            product: names.intern(b"mug").unwrap(),
            variant: names.intern(b"-").unwrap(),
        };
        let catalog = Catalog::default();
        assert!(catalog.due(key, Facet::Price, 1_000, 60_000), "unknown");
        catalog.set_stock(key, 3, 1_000, |_| {}).unwrap();
        assert!(
            catalog.due(key, Facet::Price, 1_000, 60_000),
            "no price yet"
        );
        assert!(!catalog.due(key, Facet::Stock, 5_999, 5_000));
        assert!(catalog.due(key, Facet::Stock, 6_000, 5_000));
        catalog.refresh_price(key, None, 2_000).unwrap();
        assert!(
            !catalog.due(key, Facet::Price, 2_000, 60_000),
            "asked: unknown upstream"
        );
        assert_eq!(catalog.get(key).unwrap().price, None);
        assert_eq!(
            catalog.get(key).unwrap().updated_at_ms,
            1_000,
            "nothing changed"
        );
        catalog
            .refresh_price(key, Some((usd(899), Some(2))), 3_000)
            .unwrap();
        catalog.refresh_stock(key, None, 4_000).unwrap();
        let entry = catalog.get(key).unwrap();
        assert_eq!(
            (entry.price, entry.max_qty, entry.stock),
            (Some(usd(899)), Some(2), Some(3))
        );
        assert_eq!(entry.updated_at_ms, 3_000);
        assert_eq!(entry.stock_refreshed_at_ms, 4_000);
        assert!(
            catalog.due(key, Facet::Price, 3_000, 0),
            "a window of 0: always"
        );
        catalog
            .refresh_price(key, Some((usd(899), None)), 5_000)
            .unwrap();
        assert_eq!(
            catalog.get(key).unwrap().max_qty,
            Some(2),
            "no max_qty: kept"
        );
    }
}
