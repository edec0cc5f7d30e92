//! The server-wide promotions and gift cards, each behind one lock. Pricing reads them
//! (`Promotions::get`, `Promotions::automatic`, `GiftCards::available`) and hands what it read to
//! the engine, which holds no lock.
//!
//! A gift card's balance is reserved for a checkout by holds: a hold names the checkout's token,
//! an amount and when it runs out. Available balance is the balance less the unexpired holds;
//! completing the checkout consumes its holds, abandoning it releases them, and a hold past its
//! time simply stops counting (it is dropped the next time its card changes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use protocol::Currency;
use smallvec::SmallVec;

use super::promo::Promotion;
use crate::limits::{
    CODE_BYTES_MAX, GIFT_CARDS_MAX, GIFT_CARD_HOLDS_MAX, PROMOTIONS_AUTOMATIC_MAX, PROMOTIONS_MAX,
    PROMO_MONEY_MINOR_MAX,
};

/// The automatic promotions with their codes, sorted by code.
pub type AutomaticPromotions = Arc<[(Arc<str>, Arc<Promotion>)]>;

/// Every promotion, by code.
#[derive(Debug, Default)]
pub struct Promotions {
    inner: RwLock<PromotionsInner>,
}

#[derive(Debug)]
struct PromotionsInner {
    by_code: HashMap<Box<str>, Arc<Promotion>>,
    /// The automatic ones again, sorted, and the list handed to pricing, rebuilt when they
    /// change (rarely, and at most `PROMOTIONS_AUTOMATIC_MAX` of them).
    automatic_by_code: BTreeMap<Arc<str>, Arc<Promotion>>,
    automatic: AutomaticPromotions,
}

impl Default for PromotionsInner {
    fn default() -> PromotionsInner {
        PromotionsInner {
            by_code: HashMap::new(),
            automatic_by_code: BTreeMap::new(),
            automatic: Arc::new([]),
        }
    }
}

impl Promotions {
    /// An empty registry.
    pub fn new() -> Promotions {
        Promotions::default()
    }

    /// `PROMO.SET`: defines or replaces the promotion under `code`. Fails, changing nothing, on
    /// a code of the wrong length or when a limit is reached.
    pub fn set(&self, code: &str, promo: Promotion) -> Result<(), String> {
        check_code_length(code, "promotion")?;
        let mut inner = self.inner.write();
        let replaces = inner.by_code.get(code).map(|old| old.automatic());
        if replaces.is_none() && inner.by_code.len() >= PROMOTIONS_MAX {
            return Err(format!(
                "the server holds {PROMOTIONS_MAX} promotions already; delete unused ones first"
            ));
        }
        if promo.automatic()
            && replaces != Some(true)
            && inner.automatic_by_code.len() >= PROMOTIONS_AUTOMATIC_MAX
        {
            return Err(format!(
                "{PROMOTIONS_AUTOMATIC_MAX} automatic promotions are defined already (each is \
                 checked on every cart view); delete one or make this one a code"
            ));
        }
        let promo = Arc::new(promo);
        inner.by_code.insert(code.into(), Arc::clone(&promo));
        if replaces == Some(true) || promo.automatic() {
            inner.automatic_by_code.remove(code);
            if promo.automatic() {
                inner.automatic_by_code.insert(code.into(), promo);
            }
            inner.rebuild_automatic();
        }
        Ok(())
    }

    /// `PROMO.GET`.
    pub fn get(&self, code: &str) -> Option<Arc<Promotion>> {
        self.inner.read().by_code.get(code).cloned()
    }

    /// `PROMO.DEL`: whether there was one.
    pub fn remove(&self, code: &str) -> bool {
        let mut inner = self.inner.write();
        let Some(old) = inner.by_code.remove(code) else {
            return false;
        };
        if old.automatic() {
            inner.automatic_by_code.remove(code);
            inner.rebuild_automatic();
        }
        true
    }

    /// The automatic promotions, sorted by code: one shared list, cheap to take per cart view.
    pub fn automatic(&self) -> AutomaticPromotions {
        Arc::clone(&self.inner.read().automatic)
    }

