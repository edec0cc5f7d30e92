//! A cart's money as its view shows it: discounts per line and per source, promo code and
//! gift card states, totals. Computed by [`crate::pricing`] on every view of an active cart;
//! a cart in checkout keeps the one it was frozen with (encoded in its [`super::Checkout`]).

use serde::{Deserialize, Serialize};

use super::Cart;
use crate::pricing::engine::Pricing;

/// The priced state of a cart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CartPricing {
    /// Sum of the active lines' `qty * unit_price`.
    pub subtotal: i64,
    /// All discounts together.
    pub discount: i64,
    /// Taken from gift cards.
    pub gift_card: i64,
    /// What is left to pay.
    pub total: i64,
    /// Discount of each active line, in line order; empty when no line has one.
    pub line_discounts: Vec<i64>,
    /// Discount per source (`code:SAVE10`, `auto:bundle-tv`), amounts above zero only.
    pub discounts: Vec<(String, i64)>,
    /// Every promo code on the cart and whether it applies.
    pub codes: Vec<CodeState>,
    /// Every gift card on the cart and what it contributes.
    pub gift_cards: Vec<GiftCardState>,
}

/// A promo code on the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeState {
    /// The code.
    pub code: String,
    /// Whether it gives a discount now.
    pub applied: bool,
    /// How much.
    pub discount: i64,
    /// Why not, when it does not (a stable token: `expired`, `min_subtotal`, ...).
    pub reason: Option<String>,
}

/// A gift card on the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GiftCardState {
    /// The card's code.
    pub code: String,
    /// Minor units it pays of this cart.
    pub applied: i64,
    /// Why nothing, when it pays nothing for a reason (`unknown`, `currency`, ...).
    pub reason: Option<String>,
}

impl CartPricing {
    /// The pricing of a cart with no promotion and no gift card in play.
    pub fn plain(cart: &Cart) -> CartPricing {
        let subtotal = cart
            .lines
            .iter()
            .map(|line| i64::from(line.qty) * line.unit_price)
            .sum();
        CartPricing {
            subtotal,
            total: subtotal,
            ..CartPricing::default()
        }
    }

    /// The discount of active line `index`.
    pub fn line_discount(&self, index: usize) -> i64 {
        self.line_discounts.get(index).copied().unwrap_or(0)
    }

    /// The bytes a checkout keeps.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Reads what [`CartPricing::encode`] wrote; `None` for bytes it did not write.
    pub fn decode(bytes: &[u8]) -> Option<CartPricing> {
        postcard::from_bytes(bytes).ok()
    }
}

impl From<Pricing> for CartPricing {
    fn from(pricing: Pricing) -> CartPricing {
        let line_discounts = if pricing.line_discounts.iter().any(|&d| d != 0) {
            pricing.line_discounts
        } else {
            Vec::new()
        };
        CartPricing {
            subtotal: pricing.subtotal,
            discount: pricing.discount,
            gift_card: pricing.gift_card,
            total: pricing.total,
            line_discounts,
            discounts: pricing
                .discounts
                .into_iter()
                .map(|discount| (discount.source, discount.amount))
                .collect(),
            codes: pricing
                .codes
                .into_iter()
                .map(|code| CodeState {
                    code: code.code,
                    applied: code.applied,
                    discount: code.discount,
                    reason: code.reason.map(|reason| reason.as_str().to_string()),
                })
                .collect(),
            gift_cards: pricing
                .gift_cards
                .into_iter()
                .map(|card| GiftCardState {
                    code: card.code,
                    applied: card.applied,
                    reason: card.reason.map(|reason| reason.as_str().to_string()),
                })
                .collect(),
        }
    }
}
