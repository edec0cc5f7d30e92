//! Reference data in the log: catalog entries, promotions and gift cards are changed through
//! the store, which logs each change under the registry lock that applies it, so the log's
//! order is the apply order of every entry. Each record holds the entry's whole state (or its
//! tombstone), so replaying any suffix in order ends at the logged state; recovery and
//! snapshots put the entries back here without logging them again.
//!
//! Keys and images in the log: a catalog entry is keyed by its product and variant
//! (`len u8 | product | variant`) and imaged as [`CatalogImage`]; a promotion by its code,
//! imaged as its canonical JSON document; a gift card by its code, imaged as [`GiftCardImage`].
//! What the upstream catalog and inventory services answer is a cache and is not logged.

use persistence::sink::{ReferenceKey, ReferenceValue};
use persistence::{ChangeRef, Space, StateRef, TombstoneReason};
use protocol::{CommandError, Currency};
use serde::{Deserialize, Serialize};

use super::shared::Written;
use super::stamps::Stamp;
use super::Store;
use crate::cart::{LineKey, Names, Price};
use crate::catalog::CatalogEntry;
use crate::pricing::promo::Promotion;
use crate::pricing::{PeerHolds, Spent};

/// A catalog entry as the log and snapshots hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogImage {
    /// Price in minor units and its currency.
    pub price: Option<(i64, [u8; 3])>,
    /// Units in stock.
    pub stock: Option<u64>,
    /// Per-cart purchase limit.
    pub max_qty: Option<u32>,
    /// Last change.
    pub updated_at_ms: u64,
}

/// A gift card as the log and snapshots hold it: its balance (this node's holds are rebuilt
/// from the carts frozen for checkout). In a cluster, what the card's owner keeps for other
/// nodes' checkouts ([`PeerHolds`]) follows it in the same bytes when there is any, so a
/// standalone card's image is the same as ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiftCardImage {
    /// Balance, minor units.
    pub balance: i64,
    /// Its currency.
    pub currency: [u8; 3],
}

/// The log image of a card: [`GiftCardImage`], then its [`PeerHolds`] if it keeps any.
pub fn gift_card_image(balance: i64, currency: Currency, peer_holds: &PeerHolds) -> Vec<u8> {
    let mut image = encode(&GiftCardImage {
        balance,
        currency: currency.0,
    });
    if !peer_holds.is_empty() {
        image.extend_from_slice(&encode(peer_holds));
    }
    image
}

/// A card's log image read back (see [`gift_card_image`]).
pub fn decode_gift_card(image: &[u8]) -> Result<(GiftCardImage, PeerHolds), postcard::Error> {
    let (card, rest) = postcard::take_from_bytes::<GiftCardImage>(image)?;
    let peer_holds = if rest.is_empty() {
        PeerHolds::default()
    } else {
        postcard::from_bytes::<PeerHolds>(rest)?
    };
    Ok((card, peer_holds))
}

impl CatalogImage {
    /// The image of `entry`.
    pub fn of(entry: &CatalogEntry) -> CatalogImage {
        CatalogImage {
            price: entry.price.map(|price| (price.minor, price.currency.0)),
            stock: entry.stock,
            max_qty: entry.max_qty,
            updated_at_ms: entry.updated_at_ms,
        }
    }

    /// The entry it holds. Refresh times start at 0: after a restart the upstream services (if
    /// any) are asked again.
    pub fn entry(&self) -> CatalogEntry {
        CatalogEntry {
            price: self.price.map(|(minor, currency)| Price {
                minor,
                currency: Currency(currency),
            }),
            stock: self.stock,
            max_qty: self.max_qty,
            updated_at_ms: self.updated_at_ms,
            price_refreshed_at_ms: 0,
            stock_refreshed_at_ms: 0,
        }
    }
}

/// The log's key of a catalog entry: `len u8 | product | variant`.
pub fn catalog_key(names: &Names, key: LineKey) -> Vec<u8> {
    let names = names.read();
    let product = names.resolve(key.product).as_bytes();
    let variant = names.resolve(key.variant).as_bytes();
    let mut out = Vec::with_capacity(1 + product.len() + variant.len());
    out.push(u8::try_from(product.len()).expect("product ids are at most 64 bytes"));
    out.extend_from_slice(product);
    out.extend_from_slice(variant);
    out
}

/// The product and variant a catalog key names.
pub fn split_catalog_key(key: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (&length, rest) = key.split_first().ok_or("an empty catalog key")?;
    let length = usize::from(length);
    if length == 0 || length >= rest.len() {
        return Err(format!("a catalog key with product length {length}"));
    }
    Ok(rest.split_at(length))
}

