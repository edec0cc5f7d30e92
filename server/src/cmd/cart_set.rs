//! `CART.SET`: sets a line's quantity within `max_qty_per_line` and the product's limit.

use persistence::EventKind;
use protocol::{CartSet, CommandError, Reply};

use super::{known_line, line_event, no_cart, no_item};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.SET`.
pub fn apply(cmd: CartSet, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let line = known_line(&store.names, &cmd.line);
    let cap = line.and_then(|line| store.catalog.price_and_cap(line).1);
    let limits = store.config.limits;
    let event = line_event(EventKind::Update, &cmd.line, Some(cmd.qty));
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        let line = line.ok_or_else(no_item)?;
        let before = cart
            .lines
            .iter()
            .find(|existing| existing.key == line)
            .map(|existing| existing.qty);
        cart.set_qty(line, cmd.qty, cap, &limits)?;
        Ok(if before == Some(cmd.qty) {
            Outcome::Unchanged
        } else {
            Outcome::Changed
        })
    })
}
