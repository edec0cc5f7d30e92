//! `CART.CHECKOUT`, `CART.COMPLETE`, `CART.RELEASE` (see `store/checkout.rs`).

use protocol::{CartCheckout, CartComplete, CartRelease, CommandError, ErrorCode, Reply};

use crate::server::Server;

/// Runs `CART.CHECKOUT`. `upstream_stale`: the catalog or inventory service could not be
/// asked for fresh prices and stock, so the cart is not handed to checkout.
pub fn checkout(
    cmd: CartCheckout,
    server: &Server,
    now: u64,
    upstream_stale: bool,
) -> Result<Reply, CommandError> {
    if upstream_stale {
        return Err(CommandError::new(
            ErrorCode::TryAgain,
            "prices and stock could not be checked with the catalog and inventory services; try again",
        ));
    }
    let hold_ms = cmd
        .hold_s
        .map_or(server.store.config.checkout_hold_ms, |seconds| {
            seconds * 1000
        });
    server.store.checkout(&cmd.key, &cmd.mutation, hold_ms, now)
}

/// Runs `CART.COMPLETE`.
pub fn complete(cmd: CartComplete, server: &Server, now: u64) -> Result<Reply, CommandError> {
    server.store.complete(
        &cmd.key,
        &cmd.token,
        cmd.order_id.as_deref(),
        &cmd.mutation,
        now,
    )
}

/// Runs `CART.RELEASE`.
pub fn release(cmd: CartRelease, server: &Server, now: u64) -> Result<Reply, CommandError> {
    server
        .store
        .release(&cmd.key, &cmd.token, &cmd.mutation, now)
}
