//! `CART.MERGE` rules: a guest cart folded into a user cart.
//!
//! - Lines in both carts take the higher quantity (`QTY MAX`) or the sum (`QTY SUM`), capped by
//!   `max_qty_per_line` and the product's per-cart limit; the user cart's prices win.
//! - Guest-only lines are added while the cart has room; lines beyond `max_lines_per_cart` go to
//!   saved-for-later while that has room, and only then are they dropped (and counted).
//! - Currencies differ: the user cart's wins and every guest line (active, saved, unavailable)
//!   goes to `unavailable`, marked as priced in another currency: RESTORE re-prices it from
//!   the catalog. An entirely empty user cart takes the guest cart's currency instead.
//! - Saved and unavailable lines are united; on a clash the user cart's line stays.

use protocol::MergeQty;

use super::{Cart, CartLimits, Line, LineKey, SavedLine};

/// What a merge could not keep.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Guest lines that fit neither the cart nor saved-for-later.
    pub dropped_lines: usize,
}

/// Folds `guest` into `user`. Never fails: every limit is applied by capping.
pub fn merge(
    user: &mut Cart,
    guest: Cart,
    rule: MergeQty,
    limits: &CartLimits,
    cap: impl Fn(LineKey) -> Option<u32>,
) -> MergeReport {
    let mut report = MergeReport::default();
    if user.lines.is_empty() && user.saved().is_empty() && user.unavailable().is_empty() {
        user.currency = guest.currency;
    }
    if user.currency != guest.currency {
        for line in foreign_lines(guest) {
            if !add_unavailable(user, line, limits) {
                report.dropped_lines += 1;
            }
        }
        return report;
    }
    let extra = guest.extra.map(|extra| *extra).unwrap_or_default();
    for line in guest.lines {
        let qty_max = cap(line.key).map_or(limits.qty_max, |cap| cap.min(limits.qty_max));
        match user.line_index(line.key) {
            Some(index) => {
                let existing = &mut user.lines[index];
                let combined = match rule {
                    MergeQty::Max => existing.qty.max(line.qty),
                    MergeQty::Sum => existing.qty.saturating_add(line.qty),
                };
                existing.qty = combined.min(qty_max).max(1);
            }
            None if user.lines.len() < limits.lines_max => {
                user.lines.push(Line {
                    qty: line.qty.min(qty_max).max(1),
                    ..line
                });
            }
            None => {
                let saved_at_ms = user.updated_at_ms;
                if !add_saved(user, SavedLine { line, saved_at_ms }, limits) {
                    report.dropped_lines += 1;
                }
            }
        }
    }
    for saved in extra.saved {
        if !add_saved(user, saved, limits) {
            report.dropped_lines += 1;
        }
    }
    for line in extra.unavailable {
        if !add_unavailable(user, line, limits) {
            report.dropped_lines += 1;
        }
    }
    report
}

/// Every line of a cart priced in another currency, each marked so.
fn foreign_lines(cart: Cart) -> impl Iterator<Item = Line> {
    let extra = cart.extra.map(|extra| *extra).unwrap_or_default();
    let saved = extra.saved.into_iter().map(|saved| saved.line);
    cart.lines
        .into_iter()
        .chain(saved)
        .chain(extra.unavailable)
        .map(|line| Line {
            foreign_price: true,
            ..line
        })
}

/// Adds a saved line unless the user cart already saved that product variant (its own stays,
/// with the higher quantity). Returns false when there was no room.
fn add_saved(user: &mut Cart, saved: SavedLine, limits: &CartLimits) -> bool {
    if let Some(existing) = user.extra.as_mut().and_then(|extra| {
        extra
            .saved
            .iter_mut()
            .find(|existing| existing.line.key == saved.line.key)
    }) {
        existing.line.qty = existing.line.qty.max(saved.line.qty).min(limits.qty_max);
        return true;
    }
    if user.saved().len() >= limits.saved_max {
        return false;
    }
    user.extra_mut().saved.push(saved);
    true
}

