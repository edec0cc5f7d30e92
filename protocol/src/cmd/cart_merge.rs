//! `CART.MERGE guest_key user_key [QTY MAX|SUM] [mutation options]`

use bytes::Bytes;

use super::options::{reject_repeat, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// How quantities of a line in both carts combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeQty {
    /// The higher of the two (default).
    #[default]
    Max,
    /// The sum, capped by the limits.
    Sum,
}

/// Merges a guest cart into a user cart atomically; the guest cart is deleted.
#[derive(Debug, PartialEq)]
pub struct CartMerge {
    /// The cart merged from (deleted afterwards).
    pub guest_key: Bytes,
    /// The cart merged into.
    pub user_key: Bytes,
    /// Quantity rule for lines in both carts.
    pub qty: MergeQty,
    /// Mutation options (they apply to the user cart).
    pub mutation: MutationOptions,
}

impl CartMerge {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartMerge, CommandError> {
        let guest_key = args.next_key()?;
        let user_key = args.next_key()?;
        if guest_key == user_key {
            return Err(CommandError::err("cannot merge a cart into itself"));
        }
        let mut qty = None;
        let mut mutation = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"QTY") {
                reject_repeat(qty.is_some())?;
                let rule = args.next_bytes()?;
                qty = Some(if rule.eq_ignore_ascii_case(b"MAX") {
                    MergeQty::Max
                } else if rule.eq_ignore_ascii_case(b"SUM") {
                    MergeQty::Sum
                } else {
                    return Err(CommandError::syntax());
                });
            } else if !mutation.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartMerge {
            guest_key,
            user_key,
            qty: qty.unwrap_or_default(),
            mutation,
        })
    }
}
