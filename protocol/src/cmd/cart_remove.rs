//! `CART.REMOVE key product variant [FROM CART|SAVED|UNAVAILABLE] [mutation options]`

use bytes::Bytes;

use super::options::{reject_repeat, LineId, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// Which of a cart's three lists a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineList {
    /// The active lines.
    #[default]
    Cart,
    /// Saved for later.
    Saved,
    /// Moved aside because out of stock.
    Unavailable,
}

/// Removes a line; removing an absent line is a no-op that still replies the cart.
#[derive(Debug, PartialEq)]
pub struct CartRemove {
    /// Cart key.
    pub key: Bytes,
    /// The line.
    pub line: LineId,
    /// The list to remove it from.
    pub from: LineList,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartRemove {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartRemove, CommandError> {
        let key = args.next_key()?;
        let line = args.next_line_id()?;
        let mut from = None;
        let mut mutation = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"FROM") {
                reject_repeat(from.is_some())?;
                let list = args.next_bytes()?;
                from = Some(if list.eq_ignore_ascii_case(b"CART") {
                    LineList::Cart
                } else if list.eq_ignore_ascii_case(b"SAVED") {
                    LineList::Saved
                } else if list.eq_ignore_ascii_case(b"UNAVAILABLE") {
                    LineList::Unavailable
                } else {
                    return Err(CommandError::syntax());
                });
            } else if !mutation.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartRemove {
            key,
            line,
            from: from.unwrap_or_default(),
            mutation,
        })
    }
}
