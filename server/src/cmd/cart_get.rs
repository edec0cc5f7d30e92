//! `CART.GET`: the validated view (see `Store::get` for the locking).

use protocol::{CartGet, Reply};

use crate::server::Server;

/// Runs `CART.GET`. `upstream_stale`: the upstream services could not refresh this cart's
/// lines just before (see `crate::upstream`), so a validating view is marked stale. `touch`:
/// the read renews the cart's TTL (false under CLIENT NO-TOUCH).
pub fn apply(cmd: CartGet, server: &Server, now: u64, upstream_stale: bool, touch: bool) -> Reply {
    if let Some(reply) = cmd
        .if_changed
        .and_then(|version| server.store.unchanged(&cmd.key, version, now, touch))
    {
        return reply;
    }
    server.store.get(
        &cmd.key,
        cmd.novalidate,
        cmd.format,
        now,
        upstream_stale,
        touch,
    )
}
