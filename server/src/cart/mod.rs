//! The cart domain: a compact cart, its lines, and the operations PROTOCOL.md defines. Every
//! operation checks everything first and changes nothing when it fails; the store decides
//! versions, times and TTLs around it.

pub mod delta;
pub mod image;
pub mod merge;
pub mod names;
pub mod packed;
pub mod priced;
pub mod row;
pub mod view;

use protocol::{CommandError, Currency, ErrorCode, LineList};

pub use names::{NameId, Names};

/// A line's identity: interned product and variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineKey {
    /// Product id.
    pub product: NameId,
    /// Variant id.
    pub variant: NameId,
}

/// One line of a cart (or of its unavailable list).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Which product variant.
    pub key: LineKey,
    /// Quantity, 1..=max_qty_per_line.
    pub qty: u32,
    /// Current price in minor units (from the last add or validation).
    pub unit_price: i64,
    /// Price when the line was first added.
    pub price_at_add: i64,
    /// When the line was first added.
    pub added_at_ms: u64,
    /// The prices are in another currency than the cart's: a guest line merged into a cart
    /// priced otherwise. Such a line waits in `unavailable` until RESTORE re-prices it.
    pub foreign_price: bool,
}

impl Line {
    /// Takes the catalog's price in `currency` for a line priced in another currency; without
    /// one the line cannot join the cart (`NOPRICE`).
    fn reprice_into(
        &mut self,
        currency: Currency,
        catalog_price: Option<Price>,
    ) -> Result<(), CommandError> {
        let price = catalog_price
            .filter(|price| price.currency == currency)
            .ok_or_else(|| {
                CommandError::new(
                    ErrorCode::NoPrice,
                    format!(
                        "the line is priced in another currency and the catalog has no price in {currency}"
                    ),
                )
            })?;
        self.unit_price = price.minor;
        self.price_at_add = price.minor;
        self.foreign_price = false;
        Ok(())
    }
}

/// A saved-for-later line: the line as it was, and when it was saved.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedLine {
    /// The line as it left the cart.
    pub line: Line,
    /// When it was saved.
    pub saved_at_ms: u64,
}

/// Guest or user cart, from the key's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartKind {
    /// Key starts with the guest prefix.
    Guest,
    /// Any other key.
    User,
}

impl CartKind {
    /// As the view shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            CartKind::Guest => "guest",
            CartKind::User => "user",
        }
    }
}

/// The rarely used parts of a cart, kept out of line so a plain cart stays small.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CartExtra {
    /// Saved for later.
    pub saved: Vec<SavedLine>,
    /// Moved aside because out of stock.
    pub unavailable: Vec<Line>,
    /// Promo codes, in the order applied (a code that stopped applying stays).
    pub promo_codes: Vec<Box<str>>,
    /// Gift card codes, in the order applied.
    pub gift_cards: Vec<Box<str>>,
    /// The checkout the cart is frozen for, if any.
    pub checkout: Option<Checkout>,
}

impl CartExtra {
    fn is_empty(&self) -> bool {
        self.saved.is_empty()
            && self.unavailable.is_empty()
            && self.promo_codes.is_empty()
            && self.gift_cards.is_empty()
            && self.checkout.is_none()
    }
}

/// The two lists of codes a cart holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeList {
    /// Promo codes (`CART.PROMO`).
    Promo,
    /// Gift cards (`CART.GIFTCARD`).
    GiftCard,
}

/// A cart handed to checkout (`CART.CHECKOUT`): frozen until COMPLETE, RELEASE or the hold's
/// end, with the pricing it was frozen at.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout {
    /// What COMPLETE and RELEASE must name.
    pub token: Box<str>,
    /// The hold runs out at this time; the cart is active again after it.
    pub hold_until_ms: u64,
    /// The frozen pricing ([`crate::cart::priced::CartPricing`] encoded), shown until then.
    pub pricing: Box<[u8]>,
}

