//! The checkout handoff in the store (`CART.CHECKOUT`, `CART.COMPLETE`, `CART.RELEASE`).
//!
//! CHECKOUT re-prices the cart from the catalog (the caller has refreshed it from the upstream
//! services first, if any), refuses a cart that cannot be bought, reserves what each gift card
//! pays, and freezes the cart with a token and the pricing it was frozen at. COMPLETE deletes
//! the cart and logs a `checkout` event; RELEASE (or the hold running out) makes it active
//! again. All three may be retried: a frozen cart's CHECKOUT replies the same frozen view, a
//! completed token's COMPLETE replies `+OK` again (the token is remembered in the cart's shard
//! for the idempotency window, and logged with the checkout, so also after a restart), and
//! RELEASE of an active cart replies the cart.
//!
//! COMPLETE is one log record: the cart's tombstone with its token, and the new balance of
//! each gift card it paid with, so no restart can keep one without the other.
//!
//! In a cluster, a card another node decides is held and spent there, asked before the
//! command runs (`store/gift_cards.rs`): CHECKOUT gets what each such owner holds for the
//! token chosen before asking, COMPLETE what each spent (an owner spends a token once, so a
//! COMPLETE retried after a crash here takes nothing twice).

use persistence::{Event, EventKind, GuardKind, GuardRef, Space, TombstoneReason};
use protocol::{CommandError, ErrorCode, MutationOptions, Reply};
use serde_json::json;
use smallvec::SmallVec;

use super::gift_cards::HeldElsewhere;
use super::log::{CartChange, CartState};
use super::reference::{reference_change, spent_image};
use super::stamps::Stamp;
use super::tokens::Remembered;
use super::{check_version, event, seconds, Outcome, Store};
use crate::cart::priced::CartPricing;
use crate::cart::view::Validation;
use crate::cart::{Cart, Checkout};
use crate::catalog::apply_plan;
use crate::pricing::Spent;

/// A fresh checkout token: 128 random bits in hex.
pub fn new_token() -> Box<str> {
    format!("{:032x}", rand::random::<u128>()).into()
}

fn wrong_token() -> CommandError {
    CommandError::new(
        ErrorCode::Token,
        "the token is not this cart's checkout token",
    )
}

impl Store {
    /// `CART.CHECKOUT`: freezes the cart for `hold_ms`, or until what `held_elsewhere` says
    /// with its token (the holds asked of other nodes before). What those nodes hold and the
    /// checkout does not pay with is given back to them.
    pub fn checkout(
        &self,
        key: &[u8],
        options: &MutationOptions,
        (hold_ms, now_ms): (u64, u64),
        held_elsewhere: Option<&HeldElsewhere>,
    ) -> Result<Reply, CommandError> {
        let event = event(EventKind::Update, json!({ "reason": "checkout" }));
        let mut frozen = None;
        let reply = self.mutate_with(key, options, now_ms, event, Validation::Fresh, |cart| {
            let cart = cart.ok_or_else(super::no_cart)?;
            if cart.frozen(now_ms).is_some() {
                return Ok(Outcome::Unchanged); // A retry: the same frozen view.
            }
            cart.end_checkout();
            let plan = self.catalog.plan_for(cart);
            apply_plan(cart, &plan);
            check_buyable(cart, &self.names)?;
            let elsewhere = held_elsewhere.map_or(&[][..], |held| &held.cards[..]);
            let unasked = cart.gift_cards().iter().find(|code| {
                self.decided_elsewhere(code) && !elsewhere.iter().any(|(held, _)| held == *code)
            });
            if let Some(code) = unasked {
                return Err(CommandError::new(
                    ErrorCode::TryAgain,
                    format!("gift card {code} is decided by another node, which was not asked to hold it (added meanwhile, or inside MULTI); try again"),
                ));
            }
            let (token, hold_until_ms) = match held_elsewhere {
                Some(held) => (held.token.clone(), held.hold_until_ms),
                None => (new_token(), now_ms + hold_ms),
            };
            let pricing = self.price_and_hold(cart, &token, (hold_until_ms, now_ms), elsewhere)?;
            let pricing: Box<[u8]> = pricing.encode().into();
            if held_elsewhere.is_some() {
                frozen = Some(pricing.clone());
            }
            cart.begin_checkout(Checkout {
                token,
                hold_until_ms,
                pricing,
            });
            Ok(Outcome::Changed)
        });
        if let Some(held) = held_elsewhere {
            self.release_unused_elsewhere(held, frozen.as_deref());
        }
        reply
    }

