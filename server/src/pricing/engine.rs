//! The pricing engine: from a cart's lines, its codes, the automatic promotions and its gift
//! cards to every discount, what each code and card did, and the totals. A pure function of its
//! input (no clock, no locks, no I/O): the caller reads the registries and passes what they hold.
//!
//! docs/PROMOTIONS.md states the rules. In short: automatic promotions by code, then codes in the
//! order added, each working on what the earlier ones left of every line; then gift cards in the
//! order added. Nothing depends on the order of the lines: ties go by product and variant.
//!
//! Per call it allocates the result vectors only (and, past 16 lines touched by one promotion,
//! a scratch list); units are counted per line, never expanded one by one.

use std::cmp::Ordering;
use std::fmt;

use protocol::Currency;
use smallvec::SmallVec;

use super::alloc::{distribute, percent_of, units_value, Share};
use super::promo::{BundleOff, Kind, Products, Promotion, Side};

/// One cart line, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedLine<'a> {
    /// Product id. Lines are distinct by product and variant.
    pub product: &'a str,
    /// Variant id.
    pub variant: &'a str,
    /// Units, at least 1.
    pub qty: u32,
    /// Current unit price, minor units, `0..=PRICE_MINOR_MAX`.
    pub unit_price: i64,
}

/// A gift card on the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiftCardInput<'a> {
    /// The card's code.
    pub code: &'a str,
    /// Its available balance (balance less unexpired holds) and currency; `None`: no such card.
    pub card: Option<(i64, Currency)>,
    /// The card carries as many checkout holds as it may, so it can pay nothing more now.
    pub holds_full: bool,
}

/// Everything a cart's price depends on.
#[derive(Debug, Clone, Copy)]
pub struct PriceInput<'a> {
    /// The cart's currency.
    pub currency: Currency,
    /// The time promotion windows are checked at.
    pub now_ms: u64,
    /// The active lines.
    pub lines: &'a [PricedLine<'a>],
    /// Codes on the cart in the order added, each with its promotion (`None`: no such promotion,
    /// e.g. deleted since).
    pub codes: &'a [(&'a str, Option<&'a Promotion>)],
    /// Every automatic promotion with its code, in any order.
    pub automatic: &'a [(&'a str, &'a Promotion)],
    /// Gift cards on the cart, in the order added.
    pub gift_cards: &'a [GiftCardInput<'a>],
}

/// A priced cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Sum of qty * unit_price over the lines.
    pub subtotal: i64,
    /// Discount taken off each input line, same order; each within 0..=the line's amount.
    pub line_discounts: Vec<i64>,
    /// Every promotion that took something off, in the order applied.
    pub discounts: Vec<Discount>,
    /// What each code on the cart did, in the order added.
    pub codes: Vec<CodeStatus>,
    /// Sum of `discounts` (and of `line_discounts`).
    pub discount: i64,
    /// What each gift card on the cart did, in the order added.
    pub gift_cards: Vec<GiftCardUse>,
    /// Sum taken from gift cards.
    pub gift_card: i64,
    /// subtotal - discount - gift_card, never negative.
    pub total: i64,
}

/// One promotion's discount, as the cart view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    /// `code:SAVE10` for a code, `auto:bundle-tv` for an automatic promotion.
    pub source: String,
    /// Minor units, more than 0.
    pub amount: i64,
}

/// What one code on the cart did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeStatus {
    /// The code.
    pub code: String,
    /// Whether it took something off.
    pub applied: bool,
    /// What it took off (0 when not applied).
    pub discount: i64,
    /// Why it did not apply.
    pub reason: Option<Reason>,
}

/// What one gift card on the cart did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftCardUse {
    /// The card's code.
    pub code: String,
    /// Minor units taken from it.
    pub applied: i64,
    /// Why nothing was taken, when the card cannot be used.
    pub reason: Option<Reason>,
}

