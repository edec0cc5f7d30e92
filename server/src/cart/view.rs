//! The cart view (PROTOCOL.md "Cart view"): one [`Reply`] map that the encoder turns into a
//! RESP3 map, a flat RESP2 array, or JSON.

use protocol::Reply;

use super::{Cart, Line, Names, SavedLine};

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

/// Renders `cart` stored under `key`, as seen at `now_ms`.
pub fn render(
    key: &[u8],
    cart: &Cart,
    names: &Names,
    now_ms: u64,
    validation: Validation,
) -> Reply {
    let line_totals: i64 = cart
        .lines
        .iter()
        .map(|line| i64::from(line.qty) * line.unit_price)
        .sum();
    let item_count: u64 = cart.lines.iter().map(|line| u64::from(line.qty)).sum();
    let currency = Reply::text(cart.currency.as_str());
    let totals = Reply::Map(vec![
        field("item_count", int(item_count)),
        field("subtotal", Reply::Integer(line_totals)),
        field("discount", Reply::Integer(0)),
        field("gift_card", Reply::Integer(0)),
        field("total", Reply::Integer(line_totals)),
    ]);
    let saved = cart
        .saved()
        .iter()
        .map(|saved| render_saved(saved, names))
        .collect();
    let validated_at = match cart.validated_at_ms {
        0 => Reply::Null,
        at => int(at),
    };
    Reply::Map(vec![
        field("id", Reply::Bulk(bytes::Bytes::copy_from_slice(key))),
        field("kind", Reply::from_static(cart.kind.as_str())),
        field("version", int(cart.version)),
        field("status", Reply::from_static("active")),
        field("currency", currency),
        field("created_at_ms", int(cart.created_at_ms)),
        field("updated_at_ms", int(cart.updated_at_ms)),
        field("ttl_ms", int(cart.expires_at_ms.saturating_sub(now_ms))),
        field(
            "items",
            Reply::Array(
                cart.lines
                    .iter()
                    .map(|line| render_line(line, names))
                    .collect(),
            ),
        ),
        field(
            "unavailable",
            Reply::Array(
                cart.unavailable()
                    .iter()
                    .map(|line| render_unavailable(line, names))
                    .collect(),
            ),
        ),
        field("saved", Reply::Array(saved)),
        field("promo_codes", Reply::Array(Vec::new())),
        field("gift_cards", Reply::Array(Vec::new())),
        field("discounts", Reply::Array(Vec::new())),
        field("totals", totals),
        field("validation", Reply::from_static(validation.as_str())),
        field("validated_at_ms", validated_at),
    ])
}

fn render_saved(saved: &SavedLine, names: &Names) -> Reply {
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
fn render_unavailable(line: &Line, names: &Names) -> Reply {
    let mut fields = line_fields(line, names);
    let reason = if line.foreign_price {
        "currency"
    } else {
        "out_of_stock"
    };
    fields.push(field("reason", Reply::from_static(reason)));
    Reply::Map(fields)
}

fn render_line(line: &Line, names: &Names) -> Reply {
    Reply::Map(line_fields(line, names))
}

fn line_fields(line: &Line, names: &Names) -> Vec<(Reply, Reply)> {
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
        field("added_at_ms", int(line.added_at_ms)),
    ]
}
