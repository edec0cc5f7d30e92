//! `CART.CLEAR key [mutation options]`

use bytes::Bytes;

use super::options::MutationOptions;
use crate::args::Args;
use crate::error::CommandError;

/// Removes every active line; saved lines stay. Missing cart: `NOCART`.
#[derive(Debug, PartialEq)]
pub struct CartClear {
    /// Cart key.
    pub key: Bytes,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartClear {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartClear, CommandError> {
        let key = args.next_key()?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartClear { key, mutation })
    }
}
