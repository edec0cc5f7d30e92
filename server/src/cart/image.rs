//! A cart's after-image: the whole cart with its ids spelled out, as the write-ahead log and
//! snapshots store it (postcard). Interned ids are per process, so they never reach the disk.

use std::borrow::Cow;

use protocol::{CommandError, Currency};
use serde::{Deserialize, Serialize};

use super::names::NamesRead;
use super::{Cart, CartExtra, CartKind, Checkout, Line, LineKey, Names, SavedLine};

/// The encoding's own version, first in every image, so a later layout can still read this one.
/// Format 1 is a [`CartImage`] alone; format 2 (promotions, gift cards, checkout) is a
/// [`CartImage`] followed by an [`ImageTail`]. Both are read.
pub(super) const IMAGE_FORMAT: u8 = 2;

/// The highest quantity a line holds (the highest `max_qty_per_line` a configuration may set).
const QTY_MAX: u32 = 1_000_000;

/// What format 2 added after the format-1 layout.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct ImageTail<'a> {
    #[serde(borrow)]
    pub promo_codes: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub gift_cards: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub checkout: Option<CheckoutImage<'a>>,
}

/// The stored layout of a checkout.
#[derive(Serialize, Deserialize)]
pub(super) struct CheckoutImage<'a> {
    #[serde(borrow)]
    pub token: Cow<'a, str>,
    pub hold_until_ms: u64,
    pub pricing: Vec<u8>,
}

/// Reads an image of either format into its two parts.
pub(super) fn split(bytes: &[u8]) -> Result<(CartImage<'_>, ImageTail<'_>), String> {
    let (image, rest): (CartImage, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|error| format!("undecodable image: {error}"))?;
    let tail = match image.format {
        1 if rest.is_empty() => ImageTail::default(),
        2 => postcard::from_bytes(rest)
            .map_err(|error| format!("undecodable image tail: {error}"))?,
        format => {
            return Err(format!(
                "cart image format {format} is not known to this cartd"
            ))
        }
    };
    Ok((image, tail))
}

/// Writes an image in the current format.
pub(super) fn join(image: &CartImage, tail: &ImageTail) -> Vec<u8> {
    let bytes = postcard::to_allocvec(image).expect("encoding into a Vec cannot fail");
    postcard::to_extend(tail, bytes).expect("encoding into a Vec cannot fail")
}

/// The stored layout of a cart.
#[derive(Serialize, Deserialize)]
pub(super) struct CartImage<'a> {
    pub format: u8,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
    pub guest: bool,
    pub currency: [u8; 3],
    #[serde(borrow)]
    pub lines: Vec<LineImage<'a>>,
    #[serde(borrow)]
    pub saved: Vec<(LineImage<'a>, u64)>,
    #[serde(borrow)]
    pub unavailable: Vec<LineImage<'a>>,
}

/// The stored layout of a line.
#[derive(Serialize, Deserialize)]
pub(super) struct LineImage<'a> {
    #[serde(borrow)]
    pub product: Cow<'a, str>,
    #[serde(borrow)]
    pub variant: Cow<'a, str>,
    pub qty: u32,
    pub unit_price: i64,
    pub price_at_add: i64,
    pub added_at_ms: u64,
    pub foreign_price: bool,
}

