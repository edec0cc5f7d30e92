//! How money is divided: rounding half to even, the value of part of a line, and the spreading of
//! one promotion's discount over the lines it touches (PROMOTIONS.md, "Rounding").
//!
//! Everything is exact integer arithmetic in `i128`: amounts are at most about 2^63, so a product
//! of two of them fits. Nothing here depends on the order lines come in; ties are broken by a key
//! the caller gives (the line's product and variant).

use std::cmp::Ordering;

/// `numerator / denominator` rounded to the nearest integer, halves to the even neighbour.
/// Both must be non-negative and the denominator positive.
pub fn div_round_half_even(numerator: i128, denominator: i128) -> i128 {
    assert!(numerator >= 0 && denominator > 0);
    let quotient = numerator / denominator;
    let twice_remainder = 2 * (numerator % denominator);
    match twice_remainder.cmp(&denominator) {
        Ordering::Less => quotient,
        Ordering::Greater => quotient + 1,
        Ordering::Equal => quotient + (quotient % 2),
    }
}

/// `percent`% of `amount`, rounded half to even.
pub fn percent_of(amount: i64, percent: u8) -> i64 {
    assert!(amount >= 0 && percent <= 100);
    let exact = div_round_half_even(i128::from(amount) * i128::from(percent), 100);
    i64::try_from(exact).expect("a percentage of at most 100 is at most the amount")
}

/// The value of `units` of a line holding `qty` units worth `amount` in all: its share of the
/// amount, rounded half to even. All units are worth the whole amount exactly.
pub fn units_value(amount: i64, qty: u32, units: u32) -> i64 {
    assert!(amount >= 0 && qty > 0 && units <= qty);
    let exact = div_round_half_even(i128::from(amount) * i128::from(units), i128::from(qty));
    i64::try_from(exact).expect("a part of a line is at most the line")
}

/// One line's part of a discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share<K> {
    /// Orders lines whose rounding errors are equal; the engine uses the line's product and
    /// variant, so the result never depends on the order of the lines.
    pub key: K,
    /// How much of the line the promotion works on (what remains of it, or of the units it
    /// takes), at least 0.
    pub weight: i64,
    /// The line's part of the discount, 0..=weight, set by [`distribute`].
    pub amount: i64,
}