/// Why a code or gift card does not apply. [`Reason::as_str`] is a stable token; `Display` is a
/// sentence for the person at the cart, written to follow `-PROMO ` or `-GIFTCARD `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No such promotion or gift card (never defined, or deleted).
    Unknown,
    /// The promotion's window has not opened.
    NotStarted {
        /// When it opens.
        starts_at_ms: u64,
    },
    /// The promotion's window has closed.
    Expired {
        /// When it closed.
        ends_at_ms: u64,
    },
    /// The promotion is for carts in another currency.
    Currency {
        /// The promotion's currency.
        promo: Currency,
    },
    /// The cart's subtotal is below the promotion's minimum.
    MinSubtotal {
        /// The minimum.
        min: i64,
        /// The cart's subtotal.
        subtotal: i64,
    },
    /// No line matches the promotion's products.
    NoEligibleLines,
    /// Another non-stackable code applies already.
    NotStackable {
        /// That code.
        with: String,
    },
    /// The promotion applies by itself; it is not a code to add.
    Automatic,
    /// The gift card's available balance is 0.
    NoBalance,
    /// The gift card carries as many checkouts in progress as it may.
    HoldsFull,
    /// The gift card is in another currency than the cart.
    CardCurrency {
        /// The card's currency.
        card: Currency,
    },
    /// The cart lacks at least one product of the bundle.
    BundleIncomplete,
    /// The cart has too few qualifying units for one buy_x_get_y application.
    NotEnoughItems {
        /// Units to buy.
        buy: u32,
        /// Units then discounted.
        get: u32,
    },
    /// The promotion fits but takes nothing off (nothing left after earlier promotions, or a
    /// percentage that rounds to 0).
    ZeroDiscount,
    /// The code or gift card is on the cart already.
    Duplicate,
}

impl Reason {
    /// A stable token for programs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Unknown => "unknown",
            Reason::NotStarted { .. } => "not_started",
            Reason::Expired { .. } => "expired",
            Reason::Currency { .. } | Reason::CardCurrency { .. } => "currency",
            Reason::MinSubtotal { .. } => "min_subtotal",
            Reason::NoEligibleLines => "no_eligible_lines",
            Reason::NotStackable { .. } => "not_stackable",
            Reason::Automatic => "automatic",
            Reason::NoBalance => "no_balance",
            Reason::HoldsFull => "holds_full",
            Reason::BundleIncomplete => "bundle_incomplete",
            Reason::NotEnoughItems { .. } => "not_enough_items",
            Reason::ZeroDiscount => "zero_discount",
            Reason::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unknown => f.write_str("no such code; check its spelling"),
            Reason::NotStarted { starts_at_ms } => {
                write!(f, "not valid yet: it starts at {starts_at_ms} (Unix ms)")
            }
            Reason::Expired { ends_at_ms } => write!(f, "expired at {ends_at_ms} (Unix ms)"),
            Reason::Currency { promo } => write!(f, "only for carts in {promo}"),
            Reason::MinSubtotal { min, subtotal } => write!(
                f,
                "needs a subtotal of at least {min}; the cart's is {subtotal} (minor units)"
            ),
            Reason::NoEligibleLines => f.write_str("no item in the cart is eligible"),
            Reason::NotStackable { with } => {
                write!(
                    f,
                    "does not combine with code {with}; remove that code first"
                )
            }
            Reason::Automatic => f.write_str("applies automatically; it is not a code to add"),
            Reason::NoBalance => f.write_str("the gift card has no balance left"),
            Reason::HoldsFull => f.write_str(
                "the gift card is in as many checkouts as it may be at once; try again when one ends",
            ),
            Reason::CardCurrency { card } => {
                write!(f, "the gift card is in {card}, not the cart's currency")
            }
            Reason::BundleIncomplete => f.write_str("the cart lacks part of the bundle"),
            Reason::NotEnoughItems { buy, get } => write!(
                f,
                "needs more qualifying items: buy {buy} to get {get} at a discount"
            ),
            Reason::ZeroDiscount => f.write_str("takes nothing off this cart"),
            Reason::Duplicate => f.write_str("already on the cart"),
        }
    }
}

