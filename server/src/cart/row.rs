//! A cart as a PostgreSQL row: the lists as JSONB in the shape of the cart view, so the system
//! of record reads like what clients see; and back again when a node restores from it.

use std::borrow::Cow;

use persistence::sink::{CartRow, ReferenceKey, ReferenceValue, RowCodec};
use persistence::Space;
use serde::{Deserialize, Serialize};

use super::image::{join, split, CartImage, ImageTail, LineImage, IMAGE_FORMAT};

/// Converts after-images to rows and rows to after-images. Needs no interning: it works on
/// the images' spelled-out ids.
#[derive(Debug, Clone)]
pub struct CartRows {
    /// Key prefix stripped from a user cart's key to give its `user_id` (`cart:42` -> `42`).
    pub user_key_prefix: String,
}

/// One line in the row's JSON lists.
#[derive(Serialize, Deserialize)]
struct RowLine {
    product: String,
    variant: String,
    qty: u32,
    unit_price: i64,
    price_at_add: i64,
    added_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    saved_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

const REASON_CURRENCY: &str = "currency";
const REASON_OUT_OF_STOCK: &str = "out_of_stock";

impl RowLine {
    fn of(line: &LineImage, saved_at_ms: Option<u64>, unavailable: bool) -> RowLine {
        let reason = unavailable.then(|| {
            if line.foreign_price {
                REASON_CURRENCY
            } else {
                REASON_OUT_OF_STOCK
            }
            .to_string()
        });
        RowLine {
            product: line.product.to_string(),
            variant: line.variant.to_string(),
            qty: line.qty,
            unit_price: line.unit_price,
            price_at_add: line.price_at_add,
            added_at_ms: line.added_at_ms,
            saved_at_ms,
            reason,
        }
    }

    fn image(&self) -> LineImage<'_> {
        LineImage {
            product: Cow::Borrowed(&self.product),
            variant: Cow::Borrowed(&self.variant),
            qty: self.qty,
            unit_price: self.unit_price,
            price_at_add: self.price_at_add,
            added_at_ms: self.added_at_ms,
            foreign_price: self.reason.as_deref() == Some(REASON_CURRENCY),
        }
    }
}

fn to_json(lines: Vec<RowLine>) -> serde_json::Value {
    serde_json::to_value(lines).expect("row lines always serialize")
}

fn from_json(value: &serde_json::Value, list: &str) -> Result<Vec<RowLine>, String> {
    serde_json::from_value(value.clone()).map_err(|error| format!("{list}: {error}"))
}

/// The row's `metadata`: promo codes and gift cards as applied, and the checkout in progress.
fn metadata(tail: &ImageTail) -> serde_json::Value {
    let checkout = tail.checkout.as_ref().map(|checkout| {
        serde_json::json!({
            "token": checkout.token,
            "hold_until_ms": checkout.hold_until_ms,
        })
    });
    serde_json::json!({
        "promo_codes": tail.promo_codes,
        "gift_cards": tail.gift_cards,
        "checkout": checkout,
    })
}

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl RowCodec for CartRows {
    fn to_row(&self, key: &[u8], image: &[u8]) -> Result<CartRow, String> {
        let (image, tail) = split(image)?;
        let key = String::from_utf8_lossy(key);
        let user_id = (!image.guest).then(|| {
            key.strip_prefix(self.user_key_prefix.as_str())
                .unwrap_or(&key)
                .to_string()
        });
        let lines = image
            .lines
            .iter()
            .map(|line| RowLine::of(line, None, false));
        let saved = image
            .saved
            .iter()
            .map(|(line, at)| RowLine::of(line, Some(*at), false));
        let unavailable = image
            .unavailable
            .iter()
            .map(|line| RowLine::of(line, None, true));
        Ok(CartRow {
            kind: if image.guest { "guest" } else { "user" }.into(),
            user_id,
            currency: String::from_utf8_lossy(&image.currency).into_owned(),
            items: to_json(lines.collect()),
            saved: to_json(saved.collect()),
            unavailable: to_json(unavailable.collect()),
            metadata: metadata(&tail),
            version: millis(image.version),
            created_at_ms: millis(image.created_at_ms),
            updated_at_ms: millis(image.updated_at_ms),
            expires_at_ms: millis(image.expires_at_ms),
        })
    }

    fn from_row(&self, _key: &[u8], row: &CartRow) -> Result<bytes::Bytes, String> {
        let currency: [u8; 3] = row
            .currency
            .as_bytes()
            .try_into()
            .map_err(|_| format!("currency {:?} is not three letters", row.currency))?;
        let lines = from_json(&row.items, "items")?;
        let saved = from_json(&row.saved, "saved")?;
        let unavailable = from_json(&row.unavailable, "unavailable")?;
        let codes = |name: &str| -> Result<Vec<Cow<'_, str>>, String> {
            match row.metadata.get(name) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(value) => Vec::<String>::deserialize(value)
                    .map(|codes| codes.into_iter().map(Cow::Owned).collect())
                    .map_err(|error| format!("metadata.{name}: {error}")),
            }
        };
        // A checkout is not restored: a cart read back from PostgreSQL comes back active.
        let tail = ImageTail {
            promo_codes: codes("promo_codes")?,
            gift_cards: codes("gift_cards")?,
            checkout: None,
        };
        let image = CartImage {
            format: IMAGE_FORMAT,
            version: row.version.max(1) as u64,
            created_at_ms: row.created_at_ms.max(0) as u64,
            updated_at_ms: row.updated_at_ms.max(0) as u64,
            expires_at_ms: row.expires_at_ms.max(0) as u64,
            guest: row.kind == "guest",
            currency,
            lines: lines.iter().map(RowLine::image).collect(),
            saved: saved
                .iter()
                .map(|line| (line.image(), line.saved_at_ms.unwrap_or(line.added_at_ms)))
                .collect(),
            unavailable: unavailable.iter().map(RowLine::image).collect(),
        };
        Ok(join(&image, &tail).into())
    }

    fn apply_delta(
        &self,
        _key: &[u8],
        image: &[u8],
        delta: &[u8],
        version: u64,
    ) -> Result<Vec<u8>, String> {
        crate::cart::delta::apply_to_image(image, delta, version)
    }

    fn reference_key(&self, space: Space, key: &[u8]) -> Result<ReferenceKey, String> {
        crate::store::reference::row_key(space, key)
    }

    fn reference_value(&self, space: Space, image: &[u8]) -> Result<ReferenceValue, String> {
        crate::store::reference::row_value(space, image)
    }

    fn reference_image(
        &self,
        key: &ReferenceKey,
        value: &ReferenceValue,
    ) -> Result<(Space, Vec<u8>, Vec<u8>), String> {
        crate::store::reference::row_image(key, value)
    }
}
