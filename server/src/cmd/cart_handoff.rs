//! `CART.HANDOFF` and `CART.HANDOFF.DONE`, on the guest cart's node of a merge across cluster
//! nodes: see `store/handoff.rs` for the entries and docs/CLUSTER.md for the protocol.

use protocol::{CartHandoff, CartHandoffDone, CommandError, Reply};

use crate::fault::{self, FaultPoint};
use crate::server::Server;

/// `CART.HANDOFF guest user`: `[id, image]` of the guest cart handed off (again, for a retry
/// while it is unconfirmed), or null when there is no guest cart. The reply waits for the log
/// as every change's does.
pub fn hand_off(cmd: CartHandoff, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let Some(given) = server.store.hand_off(&cmd.guest_key, &cmd.user_key, now)? else {
        return Ok(Reply::Null);
    };
    fault::check(server, FaultPoint::HandoffAfterTake);
    Ok(Reply::Array(vec![
        Reply::Bulk(given.id),
        Reply::Bulk(given.cart),
    ]))
}

/// `CART.HANDOFF.DONE guest id`: `+OK`, whether the handoff was still kept or not.
pub fn done(cmd: CartHandoffDone, server: &Server, now: u64) -> Reply {
    if server.store.handoff_done(&cmd.guest_key, &cmd.id, now) {
        fault::check(server, FaultPoint::DoneAfterLog);
    }
    Reply::ok()
}
