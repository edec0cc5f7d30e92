//! Gift cards in a cluster, the store's side. A card is decided by the primary serving its
//! code's slot (its owner); `crate::peers::gift_cards` carries the calls between nodes.
//!
//! - At the owner: the holds and spends other nodes ask for (`GIFTSYNC`), each logged as the
//!   card's new image under the registry lock, so they survive its restart.
//! - At a cart's node: what a checkout asks each owner to hold ([`Store::hold_asks`]) and
//!   what its completion asks each to spend ([`Store::spends_elsewhere`]), read before the
//!   command runs; the command then freezes or completes the cart with what the owners
//!   answered (`store/checkout.rs`). A checkout that ends otherwise (released, expired, its
//!   cart deleted) asks the owners to release, without waiting: a hold not released runs out
//!   at the checkout's own hold time anyway.
//!
//! Standalone nothing is decided elsewhere and none of this runs.

use persistence::Space;
use protocol::Currency;
use smallvec::SmallVec;

use super::reference::{decode_gift_card, gift_card_image, reference_change};
use super::stamps::Stamp;
use super::Store;
use crate::cart::priced::CartPricing;
use crate::catalog::apply_plan;
use crate::limits::PROMO_MONEY_MINOR_MAX;
use crate::pricing::engine::{self, GiftCardInput};
use crate::pricing::{Availability, HandedOver, PeerHeld, PeerHolds, Spent};
use protocol::CommandError;

/// Who decides which card, and how to tell an owner that a hold is no longer needed: the
/// peer links, in a cluster.
pub trait CardOwners: Send + Sync {
    /// Whether another node decides card `code`.
    fn elsewhere(&self, code: &str) -> bool;
    /// Asks the owner of `code` to drop the hold of checkout `token`, without waiting.
    fn release(&self, token: &str, code: &str);
}

/// What the owners of a checkout's cards decided elsewhere hold for it, asked before the
/// checkout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldElsewhere {
    /// The checkout's token, chosen before asking.
    pub token: Box<str>,
    /// When the checkout's hold (and theirs) runs out.
    pub hold_until_ms: u64,
    /// Each card decided elsewhere, as its owner answered (`None`: no such card).
    pub cards: Vec<(Box<str>, Option<Availability>)>,
}

/// What a checkout about to run would ask the owners of its cards to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldAsks {
    /// The cart's currency.
    pub currency: Currency,
    /// Each card decided elsewhere and what it would pay, if it had that much.
    pub asks: Vec<(Box<str>, i64)>,
}

impl Store {
    /// Registers who decides which card (once, at a cluster node's start).
    pub fn set_card_owners(&self, owners: Box<dyn CardOwners>) {
        if self.card_owners.set(owners).is_err() {
            tracing::warn!("the store's card owners were set twice; the first stay");
        }
    }

    /// Whether another node decides card `code` (never standalone).
    pub fn decided_elsewhere(&self, code: &str) -> bool {
        self.card_owners
            .get()
            .is_some_and(|owners| owners.elsewhere(code))
    }

    /// Asks the owners of the cards decided elsewhere that `pricing` pays with, or that
    /// `also` names, to drop the holds of checkout `token`.
    pub(super) fn release_elsewhere(&self, token: &str, pricing: &[u8], also: &[Box<str>]) {
        let Some(owners) = self.card_owners.get() else {
            return;
        };
        let pricing = CartPricing::decode(pricing).unwrap_or_default();
        let paying = pricing.gift_cards.iter().filter(|card| card.applied > 0);
        let codes = paying.map(|card| card.code.as_str());
        let mut asked: SmallVec<[&str; 4]> = SmallVec::new();
        for code in codes.chain(also.iter().map(|code| &**code)) {
            if owners.elsewhere(code) && !asked.contains(&code) {
                owners.release(token, code);
                asked.push(code);
            }
        }
    }