/// Spreads `discount` over `shares` in proportion to their weights: each gets its exact part
/// rounded half to even, then the rounding residue (the discount less the sum of those parts) is
/// settled one minor unit per line, adding to the lines rounded down the most or taking from the
/// lines rounded up the most, ties going to the smaller key. Every share ends within
/// `0..=weight` and the shares sum to `discount` exactly.
///
/// `discount` must be within `0..=sum of weights`. The slice is reordered.
pub fn distribute<K: Ord>(discount: i64, shares: &mut [Share<K>]) {
    let total: i128 = shares.iter().map(|share| i128::from(share.weight)).sum();
    assert!(shares.iter().all(|share| share.weight >= 0));
    assert!(discount >= 0 && i128::from(discount) <= total);
    let discount = i128::from(discount);
    let mut residue = discount;
    for share in shares.iter_mut() {
        let rounded = if discount == 0 {
            0
        } else {
            div_round_half_even(discount * i128::from(share.weight), total)
        };
        share.amount = i64::try_from(rounded).expect("a share is at most its weight");
        residue -= rounded;
    }
    if residue == 0 {
        return;
    }
    // What each share was rounded down by, scaled by `total`: exact - share, as an integer.
    let rounded_down =
        |share: &Share<K>| discount * i128::from(share.weight) - i128::from(share.amount) * total;
    let (step, count) = if residue > 0 {
        shares.sort_unstable_by(|a, b| {
            rounded_down(b)
                .cmp(&rounded_down(a))
                .then_with(|| a.key.cmp(&b.key))
        });
        (1, residue)
    } else {
        shares.sort_unstable_by(|a, b| {
            rounded_down(a)
                .cmp(&rounded_down(b))
                .then_with(|| a.key.cmp(&b.key))
        });
        (-1, -residue)
    };
    // Each share is off by at most half a unit, so the residue is under half the line count and
    // the lines it goes to were rounded the right way: they stay within 0..=weight.
    let count = usize::try_from(count).expect("the residue is smaller than the line count");
    assert!(count <= shares.len());
    for share in &mut shares[..count] {
        share.amount += step;
        assert!((0..=share.weight).contains(&share.amount));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spread(discount: i64, weights: &[(&'static str, i64)]) -> Vec<(&'static str, i64)> {
        let mut shares: Vec<Share<&str>> = weights
            .iter()
            .map(|&(key, weight)| Share {
                key,
                weight,
                amount: 0,
            })
            .collect();
        distribute(discount, &mut shares);
        shares.sort_by_key(|share| share.key);
        shares
            .iter()
            .map(|share| (share.key, share.amount))
            .collect()
    }

    #[test]
    fn rounds_halves_to_even() {
        assert_eq!(div_round_half_even(125, 10), 12);
        assert_eq!(div_round_half_even(135, 10), 14);
        assert_eq!(div_round_half_even(126, 10), 13);
        assert_eq!(div_round_half_even(124, 10), 12);
        assert_eq!(div_round_half_even(0, 7), 0);
        assert_eq!(percent_of(125, 10), 12);
        assert_eq!(percent_of(135, 10), 14);
        assert_eq!(percent_of(99, 100), 99);
        assert_eq!(percent_of(5, 10), 0);
        assert_eq!(percent_of(15, 10), 2);
    }

    #[test]
    fn units_value_is_exact_for_the_whole_line() {
        assert_eq!(units_value(1000, 3, 3), 1000);
        assert_eq!(units_value(1000, 3, 1), 333);
        assert_eq!(units_value(1000, 3, 2), 667);
        assert_eq!(units_value(10, 4, 1), 2); // 2.5 to even
        assert_eq!(units_value(14, 4, 1), 4); // 3.5 to even
        assert_eq!(units_value(0, 4, 2), 0);
    }

    /// 10% of a cart of 125 and 135 is 26: the lines take 12.5 and 13.5, rounded half to even
    /// to 12 and 14, which already sum to 26.
    #[test]
    fn half_even_at_the_line_level() {
        assert_eq!(
            spread(26, &[("a", 125), ("b", 135)]),
            [("a", 12), ("b", 14)]
        );
    }

    /// 100 over three equal lines: 33.33 each rounds to 33, and the one unit left goes to the
    /// first line by name, whatever the order given.
    #[test]
    fn residue_up_goes_to_the_first_name_on_a_tie() {
        let expected = [("a", 34), ("b", 33), ("c", 33)];
        assert_eq!(spread(100, &[("a", 100), ("b", 100), ("c", 100)]), expected);
        assert_eq!(spread(100, &[("c", 100), ("b", 100), ("a", 100)]), expected);
    }

    /// 2 over three equal lines: 0.67 each rounds to 1, one unit too many is taken back from
    /// the first line by name.
    #[test]
    fn residue_down_comes_from_the_first_name_on_a_tie() {
        assert_eq!(
            spread(2, &[("c", 1), ("b", 1), ("a", 1)]),
            [("a", 0), ("b", 1), ("c", 1)]
        );
    }

    /// The residue goes to the line rounded the wrong way the most, not to the first name.
    #[test]
    fn residue_goes_to_the_largest_rounding_error() {
        // 1 over weights 1, 4, 4 (total 9): exact 0.11, 0.44, 0.44 -> 0 each; the unit goes to
        // "b", rounded down by 0.44 (a tie with "c" that the name settles), not to "a".
        assert_eq!(
            spread(1, &[("a", 1), ("b", 4), ("c", 4)]),
            [("a", 0), ("b", 1), ("c", 0)]
        );
        // 3 over weights 2, 3, 5 (total 10): exact 0.6, 0.9, 1.5 -> 1, 1, 2 = 4; the unit comes
        // back from "c", rounded up by 0.5, the most.
        assert_eq!(
            spread(3, &[("a", 2), ("b", 3), ("c", 5)]),
            [("a", 1), ("b", 1), ("c", 1)]
        );
        // 5 over weights 1, 2, 4 (total 7): exact 0.71, 1.43, 2.86 -> 1, 1, 3, no residue.
        assert_eq!(
            spread(5, &[("a", 1), ("b", 2), ("c", 4)]),
            [("a", 1), ("b", 1), ("c", 3)]
        );
    }

    #[test]
    fn zero_and_whole_discounts() {
        assert_eq!(spread(0, &[("a", 5), ("b", 0)]), [("a", 0), ("b", 0)]);
        assert_eq!(
            spread(7, &[("a", 5), ("b", 0), ("c", 2)]),
            [("a", 5), ("b", 0), ("c", 2)]
        );
        assert_eq!(spread(0, &[]), []);
    }

    proptest! {
        /// Shares sum to the discount, stay within their weights, are within one unit of the
        /// exact part, and do not depend on the order of the lines.
        #[test]
        fn shares_are_exact_bounded_and_order_free(
            weights in prop::collection::vec(0i64..1_000_000_000_000, 1..30),
            fraction in 0u32..=1000,
            seed in any::<u64>(),
        ) {
            let total: i64 = weights.iter().sum();
            let discount = i64::try_from(i128::from(total) * i128::from(fraction) / 1000).unwrap();
            let mut shares: Vec<Share<usize>> = weights.iter().enumerate()
                .map(|(key, &weight)| Share { key, weight, amount: 0 }).collect();
            distribute(discount, &mut shares);
            prop_assert_eq!(shares.iter().map(|s| s.amount).sum::<i64>(), discount);
            for share in &shares {
                prop_assert!((0..=share.weight).contains(&share.amount));
                if total > 0 {
                    let exact_scaled = i128::from(discount) * i128::from(share.weight);
                    let error = (i128::from(share.amount) * i128::from(total) - exact_scaled).abs();
                    prop_assert!(error < i128::from(total), "more than one unit off");
                }
            }
            shares.sort_by_key(|s| s.key);
            let mut rotated: Vec<Share<usize>> = weights.iter().enumerate()
                .map(|(key, &weight)| Share { key, weight, amount: 0 }).collect();
            let len = rotated.len();
            rotated.rotate_left(usize::try_from(seed % len as u64).unwrap());
            distribute(discount, &mut rotated);
            rotated.sort_by_key(|s| s.key);
            prop_assert_eq!(shares, rotated);
        }
    }
}
