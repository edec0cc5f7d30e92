//! Promotion documents (`PROMO.SET`): their validation into a [`Promotion`] and the canonical
//! form `PROMO.GET` returns. docs/PROMOTIONS.md is the schema; engine.rs applies what this file
//! accepts.
//!
//! The document is read key by key instead of through a derived struct, so that every error names
//! the field at fault (`buy.qty: must be an integer 1..=100000`), a key given twice is refused like
//! an unknown one, and a number with a fraction or an exponent is refused without ever being
//! carried as a float.

use std::fmt;

use protocol::{Currency, ITEM_ID_BYTES_MAX};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

use crate::limits::{
    PROMO_DESCRIPTION_CHARS_MAX, PROMO_MONEY_MINOR_MAX, PROMO_PRODUCTS_MAX, PROMO_QTY_MAX,
};

/// A validated promotion document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub(super) kind: Kind,
    /// Lines a percent or fixed promotion applies to; `None`: every line.
    pub(super) products: Option<Products>,
    pub(super) min_subtotal: Option<i64>,
    pub(super) currency: Option<Currency>,
    pub(super) starts_at_ms: Option<u64>,
    pub(super) ends_at_ms: Option<u64>,
    pub(super) stackable: bool,
    pub(super) automatic: bool,
    pub(super) description: Option<Box<str>>,
}

/// What a promotion takes off, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Percent { percent: u8 },
    Fixed { amount: i64 },
    Bundle { set: Products, off: BundleOff },
    BuyXGetY { buy: Side, get: Side, percent: u8 },
}

/// How a bundle prices each complete set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BundleOff {
    Percent(u8),
    Amount(i64),
    Price(i64),
}

/// One side of a buy_x_get_y offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Side {
    pub(super) products: Products,
    pub(super) qty: u32,
}

/// A product list, sorted by product then variant (a whole-product entry before the variants),
/// no two entries matching the same line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Products {
    entries: Box<[ProductEntry]>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ProductEntry {
    product: Box<str>,
    /// `None`: every variant of the product.
    variant: Option<Box<str>>,
}

impl Products {
    /// The entry a line matches, by its index in the list.
    pub(super) fn find(&self, product: &str, variant: &str) -> Option<usize> {
        let start = self
            .entries
            .partition_point(|entry| &*entry.product < product);
        let first = self.entries.get(start)?;
        if &*first.product != product {
            return None;
        }
        if first.variant.is_none() {
            return Some(start);
        }
        self.entries[start..]
            .binary_search_by(|entry| {
                (&*entry.product, entry.variant.as_deref()).cmp(&(product, Some(variant)))
            })
            .ok()
            .map(|offset| start + offset)
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn to_json(&self) -> Value {
        let entries = self.entries.iter().map(|entry| match &entry.variant {
            None => json!(&*entry.product),
            Some(variant) => json!({ "product": &*entry.product, "variant": &**variant }),
        });
        Value::Array(entries.collect())
    }
}

impl Promotion {
    /// Validates a `PROMO.SET` document. The error names the field at fault and says what it
    /// must be, e.g. `percent: must be an integer 1..=100` or `foo: unknown field`.
    pub fn from_json(bytes: &[u8]) -> Result<Promotion, String> {
        let document: Json =
            serde_json::from_slice(bytes).map_err(|error| format!("not valid JSON: {error}"))?;
        let fields = Fields::of(&document, "", TOP_LEVEL_FIELDS)
            .ok_or_else(|| "the promotion must be a JSON object".to_owned())??;
        let kind = match fields.get("kind") {
            None => return Err(format!("kind: required ({KINDS})")),
            Some(Json::Text(kind)) => match kind.as_str() {
                "percent" => percent_kind(&fields)?,
                "fixed" => fixed_kind(&fields)?,
                "bundle" => bundle_kind(&fields)?,
                "buy_x_get_y" => buy_x_get_y_kind(&fields)?,
                other => return Err(format!("kind: unknown kind {:?} ({KINDS})", shown(other))),
            },
            Some(_) => return Err(format!("kind: must be a string ({KINDS})")),
        };
        let products = match kind {
            Kind::Percent { .. } | Kind::Fixed { .. } => fields
                .get("products")
                .map(|value| products(value, "products"))
                .transpose()?,
            Kind::Bundle { .. } | Kind::BuyXGetY { .. } => None,
        };
        let starts_at_ms = fields
            .get("starts_at_ms")
            .map(|value| time(value, "starts_at_ms"));
        let ends_at_ms = fields
            .get("ends_at_ms")
            .map(|value| time(value, "ends_at_ms"));
        let (starts_at_ms, ends_at_ms) = (starts_at_ms.transpose()?, ends_at_ms.transpose()?);
        if let (Some(starts_at_ms), Some(ends_at_ms)) = (starts_at_ms, ends_at_ms) {
            if ends_at_ms <= starts_at_ms {
                return Err("ends_at_ms: must be after starts_at_ms".to_owned());
            }
        }
        Ok(Promotion {
            kind,
            products,
            min_subtotal: fields
                .get("min_subtotal")
                .map(|value| money(value, "min_subtotal", 0))
                .transpose()?,
            currency: fields.get("currency").map(currency).transpose()?,
            starts_at_ms,
            ends_at_ms,
            stackable: flag(fields.get("stackable"), "stackable")?,
            automatic: flag(fields.get("automatic"), "automatic")?,
            description: fields.get("description").map(description).transpose()?,
        })
    }