impl<'a> LineImage<'a> {
    pub(super) fn of(line: &Line, names: &'a NamesRead<'_>) -> LineImage<'a> {
        LineImage {
            product: Cow::Borrowed(names.resolve(line.key.product)),
            variant: Cow::Borrowed(names.resolve(line.key.variant)),
            qty: line.qty,
            unit_price: line.unit_price,
            price_at_add: line.price_at_add,
            added_at_ms: line.added_at_ms,
            foreign_price: line.foreign_price,
        }
    }

    /// Refuses a line no cartd writes: a quantity outside 1..=1,000,000 (the highest
    /// `max_qty_per_line`) or a price outside 0..=`PRICE_MINOR_MAX`. Pricing and the view rely
    /// on those bounds (a zero quantity trips the engine's asserts, a larger product overflows).
    pub(super) fn check(&self) -> Result<(), String> {
        let price_ok = |price: i64| (0..=protocol::PRICE_MINOR_MAX).contains(&price);
        if !(1..=QTY_MAX).contains(&self.qty)
            || !price_ok(self.unit_price)
            || !price_ok(self.price_at_add)
        {
            return Err(format!(
                "a line of {} at {} (added at {}) is out of bounds",
                self.qty, self.unit_price, self.price_at_add
            ));
        }
        Ok(())
    }

    pub(super) fn to_line(&self, names: &Names) -> Result<Line, CommandError> {
        self.check().map_err(CommandError::err)?;
        Ok(Line {
            key: LineKey {
                product: names.intern(self.product.as_bytes())?,
                variant: names.intern(self.variant.as_bytes())?,
            },
            qty: self.qty,
            unit_price: self.unit_price,
            price_at_add: self.price_at_add,
            added_at_ms: self.added_at_ms,
            foreign_price: self.foreign_price,
        })
    }
}

/// A cart's out-of-line block as the image stores it: saved and unavailable lines in the
/// image's body, codes and checkout in its tail.
pub(super) struct ExtraParts<'a> {
    pub saved: Vec<(LineImage<'a>, u64)>,
    pub unavailable: Vec<LineImage<'a>>,
    pub tail: ImageTail<'a>,
}

