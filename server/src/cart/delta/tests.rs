//! Deltas against the states they are made from: applying one gives exactly the next state,
//! whatever the change; the common changes of a big cart are a delta, and a small one.

use proptest::prelude::*;
use protocol::{Currency, LineList};

use super::*;
use crate::cart::{image, CartKind, CartLimits, CodeList, Line, LineKey, Price};

const LIMITS: CartLimits = CartLimits {
    lines_max: 60,
    saved_max: 10,
    qty_max: 50,
};

fn key(names: &Names, product: usize) -> LineKey {
    LineKey {
        product: names
            .intern(format!("product-{product}").as_bytes())
            .unwrap(),
        variant: names.intern(b"-").unwrap(),
    }
}

fn cart_of(names: &Names, lines: usize) -> Cart {
    let mut cart = Cart::new(CartKind::User, Currency(*b"USD"), 1_764_000_000_000);
    cart.version = 7;
    cart.lsn = 41;
    cart.expires_at_ms = 1_766_000_000_000;
    for product in 0..lines {
        cart.lines.push(Line {
            key: key(names, product),
            qty: 1,
            unit_price: 1999,
            price_at_add: 1999,
            added_at_ms: 1_764_000_000_100 + product as u64,
            foreign_price: false,
        });
    }
    cart
}

/// The next state: `change` applied, version and times moved on as the store moves them.
fn next(before: &Cart, change: impl FnOnce(&mut Cart)) -> Cart {
    let mut after = before.clone();
    change(&mut after);
    after.version += 1;
    after.updated_at_ms += 1000;
    after.expires_at_ms += 1000;
    after
}

fn round_trip(before: &Cart, after: &Cart, names: &Names) -> Option<Cart> {
    let delta = encode(before, after, names)?;
    let mut applied = before.clone();
    apply(&mut applied, &delta, after.version, names).expect("a delta applies to its base");
    Some(applied)
}

/// A CART.ADD of an existing line of a 50-line cart is a delta of a few dozen bytes (the
/// image is about 1.2 KB), and so are a new line and a removed line.
#[test]
fn the_common_changes_of_a_big_cart_are_small_deltas() {
    let names = Names::default();
    let before = cart_of(&names, 50);
    let add = next(&before, |cart| cart.lines[17].qty += 1);
    let appended = next(&before, |cart| {
        let line = Line {
            key: key(&names, 99),
            ..cart.lines[0].clone()
        };
        cart.lines.push(line);
    });
    let removed = next(&before, |cart| {
        cart.remove(key(&names, 3), LineList::Cart);
    });
    for after in [&add, &appended, &removed] {
        let delta = encode(&before, after, &names).expect("a delta");
        assert!(delta.len() <= 64, "{} bytes", delta.len());
        assert_eq!(round_trip(&before, after, &names).as_ref(), Some(after));
    }
    assert!(image::encode(&add, &names).len() > 1000);
}

/// No delta where it cannot apply or would not help: no known base, every 32nd version, a
/// changed kind, most lines changed.
#[test]
fn a_full_image_where_a_delta_does_not_fit() {
    let names = Names::default();
    let before = cart_of(&names, 10);
    let unknown = Cart {
        lsn: 0,
        ..before.clone()
    };
    assert!(encode(&unknown, &next(&unknown, |_| {}), &names).is_none());
    let at_32 = Cart {
        version: 31,
        ..before.clone()
    };
    assert!(encode(&at_32, &next(&at_32, |_| {}), &names).is_none());
    let kind = next(&before, |cart| cart.kind = CartKind::Guest);
    assert!(encode(&before, &kind, &names).is_none());
    let all = next(&before, |cart| {
        cart.lines.iter_mut().for_each(|line| line.qty += 1)
    });
    assert!(encode(&before, &all, &names).is_none());
    let _ = image::encode(&all, &names);
}

/// A delta that does not fit the cart it is given is refused, leaving the cart as it was.
#[test]
fn a_delta_on_the_wrong_state_is_refused() {
    let names = Names::default();
    let before = cart_of(&names, 5);
    let after = next(&before, |cart| {
        cart.lines.remove(4);
    });
    let delta = encode(&before, &after, &names).unwrap();
    let mut short = cart_of(&names, 2);
    let unchanged = short.clone();
    assert!(apply(&mut short, &delta, 8, &names).is_err());
    assert_eq!(short, unchanged);
    assert!(apply(&mut short, b"\x09garbage", 8, &names).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Add(usize, u32),
    Set(usize, u32),
    Remove(usize, u8),
    Clear,
    Save(usize),
    Restore(usize),
    Unavailable(usize),
    Promo(bool, u8),
    Currency,
}

fn op() -> impl Strategy<Value = Op> {
    let product = 0usize..12;
    prop_oneof![
        (product.clone(), 1u32..5).prop_map(|(p, q)| Op::Add(p, q)),
        (product.clone(), 0u32..5).prop_map(|(p, q)| Op::Set(p, q)),
        (product.clone(), 0u8..3).prop_map(|(p, l)| Op::Remove(p, l)),
        Just(Op::Clear),
        product.clone().prop_map(Op::Save),
        product.clone().prop_map(Op::Restore),
        product.prop_map(Op::Unavailable),
        (any::<bool>(), 0u8..3).prop_map(|(add, code)| Op::Promo(add, code)),
        Just(Op::Currency),
    ]
}

fn run(cart: &mut Cart, op: &Op, names: &Names) {
    let usd = Currency(*b"USD");
    let price = Some(Price {
        minor: 500,
        currency: usd,
    });
    let _ = match *op {
        Op::Add(p, qty) => cart.add(key(names, p), qty, price, None, &LIMITS, 5),
        Op::Set(p, qty) => cart.set_qty(key(names, p), qty, None, &LIMITS),
        Op::Remove(p, list) => {
            let from = [LineList::Cart, LineList::Saved, LineList::Unavailable][list as usize];
            cart.remove(key(names, p), from);
            Ok(())
        }
        Op::Clear => {
            cart.clear();
            Ok(())
        }
        Op::Save(p) => cart.save(key(names, p), &LIMITS, 6),
        Op::Restore(p) => cart.restore(key(names, p), price, None, &LIMITS),
        Op::Unavailable(p) => {
            cart.move_to_unavailable(&[key(names, p)]);
            Ok(())
        }
        Op::Promo(add, code) => {
            let code = format!("CODE{code}");
            if add {
                cart.add_code(CodeList::Promo, &code);
            } else {
                cart.remove_code(CodeList::Promo, &code);
            }
            Ok(())
        }
        Op::Currency => {
            cart.adopt_currency(Currency(*b"EUR"));
            Ok(())
        }
    };
}

proptest! {
    /// Any sequence of changes: each state's delta from the one before it, applied to that
    /// one, gives exactly the new state (lines in order, saved, unavailable, codes, times,
    /// currency, version).
    #[test]
    fn a_delta_applied_to_its_base_gives_the_next_state(ops in prop::collection::vec(op(), 1..40)) {
        let names = Names::default();
        let mut cart = cart_of(&names, 6);
        for op in &ops {
            let after = next(&cart, |cart| run(cart, op, &names));
            if let Some(applied) = round_trip(&cart, &after, &names) {
                prop_assert_eq!(&applied, &after, "{:?}", op);
                // The sink's way, on images, gives the same image.
                let delta = encode(&cart, &after, &names).unwrap();
                let image = apply_to_image(&image::encode(&cart, &names), &delta, after.version);
                prop_assert_eq!(image, Ok(image::encode(&after, &names)));
            }
            cart = Cart { lsn: cart.lsn + 1, ..after };
        }
    }
}
