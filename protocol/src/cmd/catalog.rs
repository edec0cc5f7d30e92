//! Catalog cache commands: `CATALOG.SET`, `CATALOG.GET`, `CATALOG.DEL`, `STOCK.SET`.
//! The catalog is server-wide (not keyed by cart), so these name no key.

use super::options::{reject_repeat, Currency, LineId};
use crate::args::Args;
use crate::error::CommandError;

/// `CATALOG.SET product variant price_minor currency [STOCK n] [MAXQTY n]`: upserts a price;
/// STOCK and MAXQTY keep their old values when not given.
#[derive(Debug, PartialEq)]
pub struct CatalogSet {
    /// The product variant.
    pub line: LineId,
    /// Price in minor units.
    pub price: i64,
    /// Currency of the price.
    pub currency: Currency,
    /// Stock level.
    pub stock: Option<u64>,
    /// Per-cart purchase limit (0 removes it).
    pub max_qty: Option<u32>,
}

impl CatalogSet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CatalogSet, CommandError> {
        let line = args.next_line_id()?;
        let price = args.next_price()?;
        let currency = args.next_currency()?;
        let (mut stock, mut max_qty) = (None, None);
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"STOCK") {
                reject_repeat(stock.is_some())?;
                stock = Some(args.next_u64()?);
            } else if name.eq_ignore_ascii_case(b"MAXQTY") {
                reject_repeat(max_qty.is_some())?;
                max_qty = Some(args.next_qty(0)?);
            } else {
                return Err(CommandError::syntax());
            }
        }
        Ok(CatalogSet {
            line,
            price,
            currency,
            stock,
            max_qty,
        })
    }
}

/// `CATALOG.GET product variant`: the entry, or null.
#[derive(Debug, PartialEq)]
pub struct CatalogGet {
    /// The product variant.
    pub line: LineId,
}

impl CatalogGet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CatalogGet, CommandError> {
        Ok(CatalogGet {
            line: args.next_line_id()?,
        })
    }
}

/// `CATALOG.DEL product variant`: 1 if it was known, else 0.
#[derive(Debug, PartialEq)]
pub struct CatalogDel {
    /// The product variant.
    pub line: LineId,
}

impl CatalogDel {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CatalogDel, CommandError> {
        Ok(CatalogDel {
            line: args.next_line_id()?,
        })
    }
}

/// `STOCK.SET product variant n`: sets the stock level of a known product variant.
#[derive(Debug, PartialEq)]
pub struct StockSet {
    /// The product variant.
    pub line: LineId,
    /// Units in stock (0: out of stock).
    pub stock: u64,
}

impl StockSet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<StockSet, CommandError> {
        let line = args.next_line_id()?;
        let stock = args.next_u64()?;
        Ok(StockSet { line, stock })
    }
}
