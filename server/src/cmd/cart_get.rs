//! `CART.GET`: the validated view (see `Store::get` for the locking).

use protocol::{CartGet, Reply};

use std::sync::atomic::Ordering;

use crate::dispatch::Session;
use crate::server::Server;

/// Runs `CART.GET`. A view whose lines the upstream services could not refresh just before
/// (`session.upstream_stale`, see `crate::upstream`) is marked stale; from a CLIENT NO-TOUCH
/// connection the read leaves the cart's TTL as it was.
pub fn apply(cmd: CartGet, server: &Server, now: u64, session: &Session) -> Reply {
    let touch = !session.handle.no_touch.load(Ordering::Relaxed);
    if let Some(reply) = cmd
        .if_changed
        .and_then(|version| server.store.unchanged(&cmd.key, version, now, touch))
    {
        return reply;
    }
    let stale = session.upstream_stale;
    server
        .store
        .get(&cmd.key, cmd.novalidate, cmd.format, now, stale, touch)
}
