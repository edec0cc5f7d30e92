//! The server-wide gift cards and the holds checkouts put on their balances, behind one lock.
//!
//! A checkout reserves what each card pays by a hold: the checkout's token, an amount, and when
//! it runs out. The available balance is the balance less the unexpired holds. The rules that
//! keep a card from paying more than it has:
//!
//! - [`GiftCards::reserve`] prices the cart and takes the holds under the same write lock, so
//!   what the frozen checkout shows each card paying is exactly what is held on it. A card that
//!   can reserve nothing more pays nothing (`no_balance`, or `holds_full` once it carries
//!   [`GIFT_CARD_HOLDS_MAX`] holds).
//! - [`GiftCards::complete`] spends exactly the holds the checkout shows, or fails and changes
//!   nothing.
//! - A balance is never lowered under what is held, a held card never changes currency and is
//!   never deleted (`set` and `remove` refuse): no completion can find its money gone.
//!
//! A hold past its time stops counting by itself and is dropped the next time its card is
//! reserved on or changed.
//!
//! In a cluster a card is decided by the primary serving its code's slot: the holds it keeps
//! for checkouts on other nodes, and what they spent, are in [`peers`] (and in the card's log
//! image, so they survive a restart; this node's own holds are rebuilt from its frozen carts).

use std::collections::HashMap;

use parking_lot::RwLock;
use protocol::{CommandError, Currency, ErrorCode};
use smallvec::SmallVec;

use super::engine::{GiftCardInput, Pricing};
use crate::limits::{CODE_BYTES_MAX, GIFT_CARDS_MAX, GIFT_CARD_HOLDS_MAX, PROMO_MONEY_MINOR_MAX};
pub use peers::{HandedOver, PeerHeld, PeerHolds};

mod peers;

/// A reservation of part of a gift card's balance for one checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The checkout token that holds it.
    pub token: Box<str>,
    /// Minor units reserved, more than 0.
    pub amount: i64,
    /// The hold stops counting at this time.
    pub until_ms: u64,
    /// Held here for a checkout on another cluster node (logged with the card), not for one
    /// of this node's frozen carts (rebuilt from the cart).
    pub for_peer: bool,
}

/// A gift card as `GIFTCARD.GET` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiftCardBalance {
    /// Balance, minor units.
    pub balance: i64,
    /// The card's currency.
    pub currency: Currency,
    /// Sum of the unexpired holds.
    pub held: i64,
    /// How many unexpired holds there are.
    pub holds: usize,
}

/// What a card can pay a cart now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// The balance less the unexpired holds, never below 0.
    pub available: i64,
    /// The card's currency.
    pub currency: Currency,
    /// The card carries as many holds as it may: a new checkout can reserve nothing on it.
    pub holds_full: bool,
}

/// What one completed checkout took from one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    /// The card.
    pub code: Box<str>,
    /// Minor units taken.
    pub amount: i64,
    /// The card's balance after.
    pub balance: i64,
    /// The card's currency.
    pub currency: Currency,
    /// The holds and spends the card keeps for other nodes' checkouts, logged with it.
    pub peer_holds: PeerHolds,
}

/// Every gift card, by code, with its holds.
#[derive(Debug, Default)]
pub struct GiftCards {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cards: HashMap<Box<str>, Card>,
    /// For each token, the cards it holds something on: release and complete touch only those.
    /// A card is listed under a token exactly while it keeps a hold of that token.
    cards_by_token: HashMap<Box<str>, SmallVec<[Box<str>; 2]>>,
}

#[derive(Debug)]
struct Card {
    balance: i64,
    currency: Currency,
    holds: Vec<Hold>,
    /// What other nodes' checkouts spent, by token, so a retried spend is not taken twice.
    spent_for_peers: Vec<Hold>,
    /// Handed to the node taking its hash slot ([`GiftCards::seal`]): it changes no more here.
    sealed: bool,
}