/// One cart.
#[derive(Debug, Clone, PartialEq)]
pub struct Cart {
    /// Grows by one on every change.
    pub version: u64,
    /// Creation time.
    pub created_at_ms: u64,
    /// Last change.
    pub updated_at_ms: u64,
    /// The cart expires at this time unless accessed before.
    pub expires_at_ms: u64,
    /// The deadline the log holds for the cart when reads renewed it since without a record
    /// (renewals are logged in steps, `Store::renew_if`); 0: `expires_at_ms` is logged.
    pub logged_expires_at_ms: u64,
    /// Last price and stock validation; 0 when the cart changed since.
    pub validated_at_ms: u64,
    /// Timing-wheel tick at which this cart's one wheel entry fires.
    pub wheel_tick: u32,
    /// The LSN of the last log record that changed the cart (0: none known, as for a cart not
    /// logged yet or loaded from a snapshot written before carts carried it). A delta record
    /// names it as the state it applies to.
    pub lsn: u64,
    /// Guest or user.
    pub kind: CartKind,
    /// Currency of every line.
    pub currency: Currency,
    /// Active lines, in the order first added.
    pub lines: Vec<Line>,
    /// Saved and unavailable lines, when there are any.
    pub extra: Option<Box<CartExtra>>,
}

/// Bounds on one cart, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct CartLimits {
    /// `max_lines_per_cart`.
    pub lines_max: usize,
    /// `max_saved_per_cart`.
    pub saved_max: usize,
    /// `max_qty_per_line`.
    pub qty_max: u32,
}

/// A price for a line being added: what the request said, else the catalog's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Minor units.
    pub minor: i64,
    /// Its currency.
    pub currency: Currency,
}

impl Cart {
    /// An empty cart created now; the store sets versions, TTL and wheel tick.
    pub fn new(kind: CartKind, currency: Currency, now_ms: u64) -> Cart {
        Cart {
            version: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            expires_at_ms: now_ms,
            logged_expires_at_ms: 0,
            validated_at_ms: 0,
            wheel_tick: 0,
            lsn: 0,
            kind,
            currency,
            lines: Vec::new(),
            extra: None,
        }
    }

    /// Saved lines.
    pub fn saved(&self) -> &[SavedLine] {
        self.extra.as_ref().map_or(&[], |extra| &extra.saved)
    }

    /// Unavailable lines.
    pub fn unavailable(&self) -> &[Line] {
        self.extra.as_ref().map_or(&[], |extra| &extra.unavailable)
    }

    fn extra_mut(&mut self) -> &mut CartExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Drops the extra block when it holds nothing, to keep plain carts small.
    pub fn tidy_extra(&mut self) {
        if self.extra.as_ref().is_some_and(|extra| extra.is_empty()) {
            self.extra = None;
        }
    }

    /// Promo codes on the cart, in the order applied.
    pub fn promo_codes(&self) -> &[Box<str>] {
        self.codes(CodeList::Promo)
    }

    /// Gift card codes on the cart, in the order applied.
    pub fn gift_cards(&self) -> &[Box<str>] {
        self.codes(CodeList::GiftCard)
    }

    /// One list of codes on the cart, in the order applied.
    pub fn codes(&self, list: CodeList) -> &[Box<str>] {
        self.extra.as_ref().map_or(&[], |extra| match list {
            CodeList::Promo => &extra.promo_codes,
            CodeList::GiftCard => &extra.gift_cards,
        })
    }

    /// Adds `code` (already checked) to a list; a code already there is not added twice.
    /// Returns whether it was added.
    pub fn add_code(&mut self, list: CodeList, code: &str) -> bool {
        if self.codes(list).iter().any(|have| &**have == code) {
            return false;
        }
        let extra = self.extra_mut();
        match list {
            CodeList::Promo => &mut extra.promo_codes,
            CodeList::GiftCard => &mut extra.gift_cards,
        }
        .push(code.into());
        true
    }

    /// Drops `code` from a list; returns whether it was there.
    pub fn remove_code(&mut self, list: CodeList, code: &str) -> bool {
        let removed = self.extra.as_mut().is_some_and(|extra| {
            let codes = match list {
                CodeList::Promo => &mut extra.promo_codes,
                CodeList::GiftCard => &mut extra.gift_cards,
            };
            remove_where(codes, |have| &**have == code)
        });
        self.tidy_extra();
        removed
    }

    /// The checkout, whether or not its hold has run out.
    pub fn checkout(&self) -> Option<&Checkout> {
        self.extra.as_ref()?.checkout.as_ref()
    }

    /// The checkout whose hold still runs at `now_ms`: the cart is frozen.
    pub fn frozen(&self, now_ms: u64) -> Option<&Checkout> {
        self.checkout()
            .filter(|checkout| checkout.hold_until_ms > now_ms)
    }

    /// Ends the checkout (released, or its hold ran out). Returns it.
    pub fn end_checkout(&mut self) -> Option<Checkout> {
        let checkout = self.extra.as_mut()?.checkout.take();
        self.tidy_extra();
        checkout
    }

