//! What a card's owner keeps for checkouts on other cluster nodes: a hold per checkout token
//! (asked for by `GIFTSYNC HOLD`), and for a while after each spend (`GIFTSYNC SPEND`) the
//! token and amount it spent, so a spend retried after a crash or a lost reply answers again
//! instead of taking the money twice. Both are part of the card's log image ([`PeerHolds`]):
//! the owner's restart keeps them, and its replicas have them.
//!
//! A hold taken here counts like any other against the balance; a spend takes at most what
//! its hold holds and drops the hold, so no token spends more than it held, and never twice.

use protocol::Currency;
use serde::{Deserialize, Serialize};

use super::{unlist, Availability, Card, GiftCards, Hold, Inner, Spent};
use crate::limits::{GIFT_CARD_HOLDS_MAX, GIFT_CARD_PEER_SPENT_KEPT_MS};

/// The holds and spends a card keeps for other nodes' checkouts, as its log image carries
/// them: `(token, amount, until_ms)` each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHolds {
    /// Holds for checkouts in progress on other nodes.
    pub holds: Vec<(Box<str>, i64, u64)>,
    /// Tokens that spent here, with what they spent and until when their hold ran.
    pub spent: Vec<(Box<str>, i64, u64)>,
}

impl PeerHolds {
    /// Whether there is nothing to keep (a standalone card's image stays as it was).
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty() && self.spent.is_empty()
    }
}

/// What a `GIFTSYNC HOLD` got: the amount held for the token (0: none) and the card as the
/// asking node's pricing needs to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHeld {
    /// Minor units held for the token.
    pub held: i64,
    /// The card: `available` is what is held (what the checkout may take from it).
    pub card: Availability,
}

impl Card {
    /// The holds and spends kept for other nodes, for the card's image.
    pub(super) fn peer_holds(&self) -> PeerHolds {
        let entry = |hold: &Hold| (hold.token.clone(), hold.amount, hold.until_ms);
        PeerHolds {
            holds: self
                .holds
                .iter()
                .filter(|hold| hold.for_peer)
                .map(entry)
                .collect(),
            spent: self.spent_for_peers.iter().map(entry).collect(),
        }
    }
}

impl Inner {
    /// Replaces what `code` keeps for other nodes with what its image says.
    pub(super) fn load_peer_holds(&mut self, code: &str, image: &PeerHolds) {
        let Inner {
            cards,
            cards_by_token,
        } = self;
        let Some(card) = cards.get_mut(code) else {
            return;
        };
        card.holds.retain(|hold| {
            if hold.for_peer {
                unlist(cards_by_token, &hold.token, code);
            }
            !hold.for_peer
        });
        let hold = |(token, amount, until_ms): &(Box<str>, i64, u64)| Hold {
            token: token.clone(),
            amount: *amount,
            until_ms: *until_ms,
            for_peer: true,
        };
        for (token, ..) in &image.holds {
            cards_by_token
                .entry(token.clone())
                .or_default()
                .push(code.into());
        }
        card.holds.extend(image.holds.iter().map(hold));
        card.spent_for_peers = image.spent.iter().map(hold).collect();
    }
}