impl Card {
    fn live_holds(&self, now_ms: u64) -> impl Iterator<Item = &Hold> {
        self.holds.iter().filter(move |hold| hold.until_ms > now_ms)
    }

    fn held(&self, now_ms: u64) -> i64 {
        self.live_holds(now_ms).map(|hold| hold.amount).sum()
    }

    fn availability(&self, now_ms: u64) -> Availability {
        Availability {
            available: (self.balance - self.held(now_ms)).max(0),
            currency: self.currency,
            holds_full: self.live_holds(now_ms).count() >= GIFT_CARD_HOLDS_MAX,
        }
    }

    /// Refuses a change of a card handed to the node taking its slot.
    fn unsealed(&self, code: &str) -> Result<(), CommandError> {
        match self.sealed {
            false => Ok(()),
            true => Err(moving(code)),
        }
    }

    /// Why the card may not change now: it has holds in progress.
    fn busy(&self, code: &str, now_ms: u64) -> Option<String> {
        let held = self.held(now_ms);
        (held > 0).then(|| {
            format!(
                "gift card {code} has {held} held by {} checkouts in progress; they end with \
                 CART.COMPLETE, CART.RELEASE or when their hold runs out",
                self.live_holds(now_ms).count()
            )
        })
    }
}

impl Inner {
    /// Drops every hold of `token`, and its listing.
    fn release(&mut self, token: &str) {
        for code in self.cards_by_token.remove(token).unwrap_or_default() {
            if let Some(card) = self.cards.get_mut(&code) {
                card.holds.retain(|hold| &*hold.token != token);
            }
        }
    }

    /// Drops the holds of `code` that ran out, and their listing.
    fn prune(&mut self, code: &str, now_ms: u64) {
        let Inner {
            cards,
            cards_by_token,
        } = self;
        let Some(card) = cards.get_mut(code) else {
            return;
        };
        card.holds.retain(|hold| {
            let live = hold.until_ms > now_ms;
            if !live {
                unlist(cards_by_token, &hold.token, code);
            }
            live
        });
    }
}

impl GiftCards {
    /// An empty registry.
    pub fn new() -> GiftCards {
        GiftCards::default()
    }

    /// `GIFTCARD.SET`: sets the balance and currency of a card, creating it; its holds stay.
    /// Fails, changing nothing, on a code of the wrong length, a balance out of range, a
    /// balance below what checkouts hold (or another currency while they hold anything), or
    /// when the limit is reached. `log` runs once it is set, under the registry's lock, with
    /// what the card keeps for other nodes (part of its image).
    pub fn set(
        &self,
        code: &str,
        balance: i64,
        currency: Currency,
        now_ms: u64,
        log: impl FnOnce(&PeerHolds),
    ) -> Result<(), CommandError> {
        check_code_length(code).map_err(CommandError::limit)?;
        if !(0..=PROMO_MONEY_MINOR_MAX).contains(&balance) {
            return Err(CommandError::limit(format!(
                "a gift card balance must be 0..={PROMO_MONEY_MINOR_MAX} minor units, got {balance}"
            )));
        }
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        if let Some(card) = inner.cards.get_mut(code) {
            card.unsealed(code)?;
            let held = card.held(now_ms);
            if held > 0 && (balance < held || currency != card.currency) {
                let busy = card.busy(code, now_ms).expect("it holds something");
                return Err(CommandError::new(
                    ErrorCode::GiftCard,
                    format!(
                        "{busy}; until then its balance cannot go below {held} {} nor change \
                         currency",
                        card.currency
                    ),
                ));
            }
            card.balance = balance;
            card.currency = currency;
            log(&card.peer_holds());
            return Ok(());
        }
        if inner.cards.len() >= GIFT_CARDS_MAX {
            return Err(CommandError::limit(format!(
                "the server holds {GIFT_CARDS_MAX} gift cards already; delete unused ones first"
            )));
        }
        let card = Card {
            balance,
            currency,
            holds: Vec::new(),
            spent_for_peers: Vec::new(),
            sealed: false,
        };
        inner.cards.insert(code.into(), card);
        log(&PeerHolds::default());
        Ok(())
    }

