//! `CART.RESTORE`: a saved or unavailable line moves back into the cart.

use protocol::{CartRestore, CommandError, Reply};

use super::{known_line, no_cart, no_item};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.RESTORE`.
pub fn apply(cmd: CartRestore, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let line = known_line(&store.names, &cmd.line);
    let (catalog_price, cap) = line.map_or((None, None), |line| store.catalog.price_and_cap(line));
    let limits = store.config.limits;
    store.mutate(&cmd.key, &cmd.mutation, now, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        cart.restore(line.ok_or_else(no_item)?, catalog_price, cap, &limits)?;
        Ok(Outcome::Changed)
    })
}