    /// Freezes the cart for `checkout`.
    pub fn begin_checkout(&mut self, checkout: Checkout) {
        self.extra_mut().checkout = Some(checkout);
    }

    /// Replaces the promo codes (MERGE keeps the better set).
    pub fn set_promo_codes(&mut self, codes: Vec<Box<str>>) {
        self.extra_mut().promo_codes = codes;
        self.tidy_extra();
    }

    /// Index of an active line.
    pub fn line_index(&self, key: LineKey) -> Option<usize> {
        self.lines.iter().position(|line| line.key == key)
    }

    /// `CART.ADD`: adds `qty` to a line, creating it. `price` is the request's or the catalog's;
    /// without one, an existing line keeps its price and a new line is refused. `cap` is the
    /// catalog's per-cart limit for this product.
    pub fn add(
        &mut self,
        key: LineKey,
        qty: u32,
        price: Option<Price>,
        cap: Option<u32>,
        limits: &CartLimits,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        if let Some(price) = price {
            self.check_currency(price.currency)?;
        }
        match self.line_index(key) {
            Some(index) => {
                let line = &self.lines[index];
                let total = u64::from(line.qty) + u64::from(qty);
                check_qty(total, limits, cap)?;
                let line = &mut self.lines[index];
                line.qty = total as u32;
                if let Some(price) = price {
                    line.unit_price = price.minor;
                }
            }
            None => {
                let price = price.ok_or_else(|| {
                    CommandError::new(
                        ErrorCode::NoPrice,
                        "no price given and none in the catalog for this product variant",
                    )
                })?;
                check_qty(u64::from(qty), limits, cap)?;
                if self.lines.len() >= limits.lines_max {
                    return Err(CommandError::limit(format!(
                        "cart has {} lines, max_lines_per_cart is {}",
                        self.lines.len(),
                        limits.lines_max
                    )));
                }
                // Checked above: an empty cart may take the new line's currency.
                self.adopt_currency(price.currency);
                self.lines.push(Line {
                    key,
                    qty,
                    unit_price: price.minor,
                    price_at_add: price.minor,
                    added_at_ms: now_ms,
                    foreign_price: false,
                });
            }
        }
        Ok(())
    }

    /// `CART.SET`: sets a line's quantity; 0 removes it.
    pub fn set_qty(
        &mut self,
        key: LineKey,
        qty: u32,
        cap: Option<u32>,
        limits: &CartLimits,
    ) -> Result<(), CommandError> {
        let index = self.line_index(key).ok_or_else(no_item)?;
        if qty == 0 {
            self.lines.remove(index);
            return Ok(());
        }
        check_qty(u64::from(qty), limits, cap)?;
        self.lines[index].qty = qty;
        Ok(())
    }

    /// `CART.REMOVE`: removes a line from one list; an absent line changes nothing.
    /// Returns whether anything was removed.
    pub fn remove(&mut self, key: LineKey, from: LineList) -> bool {
        let removed = match from {
            LineList::Cart => remove_where(&mut self.lines, |line| line.key == key),
            LineList::Saved => match self.extra.as_mut() {
                Some(extra) => remove_where(&mut extra.saved, |saved| saved.line.key == key),
                None => false,
            },
            LineList::Unavailable => match self.extra.as_mut() {
                Some(extra) => remove_where(&mut extra.unavailable, |line| line.key == key),
                None => false,
            },
        };
        self.tidy_extra();
        removed
    }

    /// `CART.CLEAR`: removes every active line. Returns whether there were any.
    pub fn clear(&mut self) -> bool {
        let had_lines = !self.lines.is_empty();
        self.lines.clear();
        had_lines
    }

    /// `CART.SAVE`: moves a line to saved-for-later; a line already saved adds its quantity.
    pub fn save(
        &mut self,
        key: LineKey,
        limits: &CartLimits,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let index = self.line_index(key).ok_or_else(no_item)?;
        let saved_index = self.saved().iter().position(|saved| saved.line.key == key);
        match saved_index {
            Some(saved_index) => {
                let merged = u64::from(self.saved()[saved_index].line.qty)
                    + u64::from(self.lines[index].qty);
                let line = self.lines.remove(index);
                let saved = &mut self.extra_mut().saved[saved_index];
                saved.line.qty = merged.min(u64::from(limits.qty_max)) as u32;
                saved.line.unit_price = line.unit_price;
                saved.saved_at_ms = now_ms;
            }
            None => {
                if self.saved().len() >= limits.saved_max {
                    return Err(CommandError::limit(format!(
                        "cart has {} saved lines, max_saved_per_cart is {}",
                        self.saved().len(),
                        limits.saved_max
                    )));
                }
                let line = self.lines.remove(index);
                self.extra_mut().saved.push(SavedLine {
                    line,
                    saved_at_ms: now_ms,
                });
            }
        }
        Ok(())
    }

