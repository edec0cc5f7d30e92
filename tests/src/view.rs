//! Reading cart views (PROTOCOL.md "Cart view") out of replies: as JSON (the `FORMAT JSON`
//! bulk string, a RESP3 map, or a RESP2 flat array mapped back to the same shape) and as the
//! typed [`CartView`]. RESP2 and RESP3 views of one cart give equal results.

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::{json, Map, Value as Json};

use crate::ok;

/// A cart view (or null) fetched as JSON with `CART.GET key NOVALIDATE FORMAT JSON`.
pub async fn view(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let value = ok(conn, &["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"]).await;
    json_reply(&value)
}

/// Parses a `FORMAT JSON` reply (null stays null).
pub fn json_reply(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::BulkString(bytes) => serde_json::from_slice(bytes).expect("valid JSON"),
        other => panic!("expected a JSON bulk string, got {other:?}"),
    }
}

/// Any cart-view reply as JSON: a `FORMAT JSON` bulk string, a RESP3 map or a RESP2 flat
/// array (see [`resp2_view_to_json`]); null stays null.
pub fn view_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::BulkString(_) => json_reply(value),
        Value::Map(_) => resp3_to_json(value),
        Value::Array(_) => resp2_view_to_json(value),
        other => panic!("expected a cart view, got {other:?}"),
    }
}

/// Converts a RESP3 reply to JSON generically (maps become objects, attributes are dropped).
pub fn resp3_to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(number) => json!(number),
        Value::Double(number) => json!(number),
        Value::BulkString(bytes) => json!(String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => json!(text),
        Value::Okay => json!("OK"),
        Value::Boolean(flag) => json!(flag),
        Value::Array(items) | Value::Set(items) => {
            Json::Array(items.iter().map(resp3_to_json).collect())
        }
        Value::Map(pairs) => {
            let mut object = Map::new();
            for (key, value) in pairs {
                let key = match resp3_to_json(key) {
                    Json::String(text) => text,
                    other => other.to_string(),
                };
                object.insert(key, resp3_to_json(value));
            }
            Json::Object(object)
        }
        Value::VerbatimString { text, .. } => json!(text),
        Value::Attribute { data, .. } => resp3_to_json(data),
        other => panic!("unexpected RESP3 value {other:?}"),
    }
}

/// Converts a RESP2 cart view (maps flattened, booleans as 0/1) back into JSON, using the
/// view's known shape: which fields hold lists of maps and which hold one map.
pub fn resp2_view_to_json(value: &Value) -> Json {
    fn flat_map(value: &Value) -> Vec<(String, &Value)> {
        let Value::Array(items) = value else {
            panic!("expected a flat map, got {value:?}")
        };
        assert!(items.len() % 2 == 0, "a flattened map has an even length");
        items
            .chunks(2)
            .map(|pair| match &pair[0] {
                Value::BulkString(key) => (String::from_utf8_lossy(key).into_owned(), &pair[1]),
                other => panic!("map keys are bulk strings, got {other:?}"),
            })
            .collect()
    }
    fn scalar(value: &Value) -> Json {
        match value {
            Value::Nil => Json::Null,
            Value::Int(number) => json!(number),
            Value::BulkString(bytes) => json!(String::from_utf8_lossy(bytes)),
            Value::SimpleString(text) => json!(text),
            Value::Array(items) => Json::Array(items.iter().map(scalar).collect()),
            other => panic!("unexpected RESP2 value {other:?}"),
        }
    }
    fn object(value: &Value) -> Json {
        let mut fields = Map::new();
        for (key, value) in flat_map(value) {
            let converted = match key.as_str() {
                "promotions" => {
                    // `applied` is a boolean here (0/1 in RESP2), an amount in `gift_cards`.
                    let Value::Array(codes) = value else {
                        panic!("{key} is an array")
                    };
                    let codes = codes.iter().map(|code| {
                        let mut code = object(code);
                        code["applied"] = json!(code["applied"] == json!(1));
                        code
                    });
                    Json::Array(codes.collect())
                }
                "items" | "unavailable" | "saved" | "gift_cards" | "discounts" => {
                    let Value::Array(lines) = value else {
                        panic!("{key} is an array")
                    };
                    Json::Array(lines.iter().map(object).collect())
                }
                "totals" => object(value),
                "price_changed" => json!(scalar(value) == json!(1)),
                _ => scalar(value),
            };
            fields.insert(key, converted);
        }
        Json::Object(fields)
    }
    match value {
        Value::Nil => Json::Null,
        other => object(other),
    }
}

/// One line of `items` or `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    /// Product id.
    pub product: String,
    /// Variant id (`-` for none).
    pub variant: String,
    /// Quantity.
    pub qty: i64,
    /// Current price, minor units.
    pub unit_price: i64,
    /// Price when the line was first added, minor units.
    pub price_at_add: i64,
    /// Whether `unit_price != price_at_add` (RESP2 sends 0/1).
    pub price_changed: bool,
    /// `qty * unit_price`, minor units.
    pub line_total: i64,
    /// This line's share of the cart's discounts, minor units.
    pub discount: i64,
    /// When the line was first added, Unix ms.
    pub added_at_ms: i64,
}