    /// The canonical document: every field that is set, product lists sorted, `stackable` and
    /// `automatic` always present. `from_json` of it gives the same promotion back.
    pub fn to_json(&self) -> Value {
        let mut document = Map::new();
        let mut put = |key: &str, value: Value| document.insert(key.to_owned(), value);
        put("kind", json!(self.kind_name()));
        match &self.kind {
            Kind::Percent { percent } => put("percent", json!(percent)),
            Kind::Fixed { amount } => put("amount", json!(amount)),
            Kind::Bundle { set, off } => {
                put("products", set.to_json());
                match off {
                    BundleOff::Percent(percent) => put("percent", json!(percent)),
                    BundleOff::Amount(amount) => put("amount", json!(amount)),
                    BundleOff::Price(price) => put("price", json!(price)),
                }
            }
            Kind::BuyXGetY { buy, get, percent } => {
                put(
                    "buy",
                    json!({ "products": buy.products.to_json(), "qty": buy.qty }),
                );
                let get = json!({ "products": get.products.to_json(), "qty": get.qty, "percent": percent });
                put("get", get)
            }
        };
        if let Some(products) = &self.products {
            put("products", products.to_json());
        }
        if let Some(min_subtotal) = self.min_subtotal {
            put("min_subtotal", json!(min_subtotal));
        }
        if let Some(currency) = self.currency {
            put("currency", json!(currency.as_str()));
        }
        if let Some(starts_at_ms) = self.starts_at_ms {
            put("starts_at_ms", json!(starts_at_ms));
        }
        if let Some(ends_at_ms) = self.ends_at_ms {
            put("ends_at_ms", json!(ends_at_ms));
        }
        put("stackable", json!(self.stackable));
        put("automatic", json!(self.automatic));
        if let Some(description) = &self.description {
            put("description", json!(&**description));
        }
        Value::Object(document)
    }

    /// Applies without a code, to every cart it fits (`automatic`).
    pub fn automatic(&self) -> bool {
        self.automatic
    }

    /// Combines with other codes (`stackable`).
    pub fn stackable(&self) -> bool {
        self.stackable
    }

    /// `percent`, `fixed`, `bundle` or `buy_x_get_y`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Percent { .. } => "percent",
            Kind::Fixed { .. } => "fixed",
            Kind::Bundle { .. } => "bundle",
            Kind::BuyXGetY { .. } => "buy_x_get_y",
        }
    }

    /// The only cart currency it applies in, if it names one.
    pub fn currency(&self) -> Option<Currency> {
        self.currency
    }

    /// Start of the active window (inclusive), if any.
    pub fn starts_at_ms(&self) -> Option<u64> {
        self.starts_at_ms
    }

    /// End of the active window (exclusive), if any.
    pub fn ends_at_ms(&self) -> Option<u64> {
        self.ends_at_ms
    }

    /// The informational description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

const KINDS: &str = "percent, fixed, bundle or buy_x_get_y";

