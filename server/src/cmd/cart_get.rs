//! `CART.GET`: the validated view (see `Store::get` for the locking).

use protocol::{CartGet, Reply};

use crate::server::Server;

/// Runs `CART.GET`.
pub fn apply(cmd: CartGet, server: &Server, now: u64) -> Reply {
    server.store.get(&cmd.key, cmd.novalidate, cmd.format, now)
}
