//! Promotion and gift card commands: `PROMO.SET`, `PROMO.GET`, `PROMO.DEL`, `GIFTCARD.SET`,
//! `GIFTCARD.GET`, `GIFTCARD.DEL`. Like the catalog they are server-wide, so they name no key.
//! A promotion's JSON is passed through as bytes: the server owns its schema and checks it.

use bytes::Bytes;

use super::options::Currency;
use crate::args::Args;
use crate::error::CommandError;
use crate::CODE_BYTES_MAX;

/// What a promotion code is called in errors.
const PROMO_CODE: &str = "promo code";
/// What a gift card code is called in errors.
pub(super) const GIFT_CARD_CODE: &str = "gift card code";

/// `PROMO.SET code json`: defines or replaces a promotion.
#[derive(Debug, PartialEq)]
pub struct PromoSet {
    /// Promotion code, 1..=64 bytes.
    pub code: Bytes,
    /// The promotion document, unchecked here: the server parses and validates it.
    pub json: Bytes,
}

impl PromoSet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<PromoSet, CommandError> {
        let code = args.next_bounded(PROMO_CODE, CODE_BYTES_MAX)?;
        let json = args.next_bytes()?;
        Ok(PromoSet { code, json })
    }
}

/// `PROMO.GET code`: the promotion's document, or null.
#[derive(Debug, PartialEq)]
pub struct PromoGet {
    /// Promotion code.
    pub code: Bytes,
}

impl PromoGet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<PromoGet, CommandError> {
        Ok(PromoGet {
            code: args.next_bounded(PROMO_CODE, CODE_BYTES_MAX)?,
        })
    }
}

/// `PROMO.DEL code`: forgets a promotion; 1 if it was known, else 0.
#[derive(Debug, PartialEq)]
pub struct PromoDel {
    /// Promotion code.
    pub code: Bytes,
}

impl PromoDel {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<PromoDel, CommandError> {
        Ok(PromoDel {
            code: args.next_bounded(PROMO_CODE, CODE_BYTES_MAX)?,
        })
    }
}

/// `GIFTCARD.SET code balance_minor currency`: creates a gift card or replaces its balance.
#[derive(Debug, PartialEq)]
pub struct GiftCardSet {
    /// Gift card code, 1..=64 bytes.
    pub code: Bytes,
    /// Balance in minor units, 0..=`PRICE_MINOR_MAX`.
    pub balance: i64,
    /// Currency of the balance.
    pub currency: Currency,
}

impl GiftCardSet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<GiftCardSet, CommandError> {
        let code = args.next_bounded(GIFT_CARD_CODE, CODE_BYTES_MAX)?;
        let balance = args.next_minor_units("balance")?;
        let currency = args.next_currency()?;
        Ok(GiftCardSet {
            code,
            balance,
            currency,
        })
    }
}

/// `GIFTCARD.GET code`: the gift card's balance and currency, or null.
#[derive(Debug, PartialEq)]
pub struct GiftCardGet {
    /// Gift card code.
    pub code: Bytes,
}

impl GiftCardGet {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<GiftCardGet, CommandError> {
        Ok(GiftCardGet {
            code: args.next_bounded(GIFT_CARD_CODE, CODE_BYTES_MAX)?,
        })
    }
}

/// `GIFTCARD.DEL code`: forgets a gift card; 1 if it was known, else 0.
#[derive(Debug, PartialEq)]
pub struct GiftCardDel {
    /// Gift card code.
    pub code: Bytes,
}

impl GiftCardDel {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<GiftCardDel, CommandError> {
        Ok(GiftCardDel {
            code: args.next_bounded(GIFT_CARD_CODE, CODE_BYTES_MAX)?,
        })
    }
}