/// One saved-for-later line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLine {
    /// Product id.
    pub product: String,
    /// Variant id.
    pub variant: String,
    /// Quantity.
    pub qty: i64,
    /// When it was saved, Unix ms.
    pub saved_at_ms: i64,
}

/// The `totals` map, all in minor units except `item_count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Sum of the line quantities.
    pub item_count: i64,
    /// Sum of the line totals.
    pub subtotal: i64,
    /// Every discount together.
    pub discount: i64,
    /// Taken from gift cards.
    pub gift_card: i64,
    /// What the customer pays.
    pub total: i64,
}

/// A cart view as typed fields, from RESP2, RESP3 or JSON alike. Everything PROTOCOL.md lists
/// is required (a missing field panics, naming it) except `validated_at_ms` and
/// `checkout_token`; `json` keeps the whole view for anything else.
#[derive(Debug, Clone, PartialEq)]
pub struct CartView {
    /// The cart key.
    pub id: String,
    /// `user` or `guest`.
    pub kind: String,
    /// Grows by one on every change.
    pub version: i64,
    /// `active` or `checkout`.
    pub status: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
    /// Time left to live, ms.
    pub ttl_ms: i64,
    /// Active lines in the order first added.
    pub items: Vec<CartLine>,
    /// Lines moved aside as out of stock.
    pub unavailable: Vec<CartLine>,
    /// Saved-for-later lines.
    pub saved: Vec<SavedLine>,
    /// Applied promo codes.
    pub promo_codes: Vec<String>,
    /// Applied gift cards as `(code, applied minor units)`.
    pub gift_cards: Vec<(String, i64)>,
    /// Discounts as `(source, amount minor units)`.
    pub discounts: Vec<(String, i64)>,
    /// The totals map.
    pub totals: Totals,
    /// `fresh`, `cached`, `stale` or `skipped`.
    pub validation: String,
    /// Last validation, Unix ms; `None` if never validated (null).
    pub validated_at_ms: Option<i64>,
    /// Present only while the cart is in checkout.
    pub checkout_token: Option<String>,
    /// The whole view as JSON.
    pub json: Json,
}

/// A cart view from any reply that holds one; panics on null (see [`CartView::from_value`]).
pub fn cart_view(value: &Value) -> CartView {
    CartView::from_value(value).unwrap_or_else(|| panic!("expected a cart view, got null"))
}

impl CartView {
    /// A view from a reply: RESP3 map, RESP2 flat array or `FORMAT JSON` bulk string; `None`
    /// for a null reply (a missing cart).
    pub fn from_value(value: &Value) -> Option<CartView> {
        match view_json(value) {
            Json::Null => None,
            json => Some(CartView::from_json(&json)),
        }
    }

    /// A view from its JSON form (booleans may be 0/1).
    pub fn from_json(json: &Json) -> CartView {
        let view = Fields::of(json, "cart view");
        CartView {
            id: view.str("id"),
            kind: view.str("kind"),
            version: view.int("version"),
            status: view.str("status"),
            currency: view.str("currency"),
            created_at_ms: view.int("created_at_ms"),
            updated_at_ms: view.int("updated_at_ms"),
            ttl_ms: view.int("ttl_ms"),
            items: view.list("items").iter().map(line).collect(),
            unavailable: view.list("unavailable").iter().map(line).collect(),
            saved: view.list("saved").iter().map(saved).collect(),
            promo_codes: view
                .list("promo_codes")
                .iter()
                .map(|code| code.as_str().expect("promo codes are strings").to_owned())
                .collect(),
            gift_cards: view.pairs("gift_cards", "code", "applied"),
            discounts: view.pairs("discounts", "source", "amount"),
            totals: totals(view.get("totals")),
            validation: view.str("validation"),
            validated_at_ms: view
                .get_opt("validated_at_ms")
                .map(|_| view.int("validated_at_ms")),
            checkout_token: view
                .get_opt("checkout_token")
                .map(|_| view.str("checkout_token")),
            json: json.clone(),
        }
    }

    /// The active line for `product`/`variant`, if any.
    pub fn line(&self, product: &str, variant: &str) -> Option<&CartLine> {
        self.items
            .iter()
            .find(|line| line.product == product && line.variant == variant)
    }
}

fn line(json: &Json) -> CartLine {
    let line = Fields::of(json, "line");
    CartLine {
        product: line.str("product"),
        variant: line.str("variant"),
        qty: line.int("qty"),
        unit_price: line.int("unit_price"),
        price_at_add: line.int("price_at_add"),
        price_changed: line.bool("price_changed"),
        line_total: line.int("line_total"),
        discount: line.int("discount"),
        added_at_ms: line.int("added_at_ms"),
    }
}

fn saved(json: &Json) -> SavedLine {
    let saved = Fields::of(json, "saved line");
    SavedLine {
        product: saved.str("product"),
        variant: saved.str("variant"),
        qty: saved.int("qty"),
        saved_at_ms: saved.int("saved_at_ms"),
    }
}