    /// The gift cards decided elsewhere that a `CART.CHECKOUT` of `key` would pay with, and
    /// how much each would pay were it not short: the cart re-priced as the checkout will
    /// price it, this node's cards at what they have. `None` when the checkout would ask no
    /// other node (no such cards, no cart, or the cart is frozen: a retry replies the same).
    pub fn hold_asks(&self, key: &[u8], now_ms: u64) -> Option<HoldAsks> {
        let at = self.locate(key);
        let mut cart = self.shards[at.shard].lock().find(at.hash, key)?;
        if cart.expires_at_ms <= now_ms || cart.frozen(now_ms).is_some() {
            return None;
        }
        if !cart
            .gift_cards()
            .iter()
            .any(|code| self.decided_elsewhere(code))
        {
            return None;
        }
        let plan = self.catalog.plan_for(&cart);
        apply_plan(&mut cart, &plan);
        let availability: SmallVec<[Option<Availability>; 4]> = cart
            .gift_cards()
            .iter()
            .map(|code| match self.decided_elsewhere(code) {
                true => Some(Availability {
                    available: PROMO_MONEY_MINOR_MAX,
                    currency: cart.currency,
                    holds_full: false,
                }),
                false => self.gift_cards.available(code, now_ms),
            })
            .collect();
        let inputs: SmallVec<[GiftCardInput; 4]> = cart
            .gift_cards()
            .iter()
            .zip(availability)
            .map(|(code, card)| GiftCardInput::from_availability(code, card))
            .collect();
        let automatic = self.promotions.automatic();
        let codes = cart.promo_codes();
        let pricing = self.with_input(&cart, codes, &automatic, &inputs, now_ms, engine::price);
        let asks = pricing
            .gift_cards
            .iter()
            .filter(|card| self.decided_elsewhere(&card.code))
            .map(|card| (card.code.as_str().into(), card.applied))
            .collect();
        Some(HoldAsks {
            currency: cart.currency,
            asks,
        })
    }

    /// The spends a `CART.COMPLETE key token` asks other nodes for: each card decided
    /// elsewhere its frozen checkout pays with, and how much. `None` unless the cart is in
    /// checkout under `token` with its hold running and pays with such a card (otherwise the
    /// completion answers by itself: a retry, a wrong token, a hold run out).
    pub fn spends_elsewhere(
        &self,
        key: &[u8],
        token: &[u8],
        now_ms: u64,
    ) -> Option<Vec<(Box<str>, i64)>> {
        let at = self.locate(key);
        let cart = self.shards[at.shard].lock().find(at.hash, key)?;
        let checkout = cart.frozen(now_ms)?;
        if checkout.token.as_bytes() != token || cart.expires_at_ms <= now_ms {
            return None;
        }
        let pricing = CartPricing::decode(&checkout.pricing).unwrap_or_default();
        let spends: Vec<(Box<str>, i64)> = pricing
            .gift_cards
            .iter()
            .filter(|card| card.applied > 0 && self.decided_elsewhere(&card.code))
            .map(|card| (card.code.as_str().into(), card.applied))
            .collect();
        (!spends.is_empty()).then_some(spends)
    }

    /// `GIFTSYNC HOLD` at the card's owner, logged.
    pub fn gift_card_hold_for_peer(
        &self,
        code: &str,
        token: &str,
        ask: (i64, Currency),
        (until_ms, now_ms): (u64, u64),
    ) -> Result<Option<PeerHeld>, CommandError> {
        self.gift_cards.hold_for_peer(
            code,
            token,
            ask,
            (until_ms, now_ms),
            |balance, currency, holds| {
                self.log_peer_holds(code, balance, currency, holds, now_ms);
            },
        )
    }

    /// `GIFTSYNC SPEND` at the card's owner, logged.
    pub fn gift_card_spend_for_peer(
        &self,
        code: &str,
        token: &str,
        amount: i64,
        now_ms: u64,
    ) -> Result<Spent, CommandError> {
        self.gift_cards
            .spend_for_peer(code, token, amount, now_ms, |spent| {
                let holds = &spent.peer_holds;
                self.log_peer_holds(code, spent.balance, spent.currency, holds, now_ms);
            })
    }