/// Prices a cart: discounts, what each code and gift card did, totals.
pub fn price(input: &PriceInput) -> Pricing {
    let mut engine = Engine::new(input);
    let mut discounts = Vec::new();
    let mut codes = Vec::with_capacity(input.codes.len());
    engine.apply_automatic(&mut discounts);
    engine.apply_codes(&mut discounts, &mut codes);
    let discount = discounts
        .iter()
        .map(|discount| discount.amount)
        .fold(0, i64::saturating_add);
    let subtotal = engine.subtotal;
    let (gift_cards, gift_card) = apply_gift_cards(input, subtotal - discount);
    let pricing = Pricing {
        subtotal,
        line_discounts: engine.line_discounts,
        discounts,
        codes,
        discount,
        gift_cards,
        gift_card,
        total: subtotal - discount - gift_card,
    };
    assert!(0 <= pricing.discount && pricing.discount <= subtotal && pricing.total >= 0);
    debug_assert!(
        pricing.subtotal == i64::MAX
            || pricing
                .line_discounts
                .iter()
                .map(|&d| i128::from(d))
                .sum::<i128>()
                == i128::from(pricing.discount)
    );
    debug_assert!(input
        .lines
        .iter()
        .zip(&pricing.line_discounts)
        .all(|(line, discount)| (0..=line_amount(line)).contains(discount)));
    pricing
}

/// Whether adding `code` (its promotion `promo`, `None` if there is none) to the cart `input`
/// describes would apply: `Ok` exactly when [`price`] of the cart with the code added shows it
/// applied. Otherwise the reason: unknown, automatic, not started, expired, another currency,
/// below the minimum subtotal, nothing eligible or nothing to take off, a non-stackable code
/// while another non-stackable code applies, or already on the cart.
pub fn check_code(input: &PriceInput, code: &str, promo: Option<&Promotion>) -> Result<(), Reason> {
    let mut codes = Vec::with_capacity(input.codes.len() + 1);
    codes.extend_from_slice(input.codes);
    codes.push((code, promo));
    let with_code = PriceInput {
        codes: &codes,
        ..*input
    };
    let mut engine = Engine::new(&with_code);
    let mut discounts = Vec::new();
    let mut statuses = Vec::with_capacity(codes.len());
    engine.apply_automatic(&mut discounts);
    engine.apply_codes(&mut discounts, &mut statuses);
    match statuses.pop().expect("one status per code").reason {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}

/// qty * unit_price (a negative price counts as 0). Sums of amounts saturate at `i64::MAX`,
/// which the protocol's limits keep far away; saturated, every bound below still holds.
fn line_amount(line: &PricedLine) -> i64 {
    let amount = i128::from(line.qty) * i128::from(line.unit_price.max(0));
    i64::try_from(amount).unwrap_or(i64::MAX)
}

/// A line's name and position. Shares are ordered by it on ties, name first, so the position
/// never decides between lines (lines are distinct by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LineName<'a> {
    product: &'a str,
    variant: &'a str,
    index: usize,
}

/// A line a bundle or buy_x_get_y may take units from, and the group it counts in (the bundle
/// entry it matches; for buy_x_get_y, 1 when it is on the buy side too).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    group: usize,
    index: usize,
}

/// Pricing state while promotions are applied one after the other.
struct Engine<'i, 'a> {
    input: &'i PriceInput<'a>,
    subtotal: i64,
    /// Discount taken off each line so far; what remains is its amount less this.
    line_discounts: Vec<i64>,
    /// The lines the current promotion touches, with their weights and then shares.
    shares: SmallVec<[Share<LineName<'a>>; 16]>,
    candidates: SmallVec<[Candidate; 16]>,
}

impl<'i, 'a> Engine<'i, 'a> {
    fn new(input: &'i PriceInput<'a>) -> Engine<'i, 'a> {
        Engine {
            input,
            subtotal: input
                .lines
                .iter()
                .map(line_amount)
                .fold(0, i64::saturating_add),
            line_discounts: vec![0; input.lines.len()],
            shares: SmallVec::new(),
            candidates: SmallVec::new(),
        }
    }

