//! `CART.MERGE`: see `store/merge.rs` and `cart/merge.rs` for the rules.

use protocol::{CartMerge, CommandError, Reply};

use crate::server::Server;

/// Runs `CART.MERGE`.
pub fn apply(cmd: CartMerge, server: &Server, now: u64) -> Result<Reply, CommandError> {
    server.store.merge(&cmd, now)
}
