//! `CART.GET key [NOVALIDATE] [FORMAT RESP|JSON] [IFCHANGED version]`

use bytes::Bytes;

use super::options::{reject_repeat, Format};
use crate::args::Args;
use crate::error::CommandError;

/// The validated cart view; null for a missing cart. Renews the TTL.
#[derive(Debug, PartialEq)]
pub struct CartGet {
    /// Cart key.
    pub key: Bytes,
    /// Skip price and stock validation.
    pub novalidate: bool,
    /// Encoding of the view.
    pub format: Format,
    /// `IFCHANGED version`: a null reply while the cart is still at this version (and
    /// NOCART once it is gone, so the null is never ambiguous).
    pub if_changed: Option<u64>,
}

impl CartGet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartGet, CommandError> {
        let key = args.next_key()?;
        let mut novalidate = false;
        let mut format = None;
        let mut if_changed = None;
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"NOVALIDATE") {
                reject_repeat(novalidate)?;
                novalidate = true;
            } else if name.eq_ignore_ascii_case(b"IFCHANGED") {
                reject_repeat(if_changed.is_some())?;
                if_changed = Some(args.next_u64()?);
            } else if name.eq_ignore_ascii_case(b"FORMAT") {
                reject_repeat(format.is_some())?;
                format = Some(Format::parse(args)?);
            } else {
                return Err(CommandError::syntax());
            }
        }
        Ok(CartGet {
            key,
            novalidate,
            format: format.unwrap_or_default(),
            if_changed,
        })
    }
}