    /// `GIFTSYNC RELEASE` at the card's owner, logged: whether the token held anything.
    pub fn gift_card_release_for_peer(&self, code: &str, token: &str, now_ms: u64) -> bool {
        self.gift_cards
            .release_for_peer(code, token, |balance, currency, holds| {
                self.log_peer_holds(code, balance, currency, holds, now_ms);
            })
    }

    /// `GIFTSYNC HANDOVER` at the node serving a slot: the cards `moving` picks are sealed
    /// (they change no more here) and returned whole, each with its log image.
    pub fn gift_cards_seal(
        &self,
        moving: impl Fn(&str) -> bool,
        now_ms: u64,
    ) -> Vec<(HandedOver, Vec<u8>)> {
        let sealed = self.gift_cards.seal(moving, now_ms);
        let image = |card: &HandedOver| gift_card_image(card.balance, card.currency, &card.holds);
        sealed
            .into_iter()
            .map(|card| {
                let image = image(&card);
                (card, image)
            })
            .collect()
    }

    /// Lets the sealed cards `picked` picks change here again (a move stopped before it was
    /// recorded), each logged again as it is. How many.
    pub fn gift_cards_unseal(&self, picked: impl Fn(&str) -> bool, now_ms: u64) -> usize {
        self.gift_cards
            .unseal(picked, |code, balance, currency, holds| {
                self.log_peer_holds(code, balance, currency, holds, now_ms);
            })
    }

    /// At the node taking a slot: a card its old owner handed over (`image`, the card's log
    /// image), put in place of anything this node had of it and logged, before this node
    /// decides it.
    pub fn gift_card_adopt(&self, code: &str, image: &[u8], now_ms: u64) -> Result<(), String> {
        let (card, holds) = decode_gift_card(image)
            .map_err(|error| format!("gift card {code}: an undecodable image: {error}"))?;
        let card = HandedOver {
            code: code.into(),
            balance: card.balance,
            currency: Currency(card.currency),
            holds,
        };
        self.gift_cards.adopt(&card);
        self.log_peer_holds(code, card.balance, card.currency, &card.holds, now_ms);
        Ok(())
    }

    /// Drops the cards `moved` picks (only sealed ones if `sealed_only`), whose slot another
    /// node serves now with them: each logged gone as moved (PostgreSQL's row is the new
    /// owner's to write). How many.
    pub fn gift_cards_drop_moved(
        &self,
        moved: impl Fn(&str) -> bool,
        sealed_only: bool,
        now_ms: u64,
    ) -> usize {
        let stamp = Stamp {
            at_ms: now_ms,
            origin: 0,
        };
        self.gift_cards.drop_moved(moved, sealed_only, |code| {
            let mut change = reference_change(Space::GiftCard, code.as_bytes(), None, stamp);
            change.state = persistence::StateRef::Tombstone(persistence::TombstoneReason::Moved);
            self.append(&[change]);
        })
    }

    /// A cart frozen for checkout under `token` left this node (MIGRATE): the holds it keeps
    /// on this node's cards are kept for another node from now on, logged.
    pub(super) fn hand_holds_to_peer(&self, token: &str, now_ms: u64) {
        self.gift_cards
            .hand_to_peer(token, |code, balance, currency, holds| {
                self.log_peer_holds(code, balance, currency, holds, now_ms);
            });
    }

    fn log_peer_holds(
        &self,
        code: &str,
        balance: i64,
        currency: Currency,
        peer_holds: &PeerHolds,
        now_ms: u64,
    ) {
        let image = gift_card_image(balance, currency, peer_holds);
        let stamp = Stamp {
            at_ms: now_ms,
            origin: 0,
        };
        self.log_reference(Space::GiftCard, code.as_bytes(), Some(&image), stamp);
    }
}