    /// How many promotions there are.
    pub fn len(&self) -> usize {
        self.inner.read().by_code.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PromotionsInner {
    fn rebuild_automatic(&mut self) {
        self.automatic = self
            .automatic_by_code
            .iter()
            .map(|(code, promo)| (Arc::clone(code), Arc::clone(promo)))
            .collect();
        debug_assert!(self.automatic.iter().all(|(_, promo)| promo.automatic()));
    }
}

/// A reservation of part of a gift card's balance for one checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The checkout token that holds it.
    pub token: Box<str>,
    /// Minor units reserved, more than 0.
    pub amount: i64,
    /// The hold stops counting at this time.
    pub until_ms: u64,
}

/// A gift card as `GIFTCARD.GET` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiftCardState {
    /// Balance, minor units.
    pub balance: i64,
    /// The card's currency.
    pub currency: Currency,
    /// Sum of the unexpired holds.
    pub held: i64,
}

/// Every gift card, by code, with its holds.
#[derive(Debug, Default)]
pub struct GiftCards {
    inner: RwLock<GiftCardsInner>,
}

#[derive(Debug, Default)]
struct GiftCardsInner {
    cards: HashMap<Box<str>, Card>,
    /// For each token, the cards it holds something on: release and consume touch only those.
    /// A card is listed under a token exactly while it keeps a hold of that token.
    cards_by_token: HashMap<Box<str>, SmallVec<[Box<str>; 2]>>,
}

#[derive(Debug)]
struct Card {
    balance: i64,
    currency: Currency,
    holds: Vec<Hold>,
}

impl Card {
    fn held(&self, now_ms: u64) -> i64 {
        self.holds
            .iter()
            .filter(|hold| hold.until_ms > now_ms)
            .map(|hold| hold.amount)
            .sum()
    }

    fn available(&self, now_ms: u64) -> i64 {
        (self.balance - self.held(now_ms)).max(0)
    }
}

impl GiftCards {
    /// An empty registry.
    pub fn new() -> GiftCards {
        GiftCards::default()
    }

    /// `GIFTCARD.SET`: sets the balance and currency of a card, creating it; its holds stay.
    /// Fails, changing nothing, on a code of the wrong length, a balance out of range or when
    /// the limit is reached.
    pub fn set(&self, code: &str, balance: i64, currency: Currency) -> Result<(), String> {
        check_code_length(code, "gift card")?;
        if !(0..=PROMO_MONEY_MINOR_MAX).contains(&balance) {
            return Err(format!(
                "a gift card balance must be 0..={PROMO_MONEY_MINOR_MAX} minor units, got {balance}"
            ));
        }
        let mut inner = self.inner.write();
        if let Some(card) = inner.cards.get_mut(code) {
            card.balance = balance;
            card.currency = currency;
            return Ok(());
        }
        if inner.cards.len() >= GIFT_CARDS_MAX {
            return Err(format!(
                "the server holds {GIFT_CARDS_MAX} gift cards already; delete unused ones first"
            ));
        }
        let card = Card {
            balance,
            currency,
            holds: Vec::new(),
        };
        inner.cards.insert(code.into(), card);
        Ok(())
    }

    /// `GIFTCARD.GET` at `now_ms`.
    pub fn get(&self, code: &str, now_ms: u64) -> Option<GiftCardState> {
        let inner = self.inner.read();
        let card = inner.cards.get(code)?;
        Some(GiftCardState {
            balance: card.balance,
            currency: card.currency,
            held: card.held(now_ms),
        })
    }

    /// `GIFTCARD.DEL`: whether there was one. Its holds go with it.
    pub fn remove(&self, code: &str) -> bool {
        let mut inner = self.inner.write();
        let GiftCardsInner {
            cards,
            cards_by_token,
        } = &mut *inner;
        let Some(card) = cards.remove(code) else {
            return false;
        };
        for hold in &card.holds {
            unlist(cards_by_token, &hold.token, code);
        }
        true
    }

    /// The balance less unexpired holds (never below 0), and the currency.
    pub fn available(&self, code: &str, now_ms: u64) -> Option<(i64, Currency)> {
        let inner = self.inner.read();
        let card = inner.cards.get(code)?;
        Some((card.available(now_ms), card.currency))
    }

