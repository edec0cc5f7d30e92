//! `CART.SAVE`: a line moves to saved-for-later.

use persistence::EventKind;
use protocol::{CartSave, CommandError, Reply};

use super::{known_line, line_event, no_cart, no_item};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.SAVE`.
pub fn apply(cmd: CartSave, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let line = known_line(&store.names, &cmd.line);
    let limits = store.config.limits;
    let event = line_event(EventKind::Save, &cmd.line, None);
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        cart.save(line.ok_or_else(no_item)?, &limits, now)?;
        Ok(Outcome::Changed)
    })
}