    /// Automatic promotions by code; one that does not fit the cart is skipped silently.
    fn apply_automatic(&mut self, discounts: &mut Vec<Discount>) {
        let automatic = self.input.automatic;
        let mut order: SmallVec<[usize; 16]> = (0..automatic.len()).collect();
        order.sort_unstable_by_key(|&index| (automatic[index].0, index));
        for index in order {
            let (code, promo) = automatic[index];
            if self.conditions(promo).is_ok() {
                if let Ok(amount) = self.apply(promo) {
                    discounts.push(Discount {
                        source: format!("auto:{code}"),
                        amount,
                    });
                }
            }
        }
    }

    /// Codes in the order added; the first non-stackable one that applies excludes the others.
    fn apply_codes(&mut self, discounts: &mut Vec<Discount>, statuses: &mut Vec<CodeStatus>) {
        let codes = self.input.codes;
        let mut exclusive: Option<&str> = None;
        for (position, &(code, promo)) in codes.iter().enumerate() {
            let outcome = if codes[..position]
                .iter()
                .any(|&(earlier, _)| earlier == code)
            {
                Err(Reason::Duplicate)
            } else {
                self.apply_code(promo, exclusive)
            };
            let status = match outcome {
                Ok(amount) => {
                    if promo.is_some_and(|promo| !promo.stackable) && exclusive.is_none() {
                        exclusive = Some(code);
                    }
                    discounts.push(Discount {
                        source: format!("code:{code}"),
                        amount,
                    });
                    CodeStatus {
                        code: code.to_owned(),
                        applied: true,
                        discount: amount,
                        reason: None,
                    }
                }
                Err(reason) => CodeStatus {
                    code: code.to_owned(),
                    applied: false,
                    discount: 0,
                    reason: Some(reason),
                },
            };
            statuses.push(status);
        }
    }

    fn apply_code(
        &mut self,
        promo: Option<&Promotion>,
        exclusive: Option<&str>,
    ) -> Result<i64, Reason> {
        let promo = promo.ok_or(Reason::Unknown)?;
        if promo.automatic {
            return Err(Reason::Automatic);
        }
        self.conditions(promo)?;
        match exclusive {
            Some(with) if !promo.stackable => Err(Reason::NotStackable {
                with: with.to_owned(),
            }),
            _ => self.apply(promo),
        }
    }

    /// Window, currency and minimum subtotal.
    fn conditions(&self, promo: &Promotion) -> Result<(), Reason> {
        if let Some(starts_at_ms) = promo.starts_at_ms {
            if self.input.now_ms < starts_at_ms {
                return Err(Reason::NotStarted { starts_at_ms });
            }
        }
        if let Some(ends_at_ms) = promo.ends_at_ms {
            if self.input.now_ms >= ends_at_ms {
                return Err(Reason::Expired { ends_at_ms });
            }
        }
        if let Some(currency) = promo.currency {
            if currency != self.input.currency {
                return Err(Reason::Currency { promo: currency });
            }
        }
        if let Some(min) = promo.min_subtotal {
            if self.subtotal < min {
                return Err(Reason::MinSubtotal {
                    min,
                    subtotal: self.subtotal,
                });
            }
        }
        Ok(())
    }

    /// Computes the promotion's discount on what remains of the lines, spreads it over the
    /// lines it touches, and takes it off them.
    fn apply(&mut self, promo: &Promotion) -> Result<i64, Reason> {
        self.shares.clear();
        let discount = match &promo.kind {
            Kind::Percent { percent } => {
                percent_of(self.eligible(promo.products.as_ref())?, *percent)
            }
            Kind::Fixed { amount } => (*amount).min(self.eligible(promo.products.as_ref())?),
            Kind::Bundle { set, off } => self.bundle(set, *off)?,
            Kind::BuyXGetY { buy, get, percent } => self.buy_x_get_y(buy, get, *percent)?,
        };
        if discount == 0 {
            return Err(Reason::ZeroDiscount);
        }
        distribute(discount, &mut self.shares);
        for share in &self.shares {
            self.line_discounts[share.key.index] += share.amount;
        }
        Ok(discount)
    }

