//! The gift card registry on its own: reserving prices and holds in one step, the limits on
//! holds, changes refused under holds, and completion spending exactly what was held.

use proptest::prelude::*;

use super::*;
use crate::pricing::engine::{self, PriceInput, PricedLine, Reason};

const USD: Currency = Currency(*b"USD");
const EUR: Currency = Currency(*b"EUR");

/// Prices a one-line cart of `total` paid by `codes` and reserves what the cards pay under
/// `token` until `until_ms`; returns what each card pays and why not.
fn reserve(
    cards: &GiftCards,
    token: &str,
    codes: &[&str],
    total: i64,
    until_ms: u64,
    now_ms: u64,
) -> Vec<(i64, Option<Reason>)> {
    let codes: Vec<Box<str>> = codes.iter().map(|code| Box::from(*code)).collect();
    let lines = [PricedLine {
        product: "p",
        variant: "-",
        qty: 1,
        unit_price: total,
    }];
    let pricing = cards.reserve(token, &codes, (until_ms, now_ms), &[], |gift_cards| {
        engine::price(&PriceInput {
            currency: USD,
            now_ms,
            lines: &lines,
            codes: &[],
            automatic: &[],
            gift_cards,
        })
    });
    let uses = pricing.expect("no card is sealed").gift_cards.into_iter();
    uses.map(|card| (card.applied, card.reason)).collect()
}

fn balance(cards: &GiftCards, code: &str, now_ms: u64) -> (i64, i64) {
    let state = cards.get(code, now_ms).expect("the card exists");
    (state.balance, state.held)
}

#[test]
fn set_get_remove() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    let state = GiftCardBalance {
        balance: 5000,
        currency: USD,
        held: 0,
        holds: 0,
    };
    assert_eq!(cards.get("G", 0), Some(state));
    assert!(cards.set("G", -1, USD, 0, |_| {}).is_err());
    assert!(cards
        .set("G", PROMO_MONEY_MINOR_MAX + 1, USD, 0, |_| {})
        .is_err());
    assert!(cards.set("", 1, USD, 0, |_| {}).is_err());
    let available = cards.available("G", 0).unwrap();
    assert_eq!((available.available, available.holds_full), (5000, false));
    assert_eq!(cards.available("nope", 0), None);
    assert_eq!(cards.len(), 1);
    assert_eq!(cards.remove("G", 0, || {}), Ok(true));
    assert_eq!(cards.remove("G", 0, || {}), Ok(false));
    assert!(cards.is_empty());
}

/// A checkout holds exactly what its pricing takes; the next one sees only what is left, and
/// holds stop counting when they run out.
#[test]
fn reserve_holds_what_the_pricing_takes() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    assert_eq!(reserve(&cards, "t1", &["G"], 3000, 100, 0), [(3000, None)]);
    assert_eq!(balance(&cards, "G", 0), (5000, 3000));
    assert_eq!(reserve(&cards, "t2", &["G"], 3000, 200, 0), [(2000, None)]);
    let empty = reserve(&cards, "t3", &["G"], 3000, 200, 0);
    assert_eq!(empty, [(0, Some(Reason::NoBalance))]);
    assert_eq!(balance(&cards, "G", 0), (5000, 5000));
    assert_eq!(balance(&cards, "G", 100), (5000, 2000), "t1 ran out");
    assert_eq!(balance(&cards, "G", 200), (5000, 0), "t2 too");
    let unknown = reserve(&cards, "t4", &["nope"], 10, 500, 0);
    assert_eq!(unknown, [(0, Some(Reason::Unknown))]);
    assert!(!cards.inner.read().cards_by_token.contains_key("t4"));
}

/// Two cards on one cart: the first pays what it can, the second the rest.
#[test]
fn reserve_splits_over_cards() {
    let cards = GiftCards::new();
    cards.set("A", 700, USD, 0, |_| {}).unwrap();
    cards.set("B", 5000, USD, 0, |_| {}).unwrap();
    let uses = reserve(&cards, "t", &["A", "B"], 1000, 100, 0);
    assert_eq!(uses, [(700, None), (300, None)]);
    assert_eq!(balance(&cards, "A", 0), (700, 700));
    assert_eq!(balance(&cards, "B", 0), (5000, 300));
}

/// A card carrying GIFT_CARD_HOLDS_MAX holds pays nothing more, saying why; once holds run
/// out there is room again.
#[test]
fn a_card_full_of_holds_pays_nothing_more() {
    let cards = GiftCards::new();
    cards.set("A", 1_000_000, USD, 0, |_| {}).unwrap();
    for index in 0..GIFT_CARD_HOLDS_MAX {
        let token = format!("t{index}");
        assert_eq!(reserve(&cards, &token, &["A"], 1, 100, 0), [(1, None)]);
    }
    assert!(cards.available("A", 0).unwrap().holds_full);
    let full = reserve(&cards, "one-more", &["A"], 9936, 100, 0);
    assert_eq!(full, [(0, Some(Reason::HoldsFull))]);
    assert_eq!(balance(&cards, "A", 0), (1_000_000, 64));
    assert_eq!(
        reserve(&cards, "later", &["A"], 9936, 200, 100),
        [(9936, None)]
    );
}