    /// Puts the balance PostgreSQL has for a card in place (a promoted node's lag window: the
    /// old primary spent or set it after this node's last record), whatever this node holds
    /// of it: the spends behind it happened. What it keeps for other nodes stays, but for the
    /// spends PostgreSQL remembers (`spent`, token, amount, until): each is remembered here
    /// too and its token's hold dropped, so a spend the old primary answered and that is sent
    /// again is answered once more, not taken a second time.
    pub fn reload(
        &self,
        code: &str,
        (balance, currency): (i64, Currency),
        spent: &[(Box<str>, i64, u64)],
        log: impl FnOnce(&PeerHolds),
    ) {
        let mut inner = self.inner.write();
        let card = inner.cards.entry(code.into()).or_insert(Card {
            balance,
            currency,
            holds: Vec::new(),
            spent_for_peers: Vec::new(),
            sealed: false,
        });
        card.balance = balance;
        card.currency = currency;
        for (token, amount, until_ms) in spent {
            if card.spent_for_peers.iter().any(|done| done.token == *token) {
                continue;
            }
            card.holds.retain(|hold| hold.token != *token);
            card.spent_for_peers.push(Hold {
                token: token.clone(),
                amount: *amount,
                until_ms: *until_ms,
                for_peer: true,
            });
        }
        let peer_holds = card.peer_holds();
        for (token, ..) in spent {
            unlist(&mut inner.cards_by_token, token, code);
        }
        log(&peer_holds);
    }

    /// `GIFTCARD.GET` at `now_ms`.
    pub fn get(&self, code: &str, now_ms: u64) -> Option<GiftCardBalance> {
        let inner = self.inner.read();
        let card = inner.cards.get(code)?;
        Some(GiftCardBalance {
            balance: card.balance,
            currency: card.currency,
            held: card.held(now_ms),
            holds: card.live_holds(now_ms).count(),
        })
    }

    /// `GIFTCARD.DEL`: whether there was one. Refused while checkouts hold part of it. `log`
    /// runs once it is gone, under the registry's lock.
    pub fn remove(
        &self,
        code: &str,
        now_ms: u64,
        log: impl FnOnce(),
    ) -> Result<bool, CommandError> {
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let Some(card) = inner.cards.get(code) else {
            return Ok(false);
        };
        card.unsealed(code)?;
        if let Some(busy) = card.busy(code, now_ms) {
            let message = format!("{busy}; delete it after that");
            return Err(CommandError::new(ErrorCode::GiftCard, message));
        }
        inner.cards.remove(code);
        log();
        Ok(true)
    }

    /// Puts a card's balance from the log or a snapshot in place, with what it keeps for
    /// other nodes' checkouts as its image says; this node's own holds, if it has any, stay
    /// (they are rebuilt from the carts frozen for checkout).
    pub fn load(&self, code: &str, balance: i64, currency: Currency, peer_holds: &PeerHolds) {
        let mut inner = self.inner.write();
        let card = inner.cards.entry(code.into()).or_insert(Card {
            balance,
            currency,
            holds: Vec::new(),
            spent_for_peers: Vec::new(),
            sealed: false,
        });
        card.balance = balance;
        card.currency = currency;
        inner.load_peer_holds(code, peer_holds);
    }

    /// Forgets every card and hold (before another recovery attempt).
    pub fn clear(&self) {
        *self.inner.write() = Inner::default();
    }

    /// Drops a card the log says is gone.
    pub fn unload(&self, code: &str) {
        let mut inner = self.inner.write();
        if let Some(card) = inner.cards.remove(code) {
            for hold in &card.holds {
                unlist(&mut inner.cards_by_token, &hold.token, code);
            }
        }
    }

