//! `CART.CHECKOUT`, `CART.COMPLETE`, `CART.RELEASE` (see `store/checkout.rs`).

use protocol::{CartCheckout, CartComplete, CartRelease, CommandError, ErrorCode, Reply};

use crate::peers::gift_cards::Prepared;
use crate::server::Server;

/// Runs `CART.CHECKOUT`. `upstream_stale`: the catalog or inventory service could not be
/// asked for fresh prices and stock, so the cart is not handed to checkout. `prepared`: what
/// other cluster nodes hold for it on the cards they decide (asked before it runs).
pub fn checkout(
    cmd: CartCheckout,
    server: &Server,
    now: u64,
    (upstream_stale, prepared): (bool, Option<Prepared>),
) -> Result<Reply, CommandError> {
    let held_elsewhere = match prepared {
        Some(Prepared::Held(held)) => Some(held),
        Some(Prepared::Failed(error)) => return Err(error),
        _ => None,
    };
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
    let store = &server.store;
    store.checkout(
        &cmd.key,
        &cmd.mutation,
        (hold_ms, now),
        held_elsewhere.as_ref(),
    )
}

/// Runs `CART.COMPLETE`. `prepared`: what other cluster nodes spent for it on the cards they
/// decide (asked before it runs).
pub fn complete(
    cmd: CartComplete,
    server: &Server,
    now: u64,
    prepared: Option<Prepared>,
) -> Result<Reply, CommandError> {
    let spent_elsewhere = match prepared {
        Some(Prepared::Spent(spent)) => spent,
        Some(Prepared::Failed(error)) => return Err(error),
        _ => Vec::new(),
    };
    let order_id = cmd.order_id.as_deref();
    let completion = (&cmd.token[..], order_id);
    server
        .store
        .complete(&cmd.key, completion, &cmd.mutation, now, &spent_elsewhere)
}

/// Runs `CART.RELEASE`.
pub fn release(cmd: CartRelease, server: &Server, now: u64) -> Result<Reply, CommandError> {
    server
        .store
        .release(&cmd.key, &cmd.token, &cmd.mutation, now)
}