impl GiftCards {
    /// `GIFTSYNC HOLD`: holds up to `amount_max` of `code` for the checkout `token` of
    /// another node, until `until_ms`. Nothing is held on a card in another currency than
    /// `currency`, one with nothing available, or one carrying as many holds as it may; a
    /// token holding already gets its hold again (a retried request). `None`: no such card.
    /// `log` sees what the card keeps for other nodes once a hold is taken, under the lock.
    pub fn hold_for_peer(
        &self,
        code: &str,
        token: &str,
        (amount_max, currency): (i64, Currency),
        (until_ms, now_ms): (u64, u64),
        log: impl FnOnce(i64, Currency, &PeerHolds),
    ) -> Option<PeerHeld> {
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let card = inner.cards.get_mut(code)?;
        let held = |held: i64, card: &Card| PeerHeld {
            held,
            card: Availability {
                available: held,
                currency: card.currency,
                holds_full: false,
            },
        };
        if let Some(hold) = card.live_holds(now_ms).find(|hold| &*hold.token == token) {
            return Some(held(hold.amount, card));
        }
        let availability = card.availability(now_ms);
        let amount = availability.available.min(amount_max);
        if card.currency != currency || availability.holds_full || amount <= 0 || until_ms <= now_ms
        {
            return Some(PeerHeld {
                held: 0,
                card: Availability {
                    available: 0,
                    ..availability
                },
            });
        }
        card.holds.push(Hold {
            token: token.into(),
            amount,
            until_ms,
            for_peer: true,
        });
        log(card.balance, card.currency, &card.peer_holds());
        let answer = held(amount, card);
        inner
            .cards_by_token
            .entry(token.into())
            .or_default()
            .push(code.into());
        Some(answer)
    }

    /// `GIFTSYNC SPEND`: takes `amount` off `code` from the hold `token` has on it for another
    /// node's checkout, and drops that hold; the spend is remembered (until
    /// [`GIFT_CARD_PEER_SPENT_KEPT_MS`] after the hold would have run out), so the same
    /// token's spend again answers what it took without taking it twice. Fails, changing
    /// nothing, when the card is gone or the token holds less than `amount` (or nothing).
    /// `log` sees the card after, under the lock.
    pub fn spend_for_peer(
        &self,
        code: &str,
        token: &str,
        amount: i64,
        now_ms: u64,
        log: impl FnOnce(&Spent),
    ) -> Result<Spent, String> {
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let card = inner
            .cards
            .get_mut(code)
            .ok_or_else(|| format!("gift card {code} no longer exists"))?;
        let spent = |amount: i64, card: &Card| Spent {
            code: code.into(),
            amount,
            balance: card.balance,
            currency: card.currency,
            peer_holds: card.peer_holds(),
        };
        if let Some(done) = card
            .spent_for_peers
            .iter()
            .find(|done| &*done.token == token)
        {
            return Ok(spent(done.amount, card)); // A retry: spent once already.
        }
        let position = card
            .holds
            .iter()
            .position(|hold| hold.for_peer && &*hold.token == token && hold.until_ms > now_ms)
            .filter(|&at| card.holds[at].amount >= amount && card.balance >= amount)
            .ok_or_else(|| {
                format!("gift card {code} no longer holds the {amount} this checkout pays with it")
            })?;
        assert!(amount > 0, "only cards that pay are spent");
        let mut hold = card.holds.swap_remove(position);
        card.balance -= amount;
        hold.amount = amount;
        card.spent_for_peers
            .retain(|done| done.until_ms.saturating_add(GIFT_CARD_PEER_SPENT_KEPT_MS) > now_ms);
        if card.spent_for_peers.len() >= GIFT_CARD_HOLDS_MAX {
            // The oldest goes: its retry is refused (no hold left), never taken twice.
            card.spent_for_peers.remove(0);
        }
        card.spent_for_peers.push(hold);
        let done = spent(amount, card);
        log(&done);
        unlist(&mut inner.cards_by_token, token, code);
        Ok(done)
    }

    /// `GIFTSYNC RELEASE`: drops the hold `token` has on `code` for another node's checkout;
    /// whether there was one. `log` sees the card after, under the lock.
    pub fn release_for_peer(
        &self,
        code: &str,
        token: &str,
        log: impl FnOnce(i64, Currency, &PeerHolds),
    ) -> bool {
        let mut inner = self.inner.write();
        let Some(card) = inner.cards.get_mut(code) else {
            return false;
        };
        let before = card.holds.len();
        card.holds
            .retain(|hold| !(hold.for_peer && &*hold.token == token));
        if card.holds.len() == before {
            return false;
        }
        log(card.balance, card.currency, &card.peer_holds());
        unlist(&mut inner.cards_by_token, token, code);
        true
    }
}