    /// `CART.RESTORE`: moves a line back into the cart from saved-for-later, or else from
    /// unavailable; a line already in the cart adds its quantity (within the limits).
    pub fn restore(
        &mut self,
        key: LineKey,
        catalog_price: Option<Price>,
        cap: Option<u32>,
        limits: &CartLimits,
    ) -> Result<(), CommandError> {
        let saved_index = self.saved().iter().position(|saved| saved.line.key == key);
        let unavailable_index = self.unavailable().iter().position(|line| line.key == key);
        let mut incoming = match (saved_index, unavailable_index) {
            (Some(index), _) => self.saved()[index].line.clone(),
            (None, Some(index)) => self.unavailable()[index].clone(),
            (None, None) => return Err(no_item()),
        };
        if incoming.foreign_price {
            incoming.reprice_into(self.currency, catalog_price)?;
        }
        match self.line_index(key) {
            Some(index) => {
                check_qty(
                    u64::from(self.lines[index].qty) + u64::from(incoming.qty),
                    limits,
                    cap,
                )?;
                self.lines[index].qty += incoming.qty;
            }
            None => {
                check_qty(u64::from(incoming.qty), limits, cap)?;
                if self.lines.len() >= limits.lines_max {
                    return Err(CommandError::limit(format!(
                        "cart has {} lines, max_lines_per_cart is {}",
                        self.lines.len(),
                        limits.lines_max
                    )));
                }
                self.lines.push(incoming);
            }
        }
        let extra = self.extra_mut();
        match saved_index {
            Some(index) => drop(extra.saved.remove(index)),
            None => drop(
                extra
                    .unavailable
                    .remove(unavailable_index.expect("found above")),
            ),
        }
        self.tidy_extra();
        Ok(())
    }

    /// Moves active lines to the unavailable list (validation found them out of stock).
    pub fn move_to_unavailable(&mut self, keys: &[LineKey]) {
        for &key in keys {
            if let Some(index) = self.line_index(key) {
                let line = self.lines.remove(index);
                let unavailable = &mut self.extra_mut().unavailable;
                match unavailable.iter_mut().find(|existing| existing.key == key) {
                    Some(existing) => *existing = line,
                    None => unavailable.push(line),
                }
            }
        }
    }

    fn check_currency(&self, currency: Currency) -> Result<(), CommandError> {
        if currency != self.currency && !self.holds_no_lines() {
            return Err(CommandError::err(format!(
                "cart is priced in {}, the price is in {currency}",
                self.currency
            )));
        }
        Ok(())
    }

    /// Adopts `currency` when the cart holds no lines at all (an emptied cart may change).
    pub fn adopt_currency(&mut self, currency: Currency) {
        if self.holds_no_lines() {
            self.currency = currency;
        }
    }

    /// No line in the cart, saved for later, or unavailable: the currency is still open.
    pub fn holds_no_lines(&self) -> bool {
        self.lines.is_empty() && self.saved().is_empty() && self.unavailable().is_empty()
    }

    /// Checks the cart's structural invariants (tests and debug builds).
    pub fn debug_check(&self, limits: &CartLimits) {
        debug_assert!(self.lines.len() <= limits.lines_max);
        debug_assert!(self.lines.iter().all(|line| line.qty >= 1));
        debug_assert!(self.saved().len() <= limits.saved_max);
        debug_assert!(
            self.lines
                .iter()
                .enumerate()
                .all(|(i, line)| self.lines[..i].iter().all(|other| other.key != line.key)),
            "a line appears twice"
        );
    }
}

fn check_qty(qty: u64, limits: &CartLimits, cap: Option<u32>) -> Result<(), CommandError> {
    if qty > u64::from(limits.qty_max) {
        return Err(CommandError::limit(format!(
            "quantity {qty} is over max_qty_per_line {}",
            limits.qty_max
        )));
    }
    if let Some(cap) = cap {
        if qty > u64::from(cap) {
            return Err(CommandError::limit(format!(
                "quantity {qty} is over this product's limit of {cap} per cart"
            )));
        }
    }
    Ok(())
}

