//! `CART.ADD key product variant qty [PRICE price_minor CURRENCY currency] [mutation options]`

use bytes::Bytes;

use super::options::{reject_repeat, Currency, LineId, MutationOptions};
use crate::args::Args;
use crate::error::CommandError;

/// Adds `qty` to a line, creating cart and line as needed. The price is PRICE if given, else
/// the catalog's, else the existing line's; with none: `NOPRICE`. Errors: `LIMIT`, `VERSION`,
/// `IDEMPOTENCY`, `NOPRICE`.
#[derive(Debug, PartialEq)]
pub struct CartAdd {
    /// Cart key.
    pub key: Bytes,
    /// The line.
    pub line: LineId,
    /// Quantity to add, at least 1.
    pub qty: u32,
    /// `PRICE minor CURRENCY ccy`.
    pub price: Option<(i64, Currency)>,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartAdd {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartAdd, CommandError> {
        let key = args.next_key()?;
        let line = args.next_line_id()?;
        let qty = args.next_qty(1)?;
        let mut price = None;
        let mut mutation = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"PRICE") {
                reject_repeat(price.is_some())?;
                let minor = args.next_price()?;
                let label = args.next_bytes()?;
                if !label.eq_ignore_ascii_case(b"CURRENCY") {
                    return Err(CommandError::err("PRICE must be followed by CURRENCY code"));
                }
                price = Some((minor, args.next_currency()?));
            } else if !mutation.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartAdd {
            key,
            line,
            qty,
            price,
            mutation,
        })
    }
}