    /// Releases at their owners the holds of `held` that the checkout does not pay with: all
    /// of them when it froze nothing (`frozen`: the pricing it froze the cart with).
    fn release_unused_elsewhere(&self, held: &HeldElsewhere, frozen: Option<&[u8]>) {
        let paying = frozen.and_then(CartPricing::decode).unwrap_or_default();
        let pays = |code: &str| {
            let mut cards = paying.gift_cards.iter();
            cards.any(|card| card.applied > 0 && card.code.as_str() == code)
        };
        let unused: Vec<Box<str>> = held
            .cards
            .iter()
            .filter(|(code, _)| !pays(code))
            .map(|(code, _)| code.clone())
            .collect();
        self.release_elsewhere(&held.token, &[], &unused);
    }

    /// `CART.COMPLETE`: deletes the frozen cart and logs the `checkout` event. The cards
    /// other nodes decide were spent there before, as `spent_elsewhere` says.
    pub fn complete(
        &self,
        key: &[u8],
        (token, order_id): (&[u8], Option<&[u8]>),
        options: &MutationOptions,
        now_ms: u64,
        spent_elsewhere: &[Spent],
    ) -> Result<Reply, CommandError> {
        let token = std::str::from_utf8(token).map_err(|_| wrong_token())?;
        let at = self.locate(key);
        let mut shard = self.shards[at.shard].lock();
        let cart = self.live(&mut shard, at, key, now_ms);
        let order = order_fingerprint(order_id);
        // A retry of a completed checkout replies +OK again, unless it names another ORDER id
        // than the completion did (0: the completion named none, or it is no longer known).
        let retried = |shard: &super::shard::Shard, otherwise: CommandError| match shard
            .tokens
            .completed_order(at.hash, token.as_bytes(), seconds(now_ms))
        {
            Some(done) if done == 0 || done == order => Ok(Reply::ok()),
            Some(_) => Err(CommandError::new(
                ErrorCode::Idempotency,
                "the checkout was completed with another ORDER id",
            )),
            None => Err(otherwise),
        };
        let Some(cart) = cart else {
            return retried(&shard, super::no_cart());
        };
        let Some(checkout) = cart.checkout().filter(|checkout| &*checkout.token == token) else {
            return retried(&shard, wrong_token());
        };
        if checkout.hold_until_ms <= now_ms {
            return Err(CommandError::new(
                ErrorCode::Token,
                format!(
                    "the checkout hold ran out at {} (unix ms); check the cart out again",
                    checkout.hold_until_ms
                ),
            ));
        }
        check_version(options, Some(&cart))?;
        let pricing = CartPricing::decode(&checkout.pricing).unwrap_or_default();
        // Exactly what the frozen view shows each card paying is taken, or nothing is.
        let paid = self.paid_here(&pricing, spent_elsewhere)?;
        let log = |spent: &[Spent]| {
            // The event names every card's spend, the record logs the cards decided here.
            let event = if spent_elsewhere.is_empty() {
                checkout_event(token, order_id, &cart, &pricing, spent)
            } else {
                let all: Vec<Spent> = spent.iter().chain(spent_elsewhere).cloned().collect();
                checkout_event(token, order_id, &cart, &pricing, &all)
            };
            self.log_completed(key, &cart, (token, order), &event, spent, now_ms);
        };
        if paid.is_empty() {
            log(&[]);
        } else {
            self.gift_cards.complete(token, &paid, now_ms, log)?;
        }
        shard.remove(at.hash, key);
        let remembered = Remembered {
            key_hash: at.hash,
            kind: GuardKind::Checkout,
            token: token.as_bytes().into(),
            fingerprint: order,
            version: cart.version,
            expires_s: seconds(now_ms + self.config.idempotency_ttl_ms),
        };
        shard.tokens.remember(&remembered, seconds(now_ms));
        Ok(Reply::ok())
    }