const TOP_LEVEL_FIELDS: &[&str] = &[
    "kind",
    "percent",
    "amount",
    "price",
    "products",
    "buy",
    "get",
    "min_subtotal",
    "currency",
    "starts_at_ms",
    "ends_at_ms",
    "stackable",
    "automatic",
    "description",
];

fn percent_kind(fields: &Fields) -> Result<Kind, String> {
    fields.refuse(&["amount", "price", "buy", "get"], "percent")?;
    let percent = fields
        .get("percent")
        .ok_or("percent: required for kind percent")?;
    Ok(Kind::Percent {
        percent: percent_value(percent, "percent")?,
    })
}

fn fixed_kind(fields: &Fields) -> Result<Kind, String> {
    fields.refuse(&["percent", "price", "buy", "get"], "fixed")?;
    let amount = fields
        .get("amount")
        .ok_or("amount: required for kind fixed")?;
    let amount = money(amount, "amount", 1)?;
    if fields.get("currency").is_none() {
        return Err("currency: required with an amount".to_owned());
    }
    Ok(Kind::Fixed { amount })
}

fn bundle_kind(fields: &Fields) -> Result<Kind, String> {
    fields.refuse(&["buy", "get"], "bundle")?;
    let set = fields
        .get("products")
        .ok_or("products: required for kind bundle (the set bought together)")?;
    let set = products(set, "products")?;
    if set.len() < 2 {
        return Err("products: a bundle needs at least 2 entries".to_owned());
    }
    let given: Vec<&str> = ["percent", "amount", "price"]
        .into_iter()
        .filter(|key| fields.get(key).is_some())
        .collect();
    let off = match given.as_slice() {
        [] => return Err("percent: kind bundle needs one of percent, amount or price".to_owned()),
        [_, second, ..] => {
            return Err(format!(
                "{second}: kind bundle takes only one of percent, amount or price"
            ))
        }
        ["percent"] => BundleOff::Percent(percent_value(field(fields, "percent"), "percent")?),
        ["amount"] => BundleOff::Amount(money(field(fields, "amount"), "amount", 1)?),
        [_] => BundleOff::Price(money(field(fields, "price"), "price", 0)?),
    };
    if fields.get("currency").is_none() {
        match off {
            BundleOff::Percent(_) => {}
            BundleOff::Amount(_) => return Err("currency: required with an amount".to_owned()),
            BundleOff::Price(_) => return Err("currency: required with a price".to_owned()),
        }
    }
    Ok(Kind::Bundle { set, off })
}

fn buy_x_get_y_kind(fields: &Fields) -> Result<Kind, String> {
    if fields.get("products").is_some() {
        return Err("products: buy_x_get_y names its products in buy and get".to_owned());
    }
    if fields.get("percent").is_some() {
        return Err("percent: buy_x_get_y takes its percent in get".to_owned());
    }
    fields.refuse(&["amount", "price"], "buy_x_get_y")?;
    let buy = fields
        .get("buy")
        .ok_or("buy: required for kind buy_x_get_y")?;
    let get = fields
        .get("get")
        .ok_or("get: required for kind buy_x_get_y")?;
    let (buy, _) = side(buy, "buy", false)?;
    let (get, percent) = side(get, "get", true)?;
    Ok(Kind::BuyXGetY {
        buy,
        get,
        percent: percent.expect("the get side always has a percent"),
    })
}

/// `buy` (`{products, qty}`) or `get` (`{products, qty, percent}`).
fn side(value: &Json, path: &str, with_percent: bool) -> Result<(Side, Option<u8>), String> {
    let known: &[&str] = if with_percent {
        &["products", "qty", "percent"]
    } else {
        &["products", "qty"]
    };
    let fields = Fields::of(value, path, known).ok_or_else(|| {
        let percent = if with_percent { ", percent" } else { "" };
        format!("{path}: must be an object with products, qty{percent}")
    })??;
    let required = |key: &str| {
        fields
            .get(key)
            .ok_or_else(|| format!("{path}.{key}: required"))
    };
    let products = products(required("products")?, &format!("{path}.products"))?;
    let qty = integer(
        required("qty")?,
        &format!("{path}.qty"),
        1,
        PROMO_QTY_MAX.into(),
    )?;
    let percent = if with_percent {
        Some(percent_value(
            required("percent")?,
            &format!("{path}.percent"),
        )?)
    } else {
        None
    };
    let qty = u32::try_from(qty).expect("checked against PROMO_QTY_MAX");
    Ok((Side { products, qty }, percent))
}

