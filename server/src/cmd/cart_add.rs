//! `CART.ADD`: price from the request, else the catalog (in the cart's currency), else the
//! existing line's. The catalog is read before the shard lock is taken.

use persistence::EventKind;
use protocol::{CartAdd, CommandError, ErrorCode, Reply};

use super::line_event;
use crate::cart::{Cart, LineKey, Price};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.ADD`.
pub fn apply(cmd: CartAdd, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    // Without a PRICE, an id never seen cannot be priced: neither the catalog nor a line can
    // hold it. Refused before interning, so failed adds cannot fill the id table.
    let known = store.names.get(&cmd.line.product).is_some()
        && store.names.get(&cmd.line.variant).is_some();
    if cmd.price.is_none() && !known {
        return Err(no_price());
    }
    let line = LineKey {
        product: store.names.intern(&cmd.line.product)?,
        variant: store.names.intern(&cmd.line.variant)?,
    };
    let (catalog_price, cap) = store.catalog.price_and_cap(line);
    let explicit = cmd.price.map(|(minor, currency)| Price { minor, currency });
    let limits = store.config.limits;
    let kind = store.kind_of(&cmd.key);
    let event = line_event(EventKind::Add, &cmd.line, Some(cmd.qty));
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| match cart {
        Some(cart) => {
            let catalog_price = catalog_price
                .filter(|price| price.currency == cart.currency || cart.holds_no_lines());
            cart.add(line, cmd.qty, explicit.or(catalog_price), cap, &limits, now)?;
            Ok(Outcome::Changed)
        }
        None => {
            let price = explicit.or(catalog_price).ok_or_else(no_price)?;
            let mut cart = Cart::new(kind, price.currency, now);
            cart.add(line, cmd.qty, Some(price), cap, &limits, now)?;
            Ok(Outcome::Create(cart))
        }
    })
}

fn no_price() -> CommandError {
    CommandError::new(
        ErrorCode::NoPrice,
        "no price given and none in the catalog for this product variant",
    )
}
