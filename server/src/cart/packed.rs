//! A cart and its key packed into bytes, the form the store keeps them in (see DESIGN.md, "The
//! store's memory"). A [`Cart`] is the form every operation works on; the store decodes one,
//! lets the operation change it and packs it again under the same shard lock.
//!
//! Integers are LEB128 varints; times are stored as wrapping differences from the cart's
//! creation time and `price_at_add` as one from `unit_price`, zigzag-encoded, so typical
//! values take a byte or two and every `u64`/`i64` still round-trips exactly. An entry starts
//! with its length (so a bucket of colliding keys can be walked) and then the fields the store
//! reads without decoding the cart: key, creation time, deadline, wheel tick.
//!
//! The bytes never leave the process: the write-ahead log and snapshots use [`super::image`].
//! They are only ever read back by this module, from bytes it wrote, so a malformed entry is
//! a bug here and decoding `expect`s rather than returning errors.

use protocol::Currency;

use super::{Cart, CartExtra, CartKind, Checkout, Line, LineKey, NameId, SavedLine};

const FLAG_GUEST: u8 = 1;
const FLAG_VALIDATED: u8 = 1 << 1;
const FLAG_EXTRA: u8 = 1 << 2;
const FLAG_LOGGED_DEADLINE: u8 = 1 << 3;

/// Appends `key` and `cart` to `out` as one entry, stamped with `wheel_tick` (the store's
/// wheel decides it, not `cart.wheel_tick`).
pub fn encode_entry(out: &mut Vec<u8>, key: &[u8], cart: &Cart, wheel_tick: u32) {
    let start = out.len();
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    let base_ms = cart.created_at_ms;
    put_varint(out, base_ms);
    put_time(out, cart.expires_at_ms, base_ms);
    put_varint(out, u64::from(wheel_tick));
    put_varint(out, cart.version);
    put_varint(out, cart.lsn);
    put_time(out, cart.updated_at_ms, base_ms);
    let extra = cart.extra.as_deref();
    let mut flags = 0;
    if cart.kind == CartKind::Guest {
        flags |= FLAG_GUEST;
    }
    if cart.validated_at_ms != 0 {
        flags |= FLAG_VALIDATED;
    }
    if extra.is_some() {
        flags |= FLAG_EXTRA;
    }
    if cart.logged_expires_at_ms != 0 {
        flags |= FLAG_LOGGED_DEADLINE;
    }
    out.push(flags);
    if cart.validated_at_ms != 0 {
        put_time(out, cart.validated_at_ms, base_ms);
    }
    if cart.logged_expires_at_ms != 0 {
        put_time(out, cart.logged_expires_at_ms, base_ms);
    }
    out.extend_from_slice(&cart.currency.0);
    put_lines(out, &cart.lines, base_ms);
    if let Some(extra) = extra {
        put_varint(out, extra.saved.len() as u64);
        for saved in &extra.saved {
            put_line(out, &saved.line, base_ms);
            put_time(out, saved.saved_at_ms, base_ms);
        }
        put_lines(out, &extra.unavailable, base_ms);
        put_codes(out, &extra.promo_codes);
        put_codes(out, &extra.gift_cards);
        match &extra.checkout {
            None => out.push(0),
            Some(checkout) => {
                out.push(1);
                put_bytes(out, checkout.token.as_bytes());
                put_time(out, checkout.hold_until_ms, base_ms);
                put_bytes(out, &checkout.pricing);
            }
        }
    }
    // The length goes in front, now that it is known.
    let mut length = Vec::with_capacity(2);
    put_varint(&mut length, (out.len() - start) as u64);
    out.splice(start..start, length);
}

/// One packed entry: a key and its cart.
#[derive(Debug, Clone, Copy)]
pub struct PackedEntry<'a> {
    /// The entry's bytes, its length prefix included.
    bytes: &'a [u8],
    /// Where the cart's own fields start (after the key).
    body_at: usize,
    key: &'a [u8],
}