/// The reference table row a change under the log's `key` is about.
pub fn row_key(space: Space, key: &[u8]) -> Result<ReferenceKey, String> {
    Ok(match space {
        Space::Catalog => {
            let (product, variant) = split_catalog_key(key)?;
            ReferenceKey::Catalog {
                product: product.to_vec(),
                variant: variant.to_vec(),
            }
        }
        Space::Promotion => ReferenceKey::Promotion(key.to_vec()),
        Space::GiftCard => ReferenceKey::GiftCard(key.to_vec()),
        Space::Cart => return Err("a cart is not reference data".into()),
        Space::Handoff => return Err("a handoff has no row".into()),
    })
}

/// The reference table values of an image in `space`.
pub fn row_value(space: Space, image: &[u8]) -> Result<ReferenceValue, String> {
    let undecodable = |error: postcard::Error| format!("undecodable image: {error}");
    Ok(match space {
        Space::Catalog => {
            let image: CatalogImage = postcard::from_bytes(image).map_err(undecodable)?;
            let (price, currency) = match image.price {
                Some((minor, currency)) => (
                    Some(minor),
                    Some(String::from_utf8_lossy(&currency).into_owned()),
                ),
                None => (None, None),
            };
            ReferenceValue::Catalog {
                price,
                currency,
                stock: image
                    .stock
                    .map(|stock| i64::try_from(stock).unwrap_or(i64::MAX)),
                max_qty: image
                    .max_qty
                    .map(|qty| i32::try_from(qty).unwrap_or(i32::MAX)),
                updated_at_ms: i64::try_from(image.updated_at_ms).unwrap_or(i64::MAX),
            }
        }
        Space::Promotion => {
            let document: serde_json::Value =
                serde_json::from_slice(image).map_err(|error| error.to_string())?;
            let automatic = document["automatic"].as_bool().unwrap_or(false);
            ReferenceValue::Promotion {
                document,
                automatic,
            }
        }
        Space::GiftCard => {
            let (image, holds) = decode_gift_card(image).map_err(undecodable)?;
            let spent = holds.spent.into_iter();
            ReferenceValue::GiftCard {
                balance: image.balance,
                currency: String::from_utf8_lossy(&image.currency).into_owned(),
                peer_spent: spent
                    .map(|(token, amount, until)| (token.into(), amount, until))
                    .collect(),
            }
        }
        Space::Cart => return Err("a cart is not reference data".into()),
        Space::Handoff => return Err("a handoff has no row".into()),
    })
}

/// The log's space, key and image of a reference row read back for a restore.
pub fn row_image(
    key: &ReferenceKey,
    value: &ReferenceValue,
) -> Result<(Space, Vec<u8>, Vec<u8>), String> {
    let currency = |text: &str| -> Result<[u8; 3], String> {
        text.as_bytes()
            .try_into()
            .map_err(|_| format!("currency {text:?} is not three letters"))
    };
    match (key, value) {
        (
            ReferenceKey::Catalog { product, variant },
            ReferenceValue::Catalog {
                price,
                currency: price_currency,
                stock,
                max_qty,
                updated_at_ms,
            },
        ) => {
            let price = match (price, price_currency) {
                (Some(minor), Some(text)) => Some((*minor, currency(text)?)),
                _ => None,
            };
            let image = CatalogImage {
                price,
                stock: stock.map(|stock| stock.max(0) as u64),
                max_qty: max_qty.map(|qty| qty.max(0) as u32),
                updated_at_ms: (*updated_at_ms).max(0) as u64,
            };
            let length = u8::try_from(product.len()).map_err(|_| "a product id over 255 bytes")?;
            let key = [&[length][..], product, variant].concat();
            Ok((Space::Catalog, key, encode(&image)))
        }
        (ReferenceKey::Promotion(code), ReferenceValue::Promotion { document, .. }) => Ok((
            Space::Promotion,
            code.clone(),
            document.to_string().into_bytes(),
        )),
        (
            ReferenceKey::GiftCard(code),
            ReferenceValue::GiftCard {
                balance,
                currency: text,
                peer_spent,
            },
        ) => {
            let holds = PeerHolds {
                holds: Vec::new(),
                spent: peer_spent_of(peer_spent),
            };
            let currency = Currency(currency(text)?);
            Ok((
                Space::GiftCard,
                code.clone(),
                gift_card_image(*balance, currency, &holds),
            ))
        }
        (key, value) => Err(format!("a row {value:?} does not fit {key:?}")),
    }
}

