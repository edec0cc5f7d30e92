//! What a card's owner keeps for checkouts on other cluster nodes: a hold per checkout token
//! (asked for by `GIFTSYNC HOLD`), and for a while after each spend (`GIFTSYNC SPEND`) the
//! token and amount it spent, so a spend retried after a crash or a lost reply answers again
//! instead of taking the money twice. Both are part of the card's log image ([`PeerHolds`]):
//! the owner's restart keeps them, and its replicas have them.
//!
//! A hold taken here counts like any other against the balance; a spend takes at most what
//! its hold holds and drops the hold, so no token spends more than it held, and never twice.

use protocol::{CommandError, Currency, ErrorCode};
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
    ) -> Result<Option<PeerHeld>, CommandError> {
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let Some(card) = inner.cards.get_mut(code) else {
            return Ok(None);
        };
        card.unsealed(code)?;
        let held = |held: i64, card: &Card| PeerHeld {
            held,
            card: Availability {
                available: held,
                currency: card.currency,
                holds_full: false,
            },
        };
        if let Some(hold) = card.live_holds(now_ms).find(|hold| &*hold.token == token) {
            return Ok(Some(held(hold.amount, card)));
        }
        let availability = card.availability(now_ms);
        let amount = availability.available.min(amount_max);
        if card.currency != currency || availability.holds_full || amount <= 0 || until_ms <= now_ms
        {
            return Ok(Some(PeerHeld {
                held: 0,
                card: Availability {
                    available: 0,
                    ..availability
                },
            }));
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
        Ok(Some(answer))
    }

    /// `GIFTSYNC SPEND`: takes `amount` off `code` from the hold `token` has on it for another
    /// node's checkout, and drops that hold; the spend is remembered (until
    /// [`GIFT_CARD_PEER_SPENT_KEPT_MS`] after the hold would have run out), so the same
    /// token's spend again answers what it took without taking it twice. Fails, changing
    /// nothing, when the card is gone or the token holds less than `amount` (or nothing).
    /// The hold may be one this node took for a checkout of its own whose cart has moved to
    /// another node since. `log` sees the card after, under the lock.
    pub fn spend_for_peer(
        &self,
        code: &str,
        token: &str,
        amount: i64,
        now_ms: u64,
        log: impl FnOnce(&Spent),
    ) -> Result<Spent, CommandError> {
        let refused = |reason: String| CommandError::new(ErrorCode::GiftCard, reason);
        let mut inner = self.inner.write();
        inner.prune(code, now_ms);
        let card = inner
            .cards
            .get_mut(code)
            .ok_or_else(|| refused(format!("gift card {code} no longer exists")))?;
        card.unsealed(code)?;
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
            .position(|hold| &*hold.token == token && hold.until_ms > now_ms)
            .filter(|&at| card.holds[at].amount >= amount && card.balance >= amount)
            .ok_or_else(|| {
                refused(format!(
                    "gift card {code} no longer holds the {amount} this checkout pays with it"
                ))
            })?;
        assert!(amount > 0, "only cards that pay are spent");
        let mut hold = card.holds.swap_remove(position);
        card.balance -= amount;
        hold.amount = amount;
        hold.for_peer = true;
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

/// A card as it goes to the node taking its hash slot: every live hold (this node's own
/// checkouts' too, which that node then keeps for this one) and the spends it remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    /// The card.
    pub code: Box<str>,
    /// Its balance, minor units.
    pub balance: i64,
    /// Its currency.
    pub currency: Currency,
    /// Its holds and spends, all kept for other nodes at the node taking it.
    pub holds: PeerHolds,
}

impl GiftCards {
    /// Seals the cards `moving` picks (those of a hash slot another node is about to serve):
    /// none of them changes here any more (a change is refused with `-TRYAGAIN`, under the
    /// same lock every change takes), and each is returned whole. Sealing twice returns the
    /// same cards again.
    pub fn seal(&self, moving: impl Fn(&str) -> bool, now_ms: u64) -> Vec<HandedOver> {
        let mut inner = self.inner.write();
        let codes: Vec<Box<str>> = inner
            .cards
            .keys()
            .filter(|code| moving(code))
            .cloned()
            .collect();
        let mut handed = Vec::with_capacity(codes.len());
        for code in codes {
            inner.prune(&code, now_ms);
            let card = inner.cards.get_mut(&code).expect("listed above");
            card.sealed = true;
            let entry = |hold: &Hold| (hold.token.clone(), hold.amount, hold.until_ms);
            let holds = PeerHolds {
                holds: card.holds.iter().map(entry).collect(),
                spent: card.spent_for_peers.iter().map(entry).collect(),
            };
            handed.push(HandedOver {
                code,
                balance: card.balance,
                currency: card.currency,
                holds,
            });
        }
        handed
    }

    /// How many of the cards `picked` picks are not sealed.
    pub fn count_unsealed(&self, picked: impl Fn(&str) -> bool) -> usize {
        let inner = self.inner.read();
        let cards = inner.cards.iter();
        cards
            .filter(|(code, card)| !card.sealed && picked(code))
            .count()
    }

    /// Lets the sealed cards `moving` picks change here again (their slot stays here); `log`
    /// sees each, under the lock (logged again: see `slot_cards::unseal`).
    pub fn unseal(
        &self,
        moving: impl Fn(&str) -> bool,
        mut log: impl FnMut(&str, i64, Currency, &PeerHolds),
    ) -> usize {
        let mut inner = self.inner.write();
        let cards = inner.cards.iter_mut();
        let sealed = cards.filter(|(code, card)| card.sealed && moving(code));
        sealed
            .map(|(code, card)| {
                card.sealed = false;
                log(code, card.balance, card.currency, &card.peer_holds());
            })
            .count()
    }

    /// Drops the cards `moved` picks (another node decides them: the node that took their
    /// slot, which has them), only sealed ones if `sealed_only`; `log` sees each code, under
    /// the lock.
    pub fn drop_moved(
        &self,
        moved: impl Fn(&str) -> bool,
        sealed_only: bool,
        mut log: impl FnMut(&str),
    ) -> usize {
        let mut inner = self.inner.write();
        let codes: Vec<Box<str>> = inner
            .cards
            .iter()
            .filter(|(code, card)| (card.sealed || !sealed_only) && moved(code))
            .map(|(code, _)| code.clone())
            .collect();
        for code in &codes {
            if let Some(card) = inner.cards.remove(code) {
                for hold in &card.holds {
                    unlist(&mut inner.cards_by_token, &hold.token, code);
                }
            }
            log(code);
        }
        codes.len()
    }

    /// Puts a card handed over by the node that served its slot in place of whatever this
    /// node had of it: its balance, and every hold and spend as kept for other nodes (the
    /// checkouts of this node among them, whose completion this node's own pricing then
    /// takes like any other hold of its token).
    pub fn adopt(&self, card: &HandedOver) {
        self.unload(&card.code);
        self.load(&card.code, card.balance, card.currency, &card.holds);
    }

    /// A cart frozen for checkout under `token` has left this node: the holds its checkout
    /// keeps on this node's cards become holds kept for another node (logged with the card,
    /// since no frozen cart here rebuilds them after a restart), which that node's completion
    /// spends and its release drops. `log` sees each card changed, under the lock.
    pub fn hand_to_peer(&self, token: &str, mut log: impl FnMut(&str, i64, Currency, &PeerHolds)) {
        let mut inner = self.inner.write();
        let codes = inner.cards_by_token.get(token).cloned().unwrap_or_default();
        for code in codes {
            let Some(card) = inner.cards.get_mut(&code) else {
                continue;
            };
            let mut changed = false;
            for hold in card.holds.iter_mut().filter(|hold| &*hold.token == token) {
                changed |= !hold.for_peer;
                hold.for_peer = true;
            }
            if changed {
                log(&code, card.balance, card.currency, &card.peer_holds());
            }
        }
    }
}