    /// Puts back a hold a checkout had, found in its frozen cart after a restart. It is taken
    /// whole only if the card still has it available; the error says what is missing.
    pub fn restore_hold(
        &self,
        code: &str,
        token: &str,
        amount: i64,
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), String> {
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let Inner {
            cards,
            cards_by_token,
        } = &mut *inner;
        let card = cards
            .get_mut(code)
            .ok_or_else(|| format!("gift card {code} is gone"))?;
        if card.live_holds(now_ms).any(|hold| &*hold.token == token) {
            // Held for this token already: the cart came here in checkout, its hold kept in
            // the card's image as it was at the node the cart came from.
            return Ok(());
        }
        let available = card.availability(now_ms).available;
        if amount > available {
            return Err(format!(
                "gift card {code} has {available} available, the checkout held {amount}"
            ));
        }
        card.holds.push(Hold {
            token: token.into(),
            amount,
            until_ms,
            for_peer: false,
        });
        cards_by_token
            .entry(token.into())
            .or_default()
            .push(code.into());
        Ok(())
    }

    /// Every card's code, balance, currency and what it keeps for other nodes, for a
    /// snapshot.
    pub fn balances(&self) -> Vec<(Box<str>, i64, Currency, PeerHolds)> {
        let inner = self.inner.read();
        let cards = inner.cards.iter();
        cards
            .map(|(code, card)| {
                let peer_holds = card.peer_holds();
                (code.clone(), card.balance, card.currency, peer_holds)
            })
            .collect()
    }

    /// What the card can pay now, or `None` for an unknown card.
    pub fn available(&self, code: &str, now_ms: u64) -> Option<Availability> {
        let inner = self.inner.read();
        Some(inner.cards.get(code)?.availability(now_ms))
    }

    /// Checkout: prices the cart with what each of its `codes` can pay (`price` gets the
    /// engine's gift card input) and holds what the pricing takes from each card under `token`
    /// until `until_ms`, in one step under the write lock: the pricing returned is exactly
    /// what is held. The cards in `held_elsewhere` are decided by other cluster nodes, which
    /// hold what each entry says for this token already: they pay at most that, held there.
    pub fn reserve(
        &self,
        token: &str,
        codes: &[Box<str>],
        (until_ms, now_ms): (u64, u64),
        held_elsewhere: &[(Box<str>, Option<Availability>)],
        price: impl FnOnce(&[GiftCardInput]) -> Pricing,
    ) -> Result<Pricing, CommandError> {
        assert!(until_ms > now_ms, "a hold ends in the future");
        let elsewhere = |code: &str| held_elsewhere.iter().find(|(held, _)| &**held == code);
        let mut inner = self.inner.write();
        for code in codes {
            inner.prune(code, now_ms);
            if let Some(card) = inner.cards.get(&**code) {
                card.unsealed(code)?;
            }
        }
        let availability: SmallVec<[Option<Availability>; 4]> = codes
            .iter()
            .map(|code| match elsewhere(code) {
                Some((_, held)) => *held,
                None => Some(inner.cards.get(&**code)?.availability(now_ms)),
            })
            .collect();
        let inputs: SmallVec<[GiftCardInput; 4]> = codes
            .iter()
            .zip(&availability)
            .map(|(code, card)| GiftCardInput::from_availability(code, *card))
            .collect();
        let pricing = price(&inputs);
        let Inner {
            cards,
            cards_by_token,
        } = &mut *inner;
        for used in pricing.gift_cards.iter().filter(|used| used.applied > 0) {
            if let Some((_, held)) = elsewhere(used.code.as_str()) {
                let held = held.map_or(0, |held| held.available);
                assert!(
                    used.applied <= held,
                    "a card decided elsewhere pays what it holds"
                );
                continue;
            }
            let card = cards
                .get_mut(used.code.as_str())
                .expect("the engine pays only from known cards");
            let availability = card.availability(now_ms);
            assert!(
                used.applied <= availability.available && !availability.holds_full,
                "the engine pays at most what a card can reserve"
            );
            card.holds.push(Hold {
                token: token.into(),
                amount: used.applied,
                until_ms,
                for_peer: false,
            });
            cards_by_token
                .entry(token.into())
                .or_default()
                .push(used.code.as_str().into());
        }
        Ok(pricing)
    }

