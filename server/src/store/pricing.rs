//! The store's side of pricing: a cart's lines, codes and gift cards turned into the engine's
//! input (names resolved, promotions and balances looked up), and its result into the view's
//! [`CartPricing`]. The engine's inputs are borrowed views built on the stack (a view of a
//! small cart allocates only the engine's result).

use std::sync::Arc;

use protocol::CommandError;
use smallvec::SmallVec;

use super::Store;
use crate::cart::priced::CartPricing;
use crate::cart::Cart;
use crate::pricing::engine::{self, GiftCardInput, PriceInput, PricedLine, Reason};
use crate::pricing::promo::Promotion;
use crate::pricing::registry::AutomaticPromotions;
use crate::pricing::Availability;

impl Store {
    /// Prices `cart` with its own promo codes at `now_ms`.
    pub fn price(&self, cart: &Cart, now_ms: u64) -> CartPricing {
        self.price_with_codes(cart, cart.promo_codes(), now_ms)
    }

    /// Prices `cart` as if it held `codes` (MERGE compares the two carts' codes this way).
    pub fn price_with_codes(&self, cart: &Cart, codes: &[Box<str>], now_ms: u64) -> CartPricing {
        let automatic = self.promotions.automatic();
        if codes.is_empty() && cart.gift_cards().is_empty() && automatic.is_empty() {
            return CartPricing::plain(cart);
        }
        let availability: SmallVec<[_; 4]> = cart
            .gift_cards()
            .iter()
            .map(|code| self.gift_cards.available(code, now_ms))
            .collect();
        let gift_cards: SmallVec<[GiftCardInput; 4]> = cart
            .gift_cards()
            .iter()
            .zip(availability)
            .map(|(code, card)| GiftCardInput::from_availability(code, card))
            .collect();
        self.with_input(cart, codes, &automatic, &gift_cards, now_ms, |input| {
            engine::price(input).into()
        })
    }

    /// Prices `cart` with its own codes for checkout and reserves what each gift card pays
    /// under `token` until `hold_until_ms`, in one step: the pricing is exactly what is held.
    /// The cards in `held_elsewhere` pay at most what their owners hold for `token` already.
    pub fn price_and_hold(
        &self,
        cart: &Cart,
        token: &str,
        (hold_until_ms, now_ms): (u64, u64),
        held_elsewhere: &[(Box<str>, Option<Availability>)],
    ) -> Result<CartPricing, CommandError> {
        if cart.gift_cards().is_empty() {
            return Ok(self.price(cart, now_ms));
        }
        let automatic = self.promotions.automatic();
        let codes = cart.promo_codes();
        let pricing = self.gift_cards.reserve(
            token,
            cart.gift_cards(),
            (hold_until_ms, now_ms),
            held_elsewhere,
            |gift_cards| {
                self.with_input(cart, codes, &automatic, gift_cards, now_ms, engine::price)
            },
        )?;
        Ok(pricing.into())
    }

    /// Whether promo code `code` may be added to `cart` now; the reason when not.
    pub fn check_promo(&self, cart: &Cart, code: &str, now_ms: u64) -> Result<(), Reason> {
        let promo = self.promotions.get(code);
        let automatic = self.promotions.automatic();
        self.with_input(cart, cart.promo_codes(), &automatic, &[], now_ms, |input| {
            engine::check_code(input, code, promo.as_deref())
        })
    }

    /// Runs `run` on the engine's input for `cart` holding `codes`: names resolved, each code's
    /// promotion looked up (`None` once deleted).
    pub(super) fn with_input<R>(
        &self,
        cart: &Cart,
        codes: &[Box<str>],
        automatic: &AutomaticPromotions,
        gift_cards: &[GiftCardInput],
        now_ms: u64,
        run: impl FnOnce(&PriceInput) -> R,
    ) -> R {
        let names = self.names.read();
        let lines: SmallVec<[PricedLine; 8]> = cart
            .lines
            .iter()
            .map(|line| PricedLine {
                product: names.resolve(line.key.product),
                variant: names.resolve(line.key.variant),
                qty: line.qty,
                unit_price: line.unit_price,
            })
            .collect();
        let promotions: SmallVec<[Option<Arc<Promotion>>; 4]> =
            codes.iter().map(|code| self.promotions.get(code)).collect();
        let code_refs: SmallVec<[(&str, Option<&Promotion>); 4]> = codes
            .iter()
            .zip(&promotions)
            .map(|(code, promo)| (&**code, promo.as_deref()))
            .collect();
        let automatic: SmallVec<[(&str, &Promotion); 4]> = automatic
            .iter()
            .map(|(code, promo)| (&**code, &**promo))
            .collect();
        run(&PriceInput {
            currency: cart.currency,
            now_ms,
            lines: &lines,
            codes: &code_refs,
            automatic: &automatic,
            gift_cards,
        })
    }
}