    /// Reserves `min(amount, available)` of the card under `token` until `until_ms`, replacing
    /// the token's earlier hold on this card, and returns the amount held (0 for an unknown
    /// card, nothing available, a time already past, or `GIFT_CARD_HOLDS_MAX` holds on the card).
    pub fn hold(&self, code: &str, token: &str, amount: i64, until_ms: u64, now_ms: u64) -> i64 {
        let mut inner = self.inner.write();
        let GiftCardsInner {
            cards,
            cards_by_token,
        } = &mut *inner;
        let Some(card) = cards.get_mut(code) else {
            return 0;
        };
        // Expired holds and the token's earlier hold go first, so they reserve nothing.
        card.holds.retain(|hold| {
            let keep = hold.until_ms > now_ms && &*hold.token != token;
            if !keep {
                unlist(cards_by_token, &hold.token, code);
            }
            keep
        });
        let held = amount.min(card.available(now_ms));
        if held <= 0 || until_ms <= now_ms || card.holds.len() >= GIFT_CARD_HOLDS_MAX {
            return 0;
        }
        card.holds.push(Hold {
            token: token.into(),
            amount: held,
            until_ms,
        });
        cards_by_token
            .entry(token.into())
            .or_default()
            .push(code.into());
        held
    }

    /// Drops every hold of `token` (the checkout was abandoned).
    pub fn release(&self, token: &str) {
        let mut inner = self.inner.write();
        let GiftCardsInner {
            cards,
            cards_by_token,
        } = &mut *inner;
        for code in cards_by_token.remove(token).unwrap_or_default() {
            if let Some(card) = cards.get_mut(&code) {
                card.holds.retain(|hold| &*hold.token != token);
            }
        }
    }

