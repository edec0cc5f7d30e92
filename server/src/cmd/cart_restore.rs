//! `CART.RESTORE`: a saved or unavailable line moves back into the cart.

use persistence::EventKind;
use protocol::{CartRestore, CommandError, Reply};

use super::{known_line, line_event, no_cart, no_item};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.RESTORE`.
pub fn apply(cmd: CartRestore, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let line = known_line(&store.names, &cmd.line);
    let (catalog_price, cap) = line.map_or((None, None), |line| store.catalog.price_and_cap(line));
    let limits = store.config.limits;
    let event = line_event(EventKind::Restore, &cmd.line, None);
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        cart.restore(line.ok_or_else(no_item)?, catalog_price, cap, &limits)?;
        Ok(Outcome::Changed)
    })
}