/// Adds an unavailable line unless the user cart has one for that product variant. Returns
/// false when there was no room.
fn add_unavailable(user: &mut Cart, line: Line, limits: &CartLimits) -> bool {
    if user
        .unavailable()
        .iter()
        .any(|existing| existing.key == line.key)
    {
        return true;
    }
    if user.unavailable().len() >= limits.lines_max {
        return false;
    }
    user.extra_mut().unavailable.push(line);
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use protocol::Currency;

    use super::*;
    use crate::cart::tests::key;
    use crate::cart::CartKind;

    const LIMITS: CartLimits = CartLimits {
        lines_max: 6,
        saved_max: 3,
        qty_max: 9,
    };

    fn cart(lines: &[(usize, u32)], saved: &[(usize, u32)], currency: &[u8; 3]) -> Cart {
        let mut cart = Cart::new(CartKind::User, Currency(*currency), 0);
        let mut seen = std::collections::HashSet::new();
        for &(product, qty) in lines {
            if seen.insert(product) && cart.lines.len() < LIMITS.lines_max {
                cart.lines.push(Line {
                    key: key(product),
                    qty,
                    unit_price: product as i64 * 100,
                    price_at_add: 1,
                    added_at_ms: 0,
                    foreign_price: false,
                });
            }
        }
        for &(product, qty) in saved {
            if cart.saved().len() < LIMITS.saved_max
                && !cart.saved().iter().any(|s| s.line.key == key(product))
            {
                let line = Line {
                    key: key(product),
                    qty,
                    unit_price: 5,
                    price_at_add: 5,
                    added_at_ms: 0,
                    foreign_price: false,
                };
                cart.extra_mut().saved.push(SavedLine {
                    line,
                    saved_at_ms: 0,
                });
            }
        }
        cart
    }

    fn lines() -> impl Strategy<Value = Vec<(usize, u32)>> {
        prop::collection::vec((0usize..10, 1u32..=9), 0..8)
    }

    fn caps() -> impl Strategy<Value = HashMap<usize, u32>> {
        prop::collection::hash_map(0usize..10, 1u32..=9, 0..4)
    }

    proptest! {
        /// Limits hold, no line is doubled, user prices win, and quantities follow the rule.
        #[test]
        fn merge_respects_rules_and_limits(
            user_lines in lines(), guest_lines in lines(), user_saved in lines(), guest_saved in lines(),
            sum in any::<bool>(), caps in caps(), other_currency in any::<bool>(),
        ) {
            let user = cart(&user_lines, &user_saved, b"USD");
            let guest = cart(&guest_lines, &guest_saved, if other_currency { b"EUR" } else { b"USD" });
            let rule = if sum { MergeQty::Sum } else { MergeQty::Max };
            let cap = |line: LineKey| caps.get(&line.product.into_usize()).copied();
            let mut merged = user.clone();
            let report = merge(&mut merged, guest.clone(), rule, &LIMITS, cap);
            merged.debug_check(&LIMITS);
            prop_assert!(merged.lines.len() <= LIMITS.lines_max);
            prop_assert!(merged.saved().len() <= LIMITS.saved_max);
            let user_empty = user.lines.is_empty() && user.saved().is_empty();
            let same_currency = !other_currency || user_empty;
            for line in &merged.lines {
                prop_assert!(line.qty >= 1 && line.qty <= LIMITS.qty_max);
                let user_line = user.lines.iter().find(|l| l.key == line.key);
                let guest_line = guest.lines.iter().find(|l| l.key == line.key);
                let limit = cap(line.key).map_or(LIMITS.qty_max, |c| c.min(LIMITS.qty_max));
                match (user_line, guest_line) {
                    (Some(u), Some(g)) if same_currency => {
                        prop_assert_eq!(line.unit_price, u.unit_price);
                        let expected = if sum { u.qty + g.qty } else { u.qty.max(g.qty) };
                        prop_assert_eq!(line.qty, expected.min(limit).max(1));
                    }
                    (Some(u), _) => prop_assert_eq!(line.qty, u.qty),
                    (None, Some(g)) => prop_assert_eq!(line.qty, g.qty.min(limit).max(1)),
                    (None, None) => prop_assert!(false, "a line came from nowhere"),
                }
            }
            // Every user line is still in the cart.
            for line in &user.lines {
                prop_assert!(merged.line_index(line.key).is_some());
            }
            // Every guest line is somewhere, or counted as dropped.
            let mut missing = 0;
            for line in guest.lines.iter().chain(guest.saved().iter().map(|s| &s.line)) {
                let kept = merged.line_index(line.key).is_some()
                    || merged.saved().iter().any(|s| s.line.key == line.key)
                    || merged.unavailable().iter().any(|l| l.key == line.key);
                if !kept { missing += 1; }
            }
            prop_assert!(missing <= report.dropped_lines);
            if !same_currency {
                for line in &guest.lines {
                    prop_assert!(merged.unavailable().iter().any(|l| l.key == line.key));
                }
            }
        }
    }
}
