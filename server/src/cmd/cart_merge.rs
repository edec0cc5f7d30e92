//! `CART.MERGE`: see `store/merge.rs` and `cart/merge.rs` for the rules; a guest cart another
//! cluster node serves was handed off by the pre-step (`crate::handoff`).

use protocol::{CartMerge, CommandError, Reply};

use crate::handoff::{self, HandoffResult};
use crate::server::Server;
use crate::store::GuestFrom;

/// Runs `CART.MERGE`; `handed` is the handoff pre-step's result, if it ran.
pub fn apply(
    cmd: CartMerge,
    server: &Server,
    now: u64,
    handed: Option<HandoffResult>,
) -> Result<Reply, CommandError> {
    let guest_from = handoff::guest_from(server, &cmd, handed)?;
    let owes_done = matches!(guest_from, GuestFrom::Handed(Some(_)));
    let reply = server.store.merge(&cmd, guest_from, now);
    if owes_done {
        // Merged now or before (a retry): either way its giver waits for the DONE.
        handoff::owe_done(server);
    }
    reply
}
