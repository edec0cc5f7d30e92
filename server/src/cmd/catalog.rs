//! `CATALOG.SET`, `CATALOG.GET`, `CATALOG.DEL`, `STOCK.SET`: the catalog cache.

use protocol::{CatalogDel, CatalogGet, CatalogSet, CommandError, Reply, StockSet};

use super::known_line;
use crate::cart::{LineKey, Price};
use crate::server::Server;

fn interned(server: &Server, line: &protocol::cmd::LineId) -> Result<LineKey, CommandError> {
    let names = &server.store.names;
    Ok(LineKey {
        product: names.intern(&line.product)?,
        variant: names.intern(&line.variant)?,
    })
}

/// `CATALOG.SET`.
pub fn set(cmd: CatalogSet, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let key = interned(server, &cmd.line)?;
    let price = Price {
        minor: cmd.price,
        currency: cmd.currency,
    };
    server
        .store
        .catalog_set(key, price, cmd.stock, cmd.max_qty, now)?;
    Ok(Reply::ok())
}

/// `STOCK.SET`.
pub fn stock_set(cmd: StockSet, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let key = interned(server, &cmd.line)?;
    server.store.catalog_set_stock(key, cmd.stock, now)?;
    Ok(Reply::ok())
}

/// `CATALOG.GET`: price, currency, stock, max_qty, updated_at_ms; null if unknown.
pub fn get(cmd: CatalogGet, server: &Server) -> Reply {
    let Some(entry) =
        known_line(&server.store.names, &cmd.line).and_then(|key| server.store.catalog.get(key))
    else {
        return Reply::Null;
    };
    let optional = |value: Option<i64>| value.map_or(Reply::Null, Reply::Integer);
    Reply::Map(vec![
        (
            Reply::from_static("price"),
            optional(entry.price.map(|price| price.minor)),
        ),
        (
            Reply::from_static("currency"),
            entry
                .price
                .map_or(Reply::Null, |price| Reply::text(price.currency.as_str())),
        ),
        (
            Reply::from_static("stock"),
            optional(entry.stock.map(|stock| stock.min(i64::MAX as u64) as i64)),
        ),
        (
            Reply::from_static("max_qty"),
            optional(entry.max_qty.map(i64::from)),
        ),
        (
            Reply::from_static("updated_at_ms"),
            Reply::Integer(entry.updated_at_ms as i64),
        ),
    ])
}

/// `CATALOG.DEL`: 1 if the variant was known.
pub fn del(cmd: CatalogDel, server: &Server, now: u64) -> Reply {
    let removed = known_line(&server.store.names, &cmd.line)
        .is_some_and(|key| server.store.catalog_remove(key, now));
    Reply::Integer(i64::from(removed))
}