fn no_item() -> CommandError {
    CommandError::new(ErrorCode::NoItem, "no such line in the cart")
}

fn remove_where<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> bool {
    match items.iter().position(matches) {
        Some(index) => {
            items.remove(index);
            true
        }
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {

    use proptest::prelude::*;

    use super::*;

    const LIMITS: CartLimits = CartLimits {
        lines_max: 3,
        saved_max: 2,
        qty_max: 9,
    };

    /// A line key for a small number, for tests of the cart rules.
    pub(crate) fn key(product: usize) -> LineKey {
        let id = NameId::try_from_usize(product).expect("small ids fit");
        LineKey {
            product: id,
            variant: id,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(usize, u32, Option<i64>, bool),
        Set(usize, u32),
        Remove(usize, u8),
        Clear,
        Save(usize),
        Restore(usize),
        Unavailable(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let product = 0usize..6;
        prop_oneof![
            (
                product.clone(),
                1u32..14,
                proptest::option::of(0i64..1000),
                any::<bool>()
            )
                .prop_map(|(p, q, price, euro)| Op::Add(p, q, price, euro)),
            (product.clone(), 0u32..14).prop_map(|(p, q)| Op::Set(p, q)),
            (product.clone(), 0u8..3).prop_map(|(p, list)| Op::Remove(p, list)),
            Just(Op::Clear),
            product.clone().prop_map(Op::Save),
            product.clone().prop_map(Op::Restore),
            product.prop_map(Op::Unavailable),
        ]
    }

    /// Product 5 has a catalog limit of 4 per cart.
    fn cap_of(product: usize) -> Option<u32> {
        (product == 5).then_some(4)
    }

    fn apply(cart: &mut Cart, op: &Op) -> Result<(), CommandError> {
        let usd = Currency(*b"USD");
        match *op {
            Op::Add(p, qty, price, euro) => {
                let currency = if euro { Currency(*b"EUR") } else { usd };
                let price = price.map(|minor| Price { minor, currency });
                cart.add(key(p), qty, price, cap_of(p), &LIMITS, 1)
            }
            Op::Set(p, qty) => cart.set_qty(key(p), qty, cap_of(p), &LIMITS),
            Op::Remove(p, list) => {
                let from = [LineList::Cart, LineList::Saved, LineList::Unavailable][list as usize];
                cart.remove(key(p), from);
                Ok(())
            }
            Op::Clear => {
                cart.clear();
                Ok(())
            }
            Op::Save(p) => cart.save(key(p), &LIMITS, 2),
            Op::Restore(p) => cart.restore(key(p), None, cap_of(p), &LIMITS),
            Op::Unavailable(p) => {
                cart.move_to_unavailable(&[key(p)]);
                Ok(())
            }
        }
    }

    proptest! {
        /// Whatever the sequence, limits hold, no line appears twice in a list, and a failed
        /// operation leaves the cart exactly as it was.
        #[test]
        fn operations_keep_limits_and_fail_without_effect(ops in prop::collection::vec(op(), 1..40)) {
            let mut cart = Cart::new(CartKind::User, Currency(*b"USD"), 0);
            for op in &ops {
                let before = cart.clone();
                if apply(&mut cart, op).is_err() {
                    prop_assert_eq!(&cart, &before, "{:?} failed but changed the cart", op);
                }
                prop_assert!(cart.lines.len() <= LIMITS.lines_max);
                prop_assert!(cart.saved().len() <= LIMITS.saved_max);
                prop_assert!(cart.lines.iter().all(|line| (1..=LIMITS.qty_max).contains(&line.qty)));
                prop_assert!(cart.lines.iter().filter(|line| line.key == key(5)).all(|line| line.qty <= 4));
                for list in [cart.lines.iter().map(|l| l.key).collect::<Vec<_>>(),
                             cart.saved().iter().map(|s| s.line.key).collect(),
                             cart.unavailable().iter().map(|l| l.key).collect()] {
                    let mut sorted = list.clone();
                    sorted.sort_by_key(|k| k.product.into_usize());
                    sorted.dedup();
                    prop_assert_eq!(sorted.len(), list.len(), "a line appears twice");
                }
                prop_assert!(cart.extra.as_ref().is_none_or(|e| !e.is_empty()));
            }
        }
    }
}
