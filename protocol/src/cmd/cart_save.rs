//! `CART.SAVE key product variant [mutation options]`

use bytes::Bytes;

use super::options::{LineId, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// Moves a line from the cart to saved-for-later. Errors: `NOCART`, `NOITEM`, `LIMIT`.
#[derive(Debug, PartialEq)]
pub struct CartSave {
    /// Cart key.
    pub key: Bytes,
    /// The line.
    pub line: LineId,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartSave {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartSave, CommandError> {
        let key = args.next_key()?;
        let line = args.next_line_id()?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartSave {
            key,
            line,
            mutation,
        })
    }
}
