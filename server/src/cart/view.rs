//! The cart view (PROTOCOL.md "Cart view"): one [`Reply`] map that the encoder turns into a
//! RESP3 map, a flat RESP2 array, or JSON.

use protocol::Reply;

use super::names::NamesRead;
use super::priced::CartPricing;
use super::{Cart, Checkout, Line, Names, SavedLine};

/// How fresh the prices and stock in a view are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Validated by this request.
    Fresh,
    /// A validation within the cache window, and no change since.
    Cached,
    /// The upstream could not be asked, or the cart kept changing while it was validated.
    Stale,
    /// Not validated (NOVALIDATE, or a mutation's reply).
    Skipped,
}

impl Validation {
    fn as_str(self) -> &'static str {
        match self {
            Validation::Fresh => "fresh",
            Validation::Cached => "cached",
            Validation::Stale => "stale",
            Validation::Skipped => "skipped",
        }
    }
}

fn field(name: &'static str, value: Reply) -> (Reply, Reply) {
    (Reply::from_static(name), value)
}

fn int(value: u64) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Renders `cart` stored under `key`, as seen at `now_ms`, with its pricing; `checkout` is the
/// checkout it is frozen for, if it is.
pub fn render(
    key: &[u8],
    cart: &Cart,
    names: &Names,
    now_ms: u64,
    validation: Validation,
    pricing: &CartPricing,
    checkout: Option<&Checkout>,
) -> Reply {
    let names = &names.read();
    let item_count: u64 = cart.lines.iter().map(|line| u64::from(line.qty)).sum();
    let saved = cart
        .saved()
        .iter()
        .map(|saved| render_saved(saved, names))
        .collect();
    let validated_at = match cart.validated_at_ms {
        0 => Reply::Null,
        at => int(at),
    };
    let items = cart
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| Reply::Map(line_fields(line, names, pricing.line_discount(index))))
        .collect();
    let unavailable = cart
        .unavailable()
        .iter()
        .map(|line| render_unavailable(line, names))
        .collect();
    let mut fields = vec![field("id", Reply::Bulk(bytes::Bytes::copy_from_slice(key)))];
    // JSON text cannot carry bytes that are not UTF-8: such a key's `id` in FORMAT JSON is
    // lossy, so the exact key comes beside it in hex (two such keys never look alike).
    if std::str::from_utf8(key).is_err() {
        fields.push(field("id_hex", Reply::text(hex::encode(key))));
    }
    fields.extend([
        field("kind", Reply::from_static(cart.kind.as_str())),
        field("version", int(cart.version)),
        field(
            "status",
            Reply::from_static(if checkout.is_some() {
                "checkout"
            } else {
                "active"
            }),
        ),
        field("currency", Reply::text(cart.currency.as_str())),
        field("created_at_ms", int(cart.created_at_ms)),
        field("updated_at_ms", int(cart.updated_at_ms)),
        field("ttl_ms", int(cart.expires_at_ms.saturating_sub(now_ms))),
        field("items", Reply::Array(items)),
        field("unavailable", Reply::Array(unavailable)),
        field("saved", Reply::Array(saved)),
    ]);
    fields.extend(money_fields(pricing, item_count));
    fields.push(field("validation", Reply::from_static(validation.as_str())));
    fields.push(field("validated_at_ms", validated_at));
    if let Some(checkout) = checkout {
        fields.push(field("checkout_token", Reply::text(&*checkout.token)));
        fields.push(field("checkout_expires_at_ms", int(checkout.hold_until_ms)));
    }
    Reply::Map(fields)
}

/// `promo_codes`, `promotions`, `gift_cards`, `discounts` and `totals`.
fn money_fields(pricing: &CartPricing, item_count: u64) -> Vec<(Reply, Reply)> {
    let promo_codes = pricing
        .codes
        .iter()
        .map(|code| Reply::text(code.code.as_str()))
        .collect();
    let promotions = pricing
        .codes
        .iter()
        .map(|code| {
            let mut fields = vec![
                field("code", Reply::text(code.code.as_str())),
                field("applied", Reply::Bool(code.applied)),
                field("discount", Reply::Integer(code.discount)),
            ];
            if let Some(reason) = &code.reason {
                fields.push(field("reason", Reply::text(reason.as_str())));
            }
            Reply::Map(fields)
        })
        .collect();
    let gift_cards = pricing
        .gift_cards
        .iter()
        .map(|card| {
            let mut fields = vec![
                field("code", Reply::text(card.code.as_str())),
                field("applied", Reply::Integer(card.applied)),
            ];
            if let Some(reason) = &card.reason {
                fields.push(field("reason", Reply::text(reason.as_str())));
            }
            Reply::Map(fields)
        })
        .collect();
    let discounts = pricing
        .discounts
        .iter()
        .map(|(source, amount)| {
            Reply::Map(vec![
                field("source", Reply::text(source.as_str())),
                field("amount", Reply::Integer(*amount)),
            ])
        })
        .collect();
    let totals = Reply::Map(vec![
        field("item_count", int(item_count)),
        field("subtotal", Reply::Integer(pricing.subtotal)),
        field("discount", Reply::Integer(pricing.discount)),
        field("gift_card", Reply::Integer(pricing.gift_card)),
        field("total", Reply::Integer(pricing.total)),
    ]);
    vec![
        field("promo_codes", Reply::Array(promo_codes)),
        field("promotions", Reply::Array(promotions)),
        field("gift_cards", Reply::Array(gift_cards)),
        field("discounts", Reply::Array(discounts)),
        field("totals", totals),
    ]
}

fn render_saved(saved: &SavedLine, names: &NamesRead<'_>) -> Reply {
    Reply::Map(vec![
        field(
            "product",
            Reply::text(names.resolve(saved.line.key.product)),
        ),
        field(
            "variant",
            Reply::text(names.resolve(saved.line.key.variant)),
        ),
        field("qty", int(u64::from(saved.line.qty))),
        field("saved_at_ms", int(saved.saved_at_ms)),
    ])
}

/// An unavailable line is a line plus why it is aside: out of stock, or priced in another
/// currency (merged from a guest cart).
fn render_unavailable(line: &Line, names: &NamesRead<'_>) -> Reply {
    let mut fields = line_fields(line, names, 0);
    let reason = if line.foreign_price {
        "currency"
    } else {
        "out_of_stock"
    };
    fields.push(field("reason", Reply::from_static(reason)));
    Reply::Map(fields)
}

fn line_fields(line: &Line, names: &NamesRead<'_>, discount: i64) -> Vec<(Reply, Reply)> {
    vec![
        field("product", Reply::text(names.resolve(line.key.product))),
        field("variant", Reply::text(names.resolve(line.key.variant))),
        field("qty", int(u64::from(line.qty))),
        field("unit_price", Reply::Integer(line.unit_price)),
        field("price_at_add", Reply::Integer(line.price_at_add)),
        field(
            "price_changed",
            Reply::Bool(line.unit_price != line.price_at_add),
        ),
        field(
            "line_total",
            Reply::Integer(i64::from(line.qty) * line.unit_price),
        ),
        field("discount", Reply::Integer(discount)),
        field("added_at_ms", int(line.added_at_ms)),
    ]
}
