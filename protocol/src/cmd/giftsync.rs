//! `GIFTSYNC`: what a cluster node asks of the primary that decides a gift card (the one
//! serving its code's slot) for a checkout of its own: hold part of the card, spend it,
//! release it; and what the node importing a hash slot asks of its owner as the slot changes
//! hands: the slot's cards. Not for clients: each node sends it to its peers.

use bytes::Bytes;

use super::options::Currency;
use super::pricing::GIFT_CARD_CODE;
use crate::args::Args;
use crate::error::CommandError;
use crate::CODE_BYTES_MAX;

/// `GIFTSYNC HOLD|SPEND|RELEASE code token ...`, `GIFTSYNC HANDOVER slot node-id`.
#[derive(Debug, PartialEq)]
pub enum GiftSync {
    /// `GIFTSYNC HOLD code token until_ms amount_max currency`: hold up to `amount_max` of
    /// the card for the checkout `token` until `until_ms`, if it is in `currency`.
    Hold {
        /// The card.
        code: Bytes,
        /// The checkout's token.
        token: Bytes,
        /// When the hold runs out (Unix ms).
        until_ms: u64,
        /// The most to hold, minor units.
        amount_max: i64,
        /// The cart's currency.
        currency: Currency,
    },
    /// `GIFTSYNC SPEND code token amount`: take `amount` from the token's hold.
    Spend {
        /// The card.
        code: Bytes,
        /// The checkout's token.
        token: Bytes,
        /// Minor units to take, more than 0.
        amount: i64,
    },
    /// `GIFTSYNC RELEASE code token`: drop the token's hold.
    Release {
        /// The card.
        code: Bytes,
        /// The checkout's token.
        token: Bytes,
    },
    /// `GIFTSYNC HANDOVER slot node-id`: the cards of hash slot `slot`, which node `node-id`
    /// is about to serve, stop changing here and are sent to it whole.
    Handover {
        /// The hash slot.
        slot: u16,
        /// The node taking the slot.
        to: Bytes,
    },
}

impl GiftSync {
    /// Parses the arguments after `GIFTSYNC`.
    pub fn parse(args: &mut Args) -> Result<GiftSync, CommandError> {
        let sub = args.next_bytes()?;
        let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let counts = match lower.as_str() {
            "hold" => 5,
            "spend" => 3,
            "release" => 2,
            "handover" => 2,
            _ => {
                return Err(CommandError::err(format!(
                    "unknown subcommand '{lower}'. Try HOLD, SPEND, RELEASE, HANDOVER."
                )))
            }
        };
        if args.remaining() != counts {
            return Err(CommandError::arity(&format!("giftsync|{lower}")));
        }
        if lower == "handover" {
            let slot =
                super::server::parse_slot(&args.next_bytes()?, "Invalid or out of range slot")?;
            let to = args.next_bounded("node id", CODE_BYTES_MAX)?;
            args.finish()?;
            return Ok(GiftSync::Handover { slot, to });
        }
        let code = args.next_bounded(GIFT_CARD_CODE, CODE_BYTES_MAX)?;
        let token = args.next_bounded("checkout token", CODE_BYTES_MAX)?;
        let command = match lower.as_str() {
            "hold" => GiftSync::Hold {
                code,
                token,
                until_ms: args.next_u64()?,
                amount_max: args.next_minor_units("amount")?,
                currency: args.next_currency()?,
            },
            "spend" => GiftSync::Spend {
                code,
                token,
                amount: args.next_minor_units("amount")?,
            },
            _ => GiftSync::Release { code, token },
        };
        args.finish()?;
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<GiftSync, CommandError> {
        let items = words
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
        GiftSync::parse(&mut Args::new(items))
    }

    #[test]
    fn hold_spend_and_release_parse() {
        let hold = parse(&["hold", "G", "t", "5", "700", "USD"]).unwrap();
        assert!(matches!(
            hold,
            GiftSync::Hold {
                until_ms: 5,
                amount_max: 700,
                ..
            }
        ));
        assert!(matches!(
            parse(&["SPEND", "G", "t", "700"]),
            Ok(GiftSync::Spend { amount: 700, .. })
        ));
        assert!(matches!(
            parse(&["release", "G", "t"]),
            Ok(GiftSync::Release { .. })
        ));
        assert!(matches!(
            parse(&["HANDOVER", "16383", "n2"]),
            Ok(GiftSync::Handover { slot: 16383, .. })
        ));
        assert!(parse(&["handover", "16384", "n2"]).is_err());
        assert!(parse(&["handover", "1"]).is_err());
    }

    #[test]
    fn wrong_arguments_are_refused() {
        assert!(parse(&["hold", "G", "t", "5", "700"]).is_err());
        assert!(parse(&["spend", "G", "t", "-1"]).is_err());
        assert!(parse(&["release", "", "t"]).is_err());
        assert!(parse(&["nope", "G", "t"]).is_err());
    }
}