fn products(value: &Json, path: &str) -> Result<Products, String> {
    let Json::Array(items) = value else {
        return Err(format!(
            "{path}: must be a list of product ids or {{\"product\": p, \"variant\": v}} objects"
        ));
    };
    if items.is_empty() {
        return Err(format!("{path}: must not be empty"));
    }
    if items.len() > PROMO_PRODUCTS_MAX {
        return Err(format!("{path}: at most {PROMO_PRODUCTS_MAX} entries"));
    }
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        entries.push((product_entry(item, &format!("{path}[{index}]"))?, index));
    }
    entries.sort();
    for pair in entries.windows(2) {
        let ((earlier, _), (later, index)) = (&pair[0], &pair[1]);
        if earlier.product != later.product {
            continue;
        }
        let later_shown = match &later.variant {
            None => format!("{:?}", &*later.product),
            Some(variant) => format!("{:?} variant {:?}", &*later.product, &**variant),
        };
        if earlier == later {
            return Err(format!("{path}[{index}]: {later_shown} is listed twice"));
        }
        if earlier.variant.is_none() {
            return Err(format!(
                "{path}[{index}]: {later_shown} is already covered by {:?} (all its variants)",
                &*earlier.product
            ));
        }
    }
    Ok(Products {
        entries: entries.into_iter().map(|(entry, _)| entry).collect(),
    })
}

fn product_entry(item: &Json, path: &str) -> Result<ProductEntry, String> {
    match item {
        Json::Text(product) => Ok(ProductEntry {
            product: item_id(product, path)?,
            variant: None,
        }),
        Json::Object(_) => {
            let fields = Fields::of(item, path, &["product", "variant"]).expect("an object")?;
            let product = fields
                .get("product")
                .ok_or_else(|| format!("{path}.product: required"))?;
            let variant = fields.get("variant").ok_or_else(|| {
                format!("{path}.variant: required (a product id alone matches all its variants)")
            })?;
            let product_path = format!("{path}.product");
            let variant_path = format!("{path}.variant");
            let (Json::Text(product), Json::Text(variant)) = (product, variant) else {
                let bad = if matches!(product, Json::Text(_)) {
                    variant_path
                } else {
                    product_path
                };
                return Err(format!(
                    "{bad}: must be a string of 1..={ITEM_ID_BYTES_MAX} bytes"
                ));
            };
            Ok(ProductEntry {
                product: item_id(product, &product_path)?,
                variant: Some(item_id(variant, &variant_path)?),
            })
        }
        _ => Err(format!(
            "{path}: must be a product id or a {{\"product\": p, \"variant\": v}} object"
        )),
    }
}

fn item_id(id: &str, path: &str) -> Result<Box<str>, String> {
    if id.is_empty() || id.len() > ITEM_ID_BYTES_MAX {
        return Err(format!(
            "{path}: must be a string of 1..={ITEM_ID_BYTES_MAX} bytes"
        ));
    }
    Ok(id.into())
}

fn integer(value: &Json, path: &str, min: i128, max: i128) -> Result<i128, String> {
    match value {
        Json::Integer(number) if (min..=max).contains(number) => Ok(*number),
        _ => Err(format!("{path}: must be an integer {min}..={max}")),
    }
}

fn percent_value(value: &Json, path: &str) -> Result<u8, String> {
    let percent = integer(value, path, 1, 100)?;
    Ok(u8::try_from(percent).expect("1..=100 fits"))
}

/// Minor units, `min..=PROMO_MONEY_MINOR_MAX`.
fn money(value: &Json, path: &str, min: i64) -> Result<i64, String> {
    let amount = integer(value, path, min.into(), PROMO_MONEY_MINOR_MAX.into())?;
    Ok(i64::try_from(amount).expect("within PROMO_MONEY_MINOR_MAX"))
}