fn totals(json: &Json) -> Totals {
    let totals = Fields::of(json, "totals");
    Totals {
        item_count: totals.int("item_count"),
        subtotal: totals.int("subtotal"),
        discount: totals.int("discount"),
        gift_card: totals.int("gift_card"),
        total: totals.int("total"),
    }
}

/// Typed reads of one JSON object's fields; a missing or mistyped field panics with its name
/// and the whole object.
struct Fields<'a> {
    object: &'a Map<String, Json>,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn of(json: &'a Json, what: &'static str) -> Fields<'a> {
        let object = json
            .as_object()
            .unwrap_or_else(|| panic!("a {what} is a map, got {json}"));
        Fields { object, what }
    }

    /// The field, unless it is absent or null.
    fn get_opt(&self, name: &str) -> Option<&'a Json> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn get(&self, name: &str) -> &'a Json {
        self.object.get(name).unwrap_or_else(|| {
            panic!(
                "{} has no field {name:?}: {}",
                self.what,
                Json::Object(self.object.clone())
            )
        })
    }

    fn mistyped(&self, name: &str, expected: &str) -> ! {
        panic!(
            "{} field {name:?} is not {expected}: {}",
            self.what,
            Json::Object(self.object.clone())
        )
    }

    fn str(&self, name: &str) -> String {
        match self.get(name).as_str() {
            Some(text) => text.to_owned(),
            None => self.mistyped(name, "a string"),
        }
    }

    fn int(&self, name: &str) -> i64 {
        match self.get(name).as_i64() {
            Some(number) => number,
            None => self.mistyped(name, "an integer"),
        }
    }

    /// A boolean, or RESP2's 0/1.
    fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Json::Bool(flag) => *flag,
            number if number.as_i64() == Some(0) => false,
            number if number.as_i64() == Some(1) => true,
            _ => self.mistyped(name, "a boolean"),
        }
    }

    fn list(&self, name: &str) -> &'a Vec<Json> {
        match self.get(name).as_array() {
            Some(list) => list,
            None => self.mistyped(name, "an array"),
        }
    }

    /// A list of maps read as `(text field, integer field)` pairs.
    fn pairs(&self, name: &str, text: &str, number: &str) -> Vec<(String, i64)> {
        self.list(name)
            .iter()
            .map(|entry| {
                let entry = Fields::of(entry, "list entry");
                (entry.str(text), entry.int(number))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::CartView;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// The same cart, as RESP3 and as RESP2 would carry it.
    fn both(resp3: bool) -> Value {
        let map = |pairs: Vec<(&str, Value)>| {
            if resp3 {
                Value::Map(pairs.into_iter().map(|(k, v)| (bulk(k), v)).collect())
            } else {
                Value::Array(pairs.into_iter().flat_map(|(k, v)| [bulk(k), v]).collect())
            }
        };
        let flag = |b: bool| {
            if resp3 {
                Value::Boolean(b)
            } else {
                Value::Int(i64::from(b))
            }
        };
        let line = map(vec![
            ("product", bulk("sku")),
            ("variant", bulk("-")),
            ("qty", Value::Int(2)),
            ("unit_price", Value::Int(150)),
            ("price_at_add", Value::Int(100)),
            ("price_changed", flag(true)),
            ("line_total", Value::Int(300)),
            ("discount", Value::Int(0)),
            ("added_at_ms", Value::Int(7)),
        ]);
        let totals = map(["item_count", "subtotal", "discount", "gift_card", "total"]
            .into_iter()
            .map(|name| (name, Value::Int(2)))
            .collect());
        let mut fields = vec![
            ("id", bulk("cart:1")),
            ("kind", bulk("user")),
            ("version", Value::Int(3)),
            ("status", bulk("active")),
            ("currency", bulk("USD")),
        ];
        for name in ["created_at_ms", "updated_at_ms", "ttl_ms"] {
            fields.push((name, Value::Int(5)));
        }
        fields.push(("items", Value::Array(vec![line])));
        for name in ["unavailable", "saved", "gift_cards", "discounts"] {
            fields.push((name, Value::Array(Vec::new())));
        }
        fields.push(("promo_codes", Value::Array(vec![bulk("SAVE10")])));
        fields.push(("totals", totals));
        fields.push(("validation", bulk("skipped")));
        fields.push(("validated_at_ms", Value::Nil));
        map(fields)
    }

    #[test]
    fn resp2_and_resp3_views_read_the_same() {
        let resp3 = CartView::from_value(&both(true)).expect("a view");
        let resp2 = CartView::from_value(&both(false)).expect("a view");
        assert_eq!(resp3, resp2);
        let line = resp3.line("sku", "-").expect("the line");
        assert!(line.price_changed);
        assert_eq!((line.qty, line.line_total), (2, 300));
        assert_eq!(resp3.promo_codes, ["SAVE10"]);
        assert_eq!(resp3.validated_at_ms, None);
        assert_eq!(CartView::from_value(&Value::Nil), None);
    }
}