fn encode<T: Serialize>(image: &T) -> Vec<u8> {
    postcard::to_allocvec(image).expect("encoding into a Vec cannot fail")
}

/// A gift card's change as part of a record (a checkout's spends).
pub(super) fn spent_image(spent: &Spent) -> (Box<[u8]>, Vec<u8>) {
    let image = gift_card_image(spent.balance, spent.currency, &spent.peer_holds);
    (spent.code.as_bytes().into(), image)
}

/// The change for a reference entry's new image, or its tombstone, written at `stamp` (its
/// origin goes in the change's `version`, unused for reference data otherwise).
pub(super) fn reference_change<'a>(
    space: Space,
    key: &'a [u8],
    image: Option<&'a [u8]>,
    stamp: Stamp,
) -> ChangeRef<'a> {
    ChangeRef {
        space,
        key,
        version: stamp.origin,
        at_ms: stamp.at_ms,
        state: match image {
            Some(image) => StateRef::Image(image),
            None => StateRef::Tombstone(TombstoneReason::Deleted),
        },
        event: None,
        guard: None,
    }
}

impl Store {
    pub(super) fn log_reference(
        &self,
        space: Space,
        key: &[u8],
        image: Option<&[u8]>,
        stamp: Stamp,
    ) {
        self.append(&[reference_change(space, key, image, stamp)]);
    }

    /// `CATALOG.SET`, logged (and shared with the other primaries of a cluster).
    pub fn catalog_set(
        &self,
        key: LineKey,
        price: Price,
        stock: Option<u64>,
        max_qty: Option<u32>,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let log_key = catalog_key(&self.names, key);
        self.write_shared(Space::Catalog, &log_key, now_ms, |stamp| {
            let mut written = Written::Nothing;
            self.catalog
                .set(key, price, stock, max_qty, now_ms, |entry| {
                    written = self.log_catalog(&log_key, entry, stamp);
                })?;
            Ok(written)
        })
        .map(|_| ())
    }

    /// `STOCK.SET`, logged (and shared).
    pub fn catalog_set_stock(
        &self,
        key: LineKey,
        stock: u64,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let log_key = catalog_key(&self.names, key);
        self.write_shared(Space::Catalog, &log_key, now_ms, |stamp| {
            let mut written = Written::Nothing;
            self.catalog.set_stock(key, stock, now_ms, |entry| {
                written = self.log_catalog(&log_key, entry, stamp);
            })?;
            Ok(written)
        })
        .map(|_| ())
    }

    /// `CATALOG.DEL`, logged (and shared): whether the variant was known.
    pub fn catalog_remove(&self, key: LineKey, now_ms: u64) -> bool {
        let log_key = catalog_key(&self.names, key);
        let removed = self.write_shared(Space::Catalog, &log_key, now_ms, |stamp| {
            let removed = self.catalog.remove(key, || {
                self.log_reference(Space::Catalog, &log_key, None, stamp);
            });
            Ok::<_, std::convert::Infallible>(if removed {
                Written::Gone
            } else {
                Written::Nothing
            })
        });
        removed.unwrap_or_else(|never| match never {})
    }

    fn log_catalog(&self, log_key: &[u8], entry: &CatalogEntry, stamp: Stamp) -> Written {
        let image = encode(&CatalogImage::of(entry));
        self.log_reference(Space::Catalog, log_key, Some(&image), stamp);
        Written::Image(image)
    }

    /// `PROMO.SET`, logged (and shared).
    pub fn promo_set(&self, code: &str, promo: Promotion, now_ms: u64) -> Result<(), String> {
        let key = code.as_bytes();
        self.write_shared(Space::Promotion, key, now_ms, |stamp| {
            let mut written = Written::Nothing;
            self.promotions.set(code, promo, |promo| {
                let image = promo.to_json().to_string().into_bytes();
                self.log_reference(Space::Promotion, key, Some(&image), stamp);
                written = Written::Image(image);
            })?;
            Ok(written)
        })
        .map(|_| ())
    }

    /// `PROMO.DEL`, logged (and shared): whether there was one.
    pub fn promo_remove(&self, code: &str, now_ms: u64) -> bool {
        let key = code.as_bytes();
        let removed = self.write_shared(Space::Promotion, key, now_ms, |stamp| {
            let removed = self.promotions.remove(code, || {
                self.log_reference(Space::Promotion, key, None, stamp);
            });
            Ok::<_, std::convert::Infallible>(if removed {
                Written::Gone
            } else {
                Written::Nothing
            })
        });
        removed.unwrap_or_else(|never| match never {})
    }

