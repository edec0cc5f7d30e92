//! `CART.REMOVE`: an absent line is a no-op that still replies the cart.

use persistence::EventKind;
use protocol::{CartRemove, CommandError, Reply};

use super::{known_line, line_event, no_cart};
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.REMOVE`.
pub fn apply(cmd: CartRemove, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let line = known_line(&store.names, &cmd.line);
    let event = line_event(EventKind::Remove, &cmd.line, None);
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        let removed = line.is_some_and(|line| cart.remove(line, cmd.from));
        Ok(if removed {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        })
    })
}