    /// Takes every unexpired hold of `token` off its card's balance (the checkout completed)
    /// and drops the token's holds; returns the sum taken. A balance lowered by `set` below its
    /// holds gives what it has, never going below 0. An expired hold takes nothing.
    pub fn consume(&self, token: &str, now_ms: u64) -> i64 {
        let mut inner = self.inner.write();
        let GiftCardsInner {
            cards,
            cards_by_token,
        } = &mut *inner;
        let mut taken = 0;
        for code in cards_by_token.remove(token).unwrap_or_default() {
            let Some(card) = cards.get_mut(&code) else {
                continue;
            };
            let mut balance = card.balance;
            card.holds.retain(|hold| {
                if &*hold.token != token {
                    return true;
                }
                if hold.until_ms > now_ms {
                    let take = hold.amount.min(balance);
                    balance -= take;
                    taken += take;
                }
                false
            });
            card.balance = balance;
        }
        taken
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

fn check_code_length(code: &str, what: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > CODE_BYTES_MAX {
        return Err(format!("a {what} code must be 1..={CODE_BYTES_MAX} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const USD: Currency = Currency(*b"USD");
    const EUR: Currency = Currency(*b"EUR");

    fn promo(automatic: bool) -> Promotion {
        let document = json!({"kind": "percent", "percent": 10, "automatic": automatic});
        Promotion::from_json(document.to_string().as_bytes()).expect("valid")
    }

    fn automatic_codes(promotions: &Promotions) -> Vec<String> {
        promotions
            .automatic()
            .iter()
            .map(|(code, _)| code.to_string())
            .collect()
    }

    #[test]
    fn promotions_keep_the_automatic_list_sorted_and_current() {
        let promotions = Promotions::new();
        promotions.set("zeta", promo(true)).unwrap();
        promotions.set("SAVE10", promo(false)).unwrap();
        promotions.set("alpha", promo(true)).unwrap();
        assert_eq!(automatic_codes(&promotions), ["alpha", "zeta"]);
        assert_eq!(promotions.len(), 3);
        promotions.set("zeta", promo(false)).unwrap();
        assert_eq!(automatic_codes(&promotions), ["alpha"]);
        promotions.set("SAVE10", promo(true)).unwrap();
        assert_eq!(automatic_codes(&promotions), ["SAVE10", "alpha"]);
        assert!(promotions.remove("alpha"));
        assert!(!promotions.remove("alpha"));
        assert_eq!(automatic_codes(&promotions), ["SAVE10"]);
        assert!(promotions
            .get("zeta")
            .is_some_and(|promo| !promo.automatic()));
        assert!(promotions.get("alpha").is_none());
        assert!(promotions.set("", promo(false)).is_err());
        assert!(promotions.set(&"x".repeat(65), promo(false)).is_err());
    }

    #[test]
    fn automatic_promotions_are_bounded() {
        let promotions = Promotions::new();
        for index in 0..PROMOTIONS_AUTOMATIC_MAX {
            promotions
                .set(&format!("auto{index}"), promo(true))
                .unwrap();
        }
        let refused = promotions.set("one-more", promo(true));
        assert!(refused.is_err_and(|error| error.contains("automatic")));
        promotions.set("auto0", promo(true)).unwrap(); // a replacement is no new one
        promotions.set("a-code", promo(false)).unwrap();
        assert_eq!(promotions.automatic().len(), PROMOTIONS_AUTOMATIC_MAX);
    }

    #[test]
    fn gift_card_set_get_remove() {
        let cards = GiftCards::new();
        cards.set("G", 5000, USD).unwrap();
        let state = GiftCardState {
            balance: 5000,
            currency: USD,
            held: 0,
        };
        assert_eq!(cards.get("G", 0), Some(state));
        assert!(cards.set("G", -1, USD).is_err());
        assert!(cards.set("G", PROMO_MONEY_MINOR_MAX + 1, USD).is_err());
        assert_eq!(cards.available("G", 0), Some((5000, USD)));
        assert_eq!(cards.available("nope", 0), None);
        assert_eq!(cards.len(), 1);
        assert!(cards.remove("G"));
        assert!(!cards.remove("G"));
        assert!(cards.is_empty());
    }

    /// Holds reserve at most what is available, stop counting when they run out, and a token's
    /// second hold on a card replaces its first.
    #[test]
    fn holds_reserve_and_expire() {
        let cards = GiftCards::new();
        cards.set("G", 5000, USD).unwrap();
        assert_eq!(cards.hold("G", "t1", 3000, 100, 0), 3000);
        assert_eq!(cards.hold("G", "t2", 3000, 200, 0), 2000);
        assert_eq!(cards.available("G", 0), Some((0, USD)));
        assert_eq!(cards.hold("G", "t3", 1, 200, 0), 0);
        assert_eq!(cards.hold("G", "t1", 1000, 100, 10), 1000); // replaces t1's 3000
        assert_eq!(cards.available("G", 10), Some((2000, USD)));
        assert_eq!(cards.available("G", 100), Some((3000, USD))); // t1 ran out
        assert_eq!(cards.available("G", 200), Some((5000, USD))); // t2 too
        assert_eq!(cards.get("G", 150).map(|state| state.held), Some(2000));
        assert_eq!(cards.hold("G", "t4", 10, 50, 50), 0); // already past
        assert_eq!(cards.hold("nope", "t4", 10, 500, 0), 0);
        // set lowers the balance below the holds: available stays at 0.
        cards.set("G", 500, EUR).unwrap();
        assert_eq!(cards.available("G", 10), Some((0, EUR)));
    }

    #[test]
    fn release_and_consume() {
        let cards = GiftCards::new();
        cards.set("A", 5000, USD).unwrap();
        cards.set("B", 1000, USD).unwrap();
        assert_eq!(cards.hold("A", "checkout", 2000, 100, 0), 2000);
        assert_eq!(cards.hold("B", "checkout", 2000, 100, 0), 1000);
        assert_eq!(cards.hold("A", "other", 500, 100, 0), 500);
        cards.release("checkout");
        assert_eq!(cards.available("A", 0), Some((4500, USD)));
        assert_eq!(cards.available("B", 0), Some((1000, USD)));
        assert_eq!(cards.hold("A", "checkout", 2000, 100, 0), 2000);
        assert_eq!(cards.hold("B", "checkout", 700, 100, 0), 700);
        assert_eq!(cards.consume("checkout", 50), 2700);
        assert_eq!(
            cards.get("A", 50).map(|s| (s.balance, s.held)),
            Some((3000, 500))
        );
        assert_eq!(
            cards.get("B", 50).map(|s| (s.balance, s.held)),
            Some((300, 0))
        );
        assert_eq!(cards.consume("checkout", 50), 0, "consumed once");
        // An expired hold takes nothing.
        assert_eq!(cards.consume("other", 100), 0);
        assert_eq!(cards.get("A", 100).map(|s| s.balance), Some(3000));
        // A balance set below a hold gives what it has, never below 0.
        assert_eq!(cards.hold("B", "late", 300, 200, 100), 300);
        cards.set("B", 100, USD).unwrap();
        assert_eq!(cards.consume("late", 150), 100);
        assert_eq!(cards.get("B", 150).map(|s| s.balance), Some(0));
        let inner = cards.inner.read();
        assert!(
            inner.cards_by_token.is_empty(),
            "every hold is gone, so is its listing"
        );
    }

    /// Removing a card takes its holds, and their listing, with it.
    #[test]
    fn remove_drops_the_holds() {
        let cards = GiftCards::new();
        cards.set("A", 5000, USD).unwrap();
        cards.hold("A", "t", 100, 100, 0);
        assert!(cards.remove("A"));
        assert!(cards.inner.read().cards_by_token.is_empty());
        cards.set("A", 5000, USD).unwrap();
        assert_eq!(cards.consume("t", 0), 0);
        assert_eq!(cards.available("A", 0), Some((5000, USD)));
    }

    #[test]
    fn holds_per_card_are_bounded() {
        let cards = GiftCards::new();
        cards.set("A", 1_000_000, USD).unwrap();
        for index in 0..GIFT_CARD_HOLDS_MAX {
            assert_eq!(cards.hold("A", &format!("t{index}"), 1, 100, 0), 1);
        }
        assert_eq!(cards.hold("A", "one-more", 1, 100, 0), 0);
        // Once they run out there is room again.
        assert_eq!(cards.hold("A", "one-more", 1, 200, 100), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(usize, i64),
        Hold(usize, usize, i64, u64),
        Release(usize),
        Consume(usize),
        Remove(usize),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..2, 0i64..10_000).prop_map(|(card, balance)| Op::Set(card, balance)),
            (0usize..2, 0usize..3, -10i64..8000, 0u64..100)
                .prop_map(|(card, token, amount, ms)| Op::Hold(card, token, amount, ms)),
            (0usize..3).prop_map(Op::Release),
            (0usize..3).prop_map(Op::Consume),
            (0usize..2).prop_map(Op::Remove),
            (0u64..60).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever happens, balances and available amounts stay at 0 or more, a hold never
        /// reserves more than was available, and every hold is listed under its token and
        /// nothing else is.
        #[test]
        fn gift_cards_stay_consistent(ops in prop::collection::vec(op(), 1..60)) {
            const CODES: [&str; 2] = ["A", "B"];
            const TOKENS: [&str; 3] = ["t0", "t1", "t2"];
            let cards = GiftCards::new();
            let mut now_ms = 0;
            for op in ops {
                match op {
                    Op::Set(card, balance) => cards.set(CODES[card], balance, USD).unwrap(),
                    Op::Hold(card, token, amount, duration_ms) => {
                        let before = cards.available(CODES[card], now_ms).map_or(0, |(a, _)| a);
                        let own: i64 = cards.inner.read().cards.get(CODES[card]).map_or(0, |card| {
                            card.holds.iter()
                                .filter(|h| &*h.token == TOKENS[token] && h.until_ms > now_ms)
                                .map(|h| h.amount).sum()
                        });
                        let held = cards.hold(CODES[card], TOKENS[token], amount, now_ms + duration_ms, now_ms);
                        prop_assert!((0..=amount.max(0)).contains(&held));
                        // The token's earlier hold on the card is replaced: its amount is free again.
                        prop_assert!(held <= before + own);
                    }
                    Op::Release(token) => cards.release(TOKENS[token]),
                    Op::Consume(token) => prop_assert!(cards.consume(TOKENS[token], now_ms) >= 0),
                    Op::Remove(card) => { cards.remove(CODES[card]); }
                    Op::Wait(ms) => now_ms += ms,
                }
                let inner = cards.inner.read();
                for (code, card) in &inner.cards {
                    prop_assert!(card.balance >= 0 && card.available(now_ms) >= 0);
                    for hold in &card.holds {
                        prop_assert!(hold.amount > 0);
                        let listed = inner.cards_by_token.get(&hold.token);
                        prop_assert!(listed.is_some_and(|codes| codes.contains(code)));
                    }
                }
                for (token, codes) in &inner.cards_by_token {
                    prop_assert!(!codes.is_empty());
                    for code in codes {
                        let card = inner.cards.get(code);
                        prop_assert!(card.is_some_and(|card| card.holds.iter().any(|h| &h.token == token)));
                    }
                }
            }
        }
    }
}