/// While checkouts hold part of a card, its balance cannot drop below the held sum, its
/// currency cannot change and it cannot be deleted; raising it is fine.
#[test]
fn held_cards_refuse_to_shrink_change_currency_or_go() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    reserve(&cards, "t", &["G"], 3000, 100, 0);
    let lowered = cards.set("G", 2999, USD, 0, |_| {}).unwrap_err();
    assert_eq!(lowered.code, ErrorCode::GiftCard);
    assert!(
        lowered.message.contains("3000 held by 1 checkouts"),
        "{lowered:?}"
    );
    assert!(cards.set("G", 5000, EUR, 0, |_| {}).is_err());
    assert!(cards
        .remove("G", 0, || {})
        .unwrap_err()
        .message
        .contains("held"));
    cards.set("G", 3000, USD, 0, |_| {}).unwrap();
    cards.set("G", 9000, USD, 0, |_| {}).unwrap();
    assert_eq!(balance(&cards, "G", 0), (9000, 3000));
    cards.release("t");
    cards.set("G", 10, EUR, 0, |_| {}).unwrap();
    cards.set("G", 10, USD, 0, |_| {}).unwrap();
    assert_eq!(reserve(&cards, "u", &["G"], 5, 100, 0), [(5, None)]);
    assert!(cards.remove("G", 50, || {}).is_err());
    assert_eq!(cards.remove("G", 100, || {}), Ok(true), "the hold ran out");
}

/// COMPLETE takes exactly what was held, once; a mismatch, a hold that ran out or a second
/// completion changes nothing and says why.
#[test]
fn complete_spends_exactly_the_holds() {
    let cards = GiftCards::new();
    cards.set("A", 5000, USD, 0, |_| {}).unwrap();
    cards.set("B", 1000, USD, 0, |_| {}).unwrap();
    reserve(&cards, "other", &["A"], 100, 100, 0);
    reserve(&cards, "t", &["A", "B"], 5500, 100, 0);
    assert_eq!(balance(&cards, "A", 0), (5000, 5000));
    assert!(cards
        .complete("t", &[("A", 4900), ("B", 500)], 10, |_| {})
        .is_err());
    let logged = std::cell::Cell::new(false);
    let late = cards.complete("t", &[("A", 4900), ("B", 600)], 100, |_| logged.set(true));
    assert!(
        late.is_err() && !logged.get(),
        "the hold ran out: nothing taken, nothing logged"
    );
    assert_eq!(balance(&cards, "B", 10), (1000, 600), "nothing taken");
    let spent = cards
        .complete("t", &[("A", 4900), ("B", 600)], 10, |_| {})
        .unwrap();
    let taken: Vec<_> = spent
        .iter()
        .map(|s| (&*s.code, s.amount, s.balance))
        .collect();
    assert_eq!(taken, [("A", 4900, 100), ("B", 600, 400)]);
    assert_eq!(balance(&cards, "A", 10), (100, 100), "other's hold stays");
    assert!(
        cards.complete("t", &[("A", 4900)], 10, |_| {}).is_err(),
        "once"
    );
    assert!(!cards.inner.read().cards_by_token.contains_key("t"));
}

