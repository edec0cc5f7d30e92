//! Shorthand for the cart-command suites: writing commands as one string ([`w`]), running a
//! mutation for its JSON view ([`mutate`], [`cart_add`]), fetching the stored cart ([`stored`])
//! and reading lines out of a view ([`lines`], [`item`]). How replies become JSON is left to
//! `view`; sending commands to `client`.

use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

use crate::{int, json_reply, ok, view};

/// Small per-cart limits, so the limits are reachable in a few commands.
pub const SMALL: &str =
    "[carts]\nmax_lines_per_cart = 3\nmax_qty_per_line = 5\nmax_saved_per_cart = 2\n";

/// A command's words, split on spaces: `w("CART.GET cart:1 NOVALIDATE")`.
pub fn w(words: &str) -> Vec<&str> {
    words.split_whitespace().collect()
}

/// Runs a mutation with `FORMAT JSON` appended; returns the cart view it replies.
pub async fn mutate(conn: &mut MultiplexedConnection, args: &[&str]) -> Json {
    let mut full = args.to_vec();
    full.extend(["FORMAT", "JSON"]);
    json_reply(&ok(conn, &full).await)
}

/// `CART.ADD key product - qty PRICE price CURRENCY USD`; returns the view.
pub async fn cart_add(
    conn: &mut MultiplexedConnection,
    key: &str,
    product: &str,
    qty: &str,
    price: &str,
) -> Json {
    mutate(
        conn,
        &[
            "CART.ADD", key, product, "-", qty, "PRICE", price, "CURRENCY", "USD",
        ],
    )
    .await
}

/// `CART.ADD key product - qty PRICE 100 CURRENCY USD REPLY VERSION`; returns the version.
pub async fn cart_add_version(
    conn: &mut MultiplexedConnection,
    key: &str,
    product: &str,
    qty: u32,
) -> i64 {
    let qty = qty.to_string();
    let args = [
        "CART.ADD", key, product, "-", &qty, "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION",
    ];
    int(&ok(conn, &args).await)
}

/// The cart as stored (fetched with NOVALIDATE), without `ttl_ms`, which moves with time.
pub async fn stored(conn: &mut MultiplexedConnection, key: &str) -> Json {
    without_ttl(view(conn, key).await)
}

/// A view without its `ttl_ms`.
pub fn without_ttl(mut view: Json) -> Json {
    if let Some(fields) = view.as_object_mut() {
        fields.remove("ttl_ms");
    }
    view
}

/// The `(product, variant, qty)` of each line in one of a view's lists, in order.
pub fn lines(view: &Json, list: &str) -> Vec<(String, String, i64)> {
    view[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is an array in {view}"))
        .iter()
        .map(|line| {
            (
                line["product"].as_str().expect("product").to_string(),
                line["variant"].as_str().expect("variant").to_string(),
                line["qty"].as_i64().expect("qty"),
            )
        })
        .collect()
}

/// Shorthand for an expected [`lines`] list.
pub fn expect(lines: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    lines
        .iter()
        .map(|(product, variant, qty)| (product.to_string(), variant.to_string(), *qty))
        .collect()
}

/// The line of `product` in the active items (the first, whatever its variant).
pub fn item<'a>(view: &'a Json, product: &str) -> &'a Json {
    view["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .find(|line| line["product"] == product)
        .unwrap_or_else(|| panic!("no line {product} in {view}"))
}

/// `EXISTS key`: 1 if the cart exists, else 0.
pub async fn exists(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    int(&ok(conn, &["EXISTS", key]).await)
}