    /// `GIFTCARD.SET`, logged.
    pub fn gift_card_set(
        &self,
        code: &str,
        balance: i64,
        currency: Currency,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        self.gift_cards
            .set(code, balance, currency, now_ms, |peer_holds| {
                let image = gift_card_image(balance, currency, peer_holds);
                let stamp = Stamp {
                    at_ms: now_ms,
                    origin: 0,
                };
                self.log_reference(Space::GiftCard, code.as_bytes(), Some(&image), stamp);
            })
    }

    /// A card's balance from PostgreSQL (the lag window), with the spends for other nodes it
    /// remembers there (`spent`), logged.
    pub fn gift_card_reload(
        &self,
        code: &str,
        (balance, currency): (i64, Currency),
        spent: &[persistence::sink::PeerSpent],
        now_ms: u64,
    ) {
        let spent = peer_spent_of(spent);
        self.gift_cards
            .reload(code, (balance, currency), &spent, |peer_holds| {
                let image = gift_card_image(balance, currency, peer_holds);
                let stamp = Stamp {
                    at_ms: now_ms,
                    origin: 0,
                };
                self.log_reference(Space::GiftCard, code.as_bytes(), Some(&image), stamp);
            });
    }

    /// Logs the card under `code` again, whole, as it is here (the sink is not to stream the
    /// record that made it); false when there is none.
    pub fn relog_gift_card(&self, code: &[u8], now_ms: u64) -> bool {
        let Ok(code) = std::str::from_utf8(code) else {
            return false;
        };
        let Some(card) = self.gift_cards.get(code, now_ms) else {
            return false;
        };
        self.gift_card_reload(code, (card.balance, card.currency), &[], now_ms);
        true
    }

    /// `GIFTCARD.DEL`, logged: whether there was one.
    pub fn gift_card_remove(&self, code: &str, now_ms: u64) -> Result<bool, CommandError> {
        self.gift_cards.remove(code, now_ms, || {
            let stamp = Stamp {
                at_ms: now_ms,
                origin: 0,
            };
            self.log_reference(Space::GiftCard, code.as_bytes(), None, stamp)
        })
    }

    /// Puts a reference entry from the log or a snapshot in place (`None`: it is gone).
    /// Nothing is logged: it is durable already.
    pub fn load_reference(
        &self,
        space: Space,
        key: &[u8],
        image: Option<&[u8]>,
    ) -> Result<(), String> {
        let undecodable =
            |error: postcard::Error| format!("undecodable {} image: {error}", space.as_str());
        match space {
            Space::Cart => unreachable!("carts are not reference data"),
            Space::Handoff => return self.load_handoff(key, image),
            Space::Catalog => {
                let (product, variant) = split_catalog_key(key)?;
                let line = LineKey {
                    product: self.names.intern(product).map_err(|e| e.message)?,
                    variant: self.names.intern(variant).map_err(|e| e.message)?,
                };
                match image {
                    Some(image) => {
                        let image: CatalogImage =
                            postcard::from_bytes(image).map_err(undecodable)?;
                        self.catalog.load(line, image.entry());
                    }
                    None => {
                        self.catalog.remove(line, || {});
                    }
                }
            }
            Space::Promotion => {
                let code = std::str::from_utf8(key).map_err(|_| "a promotion code is not UTF-8")?;
                match image {
                    Some(image) => {
                        let promo = Promotion::from_json(image)
                            .map_err(|error| format!("promotion {code}: {error}"))?;
                        self.promotions.load(code, promo);
                    }
                    None => {
                        self.promotions.remove(code, || {});
                    }
                }
            }
            Space::GiftCard => {
                let code = std::str::from_utf8(key).map_err(|_| "a gift card code is not UTF-8")?;
                match image {
                    Some(image) => {
                        let (card, peer_holds) = decode_gift_card(image).map_err(undecodable)?;
                        let currency = Currency(card.currency);
                        self.gift_cards
                            .load(code, card.balance, currency, &peer_holds);
                    }
                    None => self.gift_cards.unload(code),
                }
            }
        }
        Ok(())
    }
}

/// PostgreSQL's remembered spends of a card as its image keeps them.
fn peer_spent_of(spent: &[persistence::sink::PeerSpent]) -> Vec<(Box<str>, i64, u64)> {
    let spent = spent.iter();
    spent
        .map(|(token, amount, until)| (token.as_str().into(), *amount, *until))
        .collect()
}
