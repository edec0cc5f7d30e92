//! `CART.CLEAR`: every active line goes; saved and unavailable lines stay.

use persistence::EventKind;
use protocol::{CartClear, CommandError, Reply};

use super::no_cart;
use crate::server::Server;
use crate::store::Outcome;

/// Runs `CART.CLEAR`.
pub fn apply(cmd: CartClear, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let event = crate::store::event(EventKind::Remove, serde_json::json!({"all": true}));
    server
        .store
        .mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
            let cart = cart.ok_or_else(no_cart)?;
            Ok(if cart.clear() {
                Outcome::Changed
            } else {
                Outcome::Unchanged
            })
        })
}