    fn remaining(&self, index: usize) -> i64 {
        line_amount(&self.input.lines[index]) - self.line_discounts[index]
    }

    fn name(&self, index: usize) -> LineName<'a> {
        let line = &self.input.lines[index];
        LineName {
            product: line.product,
            variant: line.variant,
            index,
        }
    }

    /// Takes `units` of a line into the current promotion; returns their value.
    fn take_units(&mut self, index: usize, units: u32) -> i64 {
        let weight = units_value(self.remaining(index), self.input.lines[index].qty, units);
        if weight > 0 {
            self.shares.push(Share {
                key: self.name(index),
                weight,
                amount: 0,
            });
        }
        weight
    }

    /// Percent and fixed: every matching line, weighted by what remains of it. Returns the sum.
    fn eligible(&mut self, products: Option<&Products>) -> Result<i64, Reason> {
        let mut matched = false;
        let mut total = 0i64;
        for (index, line) in self.input.lines.iter().enumerate() {
            if products.is_some_and(|products| products.find(line.product, line.variant).is_none())
            {
                continue;
            }
            matched = true;
            let weight = self.remaining(index);
            if weight > 0 {
                self.shares.push(Share {
                    key: self.name(index),
                    weight,
                    amount: 0,
                });
                total = total.saturating_add(weight);
            }
        }
        if matched {
            Ok(total)
        } else {
            Err(Reason::NoEligibleLines)
        }
    }

    /// Orders candidates cheapest unit first (what remains of the line per unit), then by name.
    fn sort_cheapest_first(&mut self, by_group_first: bool) {
        let lines = self.input.lines;
        let line_discounts = &self.line_discounts;
        let unit_value = |index: usize| {
            let remaining = line_amount(&lines[index]) - line_discounts[index];
            (i128::from(remaining), i128::from(lines[index].qty))
        };
        let name = |index: usize| (lines[index].product, lines[index].variant);
        self.candidates.sort_unstable_by(|a, b| {
            let group = if by_group_first {
                a.group.cmp(&b.group)
            } else {
                Ordering::Equal
            };
            let ((value_a, qty_a), (value_b, qty_b)) = (unit_value(a.index), unit_value(b.index));
            group
                .then_with(|| (value_a * qty_b).cmp(&(value_b * qty_a)))
                .then_with(|| name(a.index).cmp(&name(b.index)))
        });
    }

    /// Bundle: as many complete sets as the cart holds, each entry's units taken cheapest first.
    fn bundle(&mut self, set: &Products, off: BundleOff) -> Result<i64, Reason> {
        let lines = self.input.lines;
        let mut units: SmallVec<[u64; 8]> = SmallVec::from_elem(0, set.len());
        self.candidates.clear();
        for (index, line) in lines.iter().enumerate() {
            if line.qty == 0 {
                continue;
            }
            if let Some(entry) = set.find(line.product, line.variant) {
                units[entry] += u64::from(line.qty);
                self.candidates.push(Candidate {
                    group: entry,
                    index,
                });
            }
        }
        let sets = units.iter().copied().min().unwrap_or(0);
        if sets == 0 {
            return Err(Reason::BundleIncomplete);
        }
        self.sort_cheapest_first(true);
        let (mut value, mut group, mut units_left) = (0i64, usize::MAX, 0u64);
        for position in 0..self.candidates.len() {
            let Candidate {
                group: entry,
                index,
            } = self.candidates[position];
            if entry != group {
                (group, units_left) = (entry, sets);
            }
            let take = units_left.min(u64::from(lines[index].qty));
            if take > 0 {
                units_left -= take;
                let take = u32::try_from(take).expect("at most the line's qty");
                value = value.saturating_add(self.take_units(index, take));
            }
        }
        let sets = i128::from(sets);
        let discount = match off {
            BundleOff::Percent(percent) => i128::from(percent_of(value, percent)),
            BundleOff::Amount(amount) => (i128::from(amount) * sets).min(value.into()),
            BundleOff::Price(price) => (i128::from(value) - i128::from(price) * sets).max(0),
        };
        Ok(i64::try_from(discount).expect("at most the value of the sets"))
    }