#[derive(Debug, Clone)]
enum Op {
    Set(usize, i64),
    Reserve(usize, [bool; 2], i64, u64),
    Release(usize),
    Complete(usize),
    Remove(usize),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..2, 0i64..10_000).prop_map(|(card, balance)| Op::Set(card, balance)),
        (0usize..4, any::<[bool; 2]>(), 1i64..8000, 1u64..100)
            .prop_map(|(token, cards, total, ms)| Op::Reserve(token, cards, total, ms)),
        (0usize..4).prop_map(Op::Release),
        (0usize..4).prop_map(Op::Complete),
        (0usize..2).prop_map(Op::Remove),
        (0u64..60).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Whatever the order of sets, checkouts, releases, completions, deletions and time
    /// passing: a completion takes exactly what its checkout showed, no balance goes below 0,
    /// what is held never exceeds a balance, and every card pays out in all at most what was
    /// put on it.
    #[test]
    fn no_card_pays_more_than_it_has(ops in prop::collection::vec(op(), 1..80)) {
        const CODES: [&str; 2] = ["A", "B"];
        const TOKENS: [&str; 4] = ["t0", "t1", "t2", "t3"];
        let cards = GiftCards::new();
        let mut now_ms = 0;
        // What each token's checkout showed each card paying, until it completes or ends.
        let mut shown: [Vec<(&str, i64)>; 4] = Default::default();
        let mut put_on = [0i64; 2];
        let mut paid_out = [0i64; 2];
        let mut last_balance = [0i64; 2];
        for op in ops {
            match op {
                Op::Set(card, balance) => {
                    if cards.set(CODES[card], balance, USD, now_ms, |_| {}).is_ok() {
                        put_on[card] += (balance - last_balance[card]).max(0);
                        last_balance[card] = balance;
                    }
                }
                Op::Reserve(token, which, total, ms) => {
                    cards.release(TOKENS[token]);
                    let codes: Vec<&str> = CODES.iter().zip(which).filter(|(_, on)| *on)
                        .map(|(code, _)| *code).collect();
                    let uses = reserve(&cards, TOKENS[token], &codes, total, now_ms + ms, now_ms);
                    prop_assert!(uses.iter().map(|(paid, _)| paid).sum::<i64>() <= total);
                    shown[token] = codes.iter().zip(&uses).filter(|(_, (paid, _))| *paid > 0)
                        .map(|(code, (paid, _))| (*code, *paid)).collect();
                }
                Op::Release(token) => {
                    cards.release(TOKENS[token]);
                    shown[token].clear();
                }
                Op::Complete(token) => {
                    if shown[token].is_empty() { continue; }
                    if let Ok(spent) = cards.complete(TOKENS[token], &shown[token], now_ms, |_| {}) {
                        for (spent, (code, amount)) in spent.iter().zip(&shown[token]) {
                            prop_assert_eq!((&*spent.code, spent.amount), (*code, *amount));
                            let card = CODES.iter().position(|c| c == code).unwrap();
                            paid_out[card] += amount;
                            last_balance[card] = spent.balance;
                        }
                    }
                    shown[token].clear();
                }
                Op::Remove(card) => {
                    if cards.remove(CODES[card], now_ms, || {}) == Ok(true) {
                        last_balance[card] = 0;
                    }
                }
                Op::Wait(ms) => now_ms += ms,
            }
            for (card, code) in CODES.iter().enumerate() {
                prop_assert!(paid_out[card] <= put_on[card], "{} paid {} of {}", code, paid_out[card], put_on[card]);
                if let Some(state) = cards.get(code, now_ms) {
                    prop_assert!(state.balance >= 0 && state.held <= state.balance);
                    prop_assert_eq!(state.balance, last_balance[card]);
                }
            }
            let inner = cards.inner.read();
            for (code, card) in &inner.cards {
                for hold in &card.holds {
                    prop_assert!(hold.amount > 0);
                    let listed = inner.cards_by_token.get(&hold.token);
                    prop_assert!(listed.is_some_and(|codes| codes.contains(code)));
                }
            }
        }
    }
}

/// A card's owner holds for another node's checkout at most what is available, spends a
/// token once however often it is asked (the retry answers the first spend), refuses a spend
/// beyond the hold, and its holds and spends come back whole from its image.
#[test]
fn peer_holds_spend_once_and_come_back_from_the_image() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    reserve(&cards, "local", &["G"], 1000, 500, 0);
    let logged = std::cell::RefCell::new(PeerHolds::default());
    let log = |_: i64, _: Currency, holds: &PeerHolds| *logged.borrow_mut() = holds.clone();
    let held = cards
        .hold_for_peer("G", "far", (9000, USD), (500, 0), log)
        .unwrap();
    assert_eq!(held.map(|held| held.held), Some(4000), "what is left");
    let again = cards
        .hold_for_peer("G", "far", (9000, USD), (500, 0), |_, _, _| {})
        .unwrap();
    assert_eq!(
        again.map(|held| held.held),
        Some(4000),
        "a retry holds no more"
    );
    let other = cards
        .hold_for_peer("G", "eur", (10, EUR), (500, 0), |_, _, _| {})
        .unwrap();
    assert_eq!(other.map(|held| held.held), Some(0), "another currency");
    assert_eq!(logged.borrow().holds.len(), 1);

    // The owner restarts: its image brings the hold back beside the rebuilt local one.
    let image = logged.borrow().clone();
    let restarted = GiftCards::new();
    restarted.load("G", 5000, USD, &image);
    restarted.restore_hold("G", "local", 1000, 500, 0).unwrap();
    assert_eq!(balance(&restarted, "G", 0), (5000, 5000));
    assert!(restarted
        .spend_for_peer("G", "far", 4001, 1, |_| {})
        .is_err());
    let spent = restarted
        .spend_for_peer("G", "far", 3500, 1, |_| {})
        .unwrap();
    assert_eq!((spent.amount, spent.balance), (3500, 1500));
    let retried = restarted
        .spend_for_peer("G", "far", 3500, 2, |_| {})
        .unwrap();
    assert_eq!(
        (retried.amount, retried.balance),
        (3500, 1500),
        "spent once"
    );
    assert_eq!(
        balance(&restarted, "G", 2),
        (1500, 1000),
        "only the local hold is left"
    );
    assert_eq!(spent.peer_holds.spent.len(), 1, "the spend is in the image");
    assert!(!restarted.release_for_peer("G", "far", |_, _, _| {}));
}