fn time(value: &Json, path: &str) -> Result<u64, String> {
    match value {
        Json::Integer(ms) => u64::try_from(*ms).ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{path}: must be a time in Unix milliseconds (an integer >= 0)"))
}

fn currency(value: &Json) -> Result<Currency, String> {
    if let Json::Text(code) = value {
        if let &[a, b, c] = code.as_bytes() {
            if code.bytes().all(|byte| byte.is_ascii_alphabetic()) {
                let upper = [a, b, c].map(|byte| byte.to_ascii_uppercase());
                return Ok(Currency(upper));
            }
        }
    }
    Err("currency: must be a three-letter ISO 4217 code".to_owned())
}

fn flag(value: Option<&Json>, path: &str) -> Result<bool, String> {
    match value {
        None => Ok(false),
        Some(Json::Bool(flag)) => Ok(*flag),
        Some(_) => Err(format!("{path}: must be true or false")),
    }
}

fn description(value: &Json) -> Result<Box<str>, String> {
    match value {
        Json::Text(text) if text.chars().count() <= PROMO_DESCRIPTION_CHARS_MAX => {
            Ok(text.as_str().into())
        }
        _ => Err(format!(
            "description: must be a string of at most {PROMO_DESCRIPTION_CHARS_MAX} characters"
        )),
    }
}

/// A required field the caller saw is there.
fn field<'j>(fields: &Fields<'j>, key: &str) -> &'j Json {
    fields
        .get(key)
        .expect("the caller checked the field is given")
}

/// Text from the document shown in an error, cut short so an error stays a sentence.
fn shown(text: &str) -> String {
    const CHARS_SHOWN_MAX: usize = 40;
    match text.char_indices().nth(CHARS_SHOWN_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// An object's fields, checked: every key known, none given twice.
struct Fields<'j> {
    entries: &'j [(String, Json)],
}

impl<'j> Fields<'j> {
    /// `None` when `value` is not an object; an error naming the first unknown or repeated key.
    fn of(value: &'j Json, path: &str, known: &[&str]) -> Option<Result<Fields<'j>, String>> {
        let Json::Object(entries) = value else {
            return None;
        };
        let named = |key: &str| match path {
            "" => shown(key),
            _ => format!("{path}.{}", shown(key)),
        };
        // Stops at the first bad key, so a huge object costs no more than the known keys.
        for (index, (key, _)) in entries.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Some(Err(format!("{}: unknown field", named(key))));
            }
            if entries[..index].iter().any(|(earlier, _)| earlier == key) {
                return Some(Err(format!("{}: given twice", named(key))));
            }
        }
        Some(Ok(Fields { entries }))
    }

    fn get(&self, key: &str) -> Option<&'j Json> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Fails on the first of `keys` given: they mean nothing for this kind.
    fn refuse(&self, keys: &[&str], kind: &str) -> Result<(), String> {
        match keys.iter().find(|key| self.get(key).is_some()) {
            Some(key) => Err(format!("{key}: not used by kind {kind}")),
            None => Ok(()),
        }
    }
}