impl<'a> PackedEntry<'a> {
    /// The entry at the start of `bytes`.
    fn first_of(bytes: &'a [u8]) -> PackedEntry<'a> {
        let mut reader = Reader { bytes, at: 0 };
        let length = reader.varint() as usize;
        let bytes = &bytes[..reader.at + length];
        let mut reader = Reader {
            bytes,
            at: reader.at,
        };
        let key_bytes = reader.varint() as usize;
        let key = reader.take(key_bytes);
        PackedEntry {
            bytes,
            body_at: reader.at,
            key,
        }
    }

    /// Bytes the entry takes, its length prefix included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: an entry holds at least a key length and a cart.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The cart's key.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The cart's deadline and its wheel tick, read without decoding the cart.
    pub fn deadline(&self) -> (u64, u32) {
        let mut reader = Reader {
            bytes: self.bytes,
            at: self.body_at,
        };
        let base_ms = reader.varint();
        let expires_at_ms = reader.time(base_ms);
        (expires_at_ms, reader.wheel_tick())
    }

    /// The LSN of the cart's last change, read without decoding the cart.
    pub fn lsn(&self) -> u64 {
        let mut reader = Reader {
            bytes: self.bytes,
            at: self.body_at,
        };
        let created_at_ms = reader.varint();
        reader.time(created_at_ms);
        reader.wheel_tick();
        reader.varint(); // version
        reader.varint()
    }

    /// The cart.
    pub fn cart(&self) -> Cart {
        let mut reader = Reader {
            bytes: self.bytes,
            at: self.body_at,
        };
        let created_at_ms = reader.varint();
        let expires_at_ms = reader.time(created_at_ms);
        let wheel_tick = reader.wheel_tick();
        let version = reader.varint();
        let lsn = reader.varint();
        let updated_at_ms = reader.time(created_at_ms);
        let flags = reader.take(1)[0];
        let validated_at_ms = if flags & FLAG_VALIDATED != 0 {
            reader.time(created_at_ms)
        } else {
            0
        };
        let logged_expires_at_ms = if flags & FLAG_LOGGED_DEADLINE != 0 {
            reader.time(created_at_ms)
        } else {
            0
        };
        let currency = Currency(reader.take(3).try_into().expect("took three bytes"));
        let lines = reader.lines(created_at_ms);
        let extra = (flags & FLAG_EXTRA != 0).then(|| Box::new(reader.extra(created_at_ms)));
        assert_eq!(reader.at, self.bytes.len(), "a packed cart is read whole");
        Cart {
            version,
            created_at_ms,
            updated_at_ms,
            expires_at_ms,
            logged_expires_at_ms,
            validated_at_ms,
            wheel_tick,
            lsn,
            kind: if flags & FLAG_GUEST != 0 {
                CartKind::Guest
            } else {
                CartKind::User
            },
            currency,
            lines,
            extra,
        }
    }
}

/// The entries packed one after another in `bytes`.
pub fn entries(bytes: &[u8]) -> impl Iterator<Item = PackedEntry<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == bytes.len() {
            return None;
        }
        let entry = PackedEntry::first_of(&bytes[at..]);
        at += entry.len();
        Some(entry)
    })
}