    /// Drops every hold of `token` (the checkout was abandoned, or its cart is gone).
    pub fn release(&self, token: &str) {
        self.inner.write().release(token);
    }

    /// `CART.COMPLETE`: takes exactly `paid` (card, amount) off the cards, each from the
    /// unexpired hold `token` has on it for that very amount, and drops the token's holds. If
    /// any card lacks that hold (or its balance), nothing is taken and the error says which.
    /// `log` sees what was taken while the registry is still locked.
    pub fn complete(
        &self,
        token: &str,
        paid: &[(&str, i64)],
        now_ms: u64,
        log: impl FnOnce(&[Spent]),
    ) -> Result<Vec<Spent>, CommandError> {
        let refused = |reason: String| CommandError::new(ErrorCode::GiftCard, reason);
        let mut inner = self.inner.write();
        for &(code, amount) in paid {
            assert!(amount > 0, "only cards that pay are completed");
            let card = inner.cards.get(code).ok_or_else(|| {
                refused(format!(
                    "gift card {code} no longer exists; CART.RELEASE and check out again"
                ))
            })?;
            card.unsealed(code)?;
            let hold = card
                .live_holds(now_ms)
                .find(|hold| &*hold.token == token)
                .map(|hold| hold.amount);
            if hold != Some(amount) || card.balance < amount {
                return Err(refused(format!(
                    "gift card {code} no longer holds the {amount} this checkout pays with it; \
                     CART.RELEASE and check out again"
                )));
            }
        }
        let mut spent = Vec::with_capacity(paid.len());
        for &(code, amount) in paid {
            let card = inner.cards.get_mut(code).expect("checked above");
            card.balance -= amount;
            spent.push(Spent {
                code: code.into(),
                amount,
                balance: card.balance,
                currency: card.currency,
                peer_holds: PeerHolds::default(),
            });
        }
        inner.release(token);
        for spent in &mut spent {
            let card = inner.cards.get(&*spent.code).expect("checked above");
            spent.peer_holds = card.peer_holds();
        }
        log(&spent);
        Ok(spent)
    }

    /// How many gift cards there are.
    pub fn len(&self) -> usize {
        self.inner.read().cards.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> GiftCardInput<'a> {
    /// The engine's input for card `code` as the registry sees it (`None`: no such card).
    pub fn from_availability(code: &'a str, card: Option<Availability>) -> GiftCardInput<'a> {
        GiftCardInput {
            code,
            card: card.map(|card| (card.available, card.currency)),
            holds_full: card.is_some_and(|card| card.holds_full),
        }
    }
}

/// The refusal of a change of a card that is moving with its hash slot to another node.
fn moving(code: &str) -> CommandError {
    CommandError::new(
        ErrorCode::TryAgain,
        format!("gift card {code} is moving with its hash slot to another cluster node; try again"),
    )
}

/// Takes `code` off the cards listed under `token`, and the token when it lists none.
fn unlist(
    cards_by_token: &mut HashMap<Box<str>, SmallVec<[Box<str>; 2]>>,
    token: &str,
    code: &str,
) {
    if let Some(codes) = cards_by_token.get_mut(token) {
        if let Some(position) = codes.iter().position(|listed| &**listed == code) {
            codes.swap_remove(position);
        }
        if codes.is_empty() {
            cards_by_token.remove(token);
        }
    }
}

fn check_code_length(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > CODE_BYTES_MAX {
        return Err(format!(
            "a gift card code must be 1..={CODE_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