    /// Buy x get y: as many applications as the units allow, the "get" units being the
    /// cheapest of the get side that leave enough units for the buy side.
    fn buy_x_get_y(&mut self, buy: &Side, get: &Side, percent: u8) -> Result<i64, Reason> {
        let lines = self.input.lines;
        let (mut buy_only, mut get_only, mut both) = (0u64, 0u64, 0u64);
        self.candidates.clear();
        for (index, line) in lines.iter().enumerate() {
            let in_buy = buy.products.find(line.product, line.variant).is_some();
            let in_get = get.products.find(line.product, line.variant).is_some();
            let qty = u64::from(line.qty);
            match (in_buy, in_get) {
                (true, false) => buy_only += qty,
                (false, true) => get_only += qty,
                (true, true) => both += qty,
                (false, false) => continue,
            }
            if in_get && qty > 0 {
                self.candidates.push(Candidate {
                    group: usize::from(in_buy),
                    index,
                });
            }
        }
        let (x, y) = (u64::from(buy.qty), u64::from(get.qty));
        let applications = ((buy_only + both) / x)
            .min((get_only + both) / y)
            .min((buy_only + get_only + both) / (x + y));
        if applications == 0 {
            return Err(Reason::NotEnoughItems {
                buy: buy.qty,
                get: get.qty,
            });
        }
        // Units of the overlap discounted are units the buy side cannot count.
        let mut overlap_left = both.min(buy_only + both - applications * x);
        let mut units_needed = applications * y;
        self.sort_cheapest_first(false);
        let mut value = 0i64;
        for position in 0..self.candidates.len() {
            let Candidate { group, index } = self.candidates[position];
            let mut take = units_needed.min(u64::from(lines[index].qty));
            if group == 1 {
                take = take.min(overlap_left);
                overlap_left -= take;
            }
            if take > 0 {
                units_needed -= take;
                let take = u32::try_from(take).expect("at most the line's qty");
                value = value.saturating_add(self.take_units(index, take));
            }
        }
        assert_eq!(
            units_needed, 0,
            "the application count leaves enough units to get"
        );
        Ok(percent_of(value, percent))
    }
}

/// Gift cards in the order added, each taking what it can of what is left to pay. Returns the
/// uses and their sum.
fn apply_gift_cards(input: &PriceInput, due: i64) -> (Vec<GiftCardUse>, i64) {
    let mut uses = Vec::with_capacity(input.gift_cards.len());
    let mut left = due;
    for (position, card) in input.gift_cards.iter().enumerate() {
        let earlier = &input.gift_cards[..position];
        let outcome = match card.card {
            _ if earlier.iter().any(|other| other.code == card.code) => Err(Reason::Duplicate),
            None => Err(Reason::Unknown),
            Some((_, currency)) if currency != input.currency => {
                Err(Reason::CardCurrency { card: currency })
            }
            Some((available, _)) if available <= 0 => Err(Reason::NoBalance),
            Some(_) if card.holds_full => Err(Reason::HoldsFull),
            Some((available, _)) => Ok(available.min(left)),
        };
        let (applied, reason) = match outcome {
            Ok(applied) => (applied, None),
            Err(reason) => (0, Some(reason)),
        };
        left -= applied;
        uses.push(GiftCardUse {
            code: card.code.to_owned(),
            applied,
            reason,
        });
    }
    (uses, due - left)
}