    /// What a completion takes from the cards this node decides: (card, amount) for each
    /// card the frozen `pricing` pays with. Every card decided elsewhere must have been spent
    /// there for exactly what it pays (`spent_elsewhere`), else nothing is taken.
    fn paid_here<'p>(
        &self,
        pricing: &'p CartPricing,
        spent_elsewhere: &[Spent],
    ) -> Result<Vec<(&'p str, i64)>, CommandError> {
        let paying = pricing.gift_cards.iter().filter(|card| card.applied > 0);
        let mut paid = Vec::new();
        for card in paying {
            let code = card.code.as_str();
            if !self.decided_elsewhere(code) {
                paid.push((code, card.applied));
                continue;
            }
            let spent = spent_elsewhere
                .iter()
                .any(|spent| &*spent.code == code && spent.amount == card.applied);
            if !spent {
                return Err(CommandError::new(
                    ErrorCode::TryAgain,
                    format!("gift card {code} is decided by another node, which was not asked to spend it (inside MULTI?); try again"),
                ));
            }
        }
        Ok(paid)
    }

    /// Logs a completed checkout as one record: the cart gone with its token, and each gift
    /// card it paid with at its new balance.
    fn log_completed(
        &self,
        key: &[u8],
        cart: &Cart,
        (token, order): (&str, u64),
        event: &Event,
        spent: &[Spent],
        now_ms: u64,
    ) {
        if self.wal().is_none() {
            return;
        }
        let images: SmallVec<[_; 4]> = spent.iter().map(spent_image).collect();
        let cards: SmallVec<[_; 4]> = images
            .iter()
            .map(|(code, image)| {
                let stamp = Stamp {
                    at_ms: now_ms,
                    origin: 0,
                };
                reference_change(Space::GiftCard, code, Some(image), stamp)
            })
            .collect();
        let gone = CartChange {
            key,
            version: cart.version,
            state: CartState::Gone(TombstoneReason::CheckedOut),
            event: Some(event),
            guard: Some(GuardRef {
                kind: GuardKind::Checkout,
                token: token.as_bytes(),
                fingerprint: order,
            }),
        };
        self.append_carts(&[gone], &cards, now_ms);
    }

    /// `CART.RELEASE`: ends the checkout, returning the gift card reservations.
    pub fn release(
        &self,
        key: &[u8],
        token: &[u8],
        options: &MutationOptions,
        now_ms: u64,
    ) -> Result<Reply, CommandError> {
        let event = event(EventKind::Update, json!({ "reason": "release" }));
        self.mutate_with(key, options, now_ms, event, Validation::Skipped, |cart| {
            let cart = cart.ok_or_else(super::no_cart)?;
            let Some(checkout) = cart.checkout() else {
                return Ok(Outcome::Unchanged); // Released already.
            };
            if checkout.token.as_bytes() != token {
                return Err(wrong_token());
            }
            self.gift_cards.release(&checkout.token);
            self.release_elsewhere(&checkout.token, &checkout.pricing, &[]);
            cart.end_checkout();
            Ok(Outcome::Changed)
        })
    }
}

/// The `checkout` event of a completed checkout: the token, the order, the totals, what each
/// discount took and what was taken from each gift card (so the gift card system can settle).
fn checkout_event(
    token: &str,
    order_id: Option<&[u8]>,
    cart: &Cart,
    pricing: &CartPricing,
    spent: &[Spent],
) -> Event {
    let gift_cards: Vec<_> = spent
        .iter()
        .map(|card| json!({ "code": card.code, "amount": card.amount }))
        .collect();
    let discounts: Vec<_> = pricing
        .discounts
        .iter()
        .map(|(source, amount)| json!({ "source": source, "amount": amount }))
        .collect();
    event(
        EventKind::Checkout,
        json!({
            "token": token,
            "order_id": order_id.map(String::from_utf8_lossy),
            "currency": cart.currency.as_str(),
            "discounts": discounts,
            "gift_cards": gift_cards,
            "subtotal": pricing.subtotal,
            "discount": pricing.discount,
            "gift_card": pricing.gift_card,
            "total": pricing.total,
        }),
    )
}

/// Refuses a cart with nothing to buy, or with lines that cannot be bought.
fn check_buyable(cart: &Cart, names: &crate::cart::Names) -> Result<(), CommandError> {
    if cart.lines.is_empty() {
        return Err(CommandError::err("cart has no lines to check out"));
    }
    let unavailable = cart.unavailable();
    if !unavailable.is_empty() {
        let names = names.read();
        let lines: Vec<String> = unavailable
            .iter()
            .map(|line| {
                let why = if line.foreign_price {
                    "priced in another currency"
                } else {
                    "out of stock"
                };
                format!(
                    "{}/{} ({why})",
                    names.resolve(line.key.product),
                    names.resolve(line.key.variant)
                )
            })
            .collect();
        return Err(CommandError::err(format!(
            "cart has unavailable lines: {}; remove them (CART.REMOVE ... FROM UNAVAILABLE) or restore them before checkout",
            lines.join(", ")
        )));
    }
    Ok(())
}

/// The fingerprint of a completion's ORDER id, remembered with its token: 0 for none, never 0
/// for one.
fn order_fingerprint(order_id: Option<&[u8]>) -> u64 {
    use std::hash::{Hash, Hasher};
    order_id.map_or(0, |order_id| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        order_id.hash(&mut hasher);
        hasher.finish() | 1
    })
}
