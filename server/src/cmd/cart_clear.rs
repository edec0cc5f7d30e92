//! `CART.CLEAR`: every active line goes; saved and unavailable lines stay.

use protocol::{CartClear, CommandError, Reply};

use super::no_cart;
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.CLEAR`.
pub fn apply(cmd: CartClear, server: &Server, now: u64) -> Result<Reply, CommandError> {
    server.store.mutate(&cmd.key, &cmd.mutation, now, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        Ok(if cart.clear() {
            Outcome::Changed
        } else {
            Outcome::Unchanged
        })
    })
}