/// A card handed to the node taking its slot: sealed here (every change refused, to be tried
/// again), and at the taker whole: this node's own checkout's hold too, which the taker then
/// spends once for this node, and its peer's spend remembered.
#[test]
fn a_sealed_card_changes_no_more_and_arrives_whole() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    cards.set("H", 100, USD, 0, |_| {}).unwrap();
    reserve(&cards, "mine", &["G"], 1000, 500, 0);
    cards
        .hold_for_peer("G", "far", (2000, USD), (500, 0), |_, _, _| {})
        .unwrap();
    cards.spend_for_peer("G", "far", 2000, 1, |_| {}).unwrap();
    let handed = cards.seal(|code| code == "G", 2);
    assert_eq!(handed.len(), 1, "only the card picked");
    let card = &handed[0];
    assert_eq!((card.balance, card.holds.holds.len()), (3000, 1));
    assert_eq!(card.holds.spent.len(), 1, "the remembered spend goes too");
    let try_again = |error: CommandError| assert_eq!(error.code, ErrorCode::TryAgain);
    try_again(cards.set("G", 9000, USD, 3, |_| {}).unwrap_err());
    try_again(cards.remove("G", 3, || {}).unwrap_err());
    try_again(
        cards
            .complete("mine", &[("G", 1000)], 3, |_| {})
            .unwrap_err(),
    );
    try_again(
        cards
            .spend_for_peer("G", "far", 2000, 3, |_| {})
            .unwrap_err(),
    );
    try_again(
        cards
            .hold_for_peer("G", "new", (10, USD), (500, 3), |_, _, _| {})
            .unwrap_err(),
    );
    assert_eq!(
        cards.seal(|code| code == "G", 3),
        handed,
        "sealing again: the same"
    );
    assert_eq!(cards.count_unsealed(|_| true), 1, "H is not sealed");

    let taker = GiftCards::new();
    taker.adopt(card);
    assert_eq!(
        balance(&taker, "G", 3),
        (3000, 1000),
        "the hold came with it"
    );
    let spent = taker.spend_for_peer("G", "mine", 1000, 4, |_| {}).unwrap();
    assert_eq!((spent.amount, spent.balance), (1000, 2000));
    let retried = taker.spend_for_peer("G", "far", 2000, 4, |_| {}).unwrap();
    assert_eq!(
        retried.balance, 2000,
        "the old owner's spend is not taken again"
    );

    assert_eq!(
        cards.drop_moved(|_| true, true, |_| {}),
        1,
        "only G, the sealed one"
    );
    assert!(cards.get("G", 5).is_none());
    assert!(cards.get("H", 5).is_some(), "H was not sealed");
    assert_eq!(cards.unseal(|_| true, |_, _, _, _| {}), 0);
    assert_eq!(cards.drop_moved(|_| true, false, |_| {}), 1, "H, unsealed");
    assert!(cards.get("H", 5).is_none());
}

/// A cart leaving in checkout: its holds here become holds kept for another node (in the
/// card's image), which that node's completion spends; back on a node holding it already, a
/// rebuilt hold of the same token is not taken twice.
#[test]
fn a_frozen_carts_holds_follow_it_to_another_node() {
    let cards = GiftCards::new();
    cards.set("G", 5000, USD, 0, |_| {}).unwrap();
    reserve(&cards, "left", &["G"], 1000, 500, 0);
    let logged = std::cell::RefCell::new(Vec::new());
    cards.hand_to_peer("left", |code, _, _, holds| {
        logged
            .borrow_mut()
            .push((code.to_owned(), holds.holds.len()));
    });
    assert_eq!(*logged.borrow(), [("G".to_owned(), 1)]);
    let restarted = GiftCards::new();
    let (_, _, _, image) = cards.balances().pop().unwrap();
    restarted.load("G", 5000, USD, &image);
    assert_eq!(
        balance(&restarted, "G", 1),
        (5000, 1000),
        "the hold survives"
    );
    restarted.restore_hold("G", "left", 1000, 500, 1).unwrap();
    assert_eq!(balance(&restarted, "G", 1), (5000, 1000), "held once");
    let spent = restarted
        .spend_for_peer("G", "left", 1000, 2, |_| {})
        .unwrap();
    assert_eq!(spent.balance, 4000);
    assert!(!restarted.release_for_peer("G", "other", |_, _, _| {}));
}
