//! `CART.SET key product variant qty [mutation options]`

use bytes::Bytes;

use super::options::{LineId, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// Sets one line's quantity; 0 removes it. Errors: `NOCART`, `NOITEM`, `LIMIT`, `VERSION`,
/// `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartSet {
    /// Cart key.
    pub key: Bytes,
    /// The line.
    pub line: LineId,
    /// New quantity, 0 to remove.
    pub qty: u32,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartSet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartSet, CommandError> {
        let key = args.next_key()?;
        let line = args.next_line_id()?;
        let qty = args.next_qty(0)?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartSet {
            key,
            line,
            qty,
            mutation,
        })
    }
}
