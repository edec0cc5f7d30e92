//! The checkout commands: `CART.CHECKOUT key [HOLD seconds]`, `CART.COMPLETE key token
//! [ORDER order_id]`, `CART.RELEASE key token`, each with the mutation options. Own options and
//! mutation options mix in any order and any case; a repeated one is a syntax error.

use bytes::Bytes;

use super::options::{reject_repeat, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;
use crate::{HOLD_S_MAX, HOLD_S_MIN, ORDER_ID_BYTES_MAX, TOKEN_BYTES_MAX};

/// What a checkout token is called in errors.
const CHECKOUT_TOKEN: &str = "checkout token";

/// Validates the cart, then freezes it for checkout and replies the view with its
/// `checkout_token`. Errors: `NOCART`, `FROZEN`, `VERSION`, `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartCheckout {
    /// Cart key.
    pub key: Bytes,
    /// `HOLD seconds`: how long the freeze lasts (`HOLD_S_MIN..=HOLD_S_MAX`); `None` leaves
    /// it to the server's default.
    pub hold_s: Option<u64>,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartCheckout {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartCheckout, CommandError> {
        let key = args.next_key()?;
        let mut hold_s = None;
        let mut mutation = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"HOLD") {
                reject_repeat(hold_s.is_some())?;
                hold_s = Some(next_hold_s(args)?);
            } else if !mutation.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartCheckout {
            key,
            hold_s,
            mutation,
        })
    }
}

/// The value after `HOLD`: a non-integer is Redis's integer error, an integer outside the
/// range a sentence naming it.
fn next_hold_s(args: &mut Args) -> Result<u64, CommandError> {
    let value = args.next_i64()?;
    u64::try_from(value)
        .ok()
        .filter(|hold_s| (HOLD_S_MIN..=HOLD_S_MAX).contains(hold_s))
        .ok_or_else(|| {
            CommandError::err(format!(
                "HOLD must be between {HOLD_S_MIN} and {HOLD_S_MAX} seconds, got {value}"
            ))
        })
}

/// Checkout succeeded: deletes the frozen cart and records a `checkout` event. Errors:
/// `NOCART`, `TOKEN` (not the cart's checkout token), `VERSION`, `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartComplete {
    /// Cart key.
    pub key: Bytes,
    /// The `checkout_token` CART.CHECKOUT replied, 1..=64 bytes.
    pub token: Bytes,
    /// `ORDER order_id`: the caller's order, 1..=128 bytes, kept with the event.
    pub order_id: Option<Bytes>,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartComplete {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartComplete, CommandError> {
        let key = args.next_key()?;
        let token = args.next_bounded(CHECKOUT_TOKEN, TOKEN_BYTES_MAX)?;
        let mut order_id = None;
        let mut mutation = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"ORDER") {
                reject_repeat(order_id.is_some())?;
                order_id = Some(args.next_bounded("order id", ORDER_ID_BYTES_MAX)?);
            } else if !mutation.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartComplete {
            key,
            token,
            order_id,
            mutation,
        })
    }
}

/// Checkout abandoned: unfreezes the cart. Errors: `NOCART`, `TOKEN`, `VERSION`,
/// `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartRelease {
    /// Cart key.
    pub key: Bytes,
    /// The `checkout_token` CART.CHECKOUT replied, 1..=64 bytes.
    pub token: Bytes,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartRelease {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartRelease, CommandError> {
        let key = args.next_key()?;
        let token = args.next_bounded(CHECKOUT_TOKEN, TOKEN_BYTES_MAX)?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartRelease {
            key,
            token,
            mutation,
        })
    }
}
