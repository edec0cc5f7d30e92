//! `CART.RESTORE key product variant [mutation options]`

use bytes::Bytes;

use super::options::{LineId, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// Moves a line back into the cart from saved-for-later or unavailable. Errors: `NOCART`,
/// `NOITEM`, `LIMIT`, `NOPRICE`.
#[derive(Debug, PartialEq)]
pub struct CartRestore {
    /// Cart key.
    pub key: Bytes,
    /// The line.
    pub line: LineId,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartRestore {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartRestore, CommandError> {
        let key = args.next_key()?;
        let line = args.next_line_id()?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartRestore {
            key,
            line,
            mutation,
        })
    }
}