/// Where the entry for `key` lies in `bytes`, and the entry.
pub fn find<'a>(bytes: &'a [u8], key: &[u8]) -> Option<(usize, PackedEntry<'a>)> {
    let mut at = 0;
    entries(bytes).find_map(|entry| {
        let found = (entry.key() == key).then_some((at, entry));
        at += entry.len();
        found
    })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A time as its wrapping distance from `base_ms`: exact for every `u64`, short when near.
fn put_time(out: &mut Vec<u8>, time_ms: u64, base_ms: u64) {
    put_varint(out, zigzag(time_ms.wrapping_sub(base_ms) as i64));
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_codes(out: &mut Vec<u8>, codes: &[Box<str>]) {
    put_varint(out, codes.len() as u64);
    for code in codes {
        put_bytes(out, code.as_bytes());
    }
}

fn put_lines(out: &mut Vec<u8>, lines: &[Line], base_ms: u64) {
    put_varint(out, lines.len() as u64);
    for line in lines {
        put_line(out, line, base_ms);
    }
}

fn put_line(out: &mut Vec<u8>, line: &Line, base_ms: u64) {
    put_varint(out, line.key.product.into_usize() as u64);
    put_varint(out, line.key.variant.into_usize() as u64);
    put_varint(
        out,
        u64::from(line.qty) << 1 | u64::from(line.foreign_price),
    );
    put_varint(out, zigzag(line.unit_price));
    put_varint(out, zigzag(line.price_at_add.wrapping_sub(line.unit_price)));
    put_time(out, line.added_at_ms, base_ms);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> &'a [u8] {
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        taken
    }

    fn varint(&mut self) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.bytes[self.at];
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    fn time(&mut self, base_ms: u64) -> u64 {
        base_ms.wrapping_add(unzigzag(self.varint()) as u64)
    }

    fn wheel_tick(&mut self) -> u32 {
        u32::try_from(self.varint()).expect("a wheel tick was packed from a u32")
    }

    fn name(&mut self) -> NameId {
        let id = usize::try_from(self.varint()).expect("a name id was packed from a usize");
        NameId::try_from_usize(id).expect("a name id was packed from a valid id")
    }

    fn line(&mut self, base_ms: u64) -> Line {
        let product = self.name();
        let variant = self.name();
        let qty_and_flag = self.varint();
        let unit_price = unzigzag(self.varint());
        let price_at_add = unit_price.wrapping_add(unzigzag(self.varint()));
        Line {
            key: LineKey { product, variant },
            qty: u32::try_from(qty_and_flag >> 1).expect("a quantity was packed from a u32"),
            unit_price,
            price_at_add,
            added_at_ms: self.time(base_ms),
            foreign_price: qty_and_flag & 1 != 0,
        }
    }

    fn lines(&mut self, base_ms: u64) -> Vec<Line> {
        let count = self.varint() as usize;
        (0..count).map(|_| self.line(base_ms)).collect()
    }

    fn extra(&mut self, base_ms: u64) -> CartExtra {
        let saved_count = self.varint() as usize;
        let saved = (0..saved_count)
            .map(|_| {
                let line = self.line(base_ms);
                SavedLine {
                    line,
                    saved_at_ms: self.time(base_ms),
                }
            })
            .collect();
        let unavailable = self.lines(base_ms);
        let promo_codes = self.codes();
        let gift_cards = self.codes();
        let checkout = (self.take(1)[0] == 1).then(|| Checkout {
            token: self.text(),
            hold_until_ms: self.time(base_ms),
            pricing: self.bytes().into(),
        });
        CartExtra {
            saved,
            unavailable,
            promo_codes,
            gift_cards,
            checkout,
        }
    }

    fn bytes(&mut self) -> &'a [u8] {
        let length = self.varint() as usize;
        self.take(length)
    }

    fn text(&mut self) -> Box<str> {
        std::str::from_utf8(self.bytes())
            .expect("packed text was packed from a str")
            .into()
    }

    fn codes(&mut self) -> Vec<Box<str>> {
        let count = self.varint() as usize;
        (0..count).map(|_| self.text()).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn line() -> impl Strategy<Value = Line> {
        (
            (0usize..5, 0usize..(u32::MAX as usize - 1)),
            any::<u32>(),
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(
                |(
                    (product, variant),
                    qty,
                    unit_price,
                    price_at_add,
                    added_at_ms,
                    foreign_price,
                )| {
                    Line {
                        key: LineKey {
                            product: NameId::try_from_usize(product).unwrap(),
                            variant: NameId::try_from_usize(variant).unwrap(),
                        },
                        qty,
                        unit_price,
                        price_at_add,
                        added_at_ms,
                        foreign_price,
                    }
                },
            )
    }

    fn extra() -> impl Strategy<Value = Option<Box<CartExtra>>> {
        let saved = prop::collection::vec((line(), any::<u64>()), 0..3);
        let unavailable = prop::collection::vec(line(), 0..3);
        let codes = || prop::collection::vec("[A-Z0-9é]{1,8}".prop_map(Box::<str>::from), 0..3);
        let checkout = proptest::option::of(
            (
                "[a-f0-9]{32}",
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..40),
            )
                .prop_map(|(token, hold_until_ms, pricing)| Checkout {
                    token: token.into(),
                    hold_until_ms,
                    pricing: pricing.into(),
                }),
        );
        proptest::option::of((saved, unavailable, codes(), codes(), checkout).prop_map(
            |(saved, unavailable, promo_codes, gift_cards, checkout)| {
                Box::new(CartExtra {
                    saved: saved
                        .into_iter()
                        .map(|(line, saved_at_ms)| SavedLine { line, saved_at_ms })
                        .collect(),
                    unavailable,
                    promo_codes,
                    gift_cards,
                    checkout,
                })
            },
        ))
    }

    prop_compose! {
        fn cart()(
            times in any::<[u64; 6]>(),
            lsn in any::<u64>(),
            wheel_tick in any::<u32>(),
            guest in any::<bool>(),
            currency in any::<[u8; 3]>(),
            lines in prop::collection::vec(line(), 0..6),
            extra in extra(),
        ) -> Cart {
            let [version, created_at_ms, updated_at_ms, expires_at_ms, validated_at_ms, logged] =
                times;
            Cart {
                version,
                created_at_ms,
                updated_at_ms,
                expires_at_ms,
                logged_expires_at_ms: logged,
                validated_at_ms,
                wheel_tick,
                lsn,
                kind: if guest { CartKind::Guest } else { CartKind::User },
                currency: Currency(currency),
                lines,
                extra,
            }
        }
    }

    proptest! {
        /// Every cart, whatever its values, comes back exactly, and entries packed one after
        /// another are found by key.
        #[test]
        fn every_cart_round_trips(
            carts in prop::collection::vec(cart(), 1..4),
            keys in prop::collection::hash_set(prop::collection::vec(any::<u8>(), 0..300), 4),
        ) {
            let keys: Vec<_> = keys.into_iter().collect();
            let mut bytes = Vec::new();
            for (cart, key) in carts.iter().zip(&keys) {
                encode_entry(&mut bytes, key, cart, cart.wheel_tick);
            }
            prop_assert_eq!(entries(&bytes).count(), carts.len());
            for (cart, key) in carts.iter().zip(&keys) {
                let (_, entry) = find(&bytes, key).expect("packed above");
                prop_assert_eq!(entry.key(), &key[..]);
                prop_assert_eq!(entry.deadline(), (cart.expires_at_ms, cart.wheel_tick));
                prop_assert_eq!(&entry.cart(), cart);
            }
            prop_assert!(find(&bytes, &keys[3]).is_none() || carts.len() == 4);
        }
    }

    #[test]
    fn a_plain_four_line_cart_packs_small() {
        let now_ms = 1_764_000_000_000;
        let mut cart = Cart::new(CartKind::User, Currency(*b"USD"), now_ms);
        cart.version = 4;
        cart.lsn = 1_234_567;
        cart.expires_at_ms = now_ms + 30 * 86_400_000;
        cart.wheel_tick = (now_ms / 1000) as u32 + 4095;
        for product in 0..4 {
            cart.lines.push(Line {
                key: crate::cart::tests::key(product),
                qty: 1,
                unit_price: 999,
                price_at_add: 999,
                added_at_ms: now_ms + 3,
                foreign_price: false,
            });
        }
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, b"cart:123456", &cart, cart.wheel_tick);
        assert!(bytes.len() <= 75, "{} bytes", bytes.len());
    }
}
