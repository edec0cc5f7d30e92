//! `CART.PROMO key ADD|REMOVE code [mutation options]` and
//! `CART.GIFTCARD key ADD|REMOVE code [mutation options]`: one shape, two kinds of code.
//! Whether a code exists, applies or has a balance is the server's to say.

use bytes::Bytes;

use super::options::MutationOptions;
use crate::args::Args;
use crate::error::CommandError;
use crate::CODE_BYTES_MAX;

/// Whether a code is applied to a cart or dropped from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAction {
    /// `ADD`: apply the code.
    Add,
    /// `REMOVE`: drop the code.
    Remove,
}

impl CodeAction {
    /// Parses `ADD` or `REMOVE`, in any case; any other word is a syntax error.
    pub fn parse(args: &mut Args) -> Result<CodeAction, CommandError> {
        let word = args.next_bytes()?;
        if word.eq_ignore_ascii_case(b"ADD") {
            Ok(CodeAction::Add)
        } else if word.eq_ignore_ascii_case(b"REMOVE") {
            Ok(CodeAction::Remove)
        } else {
            Err(CommandError::syntax())
        }
    }
}

/// Applies or drops a promotion code. Errors: `NOCART`, `PROMO` (unknown, expired or not
/// applicable), `FROZEN`, `VERSION`, `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartPromo {
    /// Cart key.
    pub key: Bytes,
    /// Apply or drop.
    pub action: CodeAction,
    /// Promotion code, 1..=64 bytes.
    pub code: Bytes,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartPromo {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartPromo, CommandError> {
        let key = args.next_key()?;
        let action = CodeAction::parse(args)?;
        let code = args.next_bounded("promo code", CODE_BYTES_MAX)?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartPromo {
            key,
            action,
            code,
            mutation,
        })
    }
}

/// Applies or drops a gift card; the amount applied is min(balance, remaining total).
/// Errors: `NOCART`, `GIFTCARD`, `FROZEN`, `VERSION`, `IDEMPOTENCY`.
#[derive(Debug, PartialEq)]
pub struct CartGiftCard {
    /// Cart key.
    pub key: Bytes,
    /// Apply or drop.
    pub action: CodeAction,
    /// Gift card code, 1..=64 bytes.
    pub code: Bytes,
    /// Mutation options.
    pub mutation: MutationOptions,
}

impl CartGiftCard {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartGiftCard, CommandError> {
        let key = args.next_key()?;
        let action = CodeAction::parse(args)?;
        let code = args.next_bounded("gift card code", CODE_BYTES_MAX)?;
        let mutation = MutationOptions::parse_rest(args)?;
        Ok(CartGiftCard {
            key,
            action,
            code,
            mutation,
        })
    }
}