impl<'a> ExtraParts<'a> {
    /// The parts of `cart`'s extra block (all empty when it has none).
    pub(super) fn of(cart: &'a Cart, names: &'a NamesRead<'_>) -> ExtraParts<'a> {
        ExtraParts {
            saved: cart
                .saved()
                .iter()
                .map(|saved| (LineImage::of(&saved.line, names), saved.saved_at_ms))
                .collect(),
            unavailable: cart
                .unavailable()
                .iter()
                .map(|line| LineImage::of(line, names))
                .collect(),
            tail: ImageTail {
                promo_codes: cart
                    .promo_codes()
                    .iter()
                    .map(|c| Cow::Borrowed(&**c))
                    .collect(),
                gift_cards: cart
                    .gift_cards()
                    .iter()
                    .map(|c| Cow::Borrowed(&**c))
                    .collect(),
                checkout: cart.checkout().map(|checkout| CheckoutImage {
                    token: Cow::Borrowed(&checkout.token),
                    hold_until_ms: checkout.hold_until_ms,
                    pricing: checkout.pricing.to_vec(),
                }),
            },
        }
    }

    /// The extra block these parts make (`None` when empty).
    pub(super) fn extra(
        saved: &[(LineImage<'_>, u64)],
        unavailable: &[LineImage<'_>],
        tail: &ImageTail<'_>,
        names: &Names,
    ) -> Result<Option<Box<CartExtra>>, CommandError> {
        let saved = saved
            .iter()
            .map(|(line, saved_at_ms)| {
                Ok(SavedLine {
                    line: line.to_line(names)?,
                    saved_at_ms: *saved_at_ms,
                })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        let extra = CartExtra {
            saved,
            unavailable: decode_lines(unavailable, names)?,
            promo_codes: tail.promo_codes.iter().map(|c| Box::from(&**c)).collect(),
            gift_cards: tail.gift_cards.iter().map(|c| Box::from(&**c)).collect(),
            checkout: tail.checkout.as_ref().map(|checkout| Checkout {
                token: Box::from(&*checkout.token),
                hold_until_ms: checkout.hold_until_ms,
                pricing: checkout.pricing.clone().into(),
            }),
        };
        Ok((!extra.is_empty()).then(|| Box::new(extra)))
    }
}

/// Encodes `cart` as an after-image.
pub fn encode(cart: &Cart, names: &Names) -> Vec<u8> {
    let names = &names.read();
    let ExtraParts {
        saved,
        unavailable,
        tail,
    } = ExtraParts::of(cart, names);
    let image = CartImage {
        format: IMAGE_FORMAT,
        version: cart.version,
        created_at_ms: cart.created_at_ms,
        updated_at_ms: cart.updated_at_ms,
        expires_at_ms: cart.expires_at_ms,
        guest: cart.kind == CartKind::Guest,
        currency: cart.currency.0,
        lines: cart
            .lines
            .iter()
            .map(|line| LineImage::of(line, names))
            .collect(),
        saved,
        unavailable,
    };
    join(&image, &tail)
}

/// Decodes an after-image, interning its ids. The validation cache and the wheel tick start
/// empty: they are this process's business; the LSN of the cart's last change is not in the
/// image (the record or snapshot entry carrying it knows it) and starts at 0.
pub fn decode(bytes: &[u8], names: &Names) -> Result<Cart, CommandError> {
    let (image, tail) = split(bytes).map_err(CommandError::err)?;
    let lines = decode_lines(&image.lines, names)?;
    let extra = ExtraParts::extra(&image.saved, &image.unavailable, &tail, names)?;
    Ok(Cart {
        version: image.version,
        created_at_ms: image.created_at_ms,
        updated_at_ms: image.updated_at_ms,
        expires_at_ms: image.expires_at_ms,
        logged_expires_at_ms: 0,
        validated_at_ms: 0,
        wheel_tick: 0,
        lsn: 0,
        kind: if image.guest {
            CartKind::Guest
        } else {
            CartKind::User
        },
        currency: Currency(image.currency),
        lines,
        extra,
    })
}

fn decode_lines(lines: &[LineImage], names: &Names) -> Result<Vec<Line>, CommandError> {
    lines.iter().map(|line| line.to_line(names)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::CodeList;

    #[test]
    fn a_cart_survives_encoding_with_all_its_lists() {
        let names = Names::default();
        let line = |product: &str, qty| Line {
            key: LineKey {
                product: names.intern(product.as_bytes()).unwrap(),
                variant: names.intern(b"-").unwrap(),
            },
            qty,
            unit_price: 999,
            price_at_add: 1099,
            added_at_ms: 17,
            foreign_price: product == "eur",
        };
        let mut cart = Cart::new(CartKind::Guest, Currency(*b"USD"), 5);
        cart.version = 9;
        cart.expires_at_ms = 86_400_005;
        cart.lines.push(line("a", 2));
        cart.extra_mut().saved.push(SavedLine {
            line: line("s", 1),
            saved_at_ms: 40,
        });
        cart.extra_mut().unavailable.push(line("eur", 3));
        cart.add_code(CodeList::Promo, "SAVE10");
        cart.add_code(CodeList::GiftCard, "GC-1");
        cart.begin_checkout(Checkout {
            token: "abc".into(),
            hold_until_ms: 900_000,
            pricing: vec![1, 2, 3].into(),
        });
        let image = encode(&cart, &names);
        let other_names = Names::default();
        let decoded = decode(&image, &other_names).unwrap();
        assert_eq!(encode(&decoded, &other_names), image);
        assert_eq!(decoded.version, 9);
        assert_eq!(decoded.kind, CartKind::Guest);
        assert!(decoded.unavailable()[0].foreign_price);
        assert_eq!(decoded.promo_codes(), [Box::<str>::from("SAVE10")]);
        assert_eq!(decoded.gift_cards(), [Box::<str>::from("GC-1")]);
        assert_eq!(decoded.checkout(), cart.checkout());
        assert_eq!(
            other_names
                .read()
                .resolve(decoded.saved()[0].line.key.product),
            "s"
        );
    }

    #[test]
    fn a_format_1_image_still_reads() {
        let names = Names::default();
        let old = CartImage {
            format: 1,
            version: 3,
            created_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: 99,
            guest: false,
            currency: *b"EUR",
            lines: vec![LineImage {
                product: "p".into(),
                variant: "-".into(),
                qty: 2,
                unit_price: 5,
                price_at_add: 5,
                added_at_ms: 1,
                foreign_price: false,
            }],
            saved: Vec::new(),
            unavailable: Vec::new(),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let cart = decode(&bytes, &names).unwrap();
        assert_eq!((cart.version, cart.lines.len()), (3, 1));
        assert!(cart.extra.is_none());
        assert!(decode(&[bytes.as_slice(), &[0]].concat(), &names).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_cart() {
        let names = Names::default();
        assert!(decode(b"\x07\x01\x02", &names).is_err());
        assert!(decode(b"", &names).is_err());
    }
}