/// A JSON value as written: an object keeps every key in order (so a repeated key is seen), a
/// number is an integer or marked as not one.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Integer(i128),
    NotInteger,
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Json, E> {
        Ok(Json::Bool(flag))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Json, E> {
        Ok(Json::Integer(number.into()))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Json, E> {
        Ok(Json::Integer(number.into()))
    }

    // The parser hands a number with a fraction or an exponent over as a float; it is only
    // marked as not an integer, never kept.
    fn visit_f64<E>(self, _not_an_integer: f64) -> Result<Json, E> {
        Ok(Json::NotInteger)
    }

    fn visit_str<E>(self, text: &str) -> Result<Json, E> {
        Ok(Json::Text(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Json, E> {
        Ok(Json::Text(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error(document: &str) -> String {
        Promotion::from_json(document.as_bytes()).expect_err("an invalid document")
    }

    fn valid(document: Value) -> Promotion {
        Promotion::from_json(document.to_string().as_bytes()).expect("a valid document")
    }

    #[test]
    fn each_error_names_its_field() {
        let cases = [
            (
                r#"{"kind": "percent", "percent": 0}"#,
                "percent: must be an integer 1..=100",
            ),
            (
                r#"{"kind": "percent", "percent": 101}"#,
                "percent: must be an integer 1..=100",
            ),
            (
                r#"{"kind": "percent", "percent": 10.5}"#,
                "percent: must be an integer 1..=100",
            ),
            (
                r#"{"kind": "percent", "percent": 1e1}"#,
                "percent: must be an integer 1..=100",
            ),
            (
                r#"{"kind": "percent", "percent": "10"}"#,
                "percent: must be an integer 1..=100",
            ),
            (
                r#"{"kind": "percent"}"#,
                "percent: required for kind percent",
            ),
            (
                r#"{"kind": "percnt", "percent": 10}"#,
                r#"kind: unknown kind "percnt" (percent, fixed, bundle or buy_x_get_y)"#,
            ),
            (
                r#"{"percent": 10}"#,
                "kind: required (percent, fixed, bundle or buy_x_get_y)",
            ),
            (
                r#"{"kind": "fixed", "currency": "USD"}"#,
                "amount: required for kind fixed",
            ),
            (
                r#"{"kind": "fixed", "amount": 500}"#,
                "currency: required with an amount",
            ),
            (
                r#"{"kind": "fixed", "amount": 0, "currency": "USD"}"#,
                "amount: must be an integer 1..=1000000000000",
            ),
            (
                r#"{"kind": "fixed", "amount": 1000000000001, "currency": "USD"}"#,
                "amount: must be an integer 1..=1000000000000",
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(error(document), expected, "{document}");
        }
    }

    #[test]
    fn optional_field_errors() {
        let cases = [
            (
                r#"{"kind": "percent", "percent": 10, "foo": 1}"#,
                "foo: unknown field",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "percent": 20}"#,
                "percent: given twice",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "amount": 5}"#,
                "amount: not used by kind percent",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "currency": "US"}"#,
                "currency: must be a three-letter ISO 4217 code",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "min_subtotal": -1}"#,
                "min_subtotal: must be an integer 0..=1000000000000",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "starts_at_ms": 5, "ends_at_ms": 5}"#,
                "ends_at_ms: must be after starts_at_ms",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "ends_at_ms": -5}"#,
                "ends_at_ms: must be a time in Unix milliseconds (an integer >= 0)",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "stackable": 1}"#,
                "stackable: must be true or false",
            ),
            (r#"[1, 2]"#, "the promotion must be a JSON object"),
        ];
        for (document, expected) in cases {
            assert_eq!(error(document), expected, "{document}");
        }
        assert!(error("{").starts_with("not valid JSON: "));
    }

    #[test]
    fn product_list_errors() {
        let cases = [
            (
                r#"{"kind": "percent", "percent": 10, "products": []}"#,
                "products: must not be empty",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": [""]}"#,
                "products[0]: must be a string of 1..=64 bytes",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": ["a", {"product": "b"}]}"#,
                "products[1].variant: required (a product id alone matches all its variants)",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": [{"product": "b", "variant": "x", "size": 1}]}"#,
                "products[0].size: unknown field",
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": ["a", "b", "a"]}"#,
                r#"products[2]: "a" is listed twice"#,
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": [{"product": "tv", "variant": "55"}, "tv"]}"#,
                r#"products[0]: "tv" variant "55" is already covered by "tv" (all its variants)"#,
            ),
            (
                r#"{"kind": "percent", "percent": 10, "products": [7]}"#,
                r#"products[0]: must be a product id or a {"product": p, "variant": v} object"#,
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(error(document), expected, "{document}");
        }
        let long = "x".repeat(65);
        let document = json!({"kind": "percent", "percent": 10, "products": [long]});
        assert_eq!(
            error(&document.to_string()),
            "products[0]: must be a string of 1..=64 bytes"
        );
        let many: Vec<String> = (0..101).map(|index| format!("p{index}")).collect();
        let document = json!({"kind": "percent", "percent": 10, "products": many});
        assert_eq!(
            error(&document.to_string()),
            "products: at most 100 entries"
        );
    }

    #[test]
    fn bundle_and_buy_x_get_y_errors() {
        let cases = [
            (
                r#"{"kind": "bundle", "percent": 10}"#,
                "products: required for kind bundle (the set bought together)",
            ),
            (
                r#"{"kind": "bundle", "products": ["tv"], "percent": 10}"#,
                "products: a bundle needs at least 2 entries",
            ),
            (
                r#"{"kind": "bundle", "products": ["tv", "sb"]}"#,
                "percent: kind bundle needs one of percent, amount or price",
            ),
            (
                r#"{"kind": "bundle", "products": ["tv", "sb"], "percent": 10, "price": 5, "currency": "USD"}"#,
                "price: kind bundle takes only one of percent, amount or price",
            ),
            (
                r#"{"kind": "bundle", "products": ["tv", "sb"], "price": 5}"#,
                "currency: required with a price",
            ),
            (
                r#"{"kind": "bundle", "products": ["tv", "sb"], "amount": 5}"#,
                "currency: required with an amount",
            ),
            (
                r#"{"kind": "buy_x_get_y", "products": ["sock"]}"#,
                "products: buy_x_get_y names its products in buy and get",
            ),
            (
                r#"{"kind": "buy_x_get_y", "get": {"products": ["a"], "qty": 1, "percent": 100}}"#,
                "buy: required for kind buy_x_get_y",
            ),
            (
                r#"{"kind": "buy_x_get_y", "buy": {"products": ["a"], "qty": 0}, "get": {"products": ["a"], "qty": 1, "percent": 100}}"#,
                "buy.qty: must be an integer 1..=100000",
            ),
            (
                r#"{"kind": "buy_x_get_y", "buy": {"products": ["a"], "qty": 1}, "get": {"products": ["a"], "qty": 1}}"#,
                "get.percent: required",
            ),
            (
                r#"{"kind": "buy_x_get_y", "buy": {"products": ["a"], "qty": 1, "percent": 5}, "get": {"products": ["a"], "qty": 1, "percent": 100}}"#,
                "buy.percent: unknown field",
            ),
            (
                r#"{"kind": "buy_x_get_y", "buy": {"products": [""], "qty": 1}, "get": {"products": ["a"], "qty": 1, "percent": 100}}"#,
                "buy.products[0]: must be a string of 1..=64 bytes",
            ),
            (
                r#"{"kind": "buy_x_get_y", "buy": [], "get": {"products": ["a"], "qty": 1, "percent": 100}}"#,
                "buy: must be an object with products, qty",
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(error(document), expected, "{document}");
        }
    }

    #[test]
    fn description_is_bounded_in_characters() {
        let two_hundred = "é".repeat(200);
        let document = json!({"kind": "percent", "percent": 10, "description": two_hundred});
        assert_eq!(valid(document).description(), Some(two_hundred.as_str()));
        let document = json!({"kind": "percent", "percent": 10, "description": "é".repeat(201)});
        assert_eq!(
            error(&document.to_string()),
            "description: must be a string of at most 200 characters"
        );
    }

    #[test]
    fn canonical_document() {
        let promo = valid(json!({"kind": "percent", "percent": 10, "currency": "usd",
            "products": [{"product": "shirt", "variant": "red"}, "hat"]}));
        let expected = json!({"kind": "percent", "percent": 10, "currency": "USD",
            "products": ["hat", {"product": "shirt", "variant": "red"}],
            "stackable": false, "automatic": false});
        assert_eq!(promo.to_json(), expected);
        let offer = valid(json!({"kind": "buy_x_get_y", "automatic": true,
            "buy": {"products": ["sock"], "qty": 2},
            "get": {"products": ["sock"], "qty": 1, "percent": 100}}));
        assert!(offer.automatic() && !offer.stackable());
        assert_eq!(offer.kind_name(), "buy_x_get_y");
        let written = offer.to_json().to_string();
        assert_eq!(Promotion::from_json(written.as_bytes()), Ok(offer));
    }

    #[test]
    fn products_find_whole_products_and_variants() {
        let promo = valid(json!({"kind": "percent", "percent": 10,
            "products": ["hat", {"product": "shirt", "variant": "red"},
                         {"product": "shirt", "variant": "blue"}, "zip"]}));
        let products = promo.products.expect("given");
        assert_eq!(products.find("hat", "any"), Some(0));
        assert_eq!(products.find("shirt", "blue"), Some(1));
        assert_eq!(products.find("shirt", "red"), Some(2));
        assert_eq!(products.find("shirt", "green"), None);
        assert_eq!(products.find("zip", "-"), Some(3));
        assert_eq!(products.find("a", "-"), None);
        assert_eq!(products.find("zzz", "-"), None);
    }
}
